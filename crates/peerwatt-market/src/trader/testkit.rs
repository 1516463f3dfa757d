//! A street of trading cores on a simulated network and simulated stores, driven one event at
//! a time: for deterministic tests of whole handshakes, crashes and restarts, and for the
//! property test that interleaves them at random (`tests/trader_props.rs`).
//!
//! Every message is the real signed frame or call; every store keeps what was made durable
//! and loses (or keeps, as the test says) what was only applied when its node crashes.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use peerwatt_core::{
    Community, Decode, EntryKind, Hash, IntervalId, IntervalLength, MembershipCert, NodeKey, Price, PublicKey, Side,
    Signed, Timestamp, Trade, TradeRequest, Wh,
};

use super::{CallId, Effect, Input, ReplyTo, Topic, Trader, TraderConfig, Writes, own_side};
use crate::strategy::{ForecastMethod, Forecaster, Observed, UserLimits};

/// 2024-06-01T12:00:00Z: the start of interval [`I`].
pub const START: u64 = 1_717_243_200_000;
/// An interval open for trading at the street's first moment.
pub const I: IntervalId = IntervalId(START / 900_000);

/// A closed interval as a meter measured it: `imported` Wh, nothing exported, every
/// millisecond of a 15-minute interval covered, from counters of a Tasmota meter.
pub fn measured(interval: IntervalId, imported: u64) -> crate::statements::Measured {
    let figures = peerwatt_core::MeterFigures {
        imported: Wh(imported),
        exported: Wh(0),
        covered_ms: 900_000,
        complete: true,
        method: peerwatt_core::MeterMethod::Counters,
        format: "tasmota".into(),
    };
    crate::statements::Measured { interval, figures }
}

/// The street's community.
pub fn community() -> Community {
    community_named(&admin(), "Street")
}

/// A test community named `name` of `admin`: 15-minute intervals, horizon 4, gate closure
/// 60 s, feed-in 0.080/kWh, retail 0.300/kWh.
pub fn community_named(admin: &NodeKey, name: &str) -> Community {
    let admin = admin.public();
    Community {
        name: name.into(),
        id: Community::derive_id(&admin, name),
        admin,
        interval: IntervalLength::DEFAULT,
        gate_closure: Duration::from_secs(60),
        horizon: 4,
        feed_in: Price(80_000),
        retail: Price(300_000),
        bootstrap: vec![],
        sharing: peerwatt_core::Sharing::default(),
        rules: Default::default(),
    }
}

fn admin() -> NodeKey {
    NodeKey::from_seed(&[200; 32])
}

pub(crate) fn key(n: usize) -> NodeKey {
    NodeKey::from_seed(&[u8::try_from(n + 1).unwrap_or(u8::MAX); 32])
}

/// The trading settings of every node of the street.
pub fn config() -> TraderConfig {
    TraderConfig {
        enabled: true,
        limits: UserLimits::default(),
        reprice_ms: 60_000,
        request_timeout_ms: 5_000,
        clock_rate: 1,
    }
}

/// A message on its way.
#[derive(Debug, Clone)]
pub enum Msg {
    /// A gossip frame for node `to`.
    Gossip {
        /// The receiver.
        to: usize,
        /// The topic.
        topic: Topic,
        /// The frame.
        frame: Vec<u8>,
    },
    /// A call for maker `to`; its answer goes back through `reply`.
    Call {
        /// The maker.
        to: usize,
        /// Names the call at the street.
        reply: u64,
        /// The call.
        data: Vec<u8>,
    },
    /// An answer (or a failure) for node `to`'s call.
    Answer {
        /// The taker.
        to: usize,
        /// Its call.
        call: CallId,
        /// The answer.
        reply: Result<Vec<u8>, String>,
    },
}

