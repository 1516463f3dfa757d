//! Group commit: the durable writes of everything the node actor handled in one turn, made
//! with one flush per store, then acted on.
//!
//! Handlers never write the ledger or the state database for trades themselves. They decide
//! (the maker reserves energy and signs, the taker verifies an answer, the strategy signs a
//! request) and queue the write here. When the actor has handled the event it woke for and
//! whatever else was already waiting, [`Node::commit`] applies the turn's writes with one
//! `append_unsynced` and one state batch, and hands the flush to a blocking thread. Once the
//! flush is done ([`Node::on_flushed`]) it answers takers, announces trades and sends
//! requests. The actor does not wait for the disk: it goes on validating gossip meanwhile.
//!
//! The promises of the handshake are unchanged: the maker's trade is in its ledger (durably)
//! before the taker hears of it; the taker's request is persisted before it leaves; the taker
//! appends what it was answered before it announces it.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::Arc;

use peerwatt_core::messages::MAX_FRAME_MESSAGES;
use peerwatt_core::wire::MAX_BATCH;
use peerwatt_core::{
    Answer, Encode, EntryKind, Hash, IntervalId, Order, PublicKey, Side, Signed, Timestamp, Trade, TradeCall,
    TradeReply, TradeRequest, Wh,
};
use peerwatt_ledger::{Ledger, SledStore};
use peerwatt_market::Reserved;
use peerwatt_net::{PeerId, Responder};
use tokio::sync::oneshot;

use crate::node::{Completion, Node};
use crate::state::State;

/// At most this many trade requests to one maker are unanswered at once; more wait their
/// turn in [`Window`]. A burst of crossings then never overruns the maker (or the stream limit
/// of the connection) and the maker still batches what it gets. Requests leave in calls of up
/// to [`MAX_BATCH`], so this allows four calls in flight.
const MAX_IN_FLIGHT_PER_MAKER: usize = 4 * MAX_BATCH;

/// Requests persisted and not yet answered, per maker: sent ones count against the window,
/// the others wait in order.
#[derive(Default)]
pub(crate) struct Window {
    in_flight: HashMap<PeerId, usize>,
    waiting: HashMap<PeerId, VecDeque<Signed<TradeRequest>>>,
}

impl Window {
    /// Whether no request is sent and unanswered or waiting to be sent.
    pub fn is_empty(&self) -> bool {
        self.in_flight.is_empty() && self.waiting.is_empty()
    }
}

/// The answer to one request of a taker's call, as far as the maker has decided.
pub(crate) enum Slot {
    /// Final now (a refusal, or a trade agreed before).
    Ready(Answer),
    /// A new trade, reserved: answered once it is in the ledger.
    Agreed(Reserved),
}

/// A taker's call whose answer waits for the end of the turn.
pub(crate) struct PendingAnswer {
    /// Where the answer goes.
    pub channel: Responder,
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

    /// The reply to a call, once every slot is final.
    pub fn reply(batched: bool, mut answers: Vec<Answer>) -> TradeReply {
        if batched {
            return TradeReply::Answers(answers);
        }
        match answers.pop() {
            Some(Answer::Agreed(trade)) => TradeReply::Agreed(trade),
            Some(Answer::Refused(reason)) => TradeReply::Refused(reason),
            None => TradeReply::Refused("no request".into()),
        }
    }
}

/// The answer to a `place_order` command: the order's id once it is durable, or why not.
pub(crate) type PlaceReply = oneshot::Sender<Result<Hash, String>>;

/// The writes queued during one turn of the actor.
#[derive(Default)]
pub(crate) struct Batch {
    /// This node's new orders: appended, then gossiped.
    orders: Vec<Signed<Order>>,
    /// Answers to takers' calls that wait for trades this node agreed as maker.
    answers: Vec<PendingAnswer>,
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

    /// Queues the answer to a call with trades agreed as maker; the taker is answered once
    /// they are durable.
    pub fn answer(&mut self, answer: PendingAnswer) {
        self.answers.push(answer);
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
            && self.answers.is_empty()
            && self.taken.is_empty()
            && self.requests.is_empty()
            && self.placed.is_empty()
    }

    /// The ledger entries of the turn, in the order they are appended.
    fn entries(&self) -> Vec<(EntryKind, Vec<u8>)> {
        let orders = self.orders.iter().map(|o| (EntryKind::OrderPublished, o.to_bytes()));
        let agreed =
            self.answers.iter().flat_map(PendingAnswer::reserved).map(|r| (EntryKind::TradeAgreed, r.trade.to_bytes()));
        let taken = self.taken.iter().map(|t| (EntryKind::TradeAgreed, t.to_bytes()));
        orders.chain(agreed).chain(taken).collect()
    }
}

