//! Where a ledger keeps its bytes: a small trait, a sled implementation and an in-memory one.
//!
//! The store knows nothing about signatures or hashing. It keeps four things, and commits any
//! mix of them atomically and durably in one [`Batch`]:
//! - entries: the encoded signed entries, by sequence number;
//! - nodes: the hashes of complete Merkle subtrees, by (level, index), so proofs are O(log n);
//! - heads: signed tree heads, by tree size;
//! - meta: the log's owner key and recorded size.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;

use peerwatt_core::Hash;
use thiserror::Error;

use crate::merkle::CompletedNode;

/// A store failed.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The database reported an error.
    #[error("storage error: {0}")]
    Backend(String),
    /// Another process has the database open.
    #[error("the ledger at {0} is in use by another process (is a peerwatt node running?)")]
    Locked(String),
    /// A stored value has an impossible shape (e.g. a node hash that is not 32 bytes).
    #[error("stored {what} at key {key} is malformed")]
    Malformed {
        /// What was being read.
        what: &'static str,
        /// Its key, readable.
        key: String,
    },
}

/// Writes to apply together: all or nothing, and durable when `commit` (or the next `sync`)
/// returns.
#[derive(Debug, Default, Clone)]
pub struct Batch {
    /// Encoded signed entries by sequence number.
    pub entries: Vec<(u64, Vec<u8>)>,
    /// Completed Merkle subtrees.
    pub nodes: Vec<CompletedNode>,
    /// Encoded signed tree heads by tree size.
    pub heads: Vec<(u64, Vec<u8>)>,
    /// The log's new recorded size.
    pub size: Option<u64>,
    /// The log's owner key (set once, when the log is created).
    pub owner: Option<[u8; 32]>,
}

/// The entries of a store in sequence order, each with the sequence it is stored under.
pub type EntryIter<'a> = Box<dyn Iterator<Item = Result<(u64, Vec<u8>), StoreError>> + 'a>;

/// Storage for one ledger.
pub trait Store: Send + Sync {
    /// The owner key recorded when the log was created, if any.
    fn owner(&self) -> Result<Option<[u8; 32]>, StoreError>;
    /// The size recorded by the last commit (0 for a new log).
    fn recorded_size(&self) -> Result<u64, StoreError>;
    /// The entry stored under `seq`.
    fn entry(&self, seq: u64) -> Result<Option<Vec<u8>>, StoreError>;
    /// Every stored entry from `from` on, in order. Gaps show as jumps in the sequence.
    fn entries_from(&self, from: u64) -> EntryIter<'_>;
    /// The hash of the complete subtree at (`level`, `index`).
    fn node(&self, level: u8, index: u64) -> Result<Option<Hash>, StoreError>;
    /// Every stored signed tree head, by size.
    fn heads(&self) -> Result<Vec<(u64, Vec<u8>)>, StoreError>;
    /// Applies `batch` atomically: readable at once, durable after the next [`Store::sync`].
    /// A crash before that loses this batch and every one applied after it, never part of
    /// one and never an earlier one without a later.
    fn apply(&self, batch: Batch) -> Result<(), StoreError>;
    /// Makes every batch applied so far durable; returns once it is.
    fn sync(&self) -> Result<(), StoreError>;
    /// Applies `batch` atomically; returns once it is durable.
    fn commit(&self, batch: Batch) -> Result<(), StoreError> {
        self.apply(batch)?;
        self.sync()
    }

    /// Overwrites (`Some`) or deletes (`None`) a stored entry, bypassing every check: only for
    /// tests that prove tampering is detected.
    #[cfg(any(test, feature = "test-utils"))]
    fn tamper_entry(&self, seq: u64, bytes: Option<Vec<u8>>) -> Result<(), StoreError>;
    /// Overwrites the recorded size, bypassing every check (tests only).
    #[cfg(any(test, feature = "test-utils"))]
    fn tamper_size(&self, size: u64) -> Result<(), StoreError>;
}

/// A shared store is a store: a node can write a ledger while a test (or a tool in the same
/// process) keeps a handle to read it.
impl<S: Store> Store for std::sync::Arc<S> {
    fn owner(&self) -> Result<Option<[u8; 32]>, StoreError> {
        (**self).owner()
    }
    fn recorded_size(&self) -> Result<u64, StoreError> {
        (**self).recorded_size()
    }
    fn entry(&self, seq: u64) -> Result<Option<Vec<u8>>, StoreError> {
        (**self).entry(seq)
    }
    fn entries_from(&self, from: u64) -> EntryIter<'_> {
        (**self).entries_from(from)
    }
    fn node(&self, level: u8, index: u64) -> Result<Option<Hash>, StoreError> {
        (**self).node(level, index)
    }
    fn heads(&self) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        (**self).heads()
    }
    fn apply(&self, batch: Batch) -> Result<(), StoreError> {
        (**self).apply(batch)
    }
    fn sync(&self) -> Result<(), StoreError> {
        (**self).sync()
    }
    #[cfg(any(test, feature = "test-utils"))]
    fn tamper_entry(&self, seq: u64, bytes: Option<Vec<u8>>) -> Result<(), StoreError> {
        (**self).tamper_entry(seq, bytes)
    }
    #[cfg(any(test, feature = "test-utils"))]
    fn tamper_size(&self, size: u64) -> Result<(), StoreError> {
        (**self).tamper_size(size)
    }
}

