//! A household's statement of account over a range of intervals, from its own signed
//! settlements alone (`peerwatt statement`, docs/settlement.md "A household's statement"):
//! per interval and in total, what its meter measured, what it contracted and what was
//! delivered, what it shared ex post, what was left to the grid, and the money of each.
//! Pure: the caller reads the ledger.

use std::collections::BTreeMap;

use peerwatt_core::{IntervalId, Money, Settlement, Side, Timestamp, UnitsError, Wh};
use serde::{Deserialize, Serialize};

/// One interval of a household's statement (or the sum of many).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Line {
    /// Imported from the grid (the household's signed statement).
    pub imported_wh: u64,
    /// Exported to the grid.
    pub exported_wh: u64,
    /// Bought under contract.
    pub bought_wh: u64,
    /// Sold under contract.
    pub sold_wh: u64,
    /// Of what it bought, delivered.
    pub delivered_bought_wh: u64,
    /// Of what it sold, delivered.
    pub delivered_sold_wh: u64,
    /// Imported energy shared to it ex post.
    pub shared_import_wh: u64,
    /// Exported energy shared from it ex post.
    pub shared_export_wh: u64,
    /// Import left to the grid.
    pub grid_import_wh: u64,
    /// Export left to the grid.
    pub grid_export_wh: u64,
    /// Paid for delivered purchases (micro-currency).
    pub local_cost: i64,
    /// Paid for delivered sales.
    pub local_credit: i64,
    /// Paid for energy shared to it.
    pub shared_cost: i64,
    /// Paid for energy shared from it.
    pub shared_credit: i64,
    /// Paid to the grid for import.
    pub grid_cost: i64,
    /// Paid by the grid for export.
    pub grid_credit: i64,
    /// The interval's cost in all: the six amounts above, netted (negative: it earned).
    pub cost: i64,
    /// What the grid alone would have cost.
    pub baseline: i64,
    /// `baseline − cost`.
    pub savings: i64,
}

impl Line {
    /// The line of one settlement. Its amounts are recomputed from its energies and prices
    /// and must give its recorded cost and baseline (else the settlement is inconsistent).
    pub fn of(s: &Settlement) -> Result<Line, BillError> {
        let at = |wh: Wh, p| wh.cost_at(p).map(|Money(m)| m);
        let side = |side: Side| s.trades.iter().filter(move |t| t.side == side);
        let mut line = Line {
            imported_wh: s.imported.0,
            exported_wh: s.exported.0,
            bought_wh: side(Side::Buy).map(|t| t.energy.0).sum(),
            sold_wh: side(Side::Sell).map(|t| t.energy.0).sum(),
            delivered_bought_wh: side(Side::Buy).map(|t| t.delivered.0).sum(),
            delivered_sold_wh: side(Side::Sell).map(|t| t.delivered.0).sum(),
            shared_import_wh: s.shared_import.0,
            shared_export_wh: s.shared_export.0,
            grid_import_wh: s.grid_import.0,
            grid_export_wh: s.grid_export.0,
            local_cost: side(Side::Buy).map(|t| t.money.0).sum(),
            local_credit: side(Side::Sell).map(|t| t.money.0).sum(),
            shared_cost: at(s.shared_import, s.sharing_price)?,
            shared_credit: at(s.shared_export, s.sharing_price)?,
            grid_cost: at(s.grid_import, s.retail)?,
            grid_credit: at(s.grid_export, s.feed_in)?,
            cost: s.cost.0,
            baseline: s.baseline.0,
            savings: s.baseline.0.saturating_sub(s.cost.0),
        };
        let netted = line.grid_cost - line.grid_credit + line.local_cost - line.local_credit + line.shared_cost
            - line.shared_credit;
        let baseline = at(s.imported, s.retail)? - at(s.exported, s.feed_in)?;
        if netted != line.cost || baseline != line.baseline {
            return Err(BillError::Inconsistent(s.interval));
        }
        line.savings = line.baseline - line.cost;
        Ok(line)
    }

