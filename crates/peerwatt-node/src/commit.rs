//! Group commit: the durable writes of everything the node actor handled in one turn, made
//! with one flush per store, then acted on.
//!
//! Handlers never write the ledger or the state database for trades themselves. They decide
//! (the maker reserves energy and signs, the taker verifies an answer, the strategy signs a
//! request) and queue the write here. When the actor has handled the event it woke for and
//! whatever else was already waiting, [`Node::commit`] makes the turn's writes durable with
//! one `append_batch` and one state flush, and only then answers takers, announces trades and
//! sends requests. Under light load a turn holds one event, so nothing waits longer than it
//! did with a flush per write; under load the cost of a flush is shared by the whole turn.
//!
//! The promises of the handshake are unchanged: the maker's trade is in its ledger before the
//! taker hears of it; the taker's request is persisted before it leaves; the taker appends
//! what it was answered before it announces it.

use std::collections::{HashMap, VecDeque};

use peerwatt_core::{Encode, EntryKind, Hash, Order, Signed, Timestamp, Trade, TradeCall, TradeReply, TradeRequest};
use peerwatt_market::Reserved;
use peerwatt_net::{PeerId, Responder};
use tokio::sync::oneshot;

use crate::node::{Completion, Node};

/// At most this many trade requests to one maker are unanswered at once; more wait their
/// turn in [`Window`]. A burst of crossings then never overruns the maker (or the stream limit
/// of the connection, which would drop requests) and the maker still batches what it gets.
const MAX_IN_FLIGHT_PER_MAKER: usize = 64;

/// Requests persisted and not yet answered, per maker: sent ones count against the window,
/// the others wait in order.
#[derive(Default)]
pub(crate) struct Window {
    in_flight: HashMap<PeerId, usize>,
    waiting: HashMap<PeerId, VecDeque<(Hash, TradeCall)>>,
}

impl Window {
    /// Whether no request is sent and unanswered or waiting to be sent.
    pub fn is_empty(&self) -> bool {
        self.in_flight.is_empty() && self.waiting.is_empty()
    }
}

/// The answer to a `place_order` command: the order's id once it is durable, or why not.
pub(crate) type PlaceReply = oneshot::Sender<Result<Hash, String>>;

/// The writes queued during one turn of the actor.
#[derive(Default)]
pub(crate) struct Batch {
    /// This node's new orders: appended, then gossiped.
    orders: Vec<Signed<Order>>,
    /// Trades this node agreed as maker, each with the taker's open response channel.
    agreed: Vec<(Reserved, Responder)>,
    /// Trades of this node as taker, verified, to append.
    taken: Vec<Signed<Trade>>,
    /// Requests signed by this node, to persist and then send to their maker.
    requests: Vec<(Signed<TradeRequest>, PeerId)>,
    /// `place_order` commands, answered when their order is durable.
    placed: Vec<(PlaceReply, Result<Hash, String>)>,
}

impl Batch {
    /// Queues one of this node's orders: recorded, then gossiped.
    pub fn order(&mut self, order: Signed<Order>) {
        self.orders.push(order);
    }

    /// Queues a trade agreed as maker; the taker is answered once it is durable.
    pub fn agree(&mut self, reserved: Reserved, channel: Responder) {
        self.agreed.push((reserved, channel));
    }

    /// Queues a trade taken (answered or announced) to append.
    pub fn take(&mut self, trade: Signed<Trade>) {
        self.taken.push(trade);
    }

    /// Queues a request to persist and send.
    pub fn request(&mut self, request: Signed<TradeRequest>, maker: PeerId) {
        self.requests.push((request, maker));
    }

    /// Queues the answer to a `place_order` command.
    pub fn placed(&mut self, reply: PlaceReply, result: Result<Hash, String>) {
        self.placed.push((reply, result));
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.orders.is_empty()
            && self.agreed.is_empty()
            && self.taken.is_empty()
            && self.requests.is_empty()
            && self.placed.is_empty()
    }

    /// The ledger entries of the turn, in the order they are appended.
    fn entries(&self) -> Vec<(EntryKind, Vec<u8>)> {
        let orders = self.orders.iter().map(|o| (EntryKind::OrderPublished, o.to_bytes()));
        let agreed = self.agreed.iter().map(|(r, _)| (EntryKind::TradeAgreed, r.trade.to_bytes()));
        let taken = self.taken.iter().map(|t| (EntryKind::TradeAgreed, t.to_bytes()));
        orders.chain(agreed).chain(taken).collect()
    }
}

