//! The layout of a node's data directory.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use peerwatt_core::{NodeKey, SystemClock};
use peerwatt_ledger::{Ledger, LedgerReader, SledStore};

use crate::failure::{Failure, Hint};

/// A node's data directory: `node.key`, `node.toml` and the `ledger/` database.
#[derive(Debug, Clone)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    /// The data directory at `root`.
    pub fn new(root: &Path) -> DataDir {
        DataDir { root: root.to_owned() }
    }

    /// The directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The node key file.
    pub fn key_path(&self) -> PathBuf {
        self.root.join("node.key")
    }

    /// The node configuration file.
    pub fn config_path(&self) -> PathBuf {
        self.root.join("node.toml")
    }

    /// The ledger database directory.
    pub fn ledger_path(&self) -> PathBuf {
        self.root.join("ledger")
    }

    /// Loads the node key, with a hint when it is missing or too open.
    pub fn load_key(&self) -> Result<NodeKey, Failure> {
        let path = self.key_path();
        if !path.exists() {
            return Err(anyhow::anyhow!("no node key at {}", path.display()))
                .hint(format!("run `peerwatt init --data-dir {}` first", self.root.display()));
        }
        NodeKey::load(&path).hint("the key file must be private to its owner (mode 0600)")
    }

    /// Opens the ledger for reading (no key needed).
    pub fn open_ledger_reader(&self) -> Result<LedgerReader<SledStore>, Failure> {
        self.require_ledger()?;
        LedgerReader::open_dir(&self.ledger_path()).hint(self.in_use_hint())
    }

    /// Opens the ledger as its owner, to append or sign heads.
    pub fn open_ledger(&self) -> Result<Ledger<SledStore>, Failure> {
        let key = self.load_key()?;
        self.require_ledger()?;
        Ledger::open_dir(&self.ledger_path(), key, Arc::new(SystemClock)).hint(self.in_use_hint())
    }

    /// Creates the ledger for `key` (or opens it, if `init` was interrupted after creating it).
    pub fn create_ledger(&self, key: NodeKey) -> Result<Ledger<SledStore>, Failure> {
        Ledger::open_dir(&self.ledger_path(), key, Arc::new(SystemClock)).hint(self.in_use_hint())
    }

    fn require_ledger(&self) -> Result<(), Failure> {
        if !self.ledger_path().is_dir() {
            return Err(anyhow::anyhow!("no ledger in {}", self.root.display())).hint(format!(
                "is this a peerwatt data directory? `peerwatt init --data-dir {}` creates one",
                self.root.display()
            ));
        }
        Ok(())
    }

    /// Whether another process (a running node) holds the ledger open.
    pub fn ledger_in_use(&self) -> bool {
        use peerwatt_ledger::LedgerError;
        use peerwatt_ledger::store::StoreError;
        // Only an existing ledger: opening a missing one would create it.
        self.ledger_path().is_dir()
            && matches!(LedgerReader::open_dir(&self.ledger_path()), Err(LedgerError::Store(StoreError::Locked(_))))
    }

    fn in_use_hint(&self) -> &'static str {
        "only one process can open a ledger at a time: `peerwatt ledger export` and `verify` work on a running node through its HTTP interface ([api]); stop the node for the rest"
    }
}
