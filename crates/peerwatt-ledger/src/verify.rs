//! Walks a log entry by entry and reports the first problem precisely. Pure: the caller
//! feeds it bytes from a store or an export file.
//!
//! For each position `n` it checks, in this order: an entry is stored at `n`; it decodes; it
//! records sequence `n`; it is signed by the log's owner; the signature verifies; its
//! previous-entry hash is the hash of entry `n - 1`. Along the way it rebuilds the Merkle tree,
//! so the caller can compare stored subtree hashes, and every signed tree head is checked
//! against the root of the entries it covers.

use std::collections::BTreeMap;
use std::fmt;

use peerwatt_core::{Decode, DecodeError, Hash, LedgerEntry, PublicKey, Signed, Timestamp, TreeHead};
use thiserror::Error;

use crate::merkle::{CompletedNode, Frontier, leaf_hash};

/// What is wrong with a log.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Problem {
    /// The entry's bytes do not decode.
    #[error("malformed entry ({0})")]
    Malformed(DecodeError),
    /// No entry is stored at this position.
    #[error("missing: no entry is stored here{}", next_stored.map(|n| format!(" (the next stored entry is {n})")).unwrap_or_default())]
    Missing {
        /// The next position that does hold an entry, if any.
        next_stored: Option<u64>,
    },
    /// The entry stored here records another sequence number.
    #[error("holds the entry with sequence number {found}: entries were reordered or moved")]
    Misplaced {
        /// The sequence number inside the entry.
        found: u64,
    },
    /// The entry is signed by someone other than the log's owner.
    #[error("signed by {found}, not by the ledger's owner {owner}")]
    WrongSigner {
        /// Who signed it (public id).
        found: String,
        /// Who owns the log (public id).
        owner: String,
    },
    /// The signature does not verify: the entry changed after it was signed.
    #[error("bad signature: the entry was altered after it was signed")]
    BadSignature,
    /// The previous-entry hash does not match the previous entry.
    #[error("broken hash chain: its previous-entry hash {found} is not the hash of the entry before it ({expected})")]
    BrokenChain {
        /// The hash recorded in the entry.
        found: Hash,
        /// The actual hash of the previous entry.
        expected: Hash,
    },
    /// A stored Merkle subtree hash does not match the entries.
    #[error("stored Merkle node (level {level}, index {index}) does not match the entries")]
    NodeMismatch {
        /// Node level.
        level: u8,
        /// Node index.
        index: u64,
    },
    /// A signed tree head does not match the entries it covers.
    #[error(
        "the signed tree head for size {size} has root {signed}, but the entries give {computed}: history was rewritten"
    )]
    HeadMismatch {
        /// The head's tree size.
        size: u64,
        /// The root the head signs.
        signed: Hash,
        /// The root of the entries.
        computed: Hash,
    },
    /// A signed tree head covers more entries than the log has.
    #[error("a signed tree head covers {size} entries but the log has only {len}: entries were removed from the end")]
    HeadBeyondLog {
        /// The head's tree size.
        size: u64,
        /// Entries present.
        len: u64,
    },
    /// A stored tree head is malformed, wrongly signed, or filed under the wrong size.
    #[error("the tree head stored for size {size} is invalid: {why}")]
    BadHead {
        /// The size it is stored under.
        size: u64,
        /// What is wrong.
        why: String,
    },
    /// The log records a different number of entries than are present.
    #[error("the log records {recorded} entries but {found} are present{}", if recorded > found { ": the end was cut off" } else { "" })]
    SizeMismatch {
        /// The size the log recorded.
        recorded: u64,
        /// Entries present.
        found: u64,
    },
    /// An export file ends early.
    #[error("the export is truncated: it declares {declared} {what} but ends after {found}")]
    ExportTruncated {
        /// "entries" or "tree heads".
        what: &'static str,
        /// How many the header declares.
        declared: u64,
        /// How many were read completely.
        found: u64,
    },
    /// An export file's framing is wrong (not an export, wrong version, trailing data).
    #[error("not a valid peerwatt ledger export: {0}")]
    BadExport(String),
    /// The store could not be read.
    #[error("could not read the ledger: {0}")]
    Store(String),
}

/// The first problem found, and where.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub struct VerifyError {
    /// The entry's position, when the problem is with one entry.
    pub entry: Option<u64>,
    /// What is wrong.
    pub problem: Problem,
}

impl VerifyError {
    /// A problem at entry `n`.
    pub fn at(n: u64, problem: Problem) -> VerifyError {
        VerifyError { entry: Some(n), problem }
    }

    /// A problem with the log as a whole.
    pub fn log(problem: Problem) -> VerifyError {
        VerifyError { entry: None, problem }
    }
}

impl fmt::Display for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.entry {
            Some(n) => write!(f, "entry {n}: {}", self.problem),
            None => write!(f, "{}", self.problem),
        }
    }
}

/// What a successful verification covered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// The log's owner.
    pub owner: PublicKey,
    /// Entries verified.
    pub entries: u64,
    /// Signed tree heads verified.
    pub heads: u64,
    /// The Merkle root of all entries.
    pub root: Hash,
    /// Time of the last entry, if any.
    pub last_time: Option<Timestamp>,
}

