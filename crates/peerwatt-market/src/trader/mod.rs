//! The trading core: one state machine that owns a node's books, its maker and taker sides,
//! the energy it has spoken for and the strategy's decisions. Sans-IO (the shape of
//! quinn-proto): inputs go in with the time ([`Trader::handle`], [`Trader::apply_gossip`]),
//! effects come out ([`Trader::take_effects`]), and the writes of a turn are handed to whoever
//! owns the stores ([`Trader::end_turn`]), who reports back when they are durable
//! ([`Trader::durable`]) or refused ([`Trader::failed`]). No clock, socket, disk or task in
//! here: every test drives it by hand, and the node actor is a thin loop around it.
//!
//! The promises of the handshake are kept here, not by the caller: nothing a turn decided
//! leaves the node before its writes are durable. A maker's answer waits for its trade to be
//! in the ledger; a taker's request waits for it to be persisted; orders and announcements
//! are gossiped once recorded.

mod inbound;
pub mod metrics;
pub mod position;
mod settling;
mod stating;
mod taking;
mod ticks;
mod turns;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use peerwatt_core::{
    Community, Decode, EntryKind, Hash, IntervalId, MembershipCert, MeterStatement, NodeKey, Order, Price, PublicKey,
    Settlement, Side, Signed, Timestamp, Trade, TradeRequest, TreeHead, Wh,
};

use crate::book::Books;
pub use crate::gossip::Topic;
use crate::gossip::{GossipReject, GossipValidator, Screened};
use crate::maker::Maker;
use crate::memo::VerifiedMemo;
use crate::statements::{Measured, Statements};
use crate::strategy::{Forecaster, UserLimits};
use crate::taker::Taker;
pub use metrics::TraderMetrics;
pub use position::{Position, Stage};
pub use settling::SETTLE_AFTER_MS;
pub use stating::STATEMENT_GOSSIP_MS;
pub use turns::Writes;
use turns::{Pipeline, Turn};

/// Names a taker's call that waits for an answer (the caller keeps the channel).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReplyTo(pub u64);

/// Names one of this node's own calls to a maker (the caller keeps the future).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallId(pub u64);

/// Names a `place_order` command (the caller keeps the reply channel).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CommandId(pub u64);

/// What happens to the trading core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// The strategy's timer: re-price, take, ask about requests without answers.
    Tick,
    /// A closed meter interval: learnt from, and stated.
    Meter(Measured),
    /// The meter went stale (`true`: stop trading) or reports again (`false`).
    MeterStale(bool),
    /// A direct call from a taker: trade requests or a query, not decoded yet.
    Call {
        /// Where the answer goes.
        reply: ReplyTo,
        /// The call's bytes.
        data: Vec<u8>,
    },
    /// The answer to one of this node's calls (`Err`: no answer, with why).
    Answered {
        /// Which call.
        call: CallId,
        /// The answer's bytes.
        reply: Result<Vec<u8>, String>,
    },
    /// Place an order by hand (outside the strategy) and take what it crosses.
    Place {
        /// Answered with [`Effect::Placed`].
        command: CommandId,
        /// The delivery interval.
        interval: IntervalId,
        /// Sell or buy.
        side: Side,
        /// Energy (0 cancels).
        energy: Wh,
        /// Limit price.
        price: Price,
    },
    /// Stop trading: cancel open orders, refuse new requests, send none.
    Drain,
}

/// What the trading core asks its caller to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Gossip a frame (already encoded, with this node's certificate).
    Publish {
        /// On which topic.
        topic: Topic,
        /// The frame.
        frame: Vec<u8>,
    },
    /// Call a maker; the answer comes back as [`Input::Answered`].
    Call {
        /// Names the call.
        call: CallId,
        /// The maker.
        maker: PublicKey,
        /// The call's bytes.
        data: Vec<u8>,
    },
    /// Answer a taker's call.
    Respond {
        /// Which call.
        reply: ReplyTo,
        /// The answer's bytes.
        data: Vec<u8>,
    },
    /// The caller of a call sent something malformed: a strike against its peer.
    Strike(ReplyTo),
    /// These persisted requests are settled: the state database may forget them (not urgent).
    Forget(Vec<Hash>),
    /// A trade of this node is in its ledger.
    Recorded(Recorded),
    /// The answer to a `place_order` command.
    Placed {
        /// Which command.
        command: CommandId,
        /// The order's id, or why it was not placed.
        result: Result<Hash, String>,
    },
    /// A valid tree head of a member, for the witness.
    Head(Box<Signed<TreeHead>>),
    /// A settlement of this node is in its ledger.
    Settled {
        /// The interval.
        interval: IntervalId,
        /// Its revision.
        revision: u32,
        /// Whether every counterparty's statement was in.
        complete: bool,
    },
}

