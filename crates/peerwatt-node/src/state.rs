//! The node's own durable state besides the ledger: the taker's trade requests in flight and
//! its next request number. A request is persisted (flushed) before it is sent, so a node
//! killed right after sending still knows to ask the maker about it when it restarts. The
//! node writes with [`State::stage_requests`] and flushes off its actor (see
//! `crate::committer`), sending only after the flush.

use std::path::Path;

use peerwatt_core::{Decode, Encode, Hash, Signed, Timestamp, TradeRequest};
use thiserror::Error;

/// The state database failed.
#[derive(Debug, Error)]
pub enum StateError {
    /// sled failed.
    #[error("node state database: {0}")]
    Db(#[from] sled::Error),
}

const NEXT_SEQ: &[u8] = b"next-request-seq";
const PENDING: u8 = b'r';

/// The state database (sled, in `<data dir>/state`). Clones share the database, so one can
/// flush on another thread.
#[derive(Debug, Clone)]
pub struct State {
    db: sled::Db,
}

fn pending_key(digest: &Hash) -> Vec<u8> {
    let mut k = vec![PENDING];
    k.extend_from_slice(&digest.0);
    k
}

impl State {
    /// Opens (or creates) the database.
    pub fn open(dir: &Path) -> Result<State, StateError> {
        Ok(State { db: sled::Config::new().path(dir).flush_every_ms(None).open()? })
    }

    /// The next request number (0 for a new node).
    pub fn next_request_seq(&self) -> Result<u64, StateError> {
        Ok(self.db.get(NEXT_SEQ)?.and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok()).map_or(0, u64::from_be_bytes))
    }

    /// Writes requests about to be sent, and the next request number after the last of them,
    /// in one batch, durable after the next [`State::flush`].
    pub fn stage_requests(&self, requests: &[(&Signed<TradeRequest>, Timestamp)]) -> Result<(), StateError> {
        let mut batch = sled::Batch::default();
        let mut next = None;
        for (request, sent_at) in requests {
            let mut value = sent_at.0.to_be_bytes().to_vec();
            value.extend_from_slice(&request.to_bytes());
            batch.insert(pending_key(&request.digest()), value);
            next = next.max(Some(request.body().request_seq + 1));
        }
        if let Some(next) = next {
            batch.insert(NEXT_SEQ, &next.to_be_bytes());
        }
        self.db.apply_batch(batch)?;
        Ok(())
    }

    /// Forgets requests whose outcome is known (recorded or refused). Not flushed: a request
    /// that reappears after a crash is asked about again and answered from the ledger.
    pub fn forget_requests(&self, digests: &[Hash]) -> Result<(), StateError> {
        let mut batch = sled::Batch::default();
        for digest in digests {
            batch.remove(pending_key(digest));
        }
        self.db.apply_batch(batch)?;
        Ok(())
    }

    /// Forgets one request (see [`State::forget_requests`]).
    pub fn forget_request(&self, digest: &Hash) -> Result<(), StateError> {
        self.forget_requests(std::slice::from_ref(digest))
    }

    /// Every persisted request with the time it was sent. Unreadable records are skipped and
    /// counted in the second value (they can only come from a damaged disk).
    pub fn pending_requests(&self) -> (Vec<(Signed<TradeRequest>, Timestamp)>, usize) {
        let mut out = Vec::new();
        let mut bad = 0;
        for item in self.db.scan_prefix([PENDING]) {
            let parsed = item.ok().and_then(|(_, v)| {
                let (time, bytes) = v.split_at_checked(8)?;
                let sent_at = Timestamp(u64::from_be_bytes(time.try_into().ok()?));
                Some((Signed::<TradeRequest>::from_bytes(bytes).ok()?, sent_at))
            });
            match parsed {
                Some(p) => out.push(p),
                None => bad += 1,
            }
        }
        (out, bad)
    }

    /// Writes everything to disk; returns once it is durable.
    pub fn flush(&self) -> Result<(), StateError> {
        self.db.flush()?;
        Ok(())
    }
}
