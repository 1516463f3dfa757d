//! The taker's side of the trade handshake.
//!
//! ```text
//! request() ──> Persisting ──(caller persists the request, then sends it: sent())──> Sent
//! Sent ──answer: valid trade──> Record (append to ledger, announce)
//! Sent ──answer: refusal────────> Refused (energy released)
//! Sent ──no answer in time──────> Unknown ──ask the maker / see the trades topic──> Record | Refused
//! ```
//!
//! A trade is recorded exactly once, whichever way it arrives (answer, announcement, or the
//! maker's reply to a status query after a restart).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use peerwatt_core::{CommunityId, Hash, IntervalId, NodeKey, PublicKey, Signed, Timestamp, Trade, TradeRequest, Wh};

use crate::book::BookOrder;

/// Where a request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestState {
    /// Signed and being persisted; not sent yet, so not timed out either (a slow disk must
    /// not make the taker ask a maker about a request it never received).
    Persisting,
    /// Sent; waiting for the maker's answer.
    Sent,
    /// No answer in time: the maker may or may not have agreed; ask it.
    Unknown,
}

#[derive(Debug, Clone)]
struct Pending {
    request: Signed<TradeRequest>,
    sent_at: Timestamp,
    state: RequestState,
}

/// What to do with something the taker received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TakerAction {
    /// A trade of ours, verified and new: append it to the ledger, then announce it.
    Record(Box<Signed<Trade>>),
    /// Already recorded: nothing to do (a duplicate answer or announcement).
    AlreadyRecorded,
    /// The maker refused; the energy is free again.
    Refused(String),
    /// Not a trade of ours.
    NotOurs,
    /// Claims to be ours but does not verify or does not match our request: ignore it.
    Invalid(&'static str),
}

/// The taker's outstanding requests and recorded trades.
#[derive(Debug)]
pub struct Taker {
    me: PublicKey,
    community: CommunityId,
    next_seq: u64,
    pending: HashMap<Hash, Pending>,
    recorded: HashSet<Hash>,
}

impl Taker {
    /// A taker with key `me`, numbering requests from `next_seq` (persisted by the caller, so a
    /// restarted node never reuses a number).
    pub fn new(me: PublicKey, community: CommunityId, next_seq: u64) -> Taker {
        Taker { me, community, next_seq, pending: HashMap::new(), recorded: HashSet::new() }
    }

    /// The next request number.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Builds and signs a request for `energy` of `order`; it is `Persisting` until the caller
    /// has persisted it (so a restart can reconcile it) and sent it ([`Taker::sent`]).
    pub fn request(&mut self, key: &NodeKey, order: &BookOrder, energy: Wh, now: Timestamp) -> Signed<TradeRequest> {
        let request = Signed::sign(
            key,
            TradeRequest {
                community: self.community,
                order: order.id,
                maker: order.maker,
                maker_side: order.order.side,
                interval: order.order.interval,
                energy,
                price: order.order.price_at(now),
                request_seq: self.next_seq,
                created_at: now,
            },
        );
        self.next_seq += 1;
        self.pending.insert(
            request.digest(),
            Pending { request: request.clone(), sent_at: now, state: RequestState::Persisting },
        );
        request
    }

    /// A request is persisted and sent at `now`: its answer is awaited from now on.
    pub fn sent(&mut self, digest: &Hash, now: Timestamp) {
        if let Some(p) = self.pending.get_mut(digest).filter(|p| p.state == RequestState::Persisting) {
            p.state = RequestState::Sent;
            p.sent_at = now;
        }
    }

    /// Drops a request that never left this node (it could not be persisted): nobody else
    /// knows it. Returns whether it was pending.
    pub fn withdraw(&mut self, digest: &Hash) -> bool {
        self.pending.remove(digest).is_some()
    }

