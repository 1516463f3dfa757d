//! A demo scenario: the neighbourhood, the day, the tariffs and the market's timing. Every
//! field has a default (the scenario `peerwatt demo` runs without `--scenario`); a scenario
//! file sets any of them in TOML, and unknown keys are errors. `config/demo-scenario.toml`
//! lists them all.

use std::path::Path;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The scenario cannot be used.
#[derive(Debug, Error)]
pub enum ScenarioError {
    /// The file cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not a valid scenario.
    #[error("{path} is not a valid scenario: {why}")]
    Parse {
        /// The file.
        path: String,
        /// Where and why.
        why: String,
    },
    /// A value is out of range.
    #[error("scenario: {0}")]
    Invalid(String),
}

/// The whole scenario.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Scenario {
    /// Number of households.
    pub households: usize,
    /// Simulated days.
    pub days: u32,
    /// Simulated milliseconds per real millisecond (1,440: a day in a minute).
    pub speed: u32,
    /// Seed of every random choice (households, noise).
    pub seed: u64,
    /// The first simulated day, `YYYY-MM-DD` in 2021 (the profiles' year).
    pub date: String,
    /// Start this many quarter hours into the day (short runs).
    pub start_quarter: u32,
    /// Run this many 15-minute intervals instead of `days` whole days (short runs).
    pub intervals: Option<u32>,
    /// Share of households with PV, percent.
    pub pv_share_pct: u32,
    /// Share of PV households with a battery, percent.
    pub battery_share_pct: u32,
    /// Share of households that set their own price limits, percent.
    pub limits_share_pct: u32,
    /// Feed-in tariff, micro-currency per kWh.
    pub feed_in_tariff: u64,
    /// Retail tariff, micro-currency per kWh.
    pub retail_tariff: u64,
    /// Trading for an interval closes this many simulated seconds before it starts.
    pub gate_closure_secs: u64,
    /// … and opens this many intervals ahead.
    pub horizon_intervals: u32,
    /// Orders are re-priced at most this often, simulated seconds.
    pub reprice_secs: u64,
    /// The nodes' strategy tick, real milliseconds.
    pub tick_ms: u64,
    /// The simulated meters publish this often, simulated seconds.
    pub meter_period_secs: u64,
    /// Gossipsub heartbeat, real milliseconds.
    pub heartbeat_ms: u64,
    /// The nodes (all in this one process) share the signatures they verified, so each
    /// gossiped message is checked once, not once per node (see `docs/benchmarks.md`).
    pub share_verified_signatures: bool,
    /// The network between the nodes (see [`NetworkChoice`]).
    pub network: NetworkChoice,
    /// The in-process network's delivery latency, real milliseconds.
    pub network_latency_ms: u64,
    /// The in-process network's losses: deliveries lost per million.
    pub network_loss_per_million: u32,
    /// After the day, run the clock on until every household has settled every interval
    /// completely (at most until the last settlement deadline); else stop at the day's end
    /// and report what was settled by then.
    pub wait_for_settlement: bool,
    /// At the end, audit every node's ledger against the others' (`peerwatt audit`) and
    /// write its report next to the run's.
    pub audit: bool,
}

/// The network the simulated nodes trade over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NetworkChoice {
    /// Real libp2p on loopback up to [`LIBP2P_UP_TO`] households, in-process above.
    Auto,
    /// Real libp2p on loopback (TCP, noise, yamux, gossipsub, request-response).
    Libp2p,
    /// The same signed frames through a hub in this process, with the configured latency
    /// and loss (`peerwatt_net::inproc`).
    InProcess,
}

/// The most households `auto` runs on real libp2p: beyond, a 2-core machine spends more on
/// the co-located libp2p stacks than on the market they carry (docs/benchmarks.md).
pub const LIBP2P_UP_TO: usize = 20;

impl NetworkChoice {
    /// The network a street of `households` runs on: never `Auto`.
    pub fn resolve(self, households: usize) -> NetworkChoice {
        match self {
            NetworkChoice::Auto if households <= LIBP2P_UP_TO => NetworkChoice::Libp2p,
            NetworkChoice::Auto => NetworkChoice::InProcess,
            other => other,
        }
    }
}

impl Default for Scenario {
    fn default() -> Self {
        Scenario {
            households: 10,
            days: 1,
            speed: 1_440,
            seed: 1,
            date: "2021-06-25".into(),
            start_quarter: 0,
            intervals: None,
            pv_share_pct: 60,
            battery_share_pct: 30,
            limits_share_pct: 40,
            feed_in_tariff: 80_000,
            retail_tariff: 300_000,
            gate_closure_secs: 60,
            horizon_intervals: 4,
            reprice_secs: 300,
            tick_ms: 20,
            meter_period_secs: 60,
            heartbeat_ms: 200,
            share_verified_signatures: true,
            network: NetworkChoice::Auto,
            network_latency_ms: 5,
            network_loss_per_million: 0,
            wait_for_settlement: true,
            audit: true,
        }
    }
}

