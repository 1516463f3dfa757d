//! The demo's report: built from the run (meters, ledgers, timings), written as JSON and an
//! SVG chart, and rendered as text for the terminal.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use peerwatt_core::{IntervalId, Price, Side, Timestamp, Wh};
use serde::Serialize;

use crate::delivery::DeliveryCheck;
use crate::household::{Flows, Household, STEP_SECS};
use crate::kpi::{
    self, CommunityReport, HouseholdReport, Inputs, IntervalReport, KpiError, OrderRecord, Tariffs, TradeRecord,
};
use crate::ledgers::{LedgerSummary, NodeLedger};
use crate::run::Timeline;
use crate::scenario::Scenario;

/// One interval as the live view shows it while the run goes on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LiveLine {
    /// The interval's start.
    pub start: Timestamp,
    /// Trades agreed for it.
    pub trades: u64,
    /// Energy traded, Wh.
    pub traded_wh: u64,
    /// Lowest trade price (0: none).
    pub price_min: u64,
    /// Highest trade price.
    pub price_max: u64,
    /// Community grid import, Wh.
    pub import_wh: u64,
    /// Community grid export, Wh.
    pub export_wh: u64,
}

impl LiveLine {
    /// Counts one trade.
    pub fn add_trade(&mut self, energy_wh: u64, price: u64) {
        self.trades += 1;
        self.traded_wh += energy_wh;
        self.price_min = if self.price_min == 0 { price } else { self.price_min.min(price) };
        self.price_max = self.price_max.max(price);
    }

    /// The line the terminal shows.
    pub fn render(&self) -> String {
        let time = self.start.to_string();
        let hhmm = time.get(11..16).unwrap_or("");
        let prices = if self.trades == 0 {
            "          -        ".to_owned()
        } else {
            format!("{} - {}", price(self.price_min), price(self.price_max))
        };
        format!(
            "{hhmm}  {trades:>4} trades {traded:>9}  price {prices}  grid import {import:>9}  export {export:>9}",
            trades = self.trades,
            traded = kwh(self.traded_wh),
            import = kwh(self.import_wh),
            export = kwh(self.export_wh),
        )
    }
}

/// A household in the report: who it is and how its day went.
#[derive(Debug, Clone, Serialize)]
pub struct HouseholdLine {
    /// Who it is.
    #[serde(flatten)]
    pub household: Household,
    /// Its day.
    #[serde(flatten)]
    pub day: HouseholdReport,
}

/// An interval in the report.
#[derive(Debug, Clone, Serialize)]
pub struct IntervalLine {
    /// Its start (RFC 3339).
    pub start: String,
    /// Its figures.
    #[serde(flatten)]
    pub figures: IntervalReport,
}

/// What the ledgers showed.
#[derive(Debug, Clone, Serialize)]
pub struct LedgerCheck {
    /// Per node.
    pub nodes: Vec<NodeLedger>,
    /// Every ledger verified.
    pub all_verified: bool,
    /// Trades held by both parties' ledgers.
    pub trades_in_both_ledgers: u64,
    /// Trades held by only one party's ledger.
    pub trades_in_one_ledger: u64,
    /// Trades whose signatures fail or whose parties are strangers.
    pub bad_trades: u64,
    /// Trades for intervals outside the reported ones (the warm-up before, the horizon after).
    pub trades_outside_run: u64,
    /// Orders published (re-pricings and cancellations included).
    pub orders_published: u64,
}

/// What `peerwatt audit` found over the street's ledgers.
#[derive(Debug, Clone, Serialize)]
pub struct AuditCheck {
    /// No exceptions.
    pub clean: bool,
    /// Exceptions per check that found any.
    pub exceptions: Vec<(String, u64)>,
    /// Ledgers verified.
    pub ledgers_verified: u64,
    /// Trades in both parties' ledgers with the same bytes.
    pub trades_in_both_ledgers: u64,
    /// Settlements checked (the latest revision of each node and interval).
    pub settlements: u64,
    /// Of them, recomputed exactly from the signed statements and trades.
    pub settlements_recomputed: u64,
    /// Signed heads checked against their owners' ledgers.
    pub heads_checked: u64,
    /// How long it took, ms.
    pub elapsed_ms: u64,
    /// Where its report is (audit.json, exceptions.csv, zones.csv).
    pub dir: PathBuf,
}

