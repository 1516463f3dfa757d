//! The maker's side of the trade handshake. The maker is the single authority over its
//! orders' remaining energy.
//!
//! ```text
//! request ──accept──> Reserved ──(caller appends the trade to its ledger, flushed)──commit──> Agreed
//!                        └──────────────(ledger write failed)─────────abort──> released
//! ```
//!
//! `accept` checks the request against the order and the market rules and reserves the energy,
//! so concurrent requests can never oversell. The caller answers the taker only after
//! `commit`, i.e. after the trade is durable. A request that was already agreed is answered
//! with the same trade (idempotent), which is how a taker that lost the answer reconciles.

use std::collections::{HashMap, HashSet};

use peerwatt_core::{Community, Side};
use peerwatt_core::{Hash, NodeKey, Order, PublicKey, Signed, Timestamp, Trade, TradeRequest, Wh};
use thiserror::Error;

use crate::book::{MAX_CLOCK_SKEW_MS, skew_for_rate};

/// How many intervals back from the newest order the maker remembers its replaced orders
/// (four hours of 15-minute intervals: beyond any trading window).
const SUPERSEDED_KEPT_INTERVALS: u64 = 16;

/// Why the maker refuses a request. Sent back to the taker as the reason.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Refusal {
    /// The request's signature does not verify.
    #[error("the request's signature does not verify")]
    BadSignature,
    /// For another community.
    #[error("the request is for another community")]
    WrongCommunity,
    /// Not addressed to this maker.
    #[error("the request names another maker")]
    NotMine,
    /// The maker trading with itself.
    #[error("a maker cannot take its own order")]
    SelfTrade,
    /// No such order of this maker (never published, or replaced so long ago it is forgotten).
    #[error("no such order")]
    NoSuchOrder,
    /// The named order expired (its interval's gate closure passed).
    #[error("the order expired")]
    Expired,
    /// The named order was withdrawn, and the maker has no order for its interval and side.
    #[error("the order was cancelled")]
    Cancelled,
    /// The named order was replaced by one at a price worse for the taker's offer.
    #[error("the order was re-priced past the request's price")]
    Repriced,
    /// The request's terms differ from the order's (side, interval, price).
    #[error("the request's {0} does not match the order")]
    TermsMismatch(&'static str),
    /// Trading for the interval is closed.
    #[error("trading for the interval is closed")]
    Closed,
    /// Zero energy.
    #[error("the request is for no energy")]
    ZeroEnergy,
    /// More than remains.
    #[error("only {available} remains of the order")]
    Insufficient {
        /// What remains, not counting reservations in flight.
        available: Wh,
    },
    /// The same request is being recorded right now; ask again shortly.
    #[error("the same request is being recorded; retry")]
    InFlight,
    /// The taker already asked about this request and was told it is not agreed: final.
    #[error("the request was answered as not agreed before")]
    AnsweredBefore,
}

/// Whether the request's price is at least as good for the maker as `order`'s price at the
/// request's signed time. That time is believed up to the clock-skew allowance `skew_ms`: a
/// taker can date its request at most that far ahead, which on a seller's falling curve is the
/// most it can gain by lying about the time.
fn price_is_as_good(order: &Order, r: &TradeRequest, now: Timestamp, skew_ms: u64) -> bool {
    let at = Timestamp(r.created_at.0.min(now.0.saturating_add(skew_ms)));
    let price = order.price_at(at);
    match r.maker_side {
        Side::Sell => r.price >= price,
        Side::Buy => r.price <= price,
    }
}

/// One of the maker's own open orders.
#[derive(Debug, Clone)]
struct OwnOrder {
    signed: Signed<Order>,
    id: Hash,
    remaining: Wh,
    reserved: Wh,
}

/// A trade the maker has signed but not yet recorded: append it to the ledger (flushed), then
/// [`Maker::commit`] it; if the append fails, [`Maker::abort`] it.
#[derive(Debug)]
#[must_use = "a reserved trade must be committed after the ledger append, or aborted"]
pub struct Reserved {
    /// The trade to append to the ledger and then send to the taker.
    pub trade: Signed<Trade>,
    request: Hash,
    order: Hash,
    energy: Wh,
}

/// What `accept` decided.
#[derive(Debug)]
pub enum Acceptance {
    /// A new trade, reserved: record it, then commit.
    New(Reserved),
    /// This request was agreed before: answer with the same trade (nothing to record).
    Again(Signed<Trade>),
}

/// The maker's open orders and agreed trades.
#[derive(Debug)]
pub struct Maker {
    community: Community,
    me: PublicKey,
    orders: HashMap<Hash, OwnOrder>,
    /// Current order per (interval, side): a newer one replaces the older.
    current: HashMap<(u64, u8), Hash>,
    /// Replaced orders of intervals still near trading, by digest: their (interval, side).
    /// A request for one was on its way while the maker re-priced (see [`Maker::order_for`]).
    superseded: HashMap<Hash, (u64, u8)>,
    /// Agreed trades by request digest.
    agreed: HashMap<Hash, Signed<Trade>>,
    in_flight: HashSet<Hash>,
    /// Requests a query was told are not agreed: they never will be.
    closed: HashSet<Hash>,
    /// How far a request's signed time may be ahead of this clock (see [`skew_for_rate`]).
    skew_ms: u64,
}

