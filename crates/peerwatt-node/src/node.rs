//! The node actor: one task owns the market state and the ledger, and reacts to the network,
//! the meter, answers to its own requests, and a timer. Each turn handles the event it woke
//! for and whatever else was already waiting, then makes the turn's writes durable at once
//! ([`crate::commit`]) before anyone hears of them. A shutdown is only seen between turns, so
//! it never leaves anything half-written.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use futures::stream::{FuturesUnordered, StreamExt};
use peerwatt_core::{
    Answer, Clock, Community, Decode, Encode, EntryKind, GossipFrame, Hash, IntervalId, MembershipCert, NodeKey, Order,
    Price, PublicKey, Side, Signed, Timestamp, Trade, TradeCall, TradeReply, TradeRequest, Wh,
};
use peerwatt_ledger::{Ledger, SledStore};
use peerwatt_market::{
    Acceptance, BookOrder, Books, Forecaster, GossipReject, GossipValidator, Maker, Observed, Penalty, TAKING_SIDE,
    Taker, TakerAction, UserLimits, intent, taking_order,
};
use peerwatt_meter::{Connection, IntervalTotals, MeterEvent, Outcome};
use peerwatt_net::{Event, NetHandle, PeerId, Responder, Verdict};
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use crate::commit::{Batch, Flushes, PendingAnswer, Slot, Window};
use crate::config::MarketSection;
use crate::state::State;
use crate::status::{Counters, LedgerStatus, OrderStatus, Status, TradeStatus};
use crate::witness::{HeadSchedule, Witness};

/// The gossip topics of one community.
#[derive(Debug, Clone)]
pub struct Topics {
    /// Orders (offers and bids).
    pub orders: String,
    /// Agreed trades, announced by their maker.
    pub trades: String,
    /// Signed ledger tree heads.
    pub heads: String,
}

impl Topics {
    /// The topics of `community`: `peerwatt/<community id>/<name>/1`.
    pub fn of(community: &Community) -> Topics {
        let id = community.id.0.to_hex();
        Topics {
            orders: format!("peerwatt/{id}/orders/1"),
            trades: format!("peerwatt/{id}/trades/1"),
            heads: format!("peerwatt/{id}/heads/1"),
        }
    }

    /// All three.
    pub fn all(&self) -> Vec<String> {
        vec![self.orders.clone(), self.trades.clone(), self.heads.clone()]
    }
}

/// The answer to one of this node's own calls to a maker.
#[derive(Debug)]
pub(crate) enum Completion {
    /// The answer to trade requests sent to `maker` in one call.
    Answer { maker: PeerId, digests: Vec<Hash>, reply: Result<Vec<u8>, String> },
    /// The answer to a query about requests with unknown outcome.
    Query { maker: PublicKey, asked: Vec<Hash>, reply: Result<Vec<u8>, String> },
    /// A flush of the ledger and the state database finished (see [`crate::commit`]).
    Flushed(Result<(), String>),
}

/// What can be asked of a running node.
#[derive(Debug)]
pub enum NodeCommand {
    /// Place an order by hand (outside the strategy), and take what it crosses at once.
    PlaceOrder {
        /// The delivery interval.
        interval: IntervalId,
        /// Sell or buy.
        side: Side,
        /// Energy (0 cancels the node's order there).
        energy: Wh,
        /// Limit price.
        price: peerwatt_core::Price,
        /// The order's id, or why it was not placed.
        reply: oneshot::Sender<Result<Hash, String>>,
    },
}

/// What a running node tells its subscribers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeEvent {
    /// A trade is in this node's ledger (durably).
    TradeRecorded {
        /// The trade's digest.
        digest: Hash,
        /// Whether this node was the maker.
        as_maker: bool,
        /// The delivery interval.
        interval: IntervalId,
        /// The energy.
        energy: Wh,
        /// The price.
        price: peerwatt_core::Price,
    },
}

/// One of this node's trades, as the status shows it.
#[derive(Debug, Clone)]
struct OwnTrade {
    interval: IntervalId,
    side: Side,
    energy: Wh,
    price: u64,
    counterparty: PublicKey,
    as_maker: bool,
    accepted_at: Timestamp,
}

/// What a node is built from (see [`crate::start`]).
pub(crate) struct Parts {
    pub key: NodeKey,
    pub clock: Arc<dyn Clock>,
    pub community: Community,
    pub cert: Signed<MembershipCert>,
    /// Shared with the thread that flushes it (see [`crate::commit`]).
    pub ledger: Arc<Ledger<SledStore>>,
    pub state: State,
    pub forecaster: Forecaster,
    pub market: MarketSection,
    pub net: NetHandle,
    pub status_path: PathBuf,
    pub ban_after: u32,
    pub events: broadcast::Sender<NodeEvent>,
    pub shared: crate::Shared,
}

/// A call to a maker in flight: resolves to its answer.
type Call = Pin<Box<dyn Future<Output = Completion> + Send>>;

/// A closed meter interval as the forecaster sees it.
pub(crate) fn observed(t: &IntervalTotals) -> Observed {
    Observed { interval: t.interval, imported: t.imported, exported: t.exported, complete: t.complete }
}

/// Everything the node actor owns.
pub(crate) struct Node {
    /// What the node was built from: its key, clock, community, stores, network, settings.
    pub parts: Parts,
    pub me: PublicKey,
    pub books: Books,
    pub validator: GossipValidator,
    pub maker: Maker,
    pub taker: Taker,
    pub limits: UserLimits,
    pub topics: Topics,
    pub counters: Counters,
    /// Calls to makers in flight, polled by the actor itself (no task per call).
    pub calls: FuturesUnordered<Call>,
    traded: HashMap<(IntervalId, u8), Wh>,
    /// Per request this node sent and has no final answer to: the own order its energy was
    /// held from, the order it was sent against, and the energy.
    held: HashMap<Hash, (Hash, Hash, Wh)>,
    /// Orders whose maker refused a request of this node, and when: they are not asked again
    /// for a fifth of the re-pricing period (the maker knows its energy; this node's copy of
    /// the book may be behind).
    refused_by: HashMap<Hash, Timestamp>,
    own_trades: Vec<OwnTrade>,
    seen_trades: HashSet<Hash>,
    next_order_seq: u64,
    /// The re-pricing slot of the last tick (see [`Node::reprice_slot`]).
    last_reprice_slot: u64,
    /// Where this node's re-pricing periods start, ms into the period (from its key).
    reprice_offset: u64,
    strikes: HashMap<PeerId, u32>,
    banned: HashSet<PeerId>,
    peers: HashSet<PeerId>,
    listen: Vec<String>,
    meter_state: String,
    stale: bool,
    last_query: HashMap<PublicKey, Timestamp>,
    /// The interval of this node's shifted clock (see [`Node::head_phase`]) whose heads were
    /// handled (recorded, signed) last.
    head_phase_seen: Option<IntervalId>,
    /// This node's phase within the head period, ms (from its key).
    head_offset: u64,
    heads: HeadSchedule,
    witness: Witness,
    last_status: Timestamp,
    /// The current turn's queued writes (empty between turns).
    pub batch: Batch,
    /// Requests sent and waiting to be sent, per maker.
    pub window: Window,
    /// Turns applied and waiting for a flush.
    pub flushes: Flushes,
    /// Stopping: no new trades (see [`Node::begin_drain`]).
    draining: bool,
}