    fn add(&mut self, o: &Line) {
        self.imported_wh += o.imported_wh;
        self.exported_wh += o.exported_wh;
        self.bought_wh += o.bought_wh;
        self.sold_wh += o.sold_wh;
        self.delivered_bought_wh += o.delivered_bought_wh;
        self.delivered_sold_wh += o.delivered_sold_wh;
        self.shared_import_wh += o.shared_import_wh;
        self.shared_export_wh += o.shared_export_wh;
        self.grid_import_wh += o.grid_import_wh;
        self.grid_export_wh += o.grid_export_wh;
        self.local_cost += o.local_cost;
        self.local_credit += o.local_credit;
        self.shared_cost += o.shared_cost;
        self.shared_credit += o.shared_credit;
        self.grid_cost += o.grid_cost;
        self.grid_credit += o.grid_credit;
        self.cost += o.cost;
        self.baseline += o.baseline;
        self.savings += o.savings;
    }
}

/// A statement could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BillError {
    /// An amount does not fit its unit.
    #[error(transparent)]
    Units(#[from] UnitsError),
    /// A settlement's recorded cost or baseline is not what its own figures give.
    #[error("the settlement of interval {} does not add up", .0.0)]
    Inconsistent(IntervalId),
}

/// One interval of the statement.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IntervalLine {
    /// The interval.
    pub interval: u64,
    /// The settlement's revision (the latest).
    pub revision: u32,
    /// Whether every counterparty's statement was in (else provisional).
    pub complete: bool,
    /// The figures.
    #[serde(flatten)]
    pub line: Line,
}

/// A household's statement over a range.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Bill {
    /// Per interval, in order.
    pub intervals: Vec<IntervalLine>,
    /// The sum.
    pub total: Line,
}

/// The latest revision of each interval's settlement among `settlements` (every revision, in
/// any order), by interval.
pub fn latest(settlements: impl IntoIterator<Item = Settlement>) -> BTreeMap<IntervalId, Settlement> {
    let mut latest: BTreeMap<IntervalId, Settlement> = BTreeMap::new();
    for s in settlements {
        if latest.get(&s.interval).is_none_or(|held| held.revision < s.revision) {
            latest.insert(s.interval, s);
        }
    }
    latest
}

/// A running statement: the line of the latest revision of each interval's settlement, kept
/// as settlements are recorded (a node's status sums it every second without reading its
/// ledger again).
#[derive(Debug, Clone, Default)]
pub struct Tally {
    lines: BTreeMap<IntervalId, (u32, Line)>,
}

impl Tally {
    /// Takes in a settlement: it replaces an earlier revision of its interval, and is
    /// ignored beside a later one.
    pub fn add(&mut self, s: &Settlement) -> Result<(), BillError> {
        if self.lines.get(&s.interval).is_some_and(|(revision, _)| *revision >= s.revision) {
            return Ok(());
        }
        let line = Line::of(s)?;
        self.lines.insert(s.interval, (s.revision, line));
        Ok(())
    }

    /// The sum over the intervals from `from` (inclusive) to `to` (exclusive).
    pub fn total(&self, from: IntervalId, to: IntervalId) -> Line {
        let mut sum = Line::default();
        if from < to {
            self.lines.range(from..to).for_each(|(_, (_, line))| sum.add(line));
        }
        sum
    }

    /// Intervals settled.
    pub fn len(&self) -> usize {
        self.lines.len()
    }

    /// Whether nothing is settled yet.
    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }
}

/// The statement of `settlements` (the latest revision of each interval, in any order).
pub fn bill<'a>(settlements: impl IntoIterator<Item = &'a Settlement>) -> Result<Bill, BillError> {
    let mut bill = Bill::default();
    for s in settlements {
        let line = Line::of(s)?;
        bill.total.add(&line);
        bill.intervals.push(IntervalLine { interval: s.interval.0, revision: s.revision, complete: s.complete, line });
    }
    bill.intervals.sort_by_key(|l| l.interval);
    Ok(bill)
}
/// kWh with three decimals (exact: the energies are whole Wh).
pub fn kwh(wh: u64) -> String {
    format!("{}.{:03}", wh / 1_000, wh % 1_000)
}