/// Runs disk work that waits for a flush (`fsync`) without stalling the runtime. The node
/// actors share the runtime's worker threads; a flush that blocks a worker also blocks every
/// task queued on it (network, other nodes' actors). On a multi-threaded runtime the worker
/// first hands its other tasks to another thread (`block_in_place`); on a current-thread
/// runtime (tests) there is no other thread to hand them to, so it simply runs.
pub(crate) fn blocking<R>(work: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => tokio::task::block_in_place(work),
        _ => work(),
    }
}

/// Turns whose writes are applied and wait for a flush before anything of them leaves the node
/// (see [`Node::commit`]).
#[derive(Default)]
pub(crate) struct Flushes {
    /// Applied after the flush in progress started (or with none in progress), oldest first.
    waiting: Vec<Batch>,
    /// Covered by the flush in progress, oldest first; `None`: no flush in progress.
    in_progress: Option<Vec<Batch>>,
    /// Which stores the waiting turns wrote (a store nobody wrote needs no `fsync`).
    dirty: Dirty,
}

/// Which stores have writes that wait for a flush.
#[derive(Default, Clone, Copy)]
struct Dirty {
    ledger: bool,
    state: bool,
}

impl Dirty {
    /// Both stores: at shutdown, which also covers writes made outside a turn's batch
    /// (witnessed heads).
    const ALL: Dirty = Dirty { ledger: true, state: true };
}

impl Flushes {
    /// Whether every turn applied has been acted on.
    pub fn is_idle(&self) -> bool {
        self.waiting.is_empty() && self.in_progress.is_none()
    }

    /// Energy this node agreed for `interval` on `side` (its own side: selling as a maker
    /// with a sell order, buying as a taker of one) in turns that wait for their flush. Such
    /// trades count in the node's traded energy only once durable, but the strategy must
    /// count them from the moment they are agreed: in between, a tick would otherwise see
    /// the energy as neither traded nor held, and offer or bid it again (measured: a seller
    /// sold 64 Wh on a forecast of 32).
    pub fn unrecorded(&self, me: &PublicKey, interval: IntervalId, side: Side) -> Wh {
        let batches = self.waiting.iter().chain(self.in_progress.iter().flatten());
        let trades =
            batches.flat_map(|b| b.answers.iter().flat_map(|a| a.reserved().map(|r| &r.trade)).chain(&b.taken));
        Wh(trades
            .filter(|t| own_side(me, t) == side)
            .map(|t| t.body().request.body())
            .filter(|r| r.interval == interval)
            .map(|r| r.energy.0)
            .sum())
    }
}

/// This node's side of `trade`: the maker's side if it signed the trade, else the other.
pub(crate) fn own_side(me: &PublicKey, trade: &Signed<Trade>) -> Side {
    let maker_side = trade.body().request.body().maker_side;
    if trade.signer() == me { maker_side } else { maker_side.opposite() }
}

/// Makes everything applied to the stores in `dirty` durable.
fn flush(ledger: &Ledger<SledStore>, state: &State, dirty: Dirty) -> Result<(), String> {
    if dirty.ledger {
        ledger.sync().map_err(|e| format!("ledger: {e}"))?;
    }
    if dirty.state {
        state.flush().map_err(|e| format!("node state: {e}"))?;
    }
    Ok(())
}

impl Node {
    /// Ends the turn: applies its queued writes to the ledger and the state database at once
    /// (they are part of the log from now on), and acts on them once they are flushed
    /// ([`Node::on_flushed`]).
    ///
    /// The flush (an `fsync` of each store) runs on a blocking thread while the actor goes on
    /// validating gossip and answering calls. A flush used to be awaited here, and a node
    /// then relayed nothing for the length of it: on a disk shared by a hundred nodes, 0.1 –
    /// 2 s in one turn of twenty. At most one flush is in progress; turns ended meanwhile wait
    /// for the next, which covers them all (group commit across turns), and are acted on in
    /// the order they ended. A maker's reservations hold its energy until then, and a taker's
    /// query about a request being recorded is refused as in flight, as it was within a turn.
    pub(crate) async fn commit(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let mut batch = std::mem::take(&mut self.batch);
        let entries = batch.entries();
        if !entries.is_empty() {
            if let Err(e) = self.parts.ledger.append_unsynced(entries) {
                tracing::error!(error = %e, "cannot write the ledger; refusing this turn's orders and trades");
                self.counters.inc("ledger_errors");
                self.undo(batch).await;
                return;
            }
            self.counters.inc("ledger_group_commits");
            self.flushes.dirty.ledger = true;
        }
        self.stage_requests(&mut batch);
        self.flushes.dirty.state |= !batch.requests.is_empty();
        self.flushes.waiting.push(batch);
        self.start_flush();
    }