impl Scenario {
    /// Reads a scenario file (missing keys take their defaults).
    pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        let shown = path.display().to_string();
        let text =
            std::fs::read_to_string(path).map_err(|source| ScenarioError::Read { path: shown.clone(), source })?;
        let s: Scenario =
            toml::from_str(&text).map_err(|e| ScenarioError::Parse { path: shown, why: e.to_string() })?;
        s.check()?;
        Ok(s)
    }

    /// Checks ranges.
    pub fn check(&self) -> Result<(), ScenarioError> {
        let bad = |why: &str| Err(ScenarioError::Invalid(why.to_owned()));
        if !(2..=2_000).contains(&self.households) {
            return bad("households must be 2 to 2,000");
        }
        if self.intervals.is_none() && !(1..=366).contains(&self.days) {
            return bad("days must be 1 to 366");
        }
        if self.intervals == Some(0) {
            return bad("intervals must be at least 1");
        }
        if !(1..=100_000).contains(&self.speed) {
            return bad("speed must be 1 to 100,000");
        }
        if self.feed_in_tariff >= self.retail_tariff {
            return bad("the feed-in tariff must be below the retail tariff");
        }
        if [self.pv_share_pct, self.battery_share_pct, self.limits_share_pct].iter().any(|p| *p > 100) {
            return bad("shares are percentages (0 to 100)");
        }
        if self.start_quarter >= 96 {
            return bad("start_quarter must be 0 to 95");
        }
        if !(10..=900).contains(&self.meter_period_secs) {
            return bad("meter_period_secs must be 10 to 900");
        }
        if self.network_loss_per_million > 1_000_000 {
            return bad("network_loss_per_million must be at most 1,000,000");
        }
        if self.gate_closure_secs >= 900 || self.horizon_intervals == 0 {
            return bad("gate closure must be under 900 s and the horizon at least 1 interval");
        }
        self.first_day()?;
        Ok(())
    }

    /// Days since 1970-01-01 of `date`.
    pub fn first_day(&self) -> Result<u64, ScenarioError> {
        let parts: Vec<u64> = self.date.split('-').filter_map(|p| p.parse().ok()).collect();
        let [y, m, d] = parts[..] else {
            return Err(ScenarioError::Invalid(format!("date {:?} is not YYYY-MM-DD", self.date)));
        };
        if y != 2021 || !(1..=12).contains(&m) || !(1..=days_in_month(m)).contains(&d) {
            return Err(ScenarioError::Invalid(format!(
                "date {:?} is not a day of 2021 (the profiles' year)",
                self.date
            )));
        }
        peerwatt_core::time::days_from_civil(y, m, d)
            .ok_or_else(|| ScenarioError::Invalid(format!("date {:?} is not a date", self.date)))
    }

    /// The network the run uses (never `Auto`).
    pub fn network_in_use(&self) -> NetworkChoice {
        self.network.resolve(self.households)
    }

    /// The network the run uses, in words (the report says it).
    pub fn network_used(&self) -> String {
        match self.network_in_use() {
            NetworkChoice::InProcess => format!(
                "in-process ({} ms latency, {} per million lost; same signed frames and validators)",
                self.network_latency_ms, self.network_loss_per_million
            ),
            _ => "libp2p on loopback (TCP, noise, yamux, gossipsub)".to_owned(),
        }
    }

    /// Intervals the run reports on.
    pub fn run_intervals(&self) -> u64 {
        self.intervals.map_or(u64::from(self.days) * 96, u64::from)
    }
}

fn days_in_month(m: u64) -> u64 {
    [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][usize::try_from(m - 1).unwrap_or(0) % 12]
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a test panics to fail

    use super::*;

    #[test]
    fn the_example_scenario_file_lists_the_defaults() {
        let path = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../config/demo-scenario.toml"));
        assert_eq!(Scenario::load(path).unwrap(), Scenario::default());
    }

    #[test]
    fn dates_and_ranges() {
        let s = Scenario::default();
        s.check().unwrap();
        assert_eq!(s.first_day().unwrap() * 86_400, 1_624_579_200, "2021-06-25");
        let jan_1 = Scenario { date: "2021-01-01".into(), ..Scenario::default() };
        assert_eq!(jan_1.first_day().unwrap() * 86_400, 1_609_459_200);
        for bad in ["2021-02-30", "2020-06-01", "June 1", "2021-13-01"] {
            assert!(Scenario { date: bad.into(), ..Scenario::default() }.check().is_err(), "{bad}");
        }
        assert!(Scenario { households: 1, ..Scenario::default() }.check().is_err());
        assert!(Scenario { feed_in_tariff: 400_000, ..Scenario::default() }.check().is_err());
        let parsed: Result<Scenario, _> = toml::from_str("househlds = 3");
        assert!(parsed.is_err(), "unknown keys are refused");
        let parsed: Scenario = toml::from_str("households = 3\nintervals = 8").unwrap();
        assert_eq!((parsed.households, parsed.run_intervals(), parsed.speed), (3, 8, 1_440));
    }
}
