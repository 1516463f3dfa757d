//! The ledger: a node's signed, hash-chained, append-only log over a [`Store`].
//!
//! [`LedgerReader`] reads, proves, verifies and exports and needs no key (auditors and the CLI
//! use it). [`Ledger`] adds appending and signing tree heads, and is held by exactly one
//! owner: the node whose key signs every entry.

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use peerwatt_core::{
    Clock, Decode, Encode, EntryKind, Hash, LedgerEntry, Message, NodeKey, Order, PublicKey, Settlement, Signed,
    Timestamp, Trade, TreeHead, messages::MAX_ENTRY_PAYLOAD,
};
use thiserror::Error;

use crate::merkle::{self, Frontier, ProofError, SubtreeSource, leaf_hash};
use crate::store::{Batch, SledStore, Store, StoreError};
use crate::verify::{LogVerifier, Problem, VerifyError, VerifyReport, Visit};

/// A ledger operation failed.
#[derive(Debug, Error)]
pub enum LedgerError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The store holds another node's ledger.
    #[error("this ledger belongs to {owner}, not to this node's key {key}")]
    WrongOwner {
        /// The ledger's owner.
        owner: String,
        /// The key that tried to open it.
        key: String,
    },
    /// The store holds entries but records no owner.
    #[error("the ledger records no owner; it was not created by peerwatt")]
    NoOwner,
    /// The store is inconsistent in a way that prevents the operation; `verify` says more.
    #[error("the ledger is damaged: {0} (run `peerwatt ledger verify` for details)")]
    Damaged(String),
    /// An entry's payload is larger than an entry can hold.
    #[error("entry payload is {len} bytes; the maximum is {max}")]
    PayloadTooLarge {
        /// Its length.
        len: usize,
        /// The maximum.
        max: usize,
    },
    /// A sequence number or size beyond the log.
    #[error("{what} {value} is beyond the ledger, which has {len} entries")]
    OutOfRange {
        /// What was asked for.
        what: &'static str,
        /// The value asked for.
        value: u64,
        /// Entries in the log.
        len: u64,
    },
    /// A proof could not be made.
    #[error("cannot make the proof: {0}")]
    Proof(#[from] ProofError),
}

/// Where an appended entry landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// Its sequence number.
    pub seq: u64,
    /// Its hash (Merkle leaf hash of its encoding).
    pub hash: Hash,
}

/// An inclusion proof of one entry against a signed tree head: checkable with nothing else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InclusionProof {
    /// The entry, as stored (an encoded signed ledger entry).
    pub entry: Vec<u8>,
    /// Its sequence number (leaf index).
    pub seq: u64,
    /// The signed tree head the proof leads to.
    pub head: Signed<TreeHead>,
    /// The audit path, leaf to root.
    pub path: Vec<Hash>,
}

/// Why an inclusion proof was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum InclusionProofError {
    /// The entry does not decode or its signature is bad.
    #[error("the entry is invalid: {0}")]
    Entry(String),
    /// The tree head's signature is bad.
    #[error("the tree head is invalid: {0}")]
    Head(String),
    /// Entry and head are signed by different keys.
    #[error("the entry and the tree head are signed by different nodes")]
    DifferentSigners,
    /// The entry records another sequence number than the proof claims.
    #[error("the entry records sequence {found}, the proof claims {claimed}")]
    SeqMismatch {
        /// In the entry.
        found: u64,
        /// In the proof.
        claimed: u64,
    },
    /// The path does not lead to the head's root.
    #[error("the audit path does not lead to the signed root: {0}")]
    Path(#[from] ProofError),
}

impl InclusionProof {
    /// Checks the proof: entry and head signatures, same signer, and the audit path.
    /// Returns the verified entry.
    pub fn verify(&self) -> Result<Signed<LedgerEntry>, InclusionProofError> {
        let entry = Signed::<LedgerEntry>::from_bytes_verified(&self.entry)
            .map_err(|e| InclusionProofError::Entry(e.to_string()))?;
        self.head.verify().map_err(|e| InclusionProofError::Head(e.to_string()))?;
        if entry.signer() != self.head.signer() {
            return Err(InclusionProofError::DifferentSigners);
        }
        if entry.body().seq != self.seq {
            return Err(InclusionProofError::SeqMismatch { found: entry.body().seq, claimed: self.seq });
        }
        let head = self.head.body();
        merkle::verify_inclusion(self.seq, head.size, &leaf_hash(&self.entry).0, &self.path, &head.root.0)?;
        Ok(entry)
    }
}

