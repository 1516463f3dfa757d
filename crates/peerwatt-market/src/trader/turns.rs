//! Group commit, decided here and carried out by the caller: the writes of everything handled
//! in one turn go to the stores at once ([`Trader::end_turn`]), and what the turn decided
//! leaves the node only when they are durable ([`Trader::durable`]).
//!
//! Turns are made durable in the order they ended; a caller may flush several with one
//! `fsync` (it reports the newest). While a turn waits, its maker reservations hold the energy
//! and its trades count as spoken for ([`super::Position`]), so a tick in between neither
//! sells nor buys the same energy again.

use std::collections::VecDeque;

use peerwatt_core::messages::MAX_FRAME_MESSAGES;
use peerwatt_core::{
    Answer, Encode, EntryKind, GossipFrame, Hash, MeterStatement, Order, Settlement, Signed, Timestamp, Trade,
    TradeReply, TradeRequest,
};

use super::metrics::order_age_bucket;
use super::{CommandId, Effect, ReplyTo, Stage, Topic, Trader};
use crate::maker::Reserved;

/// The answer to one request of a taker's call, as far as the maker has decided.
pub(super) enum Slot {
    /// Final now (a refusal, or a trade agreed before).
    Ready(Answer),
    /// A new trade, reserved: answered once it is in the ledger.
    Agreed(Reserved),
}

/// A taker's call whose answer waits for the turn's writes.
pub(super) struct PendingAnswer {
    /// Where the answer goes.
    pub reply: ReplyTo,
    /// A `Requests` call (answered `Answers`) or a single `Request` (answered `Agreed`).
    pub batched: bool,
    /// One per request, in the call's order.
    pub slots: Vec<Slot>,
}

impl PendingAnswer {
    fn reserved(&self) -> impl Iterator<Item = &Reserved> {
        self.slots.iter().filter_map(|s| match s {
            Slot::Agreed(r) => Some(r),
            Slot::Ready(_) => None,
        })
    }
}

/// The reply to a call, once every one of its answers is final.
pub(super) fn reply(batched: bool, mut answers: Vec<Answer>) -> TradeReply {
    if batched {
        return TradeReply::Answers(answers);
    }
    match answers.pop() {
        Some(Answer::Agreed(trade)) => TradeReply::Agreed(trade),
        Some(Answer::Refused(reason)) => TradeReply::Refused(reason),
        None => TradeReply::Refused("no request".into()),
    }
}

/// What one turn decided, waiting for its writes.
#[derive(Default)]
pub(super) struct Turn {
    /// This node's new orders: recorded, then gossiped.
    pub orders: Vec<Signed<Order>>,
    /// Answers to takers' calls, some with trades agreed as maker.
    pub answers: Vec<PendingAnswer>,
    /// Trades of this node as taker, verified: recorded, then their requests forgotten.
    pub taken: Vec<Signed<Trade>>,
    /// Requests signed by this node: persisted, then sent.
    pub requests: Vec<Signed<TradeRequest>>,
    /// `place_order` commands, answered when their order is durable.
    pub placed: Vec<(CommandId, Result<Hash, String>)>,
    /// This node's meter statements: recorded, then gossiped.
    pub statements: Vec<Signed<MeterStatement>>,
    /// This node's settlements: recorded.
    pub settlements: Vec<Signed<Settlement>>,
}

impl Turn {
    /// Whether the turn decided nothing.
    pub fn is_empty(&self) -> bool {
        self.orders.is_empty()
            && self.answers.is_empty()
            && self.taken.is_empty()
            && self.requests.is_empty()
            && self.placed.is_empty()
            && self.statements.is_empty()
            && self.settlements.is_empty()
    }

    /// The ledger entries of the turn, in the order they are appended.
    fn entries(&self) -> Vec<(EntryKind, Vec<u8>)> {
        let orders = self.orders.iter().map(|o| (EntryKind::OrderPublished, o.to_bytes()));
        let agreed =
            self.answers.iter().flat_map(PendingAnswer::reserved).map(|r| (EntryKind::TradeAgreed, r.trade.to_bytes()));
        let taken = self.taken.iter().map(|t| (EntryKind::TradeAgreed, t.to_bytes()));
        let statements = self.statements.iter().map(|s| (EntryKind::MeterStatement, s.to_bytes()));
        let settlements = self.settlements.iter().map(|s| (EntryKind::Settlement, s.to_bytes()));
        orders.chain(agreed).chain(taken).chain(statements).chain(settlements).collect()
    }
}

/// The writes of one turn, for the caller to apply and make durable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Writes {
    /// Names the turn in [`Trader::durable`] and [`Trader::failed`].
    pub turn: u64,
    /// Ledger entries to append, in order.
    pub entries: Vec<(EntryKind, Vec<u8>)>,
    /// Requests to persist (with when they were sent) before they leave.
    pub requests: Vec<(Signed<TradeRequest>, Timestamp)>,
}