/// What a walk over a log hands its caller besides checking it (an auditor collecting facts):
/// every signed tree head once checked against its owner, and every entry once verified.
pub trait Visit {
    /// A signed tree head of the log's owner (its root is checked once the walk reaches its size).
    fn head(&mut self, _head: &Signed<TreeHead>) {}
    /// Entry `entry.body().seq`, verified, with its Merkle leaf hash.
    fn entry(&mut self, _entry: &Signed<LedgerEntry>, _leaf: Hash) {}
}

/// A walk that only checks.
impl Visit for () {}

/// An entry that passed every check: the entry and its Merkle leaf hash.
#[derive(Debug)]
pub struct Checked {
    /// The entry.
    pub entry: Signed<LedgerEntry>,
    /// Its leaf hash (the hash the next entry names).
    pub leaf: Hash,
}

/// Checks a log fed to it one entry at a time.
#[derive(Debug)]
pub struct LogVerifier {
    owner: PublicKey,
    prev: Hash,
    frontier: Frontier,
    pending_heads: BTreeMap<u64, Vec<TreeHead>>,
    heads_checked: u64,
    last_time: Option<Timestamp>,
}

impl LogVerifier {
    /// A verifier for a log owned by `owner`.
    pub fn new(owner: PublicKey) -> LogVerifier {
        LogVerifier {
            owner,
            prev: Hash::ZERO,
            frontier: Frontier::new(),
            pending_heads: BTreeMap::new(),
            heads_checked: 0,
            last_time: None,
        }
    }

    /// Adds a signed tree head (stored under `stored_size`) to check once the walk reaches it.
    /// Add every head before the first entry.
    pub fn add_head(&mut self, stored_size: u64, bytes: &[u8]) -> Result<Signed<TreeHead>, VerifyError> {
        let bad = |why: String| VerifyError::log(Problem::BadHead { size: stored_size, why });
        let head = Signed::<TreeHead>::from_bytes(bytes).map_err(|e| bad(e.to_string()))?;
        if *head.signer() != self.owner {
            return Err(bad(format!("signed by {}, not the ledger's owner", head.signer())));
        }
        head.verify().map_err(|e| bad(e.to_string()))?;
        if head.body().size != stored_size {
            return Err(bad(format!("it covers {} entries", head.body().size)));
        }
        self.pending_heads.entry(stored_size).or_default().push(*head.body());
        if stored_size == 0 {
            self.check_heads_at_current_size()?;
        }
        Ok(head)
    }

    /// Checks the entry stored at position `stored_at`; `on_node` sees every Merkle subtree the
    /// entry completes (so a caller can compare its stored copy).
    pub fn push(
        &mut self,
        stored_at: u64,
        bytes: &[u8],
        on_node: impl FnMut(CompletedNode) -> Result<(), Problem>,
    ) -> Result<Checked, VerifyError> {
        let n = self.frontier.size();
        if stored_at != n {
            return Err(VerifyError::at(n, Problem::Missing { next_stored: Some(stored_at) }));
        }
        let signed = Signed::<LedgerEntry>::from_bytes(bytes).map_err(|e| VerifyError::at(n, Problem::Malformed(e)))?;
        let entry = signed.body();
        if entry.seq != n {
            return Err(VerifyError::at(n, Problem::Misplaced { found: entry.seq }));
        }
        if *signed.signer() != self.owner {
            let (found, owner) = (signed.signer().to_string(), self.owner.to_string());
            return Err(VerifyError::at(n, Problem::WrongSigner { found, owner }));
        }
        signed.verify().map_err(|_| VerifyError::at(n, Problem::BadSignature))?;
        if entry.prev != self.prev {
            return Err(VerifyError::at(n, Problem::BrokenChain { found: entry.prev, expected: self.prev }));
        }
        let hash = leaf_hash(bytes);
        let mut node_problem = Ok(());
        let mut on_node = on_node;
        self.frontier.push(hash, |node| {
            if node_problem.is_ok() {
                node_problem = on_node(node);
            }
        });
        node_problem.map_err(|p| VerifyError::at(n, p))?;
        self.prev = hash;
        self.last_time = Some(entry.time);
        self.check_heads_at_current_size()?;
        Ok(Checked { entry: signed, leaf: hash })
    }

    fn check_heads_at_current_size(&mut self) -> Result<(), VerifyError> {
        let size = self.frontier.size();
        if let Some(heads) = self.pending_heads.remove(&size) {
            let computed = self.frontier.root();
            for head in heads {
                if head.root != computed {
                    return Err(VerifyError::log(Problem::HeadMismatch { size, signed: head.root, computed }));
                }
                self.heads_checked += 1;
            }
        }
        Ok(())
    }

    /// Ends the walk. `recorded_size` is the size the log claims for itself, if it records one.
    pub fn finish(self, recorded_size: Option<u64>) -> Result<VerifyReport, VerifyError> {
        let len = self.frontier.size();
        if let Some(recorded) = recorded_size.filter(|r| *r != len) {
            return Err(VerifyError::at(recorded.min(len), Problem::SizeMismatch { recorded, found: len }));
        }
        if let Some((&size, _)) = self.pending_heads.iter().next_back() {
            return Err(VerifyError::log(Problem::HeadBeyondLog { size, len }));
        }
        Ok(VerifyReport {
            owner: self.owner,
            entries: len,
            heads: self.heads_checked,
            root: self.frontier.root(),
            last_time: self.last_time,
        })
    }
}