/// One of this node's trades, durable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    /// The trade's digest.
    pub digest: Hash,
    /// Whether this node was the maker.
    pub as_maker: bool,
    /// This node's side.
    pub side: Side,
    /// The delivery interval.
    pub interval: IntervalId,
    /// The energy.
    pub energy: Wh,
    /// The price.
    pub price: Price,
    /// The other party.
    pub counterparty: PublicKey,
    /// When the maker agreed.
    pub accepted_at: Timestamp,
}

/// Whether a node trades, and if not, why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TradingState {
    /// Trading is off in the node's configuration.
    Disabled,
    /// The forecaster has fewer complete meter intervals than it needs (an hour's).
    Learning {
        /// Complete intervals measured.
        have: usize,
        /// Complete intervals needed.
        need: usize,
    },
    /// No interval is open for trading now.
    NoOpenInterval,
    /// No surplus or deficit is forecast in the open intervals.
    NothingForecast,
    /// Trading: this many open orders.
    Trading {
        /// Open orders of this node.
        orders: usize,
    },
}

impl std::fmt::Display for TradingState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TradingState::Disabled => write!(f, "not trading: trading is off ([market] enabled = false)"),
            TradingState::Learning { have, need } => write!(
                f,
                "not trading yet: learning the household's use from the meter, {have} of {need} complete intervals measured (it trades cautiously from its first complete hour)"
            ),
            TradingState::NoOpenInterval => write!(f, "not trading: no interval is open for trading now"),
            TradingState::NothingForecast => {
                write!(f, "not trading: no surplus or deficit is forecast in the open intervals")
            }
            TradingState::Trading { orders } => write!(f, "trading: {orders} open orders"),
        }
    }
}

/// The trading settings a node gives its core.
#[derive(Debug, Clone)]
pub struct TraderConfig {
    /// Trade automatically (false: only relay, record and answer).
    pub enabled: bool,
    /// The homeowner's limits.
    pub limits: UserLimits,
    /// Re-publish an order at a new price at most this often, clock ms.
    pub reprice_ms: u64,
    /// A request without an answer after this long is asked about, clock ms.
    pub request_timeout_ms: u64,
    /// How many clock ms pass per real ms (1, except on the simulator's clock).
    pub clock_rate: u32,
}

/// An own request in flight: the own order its energy was held from, the order it was sent
/// against, and the energy.
#[derive(Debug, Clone, Copy)]
struct Held {
    own: Hash,
    theirs: Hash,
    energy: Wh,
}

/// A node's trading state; see the module documentation.
pub struct Trader {
    key: NodeKey,
    me: PublicKey,
    community: Community,
    cert: Signed<MembershipCert>,
    cfg: TraderConfig,
    books: Books,
    validator: GossipValidator,
    maker: Maker,
    taker: Taker,
    forecaster: Forecaster,
    position: Position,
    held: HashMap<Hash, Held>,
    /// Orders whose maker refused a request of this node, and when: not asked again for a
    /// fifth of the re-pricing period (the maker knows its energy; this copy of the book may
    /// be behind).
    refused_by: HashMap<Hash, Timestamp>,
    /// Trades this node has seen (and so applied to its books), by digest.
    seen_trades: HashSet<Hash>,
    /// Intervals where a new offer crossed this node's bid this turn: taken at its end.
    takes_due: BTreeSet<IntervalId>,
    next_order_seq: u64,
    last_reprice_slot: u64,
    /// Where this node's re-pricing periods start, ms into the period (from its key).
    reprice_offset: u64,
    last_query: HashMap<PublicKey, Timestamp>,
    stale: bool,
    draining: bool,
    /// This node's calls in flight: what each was about.
    calls: HashMap<CallId, taking::CallKind>,
    /// Members' display names, from the certificates of their verified orders and requests
    /// (at most one per member of the community).
    names: HashMap<PublicKey, String>,
    next_call: u64,
    window: taking::Window,
    turn: Turn,
    pipeline: Pipeline,
    /// Members' meter statements (this node's own included).
    statements: Statements,
    /// This node's statements on their way out.
    stating: stating::Stating,
    /// This node's trades and settlements of recent intervals.
    settling: settling::Settling,
    /// Intervals worked out once for the nodes of one process, if they share them.
    work_memo: Option<Arc<crate::settlement::WorkMemo>>,
    effects: Vec<Effect>,
    metrics: TraderMetrics,
}