/// At most this many waiting events are handled in one turn before its writes are committed
/// (bounds the latency a busy turn adds to its first event).
const MAX_EVENTS_PER_TURN: usize = 256;

/// A taker spreads its requests over the crossing orders within one of this many bands of the
/// tariff spread from the best price (see [`taking_order`]).
const TAKING_BANDS: u64 = 20;

fn side_key(side: Side) -> u8 {
    side as u8
}

/// Where the periods of the node with key `me` start (re-pricing, signing heads), ms into a
/// period of `period_ms` (from the key's first bytes: spread over the community, stable
/// across restarts).
fn phase_offset(me: &PublicKey, period_ms: u64) -> u64 {
    let key = me.to_bytes();
    u64::from_be_bytes([key[0], key[1], key[2], key[3], key[4], key[5], key[6], key[7]]) % period_ms.max(1)
}

/// The libp2p peer of a node key.
fn peer_of(key: &PublicKey) -> Option<PeerId> {
    key.peer_id().parse().ok()
}

impl Node {
    /// A node over its parts; [`Node::restore`] must run before it handles events.
    pub fn new(mut parts: Parts) -> Result<Node, crate::StartError> {
        parts.ban_after = parts.ban_after.max(1);
        let me = parts.key.public();
        let reprice_offset = phase_offset(&me, parts.market.reprice_ms);
        let head_offset = phase_offset(&me, parts.community.interval.millis() * crate::witness::WITNESS_PERIOD);
        let next_request = parts.state.next_request_seq()?;
        let community = &parts.community;
        Ok(Node {
            me,
            books: {
                let mut books = Books::new(community.clone());
                books.set_clock_rate(parts.clock.rate());
                books
            },
            validator: match &parts.shared.verified {
                Some(memo) => GossipValidator::sharing(memo.clone()),
                None => GossipValidator::new(),
            },
            maker: {
                let mut maker = Maker::new(community.clone(), me);
                maker.set_clock_rate(parts.clock.rate());
                maker
            },
            taker: Taker::new(me, community.id, next_request),
            topics: Topics::of(community),
            limits: parts.market.limits(),
            counters: Counters::default(),
            parts,
            calls: FuturesUnordered::new(),
            traded: HashMap::new(),
            held: HashMap::new(),
            refused_by: HashMap::new(),
            own_trades: Vec::new(),
            seen_trades: HashSet::new(),
            next_order_seq: 1,
            last_reprice_slot: 0,
            reprice_offset,
            strikes: HashMap::new(),
            banned: HashSet::new(),
            peers: HashSet::new(),
            listen: Vec::new(),
            meter_state: "not configured".into(),
            stale: false,
            last_query: HashMap::new(),
            head_phase_seen: None,
            head_offset,
            heads: HeadSchedule::default(),
            witness: Witness::default(),
            last_status: Timestamp(0),
            batch: Batch::default(),
            window: Window::default(),
            flushes: Flushes::default(),
            draining: false,
        })
    }

    /// Rebuilds the market state from the ledger (own orders, agreed trades) and the state
    /// database (requests whose outcome is unknown), after a restart or a crash.
    pub fn restore(&mut self) -> Result<(), crate::StartError> {
        let now = self.parts.clock.now();
        let len = self.parts.ledger.len()?;
        for seq in 0..len {
            let entry = self.parts.ledger.entry(seq)?;
            let e = entry.body();
            match e.kind {
                EntryKind::OrderPublished => {
                    let Ok(order) = Signed::<Order>::from_bytes(&e.payload) else { continue };
                    self.next_order_seq = self.next_order_seq.max(order.body().seq + 1);
                    if self.parts.community.is_open(order.body().interval, now) && order.body().expires_at > now {
                        let _ = self.books.insert(&order, now);
                        self.maker.publish(order);
                    }
                }
                EntryKind::TradeAgreed => {
                    let Ok(trade) = Signed::<Trade>::from_bytes(&e.payload) else { continue };
                    if *trade.signer() == self.me {
                        self.maker.restore(trade.clone());
                    } else {
                        self.taker.restore_recorded(&trade);
                    }
                    self.note_trade(&trade);
                }
                _ => {}
            }
        }
        let (pending, damaged) = self.parts.state.pending_requests();
        if damaged > 0 {
            tracing::warn!(damaged, "unreadable pending requests in the node state were skipped");
            self.counters.add("state_records_damaged", damaged as u64);
        }
        for (request, sent_at) in pending {
            let digest = request.digest();
            self.taker.restore_pending(request, sent_at);
            if self.taker.state(&digest).is_none() {
                let _ = self.parts.state.forget_request(&digest); // recorded before the crash
            }
        }
        self.heads = HeadSchedule::after(self.parts.ledger.latest_head()?.map_or(0, |h| h.body().size));
        tracing::info!(
            entries = len,
            trades = self.own_trades.len(),
            pending_requests = self.taker.pending_count(),
            "state restored from the ledger"
        );
        Ok(())
    }

