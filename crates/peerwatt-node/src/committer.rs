//! The committer: owns the node's two stores (the ledger and the state database), applies the
//! writes of each turn the trading core ends, and makes them durable with one flush for
//! every turn that ended while the previous flush ran (group commit across turns).
//!
//! Applying is immediate (the entries are part of the log from then on); the flush (an
//! `fsync` of each store written) runs on a blocking thread while the actor goes on validating
//! gossip and answering calls. A flush used to be awaited in the actor, and a node then
//! relayed nothing for the length of it: on a disk shared by a hundred nodes, 0.1 – 2 s in one
//! turn of twenty. At most one flush is in progress; the core acts on a turn only once the
//! flush that covers it is done ([`peerwatt_market::Trader::durable`]).

use std::future::Future;
use std::sync::Arc;

use peerwatt_core::{Hash, Signed, Timestamp, TradeRequest};
use peerwatt_ledger::{Ledger, LedgerError, SledStore, Store};
use peerwatt_market::Writes;

use crate::state::State;

/// What applying a turn's writes came to.
#[derive(Debug)]
pub(crate) enum Applied {
    /// Applied; durable with the next flush.
    Ok,
    /// The ledger refused the entries: nothing of the turn is applied.
    LedgerFailed(LedgerError),
    /// The entries are applied, but the requests could not be persisted: they must not leave.
    RequestsNotPersisted(String),
}

/// Which stores have writes that wait for a flush.
#[derive(Debug, Default, Clone, Copy)]
struct Dirty {
    ledger: bool,
    state: bool,
}

impl Dirty {
    /// Both stores: at shutdown, which also covers writes made outside a turn (witnessed heads).
    const ALL: Dirty = Dirty { ledger: true, state: true };
}

/// The stores, and the turns waiting for a flush. Generic over the ledger's store: sled in
/// the daemon, memory in tests.
pub(crate) struct Committer<S: Store + 'static = SledStore> {
    ledger: Arc<Ledger<S>>,
    state: State,
    /// Turns applied since the flush in progress started (or with none in progress).
    waiting: Vec<u64>,
    /// Which stores the waiting turns wrote (a store nobody wrote needs no `fsync`).
    dirty: Dirty,
    /// Turns covered by the flush in progress; `None`: no flush in progress.
    in_progress: Option<Vec<u64>>,
    /// How long flushes took (shown on `/metrics`).
    flush_times: Arc<crate::metrics::Durations>,
}

/// Makes everything applied to the stores in `dirty` durable.
fn flush<S: Store>(ledger: &Ledger<S>, state: &State, dirty: Dirty) -> Result<(), String> {
    if dirty.ledger {
        ledger.sync().map_err(|e| format!("ledger: {e}"))?;
    }
    if dirty.state {
        state.flush().map_err(|e| format!("node state: {e}"))?;
    }
    Ok(())
}

/// Runs disk work that waits for an `fsync` without stalling the runtime. The node actors
/// share the runtime's worker threads; a flush that blocks a worker also blocks every task
/// queued on it. On a multi-threaded runtime the worker first hands its other tasks to another
/// thread (`block_in_place`); on a current-thread runtime (tests) there is no other thread to
/// hand them to, so it simply runs.
pub(crate) fn blocking<R>(work: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => tokio::task::block_in_place(work),
        _ => work(),
    }
}