/// Where the periods of the node with key `me` start, ms into a period of `period_ms` (from
/// the key's first bytes: spread over the community, stable across restarts).
pub fn phase_offset(me: &PublicKey, period_ms: u64) -> u64 {
    let key = me.to_bytes();
    u64::from_be_bytes([key[0], key[1], key[2], key[3], key[4], key[5], key[6], key[7]]) % period_ms.max(1)
}

/// This node's side of `trade`: the maker's side if it signed the trade, else the other.
pub fn own_side(me: &PublicKey, trade: &Signed<Trade>) -> Side {
    let maker_side = trade.body().request.body().maker_side;
    if trade.signer() == me { maker_side } else { maker_side.opposite() }
}

impl Trader {
    /// A core for the node with `key`, admitted by `cert`, numbering its requests from
    /// `next_request` (persisted by the caller). `memo`: signatures shared by the nodes of
    /// one process (the simulator's), if any.
    pub fn new(
        key: NodeKey,
        community: Community,
        cert: Signed<MembershipCert>,
        forecaster: Forecaster,
        cfg: TraderConfig,
        next_request: u64,
        memo: Option<Arc<VerifiedMemo>>,
    ) -> Trader {
        let me = key.public();
        let validator = GossipValidator::new(community.clone()).with_clock_rate(cfg.clock_rate);
        let mut books = Books::new(community.clone());
        books.set_clock_rate(cfg.clock_rate);
        let mut maker = Maker::new(community.clone(), me);
        maker.set_clock_rate(cfg.clock_rate);
        Trader {
            me,
            books,
            validator: match memo {
                Some(memo) => validator.sharing(memo),
                None => validator,
            },
            maker,
            taker: Taker::new(me, community.id, next_request),
            forecaster,
            position: Position::default(),
            held: HashMap::new(),
            refused_by: HashMap::new(),
            seen_trades: HashSet::new(),
            takes_due: BTreeSet::new(),
            next_order_seq: 1,
            last_reprice_slot: 0,
            reprice_offset: phase_offset(&me, cfg.reprice_ms),
            last_query: HashMap::new(),
            stale: false,
            draining: false,
            calls: HashMap::new(),
            names: HashMap::new(),
            next_call: 0,
            window: taking::Window::default(),
            turn: Turn::default(),
            pipeline: Pipeline::default(),
            statements: Statements::new(&community),
            stating: stating::Stating::default(),
            settling: settling::Settling::default(),
            work_memo: None,
            effects: Vec::new(),
            metrics: TraderMetrics::default(),
            key,
            community,
            cert,
            cfg,
        }
    }

    /// Rebuilds the state from this node's ledger entries (own orders, agreed trades) and the
    /// requests persisted without a final answer, after a restart or a crash. Returns the
    /// persisted requests that are settled already (recorded before the crash): forget them.
    pub fn restore<P: AsRef<[u8]>>(
        &mut self,
        entries: impl IntoIterator<Item = (EntryKind, P)>,
        pending: Vec<(Signed<TradeRequest>, Timestamp)>,
        now: Timestamp,
    ) -> Vec<Hash> {
        for (kind, payload) in entries {
            let payload = payload.as_ref();
            match kind {
                EntryKind::OrderPublished => {
                    let Ok(order) = Signed::<Order>::from_bytes(payload) else { continue };
                    self.next_order_seq = self.next_order_seq.max(order.body().seq + 1);
                    if self.community.is_open(order.body().interval, now) && order.body().expires_at > now {
                        let _ = self.books.insert(&order, now);
                        self.maker.publish(order);
                    }
                }
                EntryKind::TradeAgreed => {
                    let Ok(trade) = Signed::<Trade>::from_bytes(payload) else { continue };
                    if *trade.signer() == self.me {
                        self.maker.restore(trade.clone());
                    } else {
                        self.taker.restore_recorded(&trade);
                        self.restore_own_hold(&trade);
                    }
                    self.remember_trade(&trade, Stage::Traded);
                    self.note_trade(&trade);
                    self.effects.push(Effect::Recorded(self.recorded(&trade)));
                }
                EntryKind::MeterStatement => {
                    let Ok(statement) = Signed::<MeterStatement>::from_bytes(payload) else { continue };
                    self.restore_statement(statement);
                }
                EntryKind::Settlement => {
                    let Ok(settlement) = Signed::<Settlement>::from_bytes(payload) else { continue };
                    self.restore_settlement(settlement);
                }
                _ => {}
            }
        }
        let mut settled = Vec::new();
        for (request, sent_at) in pending {
            let digest = request.digest();
            let (interval, energy) = (request.body().interval, request.body().energy);
            let side = request.body().maker_side.opposite();
            let theirs = request.body().order;
            self.taker.restore_pending(request, sent_at);
            if self.taker.state(&digest).is_none() {
                settled.push(digest);
                continue;
            }
            self.position.set(digest, interval, side, energy, Stage::Requested);
            // The request's energy was held from this node's own order when it was sent;
            // restored from the ledger, that order has it all again, and an offer arriving
            // before the next tick would be requested a second time.
            if let Some(own) = self.maker.current(interval, side).map(Signed::digest) {
                let held = self.maker.hold_for_own_request(&own, energy);
                self.held.insert(digest, Held { own, theirs, energy: held });
            }
        }
        settled
    }

