//! Reading the nodes' ledgers back after a run: each is verified as an auditor would
//! (`peerwatt ledger verify`), and its own orders, agreed trades, meter statements and
//! settlements are collected. A trade counts once, however many ledgers hold it; the summary says whether both
//! parties hold it.

use std::collections::{BTreeMap, HashMap};

use peerwatt_core::{
    Decode, EntryKind, Hash, IntervalId, MeterStatement, Order, Price, Settlement, Side, Signed, Trade, Wh,
};
use peerwatt_ledger::LedgerReader;
use peerwatt_node::NodeConfig;
use serde::Serialize;
use thiserror::Error;

/// A ledger could not be opened or read at all (a ledger that fails verification is reported
/// in the summary instead).
#[derive(Debug, Error)]
#[error("{name}: {why}")]
pub struct LedgerReadError {
    /// The household.
    pub name: String,
    /// Why.
    pub why: String,
}

/// One node's ledger.
#[derive(Debug, Clone, Serialize)]
pub struct NodeLedger {
    /// The household.
    pub name: String,
    /// Entries.
    pub entries: u64,
    /// Signed tree heads.
    pub heads: u64,
    /// `None` when it verifies; the first problem otherwise.
    pub problem: Option<String>,
}

/// One agreed trade.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TradeSeen {
    /// Its digest.
    pub digest: Hash,
    /// The delivery interval.
    pub interval: IntervalId,
    /// The seller's household index.
    pub seller: usize,
    /// The buyer's.
    pub buyer: usize,
    /// Energy.
    pub energy: Wh,
    /// Price.
    pub price: Price,
    /// How many of its two parties' ledgers hold it.
    pub holders: u8,
}

/// One published order (a re-pricing is a new order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrderSeen {
    /// The household.
    pub household: usize,
    /// The interval.
    pub interval: IntervalId,
    /// Sell or buy.
    pub side: Side,
    /// Energy (0 cancels).
    pub energy: Wh,
    /// Limit price.
    pub price: Price,
}

/// A node's signed meter statement of one interval, its latest revision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatementSeen {
    /// The interval.
    pub interval: IntervalId,
    /// Its revision (0: never corrected).
    pub revision: u32,
    /// Imported from the grid.
    pub imported: Wh,
    /// Exported to the grid.
    pub exported: Wh,
    /// Whether readings covered the whole interval.
    pub complete: bool,
}

/// Everything read from the ledgers.
#[derive(Debug, Clone, Default)]
pub struct LedgerSummary {
    /// Per node, in household order.
    pub nodes: Vec<NodeLedger>,
    /// Every trade once.
    pub trades: Vec<TradeSeen>,
    /// Every order.
    pub orders: Vec<OrderSeen>,
    /// Trades whose signatures do not verify, or whose parties are not households of the run.
    pub bad_trades: u64,
    /// Per node, in household order: its meter statements, the latest revision of each
    /// interval, in interval order.
    pub statements: Vec<Vec<StatementSeen>>,
    /// Per node, in household order: its settlements, the latest revision of each interval.
    pub settlements: Vec<BTreeMap<IntervalId, Settlement>>,
}

/// One ledger verified as an auditor would: entries, signed heads, and the first problem if
/// it does not verify; `Err` if it cannot be opened.
type Verified = Result<(u64, u64, Option<String>), String>;

fn verify_one(cfg: &NodeConfig) -> Verified {
    let reader = LedgerReader::open_dir(&cfg.resolve(&cfg.node.ledger_dir)).map_err(|e| e.to_string())?;
    Ok(match reader.verify() {
        Ok(r) => (r.entries, r.heads, None),
        Err(e) => (reader.len().unwrap_or(0), 0, Some(e.to_string())),
    })
}

/// Every ledger verified, on as many threads as the machine has cores (verifying is signature
/// checks, and a 500-household street's ledgers took the report ten seconds one at a time).
fn verify_each(configs: &[&NodeConfig]) -> Vec<Verified> {
    let threads = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let chunk = configs.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let parts: Vec<_> = configs
            .chunks(chunk)
            .map(|part| (part.len(), scope.spawn(move || part.iter().map(|cfg| verify_one(cfg)).collect::<Vec<_>>())))
            .collect();
        parts
            .into_iter()
            .flat_map(|(len, handle)| {
                handle.join().unwrap_or_else(|_| vec![Err("the verification panicked".to_owned()); len])
            })
            .collect()
    })
}