/// Turns whose writes were handed out and are not yet durable, oldest first.
#[derive(Default)]
pub(super) struct Pipeline {
    waiting: VecDeque<(u64, Turn)>,
    next: u64,
}

impl Pipeline {
    /// Whether no turn waits for its writes.
    pub fn is_idle(&self) -> bool {
        self.waiting.is_empty()
    }
}

impl Trader {
    /// Ends the turn: its writes, if it has any, for the caller to apply now and make
    /// durable. A turn without writes (refusals only) is acted on at once, unless turns
    /// before it still wait: answers leave in the order they were decided.
    pub fn end_turn(&mut self, now: Timestamp) -> Option<Writes> {
        for interval in std::mem::take(&mut self.takes_due) {
            self.take(interval, now);
        }
        if self.turn.is_empty() {
            return None;
        }
        let turn = std::mem::take(&mut self.turn);
        let entries = turn.entries();
        let requests: Vec<_> = turn.requests.iter().map(|r| (r.clone(), now)).collect();
        if entries.is_empty() && requests.is_empty() && self.pipeline.is_idle() {
            self.after_durable(turn, now);
            return None;
        }
        let id = self.pipeline.next;
        self.pipeline.next += 1;
        self.pipeline.waiting.push_back((id, turn));
        Some(Writes { turn: id, entries, requests })
    }

    /// The requests of turn `id` could not be persisted: they are not sent, and since nobody
    /// else knows them, they are withdrawn and their energy is free again.
    pub fn requests_not_persisted(&mut self, id: u64) {
        let requests = match self.pipeline.waiting.iter_mut().find(|(t, _)| *t == id) {
            Some((_, turn)) => std::mem::take(&mut turn.requests),
            None => return,
        };
        self.withdraw_requests(&requests);
    }

    /// Requests that never left the node: forgotten, their holds and claims released.
    fn withdraw_requests(&mut self, requests: &[Signed<TradeRequest>]) {
        self.metrics.trade_requests_not_sent += requests.len() as u64;
        for request in requests {
            let digest = request.digest();
            if self.taker.withdraw(&digest) {
                self.release_request(&digest);
            }
        }
    }

    /// Whether the trade of request `digest` is taken in a turn whose writes are not durable.
    pub(super) fn taken_awaits_durability(&self, digest: &Hash) -> bool {
        let taken = |turn: &Turn| turn.taken.iter().any(|t| t.body().request.digest() == *digest);
        taken(&self.turn) || self.pipeline.waiting.iter().any(|(_, turn)| taken(turn))
    }

    /// Every turn up to `id` is durable at `now`: answer, record, send and gossip what they
    /// decided.
    pub fn durable(&mut self, id: u64, now: Timestamp) {
        while self.pipeline.waiting.front().is_some_and(|(t, _)| *t <= id) {
            if let Some((_, turn)) = self.pipeline.waiting.pop_front() {
                self.after_durable(turn, now);
            }
        }
    }

    /// The writes of turn `id` (and of every turn after it that shared its flush: the caller
    /// reports each) could not be recorded: nothing of it leaves the node.
    pub fn failed(&mut self, id: u64, now: Timestamp) {
        if let Some(at) = self.pipeline.waiting.iter().position(|(t, _)| *t == id)
            && let Some((_, turn)) = self.pipeline.waiting.remove(at)
        {
            self.metrics.turns_refused += 1;
            self.undo(turn, now);
        }
    }

    fn after_durable(&mut self, turn: Turn, now: Timestamp) {
        let Turn { orders, answers, taken, requests, placed, statements, settlements } = turn;
        let agreed = self.answer_takers(answers);
        self.taken_recorded(taken);
        // Requests leave before anything is gossiped: they are what the counterparties wait for.
        self.send_requests(requests, now);
        for order in &orders {
            self.metrics.own_order_wait[order_age_bucket(self.real_ms_since(order.body().created_at, now))] += 1;
        }
        self.gossip_in_frames(Topic::Orders, &orders);
        // Only the maker announces: its announcement is all that every book, and a taker that
        // missed its answer, need; a second copy cost every member a message per trade.
        self.gossip_in_frames(Topic::Trades, &agreed);
        for (command, result) in placed {
            self.effects.push(Effect::Placed { command, result });
        }
        self.statements_durable(statements);
        self.settlements_durable(settlements);
    }