/// One household: its core (none while it is down) and its stores.
pub struct House {
    /// The core; `None` while crashed.
    pub trader: Option<Trader>,
    /// Net export per interval, Wh (positive: surplus): what its meter history says.
    pub net_export: i64,
    /// The durable ledger.
    pub ledger: Vec<(EntryKind, Vec<u8>)>,
    /// The durable persisted requests, with when they were sent.
    pub requests: HashMap<Hash, (Signed<TradeRequest>, Timestamp)>,
    /// Writes applied and not yet durable, oldest first.
    pub unsynced: VecDeque<Writes>,
    next_request: u64,
}

/// A street of cores, a network and a clock.
pub struct Street {
    /// The households, by index.
    pub houses: Vec<House>,
    /// Messages in flight, in the order they were sent.
    pub queue: VecDeque<Msg>,
    /// The street's clock.
    pub now: Timestamp,
    community: Community,
    /// Calls delivered or on their way, by street id: the caller, its call, the maker.
    replies: HashMap<u64, (usize, CallId, usize)>,
    next_reply: u64,
}

impl Street {
    /// A street of one household per entry of `net_exports` (Wh per interval), 30 minutes
    /// before [`I`] starts: intervals `I - 1 ..= I + 2` are open.
    pub fn new(net_exports: &[i64]) -> Street {
        let mut street = Street {
            houses: Vec::new(),
            queue: VecDeque::new(),
            now: Timestamp(START - 30 * 60_000),
            community: community(),
            replies: HashMap::new(),
            next_reply: 0,
        };
        for (n, &net_export) in net_exports.iter().enumerate() {
            street.houses.push(House {
                trader: None,
                net_export,
                ledger: Vec::new(),
                requests: HashMap::new(),
                unsynced: VecDeque::new(),
                next_request: 0,
            });
            street.start(n);
        }
        street
    }

    /// The street's community.
    pub fn community(&self) -> &Community {
        &self.community
    }

    /// The public key of house `n`.
    pub fn key_of(&self, n: usize) -> PublicKey {
        key(n).public()
    }

    fn forecaster(&self, n: usize) -> Forecaster {
        let net = self.houses[n].net_export;
        let observed = Observed {
            interval: IntervalId(I.0 - 4),
            imported: Wh((-net).max(0).unsigned_abs()),
            exported: Wh(net.max(0).unsigned_abs()),
            complete: true,
        };
        Forecaster::with_method(&self.community, vec![observed], ForecastMethod::Recent { intervals: 1 })
    }

    pub(crate) fn cert(&self, n: usize) -> Signed<MembershipCert> {
        Signed::sign(
            &admin(),
            MembershipCert {
                community: self.community.id,
                member: key(n).public(),
                name: format!("house {n}"),
                zone: "street".into(),
                valid_from: Timestamp(0),
                valid_until: Timestamp(u64::MAX),
            },
        )
    }

    /// Starts (or restarts) house `n` from its durable stores.
    pub fn start(&mut self, n: usize) {
        let mut trader = Trader::new(
            key(n),
            self.community.clone(),
            self.cert(n),
            self.forecaster(n),
            config(),
            self.houses[n].next_request,
            None,
        );
        let house = &self.houses[n];
        let pending: Vec<_> = house.requests.values().cloned().collect();
        let settled = trader.restore(house.ledger.iter().map(|(k, p)| (*k, p.as_slice())), pending, self.now);
        for digest in settled {
            self.houses[n].requests.remove(&digest);
        }
        let _ = trader.take_effects();
        self.houses[n].trader = Some(trader);
    }