/// Currency units with six decimals (exact: money is in micro-currency).
pub fn money(m: i64) -> String {
    let sign = if m < 0 { "-" } else { "" };
    format!("{sign}{}.{:06}", m.unsigned_abs() / 1_000_000, m.unsigned_abs() % 1_000_000)
}

/// The CSV columns: the statement's own, then the names communities exchange with grid
/// operators (the OBIS-style codes of Austrian energy communities, docs/settlement.md).
pub const CSV_HEADER: &str = "interval_start,interval_end,revision,complete,imported_kwh,exported_kwh,bought_kwh,sold_kwh,\
delivered_bought_kwh,delivered_sold_kwh,shared_import_kwh,shared_export_kwh,grid_import_kwh,grid_export_kwh,\
local_cost,local_credit,shared_cost,shared_credit,grid_cost,grid_credit,cost,baseline,savings,\
1-1:1.9.0 G.01 consumption,1-1:2.9.0 G.02 community share,1-1:2.9.0 G.03 self-coverage,\
1-1:2.9.0 G.01 generation,1-1:2.9.0 P.01 surplus to grid";

fn csv_fields(l: &Line) -> String {
    let community_share = l.delivered_bought_wh + l.shared_import_wh;
    let fields = [
        kwh(l.imported_wh),
        kwh(l.exported_wh),
        kwh(l.bought_wh),
        kwh(l.sold_wh),
        kwh(l.delivered_bought_wh),
        kwh(l.delivered_sold_wh),
        kwh(l.shared_import_wh),
        kwh(l.shared_export_wh),
        kwh(l.grid_import_wh),
        kwh(l.grid_export_wh),
        money(l.local_cost),
        money(l.local_credit),
        money(l.shared_cost),
        money(l.shared_credit),
        money(l.grid_cost),
        money(l.grid_credit),
        money(l.cost),
        money(l.baseline),
        money(l.savings),
        kwh(l.imported_wh),
        kwh(community_share),
        kwh(community_share.min(l.imported_wh)),
        kwh(l.exported_wh),
        kwh(l.grid_export_wh),
    ];
    fields.join(",")
}

/// The statement as CSV: a row per interval (`interval_ms` long) and a total row.
pub fn csv(b: &Bill, ms: u64) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(out, "{CSV_HEADER}");
    for i in &b.intervals {
        let (start, end) = (Timestamp(i.interval * ms), Timestamp((i.interval + 1) * ms));
        let _ = writeln!(out, "{start},{end},{},{},{}", i.revision, i.complete, csv_fields(&i.line));
    }
    let (first, last) = match (b.intervals.first(), b.intervals.last()) {
        (Some(f), Some(l)) => (Timestamp(f.interval * ms).to_string(), Timestamp((l.interval + 1) * ms).to_string()),
        _ => (String::new(), String::new()),
    };
    let _ = writeln!(out, "{first},{last},total,{},{}", b.intervals.iter().all(|i| i.complete), csv_fields(&b.total));
    out
}

/// The range `[from, to)` in ms since the epoch of a statement asked for by `month`
/// (`YYYY-MM`) or by `from`/`to` (`YYYY-MM-DD` or `YYYY-MM-DDTHH:MMZ`, UTC; open-ended if absent).
pub fn range(month: Option<&str>, from: Option<&str>, to: Option<&str>) -> Result<(u64, u64), String> {
    let day = |text: &str| Timestamp::parse_utc(text).map(|t| t.0).ok_or_else(|| format!("{text:?} is not a date"));
    if let Some(month) = month {
        let first = Timestamp::parse_date(&format!("{month}-01")).ok_or_else(|| format!("{month:?} is not a month"))?;
        let (y, m) = month.split_once('-').unwrap_or(("", ""));
        let (y, m): (u64, u64) = (y.parse().unwrap_or(0), m.parse().unwrap_or(0));
        let next = if m == 12 { format!("{:04}-01-01", y + 1) } else { format!("{y:04}-{:02}-01", m + 1) };
        return Ok((first.0, day(&next)?));
    }
    let from = from.map(day).transpose()?.unwrap_or(0);
    let to = to.map(day).transpose()?.unwrap_or(u64::MAX);
    Ok((from, to))
}