impl AuditCheck {
    /// The check of an audit's report written to `dir`.
    pub fn of(report: &peerwatt_audit::Report, dir: PathBuf) -> AuditCheck {
        let s = &report.summary;
        AuditCheck {
            clean: report.is_clean(),
            exceptions: report.found().into_iter().map(|(c, n)| (c.name().to_owned(), n)).collect(),
            ledgers_verified: s.ledgers_verified,
            trades_in_both_ledgers: s.trades.in_both_ledgers,
            settlements: s.settlements.settlements,
            settlements_recomputed: s.settlements.recomputed,
            heads_checked: s.heads.checked,
            elapsed_ms: s.elapsed_ms,
            dir,
        }
    }

    fn render(&self, out: &mut String) {
        let verdict = if self.clean {
            "clean".to_owned()
        } else {
            let found: Vec<String> = self.exceptions.iter().map(|(c, n)| format!("{c} {n}")).collect();
            format!("EXCEPTIONS: {} (see {})", found.join(", "), self.dir.join("exceptions.csv").display())
        };
        let _ = writeln!(
            out,
            "  audit (`peerwatt audit` over every ledger): {verdict}; {} ledgers, {} trades in both parties' ledgers, {} of {} settlements recomputed exactly from the signed statements, {} signed heads consistent, in {:.1} s",
            self.ledgers_verified,
            self.trades_in_both_ledgers,
            self.settlements_recomputed,
            self.settlements,
            self.heads_checked,
            self.elapsed_ms as f64 / 1000.0
        );
    }
}

/// How the nodes' own meter readings compare with the simulated meters.
#[derive(Debug, Clone, Default, Serialize)]
pub struct MeterCheck {
    /// MQTT messages the simulated meters published.
    pub messages: u64,
    /// Household intervals the nodes stated in signed meter statements in their ledgers (of
    /// those reported).
    pub intervals_measured: u64,
    /// Household intervals the nodes should have measured.
    pub intervals_expected: u64,
    /// Of those measured, how many the node marked complete.
    pub intervals_complete: u64,
    /// Largest difference in one interval between a node's figure and its simulated meter, Wh.
    pub max_interval_diff_wh: u64,
    /// Sum over households of |measured − simulated| import over the run, Wh.
    pub total_import_diff_wh: u64,
    /// The same for export.
    pub total_export_diff_wh: u64,
}

/// Wall-clock figures.
#[derive(Debug, Clone, Serialize)]
pub struct Timing {
    /// The whole run, seconds.
    pub wall_secs: f64,
    /// Up to the end of trading, seconds.
    pub trading_secs: f64,
}

/// The whole report (`report.json`).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The scenario run.
    pub scenario: Scenario,
    /// The first reported interval's start.
    pub start: String,
    /// The end of the last.
    pub end: String,
    /// The tariffs.
    pub tariffs: Tariffs,
    /// Households.
    pub households: Vec<HouseholdLine>,
    /// The community's KPIs.
    pub community: CommunityReport,
    /// Intervals.
    pub intervals: Vec<IntervalLine>,
    /// The ledgers.
    pub ledgers: LedgerCheck,
    /// The audit of the street, if it ran.
    pub audit: Option<AuditCheck>,
    /// The meters.
    pub meters: MeterCheck,
    /// Whether the network kept up with the clock.
    pub delivery: DeliveryCheck,
    /// Timings.
    pub timing: Timing,
    /// The network the nodes traded over.
    pub network: String,
    /// Where the nodes' data was kept (`--data-dir`), if it was.
    pub data_dir: Option<PathBuf>,
    /// Files written.
    pub files: Vec<PathBuf>,
}

/// What a report is built from.
#[derive(Debug, Clone)]
pub struct Parts<'a> {
    /// The scenario.
    pub scenario: &'a Scenario,
    /// Its times.
    pub timeline: &'a Timeline,
    /// The households.
    pub households: &'a [Household],
    /// Their simulated flows over the reported intervals.
    pub flows: &'a [Vec<Flows>],
    /// The ledgers.
    pub ledgers: &'a LedgerSummary,
    /// The audit of the street, if it ran.
    pub audit: Option<AuditCheck>,
    /// Meter messages published.
    pub meter_messages: u64,
    /// Every node's status counters, summed.
    pub node_counters: &'a peerwatt_node::Counters,
    /// Seconds the run took.
    pub wall_secs: f64,
    /// Seconds until trading ended.
    pub trading_secs: f64,
    /// `--data-dir`.
    pub data_dir: Option<PathBuf>,
}