    /// Starts a flush of everything applied so far, unless one is in progress.
    fn start_flush(&mut self) {
        if self.flushes.in_progress.is_some() || self.flushes.waiting.is_empty() {
            return;
        }
        self.flushes.in_progress = Some(std::mem::take(&mut self.flushes.waiting));
        let dirty = std::mem::take(&mut self.flushes.dirty);
        let ledger = Arc::clone(&self.parts.ledger);
        let state = self.parts.state.clone();
        self.calls.push(Box::pin(async move {
            let flushed = tokio::task::spawn_blocking(move || flush(&ledger, &state, dirty)).await;
            Completion::Flushed(flushed.unwrap_or_else(|e| Err(format!("the flush did not finish: {e}"))))
        }));
    }

    /// A flush finished: the turns it covered are durable (or, if it failed, refused).
    pub(crate) async fn on_flushed(&mut self, result: Result<(), String>) {
        let turns = self.flushes.in_progress.take().unwrap_or_default();
        self.act_on_flushed(turns, result).await;
        self.start_flush();
    }

    /// At shutdown: flushes everything applied, here and now, and acts on the turns that
    /// waited for it, so answers already decided reach their takers before the connections
    /// close.
    pub(crate) async fn finish_flushes(&mut self) {
        let mut turns = self.flushes.in_progress.take().unwrap_or_default();
        turns.append(&mut self.flushes.waiting);
        let result = blocking(|| flush(&self.parts.ledger, &self.parts.state, Dirty::ALL));
        self.act_on_flushed(turns, result).await;
    }

    async fn act_on_flushed(&mut self, turns: Vec<Batch>, result: Result<(), String>) {
        match result {
            Ok(()) => {
                for batch in turns {
                    self.after_flush(batch).await;
                }
            }
            Err(error) => {
                // The entries stay applied (sled may still write them later), as they did
                // when a flush failed inside an append: a trade may then be in this ledger
                // only, which the audit reports. Nothing of these turns leaves the node.
                tracing::error!(%error, turns = turns.len(), "cannot flush; refusing the orders and trades waiting for it");
                self.counters.inc("ledger_errors");
                for batch in turns {
                    self.undo(batch).await;
                }
            }
        }
    }

    /// The turn's writes are durable: answer, announce and send.
    async fn after_flush(&mut self, batch: Batch) {
        let Batch { orders, answers, taken, requests, placed } = batch;
        let agreed = self.answer_takers(answers).await;
        self.taken_recorded(taken);
        // Requests leave before anything is gossiped: they are what the counterparties wait for.
        self.send_requests(requests);
        self.gossip_orders(&orders).await;
        self.announce(&agreed).await;
        for (reply, result) in placed {
            let _ = reply.send(result);
        }
    }

