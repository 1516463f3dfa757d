//! The node actor: one task around the trading core ([`peerwatt_market::Trader`]). It turns
//! what arrives (network events, meter events, answers to the node's calls, commands, the
//! timer) into the core's inputs, carries out the core's effects, and hands each turn's
//! writes to the [`Committer`]. Each turn handles the event it woke for and whatever else was
//! already waiting, so one flush covers them all. A shutdown is only seen between turns, so it
//! never leaves anything half-written. The decisions are the core's; this file only connects.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use futures::stream::{FuturesUnordered, StreamExt};
use peerwatt_core::{Clock, Community, Encode, GossipFrame, Hash, MembershipCert, MeterFigures, MeterMethod, Signed};
use peerwatt_ledger::Store;
use peerwatt_market::{
    CallId, CommandId, Effect, GossipReject, Input, Measured, Penalty, ReplyTo, Screened, Topic, Trader,
};
use peerwatt_meter::{Connection, IntervalTotals, MeterEvent, Outcome, Source};
use peerwatt_net::{Event, Network, PeerId, Responder};
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use crate::committer::{Applied, Committer};
use crate::config::MarketSection;
use crate::heads::Heads;
use crate::metrics::NodeMetrics;
use crate::screen::{Lanes, ScreenedGossip};
use crate::status::{NodeView, Reporter};
use crate::topics::{NodeEvent, Topics};

/// What finishes outside the actor and comes back to it.
enum Completion {
    /// The answer to one of the core's calls.
    Answered(CallId, Result<Vec<u8>, String>),
    /// The committer's flush in progress finished.
    Flushed(Result<(), String>),
}

type Pending = Pin<Box<dyn Future<Output = Completion> + Send>>;

/// What a node actor is built from (see [`crate::start`]).
pub(crate) struct Parts<S: Store + 'static, N: Network> {
    pub trader: Trader,
    pub committer: Committer<S>,
    pub clock: Arc<dyn Clock>,
    pub community: Community,
    pub cert: Signed<MembershipCert>,
    pub market: MarketSection,
    pub net: N,
    pub reporter: Reporter,
    pub ban_after: u32,
    pub status_every_ms: u64,
    pub events: broadcast::Sender<NodeEvent>,
    pub meter_format: String,
}

/// At most this many waiting events are handled in one turn before its writes are committed
/// (bounds the latency a busy turn adds to its first event).
const MAX_EVENTS_PER_TURN: usize = 256;

/// The node actor; see the module documentation. Generic over the ledger's store and the
/// network (the seams: sled and libp2p in the daemon; memory and in-process in tests and the
/// simulator).
pub(crate) struct Node<S: Store + 'static, N: Network> {
    trader: Trader,
    committer: Committer<S>,
    clock: Arc<dyn Clock>,
    community: Community,
    cert: Signed<MembershipCert>,
    market: MarketSection,
    net: N,
    topics: Topics,
    heads: Heads,
    reporter: Reporter,
    events: broadcast::Sender<NodeEvent>,
    metrics: NodeMetrics,
    /// Calls of the core in flight and the flush in progress, polled by the actor itself.
    pending: FuturesUnordered<Pending>,
    /// Takers' calls waiting for the core's answer, and the peer each came from.
    replies: HashMap<u64, (Responder, PeerId)>,
    next_reply: u64,
    commands: HashMap<u64, oneshot::Sender<Result<Hash, String>>>,
    next_command: u64,
    /// Connected peers, with their public ids as the status shows them (encoded once: a
    /// status lists every peer every second, and base58 is not free).
    peers: HashMap<PeerId, String>,
    meter_stale: bool,
    strikes: HashMap<PeerId, u32>,
    banned: HashSet<PeerId>,
    ban_after: u32,
    /// How often the status is written, real ms.
    status_every_ms: u64,
    /// The grid meter's payload format, as its statements name it.
    meter_format: String,
}