impl Maker {
    /// A maker with key `me` in `community`.
    pub fn new(community: Community, me: PublicKey) -> Maker {
        Maker {
            community,
            me,
            orders: HashMap::new(),
            current: HashMap::new(),
            superseded: HashMap::new(),
            agreed: HashMap::new(),
            in_flight: HashSet::new(),
            closed: HashSet::new(),
            skew_ms: MAX_CLOCK_SKEW_MS,
        }
    }

    /// Scales the clock-skew allowance for a clock running `rate` times faster than real time.
    pub fn set_clock_rate(&mut self, rate: u32) {
        self.skew_ms = skew_for_rate(rate);
    }

    /// Registers one of the maker's own orders (after signing and publishing it). A newer
    /// order for the same interval and side replaces the older one; energy 0 cancels.
    pub fn publish(&mut self, signed: Signed<Order>) {
        let o = signed.body();
        let key = (o.interval.0, o.side as u8);
        if let Some(old) = self.current.remove(&key) {
            self.orders.remove(&old);
            self.superseded.insert(old, key);
        }
        let newest = o.interval.0;
        self.superseded.retain(|_, (interval, _)| interval.saturating_add(SUPERSEDED_KEPT_INTERVALS) >= newest);
        if o.energy == Wh::ZERO {
            return;
        }
        let id = signed.digest();
        let remaining = o.energy;
        self.orders.insert(id, OwnOrder { signed, id, remaining, reserved: Wh::ZERO });
        self.current.insert(key, id);
    }

    /// Forgets one of the maker's own orders that never left the node (it could not be
    /// recorded): it is no longer current, and requests for it are refused.
    pub fn withdraw(&mut self, order: &Hash) {
        if let Some(o) = self.orders.remove(order) {
            let key = (o.signed.body().interval.0, o.signed.body().side as u8);
            if self.current.get(&key) == Some(order) {
                self.current.remove(&key);
            }
        }
    }

    /// What remains of an own order (not counting reservations in flight).
    pub fn remaining(&self, order: &Hash) -> Option<Wh> {
        self.orders.get(order).map(|o| o.remaining)
    }

    /// What of an own order is free to trade now: remaining minus reservations in flight.
    pub fn available(&self, order: &Hash) -> Wh {
        self.orders.get(order).map_or(Wh::ZERO, |o| o.remaining.saturating_sub(o.reserved))
    }

    /// Takes up to `energy` of an own order for a request this node sends as a taker (its order
    /// crossed a resting one), so the order and the request never both sell or buy the same
    /// energy. Returns how much was taken.
    pub fn hold_for_own_request(&mut self, order: &Hash, energy: Wh) -> Wh {
        let Some(o) = self.orders.get_mut(order) else { return Wh::ZERO };
        let taken = energy.min(o.remaining.saturating_sub(o.reserved));
        o.remaining = o.remaining.saturating_sub(taken);
        taken
    }

    /// Gives energy held by [`Maker::hold_for_own_request`] back to `order` when that request
    /// was refused, so the energy is on offer again at once (the order is not re-published: its
    /// place in the book stays).
    pub fn release_own_hold(&mut self, order: &Hash, energy: Wh) {
        if let Some(o) = self.orders.get_mut(order) {
            o.remaining = Wh(o.remaining.0.saturating_add(energy.0)).min(o.signed.body().energy);
        }
    }

    /// Answers a taker's query about its requests: the agreed trades among them. Every other
    /// request is closed, so the answer "not agreed" is final (a late copy of the request is
    /// refused). Refused as a whole while one of them is being recorded.
    pub fn query(&mut self, requests: &[Hash]) -> Result<Vec<Signed<Trade>>, Refusal> {
        if requests.iter().any(|r| self.in_flight.contains(r)) {
            return Err(Refusal::InFlight);
        }
        let mut known = Vec::new();
        for r in requests {
            match self.agreed.get(r) {
                Some(trade) => known.push(trade.clone()),
                None => {
                    self.closed.insert(*r);
                }
            }
        }
        Ok(known)
    }

    /// The maker's current order for an interval and side.
    pub fn current(&self, interval: peerwatt_core::IntervalId, side: Side) -> Option<&Signed<Order>> {
        self.current.get(&(interval.0, side as u8)).and_then(|id| self.orders.get(id)).map(|o| &o.signed)
    }