    /// Handles events until `shutdown` says stop, then drains ([`Node::begin_drain`]) and stops.
    pub async fn run(
        mut self,
        mut net_events: mpsc::Receiver<Event>,
        mut meter_events: Option<mpsc::Receiver<MeterEvent>>,
        mut commands: mpsc::Receiver<NodeCommand>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut tick = tokio::time::interval(Duration::from_millis(self.parts.market.tick_ms.max(10)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut drain_until: Option<tokio::time::Instant> = None;
        loop {
            tokio::select! {
                biased;
                _ = shutdown.changed(), if drain_until.is_none() => {
                    drain_until = Some(tokio::time::Instant::now() + self.drain_grace());
                    self.begin_drain();
                }
                Some(c) = self.calls.next(), if !self.calls.is_empty() => self.on_completion(c).await,
                Some(c) = commands.recv() => self.on_command(c).await,
                event = net_events.recv() => match event {
                    Some(e) => self.on_net(e).await,
                    None => { tracing::error!("the network service stopped"); break; }
                },
                e = next_meter(&mut meter_events) => match e {
                    Some(e) => self.on_meter(e),
                    None => meter_events = None, // the meter client stopped
                },
                _ = tick.tick() => self.on_tick().await,
            }
            // Group commit: whatever else is already waiting joins this turn.
            for _ in 0..MAX_EVENTS_PER_TURN {
                if let Some(Some(c)) = self.calls.next().now_or_never() {
                    self.on_completion(c).await;
                } else if let Ok(c) = commands.try_recv() {
                    self.on_command(c).await;
                } else if let Ok(e) = net_events.try_recv() {
                    self.on_net(e).await;
                } else {
                    break;
                }
            }
            self.commit().await;
            if let Some(until) = drain_until {
                if self.drained() {
                    tracing::info!("drained: every request of this node is answered");
                    break;
                }
                if tokio::time::Instant::now() >= until {
                    tracing::warn!(
                        pending_requests = self.taker.pending_count(),
                        "stopping with requests whose outcome is unknown; they are resolved at the next start"
                    );
                    break;
                }
            }
        }
        // Requests nobody will answer now are refused by dropping their channels.
        drop(net_events);
        self.stop().await;
    }

    /// A real duration as it shows on the node's clock (longer on an accelerated clock).
    fn clock_time(&self, real: Duration) -> Duration {
        real.saturating_mul(self.parts.clock.rate().max(1))
    }

    /// How long a stopping node waits for the answers to its own requests: long enough for a
    /// request to time out and its maker to be asked about it once.
    fn drain_grace(&self) -> Duration {
        Duration::from_millis(self.parts.market.request_timeout_ms + self.parts.market.tick_ms + 1_000)
    }

    /// The start of a graceful stop. The node stops trading: it cancels its open orders (so
    /// peers stop sending it requests), refuses new requests, sends no new ones, and keeps
    /// running until every request it already sent is answered. Stopping in the middle of a
    /// handshake is safe too (a restart asks the maker), but a drained node leaves nothing
    /// for its counterparties or for a restart to resolve.
    fn begin_drain(&mut self) {
        self.draining = true;
        let now = self.parts.clock.now();
        let open: Vec<(IntervalId, Side)> = self
            .open_intervals(now)
            .into_iter()
            .flat_map(|i| [(i, Side::Sell), (i, Side::Buy)])
            .filter(|(i, side)| self.maker.current(*i, *side).is_some_and(|o| o.body().energy > Wh::ZERO))
            .collect();
        for (interval, side) in &open {
            self.publish_order(*interval, *side, Wh::ZERO, None, now);
        }
        tracing::info!(
            orders_cancelled = open.len(),
            pending_requests = self.taker.pending_count(),
            "stopping: no new trades; waiting for the answers to this node's requests"
        );
    }

    /// Whether every request this node sent is answered (or was never sent).
    fn drained(&self) -> bool {
        self.taker.pending_count() == 0 && self.window.is_empty() && self.flushes.is_idle()
    }

    async fn stop(&mut self) {
        let phase = self.head_phase(self.parts.clock.now());
        self.record_witnessed(phase);
        self.finish_flushes().await;
        // Answers already given reach their takers before the connections close.
        self.parts.net.shutdown(Duration::from_secs(2)).await;
        self.write_status(false);
        tracing::info!("stopped");
    }

    async fn on_command(&mut self, command: NodeCommand) {
        match command {
            NodeCommand::PlaceOrder { interval, side, energy, price, reply } => {
                let now = self.parts.clock.now();
                if self.draining {
                    let _ = reply.send(Err("the node is stopping".into()));
                    return;
                }
                if !self.parts.community.is_open(interval, now) {
                    let _ = reply.send(Err(format!("trading for interval {} is not open", interval.0)));
                    return;
                }
                self.publish_order(interval, side, energy, Some((price, price)), now);
                let id = self.maker.current(interval, side).map(|o| o.digest());
                self.take(interval, now).await;
                // Answered when the order is durable, at the end of the turn.
                self.batch.placed(reply, id.ok_or_else(|| "the order was not placed (see the log)".to_owned()));
            }
        }
    }

    // ---- network --------------------------------------------------------------------------

    async fn on_net(&mut self, event: Event) {
        match event {
            Event::Listening(addr) => {
                tracing::info!(address = %format!("{addr}/p2p/{}", self.parts.net.peer_id()), "listening");
                self.listen.push(addr.to_string());
            }
            Event::PeerConnected(peer) => {
                if self.banned.contains(&peer) {
                    let _ = self.parts.net.ban(peer).await;
                } else {
                    tracing::debug!(%peer, "peer connected");
                    self.peers.insert(peer);
                }
            }
            Event::PeerDisconnected(peer) => {
                tracing::debug!(%peer, "peer disconnected");
                self.peers.remove(&peer);
            }
            Event::Gossip { topic, id, source, data } => {
                let verdict = self.on_gossip(&topic, &data, source).await;
                let _ = self.parts.net.report(id, source, verdict).await;
            }
            Event::Request { peer, data, channel } => self.on_call(peer, &data, channel).await,
            Event::PublishFailed { topic, error } => self.publish_failed(&topic, &error),
            Event::SendDropped { peer, messages } => {
                tracing::warn!(%peer, messages, "gossip to a slow peer dropped (its send queue was full or too slow)");
                self.counters.add("gossip_send_dropped", messages as u64);
            }
        }
    }

    /// Judges one gossip message, acts on it if valid, and counts it either way.
    async fn on_gossip(&mut self, topic: &str, data: &[u8], source: PeerId) -> Verdict {
        let now = self.parts.clock.now();
        let result = if topic == self.topics.orders {
            self.on_order_gossip(data, now).await
        } else if topic == self.topics.trades {
            self.on_trade_gossip(data, now).await
        } else if topic == self.topics.heads {
            self.on_head_gossip(data, now)
        } else {
            Err(GossipReject::Malformed(format!("unknown topic {topic}")))
        };
        match result {
            Ok(what) => {
                self.counters.inc(&format!("gossip_accepted_{what}"));
                Verdict::Accept
            }
            Err(reject) => {
                self.counters.inc(&format!("gossip_rejected_{}", reject.name()));
                match reject.penalty() {
                    Penalty::Ignore => {
                        tracing::debug!(%source, reason = reject.name(), "gossip ignored: {reject}");
                        Verdict::Ignore
                    }
                    Penalty::Reject => {
                        tracing::info!(%source, reason = reject.name(), "gossip rejected: {reject}");
                        self.strike(source).await;
                        Verdict::Reject
                    }
                }
            }
        }
    }

    /// One more invalid message from `peer`; too many and it is banned.
    async fn strike(&mut self, peer: PeerId) {
        let strikes = self.strikes.entry(peer).or_insert(0);
        *strikes += 1;
        if *strikes >= self.parts.ban_after && self.banned.insert(peer) {
            tracing::warn!(%peer, strikes = *strikes, "banning a peer that keeps sending invalid messages");
            self.counters.inc("peers_banned");
            self.peers.remove(&peer);
            let _ = self.parts.net.ban(peer).await;
        }
    }

    async fn on_order_gossip(&mut self, data: &[u8], now: Timestamp) -> Result<&'static str, GossipReject> {
        let accepted = self.validator.accept_orders(&mut self.books, data, now)?;
        if let Some((o, _)) = accepted.first() {
            self.count_order_age(o.body().created_at, now);
        }
        // A new offer may cross our bid: take it now rather than at the next tick. (Bids are
        // never taken, so a new bid changes nothing for this node's requests.)
        if self.parts.market.enabled {
            let mut intervals: Vec<IntervalId> =
                accepted.iter().filter(|(o, _)| o.body().side != TAKING_SIDE).map(|(o, _)| o.body().interval).collect();
            intervals.sort_unstable();
            intervals.dedup();
            for interval in intervals {
                self.take(interval, now).await;
            }
        }
        Ok("orders")
    }

    /// Counts how old a gossiped frame's first order was on arrival, in real milliseconds
    /// (on an accelerated clock, clock time divided by the rate): signing, the maker's
    /// ledger commit and every hop of the gossip. The operator's view of the network's
    /// latency (docs/operations.md).
    fn count_order_age(&mut self, created: Timestamp, now: Timestamp) {
        let real_ms = now.0.saturating_sub(created.0) / u64::from(self.parts.clock.rate().max(1));
        self.counters.inc(&crate::status::order_age_counter(real_ms));
    }

    async fn on_trade_gossip(&mut self, data: &[u8], now: Timestamp) -> Result<&'static str, GossipReject> {
        let trades = self.validator.accept_trades(&self.parts.community, data, now, &self.seen_trades)?;
        for trade in trades {
            let ours = *trade.signer() == self.me || *trade.body().request.signer() == self.me;
            // Our own requests filled the book when they were sent.
            if self.seen_trades.insert(trade.digest()) && !ours {
                self.books.apply_trade(&trade);
            }
            // A trade of ours we may have missed the answer to (timeout, crash): record it.
            let action = self.taker.on_trade(&trade);
            self.on_taker_action(trade.body().request.digest(), action).await;
        }
        Ok("trades")
    }