    /// A trade this node took came out of its own order (held when the request was sent):
    /// restored from the ledger, that order must not have the energy again. An order newer
    /// than the request was published with the trade already deducted.
    fn restore_own_hold(&mut self, trade: &Signed<Trade>) {
        let r = trade.body().request.body();
        let own = self
            .maker
            .current(r.interval, r.maker_side.opposite())
            .filter(|o| o.body().created_at <= r.created_at)
            .map(Signed::digest);
        if let Some(own) = own {
            self.maker.hold_for_own_request(&own, r.energy);
        }
    }

    /// Handles one input at `now`; its effects wait in [`Trader::take_effects`].
    pub fn handle(&mut self, input: Input, now: Timestamp) {
        match input {
            Input::Tick => self.on_tick(now),
            Input::Meter(measured) => self.on_measured(measured),
            Input::MeterStale(stale) => self.stale = stale,
            Input::Call { reply, data } => self.on_call(reply, &data, now),
            Input::Answered { call, reply } => self.on_answered(call, reply, now),
            Input::Place { command, interval, side, energy, price } => {
                self.on_place(command, interval, side, energy, price, now)
            }
            Input::Drain => self.begin_drain(now),
        }
    }

    /// Judges one gossip frame: screens it ([`GossipValidator::screen`]) and applies it
    /// ([`Trader::apply_gossip`]). A node screens on a worker instead, off its actor; tests
    /// and the simulated street use this.
    pub fn judge_gossip(&mut self, topic: Topic, data: &[u8], now: Timestamp) -> Result<Topic, GossipReject> {
        let screened = self.validator.screen(topic, data, now)?;
        self.apply_gossip(screened, now)
    }

    /// Applies gossip that a screening worker passed: `Ok` with its topic if it changed
    /// something (and acts on it), else why it was dropped (a replay, or lateness since it was
    /// screened: never a penalty, the network has forwarded it already).
    pub fn apply_gossip(&mut self, screened: Screened, now: Timestamp) -> Result<Topic, GossipReject> {
        let topic = screened.topic();
        match screened {
            Screened::Orders { orders, late, name } => {
                if let Some((o, _)) = orders.first() {
                    self.learn_name(*o.signer(), &name);
                }
                self.on_orders(orders, late, now)?
            }
            Screened::Trades(trades) => self.on_trades(trades, now),
            Screened::Head(head) => self.effects.push(Effect::Head(head)),
            Screened::Statements(statements) => self.on_statements(statements)?,
        }
        Ok(topic)
    }

    /// Shares the community-wide figures of each settled interval with the other nodes of the
    /// process (see [`crate::settlement::WorkMemo`]).
    pub fn share_settlement_work(&mut self, memo: Arc<crate::settlement::WorkMemo>) {
        self.work_memo = Some(memo);
    }

    /// A validator for a screening worker of this node (see [`GossipValidator::worker`]).
    pub fn screener(&self) -> GossipValidator {
        self.validator.worker()
    }

    /// The effects of everything handled since the last call, in order.
    pub fn take_effects(&mut self) -> Vec<Effect> {
        std::mem::take(&mut self.effects)
    }

    /// This node's public key.
    pub fn me(&self) -> &PublicKey {
        &self.me
    }

    /// The counters.
    pub fn metrics(&self) -> &TraderMetrics {
        &self.metrics
    }

    /// Energy spoken for, per interval and side (see [`position`]).
    pub fn position(&self) -> &Position {
        &self.position
    }

    /// The books as this node sees them.
    pub fn books(&self) -> &Books {
        &self.books
    }