impl<S: Store + 'static, N: Network> Node<S, N> {
    /// The actor over its parts.
    pub fn new(parts: Parts<S, N>) -> Node<S, N> {
        let signed_size = parts.committer.ledger().latest_head().ok().flatten().map_or(0, |h| h.body().size);
        Node {
            heads: Heads::new(parts.trader.me(), &parts.community, signed_size),
            topics: Topics::of(&parts.community),
            trader: parts.trader,
            committer: parts.committer,
            clock: parts.clock,
            community: parts.community,
            cert: parts.cert,
            market: parts.market,
            net: parts.net,
            reporter: parts.reporter,
            events: parts.events,
            metrics: NodeMetrics::default(),
            pending: FuturesUnordered::new(),
            replies: HashMap::new(),
            next_reply: 0,
            commands: HashMap::new(),
            next_command: 0,
            peers: HashMap::new(),
            meter_stale: false,
            strikes: HashMap::new(),
            banned: HashSet::new(),
            ban_after: parts.ban_after.max(1),
            status_every_ms: parts.status_every_ms.max(100),
            meter_format: parts.meter_format,
        }
    }

    /// Counts persisted requests that could not be read at start.
    pub fn damaged_records(&mut self, n: u64) {
        self.metrics.state_records_damaged += n;
    }

    /// Handles events until `shutdown` says stop, then drains and stops: no new trades, and
    /// every request of this node answered (a request timeout at most).
    pub async fn run(
        mut self,
        net: Lanes,
        mut meter_events: Option<mpsc::Receiver<MeterEvent>>,
        mut commands: mpsc::Receiver<crate::NodeCommand>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut tick = tokio::time::interval(Duration::from_millis(self.market.tick_ms.max(10)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut drain_until: Option<tokio::time::Instant> = None;
        let Lanes { mut calls, mut gossip } = net;
        loop {
            tokio::select! {
                biased;
                _ = shutdown.changed(), if drain_until.is_none() => {
                    drain_until = Some(tokio::time::Instant::now() + self.drain_grace());
                    self.input(Input::Drain);
                }
                Some(c) = self.pending.next(), if !self.pending.is_empty() => self.on_completion(c),
                Some(c) = commands.recv() => self.on_command(c),
                // The meter and the timer before the network: they are rare and due now, and
                // under a flood of gossip the network always has something waiting.
                e = next_meter(&mut meter_events) => match e {
                    Some(e) => self.on_meter(e),
                    None => meter_events = None, // the meter client stopped
                },
                _ = tick.tick() => self.on_tick().await,
                // Calls before gossip: see crate::screen::Lanes.
                event = calls.recv() => match event {
                    Some(event) => self.on_net(event).await,
                    None => { tracing::error!("the network service stopped"); break; }
                },
                batch = gossip.recv() => match batch {
                    Some(batch) => self.on_gossip_batch(batch).await,
                    None => { tracing::error!("the network service stopped"); break; }
                },
            }
            // Group commit: whatever else is already waiting joins this turn.
            let mut handled = 0;
            while handled < MAX_EVENTS_PER_TURN {
                if let Some(Some(c)) = self.pending.next().now_or_never() {
                    self.on_completion(c);
                    handled += 1;
                } else if let Ok(c) = commands.try_recv() {
                    self.on_command(c);
                    handled += 1;
                } else if let Ok(event) = calls.try_recv() {
                    self.on_net(event).await;
                    handled += 1;
                } else if let Ok(batch) = gossip.try_recv() {
                    handled += batch.len();
                    self.on_gossip_batch(batch).await;
                } else {
                    break;
                }
            }
            self.end_turn().await;
            if let Some(until) = drain_until {
                if self.trader.drained() {
                    tracing::info!("drained: every request of this node is answered");
                    break;
                }
                if tokio::time::Instant::now() >= until {
                    tracing::warn!(
                        pending_requests = self.trader.pending_requests(),
                        "stopping with requests whose outcome is unknown; they are resolved at the next start"
                    );
                    break;
                }
            }
        }
        // Requests nobody will answer now are refused by dropping their channels.
        drop((calls, gossip));
        self.stop().await;
    }

    /// How long a stopping node waits for the answers to its own requests: long enough for a
    /// request to time out and its maker to be asked about it once.
    fn drain_grace(&self) -> Duration {
        Duration::from_millis(self.market.request_timeout_ms + self.market.tick_ms + 1_000)
    }

    async fn stop(&mut self) {
        let now = self.clock.now();
        self.heads.record_due(now, &mut self.committer, &mut self.metrics);
        let (turns, result) = self.committer.flush_now();
        self.on_flushed(turns, result);
        self.carry_out().await;
        // Answers already given reach their takers before the connections close.
        self.net.shutdown(Duration::from_secs(2)).await;
        self.write_status(false);
        tracing::info!("stopped");
    }

    /// Hands one input to the core.
    fn input(&mut self, input: Input) {
        self.trader.handle(input, self.clock.now());
    }

    /// Ends the turn: the core's writes go to the committer, a flush starts if none runs, and
    /// the effects are carried out.
    async fn end_turn(&mut self) {
        let now = self.clock.now();
        if let Some(writes) = self.trader.end_turn(now) {
            let applied = self.committer.apply(&writes);
            if !writes.entries.is_empty() && !matches!(applied, Applied::LedgerFailed(_)) {
                self.metrics.ledger_group_commits += 1;
            }
            match applied {
                Applied::Ok => {}
                Applied::LedgerFailed(e) => {
                    tracing::error!(error = %e, "cannot write the ledger; refusing this turn's orders and trades");
                    self.metrics.ledger_errors += 1;
                    self.trader.failed(writes.turn, now);
                }
                Applied::RequestsNotPersisted(e) => {
                    tracing::error!(error = %e, requests = writes.requests.len(), "cannot persist trade requests; not sending them");
                    self.metrics.state_errors += 1;
                    self.trader.requests_not_persisted(writes.turn);
                }
            }
        }
        if let Some(flush) = self.committer.start_flush() {
            self.pending.push(Box::pin(flush.map(Completion::Flushed)));
        }
        self.carry_out().await;
    }

    /// A flush finished: the turns it covered are durable (or, if it failed, refused; their
    /// entries stay applied, as they did when a flush failed inside an append, and nothing of
    /// them leaves the node).
    fn on_flushed(&mut self, turns: Vec<u64>, result: Result<(), String>) {
        let now = self.clock.now();
        match result {
            Ok(()) => {
                if let Some(last) = turns.last() {
                    self.trader.durable(*last, now);
                }
            }
            Err(error) => {
                tracing::error!(%error, turns = turns.len(), "cannot flush; refusing the orders and trades waiting for it");
                self.metrics.ledger_errors += 1;
                for turn in turns {
                    self.trader.failed(turn, now);
                }
            }
        }
    }

    fn on_completion(&mut self, completion: Completion) {
        match completion {
            Completion::Answered(call, reply) => self.input(Input::Answered { call, reply }),
            Completion::Flushed(result) => {
                let turns = self.committer.flushed();
                self.on_flushed(turns, result);
            }
        }
    }

    /// Carries out the core's effects, in order.
    async fn carry_out(&mut self) {
        for effect in self.trader.take_effects() {
            match effect {
                Effect::Publish { topic, frame } => self.publish(topic, frame).await,
                Effect::Call { call, maker, data } => {
                    let net = self.net.clone();
                    let peer = maker.peer_id().parse::<PeerId>();
                    self.pending.push(Box::pin(async move {
                        let reply = match peer {
                            Ok(peer) => net.request(peer, data).await.map_err(|e| e.to_string()),
                            Err(e) => Err(format!("the maker's key names no peer: {e}")),
                        };
                        Completion::Answered(call, reply)
                    }));
                }
                Effect::Respond { reply, data } => {
                    if let Some((channel, _)) = self.replies.remove(&reply.0) {
                        let _ = self.net.respond(channel, data).await;
                    }
                }
                Effect::Strike(reply) => {
                    if let Some(peer) = self.replies.get(&reply.0).map(|(_, p)| *p) {
                        self.strike(peer).await;
                    }
                }
                Effect::Forget(digests) => self.committer.forget_requests(&digests),
                Effect::Recorded(trade) => {
                    let _ = self.events.send(NodeEvent::TradeRecorded {
                        digest: trade.digest,
                        as_maker: trade.as_maker,
                        interval: trade.interval,
                        energy: trade.energy,
                        price: trade.price,
                    });
                    self.reporter.trade(&trade, self.community.interval);
                    match trade.side {
                        peerwatt_core::Side::Sell => self.metrics.traded_energy_sold_wh += trade.energy.0,
                        peerwatt_core::Side::Buy => self.metrics.traded_energy_bought_wh += trade.energy.0,
                    }
                }
                Effect::Placed { command, result } => {
                    if let Some(reply) = self.commands.remove(&command.0) {
                        let _ = reply.send(result);
                    }
                }
                Effect::Head(head) => self.heads.offer(*head),
                Effect::Settled { interval, revision, complete } => {
                    let _ = self.events.send(NodeEvent::Settled { interval, revision, complete });
                }
            }
        }
    }

    /// Gossips a frame; the actor does not wait for the network (a failure comes back as an
    /// event, [`Event::PublishFailed`]).
    fn publish(&self, topic: Topic, frame: Vec<u8>) -> impl Future<Output = ()> + Send + 'static {
        let (net, topic) = (self.net.clone(), self.topics.name(topic).to_owned());
        // Fails only when the network has stopped, which the event loop notices.
        async move {
            let _ = net.publish_nowait(&topic, frame).await;
        }
    }

    fn on_command(&mut self, command: crate::NodeCommand) {
        match command {
            crate::NodeCommand::PlaceOrder { interval, side, energy, price, reply } => {
                let command = CommandId(self.next_command);
                self.next_command += 1;
                self.commands.insert(command.0, reply);
                self.input(Input::Place { command, interval, side, energy, price });
            }
            crate::NodeCommand::SignHead { reply } => {
                let signed = crate::committer::blocking(|| self.committer.ledger().sign_head());
                if let Ok(head) = &signed {
                    self.metrics.heads_signed += 1;
                    self.reporter.head_signed(head);
                }
                let _ = reply.send(signed.map(|h| h.body().size).map_err(|e| e.to_string()));
            }
            crate::NodeCommand::SetLimits { min_sell_price, max_buy_price, reply } => {
                let limits = peerwatt_market::UserLimits { min_sell_price, max_buy_price, ..self.trader.limits() };
                self.trader.set_limits(limits);
                tracing::info!(?min_sell_price, ?max_buy_price, "limits set");
                let _ = reply.send(limits);
            }
        }
    }

    async fn on_gossip_batch(&mut self, batch: Vec<ScreenedGossip>) {
        for ScreenedGossip { source, result } in batch {
            self.on_gossip(source, result).await;
        }
    }

    async fn on_net(&mut self, event: Event) {
        match event {
            Event::Listening(addr) => {
                tracing::info!(address = %format!("{addr}/p2p/{}", self.net.peer_id()), "listening");
                self.reporter.listening(addr.to_string());
            }
            Event::PeerConnected(peer) => {
                if self.banned.contains(&peer) {
                    let _ = self.net.ban(peer).await;
                } else {
                    tracing::debug!(%peer, "peer connected");
                    self.peers.insert(peer, peer.to_string());
                }
            }
            Event::PeerDisconnected(peer) => {
                tracing::debug!(%peer, "peer disconnected");
                self.peers.remove(&peer);
            }
            // Screened before it gets here (see crate::screen), never passed on raw.
            Event::Gossip { .. } => {}
            Event::Request { peer, data, channel } => {
                let reply = ReplyTo(self.next_reply);
                self.next_reply += 1;
                self.replies.insert(reply.0, (channel, peer));
                self.input(Input::Call { reply, data });
            }
            Event::PublishFailed { topic, error } => {
                let counter = match self.topics.topic(&topic) {
                    Some(Topic::Orders) => &mut self.metrics.orders_not_gossiped,
                    Some(Topic::Trades) => &mut self.metrics.announcements_failed,
                    Some(Topic::Statements) => &mut self.metrics.statements_not_gossiped,
                    _ => &mut self.metrics.heads_not_gossiped,
                };
                *counter += 1;
                tracing::debug!(%error, topic, "not gossiped (no peers yet?)");
            }
            Event::SendDropped { peer, messages } => {
                tracing::warn!(%peer, messages, "gossip to a slow peer dropped (its send queue was full or too slow)");
                self.metrics.gossip_send_dropped += messages as u64;
            }
            Event::Graylisted(peer) => {
                if self.banned.insert(peer) {
                    tracing::warn!(%peer, "banned a peer whose invalid messages graylisted it");
                    self.metrics.peers_banned += 1;
                    self.peers.remove(&peer);
                }
            }
            Event::ConnectionRefused { reason } => {
                tracing::debug!(%reason, "connection refused");
                self.metrics.connections_refused += 1;
            }
        }
    }

    /// Applies one screened gossip message to the core and counts it either way; a refusal
    /// with a penalty is a strike against the peer that relayed it. (Its verdict went to the
    /// network from the screen already.)
    async fn on_gossip(&mut self, source: PeerId, result: Result<Screened, GossipReject>) {
        let now = self.clock.now();
        match result.and_then(|screened| self.trader.apply_gossip(screened, now)) {
            Ok(t) => self.metrics.accepted(t),
            Err(reject) => {
                self.metrics.rejected(reject.name());
                match reject.penalty() {
                    Penalty::Ignore => tracing::debug!(%source, reason = reject.name(), "gossip ignored: {reject}"),
                    Penalty::Reject => {
                        tracing::info!(%source, reason = reject.name(), "gossip rejected: {reject}");
                        self.strike(source).await;
                    }
                }
            }
        }
    }

    /// One more invalid message from `peer`; too many and it is banned.
    async fn strike(&mut self, peer: PeerId) {
        let strikes = self.strikes.entry(peer).or_insert(0);
        *strikes += 1;
        if *strikes >= self.ban_after && self.banned.insert(peer) {
            tracing::warn!(%peer, strikes = *strikes, "banning a peer that keeps sending invalid messages");
            self.metrics.peers_banned += 1;
            self.peers.remove(&peer);
            let _ = self.net.ban(peer).await;
        }
    }

    /// The timer: the core's tick, this node's heads when due, the status every second (of
    /// real time).
    async fn on_tick(&mut self) {
        self.input(Input::Tick);
        let now = self.clock.now();
        if let Some(head) = self.heads.on_tick(now, &mut self.committer, &mut self.metrics) {
            self.reporter.head_signed(&head);
            let frame = GossipFrame { cert: self.cert.clone(), messages: vec![head.to_bytes()] }.to_bytes();
            self.publish(Topic::Heads, frame).await;
        }
        let real_every = Duration::from_millis(self.status_every_ms);
        if self.reporter.due(now, self.status_every_ms * u64::from(self.clock.rate().max(1)), real_every) {
            self.write_status(true);
        }
    }

    fn on_meter(&mut self, event: MeterEvent) {
        match event {
            MeterEvent::Interval(t) => self.input(Input::Meter(measured(&t, &self.meter_format))),
            MeterEvent::Stale(reason) => {
                if !self.meter_stale {
                    tracing::warn!(%reason, "the meter is stale: not trading until it reports again");
                }
                self.meter_stale = true;
                self.reporter.meter_stale(true);
                self.input(Input::MeterStale(true));
                self.reporter.meter(format!("stale: {reason}"));
            }
            MeterEvent::Running(_) => {
                if self.meter_stale {
                    tracing::info!("the meter reports again");
                }
                self.meter_stale = false;
                self.reporter.meter_stale(false);
                self.input(Input::MeterStale(false));
                self.reporter.meter("connected".into());
            }
            MeterEvent::Message { outcome, .. } => match outcome {
                Outcome::Rejected(_) => self.metrics.meter_readings_rejected += 1,
                Outcome::Reading(reading, _) => {
                    self.metrics.meter_readings += 1;
                    self.reporter.reading(&reading);
                }
                Outcome::Pending => self.metrics.meter_readings += 1,
            },
            MeterEvent::Connection(c) => self.reporter.meter(match c {
                Connection::Connecting => "connecting".into(),
                Connection::Connected => "connected".into(),
                Connection::Down { error, .. } => format!("down: {error}"),
            }),
        }
    }

    fn write_status(&mut self, running: bool) {
        let view = NodeView {
            trader: &self.trader,
            ledger: self.committer.ledger(),
            community: &self.community,
            peers: self.peers.values().cloned().collect(),
            metrics: &self.metrics,
        };
        self.reporter.write(self.clock.now(), running, view);
    }
}

/// A closed meter interval as the node states it; `format`: the grid meter's payload format.
pub(crate) fn measured(t: &IntervalTotals, format: &str) -> Measured {
    let figures = MeterFigures {
        imported: t.imported,
        exported: t.exported,
        // An interval is at most a day: 86,400,000 ms fit.
        covered_ms: u32::try_from(t.covered_ms).unwrap_or(u32::MAX),
        complete: t.complete,
        method: match t.source {
            Source::Counters => MeterMethod::Counters,
            Source::Power => MeterMethod::Power,
        },
        format: format.to_owned(),
    };
    Measured { interval: t.interval, figures }
}

/// A closed meter interval as the forecaster sees it.
pub(crate) fn observed(t: &IntervalTotals) -> peerwatt_market::Observed {
    peerwatt_market::Observed { interval: t.interval, imported: t.imported, exported: t.exported, complete: t.complete }
}

async fn next_meter(events: &mut Option<mpsc::Receiver<MeterEvent>>) -> Option<MeterEvent> {
    match events {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}