    fn on_head_gossip(&mut self, data: &[u8], now: Timestamp) -> Result<&'static str, GossipReject> {
        let head = self.validator.accept_head(&self.parts.community, data, now)?;
        self.witness.offer(head);
        Ok("heads")
    }

    /// A direct call from a taker: trade requests, or a query about earlier requests.
    async fn on_call(&mut self, peer: PeerId, data: &[u8], channel: Responder) {
        let now = self.parts.clock.now();
        let reply = match TradeCall::from_bytes(data) {
            Ok(TradeCall::Request { cert, request }) => {
                self.on_trade_requests(&cert, std::slice::from_ref(&request), false, channel, now);
                return;
            }
            Ok(TradeCall::Requests { cert, requests }) => {
                self.on_trade_requests(&cert, &requests, true, channel, now);
                return;
            }
            Ok(TradeCall::Query(digests)) => {
                self.counters.inc("queries_answered");
                match self.maker.query(&digests) {
                    Ok(known) => TradeReply::Known(known),
                    Err(refusal) => TradeReply::Refused(refusal.to_string()),
                }
            }
            Err(e) => {
                tracing::info!(%peer, error = %e, "malformed trade call");
                self.counters.inc("trade_calls_malformed");
                self.strike(peer).await;
                TradeReply::Refused(format!("malformed: {e}"))
            }
        };
        let _ = self.parts.net.respond(channel, reply.to_bytes()).await;
    }

    /// The maker's side of the handshake for the requests of one call: check the taker's
    /// membership once, then judge each request on its own. New trades are recorded at the
    /// end of the turn and the call is answered then ([`Node::commit`]).
    fn on_trade_requests(
        &mut self,
        cert: &Signed<MembershipCert>,
        requests: &[Signed<TradeRequest>],
        batched: bool,
        channel: Responder,
        now: Timestamp,
    ) {
        self.counters.add("trade_requests_received", requests.len() as u64);
        let refuse_all = if self.draining {
            Some("the maker is stopping".to_owned())
        } else {
            let signer = requests.first().map(|r| *r.signer());
            match signer.map(|s| self.validator.check_cert(&self.parts.community, cert, &s, now)) {
                Some(Err(e)) => Some(format!("not a member: {e}")),
                _ => None,
            }
        };
        let slots = requests
            .iter()
            .map(|request| match &refuse_all {
                Some(reason) => {
                    self.counters.inc("trade_requests_refused");
                    Slot::Ready(Answer::Refused(reason.clone()))
                }
                None => self.on_trade_request(cert, request, now),
            })
            .collect();
        self.batch.answer(PendingAnswer { channel, batched, slots });
    }

    /// One request, from a taker whose certificate is checked: refuse, answer again, or
    /// reserve and sign a new trade.
    fn on_trade_request(
        &mut self,
        cert: &Signed<MembershipCert>,
        request: &Signed<TradeRequest>,
        now: Timestamp,
    ) -> Slot {
        // Every request of a call must come from the certificate's member.
        if cert.body().member != *request.signer() {
            self.counters.inc("trade_requests_refused");
            return Slot::Ready(Answer::Refused("the request is not signed by the certificate's member".into()));
        }
        match self.maker.accept(&self.parts.key, request, now) {
            Ok(Acceptance::Again(trade)) => Slot::Ready(Answer::Agreed(trade)),
            Ok(Acceptance::New(reserved)) => Slot::Agreed(reserved),
            Err(refusal) => {
                self.counters.inc("trade_requests_refused");
                let terms = request.body();
                tracing::debug!(
                    reason = %refusal,
                    interval = terms.interval.0,
                    energy_wh = terms.energy.0,
                    taker = %request.signer(),
                    maker = %self.me,
                    order = %terms.order,
                    "trade request refused"
                );
                Slot::Ready(Answer::Refused(refusal.to_string()))
            }
        }
    }

    /// Gossips one of this node's signed messages on `topic`, framed with its certificate.
    /// The actor does not wait for the network: a failure comes back as an event
    /// ([`Node::publish_failed`]).
    pub(crate) fn gossip(&self, topic: &str, message: Vec<u8>) -> impl Future<Output = ()> + Send + 'static {
        self.gossip_batch(topic, vec![message])
    }

    /// Gossips several of this node's signed messages on `topic` in one frame (at most
    /// [`peerwatt_core::messages::MAX_FRAME_MESSAGES`]).
    pub(crate) fn gossip_batch(
        &self,
        topic: &str,
        messages: Vec<Vec<u8>>,
    ) -> impl Future<Output = ()> + Send + 'static {
        let frame = GossipFrame { cert: self.parts.cert.clone(), messages }.to_bytes();
        let (net, topic) = (self.parts.net.clone(), topic.to_owned());
        // Fails only when the network has stopped, which the event loop notices.
        async move {
            let _ = net.publish_nowait(&topic, frame).await;
        }
    }

    /// Counts a message of this node that could not be gossiped.
    fn publish_failed(&mut self, topic: &str, error: &peerwatt_net::NetError) {
        let (counter, what) = if topic == self.topics.orders {
            ("orders_not_gossiped", "order")
        } else if topic == self.topics.trades {
            ("announcements_failed", "trade announcement")
        } else {
            ("heads_not_gossiped", "tree head")
        };
        tracing::debug!(%error, "{what} not gossiped (no peers yet?)");
        self.counters.inc(counter);
    }

    // ---- the taker's side ----------------------------------------------------------------

    async fn on_completion(&mut self, completion: Completion) {
        match completion {
            Completion::Answer { maker, digests, reply } => self.on_requests_answered(maker, digests, reply).await,
            Completion::Flushed(result) => self.on_flushed(result).await,
            Completion::Query { maker, asked, reply } => {
                let known = match reply.map(|bytes| TradeReply::from_bytes(&bytes)) {
                    Ok(Ok(TradeReply::Known(trades))) => trades,
                    other => {
                        tracing::debug!(?other, "query unanswered; asking again later");
                        return;
                    }
                };
                self.counters.inc("queries_answered_by_makers");
                for digest in asked {
                    let answer = known
                        .iter()
                        .find(|t| t.body().request.digest() == digest && *t.signer() == maker)
                        .cloned()
                        .ok_or_else(|| "not agreed (final)".to_owned());
                    tracing::info!(request = %digest, agreed = answer.is_ok(), "outstanding request resolved by a query");
                    let action = self.taker.on_answer(&digest, answer);
                    self.on_taker_action(digest, action).await;
                }
            }
        }
    }

    /// The maker answered (or did not answer) one call of this node's requests.
    async fn on_requests_answered(&mut self, maker: PeerId, digests: Vec<Hash>, reply: Result<Vec<u8>, String>) {
        self.answered(maker, digests.len());
        let n = digests.len();
        let answers: Vec<Result<Answer, &'static str>> = match reply.map(|bytes| TradeReply::from_bytes(&bytes)) {
            Ok(Ok(TradeReply::Answers(answers))) if answers.len() == n => answers.into_iter().map(Ok).collect(),
            // The call was refused as a whole (not a member, the maker is stopping).
            Ok(Ok(TradeReply::Refused(reason))) => vec![Ok(Answer::Refused(reason)); n],
            Ok(Ok(_)) => vec![Err("an answer that is not for these requests"); n],
            Ok(Err(_)) => vec![Err("a malformed answer"); n],
            Err(error) => {
                // No answer: the outcome is unknown until the maker is asked.
                tracing::debug!(%error, requests = n, "trade requests unanswered");
                self.counters.add("trade_requests_unanswered", n as u64);
                return;
            }
        };
        for (digest, answer) in digests.into_iter().zip(answers) {
            let action = match answer {
                Ok(Answer::Agreed(trade)) if trade.body().request.digest() == digest => {
                    self.taker.on_answer(&digest, Ok(trade))
                }
                Ok(Answer::Agreed(_)) => TakerAction::Invalid("an answer that is not for this request"),
                Ok(Answer::Refused(reason)) => self.taker.on_answer(&digest, Err(reason)),
                Err(why) => TakerAction::Invalid(why),
            };
            self.on_taker_action(digest, action).await;
        }
    }

    async fn on_taker_action(&mut self, digest: Hash, action: TakerAction) {
        match action {
            // Appended, forgotten and announced at the end of the turn.
            TakerAction::Record(trade) => {
                if let Some((_, theirs, energy)) = self.held.remove(&digest) {
                    self.books.answered_own(&theirs, energy, true);
                }
                // Verified: its announcements need no second check.
                self.seen_trades.insert(trade.digest());
                self.batch.take(*trade);
            }
            TakerAction::Refused(reason) => {
                // The energy is free again on both sides: in this node's order at once, and
                // in its copy of the other order (the maker never sold it).
                if let Some((own, theirs, energy)) = self.held.remove(&digest) {
                    self.maker.release_own_hold(&own, energy);
                    self.books.answered_own(&theirs, energy, false);
                    self.refused_by.insert(theirs, self.parts.clock.now());
                }
                let _ = self.parts.state.forget_request(&digest);
                self.counters.inc("trade_requests_refused_by_maker");
                tracing::debug!(%reason, "trade request refused by the maker");
            }
            TakerAction::AlreadyRecorded => {
                if let Some((_, theirs, energy)) = self.held.remove(&digest) {
                    self.books.answered_own(&theirs, energy, true);
                }
                let _ = self.parts.state.forget_request(&digest);
            }
            TakerAction::NotOurs => {}
            TakerAction::Invalid(why) => {
                self.counters.inc("answers_invalid");
                tracing::info!(why, "ignoring an invalid answer");
            }
        }
    }

    /// A new trade of this node is durable: count it, log it and remember it.
    pub(crate) fn trade_recorded(&mut self, trade: &Signed<Trade>) {
        let terms = trade.body().request.body();
        let (interval, energy_wh, price) = (terms.interval.0, terms.energy.0, terms.price.0);
        if *trade.signer() == self.me {
            // The taker's own order gave the energy: this node's book must know, or it would
            // keep asking that order for energy it no longer has (no announcement of a trade of
            // our own ever comes back to us).
            self.books.apply_trade(trade);
            self.counters.inc("trades_as_maker");
            let taker = trade.body().request.signer();
            tracing::info!(interval, energy_wh, price, %taker, "trade agreed as maker");
        } else {
            self.counters.inc("trades_as_taker");
            let maker = trade.signer();
            tracing::info!(interval, energy_wh, price, %maker, "trade agreed as taker");
        }
        self.note_trade(trade);
    }

    /// Remembers one of this node's trades (for the strategy's bounds and the status).
    pub(crate) fn note_trade(&mut self, trade: &Signed<Trade>) {
        self.seen_trades.insert(trade.digest());
        let _ = self.parts.events.send(NodeEvent::TradeRecorded {
            digest: trade.digest(),
            as_maker: *trade.signer() == self.me,
            interval: trade.body().request.body().interval,
            energy: trade.body().request.body().energy,
            price: trade.body().request.body().price,
        });
        let terms = trade.body().request.body();
        let as_maker = *trade.signer() == self.me;
        let side = crate::commit::own_side(&self.me, trade);
        let counterparty = if as_maker { *trade.body().request.signer() } else { *trade.signer() };
        let t = self.traded.entry((terms.interval, side_key(side))).or_insert(Wh::ZERO);
        *t = Wh(t.0 + terms.energy.0);
        self.own_trades.push(OwnTrade {
            interval: terms.interval,
            side,
            energy: terms.energy,
            price: terms.price.0,
            counterparty,
            as_maker,
            accepted_at: trade.body().accepted_at,
        });
    }

    // ---- the strategy, every tick ---------------------------------------------------------

    async fn on_tick(&mut self) {
        let now = self.parts.clock.now();
        self.books.prune(now);
        // Requests against orders gone from the book (replaced, closed) need no bookkeeping.
        let books = &self.books;
        self.held.retain(|_, (_, theirs, _)| books.get(theirs).is_some());
        let backoff = Duration::from_millis(self.parts.market.reprice_ms / 5);
        self.refused_by.retain(|order, at| books.get(order).is_some() && now.saturating_since(*at) < backoff);
        let slot = self.reprice_slot(now);
        let reprice = slot != self.last_reprice_slot;
        self.last_reprice_slot = slot;
        if self.parts.market.enabled && !self.draining {
            for interval in self.open_intervals(now) {
                self.update_order(interval, now, reprice).await;
                self.take(interval, now).await;
            }
        }
        self.ask_about_unknown(now);
        self.publish_head(now).await;
        if now.saturating_since(self.last_status) >= self.clock_time(Duration::from_secs(1)) {
            self.write_status(true);
            self.last_status = now;
        }
    }

    fn open_intervals(&self, now: Timestamp) -> Vec<IntervalId> {
        let current = self.parts.community.interval.interval_at(now).0;
        (current + 1..=current + u64::from(self.parts.community.horizon) + 1)
            .map(IntervalId)
            .filter(|i| self.parts.community.is_open(*i, now))
            .collect()
    }

    /// Which re-pricing period `now` is in. Periods are `reprice_ms` long and start at an
    /// offset of this node's own (from its key), so the community's re-pricing is spread over
    /// the period rather than all at one instant; a node re-prices all its open intervals in
    /// the same tick, and they leave in one gossip frame.
    fn reprice_slot(&self, now: Timestamp) -> u64 {
        now.0.saturating_add(self.reprice_offset) / self.parts.market.reprice_ms.max(1)
    }

    /// Publishes, re-prices or cancels this node's order for `interval` as the strategy says.
    /// `reprice`: this tick starts a new re-pricing period.
    async fn update_order(&mut self, interval: IntervalId, now: Timestamp, reprice: bool) {
        let net = self.parts.forecaster.net_export(interval);
        let side = if net.unwrap_or(0) > 0 { Side::Sell } else { Side::Buy };
        // A forecast that flipped sides cancels the order on the other side.
        if self.maker.current(interval, side.opposite()).is_some() {
            self.publish_order(interval, side.opposite(), Wh::ZERO, None, now);
        }
        // Traded (durable), agreed and waiting for the flush, and requested: all spoken for.
        let traded = self.traded.get(&(interval, side_key(side))).copied().unwrap_or(Wh::ZERO);
        let agreed = self.flushes.unrecorded(&self.me, interval, side);
        let committed = Wh(traded.0 + agreed.0 + self.taker.outstanding(interval).0);
        let wanted = if self.stale {
            None // a stale meter: stop offering and bidding, say so in the status
        } else {
            intent(&self.parts.community, &self.limits, &self.parts.forecaster, interval, committed, now)
                .filter(|i| i.side == side)
        };
        let current = self.maker.current(interval, side).map(|o| (o.digest(), o.body().limit_price));
        match (wanted, current) {
            (None, Some((id, _))) if self.maker.available(&id) > Wh::ZERO => {
                self.publish_order(interval, side, Wh::ZERO, None, now);
            }
            (Some(w), None) if self.places_now(interval, side, w.price, reprice, now) => {
                self.publish_order(interval, side, w.energy, Some((w.price, w.limit)), now)
            }
            (Some(w), Some((id, limit))) => {
                // Offering too much is corrected at once. Energy freed by a refused request, or
                // new limits, wait for the re-pricing tick: one frame per node per period,
                // however many requests were refused. The price needs no message: it follows
                // the signed curve.
                let available = self.maker.available(&id);
                if available > w.energy || (reprice && (limit != w.limit || available != w.energy)) {
                    self.publish_order(interval, side, w.energy, Some((w.price, w.limit)), now);
                }
            }
            _ => {}
        }
    }

    /// Whether a first order for `interval` on `side`, at `price` now, is placed in this tick.
    /// Orders wait for the node's re-pricing tick, so that all of a node's new orders leave in
    /// one frame, with one exception: a bid that crosses an offer now, since it is what makes
    /// the trade. A bid into a book without offers only costs every member a message to
    /// check: it waits until someone offers (offers come first: surplus is what the market
    /// is for).
    fn places_now(&self, interval: IntervalId, side: Side, price: Price, reprice: bool, now: Timestamp) -> bool {
        match side {
            Side::Sell => reprice,
            Side::Buy => {
                let offers_at = |limit| !self.books.crossing(interval, Side::Buy, limit, &self.me, now).is_empty();
                if reprice { offers_at(self.parts.community.retail) } else { offers_at(price) }
            }
        }
    }

    /// Signs an order (energy 0 cancels) and makes it this node's current one; it is recorded
    /// in the ledger and then gossiped at the end of the turn. `curve`: the price now and the
    /// limit at gate closure (a cancellation repeats the current order's).
    fn publish_order(
        &mut self,
        interval: IntervalId,
        side: Side,
        energy: Wh,
        curve: Option<(Price, Price)>,
        now: Timestamp,
    ) {
        let (_, closes) = self.parts.community.trading_window(interval);
        let (price, limit) = curve
            .or_else(|| self.maker.current(interval, side).map(|o| (o.body().price_at(now), o.body().limit_price)))
            .unwrap_or((self.parts.community.feed_in, self.parts.community.feed_in));
        let order = Signed::sign(
            &self.parts.key,
            Order {
                community: self.parts.community.id,
                side,
                interval,
                energy,
                start_price: price,
                limit_price: limit,
                seq: self.next_order_seq,
                created_at: now,
                expires_at: closes,
            },
        );
        self.next_order_seq += 1;
        self.maker.publish(order.clone());
        if let Err(e) = self.books.insert(&order, now) {
            tracing::warn!(error = %e, "own order refused by the book");
        }
        self.counters.inc(if energy == Wh::ZERO { "orders_cancelled" } else { "orders_published" });
        tracing::debug!(
            interval = interval.0,
            ?side,
            energy_wh = energy.0,
            price = price.0,
            limit = limit.0,
            "order published"
        );
        self.batch.order(order);
    }

    /// Takes the offers that cross this node's bid in `interval` (only buyers take: see
    /// [`TAKING_SIDE`]).
    async fn take(&mut self, interval: IntervalId, now: Timestamp) {
        if self.draining {
            return;
        }
        let Some(mine) = self.maker.current(interval, TAKING_SIDE).and_then(|o| self.books.get(&o.digest())).cloned()
        else {
            return;
        };
        let crossing = self
            .books
            .crossing(interval, TAKING_SIDE, mine.price(now), &self.me, now)
            .into_iter()
            .filter(|o| !self.refused_by.contains_key(&o.id))
            .collect();
        let resting: Vec<BookOrder> =
            taking_order(&self.me, crossing, self.taking_band(), now).into_iter().cloned().collect();
        for other in resting {
            let energy = self.maker.hold_for_own_request(&mine.id, other.available());
            if energy == Wh::ZERO {
                break;
            }
            match self.send_request(&other, energy, now) {
                Some(request) => {
                    self.held.insert(request, (mine.id, other.id, energy));
                }
                None => self.maker.release_own_hold(&mine.id, energy),
            }
        }
    }

    /// The width of the price bands within which this node spreads its requests (see
    /// [`taking_order`]): a twentieth of the tariff spread.
    fn taking_band(&self) -> u64 {
        let c = &self.parts.community;
        c.retail.0.saturating_sub(c.feed_in.0) / TAKING_BANDS
    }

    /// Signs a trade request and queues it: persisted (flushed) and sent at the end of the turn.
    /// Returns its digest (`None`: the maker's key names no libp2p peer).
    fn send_request(&mut self, order: &BookOrder, energy: Wh, now: Timestamp) -> Option<Hash> {
        let peer = peer_of(&order.maker)?;
        let request = self.taker.request(&self.parts.key, order, energy, now);
        let digest = request.digest();
        self.books.request_own(&order.id, energy);
        self.batch.request(request, peer);
        Some(digest)
    }

    /// Sends `call` to a maker; its reply comes back as a completion in a later turn.
    pub(crate) fn call_maker(
        &mut self,
        peer: PeerId,
        call: &TradeCall,
        completion: impl FnOnce(Result<Vec<u8>, String>) -> Completion + Send + 'static,
    ) {
        let (net, bytes) = (self.parts.net.clone(), call.to_bytes());
        self.calls.push(Box::pin(async move {
            let reply = net.request(peer, bytes).await.map_err(|e| e.to_string());
            completion(reply)
        }));
    }

    /// Asks makers about requests whose answers never came (at most once per timeout each).
    fn ask_about_unknown(&mut self, now: Timestamp) {
        let timeout = self.clock_time(Duration::from_millis(self.parts.market.request_timeout_ms));
        let mut by_maker: HashMap<PublicKey, Vec<Hash>> = HashMap::new();
        for request in self.taker.expire(now, timeout) {
            by_maker.entry(request.body().maker).or_default().push(request.digest());
        }
        for (maker, mut asked) in by_maker {
            let last = self.last_query.get(&maker).copied().unwrap_or(Timestamp(0));
            if now.saturating_since(last) < timeout {
                continue;
            }
            let Some(peer) = peer_of(&maker) else { continue };
            self.last_query.insert(maker, now);
            asked.truncate(peerwatt_core::wire::MAX_QUERY);
            self.counters.inc("queries_sent");
            let call = TradeCall::Query(asked.clone());
            self.call_maker(peer, &call, move |reply| Completion::Query { maker, asked, reply });
        }
    }

    // ---- ledger heads ------------------------------------------------------------------------

    /// Once per interval, at this node's own phase of the hour: records the heads of other
    /// members that are due, and signs and gossips a head of this ledger when one is due
    /// (hourly, see [`crate::witness`]). Why a phase: with every node doing both at the same
    /// interval boundary, the community's heads all left in the same instant, a burst of a
    /// hundred messages that every member receives, while every node was busy with a ledger
    /// commit; it held up the orders queued behind it by seconds in a 100-household community.
    async fn publish_head(&mut self, now: Timestamp) {
        let phase = self.head_phase(now);
        if self.head_phase_seen == Some(phase) {
            return;
        }
        self.head_phase_seen = Some(phase);
        self.record_witnessed(phase);
        let size = self.parts.ledger.len().unwrap_or(0);
        if !self.heads.due(size, phase) {
            return;
        }
        match crate::commit::blocking(|| self.parts.ledger.sign_head()) {
            Ok(head) => {
                self.heads.signed(head.body().size, phase);
                self.counters.inc("heads_signed");
                self.gossip(&self.topics.heads, head.to_bytes()).await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot sign a tree head");
                self.counters.inc("ledger_errors");
            }
        }
    }

    /// The interval `now` is in on this node's clock shifted by its head offset: the head
    /// schedule counts these, so this node's heads fall at its own moment of the hour.
    fn head_phase(&self, now: Timestamp) -> IntervalId {
        self.parts.community.interval.interval_at(Timestamp(now.0.saturating_add(self.head_offset)))
    }

    /// Records the heads of other members due in `interval`, in one ledger batch.
    fn record_witnessed(&mut self, interval: IntervalId) {
        let due = self.witness.due(interval);
        if due.is_empty() {
            return;
        }
        let items: Vec<_> = due.iter().map(|h| (EntryKind::WitnessedHead, h.to_bytes())).collect();
        let n = items.len() as u64;
        // Durable with the next flush of the ledger (a later turn's, or the one at shutdown):
        // nothing leaves the node on the strength of them.
        match self.parts.ledger.append_unsynced(items) {
            Ok(_) => self.counters.add("heads_witnessed", n),
            Err(e) => {
                tracing::error!(error = %e, "cannot record witnessed heads");
                self.counters.inc("ledger_errors");
            }
        }
    }

    // ---- meter --------------------------------------------------------------------------------

    fn on_meter(&mut self, event: MeterEvent) {
        match event {
            MeterEvent::Interval(t) => {
                self.counters.inc("meter_intervals");
                self.parts.forecaster.observe(observed(&t));
            }
            MeterEvent::Stale(reason) => {
                if !self.stale {
                    tracing::warn!(%reason, "the meter is stale: not trading until it reports again");
                }
                self.stale = true;
                self.meter_state = format!("stale: {reason}");
            }
            MeterEvent::Running(_) => {
                if self.stale {
                    tracing::info!("the meter reports again");
                }
                self.stale = false;
                self.meter_state = "connected".into();
            }
            MeterEvent::Message { outcome, .. } => {
                let name = match outcome {
                    Outcome::Rejected(_) => "meter_readings_rejected",
                    Outcome::Reading(..) | Outcome::Pending => "meter_readings",
                };
                self.counters.inc(name);
            }
            MeterEvent::Connection(c) => {
                self.meter_state = match c {
                    Connection::Connecting => "connecting".into(),
                    Connection::Connected => "connected".into(),
                    Connection::Down { error, .. } => format!("down: {error}"),
                };
            }
        }
    }

    // ---- status -------------------------------------------------------------------------------

    fn write_status(&mut self, running: bool) {
        let now = self.parts.clock.now();
        let day_start = now.0 - now.0 % 86_400_000;
        let length = self.parts.community.interval;
        let orders = self
            .open_intervals(now)
            .into_iter()
            .flat_map(|i| [(i, Side::Sell), (i, Side::Buy)])
            .filter_map(|(i, side)| {
                let o = self.maker.current(i, side)?;
                Some(OrderStatus {
                    interval_start: length.start(i).0,
                    side: side_name(side).into(),
                    energy_wh: o.body().energy.0,
                    available_wh: self.maker.available(&o.digest()).0,
                    price: o.body().price_at(now).0,
                    limit_price: o.body().limit_price.0,
                })
            })
            .collect();
        self.own_trades.retain(|t| t.accepted_at.0 >= day_start);
        let trades_today = self
            .own_trades
            .iter()
            .map(|t| TradeStatus {
                interval_start: length.start(t.interval).0,
                direction: if t.side == Side::Sell { "sold" } else { "bought" }.into(),
                energy_wh: t.energy.0,
                price: t.price,
                counterparty: t.counterparty.to_string(),
                role: if t.as_maker { "maker" } else { "taker" }.into(),
                accepted_at: t.accepted_at.0,
            })
            .collect();
        let status = Status {
            updated_at: now.0,
            running,
            pid: std::process::id(),
            peer_id: self.me.to_string(),
            community: self.parts.community.name.clone(),
            listen: self.listen.clone(),
            peers: self.peers.iter().map(ToString::to_string).collect(),
            meter: self.meter_state.clone(),
            orders,
            trades_today,
            ledger: LedgerStatus {
                entries: self.parts.ledger.len().unwrap_or(0),
                root: self.parts.ledger.root().to_hex(),
            },
            requests_pending: self.taker.pending_count() as u64,
            counters: self.counters.clone(),
        };
        if let Err(e) = status.write(&self.parts.status_path) {
            tracing::warn!(error = %e, path = %self.parts.status_path.display(), "cannot write the status file");
        }
    }

    /// Marks the meter as configured (the status says "connecting" until it connects).
    pub fn meter_configured(&mut self) {
        self.meter_state = "connecting".into();
    }
}

fn side_name(side: Side) -> &'static str {
    match side {
        Side::Sell => "sell",
        Side::Buy => "buy",
    }
}

async fn next_meter(events: &mut Option<mpsc::Receiver<MeterEvent>>) -> Option<MeterEvent> {
    match events {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}
