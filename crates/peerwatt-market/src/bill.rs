//! A household's statement of account over a range of intervals, from its own signed
//! settlements alone (`peerwatt statement`, docs/settlement.md "A household's statement"):
//! per interval and in total, what its meter measured, what it contracted and what was
//! delivered, what it shared ex post, what was left to the grid, and the money of each.
//! Pure: the caller reads the ledger.

use std::collections::BTreeMap;

use peerwatt_core::{IntervalId, Money, Settlement, Side, UnitsError, Wh};
use serde::Serialize;

/// One interval of a household's statement (or the sum of many).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
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