    /// House `n` dies. `keep_unsynced`: writes applied but not flushed survive (the disk wrote
    /// them anyway), else they are lost. The calls it was answering fail (the connection
    /// closed); its own calls and the answers on their way to it are gone.
    pub fn crash(&mut self, n: usize, keep_unsynced: bool) {
        let mut answering: Vec<u64> = self.replies.iter().filter(|(_, r)| r.2 == n).map(|(id, _)| *id).collect();
        answering.sort_unstable();
        for id in answering {
            self.fail_call(id);
        }
        // Calls to it die with its connections: the process that starts next never sees them.
        self.queue.retain(|m| !matches!(m, Msg::Call { to, .. } if *to == n));
        // Its own calls die with it: no answer reaches the process that starts next.
        self.replies.retain(|_, r| r.0 != n);
        self.queue.retain(|m| !matches!(m, Msg::Answer { to, .. } if *to == n));
        let house = &mut self.houses[n];
        house.trader = None;
        let unsynced: Vec<Writes> = house.unsynced.drain(..).collect();
        if keep_unsynced {
            for w in unsynced {
                Self::make_durable(house, w);
            }
        }
    }

    /// Whether house `n` is up.
    pub fn is_up(&self, n: usize) -> bool {
        self.houses[n].trader.is_some()
    }

    fn make_durable(house: &mut House, w: Writes) {
        house.ledger.extend(w.entries);
        for (request, at) in w.requests {
            house.next_request = house.next_request.max(request.body().request_seq + 1);
            house.requests.insert(request.digest(), (request, at));
        }
    }

    /// Handles `input` at house `n` (if up), ends its turn and routes the effects.
    pub fn input(&mut self, n: usize, input: Input) {
        let now = self.now;
        let Some(trader) = self.houses[n].trader.as_mut() else { return };
        trader.handle(input, now);
        self.end_turn(n);
    }

    /// A tick at house `n`.
    pub fn tick(&mut self, n: usize) {
        self.input(n, Input::Tick);
    }

    fn end_turn(&mut self, n: usize) {
        let now = self.now;
        let Some(trader) = self.houses[n].trader.as_mut() else { return };
        if let Some(w) = trader.end_turn(now) {
            self.houses[n].unsynced.push_back(w);
        }
        self.route(n);
    }

    /// Makes house `n`'s applied writes durable (one flush) and acts on it.
    pub fn flush(&mut self, n: usize) {
        let house = &mut self.houses[n];
        let Some(last) = house.unsynced.back().map(|w| w.turn) else { return };
        let writes: Vec<Writes> = house.unsynced.drain(..).collect();
        for w in writes {
            Self::make_durable(house, w);
        }
        if let Some(trader) = house.trader.as_mut() {
            trader.durable(last, self.now);
        }
        self.route(n);
    }

    /// Carries out the effects of house `n`.
    fn route(&mut self, n: usize) {
        let Some(trader) = self.houses[n].trader.as_mut() else { return };
        for effect in trader.take_effects() {
            match effect {
                Effect::Publish { topic, frame } => {
                    for to in (0..self.houses.len()).filter(|&to| to != n) {
                        self.queue.push_back(Msg::Gossip { to, topic, frame: frame.clone() });
                    }
                }
                Effect::Call { call, maker, data } => {
                    let reply = self.next_reply;
                    self.next_reply += 1;
                    match (0..self.houses.len()).find(|&m| key(m).public() == maker) {
                        Some(to) => {
                            self.replies.insert(reply, (n, call, to));
                            self.queue.push_back(Msg::Call { to, reply, data });
                        }
                        None => self.queue.push_back(Msg::Answer { to: n, call, reply: Err("no such peer".into()) }),
                    }
                }
                Effect::Respond { reply, data } => {
                    if let Some((to, call, _)) = self.replies.remove(&reply.0) {
                        self.queue.push_back(Msg::Answer { to, call, reply: Ok(data) });
                    }
                }
                Effect::Forget(digests) => {
                    for d in digests {
                        self.houses[n].requests.remove(&d);
                    }
                }
                Effect::Strike(_)
                | Effect::Recorded(_)
                | Effect::Placed { .. }
                | Effect::Head(_)
                | Effect::Settled { .. } => {}
            }
        }
    }