// Key layout of the sled tree. One tree keeps every batch a single atomic `apply_batch`.
const ENTRY: u8 = b'e';
const NODE: u8 = b'n';
const HEAD: u8 = b'h';
const META_OWNER: &[u8] = b"m/owner";
const META_SIZE: &[u8] = b"m/size";

fn entry_key(seq: u64) -> [u8; 9] {
    let mut k = [ENTRY; 9];
    k[1..].copy_from_slice(&seq.to_be_bytes());
    k
}

fn node_key(level: u8, index: u64) -> [u8; 10] {
    let mut k = [NODE; 10];
    k[1] = level;
    k[2..].copy_from_slice(&index.to_be_bytes());
    k
}

fn head_key(size: u64) -> [u8; 9] {
    let mut k = [HEAD; 9];
    k[1..].copy_from_slice(&size.to_be_bytes());
    k
}

fn seq_of_key(key: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(key.get(1..9)?.try_into().ok()?))
}

fn u64_value(bytes: &[u8], what: &'static str, key: &str) -> Result<u64, StoreError> {
    let arr: [u8; 8] = bytes.try_into().map_err(|_| StoreError::Malformed { what, key: key.to_owned() })?;
    Ok(u64::from_be_bytes(arr))
}

fn hash_value(bytes: &[u8], level: u8, index: u64) -> Result<Hash, StoreError> {
    let arr: [u8; 32] =
        bytes.try_into().map_err(|_| StoreError::Malformed { what: "node", key: format!("{level}/{index}") })?;
    Ok(Hash(arr))
}

/// A ledger store in a sled database directory.
#[derive(Debug)]
pub struct SledStore {
    db: sled::Db,
    path: String,
}

impl SledStore {
    /// Opens (creating if needed) the sled database in `dir`.
    ///
    /// A database closed moments ago in this process may still be locked: sled finishes
    /// writes on its I/O threads, which release the file lock a little after the handle is
    /// dropped. A lock conflict is therefore retried for up to [`LOCK_WAIT`] before it is
    /// reported as [`StoreError::Locked`].
    pub fn open(dir: &Path) -> Result<SledStore, StoreError> {
        let path = dir.display().to_string();
        let deadline = std::time::Instant::now() + LOCK_WAIT;
        let mut pause = std::time::Duration::from_millis(5);
        loop {
            // Every commit flushes explicitly before it returns, so sled's periodic background
            // flush would only compete with appends for the disk.
            match sled::Config::new().path(dir).flush_every_ms(None).open() {
                Ok(db) => return Ok(SledStore { db, path }),
                Err(e) if is_lock_conflict(&e) => {
                    if std::time::Instant::now() >= deadline {
                        return Err(StoreError::Locked(path));
                    }
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(std::time::Duration::from_millis(100));
                }
                Err(other) => return Err(StoreError::Backend(other.to_string())),
            }
        }
    }

    /// Whether `dir` holds a ledger database already ([`SledStore::open`] creates one where
    /// none is).
    pub fn exists(dir: &Path) -> bool {
        dir.join("conf").is_file() && dir.join("db").is_file()
    }

    /// The directory this store lives in.
    pub fn path(&self) -> &str {
        &self.path
    }

    fn get(&self, key: &[u8]) -> Result<Option<sled::IVec>, StoreError> {
        self.db.get(key).map_err(backend)
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.db.flush().map(|_| ()).map_err(backend)
    }
}

/// How long [`SledStore::open`] waits for another holder of the database lock to let go.
pub const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

fn is_lock_conflict(e: &sled::Error) -> bool {
    matches!(e, sled::Error::Io(io) if io.kind() == std::io::ErrorKind::WouldBlock || io.to_string().contains("lock"))
}