/// Read access to a ledger: entries, heads, proofs, verification, export. Needs no key.
#[derive(Debug)]
pub struct LedgerReader<S> {
    store: S,
    owner: Option<PublicKey>,
}

/// The lowest Merkle level whose subtree hashes are stored. Lower subtrees (a leaf, a pair of
/// leaves) are recomputed from at most four entries when a proof needs them: storing them
/// would triple the writes per append for a few microseconds saved per proof.
pub const MIN_STORED_LEVEL: u8 = 2;

/// Reads Merkle subtrees from a store (recomputing the lowest levels from entries); a missing
/// node or entry means the store is damaged.
struct StoreNodes<'a, S>(&'a S);

impl<S: Store> SubtreeSource for StoreNodes<'_, S> {
    type Error = LedgerError;
    fn subtree(&self, level: u8, index: u64) -> Result<Hash, LedgerError> {
        if level < MIN_STORED_LEVEL {
            return self.recompute(level, index);
        }
        self.0
            .node(level, index)?
            .ok_or_else(|| LedgerError::Damaged(format!("Merkle node (level {level}, index {index}) is missing")))
    }
}

impl<S: Store> StoreNodes<'_, S> {
    fn recompute(&self, level: u8, index: u64) -> Result<Hash, LedgerError> {
        if level == 0 {
            let bytes =
                self.0.entry(index)?.ok_or_else(|| LedgerError::Damaged(format!("entry {index} is missing")))?;
            return Ok(leaf_hash(&bytes));
        }
        let left = self.recompute(level - 1, index * 2)?;
        let right = self.recompute(level - 1, index * 2 + 1)?;
        Ok(merkle::node_hash(&left.0, &right.0))
    }
}

impl LedgerReader<SledStore> {
    /// Opens the sled ledger in `dir` for reading.
    pub fn open_dir(dir: &Path) -> Result<LedgerReader<SledStore>, LedgerError> {
        LedgerReader::new(SledStore::open(dir)?)
    }
}

impl<S: Store> LedgerReader<S> {
    /// Reads the ledger in `store`.
    pub fn new(store: S) -> Result<LedgerReader<S>, LedgerError> {
        let owner = match store.owner()? {
            Some(bytes) => Some(
                PublicKey::from_bytes(&bytes).map_err(|e| LedgerError::Damaged(format!("stored owner key: {e}")))?,
            ),
            None if store.recorded_size()? > 0 => return Err(LedgerError::NoOwner),
            None => None,
        };
        Ok(LedgerReader { store, owner })
    }

    /// The owner's key, once the ledger has one.
    pub fn owner(&self) -> Option<PublicKey> {
        self.owner
    }

    /// The number of entries the ledger records.
    pub fn len(&self) -> Result<u64, LedgerError> {
        Ok(self.store.recorded_size()?)
    }

    /// Whether the ledger has no entries.
    pub fn is_empty(&self) -> Result<bool, LedgerError> {
        Ok(self.len()? == 0)
    }

    /// The store underneath.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The encoded entry at `seq`.
    pub fn entry_bytes(&self, seq: u64) -> Result<Vec<u8>, LedgerError> {
        let len = self.len()?;
        if seq >= len {
            return Err(LedgerError::OutOfRange { what: "sequence number", value: seq, len });
        }
        self.store.entry(seq)?.ok_or_else(|| LedgerError::Damaged(format!("entry {seq} is missing")))
    }

    /// The entry at `seq`, decoded (not verified: see [`LedgerReader::verify`]).
    pub fn entry(&self, seq: u64) -> Result<Signed<LedgerEntry>, LedgerError> {
        Signed::from_bytes(&self.entry_bytes(seq)?).map_err(|e| LedgerError::Damaged(format!("entry {seq}: {e}")))
    }