impl Node {
    /// Makes the turn's queued writes durable, then answers, announces and sends.
    pub(crate) async fn commit(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.batch);
        let entries = batch.entries();
        if !entries.is_empty() {
            if let Err(e) = self.ledger.append_batch(entries) {
                tracing::error!(error = %e, "cannot write the ledger; refusing this turn's orders and trades");
                self.counters.inc("ledger_errors");
                self.undo(batch).await;
                return;
            }
            self.counters.inc("ledger_group_commits");
        }
        let Batch { orders, agreed, taken, requests, placed } = batch;
        let mut trades = self.answer_takers(agreed).await;
        trades.extend(self.taken_recorded(taken));
        // Requests leave before anything is gossiped: they are what the counterparties wait for.
        self.send_requests(requests);
        for order in &orders {
            self.gossip_order(order).await;
        }
        for trade in &trades {
            self.announce(trade).await;
        }
        for (reply, result) in placed {
            let _ = reply.send(result);
        }
    }

    /// The ledger refused the turn's entries: nothing of the turn leaves the node.
    async fn undo(&mut self, batch: Batch) {
        let Batch { orders, agreed, taken, requests, placed } = batch;
        for order in &orders {
            self.maker.withdraw(&order.digest());
        }
        for (reserved, channel) in agreed {
            self.maker.abort(reserved);
            self.counters.inc("trade_requests_refused");
            let reply = TradeReply::Refused("the maker could not record the trade".into());
            let _ = self.net.respond(channel, reply.to_bytes()).await;
        }
        // Their requests stay persisted and pending: their makers are asked about them later.
        let now = self.clock.now();
        for trade in &taken {
            self.taker.record_failed(trade, now);
        }
        // Not persisted, not sent: asked about like any request without an answer, and closed
        // by their makers, so the energy is free again.
        self.counters.add("trade_requests_not_sent", requests.len() as u64);
        for (reply, _) in placed {
            let _ = reply.send(Err("the order could not be recorded in the ledger".into()));
        }
    }

    /// The trades agreed as maker are durable: answer each taker.
    async fn answer_takers(&mut self, agreed: Vec<(Reserved, Responder)>) -> Vec<Signed<Trade>> {
        let mut trades = Vec::with_capacity(agreed.len());
        for (reserved, channel) in agreed {
            let trade = self.maker.commit(reserved);
            let _ = self.net.respond(channel, TradeReply::Agreed(trade.clone()).to_bytes()).await;
            self.counters.inc("trades_as_maker");
            self.note_trade(&trade);
            let terms = trade.body().request.body();
            tracing::info!(
                interval = terms.interval.0,
                energy_wh = terms.energy.0,
                price = terms.price.0,
                taker = %trade.body().request.signer(),
                "trade agreed as maker"
            );
            trades.push(trade);
        }
        trades
    }

    /// The trades taken are durable: forget their requests.
    fn taken_recorded(&mut self, taken: Vec<Signed<Trade>>) -> Vec<Signed<Trade>> {
        let digests: Vec<Hash> = taken.iter().map(|t| t.body().request.digest()).collect();
        if let Err(e) = self.state.forget_requests(&digests) {
            // Harmless: a request that reappears after a restart is answered from the ledger.
            tracing::warn!(error = %e, "cannot forget answered requests");
        }
        for trade in &taken {
            self.counters.inc("trades_as_taker");
            self.note_trade(trade);
            let terms = trade.body().request.body();
            tracing::info!(
                interval = terms.interval.0,
                energy_wh = terms.energy.0,
                price = terms.price.0,
                maker = %trade.signer(),
                "trade agreed as taker"
            );
        }
        taken
    }

    /// Persists the requests (one flush), then sends each to its maker.
    fn send_requests(&mut self, requests: Vec<(Signed<TradeRequest>, PeerId)>) {
        if requests.is_empty() {
            return;
        }
        let now = self.clock.now();
        let saved: Vec<(&Signed<TradeRequest>, Timestamp)> = requests.iter().map(|(r, _)| (r, now)).collect();
        if let Err(e) = self.state.save_requests(&saved) {
            // Not sent. The taker counts them as outstanding until it asks their makers,
            // which then close them ("not agreed"), so the energy is free again.
            tracing::error!(error = %e, requests = requests.len(), "cannot persist trade requests; not sending them");
            self.counters.inc("state_errors");
            return;
        }
        for (request, peer) in requests {
            let terms = request.body();
            self.counters.inc("trade_requests_sent");
            tracing::info!(
                interval = terms.interval.0,
                energy_wh = terms.energy.0,
                price = terms.price.0,
                maker = %terms.maker,
                "trade request sent"
            );
            let digest = request.digest();
            let call = TradeCall::Request { cert: self.cert.clone(), request };
            self.window.waiting.entry(peer).or_default().push_back((digest, call));
            self.send_waiting(peer);
        }
    }

    /// Sends `maker` the requests waiting for it, as far as its window allows.
    fn send_waiting(&mut self, maker: PeerId) {
        loop {
            let in_flight = self.window.in_flight.get(&maker).copied().unwrap_or(0);
            if in_flight >= MAX_IN_FLIGHT_PER_MAKER {
                return;
            }
            let Some((digest, call)) = self.window.waiting.get_mut(&maker).and_then(|q| q.pop_front()) else {
                self.window.waiting.remove(&maker);
                return;
            };
            self.window.in_flight.insert(maker, in_flight + 1);
            self.call_maker(maker, &call, move |reply| Completion::Answer { maker, digest, reply });
        }
    }

    /// A request to `maker` came back (answered or failed): its slot is free.
    pub(crate) fn answered(&mut self, maker: PeerId) {
        if let Some(n) = self.window.in_flight.get_mut(&maker) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.window.in_flight.remove(&maker);
            }
        }
        self.send_waiting(maker);
    }

    /// Gossips one of this node's orders, now in its ledger.
    async fn gossip_order(&mut self, order: &Signed<Order>) {
        if let Err(e) = self.gossip(&self.topics.orders, order.to_bytes()).await {
            tracing::debug!(error = %e, "order not gossiped (no peers yet?)");
            self.counters.inc("orders_not_gossiped");
        }
    }
}