impl Report {
    /// Settles, computes the KPIs and checks the meters.
    pub fn build(p: Parts<'_>) -> Result<Report, KpiError> {
        let s = p.scenario;
        let tariffs = Tariffs { feed_in: Price(s.feed_in_tariff), retail: Price(s.retail_tariff) };
        let first = p.timeline.first_interval().0;
        let count = p.flows.iter().map(Vec::len).max().unwrap_or(0) as u64;
        let index_of =
            |i: IntervalId| (i.0 >= first && i.0 < first + count).then(|| usize::try_from(i.0 - first).unwrap_or(0));
        let trades: Vec<TradeRecord> = p
            .ledgers
            .trades
            .iter()
            .filter_map(|t| {
                let interval = index_of(t.interval)?;
                Some(TradeRecord { interval, seller: t.seller, buyer: t.buyer, energy: t.energy, price: t.price })
            })
            .collect();
        let orders = order_records(&p, &index_of, tariffs);
        let settlements: Vec<Vec<Option<peerwatt_core::Settlement>>> = p
            .ledgers
            .settlements
            .iter()
            .map(|own| (0..count).map(|k| own.get(&IntervalId(first + k)).cloned()).collect())
            .collect();
        let kpis = kpi::compute(Inputs {
            tariffs,
            flows: p.flows,
            trades: &trades,
            orders: &orders,
            settlements: &settlements,
        })?;
        let both = p.ledgers.trades.iter().filter(|t| t.holders >= 2).count() as u64;
        let ledgers = LedgerCheck {
            all_verified: p.ledgers.nodes.iter().all(|n| n.problem.is_none()),
            nodes: p.ledgers.nodes.clone(),
            trades_in_both_ledgers: both,
            trades_in_one_ledger: p.ledgers.trades.len() as u64 - both,
            bad_trades: p.ledgers.bad_trades,
            trades_outside_run: (p.ledgers.trades.len() - trades.len()) as u64,
            orders_published: p.ledgers.orders.len() as u64,
        };
        let interval_start = |k: usize| Timestamp(p.timeline.start.0 + k as u64 * STEP_SECS * 1_000);
        Ok(Report {
            scenario: s.clone(),
            start: p.timeline.start.to_string(),
            end: p.timeline.end.to_string(),
            tariffs,
            households: p
                .households
                .iter()
                .cloned()
                .zip(kpis.households)
                .map(|(household, day)| HouseholdLine { household, day })
                .collect(),
            community: kpis.community,
            intervals: kpis
                .intervals
                .into_iter()
                .enumerate()
                .map(|(k, figures)| IntervalLine { start: interval_start(k).to_string(), figures })
                .collect(),
            ledgers,
            audit: p.audit.clone(),
            meters: meter_check(&p, first),
            delivery: DeliveryCheck::from_counters(p.node_counters, s),
            timing: Timing { wall_secs: p.wall_secs, trading_secs: p.trading_secs },
            network: s.network_used(),
            data_dir: p.data_dir.clone(),
            files: Vec::new(),
        })
    }

    /// Writes `report.json` and `day.svg` into `dir` (created if missing) and records them.
    pub fn write(&mut self, dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        let (json, svg) = (dir.join("report.json"), dir.join("day.svg"));
        self.files = vec![json.clone(), svg.clone()];
        std::fs::write(&svg, crate::chart::svg(self))?;
        let text = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        std::fs::write(&json, text)
    }