    /// Every entry of `kind`, in order, its payload decoded as `T` with its signatures
    /// verified; one that does not decode or verify is damage (named `what`).
    fn verified_of<T: Message>(&self, kind: EntryKind, what: &str) -> Result<Vec<Signed<T>>, LedgerError> {
        self.verified_between(kind, what, 0, self.len()?)
    }

    /// As [`LedgerReader::verified_of`], of entries `from..to` only.
    fn verified_between<T: Message>(
        &self,
        kind: EntryKind,
        what: &str,
        from: u64,
        to: u64,
    ) -> Result<Vec<Signed<T>>, LedgerError> {
        let mut found = Vec::new();
        for seq in from..to {
            let entry = self.entry(seq)?;
            if entry.body().kind == kind {
                let item = Signed::<T>::from_bytes_verified(&entry.body().payload)
                    .map_err(|e| LedgerError::Damaged(format!("{what} in entry {seq}: {e}")))?;
                found.push(item);
            }
        }
        Ok(found)
    }

    /// The trades the ledger records, in order, each decoded with both its signatures
    /// verified; one that does not decode or verify is damage.
    pub fn trades(&self) -> Result<Vec<Signed<Trade>>, LedgerError> {
        self.verified_of(EntryKind::TradeAgreed, "trade")
    }

    /// The orders the ledger records (this node's own), in order, decoded with their
    /// signatures verified; one that does not decode or verify is damage.
    pub fn orders(&self) -> Result<Vec<Signed<Order>>, LedgerError> {
        self.verified_of(EntryKind::OrderPublished, "order")
    }

    /// The settlements the ledger records (every revision), in order, decoded with their
    /// signatures verified; one that does not decode or verify is damage.
    pub fn settlements(&self) -> Result<Vec<Signed<Settlement>>, LedgerError> {
        self.verified_of(EntryKind::Settlement, "settlement")
    }

    /// The settlements among entries `from..to` (as [`LedgerReader::settlements`]): a reader
    /// that has seen the first `from` entries reads only what was added since.
    pub fn settlements_between(&self, from: u64, to: u64) -> Result<Vec<Signed<Settlement>>, LedgerError> {
        self.verified_between(EntryKind::Settlement, "settlement", from, to)
    }

    /// Every stored signed tree head, oldest (smallest) first.
    pub fn heads(&self) -> Result<Vec<Signed<TreeHead>>, LedgerError> {
        self.store
            .heads()?
            .into_iter()
            .map(|(size, bytes)| {
                Signed::from_bytes(&bytes).map_err(|e| LedgerError::Damaged(format!("tree head {size}: {e}")))
            })
            .collect()
    }

    /// The newest signed tree head.
    pub fn latest_head(&self) -> Result<Option<Signed<TreeHead>>, LedgerError> {
        Ok(self.heads()?.pop())
    }

    /// The Merkle root of the first `size` entries.
    pub fn root_at(&self, size: u64) -> Result<Hash, LedgerError> {
        self.check_size(size)?;
        merkle::range_hash(&StoreNodes(&self.store), 0, size)
    }

    /// The audit path of entry `seq` in the tree of the first `size` entries.
    pub fn inclusion_path(&self, seq: u64, size: u64) -> Result<Vec<Hash>, LedgerError> {
        self.check_size(size)?;
        Ok(merkle::inclusion_proof(&StoreNodes(&self.store), seq, size)??)
    }

    /// An inclusion proof of `seq` against the oldest stored signed head that covers it.
    /// `None` if no signed head covers it yet.
    pub fn prove_inclusion(&self, seq: u64) -> Result<Option<InclusionProof>, LedgerError> {
        let entry = self.entry_bytes(seq)?;
        let Some(head) = self.heads()?.into_iter().find(|h| h.body().size > seq) else {
            return Ok(None);
        };
        let path = self.inclusion_path(seq, head.body().size)?;
        Ok(Some(InclusionProof { entry, seq, head, path }))
    }

    /// The consistency proof between the trees of the first `size1` and `size2` entries.
    pub fn consistency_path(&self, size1: u64, size2: u64) -> Result<Vec<Hash>, LedgerError> {
        self.check_size(size2)?;
        Ok(merkle::consistency_proof(&StoreNodes(&self.store), size1, size2)??)
    }