    /// The open order a request fills: the one it names, or, when the maker replaced that one
    /// (a re-pricing, a corrected amount) while the request was on its way, the maker's
    /// current order for the same interval and side, if the request's price is at least as
    /// good for the maker as the current order's price at the request's time. The trade is at
    /// the request's price, which both parties signed; the energy comes off the current order.
    /// Without this, every request that crossed a re-pricing in flight failed, and under
    /// gossip delays of a second or more most requests did.
    fn order_for(&self, r: &TradeRequest, now: Timestamp) -> Result<Hash, Refusal> {
        if self.orders.contains_key(&r.order) {
            return Ok(r.order);
        }
        let Some(&key) = self.superseded.get(&r.order) else {
            return Err(Refusal::NoSuchOrder);
        };
        if key != (r.interval.0, r.maker_side as u8) {
            return Err(Refusal::TermsMismatch("interval or side"));
        }
        let current = self.current.get(&key).and_then(|id| self.orders.get(id)).ok_or(Refusal::Cancelled)?;
        if price_is_as_good(current.signed.body(), r, now, self.skew_ms) {
            Ok(current.id)
        } else {
            Err(Refusal::Repriced)
        }
    }

    /// Decides on a request at `now`; see the module documentation.
    pub fn accept(
        &mut self,
        key: &NodeKey,
        request: &Signed<TradeRequest>,
        now: Timestamp,
    ) -> Result<Acceptance, Refusal> {
        let digest = request.digest();
        if let Some(trade) = self.agreed.get(&digest) {
            return Ok(Acceptance::Again(trade.clone()));
        }
        if self.in_flight.contains(&digest) {
            return Err(Refusal::InFlight);
        }
        if self.closed.contains(&digest) {
            return Err(Refusal::AnsweredBefore);
        }
        request.verify().map_err(|_| Refusal::BadSignature)?;
        let r = request.body();
        if r.community != self.community.id {
            return Err(Refusal::WrongCommunity);
        }
        if r.maker != self.me {
            return Err(Refusal::NotMine);
        }
        if *request.signer() == self.me {
            return Err(Refusal::SelfTrade);
        }
        let filled = self.order_for(r, now)?;
        let skew_ms = self.skew_ms;
        let order = self.orders.get_mut(&filled).ok_or(Refusal::NoSuchOrder)?;
        let o = order.signed.body();
        if o.expires_at <= now {
            return Err(Refusal::Expired);
        }
        if r.maker_side != o.side {
            return Err(Refusal::TermsMismatch("side"));
        }
        if r.interval != o.interval {
            return Err(Refusal::TermsMismatch("interval"));
        }
        // (A replaced order's price was judged by `order_for`.)
        if filled == r.order && !price_is_as_good(o, r, now, skew_ms) {
            return Err(Refusal::TermsMismatch("price"));
        }
        if !self.community.is_open(o.interval, now) {
            return Err(Refusal::Closed);
        }
        if r.energy == Wh::ZERO {
            return Err(Refusal::ZeroEnergy);
        }
        let available = order.remaining.saturating_sub(order.reserved);
        if r.energy > available {
            return Err(Refusal::Insufficient { available });
        }
        order.reserved = Wh(order.reserved.0 + r.energy.0);
        self.in_flight.insert(digest);
        let trade = Signed::sign(key, Trade { request: request.clone(), accepted_at: now });
        Ok(Acceptance::New(Reserved { trade, request: digest, order: order.id, energy: r.energy }))
    }

    /// The trade is durable in the ledger: make the reservation final.
    pub fn commit(&mut self, reserved: Reserved) -> Signed<Trade> {
        self.in_flight.remove(&reserved.request);
        if let Some(order) = self.orders.get_mut(&reserved.order) {
            order.reserved = order.reserved.saturating_sub(reserved.energy);
            order.remaining = order.remaining.saturating_sub(reserved.energy);
        }
        self.agreed.insert(reserved.request, reserved.trade.clone());
        reserved.trade
    }

    /// The trade could not be recorded: release the reservation; nobody has the trade.
    pub fn abort(&mut self, reserved: Reserved) {
        self.in_flight.remove(&reserved.request);
        if let Some(order) = self.orders.get_mut(&reserved.order) {
            order.reserved = order.reserved.saturating_sub(reserved.energy);
        }
    }

    /// The agreed trade for a request, if any: answers a taker that asks after a restart.
    pub fn lookup(&self, request: &Hash) -> Option<&Signed<Trade>> {
        self.agreed.get(request)
    }

    /// Restores an agreed trade from the ledger after a restart (fills its order, if known).
    pub fn restore(&mut self, trade: Signed<Trade>) {
        let r = trade.body().request.body();
        let digest = trade.body().request.digest();
        if self.agreed.contains_key(&digest) {
            return;
        }
        if let Some(order) = self.orders.get_mut(&r.order) {
            order.remaining = order.remaining.saturating_sub(r.energy);
        }
        self.agreed.insert(digest, trade);
    }
}