    /// The final report as the terminal shows it.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let c = &self.community;
        let _ = writeln!(
            out,
            "\nHouseholds ({} to {}):",
            self.start.get(..16).unwrap_or(""),
            self.end.get(..16).unwrap_or("")
        );
        let _ = writeln!(
            out,
            "  {:<9} {:<15} {:>6} {:>8} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>8}",
            "house", "profile", "PV kWp", "battery", "sold", "bought", "import", "export", "bill", "baseline", "saved"
        );
        for h in &self.households {
            let (who, d) = (&h.household, &h.day);
            let battery = who.battery.map_or("-".to_owned(), |b| format!("{} kWh", b.capacity_wh / 1_000));
            let _ = writeln!(
                out,
                "  {:<9} {:<15} {:>6} {:>8} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>8}",
                who.name,
                who.load.label(),
                if who.pv_wp == 0 {
                    "-".to_owned()
                } else {
                    format!("{}.{}", who.pv_wp / 1_000, who.pv_wp % 1_000 / 100)
                },
                battery,
                kwh(d.sold_wh),
                kwh(d.bought_wh),
                kwh(d.import_wh),
                kwh(d.export_wh),
                money(d.bill),
                money(d.baseline),
                money(d.savings),
            );
        }
        let _ = writeln!(
            out,
            "  (energy in kWh; money in currency units; bill = grid + neighbours + sharing, from the nodes' settlements; baseline = grid only)"
        );
        let _ = writeln!(out, "\nCommunity:");
        let _ = writeln!(
            out,
            "  load {}, PV {}, grid import {}, grid export {}",
            kwh(c.load_wh),
            kwh(c.pv_wh),
            kwh(c.import_wh),
            kwh(c.export_wh)
        );
        let _ = writeln!(
            out,
            "  traded locally {} in {} trades, trades in {} of {} intervals; delivered under contract {} ({} of contracted)",
            kwh(c.traded_wh),
            c.trades,
            c.intervals_with_trades,
            self.intervals.len(),
            kwh(c.delivered_wh),
            percent(c.delivered_of_traded_bp),
        );
        let _ = writeln!(
            out,
            "  shared ex post {}; local in all {} of the {} that could physically have been shared ({})",
            kwh(c.shared_wh),
            kwh(c.delivered_wh + c.shared_wh),
            kwh(c.shareable_wh),
            percent(c.local_of_shareable_bp),
        );
        let settled = self.households.len() as u64 * self.intervals.len() as u64 - c.unsettled_intervals;
        let _ = writeln!(
            out,
            "  settled by the nodes themselves (signed Settlement entries): {settled} of {} household intervals",
            self.households.len() as u64 * self.intervals.len() as u64,
        );
        let _ = writeln!(
            out,
            "  self-sufficiency {}, self-consumption {}, share of grid demand met by neighbours {}",
            percent(c.self_sufficiency_bp),
            percent(c.self_consumption_bp),
            percent(c.local_share_bp)
        );
        let _ =
            writeln!(out, "  bills {} instead of {}: savings {}", money(c.bills), money(c.baselines), money(c.savings));
        out.push_str(&self.render_hours());
        let _ = writeln!(
            out,
            "  market efficiency {} (welfare of the trades {} / optimal uniform-price clearing of the same orders {})",
            percent(c.efficiency_bp),
            money(welfare_money(c.welfare_trades)),
            money(welfare_money(c.welfare_optimal)),
        );
        let l = &self.ledgers;
        let verified = l.nodes.iter().filter(|n| n.problem.is_none()).count();
        let _ = writeln!(
            out,
            "  ledgers: {verified} of {} verified; {} trades in both parties' ledgers, {} in one only, {} bad; {} orders",
            l.nodes.len(),
            l.trades_in_both_ledgers,
            l.trades_in_one_ledger,
            l.bad_trades,
            l.orders_published
        );
        for n in l.nodes.iter().filter(|n| n.problem.is_some()) {
            let _ = writeln!(out, "    {}: {}", n.name, n.problem.as_deref().unwrap_or(""));
        }
        if let Some(audit) = &self.audit {
            audit.render(&mut out);
        }
        let m = &self.meters;
        let _ = writeln!(
            out,
            "  meters: {} MQTT messages; nodes stated {} of {} household intervals in signed meter statements, largest difference from the simulated meter {} Wh",
            m.messages, m.intervals_measured, m.intervals_expected, m.max_interval_diff_wh
        );
        out.push_str(&self.delivery.render(&self.scenario));
        let _ = writeln!(
            out,
            "  wall time {:.1} s ({:.1} s to the end of trading)",
            self.timing.wall_secs, self.timing.trading_secs
        );
        let _ = writeln!(out, "  transport: {}", self.network);
        for f in &self.files {
            let _ = writeln!(out, "  wrote {}", f.display());
        }
        if let Some(d) = &self.data_dir {
            let _ = writeln!(
                out,
                "  node data kept in {} (try `peerwatt ledger verify --data-dir {}/house-01`)",
                d.display(),
                d.display()
            );
        }
        out
    }
}

impl Report {
    /// Per hour: contracted, delivered under contract, shared ex post, and what could
    /// physically have been shared (from the nodes' settlements).
    fn render_hours(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "  hour from  contracted   delivered      shared   shareable   local");
        for rows in self.intervals.chunks(4) {
            let sum = |f: fn(&IntervalReport) -> u64| rows.iter().map(|r| f(&r.figures)).sum::<u64>();
            let (shareable, local) = (sum(|r| r.shareable_wh), sum(|r| r.delivered_wh + r.shared_wh));
            if shareable == 0 && sum(|r| r.traded_wh) == 0 {
                continue;
            }
            let start = rows.first().map_or("", |r| r.start.get(11..16).unwrap_or(""));
            let _ = writeln!(
                out,
                "  {start:<9} {:>11} {:>11} {:>11} {:>11} {:>7}",
                kwh(sum(|r| r.traded_wh)),
                kwh(sum(|r| r.delivered_wh)),
                kwh(sum(|r| r.shared_wh)),
                kwh(shareable),
                percent(kpi::basis_points(u128::from(local), u128::from(shareable), 10_000)),
            );
        }
        out
    }
}