    /// Delivers message `k` of the queue (or loses it: a lost call or answer fails the call,
    /// as a timeout would).
    pub fn deliver(&mut self, k: usize, lose: bool) {
        let Some(msg) = self.queue.remove(k) else { return };
        let now = self.now;
        match msg {
            Msg::Gossip { to, topic, frame } => {
                if lose {
                    return;
                }
                if let Some(trader) = self.houses[to].trader.as_mut() {
                    let _ = trader.judge_gossip(topic, &frame, now);
                    self.end_turn(to);
                }
            }
            Msg::Call { to, reply, data } => {
                if lose || !self.is_up(to) {
                    self.fail_call(reply);
                } else {
                    self.input(to, Input::Call { reply: ReplyTo(reply), data });
                }
            }
            Msg::Answer { to, call, reply } => {
                let reply = if lose { Err("lost".into()) } else { reply };
                self.input(to, Input::Answered { call, reply });
            }
        }
    }

    fn fail_call(&mut self, reply: u64) {
        if let Some((to, call, _)) = self.replies.remove(&reply) {
            self.queue.push_back(Msg::Answer { to, call, reply: Err("no answer".into()) });
        }
    }

    /// Moves the clock on by `ms`.
    pub fn advance(&mut self, ms: u64) {
        self.now = Timestamp(self.now.0 + ms);
    }

    /// Runs until quiet: restarts the crashed, then rounds of ticks (the clock moved past the
    /// request timeout), delivering and flushing everything, until nothing is pending and no
    /// round sends anything for a whole re-pricing period (backoffs and re-pricing included).
    /// Returns whether it got there within `rounds`.
    pub fn settle(&mut self, rounds: usize) -> bool {
        let step = config().request_timeout_ms + 1;
        let quiet_rounds_needed = config().reprice_ms / step + 1;
        let mut quiet_rounds = 0;
        for n in 0..self.houses.len() {
            if !self.is_up(n) {
                self.start(n);
            }
        }
        for _ in 0..rounds {
            let mut sent = false;
            for n in 0..self.houses.len() {
                self.flush(n);
            }
            while !self.queue.is_empty() {
                sent = true;
                self.deliver(0, false);
                for n in 0..self.houses.len() {
                    self.flush(n);
                }
            }
            let idle = self.houses.iter().all(|h| h.trader.as_ref().is_some_and(Trader::drained_or_idle));
            quiet_rounds = if idle && !sent { quiet_rounds + 1 } else { 0 };
            if quiet_rounds >= quiet_rounds_needed {
                return true;
            }
            self.advance(step);
            for n in 0..self.houses.len() {
                self.tick(n);
            }
        }
        false
    }

    /// The trades in house `n`'s durable ledger.
    pub fn trades(&self, n: usize) -> Vec<Signed<Trade>> {
        self.houses[n]
            .ledger
            .iter()
            .filter(|(k, _)| *k == EntryKind::TradeAgreed)
            .filter_map(|(_, p)| Signed::<Trade>::from_bytes(p).ok())
            .collect()
    }

    /// Energy house `n` traded on `side` in `interval`, by its durable ledger.
    pub fn traded(&self, n: usize, interval: IntervalId, side: Side) -> Wh {
        let me = self.key_of(n);
        Wh(self
            .trades(n)
            .iter()
            .filter(|t| own_side(&me, t) == side && t.body().request.body().interval == interval)
            .map(|t| t.body().request.body().energy.0)
            .sum())
    }

    /// The intervals open at the street's start whose price curves cross from the start (more
    /// than half of their trading window is over; `I + 1` and `I + 2` are open but cross only
    /// later).
    pub fn crossing() -> [IntervalId; 2] {
        [IntervalId(I.0 - 1), I]
    }
}

impl Trader {
    /// Whether nothing of this node waits: [`Trader::drained`], and no call of its out either
    /// (a query counts no request as pending).
    pub fn drained_or_idle(&self) -> bool {
        self.drained() && self.calls.is_empty()
    }
}