    /// The ledger refused the turn's entries: nothing of the turn leaves the node.
    async fn undo(&mut self, batch: Batch) {
        let Batch { orders, answers, taken, requests, placed } = batch;
        for order in &orders {
            self.maker.withdraw(&order.digest());
        }
        for PendingAnswer { channel, batched, slots } in answers {
            let answers = slots
                .into_iter()
                .map(|slot| match slot {
                    Slot::Ready(answer) => answer,
                    Slot::Agreed(reserved) => {
                        self.maker.abort(reserved);
                        self.counters.inc("trade_requests_refused");
                        Answer::Refused("the maker could not record the trade".into())
                    }
                })
                .collect();
            let _ = self.parts.net.respond(channel, PendingAnswer::reply(batched, answers).to_bytes()).await;
        }
        // Their requests stay persisted and pending: their makers are asked about them later.
        let now = self.parts.clock.now();
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
    async fn answer_takers(&mut self, pending: Vec<PendingAnswer>) -> Vec<Signed<Trade>> {
        let mut trades = Vec::new();
        for PendingAnswer { channel, batched, slots } in pending {
            let mut answers = Vec::with_capacity(slots.len());
            for slot in slots {
                answers.push(match slot {
                    Slot::Ready(answer) => answer,
                    Slot::Agreed(reserved) => {
                        let trade = self.maker.commit(reserved);
                        self.trade_recorded(&trade);
                        trades.push(trade.clone());
                        Answer::Agreed(trade)
                    }
                });
            }
            let _ = self.parts.net.respond(channel, PendingAnswer::reply(batched, answers).to_bytes()).await;
        }
        trades
    }

    /// The trades taken are durable: forget their requests.
    fn taken_recorded(&mut self, taken: Vec<Signed<Trade>>) {
        let digests: Vec<Hash> = taken.iter().map(|t| t.body().request.digest()).collect();
        if let Err(e) = self.parts.state.forget_requests(&digests) {
            // Harmless: a request that reappears after a restart is answered from the ledger.
            tracing::warn!(error = %e, "cannot forget answered requests");
        }
        for trade in &taken {
            self.trade_recorded(trade);
        }
    }

    /// Writes the turn's requests to the state database (flushed with the turn). If they
    /// cannot be written they are not sent: the taker counts them as outstanding until it
    /// asks their makers, which then close them ("not agreed"), so the energy is free again.
    fn stage_requests(&mut self, batch: &mut Batch) {
        if batch.requests.is_empty() {
            return;
        }
        let now = self.parts.clock.now();
        let saved: Vec<(&Signed<TradeRequest>, Timestamp)> = batch.requests.iter().map(|(r, _)| (r, now)).collect();
        if let Err(e) = self.parts.state.stage_requests(&saved) {
            tracing::error!(error = %e, requests = batch.requests.len(), "cannot persist trade requests; not sending them");
            self.counters.inc("state_errors");
            batch.requests.clear();
        }
    }

    /// The requests are durable: each goes to its maker, as far as the window allows.
    fn send_requests(&mut self, requests: Vec<(Signed<TradeRequest>, PeerId)>) {
        if requests.is_empty() {
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
            self.window.waiting.entry(peer).or_default().push_back(request);
        }
        let makers: Vec<PeerId> = self.window.waiting.keys().copied().collect();
        for maker in makers {
            self.send_waiting(maker);
        }
    }

    /// Sends `maker` the requests waiting for it, as far as its window allows, in calls of up
    /// to [`MAX_BATCH`] requests.
    fn send_waiting(&mut self, maker: PeerId) {
        loop {
            let in_flight = self.window.in_flight.get(&maker).copied().unwrap_or(0);
            let room = MAX_IN_FLIGHT_PER_MAKER.saturating_sub(in_flight).min(MAX_BATCH);
            let Some(queue) = self.window.waiting.get_mut(&maker) else { return };
            if room == 0 {
                return;
            }
            let requests: Vec<Signed<TradeRequest>> = queue.drain(..room.min(queue.len())).collect();
            if queue.is_empty() {
                self.window.waiting.remove(&maker);
            }
            if requests.is_empty() {
                return;
            }
            self.window.in_flight.insert(maker, in_flight + requests.len());
            let digests: Vec<Hash> = requests.iter().map(Signed::digest).collect();
            let call = TradeCall::Requests { cert: self.parts.cert.clone(), requests };
            self.call_maker(maker, &call, move |reply| Completion::Answer { maker, digests, reply });
        }
    }

    /// A call of `n` requests to `maker` came back (answered or failed): their slots are free.
    pub(crate) fn answered(&mut self, maker: PeerId, n: usize) {
        if let Some(in_flight) = self.window.in_flight.get_mut(&maker) {
            *in_flight = in_flight.saturating_sub(n);
            if *in_flight == 0 {
                self.window.in_flight.remove(&maker);
            }
        }
        self.send_waiting(maker);
    }

    /// Gossips this node's orders of the turn, now in its ledger (each frame costs every
    /// member a receipt and relays, so a turn's orders share frames).
    async fn gossip_orders(&mut self, orders: &[Signed<Order>]) {
        self.gossip_in_frames(&self.topics.orders, orders).await;
    }

    /// Announces the trades this node agreed as maker in the turn (recorded, so already
    /// known to this node). The taker does not announce: the maker's announcement is all
    /// that every book and a taker that missed its answer need, and a second copy cost every
    /// member a message per trade.
    async fn announce(&mut self, trades: &[Signed<Trade>]) {
        self.gossip_in_frames(&self.topics.trades, trades).await;
    }

    /// Gossips `messages` on `topic`, up to [`MAX_FRAME_MESSAGES`] per frame.
    fn gossip_in_frames<M: Encode>(&self, topic: &str, messages: &[M]) -> impl Future<Output = ()> + Send + 'static {
        let frames: Vec<_> = messages
            .chunks(MAX_FRAME_MESSAGES)
            .map(|chunk| self.gossip_batch(topic, chunk.iter().map(Encode::to_bytes).collect()))
            .collect();
        async move {
            for frame in frames {
                frame.await;
            }
        }
    }
}