    fn check_size(&self, size: u64) -> Result<(), LedgerError> {
        let len = self.len()?;
        if size > len {
            return Err(LedgerError::OutOfRange { what: "tree size", value: size, len });
        }
        Ok(())
    }

    /// Walks the whole ledger and reports the first problem: see [`crate::verify`]. Also checks
    /// every stored Merkle node against the entries, so proofs served later are sound.
    pub fn verify(&self) -> Result<VerifyReport, VerifyError> {
        self.verify_visiting(&mut ())
    }

    /// [`LedgerReader::verify`], handing `visit` every head and entry it checked.
    pub fn verify_visiting(&self, visit: &mut impl Visit) -> Result<VerifyReport, VerifyError> {
        let store_problem = |e: StoreError| VerifyError::log(Problem::Store(e.to_string()));
        let recorded = self.store.recorded_size().map_err(store_problem)?;
        let Some(owner) = self.owner else {
            return if recorded == 0 {
                Err(VerifyError::log(Problem::Store("the ledger is empty and has no owner yet".into())))
            } else {
                Err(VerifyError::log(Problem::Store("the ledger records no owner".into())))
            };
        };
        let mut verifier = LogVerifier::new(owner);
        for (size, bytes) in self.store.heads().map_err(store_problem)? {
            visit.head(&verifier.add_head(size, &bytes)?);
        }
        for item in self.store.entries_from(0) {
            let (seq, bytes) = item.map_err(store_problem)?;
            let checked = verifier.push(seq, &bytes, |node| {
                if node.level < MIN_STORED_LEVEL {
                    return Ok(()); // not stored: recomputed from the entries just checked
                }
                match self.store.node(node.level, node.index) {
                    Ok(Some(stored)) if stored == node.hash => Ok(()),
                    Ok(_) => Err(Problem::NodeMismatch { level: node.level, index: node.index }),
                    Err(e) => Err(Problem::Store(e.to_string())),
                }
            })?;
            visit.entry(&checked.entry, checked.leaf);
        }
        verifier.finish(Some(recorded))
    }
}

/// The in-memory state of the log's right edge, guarded by the append lock.
#[derive(Debug)]
struct Tip {
    frontier: Frontier,
    last_hash: Hash,
    last_time: Timestamp,
}

/// A node's own ledger: everything [`LedgerReader`] does, plus appending and signing heads.
pub struct Ledger<S> {
    reader: LedgerReader<S>,
    key: NodeKey,
    clock: Arc<dyn Clock>,
    tip: Mutex<Tip>,
}

impl<S> std::fmt::Debug for Ledger<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger").field("owner", &self.key.public()).finish_non_exhaustive()
    }
}

impl Ledger<SledStore> {
    /// Opens (creating if needed) the sled ledger in `dir`, owned by `key`.
    pub fn open_dir(dir: &Path, key: NodeKey, clock: Arc<dyn Clock>) -> Result<Ledger<SledStore>, LedgerError> {
        Ledger::open(SledStore::open(dir)?, key, clock)
    }
}

impl<S: Store> Ledger<S> {
    /// Opens the ledger in `store` for the node with `key`; a new store becomes this node's.
    pub fn open(store: S, key: NodeKey, clock: Arc<dyn Clock>) -> Result<Ledger<S>, LedgerError> {
        let mut reader = LedgerReader::new(store)?;
        match reader.owner {
            Some(owner) if owner != key.public() => {
                return Err(LedgerError::WrongOwner { owner: owner.to_string(), key: key.public().to_string() });
            }
            Some(_) => {}
            None => {
                reader.store.commit(Batch { owner: Some(key.public().to_bytes()), ..Batch::default() })?;
                reader.owner = Some(key.public());
            }
        }
        let size = reader.len()?;
        let frontier = Frontier::from_source(&StoreNodes(&reader.store), size)?;
        let (last_hash, last_time) = if size == 0 {
            (Hash::ZERO, Timestamp(0))
        } else {
            let bytes = reader.entry_bytes(size - 1)?;
            let last = Signed::<LedgerEntry>::from_bytes(&bytes)
                .map_err(|e| LedgerError::Damaged(format!("entry {}: {e}", size - 1)))?;
            (leaf_hash(&bytes), last.body().time)
        };
        Ok(Ledger { reader, key, clock, tip: Mutex::new(Tip { frontier, last_hash, last_time }) })
    }