/// One order record per household, interval and side: the most energy any of its orders
/// there held, at the reservation price its limits allow.
fn order_records(p: &Parts<'_>, index_of: &dyn Fn(IntervalId) -> Option<usize>, tariffs: Tariffs) -> Vec<OrderRecord> {
    let mut most: std::collections::BTreeMap<(usize, usize, u8), u64> = std::collections::BTreeMap::new();
    for o in &p.ledgers.orders {
        let Some(interval) = index_of(o.interval) else { continue };
        let e = most.entry((interval, o.household, o.side as u8)).or_default();
        *e = (*e).max(o.energy.0);
    }
    most.into_iter()
        .map(|((interval, household, side), energy)| {
            let h = &p.households[household];
            let (side, reservation) = if side == Side::Sell as u8 {
                (Side::Sell, h.min_sell_price.map_or(tariffs.feed_in, Price))
            } else {
                (Side::Buy, h.max_buy_price.map_or(tariffs.retail, Price))
            };
            OrderRecord { interval, household, side, energy: Wh(energy), reservation }
        })
        .collect()
}

/// Compares each node's measured intervals with its simulated meter.
fn meter_check(p: &Parts<'_>, first: u64) -> MeterCheck {
    let mut m = MeterCheck { messages: p.meter_messages, ..MeterCheck::default() };
    for (flows, measured) in p.flows.iter().zip(&p.ledgers.statements) {
        m.intervals_expected += flows.len() as u64;
        let (mut import, mut export) = (0i128, 0i128);
        for t in measured {
            let Some(f) = usize::try_from(t.interval.0.wrapping_sub(first)).ok().and_then(|k| flows.get(k)) else {
                continue;
            };
            m.intervals_measured += 1;
            m.intervals_complete += u64::from(t.complete);
            let di = t.imported.0.abs_diff(f.import_wh);
            let de = t.exported.0.abs_diff(f.export_wh);
            m.max_interval_diff_wh = m.max_interval_diff_wh.max(di).max(de);
            import += i128::from(t.imported.0) - i128::from(f.import_wh);
            export += i128::from(t.exported.0) - i128::from(f.export_wh);
        }
        m.total_import_diff_wh += u64::try_from(import.unsigned_abs()).unwrap_or(u64::MAX);
        m.total_export_diff_wh += u64::try_from(export.unsigned_abs()).unwrap_or(u64::MAX);
    }
    m
}

/// Welfare (Wh × micro-currency per kWh) as micro-currency.
pub fn welfare_money(w: u128) -> i64 {
    i64::try_from((w + 500) / 1_000).unwrap_or(i64::MAX)
}

/// Wh as kWh with three decimals.
pub fn kwh(wh: u64) -> String {
    format!("{}.{:03}", wh / 1_000, wh % 1_000)
}

/// Micro-currency as currency with two decimals (rounded half away from zero).
pub fn money(micro: i64) -> String {
    let cents = (micro.unsigned_abs() + 5_000) / 10_000;
    let sign = if micro < 0 && cents > 0 { "-" } else { "" };
    format!("{sign}{}.{:02}", cents / 100, cents % 100)
}

/// Micro-currency per kWh as currency per kWh with three decimals.
pub fn price(micro_per_kwh: u64) -> String {
    let milli = (micro_per_kwh + 500) / 1_000;
    format!("{}.{:03}", milli / 1_000, milli % 1_000)
}

/// Basis points as a percentage with one decimal.
pub fn percent(bp: u64) -> String {
    let tenths = (bp + 5) / 10;
    format!("{}.{} %", tenths / 10, tenths % 10)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_are_shown_rounded_the_documented_way() {
        assert_eq!(kwh(12_345), "12.345");
        assert_eq!(money(1_234_567), "1.23");
        assert_eq!(money(-1_235_000), "-1.24");
        assert_eq!(money(-4_000), "0.00");
        assert_eq!(price(190_000), "0.190");
        assert_eq!(percent(9_149), "91.5 %");
        assert_eq!(percent(10_000), "100.0 %");
        assert_eq!(welfare_money(1_500), 2);
    }
}
