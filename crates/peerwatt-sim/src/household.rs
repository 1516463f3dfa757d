//! Households: who they are (drawn reproducibly from the seed) and what flows through their
//! grid meter, quarter hour by quarter hour, in whole Wh.
//!
//! Per step: load from a synPRO profile (scaled, with noise); PV from the hourly irradiance,
//! interpolated to the quarter hour, shifted by the roof's orientation, scaled by the system's
//! peak power and a performance ratio of 80 %; then a battery, if any, charges from surplus and
//! discharges into deficit (self-consumption, 95 % efficient each way); the rest is grid import
//! or export. Every step satisfies `load + charge + export = pv + discharge + import` exactly.

use serde::Serialize;

use crate::profiles::{Irradiance, LoadProfile, ProfileError};
use crate::rng::Rng;

/// The step of the profiles and of the community's settlement intervals: 15 minutes.
pub const STEP_SECS: u64 = 900;
/// Steps in a day.
pub const STEPS_PER_DAY: u64 = 86_400 / STEP_SECS;
/// PV performance ratio, percent (losses of inverter, wiring, temperature, soiling).
const PERFORMANCE_RATIO_PCT: u64 = 80;
/// Battery efficiency each way, per mille.
const BATTERY_EFFICIENCY_PERMILLE: u64 = 950;

/// The four synPRO household types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LoadKind {
    /// A family.
    Family,
    /// Two adults working full time.
    TwoWorking,
    /// Two retired adults.
    Retired,
    /// One adult under 30.
    Single,
}

impl LoadKind {
    /// All kinds, in the order of [`Profiles::loads`].
    pub const ALL: [LoadKind; 4] = [LoadKind::Family, LoadKind::TwoWorking, LoadKind::Retired, LoadKind::Single];

    /// A short description.
    pub fn label(self) -> &'static str {
        match self {
            LoadKind::Family => "family",
            LoadKind::TwoWorking => "two working",
            LoadKind::Retired => "retired couple",
            LoadKind::Single => "single",
        }
    }
}

/// The profile data, parsed from the copies embedded in the binary (`data/`), so that an
/// installed `peerwatt demo` needs no files.
#[derive(Debug, Clone)]
pub struct Profiles {
    /// One load profile per [`LoadKind`], in [`LoadKind::ALL`] order.
    pub loads: Vec<LoadProfile>,
    /// Hourly irradiance.
    pub sun: Irradiance,
}

impl Profiles {
    /// Parses the embedded profiles (about 50 ms).
    pub fn embedded() -> Result<Profiles, ProfileError> {
        let loads = [
            include_str!("../data/synPRO_el_family.dat"),
            include_str!("../data/synPRO_el_2_fulltime_employees.dat"),
            include_str!("../data/synPRO_el_2_persons_over65.dat"),
            include_str!("../data/synPRO_el_single_person_under30.dat"),
        ]
        .iter()
        .map(|text| LoadProfile::parse_synpro(text))
        .collect::<Result<Vec<_>, _>>()?;
        let sun = Irradiance::parse_tmy3(include_str!("../data/tmy3_723170_greensboro_nc.csv"))?;
        Ok(Profiles { loads, sun })
    }

    /// Mean GHI in W/m² over quarter hour `step` of the year, `shift_min` minutes later in the
    /// day (linear between the hourly values, which stand at the middle of their hours).
    fn ghi(&self, step: u64, shift_min: i64) -> u64 {
        let year_half_min = 8_760 * 120;
        // Half-minutes since the start of the year, at the middle of the step.
        let t = (i64::try_from(step % 35_040).unwrap_or(0) * 30 + 15 + shift_min * 2 - 60).rem_euclid(year_half_min);
        let (hour, frac) = (t / 120, t % 120);
        let at = |h: i64| u64::from(self.sun.ghi[usize::try_from(h.rem_euclid(8_760)).unwrap_or(0)]);
        let frac = frac.unsigned_abs();
        (at(hour) * (120 - frac) + at(hour + 1) * frac) / 120
    }
}

/// A home battery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Battery {
    /// Usable capacity, Wh.
    pub capacity_wh: u64,
    /// Largest charge or discharge power, W.
    pub power_w: u64,
}

/// Which firmware the household's meter reader runs (the demo uses a mix).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum MeterKind {
    /// Tasmota with an SML reader.
    Tasmota,
    /// Shelly Pro 3EM (Gen2).
    Shelly,
    /// DSMR-reader.
    Dsmr,
}