    /// Read access (also available through `Deref`).
    pub fn reader(&self) -> &LedgerReader<S> {
        &self.reader
    }

    /// The owner's public key.
    pub fn public_key(&self) -> PublicKey {
        self.key.public()
    }

    fn tip(&self) -> MutexGuard<'_, Tip> {
        // Appends build their new tip completely before swapping it in, so a panic elsewhere
        // while the lock was held cannot have left it half-updated.
        self.tip.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends one entry and returns once it is durable.
    pub fn append(&self, kind: EntryKind, payload: Vec<u8>) -> Result<Appended, LedgerError> {
        let mut done = self.append_batch(vec![(kind, payload)])?;
        done.pop().ok_or_else(|| LedgerError::Damaged("append produced no entry".into()))
    }

    /// Appends entries in order with one durable commit (group commit); returns once all are
    /// durable. Either all are appended or none.
    pub fn append_batch(&self, items: Vec<(EntryKind, Vec<u8>)>) -> Result<Vec<Appended>, LedgerError> {
        let appended = self.append_unsynced(items)?;
        self.sync()?;
        Ok(appended)
    }

    /// Appends entries in order, all or none, without waiting for the disk: they are part of
    /// the log at once (readable, covered by the next head) and durable after the next
    /// [`Ledger::sync`] (or any durable append or head). A crash before that loses them and
    /// whatever was appended after them, never an earlier entry without a later one, so the
    /// log that survives is still a valid prefix. For writers that must not stall on a flush
    /// (the node actor), and that act on what they appended only once it is synced.
    pub fn append_unsynced(&self, items: Vec<(EntryKind, Vec<u8>)>) -> Result<Vec<Appended>, LedgerError> {
        if let Some((_, p)) = items.iter().find(|(_, p)| p.len() > MAX_ENTRY_PAYLOAD) {
            return Err(LedgerError::PayloadTooLarge { len: p.len(), max: MAX_ENTRY_PAYLOAD });
        }
        let mut tip = self.tip();
        // Entry times never go backwards, even if the wall clock does.
        let time = self.clock.now().max(tip.last_time);
        let mut frontier = tip.frontier.clone();
        let mut prev = tip.last_hash;
        let mut batch = Batch::default();
        let mut appended = Vec::with_capacity(items.len());
        for (kind, payload) in items {
            let seq = frontier.size();
            let signed = Signed::sign(&self.key, LedgerEntry { seq, prev, time, kind, payload });
            let bytes = signed.to_bytes();
            prev = leaf_hash(&bytes);
            frontier.push(prev, |node| {
                if node.level >= MIN_STORED_LEVEL {
                    batch.nodes.push(node);
                }
            });
            batch.entries.push((seq, bytes));
            appended.push(Appended { seq, hash: prev });
        }
        batch.size = Some(frontier.size());
        self.reader.store.apply(batch)?;
        *tip = Tip { frontier, last_hash: prev, last_time: time };
        Ok(appended)
    }

    /// Makes every entry appended so far durable; returns once it is. Takes no lock on the
    /// log, so it may run on another thread while the owner goes on appending.
    pub fn sync(&self) -> Result<(), LedgerError> {
        Ok(self.reader.store.sync()?)
    }

    /// The Merkle root of the whole log.
    pub fn root(&self) -> Hash {
        self.tip().frontier.root()
    }

    /// Signs a tree head for the log as it is now, stores it durably, and returns it.
    pub fn sign_head(&self) -> Result<Signed<TreeHead>, LedgerError> {
        let tip = self.tip();
        let time = self.clock.now().max(tip.last_time);
        let head = Signed::sign(&self.key, TreeHead { size: tip.frontier.size(), root: tip.frontier.root(), time });
        self.reader.store.commit(Batch { heads: vec![(head.body().size, head.to_bytes())], ..Batch::default() })?;
        Ok(head)
    }
}

impl<S> std::ops::Deref for Ledger<S> {
    type Target = LedgerReader<S>;
    fn deref(&self) -> &LedgerReader<S> {
        &self.reader
    }
}