fn backend(e: sled::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

impl Store for SledStore {
    fn owner(&self) -> Result<Option<[u8; 32]>, StoreError> {
        self.get(META_OWNER)?
            .map(|v| {
                <[u8; 32]>::try_from(v.as_ref())
                    .map_err(|_| StoreError::Malformed { what: "owner", key: "m/owner".into() })
            })
            .transpose()
    }

    fn recorded_size(&self) -> Result<u64, StoreError> {
        self.get(META_SIZE)?.map(|v| u64_value(&v, "size", "m/size")).transpose().map(|s| s.unwrap_or(0))
    }

    fn entry(&self, seq: u64) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.get(&entry_key(seq))?.map(|v| v.to_vec()))
    }

    fn entries_from(&self, from: u64) -> EntryIter<'_> {
        let end = entry_key(u64::MAX);
        let iter = self.db.range(entry_key(from)..=end).map(|kv| {
            let (k, v) = kv.map_err(backend)?;
            let seq =
                seq_of_key(&k).ok_or_else(|| StoreError::Malformed { what: "entry key", key: format!("{k:?}") })?;
            Ok((seq, v.to_vec()))
        });
        Box::new(iter)
    }

    fn node(&self, level: u8, index: u64) -> Result<Option<Hash>, StoreError> {
        self.get(&node_key(level, index))?.map(|v| hash_value(&v, level, index)).transpose()
    }

    fn heads(&self) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        self.db
            .scan_prefix([HEAD])
            .map(|kv| {
                let (k, v) = kv.map_err(backend)?;
                let size =
                    seq_of_key(&k).ok_or_else(|| StoreError::Malformed { what: "head key", key: format!("{k:?}") })?;
                Ok((size, v.to_vec()))
            })
            .collect()
    }

    fn apply(&self, batch: Batch) -> Result<(), StoreError> {
        let mut b = sled::Batch::default();
        for (seq, bytes) in batch.entries {
            b.insert(&entry_key(seq), bytes);
        }
        for n in batch.nodes {
            b.insert(&node_key(n.level, n.index), &n.hash.0);
        }
        for (size, bytes) in batch.heads {
            b.insert(&head_key(size), bytes);
        }
        if let Some(size) = batch.size {
            b.insert(META_SIZE, &size.to_be_bytes());
        }
        if let Some(owner) = batch.owner {
            b.insert(META_OWNER, &owner);
        }
        self.db.apply_batch(b).map_err(backend)
    }

    fn sync(&self) -> Result<(), StoreError> {
        // sled only promises durability for what a flush has written: wait for it.
        self.flush()
    }

    #[cfg(any(test, feature = "test-utils"))]
    fn tamper_entry(&self, seq: u64, bytes: Option<Vec<u8>>) -> Result<(), StoreError> {
        match bytes {
            Some(b) => self.db.insert(entry_key(seq), b).map_err(backend)?,
            None => self.db.remove(entry_key(seq)).map_err(backend)?,
        };
        self.flush()
    }

    #[cfg(any(test, feature = "test-utils"))]
    fn tamper_size(&self, size: u64) -> Result<(), StoreError> {
        self.db.insert(META_SIZE, &size.to_be_bytes()).map_err(backend)?;
        self.flush()
    }
}

/// A store in memory, for tests and tools. Nothing survives the process.
#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: Mutex<MemoryInner>,
}

#[derive(Debug, Default)]
struct MemoryInner {
    entries: BTreeMap<u64, Vec<u8>>,
    nodes: BTreeMap<(u8, u64), Hash>,
    heads: BTreeMap<u64, Vec<u8>>,
    size: u64,
    owner: Option<[u8; 32]>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryInner> {
        // A panic while holding the lock cannot leave the maps half-updated (each commit builds
        // its changes first), so a poisoned lock is still safe to use.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Store for MemoryStore {
    fn owner(&self) -> Result<Option<[u8; 32]>, StoreError> {
        Ok(self.lock().owner)
    }

    fn recorded_size(&self) -> Result<u64, StoreError> {
        Ok(self.lock().size)
    }

    fn entry(&self, seq: u64) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.lock().entries.get(&seq).cloned())
    }

    fn entries_from(&self, from: u64) -> EntryIter<'_> {
        let snapshot: Vec<_> = self.lock().entries.range(from..).map(|(k, v)| Ok((*k, v.clone()))).collect();
        Box::new(snapshot.into_iter())
    }

    fn node(&self, level: u8, index: u64) -> Result<Option<Hash>, StoreError> {
        Ok(self.lock().nodes.get(&(level, index)).copied())
    }

    fn heads(&self) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        Ok(self.lock().heads.iter().map(|(k, v)| (*k, v.clone())).collect())
    }

    fn apply(&self, batch: Batch) -> Result<(), StoreError> {
        let mut inner = self.lock();
        inner.entries.extend(batch.entries);
        inner.nodes.extend(batch.nodes.into_iter().map(|n| ((n.level, n.index), n.hash)));
        inner.heads.extend(batch.heads);
        if let Some(size) = batch.size {
            inner.size = size;
        }
        if batch.owner.is_some() {
            inner.owner = batch.owner;
        }
        Ok(())
    }

    fn sync(&self) -> Result<(), StoreError> {
        Ok(()) // nothing survives the process anyway
    }

    #[cfg(any(test, feature = "test-utils"))]
    fn tamper_entry(&self, seq: u64, bytes: Option<Vec<u8>>) -> Result<(), StoreError> {
        let mut inner = self.lock();
        match bytes {
            Some(b) => inner.entries.insert(seq, b),
            None => inner.entries.remove(&seq),
        };
        Ok(())
    }

    #[cfg(any(test, feature = "test-utils"))]
    fn tamper_size(&self, size: u64) -> Result<(), StoreError> {
        self.lock().size = size;
        Ok(())
    }
}