    /// The trades agreed as maker are durable: answer each taker. Returns the new trades.
    fn answer_takers(&mut self, pending: Vec<PendingAnswer>) -> Vec<Signed<Trade>> {
        let mut trades = Vec::new();
        for PendingAnswer { reply: to, batched, slots } in pending {
            let mut answers = Vec::with_capacity(slots.len());
            for slot in slots {
                answers.push(match slot {
                    Slot::Ready(answer) => answer,
                    Slot::Agreed(reserved) => {
                        let trade = self.maker.commit(reserved);
                        self.trade_durable(&trade);
                        trades.push(trade.clone());
                        Answer::Agreed(trade)
                    }
                });
            }
            self.effects.push(Effect::Respond { reply: to, data: reply(batched, answers).to_bytes() });
        }
        trades
    }

    /// The trades taken are durable: their requests can be forgotten.
    fn taken_recorded(&mut self, taken: Vec<Signed<Trade>>) {
        if taken.is_empty() {
            return;
        }
        self.effects.push(Effect::Forget(taken.iter().map(|t| t.body().request.digest()).collect()));
        for trade in &taken {
            self.trade_durable(trade);
        }
    }

    /// A new trade of this node is in its ledger: traded, counted, reported.
    fn trade_durable(&mut self, trade: &Signed<Trade>) {
        let as_maker = *trade.signer() == self.me;
        if as_maker {
            // The taker's own order gave the energy: this node's book must know, or it would
            // keep asking that order for energy it no longer has (no announcement of a trade
            // of its own comes back to it).
            self.books.apply_trade(trade);
            self.metrics.trades_as_maker += 1;
        } else {
            self.metrics.trades_as_taker += 1;
        }
        let terms = trade.body().request.body();
        tracing::info!(
            interval = terms.interval.0,
            energy_wh = terms.energy.0,
            price = terms.price.0,
            counterparty = %if as_maker { *trade.body().request.signer() } else { *trade.signer() },
            "trade agreed as {}",
            if as_maker { "maker" } else { "taker" }
        );
        self.remember_trade(trade, Stage::Traded);
        self.note_trade(trade);
        self.effects.push(Effect::Recorded(self.recorded(trade)));
    }

    /// The turn's writes were refused: withdraw its orders, abort its reservations, refuse
    /// its calls; its taken trades are pending again, to be asked about.
    fn undo(&mut self, turn: Turn, now: Timestamp) {
        let Turn { orders, answers, taken, requests, placed, statements, settlements } = turn;
        self.statements_failed(statements);
        self.settlements_failed(settlements);
        for order in &orders {
            self.maker.withdraw(&order.digest());
        }
        for PendingAnswer { reply: to, batched, slots } in answers {
            let answers = slots
                .into_iter()
                .map(|slot| match slot {
                    Slot::Ready(answer) => answer,
                    Slot::Agreed(reserved) => {
                        self.position.release(&reserved.trade.body().request.digest());
                        self.maker.abort(reserved);
                        self.metrics.trade_requests_refused += 1;
                        Answer::Refused("the maker could not record the trade".into())
                    }
                })
                .collect();
            self.effects.push(Effect::Respond { reply: to, data: reply(batched, answers).to_bytes() });
        }
        for trade in &taken {
            self.taker.record_failed(trade, now);
            self.position.advance(&trade.body().request.digest(), Stage::Requested);
        }
        self.withdraw_requests(&requests);
        for (command, _) in placed {
            self.effects
                .push(Effect::Placed { command, result: Err("the order could not be recorded in the ledger".into()) });
        }
    }

    /// Gossips `messages` on `topic`, up to [`MAX_FRAME_MESSAGES`] per frame and within the
    /// topic's frame size: each frame costs every member a receipt and relays, so a turn's
    /// messages share frames.
    pub(super) fn gossip_in_frames<M: Encode>(&mut self, topic: Topic, messages: &[M]) {
        let limit = crate::gossip::max_frame(topic);
        let mut frame = GossipFrame { cert: self.cert.clone(), messages: Vec::new() };
        // The frame's own bytes: version, certificate, count.
        let overhead = self.cert.to_bytes().len() + 2;
        let mut size = overhead;
        for message in messages.iter().map(Encode::to_bytes) {
            // Each message is preceded by its length.
            let adds = message.len() + 4;
            if !frame.messages.is_empty() && (frame.messages.len() == MAX_FRAME_MESSAGES || size + adds > limit) {
                let full = std::mem::take(&mut frame.messages);
                self.publish_frame(topic, GossipFrame { cert: self.cert.clone(), messages: full });
                size = overhead;
            }
            size += adds;
            frame.messages.push(message);
        }
        if !frame.messages.is_empty() {
            self.publish_frame(topic, frame);
        }
    }

    fn publish_frame(&mut self, topic: Topic, frame: GossipFrame) {
        self.effects.push(Effect::Publish { topic, frame: frame.to_bytes() });
    }
}