    /// Re-registers a request persisted before a restart; its outcome is unknown.
    pub fn restore_pending(&mut self, request: Signed<TradeRequest>, sent_at: Timestamp) {
        self.next_seq = self.next_seq.max(request.body().request_seq + 1);
        let digest = request.digest();
        if !self.recorded.contains(&digest) {
            self.pending.insert(digest, Pending { request, sent_at, state: RequestState::Unknown });
        }
    }

    /// Marks a trade already in the ledger (after a restart), so it is never recorded twice.
    pub fn restore_recorded(&mut self, trade: &Signed<Trade>) {
        let digest = trade.body().request.digest();
        self.recorded.insert(digest);
        self.pending.remove(&digest);
    }

    /// Energy requested but not yet answered, per interval (so the strategy does not over-buy
    /// or over-sell while answers are in flight).
    pub fn outstanding(&self, interval: IntervalId) -> Wh {
        Wh(self
            .pending
            .values()
            .filter(|p| p.request.body().interval == interval)
            .map(|p| p.request.body().energy.0)
            .sum())
    }

    /// Requests that got no answer within `timeout`: now `Unknown`, to be asked about.
    pub fn expire(&mut self, now: Timestamp, timeout: Duration) -> Vec<Signed<TradeRequest>> {
        let mut out = Vec::new();
        for p in self.pending.values_mut() {
            if p.state == RequestState::Sent && now.saturating_since(p.sent_at) >= timeout {
                p.state = RequestState::Unknown;
            }
            if p.state == RequestState::Unknown {
                out.push(p.request.clone());
            }
        }
        out
    }

    /// The maker's answer to request `digest`: a trade, or a refusal reason.
    pub fn on_answer(&mut self, digest: &Hash, answer: Result<Signed<Trade>, String>) -> TakerAction {
        match answer {
            Ok(trade) => self.on_trade(&trade),
            Err(reason) => {
                // A refusal only counts for a request still pending; a trade already recorded stands.
                if self.pending.remove(digest).is_some() { TakerAction::Refused(reason) } else { TakerAction::NotOurs }
            }
        }
    }

    /// A trade seen anywhere (answer, trades topic, status reply).
    pub fn on_trade(&mut self, trade: &Signed<Trade>) -> TakerAction {
        let request = &trade.body().request;
        if *request.signer() != self.me {
            return TakerAction::NotOurs;
        }
        let digest = request.digest();
        if self.recorded.contains(&digest) {
            return TakerAction::AlreadyRecorded;
        }
        // A pending request is ours byte for byte (the digest covers our signature), so only
        // the maker's signature is left to check; anything else is checked in full.
        let verified = if self.pending.contains_key(&digest) {
            *trade.signer() == request.body().maker && trade.verify_own_signature().is_ok()
        } else {
            trade.verify().is_ok()
        };
        if !verified {
            return TakerAction::Invalid("the trade's signatures do not verify");
        }
        // Our own signature is on the request: even without a pending entry (lost in a crash
        // before it was persisted) it is our trade, agreed by the maker.
        self.pending.remove(&digest);
        self.recorded.insert(digest);
        TakerAction::Record(Box::new(trade.clone()))
    }

    /// A trade returned by [`Taker::on_trade`] could not be recorded: it is not recorded, and
    /// its request is pending with an unknown outcome again, so its maker is asked about it.
    pub fn record_failed(&mut self, trade: &Signed<Trade>, now: Timestamp) {
        let request = &trade.body().request;
        let digest = request.digest();
        if self.recorded.remove(&digest) {
            self.pending
                .insert(digest, Pending { request: request.clone(), sent_at: now, state: RequestState::Unknown });
        }
    }

    /// How many requests await an answer (sent, or unknown and to be asked about).
    pub fn pending_count(&self) -> usize {
        self.pending.len()
    }

    /// The state of a request, if it is pending.
    pub fn state(&self, digest: &Hash) -> Option<RequestState> {
        self.pending.get(digest).map(|p| p.state)
    }
}
