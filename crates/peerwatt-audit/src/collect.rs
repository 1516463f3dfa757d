//! Reading ledgers: each one verified entry by entry (several at once, one per thread), and
//! what the cross-ledger checks need collected on the way: its trades, meter statements,
//! settlements, the heads it signed and witnessed, and its Merkle leaves (to compute the root
//! at any size a witnessed head names). A ledger that does not verify is one exception and
//! takes no further part: nothing in it can be relied on.

use std::collections::HashSet;
use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

use peerwatt_core::{
    CommunityId, Decode, Encode, EntryKind, Hash, IntervalId, LedgerEntry, MeterStatement, Price, PublicKey,
    Settlement, Side, Signed, Timestamp, Trade, TreeHead, Wh,
};
use peerwatt_ledger::{LedgerReader, SledStore, Visit, verify_export_visiting};
use peerwatt_market::Stated;
use peerwatt_market::statements::Kept;

use crate::AuditError;
use crate::exception::{Check, Exception};

/// One ledger to audit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// An export file (`peerwatt ledger export`).
    Export(PathBuf),
    /// A ledger database directory (a stopped node's `ledger/`).
    Store(PathBuf),
}

impl Input {
    /// Where it is, for reports.
    pub fn source(&self) -> String {
        match self {
            Input::Export(p) | Input::Store(p) => p.display().to_string(),
        }
    }
}

/// A trade as one of its parties' ledgers records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TradeFact {
    /// Position in the ledger.
    pub seq: u64,
    /// The signed trade's digest.
    pub digest: Hash,
    /// The taker's signed request's digest: the trade's identity, whatever bytes a party holds.
    pub request: Hash,
    /// The community.
    pub community: CommunityId,
    /// The seller's key.
    pub seller: [u8; 32],
    /// The buyer's key.
    pub buyer: [u8; 32],
    /// The delivery interval.
    pub interval: IntervalId,
    /// Energy.
    pub energy: Wh,
    /// Price.
    pub price: Price,
    /// When the maker accepted it.
    pub accepted_at: Timestamp,
    /// The whole signed trade, encoded (evidence).
    pub bytes: Vec<u8>,
}

impl TradeFact {
    /// The other party of `me`, and `me`'s side.
    pub fn seen_by(&self, me: &[u8; 32]) -> ([u8; 32], Side) {
        if *me == self.seller { (self.buyer, Side::Sell) } else { (self.seller, Side::Buy) }
    }
}

/// A meter statement as its node's ledger records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatementFact {
    /// Position in the ledger.
    pub seq: u64,
    /// The community.
    pub community: CommunityId,
    /// The interval.
    pub interval: IntervalId,
    /// When it was made.
    pub created_at: Timestamp,
    /// What settlement reads of it.
    pub kept: Kept,
    /// The signed statement, encoded (evidence).
    pub bytes: Vec<u8>,
}

/// A settlement as its node's ledger records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettlementFact {
    /// Position in the ledger.
    pub seq: u64,
    /// The settlement.
    pub body: Settlement,
    /// The signed settlement, encoded (evidence).
    pub bytes: Vec<u8>,
}

/// What one verified ledger holds that the cross-ledger checks read.
#[derive(Debug)]
pub struct LedgerFacts {
    /// Where it came from.
    pub source: String,
    /// Its owner.
    pub owner: PublicKey,
    /// Entries.
    pub entries: u64,
    /// The time of its last entry.
    pub last_time: Option<Timestamp>,
    /// Every entry's Merkle leaf hash, in order.
    pub leaves: Vec<Hash>,
    /// The tree heads it signed (verified against its entries).
    pub heads: Vec<Signed<TreeHead>>,
    /// Its trades.
    pub trades: Vec<TradeFact>,
    /// Its meter statements, every revision.
    pub statements: Vec<StatementFact>,
    /// Its settlements, every revision.
    pub settlements: Vec<SettlementFact>,
    /// Other nodes' tree heads it witnessed (signatures verified).
    pub witnessed: Vec<Signed<TreeHead>>,
    /// Orders it published.
    pub orders: u64,
}

/// A ledger as read: its facts, or why it cannot be relied on; and its entries' exceptions.
#[derive(Debug)]
pub struct Read {
    /// Where it came from.
    pub source: String,
    /// The facts, if it verified.
    pub facts: Option<LedgerFacts>,
    /// Exceptions found in it alone.
    pub exceptions: Vec<Exception>,
}