/// Reads the ledgers of `configs`; `names[i]` is household `i`'s (peer id, name).
pub fn read(configs: &[&NodeConfig], names: &[(String, String)]) -> Result<LedgerSummary, LedgerReadError> {
    let index: HashMap<&str, usize> = names.iter().enumerate().map(|(i, (id, _))| (id.as_str(), i)).collect();
    let mut summary = LedgerSummary::default();
    let mut trades: HashMap<Hash, TradeSeen> = HashMap::new();
    let verified = verify_each(configs);
    for (i, (cfg, verified)) in configs.iter().zip(verified).enumerate() {
        let name = names.get(i).map_or_else(String::new, |n| n.1.clone());
        let fail = |why: String| LedgerReadError { name: name.clone(), why };
        let (entries, heads, problem) = verified.map_err(fail)?;
        let reader = LedgerReader::open_dir(&cfg.resolve(&cfg.node.ledger_dir)).map_err(|e| fail(e.to_string()))?;
        summary.nodes.push(NodeLedger { name: name.clone(), entries, heads, problem });
        let mut statements: BTreeMap<IntervalId, StatementSeen> = BTreeMap::new();
        let mut settlements: Vec<Settlement> = Vec::new();
        for seq in 0..reader.len().map_err(|e| fail(e.to_string()))? {
            let entry = reader.entry(seq).map_err(|e| fail(e.to_string()))?;
            let e = entry.body();
            match e.kind {
                EntryKind::OrderPublished => {
                    let Ok(order) = Signed::<Order>::from_bytes(&e.payload) else { continue };
                    let o = order.body();
                    let o = OrderSeen {
                        household: i,
                        interval: o.interval,
                        side: o.side,
                        energy: o.energy,
                        price: o.limit_price,
                    };
                    summary.orders.push(o);
                }
                EntryKind::TradeAgreed => {
                    let Ok(trade) = Signed::<Trade>::from_bytes(&e.payload) else { continue };
                    let digest = trade.digest();
                    if let Some(seen) = trades.get_mut(&digest) {
                        seen.holders += 1;
                        continue;
                    }
                    let party = |k: &peerwatt_core::PublicKey| index.get(k.to_string().as_str()).copied();
                    let terms = trade.body().request.body();
                    match (trade.verify(), party(trade.body().seller()), party(trade.body().buyer())) {
                        (Ok(()), Some(seller), Some(buyer)) if seller == i || buyer == i => {
                            let seen = TradeSeen {
                                digest,
                                interval: terms.interval,
                                seller,
                                buyer,
                                energy: terms.energy,
                                price: terms.price,
                                holders: 1,
                            };
                            trades.insert(digest, seen);
                        }
                        _ => summary.bad_trades += 1,
                    }
                }
                EntryKind::MeterStatement => {
                    let Ok(statement) = Signed::<MeterStatement>::from_bytes(&e.payload) else { continue };
                    let s = statement.body();
                    let seen = StatementSeen {
                        interval: s.interval,
                        revision: s.revision,
                        imported: s.figures.imported,
                        exported: s.figures.exported,
                        complete: s.figures.complete,
                    };
                    let latest = statements.entry(s.interval).or_insert(seen);
                    if seen.revision > latest.revision {
                        *latest = seen;
                    }
                }
                EntryKind::Settlement => {
                    let Ok(settlement) = Signed::<Settlement>::from_bytes(&e.payload) else { continue };
                    settlements.push(settlement.body().clone());
                }
                _ => {}
            }
        }
        summary.statements.push(statements.into_values().collect());
        summary.settlements.push(peerwatt_market::bill::latest(settlements));
    }
    summary.trades = trades.into_values().collect();
    summary.trades.sort_by_key(|t| (t.interval, t.digest));
    Ok(summary)
}