impl<S: Store + 'static> Committer<S> {
    /// A committer over the node's stores.
    pub fn new(ledger: Arc<Ledger<S>>, state: State) -> Committer<S> {
        Committer {
            ledger,
            state,
            waiting: Vec::new(),
            dirty: Dirty::default(),
            in_progress: None,
            flush_times: Arc::default(),
        }
    }

    /// The committer, timing its flushes into `times`.
    pub fn timed(mut self, times: Arc<crate::metrics::Durations>) -> Committer<S> {
        self.flush_times = times;
        self
    }

    /// The ledger (for reading, heads and witnessed heads).
    pub fn ledger(&self) -> &Ledger<S> {
        &self.ledger
    }

    /// Applies a turn's writes at once: ledger entries in one `append_unsynced`, requests in
    /// one state batch. Durable after the flush that covers the turn.
    pub fn apply(&mut self, writes: &Writes) -> Applied {
        if !writes.entries.is_empty() {
            if let Err(e) = self.ledger.append_unsynced(writes.entries.clone()) {
                return Applied::LedgerFailed(e);
            }
            self.dirty.ledger = true;
        }
        self.waiting.push(writes.turn);
        if writes.requests.is_empty() {
            return Applied::Ok;
        }
        let staged: Vec<(&Signed<TradeRequest>, Timestamp)> = writes.requests.iter().map(|(r, t)| (r, *t)).collect();
        match self.state.stage_requests(&staged) {
            Ok(()) => {
                self.dirty.state = true;
                Applied::Ok
            }
            Err(e) => Applied::RequestsNotPersisted(e.to_string()),
        }
    }

    /// Appends entries that need no turn of their own (witnessed heads): durable with the next
    /// flush; nothing leaves the node on the strength of them.
    pub fn append_unsynced(&mut self, items: Vec<(peerwatt_core::EntryKind, Vec<u8>)>) -> Result<(), LedgerError> {
        self.ledger.append_unsynced(items)?;
        self.dirty.ledger = true;
        Ok(())
    }

    /// Settled requests the state database may forget (not urgent: a request that reappears
    /// after a restart is answered from the ledger).
    pub fn forget_requests(&self, digests: &[Hash]) {
        if let Err(e) = self.state.forget_requests(digests) {
            tracing::warn!(error = %e, "cannot forget answered requests");
        }
    }

    /// Starts a flush of every turn applied so far, unless one is in progress or nothing
    /// waits: the future makes them durable on a blocking thread.
    pub fn start_flush(&mut self) -> Option<impl Future<Output = Result<(), String>> + Send + 'static> {
        if self.in_progress.is_some() || self.waiting.is_empty() {
            return None;
        }
        self.in_progress = Some(std::mem::take(&mut self.waiting));
        let dirty = std::mem::take(&mut self.dirty);
        let (ledger, state) = (Arc::clone(&self.ledger), self.state.clone());
        let times = Arc::clone(&self.flush_times);
        Some(async move {
            let flushed = tokio::task::spawn_blocking(move || {
                let started = std::time::Instant::now();
                let result = flush(&ledger, &state, dirty);
                times.since(started);
                result
            })
            .await;
            flushed.unwrap_or_else(|e| Err(format!("the flush did not finish: {e}")))
        })
    }

    /// The flush in progress finished: the turns it covered, oldest first.
    pub fn flushed(&mut self) -> Vec<u64> {
        self.in_progress.take().unwrap_or_default()
    }

    /// At shutdown: flushes everything applied, here and now. Returns the turns covered and
    /// the flush's result.
    pub fn flush_now(&mut self) -> (Vec<u64>, Result<(), String>) {
        let mut turns = self.in_progress.take().unwrap_or_default();
        turns.append(&mut self.waiting);
        let result = blocking(|| flush(&self.ledger, &self.state, Dirty::ALL));
        (turns, result)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a test panics to fail

    use peerwatt_core::{EntryKind, ManualClock, NodeKey, Timestamp};
    use peerwatt_ledger::MemoryStore;

    use super::*;

    fn committer(dir: &std::path::Path) -> Committer<MemoryStore> {
        let clock = Arc::new(ManualClock::new(Timestamp(1_000)));
        let ledger = Ledger::open(MemoryStore::default(), NodeKey::from_seed(&[1; 32]), clock).unwrap();
        Committer::new(Arc::new(ledger), State::open(dir).unwrap())
    }

    fn writes(turn: u64, entries: usize) -> Writes {
        Writes { turn, entries: vec![(EntryKind::ConfigChange, b"note".to_vec()); entries], requests: Vec::new() }
    }

    #[tokio::test]
    async fn one_flush_at_a_time_covers_every_turn_applied_before_it_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = committer(dir.path());
        assert!(c.start_flush().is_none(), "nothing applied, nothing to flush");
        assert!(matches!(c.apply(&writes(0, 2)), Applied::Ok));
        let first = c.start_flush().unwrap();
        // Turns applied while a flush runs wait for the next one.
        assert!(matches!(c.apply(&writes(1, 1)), Applied::Ok));
        assert!(matches!(c.apply(&writes(2, 0)), Applied::Ok));
        assert!(c.start_flush().is_none(), "at most one flush in progress");
        assert_eq!(c.ledger().len().unwrap(), 3, "applied at once, readable before the flush");
        first.await.unwrap();
        assert_eq!(c.flushed(), vec![0]);
        let second = c.start_flush().unwrap();
        second.await.unwrap();
        assert_eq!(c.flushed(), vec![1, 2], "the next flush covers both, oldest first");
        assert!(c.start_flush().is_none());
    }
}