/// Nested signatures already verified, shared by the reading threads: a trade is in two
/// ledgers and a head is witnessed by many, and each is checked once.
#[derive(Debug, Default)]
pub struct Verified {
    digests: Mutex<HashSet<Hash>>,
}

impl Verified {
    /// Runs `check` unless a message with `digest` passed it before; records a pass.
    fn once<E>(&self, digest: Hash, check: impl FnOnce() -> Result<(), E>) -> Result<(), E> {
        if self.digests.lock().unwrap_or_else(PoisonError::into_inner).contains(&digest) {
            return Ok(());
        }
        check()?;
        self.digests.lock().unwrap_or_else(PoisonError::into_inner).insert(digest);
        Ok(())
    }
}

/// The visitor that collects a ledger's facts while it is verified.
struct Collector<'a> {
    owner: Option<PublicKey>,
    leaves: Vec<Hash>,
    heads: Vec<Signed<TreeHead>>,
    trades: Vec<TradeFact>,
    statements: Vec<StatementFact>,
    settlements: Vec<SettlementFact>,
    witnessed: Vec<Signed<TreeHead>>,
    orders: u64,
    exceptions: Vec<Exception>,
    verified: &'a Verified,
}

impl Visit for Collector<'_> {
    fn head(&mut self, head: &Signed<TreeHead>) {
        self.owner.get_or_insert(*head.signer());
        self.heads.push(head.clone());
    }

    fn entry(&mut self, entry: &Signed<LedgerEntry>, leaf: Hash) {
        let owner = *self.owner.get_or_insert(*entry.signer());
        self.leaves.push(leaf);
        let e = entry.body();
        let refused = match e.kind {
            EntryKind::OrderPublished => {
                self.orders += 1;
                Ok(())
            }
            EntryKind::TradeAgreed => self.trade(&owner, e.seq, &e.payload),
            EntryKind::MeterStatement => self.statement(&owner, e.seq, &e.payload),
            EntryKind::Settlement => self.settlement(&owner, e.seq, &e.payload),
            EntryKind::WitnessedHead => self.witnessed_head(&owner, &e.payload),
            EntryKind::ConfigChange => Ok(()),
        };
        if let Err(why) = refused {
            let observed = format!("entry {} ({}): {why}", e.seq, e.kind.name());
            self.exceptions.push(
                Exception::new(Check::EntryInvalid, "a valid message of the ledger's owner", observed)
                    .node(owner)
                    .evidence(format!("entry {}", e.seq), &entry.to_bytes()),
            );
        }
    }
}

impl Collector<'_> {
    fn trade(&mut self, owner: &PublicKey, seq: u64, payload: &[u8]) -> Result<(), String> {
        let (trade, digest) = Signed::<Trade>::from_bytes_with_digest(payload).map_err(|e| e.to_string())?;
        self.verified.once(digest, || trade.verify()).map_err(|e| e.to_string())?;
        let (seller, buyer) = (trade.body().seller().to_bytes(), trade.body().buyer().to_bytes());
        if ![seller, buyer].contains(&owner.to_bytes()) {
            return Err("a trade between two other nodes".into());
        }
        let request = &trade.body().request;
        let terms = request.body();
        self.trades.push(TradeFact {
            seq,
            digest,
            request: request.digest(),
            community: terms.community,
            seller,
            buyer,
            interval: terms.interval,
            energy: terms.energy,
            price: terms.price,
            accepted_at: trade.body().accepted_at,
            bytes: payload.to_vec(),
        });
        Ok(())
    }

    fn statement(&mut self, owner: &PublicKey, seq: u64, payload: &[u8]) -> Result<(), String> {
        let statement = own_message::<MeterStatement>(owner, payload)?;
        // The digest of the bytes at hand, not of the statement encoded again.
        let kept = Kept::from(Stated::of(&statement, Hash::of(payload)));
        let s = statement.body();
        self.statements.push(StatementFact {
            seq,
            community: s.community,
            interval: s.interval,
            created_at: s.created_at,
            kept,
            bytes: payload.to_vec(),
        });
        Ok(())
    }

    fn settlement(&mut self, owner: &PublicKey, seq: u64, payload: &[u8]) -> Result<(), String> {
        let settlement = own_message::<Settlement>(owner, payload)?;
        self.settlements.push(SettlementFact { seq, body: settlement.body().clone(), bytes: payload.to_vec() });
        Ok(())
    }

    fn witnessed_head(&mut self, owner: &PublicKey, payload: &[u8]) -> Result<(), String> {
        let (head, digest) = Signed::<TreeHead>::from_bytes_with_digest(payload).map_err(|e| e.to_string())?;
        if head.signer() == owner {
            return Err("a head of the ledger's owner recorded as witnessed".into());
        }
        self.verified.once(digest, || head.verify()).map_err(|e| e.to_string())?;
        self.witnessed.push(head);
        Ok(())
    }
}