    /// This node's current order for `interval` and `side`, with what is free to trade of it.
    pub fn own_order(&self, interval: IntervalId, side: Side) -> Option<(&Signed<Order>, Wh)> {
        let order = self.maker.current(interval, side)?;
        Some((order, self.maker.available(&order.digest())))
    }

    /// This node's display name (its certificate's).
    pub fn name(&self) -> &str {
        &self.cert.body().name
    }

    /// A member's display name, if one of its orders or requests has been seen.
    pub fn member_name(&self, member: &PublicKey) -> Option<&str> {
        if member == &self.me {
            return Some(self.name());
        }
        self.names.get(member).map(String::as_str)
    }

    /// Every other member seen, with its display name.
    pub fn members(&self) -> impl Iterator<Item = (&PublicKey, &str)> {
        self.names.iter().map(|(k, n)| (k, n.as_str()))
    }

    /// Keeps a member's name from its verified certificate (a renewed certificate may rename).
    pub(crate) fn learn_name(&mut self, member: PublicKey, name: &str) {
        if self.names.get(&member).is_none_or(|known| known != name) {
            self.names.insert(member, name.to_owned());
        }
    }

    /// The homeowner's limits in force.
    pub fn limits(&self) -> UserLimits {
        self.cfg.limits
    }

    /// Sets the homeowner's limits; the next tick prices and sizes orders by them.
    pub fn set_limits(&mut self, limits: UserLimits) {
        self.cfg.limits = limits;
    }

    /// How many of this node's requests await a final answer.
    pub fn pending_requests(&self) -> usize {
        self.taker.pending_count()
    }

    /// Whether this node is stopping.
    pub fn is_draining(&self) -> bool {
        self.draining
    }

    /// Whether every request this node sent is answered, and nothing waits to be sent or
    /// made durable: a draining node may stop.
    pub fn drained(&self) -> bool {
        self.taker.pending_count() == 0 && self.window.is_empty() && self.pipeline.is_idle() && self.turn.is_empty()
    }

    /// Whether this node trades at `now`, and if not, why (for `peerwatt status`).
    pub fn trading_state(&self, now: Timestamp) -> TradingState {
        if !self.cfg.enabled {
            return TradingState::Disabled;
        }
        if let Some((have, need)) = self.forecaster.learning() {
            return TradingState::Learning { have, need };
        }
        let open = self.open_intervals(now);
        if open.is_empty() {
            return TradingState::NoOpenInterval;
        }
        let orders = open
            .iter()
            .flat_map(|i| [(*i, Side::Sell), (*i, Side::Buy)])
            .filter(|(i, side)| self.maker.current(*i, *side).is_some())
            .count();
        if orders == 0 && open.iter().all(|i| self.forecaster.net_export(*i).is_none_or(|n| n == 0)) {
            return TradingState::NothingForecast;
        }
        TradingState::Trading { orders }
    }

    /// The intervals open for trading at `now`.
    pub fn open_intervals(&self, now: Timestamp) -> Vec<IntervalId> {
        let current = self.community.interval.interval_at(now).0;
        (current + 1..=current + u64::from(self.community.horizon) + 1)
            .map(IntervalId)
            .filter(|i| self.community.is_open(*i, now))
            .collect()
    }

    /// Real milliseconds from `then` to `now` on this node's clock (clock time divided by its
    /// rate: the simulator's clock runs faster than real time).
    fn real_ms_since(&self, then: Timestamp, now: Timestamp) -> u64 {
        now.0.saturating_sub(then.0) / u64::from(self.cfg.clock_rate.max(1))
    }

    /// A trade of this node, as the status and subscribers see it.
    fn recorded(&self, trade: &Signed<Trade>) -> Recorded {
        let request = &trade.body().request;
        let terms = request.body();
        let as_maker = *trade.signer() == self.me;
        Recorded {
            digest: trade.digest(),
            as_maker,
            side: own_side(&self.me, trade),
            interval: terms.interval,
            energy: terms.energy,
            price: terms.price,
            counterparty: if as_maker { *request.signer() } else { *trade.signer() },
            accepted_at: trade.body().accepted_at,
        }
    }

    /// Notes one of this node's trades at `stage`: seen, and spoken for.
    fn remember_trade(&mut self, trade: &Signed<Trade>, stage: Stage) {
        self.seen_trades.insert(trade.digest());
        let request = &trade.body().request;
        let terms = request.body();
        self.position.set(request.digest(), terms.interval, own_side(&self.me, trade), terms.energy, stage);
    }
}

#[cfg(test)]
mod tests;

#[cfg(any(test, feature = "test-utils"))]
pub mod testkit;
