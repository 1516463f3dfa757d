//! `peerwatt audit`: many nodes' ledgers checked against each other, for a grid operator's
//! auditor or a community's treasurer (docs/audit.md).
//!
//! - [`collect`]: every ledger verified (several at once) and its facts collected;
//! - [`trades`]: every trade in both parties' ledgers with the same bytes;
//! - [`settlements`]: every settlement recomputed from the signed statements and trades, and
//!   its arithmetic checked against what was metered;
//! - [`heads`]: signed tree heads against each other and against their owners' ledgers;
//! - [`meter_data`]: statements against the grid operator's official meter data (a generic
//!   CSV, or the Austrian EDA energy-data report, [`eda`]);
//! - [`zones`]: energy traded per zone and interval against the operator's limits;
//! - [`report`]: `audit.json`, `exceptions.csv`, `zones.csv` and the human summary.
//!
//! Pure apart from reading the ledgers: no network, no async.

pub mod collect;
pub mod eda;
pub mod exception;
pub mod heads;
pub mod meter_data;
pub mod report;
pub mod settlements;
#[cfg(feature = "test-utils")]
pub mod street;
pub mod trades;
pub mod zones;

use std::collections::BTreeMap;
use std::time::Instant;

use peerwatt_core::{Community, Encode};

pub use collect::Input;
use collect::LedgerFacts;
pub use exception::{Check, Evidence, Exception};
pub use report::{Report, Summary};
pub use zones::Limits;

/// The audit could not run (exit code 2): distinct from what it found.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// A ledger could not be opened (missing, unreadable, or in use by a running node).
    #[error("cannot open the ledger at {place}: {why}")]
    Open {
        /// Where.
        place: String,
        /// Why.
        why: String,
    },
    /// Nothing to audit.
    #[error("no ledgers to audit")]
    Nothing,
}

/// What an audit runs with besides the ledgers.
#[derive(Debug, Clone)]
pub struct Options {
    /// The community whose rules the settlements apply.
    pub community: Community,
    /// Zone limits, if the operator set any.
    pub limits: Option<Limits>,
    /// Official meter data to compare the statements with, if any.
    pub meter_data: Option<OfficialData>,
    /// Threads to read ledgers on.
    pub threads: usize,
}

impl Options {
    /// Options for `community` with no limits, on every core.
    pub fn new(community: Community) -> Options {
        let threads = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        Options { community, limits: None, meter_data: None, threads }
    }
}

/// The grid operator's meter data, whose points are whose, and how far a statement may be off.
#[derive(Debug, Clone)]
pub struct OfficialData {
    /// The values.
    pub data: meter_data::MeterData,
    /// Members' metering points.
    pub map: meter_data::PointMap,
    /// Largest difference not reported, Wh per interval and direction.
    pub tolerance_wh: u64,
}

/// The ledgers that verified, one per node, and the community they are audited under.
pub struct Audited<'a> {
    /// By owner's key bytes.
    pub ledgers: BTreeMap<[u8; 32], &'a LedgerFacts>,
    /// The community.
    pub community: &'a Community,
}

/// Audits `inputs`.
pub fn audit(inputs: &[Input], options: &Options) -> Result<Report, AuditError> {
    if inputs.is_empty() {
        return Err(AuditError::Nothing);
    }
    let started = Instant::now();
    let reads = collect::read_all(inputs, options.threads)?;
    let mut exceptions: Vec<Exception> = Vec::new();
    let mut facts: Vec<&LedgerFacts> = Vec::new();
    for read in &reads {
        exceptions.extend(read.exceptions.iter().cloned());
        facts.extend(read.facts.as_ref());
    }
    let (ledgers, duplicates) = one_per_node(&facts, &mut exceptions);
    let audited = Audited { ledgers, community: &options.community };
    let trades = trades::check(&audited, &mut exceptions);
    let statements = settlements::StatementIndex::of(&audited, &mut exceptions);
    let settled = settlements::check(&audited, &statements, &mut exceptions);
    let heads = heads::check(&audited, &mut exceptions);
    let official = options
        .meter_data
        .as_ref()
        .map(|o| meter_data::check(&audited, &o.data, &o.map, o.tolerance_wh, &mut exceptions));
    let zones = options.limits.as_ref().map(|l| zones::check(&audited, l, &mut exceptions)).unwrap_or_default();
    exceptions.sort_by(|a, b| (a.check, &a.node, a.interval, &a.trade).cmp(&(b.check, &b.node, b.interval, &b.trade)));
    let summary = Summary {
        community: options.community.name.clone(),
        ledgers: reads.len() as u64,
        ledgers_verified: facts.len() as u64,
        duplicate_ledgers: duplicates,
        entries: facts.iter().map(|f| f.entries).sum(),
        orders: facts.iter().map(|f| f.orders).sum(),
        trades,
        settlements: settled,
        heads,
        meter_data: official,
        zone_rows: zones.len() as u64,
        exceptions: Report::count_by_check(&exceptions),
        elapsed_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    };
    Ok(Report { summary, exceptions, zones, interval: options.community.interval })
}

/// One ledger per node: of two of the same node, the longer, if the shorter is its beginning
/// (an earlier export); otherwise the node kept two histories, an exception. Returns how many
/// were set aside.
fn one_per_node<'a>(
    facts: &[&'a LedgerFacts],
    exceptions: &mut Vec<Exception>,
) -> (BTreeMap<[u8; 32], &'a LedgerFacts>, u64) {
    let mut ledgers: BTreeMap<[u8; 32], &LedgerFacts> = BTreeMap::new();
    let mut duplicates = 0;
    for f in facts {
        let Some(held) = ledgers.get(&f.owner.to_bytes()).copied() else {
            ledgers.insert(f.owner.to_bytes(), f);
            continue;
        };
        duplicates += 1;
        let (short, long) = if held.leaves.len() <= f.leaves.len() { (held, *f) } else { (*f, held) };
        if long.leaves[..short.leaves.len()] != short.leaves[..] {
            let mut e = Exception::new(
                Check::LedgerForked,
                format!("{} to begin with the {} entries of {}", long.source, short.leaves.len(), short.source),
                "the two ledgers differ",
            )
            .node(f.owner);
            for l in [short, long] {
                if let Some(h) = l.heads.iter().max_by_key(|h| h.body().size) {
                    e = e.evidence(format!("the latest signed head of {}", l.source), &h.to_bytes());
                }
            }
            exceptions.push(e);
        }
        ledgers.insert(f.owner.to_bytes(), long);
    }
    (ledgers, duplicates)
}