/// Decodes a message the ledger's owner signed and checks that the owner signed it. Its
/// signature is not checked again: the entry's signature, by the same key and already
/// verified, covers these bytes (a quarter of the audit's time went on checking them twice).
fn own_message<T: peerwatt_core::Message>(owner: &PublicKey, payload: &[u8]) -> Result<Signed<T>, String> {
    let message = Signed::<T>::from_bytes(payload).map_err(|e| e.to_string())?;
    if message.signer() != owner {
        return Err(format!("signed by {}, not by the ledger's owner", message.signer()));
    }
    Ok(message)
}

/// Reads one ledger. `Err` only if it cannot be opened at all (the audit cannot run).
pub fn read(input: &Input, verified: &Verified) -> Result<Read, AuditError> {
    let mut c = Collector {
        owner: None,
        leaves: Vec::new(),
        heads: Vec::new(),
        trades: Vec::new(),
        statements: Vec::new(),
        settlements: Vec::new(),
        witnessed: Vec::new(),
        orders: 0,
        exceptions: Vec::new(),
        verified,
    };
    let source = input.source();
    let open = |e: String| AuditError::Open { place: source.clone(), why: e };
    let walked = match input {
        Input::Export(path) => verify_export_visiting(File::open(path).map_err(|e| open(e.to_string()))?, &mut c),
        Input::Store(path) => {
            if !SledStore::exists(path) {
                return Err(open("no ledger database here".into()));
            }
            let reader = LedgerReader::open_dir(path).map_err(|e| open(e.to_string()))?;
            reader.verify_visiting(&mut c)
        }
    };
    let report = match walked {
        Ok(report) => report,
        Err(error) => {
            let mut e = Exception::new(Check::LedgerInvalid, "a ledger that verifies", error.to_string())
                .evidence(format!("the ledger at {source}"), &[]);
            if let Some(owner) = c.owner {
                e = e.node(owner);
            }
            return Ok(Read { source, facts: None, exceptions: vec![e] });
        }
    };
    let facts = LedgerFacts {
        source: source.clone(),
        owner: report.owner,
        entries: report.entries,
        last_time: report.last_time,
        leaves: c.leaves,
        heads: c.heads,
        trades: c.trades,
        statements: c.statements,
        settlements: c.settlements,
        witnessed: c.witnessed,
        orders: c.orders,
    };
    Ok(Read { source, facts: Some(facts), exceptions: c.exceptions })
}

/// Reads every input on `threads` threads; results in input order.
pub fn read_all(inputs: &[Input], threads: usize) -> Result<Vec<Read>, AuditError> {
    let verified = Verified::default();
    let next = AtomicUsize::new(0);
    let results: Vec<Mutex<Option<Result<Read, AuditError>>>> = inputs.iter().map(|_| Mutex::new(None)).collect();
    std::thread::scope(|scope| {
        for _ in 0..threads.clamp(1, inputs.len().max(1)) {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(input) = inputs.get(i) else { break };
                    // A reader that panics (a bug, on hostile bytes) fails its ledger, not the audit.
                    let read = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| read(input, &verified)))
                        .unwrap_or_else(|_| {
                            Err(AuditError::Open { place: input.source(), why: "its reader panicked".into() })
                        });
                    *results[i].lock().unwrap_or_else(PoisonError::into_inner) = Some(read);
                }
            });
        }
    });
    results
        .into_iter()
        .zip(inputs)
        .map(|(slot, input)| {
            slot.into_inner()
                .unwrap_or_else(PoisonError::into_inner)
                .unwrap_or_else(|| Err(AuditError::Open { place: input.source(), why: "its reader panicked".into() }))
        })
        .collect()
}