/// One household.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Household {
    /// Display name.
    pub name: String,
    /// Its load profile.
    pub load: LoadKind,
    /// The profile scaled by this, percent.
    pub load_pct: u32,
    /// PV peak power, W (0: no PV).
    pub pv_wp: u64,
    /// Roof orientation as a shift of the PV curve, minutes (negative: east, earlier).
    pub pv_shift_min: i64,
    /// A home battery, if any.
    pub battery: Option<Battery>,
    /// Step-to-step noise on load (and half of it on PV), ± percent.
    pub noise_pct: u32,
    /// The meter reader's firmware.
    pub meter: MeterKind,
    /// Never sell below this (micro-currency per kWh).
    pub min_sell_price: Option<u64>,
    /// Never buy above this.
    pub max_buy_price: Option<u64>,
}

/// What the scenario allows households to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Variety {
    /// Share of households with PV, percent.
    pub pv_share_pct: u32,
    /// Share of PV households with a battery, percent.
    pub battery_share_pct: u32,
    /// Share of households that set their own price limits, percent.
    pub limits_share_pct: u32,
    /// The community's feed-in tariff.
    pub feed_in: u64,
    /// The community's retail tariff.
    pub retail: u64,
}

impl Household {
    /// Household number `i` of a neighbourhood drawn from `seed`.
    pub fn draw(seed: u64, i: usize, variety: &Variety) -> Household {
        let mut r = Rng::new(seed, i as u64);
        let load = LoadKind::ALL[usize::try_from(r.range(0, 3)).unwrap_or(0)];
        let has_pv = r.chance(variety.pv_share_pct);
        let pv_wp = if has_pv { 500 * r.range(6, 16).unsigned_abs() } else { 0 };
        let battery = (has_pv && r.chance(variety.battery_share_pct)).then(|| Battery {
            capacity_wh: 1_000 * r.range(5, 10).unsigned_abs(),
            power_w: 500 * r.range(5, 10).unsigned_abs(),
        });
        let spread = variety.retail.saturating_sub(variety.feed_in);
        let limit =
            |r: &mut Rng| r.chance(variety.limits_share_pct).then(|| spread * r.range(0, 60).unsigned_abs() / 100);
        let min_sell_price = limit(&mut r).map(|up| variety.feed_in + up);
        let max_buy_price = limit(&mut r).map(|down| variety.retail - down);
        Household {
            name: format!("house-{:02}", i + 1),
            load,
            load_pct: u32::try_from(r.range(80, 125)).unwrap_or(100),
            pv_wp,
            pv_shift_min: r.range(-60, 60),
            battery,
            noise_pct: 10,
            meter: [MeterKind::Tasmota, MeterKind::Shelly, MeterKind::Dsmr][i % 3],
            min_sell_price,
            max_buy_price,
        }
    }
}

/// The energy flows of one step, Wh.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Flows {
    /// Consumed by the household.
    pub load_wh: u64,
    /// Generated by its PV.
    pub pv_wh: u64,
    /// Into its battery.
    pub charge_wh: u64,
    /// Out of its battery.
    pub discharge_wh: u64,
    /// From the grid (what the grid meter's import counter adds).
    pub import_wh: u64,
    /// To the grid.
    pub export_wh: u64,
}

impl Flows {
    /// Whether `load + charge + export = pv + discharge + import`.
    pub fn balances(&self) -> bool {
        self.load_wh + self.charge_wh + self.export_wh == self.pv_wh + self.discharge_wh + self.import_wh
    }
}

/// Rounds milliwatt-hours to the nearest Wh (halves up).
fn round_wh(mwh: u64) -> u64 {
    (mwh + 500) / 1_000
}