/// When the UTC month that contains `ms` (ms since the epoch) began.
pub fn month_start(ms: u64) -> u64 {
    let month = Timestamp(ms).to_string();
    Timestamp::parse_date(&format!("{}-01", &month[..7])).map_or(0, |t| t.0)
}

/// The statement of the settlements in `[from, to)` (by interval start, `ms` long intervals).
pub fn statement_of(
    settlements: impl IntoIterator<Item = Settlement>,
    from: u64,
    to: u64,
    ms: u64,
) -> Result<Bill, BillError> {
    let in_range = settlements.into_iter().filter(|s| (from..to).contains(&s.interval.0.saturating_mul(ms)));
    bill(latest(in_range).values())
}

#[cfg(test)]
mod tests {
    use super::*;
    use peerwatt_core::{CommunityId, Hash, Price};

    /// A consistent settlement of `imported` Wh, shared `shared` of it at 200,000 per kWh, the
    /// rest from the grid at 300,000.
    fn settlement(interval: u64, revision: u32, imported: u64, shared: u64) -> Settlement {
        let money = |wh: u64, p: u64| Wh(wh).cost_at(Price(p)).unwrap();
        Settlement {
            community: CommunityId(Hash([0; 32])),
            interval: IntervalId(interval),
            revision,
            complete: true,
            statement: Hash([0; 32]),
            members: 2,
            inputs: Hash([0; 32]),
            imported: Wh(imported),
            exported: Wh(0),
            trades: Vec::new(),
            shared_import: Wh(shared),
            shared_export: Wh(0),
            sharing_price: Price(200_000),
            grid_import: Wh(imported - shared),
            grid_export: Wh(0),
            retail: Price(300_000),
            feed_in: Price(80_000),
            cost: Money(money(imported - shared, 300_000).0 + money(shared, 200_000).0),
            baseline: money(imported, 300_000),
            created_at: Timestamp(0),
        }
    }

    #[test]
    fn a_tally_keeps_the_latest_revision_of_each_interval_and_sums_a_range() {
        let mut tally = Tally::default();
        tally.add(&settlement(10, 0, 1_000, 0)).unwrap();
        tally.add(&settlement(10, 1, 1_000, 400)).unwrap();
        tally.add(&settlement(10, 0, 1_000, 0)).unwrap(); // an older revision, late: ignored
        tally.add(&settlement(11, 0, 500, 500)).unwrap();
        assert_eq!(tally.len(), 2);
        let all = tally.total(IntervalId(0), IntervalId(u64::MAX));
        assert_eq!((all.imported_wh, all.shared_import_wh), (1_500, 900));
        // 900 Wh shared at 200,000 instead of 300,000 per kWh: 90,000 micro-currency saved.
        assert_eq!(all.savings, 90_000);
        assert_eq!(tally.total(IntervalId(11), IntervalId(12)).imported_wh, 500);
        assert_eq!(tally.total(IntervalId(12), IntervalId(11)), Line::default());
        // The same as the statement of the same settlements.
        let statement = statement_of(
            [settlement(10, 0, 1_000, 0), settlement(10, 1, 1_000, 400), settlement(11, 0, 500, 500)],
            0,
            u64::MAX,
            1,
        )
        .unwrap();
        assert_eq!(statement.total, all);
    }

    #[test]
    fn a_month_starts_at_midnight_utc_of_its_first_day() {
        // 2024-06-15T13:00:00Z → 2024-06-01T00:00:00Z; 2024-12-31T23:59:59.999Z → 2024-12-01.
        assert_eq!(month_start(1_718_456_400_000), 1_717_200_000_000);
        assert_eq!(month_start(1_735_689_599_999), 1_733_011_200_000);
        assert_eq!(month_start(1_733_011_200_000), 1_733_011_200_000);
    }
}