/// The flows of `h` for `steps` quarter hours from quarter hour `first` of the year
/// (profile local time), with noise drawn from `seed`. The battery starts empty.
pub fn simulate(h: &Household, profiles: &Profiles, seed: u64, first: u64, steps: u64) -> Vec<Flows> {
    let kind = LoadKind::ALL.iter().position(|k| *k == h.load).unwrap_or(0);
    let profile = &profiles.loads[kind];
    let mut r = Rng::new(seed ^ 0x5EED, first ^ h.name.bytes().fold(0u64, |a, b| a.wrapping_mul(31) + u64::from(b)));
    let noise = i64::from(h.noise_pct);
    let mut soc_mwh = 0u64;
    (first..first + steps)
        .map(|step| {
            let base = profile.step_energy_mwh(usize::try_from(step % 35_040).unwrap_or(0)).unwrap_or(0);
            let load_pct = u64::from(h.load_pct) * (100 + r.range(-noise, noise)).unsigned_abs() / 100;
            let load_wh = round_wh(base * load_pct / 100);
            let ghi = profiles.ghi(step, h.pv_shift_min);
            // W = Wp × GHI/1000 × PR; mWh per quarter hour = W × 1000 / 4.
            let pv_mwh = h.pv_wp * ghi * PERFORMANCE_RATIO_PCT / 100 / 4;
            let pv_pct = (100 + r.range(-noise / 2, noise / 2)).unsigned_abs();
            let pv_wh = round_wh(pv_mwh * pv_pct / 100);
            let mut f = Flows { load_wh, pv_wh, ..Flows::default() };
            let per_step = |power_w: u64| power_w * STEP_SECS / 3_600;
            if pv_wh >= load_wh {
                let surplus = pv_wh - load_wh;
                if let Some(b) = h.battery {
                    let room_mwh = (b.capacity_wh * 1_000).saturating_sub(soc_mwh);
                    f.charge_wh = surplus.min(per_step(b.power_w)).min(room_mwh / BATTERY_EFFICIENCY_PERMILLE);
                    soc_mwh += f.charge_wh * BATTERY_EFFICIENCY_PERMILLE;
                }
                f.export_wh = surplus - f.charge_wh;
            } else {
                let deficit = load_wh - pv_wh;
                if let Some(b) = h.battery {
                    let available = soc_mwh * BATTERY_EFFICIENCY_PERMILLE / 1_000_000;
                    f.discharge_wh = deficit.min(per_step(b.power_w)).min(available);
                    soc_mwh =
                        soc_mwh.saturating_sub((f.discharge_wh * 1_000_000).div_ceil(BATTERY_EFFICIENCY_PERMILLE));
                }
                f.import_wh = deficit - f.discharge_wh;
            }
            f
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a test panics to fail

    use super::*;

    fn variety() -> Variety {
        Variety { pv_share_pct: 70, battery_share_pct: 30, limits_share_pct: 50, feed_in: 80_000, retail: 300_000 }
    }

    #[test]
    fn households_are_reproducible_and_varied() {
        let a: Vec<Household> = (0..20).map(|i| Household::draw(42, i, &variety())).collect();
        let b: Vec<Household> = (0..20).map(|i| Household::draw(42, i, &variety())).collect();
        assert_eq!(a, b);
        assert_ne!(a, (0..20).map(|i| Household::draw(43, i, &variety())).collect::<Vec<_>>());
        assert!(a.iter().any(|h| h.pv_wp == 0) && a.iter().any(|h| h.pv_wp > 0));
        assert!(a.iter().any(|h| h.battery.is_some()));
        for h in &a {
            assert!(h.min_sell_price.is_none_or(|p| (80_000..=300_000).contains(&p)));
            assert!(h.max_buy_price.is_none_or(|p| (80_000..=300_000).contains(&p)));
        }
    }

    #[test]
    fn every_step_balances_and_a_june_day_has_midday_surplus() {
        let profiles = Profiles::embedded().unwrap();
        let june_25 = 175 * STEPS_PER_DAY;
        let mut h = Household::draw(1, 0, &variety());
        h.pv_wp = 8_000;
        h.pv_shift_min = 0;
        h.battery = Some(Battery { capacity_wh: 5_000, power_w: 3_000 });
        let day = simulate(&h, &profiles, 1, june_25, STEPS_PER_DAY);
        assert!(day.iter().all(Flows::balances));
        let pv: u64 = day.iter().map(|f| f.pv_wh).sum();
        // 8 kWp on a clear June day: about 40 to 60 kWh.
        assert!((35_000..65_000).contains(&pv), "{pv} Wh");
        assert_eq!(day[0].pv_wh, 0, "no sun at midnight");
        assert!(day[48].export_wh > 0 || day[48].charge_wh > 0, "surplus at noon");
        // The battery takes surplus and gives it back in the evening.
        assert!(day.iter().any(|f| f.charge_wh > 0) && day.iter().any(|f| f.discharge_wh > 0));
        let charged: u64 = day.iter().map(|f| f.charge_wh).sum();
        let discharged: u64 = day.iter().map(|f| f.discharge_wh).sum();
        assert!(discharged < charged, "losses");
        // Reproducible.
        assert_eq!(day, simulate(&h, &profiles, 1, june_25, STEPS_PER_DAY));
    }
}
