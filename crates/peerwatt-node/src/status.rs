//! What a running node reports about itself: counters, and `status.json`, which the node
//! rewrites every second (atomically) and `peerwatt status` reads.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use peerwatt_core::{Community, IntervalId, IntervalLength, Side, Timestamp, Wh};
use peerwatt_ledger::{Ledger, Store};
use peerwatt_market::{Recorded, Trader};

use crate::metrics::NodeMetrics;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

pub use peerwatt_market::trader::metrics::ORDER_AGE_BUCKETS_MS;
use peerwatt_market::trader::metrics::{order_age_bucket, order_age_name};

/// The counter for a gossiped order that arrived `real_ms` after its maker signed it.
pub fn order_age_counter(real_ms: u64) -> String {
    order_age_name(order_age_bucket(real_ms))
}

/// Every order-age counter, youngest bucket first.
pub fn order_age_counters() -> Vec<String> {
    (0..=ORDER_AGE_BUCKETS_MS.len()).map(order_age_name).collect()
}

/// Named event counters (messages accepted and rejected by reason, orders, trades, …).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Counters(BTreeMap<String, u64>);

impl Counters {
    /// Adds one to `name`.
    pub fn inc(&mut self, name: &str) {
        self.add(name, 1);
    }

    /// Adds `n` to `name`.
    pub fn add(&mut self, name: &str, n: u64) {
        match self.0.get_mut(name) {
            Some(v) => *v += n,
            None => {
                self.0.insert(name.to_owned(), n);
            }
        }
    }

    /// The value of `name` (0 if never counted).
    pub fn get(&self, name: &str) -> u64 {
        self.0.get(name).copied().unwrap_or(0)
    }

    /// Every counter, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, u64)> {
        self.0.iter().map(|(k, v)| (k.as_str(), *v))
    }
}

/// One of the node's own open orders.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OrderStatus {
    /// The delivery interval's start (ms since the epoch).
    pub interval_start: u64,
    /// `sell` or `buy`.
    pub side: String,
    /// The order's energy, Wh.
    pub energy_wh: u64,
    /// What is still free to trade, Wh.
    pub available_wh: u64,
    /// The price now, on the order's signed curve, micro-currency per kWh.
    pub price: u64,
    /// The worst price the order accepts, where its curve ends at gate closure (absent in
    /// the status of an older node: 0).
    #[serde(default)]
    pub limit_price: u64,
}

/// One of the node's trades.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TradeStatus {
    /// The delivery interval's start (ms since the epoch).
    pub interval_start: u64,
    /// `sold` or `bought`.
    pub direction: String,
    /// Energy, Wh.
    pub energy_wh: u64,
    /// Price, micro-currency per kWh.
    pub price: u64,
    /// The other party's public id.
    pub counterparty: String,
    /// The other party's name, as its membership certificate gives it (absent if unknown).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counterparty_name: Option<String>,
    /// `maker` or `taker`: which side of the handshake this node was.
    pub role: String,
    /// When the maker accepted it (ms since the epoch).
    pub accepted_at: u64,
}

/// The node's ledger head.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LedgerStatus {
    /// Entries.
    pub entries: u64,
    /// The Merkle root over them (hex).
    pub root: String,
    /// The latest tree head the node signed (what its peers witness), if it signed one.
    #[serde(default)]
    pub signed_head: Option<SignedHeadStatus>,
}

/// A signed tree head, as the status shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SignedHeadStatus {
    /// Entries it covers.
    pub size: u64,
    /// Their Merkle root (hex).
    pub root: String,
    /// When the node signed it (ms since the epoch).
    pub time: u64,
}

/// Everything `status.json` holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Status {
    /// When this was written (ms since the epoch).
    pub updated_at: u64,
    /// Whether the node was running when it wrote this (false: written at shutdown).
    pub running: bool,
    /// The node's process id.
    pub pid: u32,
    /// The node's public id.
    pub peer_id: String,
    /// The node's name (its membership certificate's).
    #[serde(default)]
    pub name: String,
    /// The community's name.
    pub community: String,
    /// Where the node listens.
    pub listen: Vec<String>,
    /// Connected peers.
    pub peers: Vec<String>,
    /// The meter connection, in words.
    pub meter: String,
    /// Whether the node trades, and if not, why, in words.
    #[serde(default)]
    pub market: String,
    /// Every reason the node is not trading now (empty while it trades).
    #[serde(default)]
    pub not_trading: Vec<String>,
    /// The members this node has seen (their orders or requests), by name.
    #[serde(default)]
    pub members: Vec<MemberStatus>,
    /// The market's clock.
    #[serde(default)]
    pub interval: IntervalStatus,
    /// The grid's tariffs, the bounds of every local price.
    #[serde(default)]
    pub tariffs: TariffStatus,
    /// What the meters measured last.
    #[serde(default)]
    pub power: PowerStatus,
    /// Today's trades (since midnight UTC) summed: as contracted, before settlement.
    #[serde(default)]
    pub today: TodayStatus,
    /// What the node's settlements say: this month's and all its ledger's.
    #[serde(default)]
    pub settled: SettledStatus,
    /// The node's open orders.
    pub orders: Vec<OrderStatus>,
    /// The node's trades since midnight UTC.
    pub trades_today: Vec<TradeStatus>,
    /// The ledger head.
    pub ledger: LedgerStatus,
    /// Trade requests sent whose answers have not arrived (asked about again until they do).
    #[serde(default)]
    pub requests_pending: u64,
    /// The homeowner's price limits in force (absent in the status of an older node).
    #[serde(default)]
    pub limits: crate::config::PriceLimits,
    /// When the grid meter's last reading arrived (ms since the epoch), if one did.
    #[serde(default)]
    pub last_reading_at: Option<u64>,
    /// Every counter.
    #[schema(value_type = std::collections::BTreeMap<String, u64>)]
    pub counters: Counters,
}

/// A member of the community, as the node knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MemberStatus {
    /// Its public id.
    pub id: String,
    /// Its name, from its membership certificate.
    pub name: String,
    /// Whether this node is connected to it.
    pub connected: bool,
}

/// The market's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct IntervalStatus {
    /// The settlement interval's length, ms.
    pub length_ms: u64,
    /// When the current interval started (ms since the epoch).
    pub current_start: u64,
    /// How long before its start an interval's trading closes, ms.
    pub gate_closure_ms: u64,
}

/// The community's grid tariffs, micro-currency per kWh.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TariffStatus {
    /// What the grid charges for import.
    pub retail: u64,
    /// What the grid pays for export.
    pub feed_in: u64,
}

/// The meters' latest power readings, W.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PowerStatus {
    /// At the grid connection: positive importing, negative exporting.
    pub grid_w: Option<i64>,
    /// When the grid meter's power was read (ms since the epoch).
    pub grid_at: Option<u64>,
    /// The PV's production.
    pub pv_w: Option<i64>,
    /// When the PV's power was read.
    pub pv_at: Option<u64>,
}

/// Today's trades summed (as contracted: settlement decides what was delivered).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TodayStatus {
    /// Energy bought from neighbours, Wh.
    pub bought_wh: u64,
    /// Energy sold to neighbours, Wh.
    pub sold_wh: u64,
    /// Paid for it, micro-currency.
    pub spent: i64,
    /// Paid for what was sold.
    pub earned: i64,
    /// Against the grid's tariffs: what buying at retail would have cost more, and selling at
    /// feed-in would have paid less.
    pub savings: i64,
}

/// What the node's settlements say (the honest figures: delivered and shared energy).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SettledStatus {
    /// Intervals settled in all.
    pub intervals: u64,
    /// Whether every settlement in the ledger is counted (after a start on a long ledger the
    /// figures catch up over a few seconds).
    pub complete: bool,
    /// This month (UTC) so far.
    pub month: SettledLine,
    /// Everything in the ledger.
    pub all: SettledLine,
}

/// Ledger entries the status reads for settlements per write, at most.
const TALLY_CHUNK: u64 = 20_000;

/// A statement line, as the status carries it (the same fields as `GET /statement`'s).
pub type SettledLine = peerwatt_market::bill::Line;

/// A status older than this (the node rewrites it every second) means the node is not running.
pub const LIVE_FOR_MS: u64 = 10_000;

impl Status {
    /// Whether the node that wrote it runs at `now_ms`: it said so, recently.
    pub fn is_live(&self, now_ms: u64) -> bool {
        self.running && now_ms.saturating_sub(self.updated_at) < LIVE_FOR_MS
    }

    /// Writes `path` atomically (a temporary file, then a rename: never half-written).
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let tmp = path.with_extension("json.tmp");
        let bytes = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        std::fs::write(&tmp, bytes)?;
        std::fs::rename(&tmp, path)
    }

    /// Reads `path`.
    pub fn read(path: &Path) -> std::io::Result<Status> {
        let bytes = std::fs::read(path)?;
        serde_json::from_slice(&bytes).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
    }
}

/// What the node reports about itself between writes of `status.json`, and when it wrote
/// last.
#[derive(Debug)]
pub(crate) struct Reporter {
    path: PathBuf,
    last: Option<Timestamp>,
    listen: Vec<String>,
    meter: String,
    /// This node's trades since midnight (as shown: public ids encoded once).
    trades: Vec<(Timestamp, TradeStatus)>,
    /// Where each status written is also published (the HTTP interface reads it there).
    published: watch::Sender<Option<Arc<Status>>>,
    /// When the grid meter's last reading arrived.
    last_reading: Option<Timestamp>,
    /// The meters' latest powers.
    power: PowerStatus,
    /// Whether the grid meter has gone quiet.
    meter_stale: bool,
    /// The settlements read so far, and how many ledger entries were read for them.
    tally: (peerwatt_market::bill::Tally, u64),
    /// The last failure to read them (said once).
    tally_error: Option<String>,
    /// The latest signed head: read from the ledger once (reading it reads every head), then
    /// told by the node as it signs.
    head: Option<Option<SignedHeadStatus>>,
    /// When the status was last written, in real time (a clock that stands still, as the
    /// demo's after its day, must not freeze the status).
    last_real: Option<std::time::Instant>,
    /// Members' libp2p peer ids (to say which are connected), worked out once each.
    peer_ids: std::collections::HashMap<peerwatt_core::PublicKey, String>,
}

/// The parts of a running node a status is made of.
pub(crate) struct NodeView<'a, S: Store> {
    /// The trading core.
    pub trader: &'a Trader,
    /// The ledger.
    pub ledger: &'a Ledger<S>,
    /// The community.
    pub community: &'a Community,
    /// Connected peers.
    pub peers: Vec<String>,
    /// The node's own counters (the core's are added).
    pub metrics: &'a NodeMetrics,
}

impl Reporter {
    /// A reporter writing to `path`; the meter is "not configured" until said otherwise.
    pub fn new(path: PathBuf) -> Reporter {
        Reporter {
            path,
            last: None,
            listen: Vec::new(),
            meter: "not configured".into(),
            trades: Vec::new(),
            published: watch::channel(None).0,
            last_reading: None,
            power: PowerStatus::default(),
            meter_stale: false,
            tally: Default::default(),
            tally_error: None,
            head: None,
            last_real: None,
            peer_ids: Default::default(),
        }
    }

    /// The latest status, as each write publishes it (`None` before the first).
    pub fn subscribe(&self) -> watch::Receiver<Option<Arc<Status>>> {
        self.published.subscribe()
    }

    /// The node listens at `addr`.
    pub fn listening(&mut self, addr: String) {
        self.listen.push(addr);
    }

    /// A meter reading arrived.
    pub fn reading(&mut self, reading: &peerwatt_meter::Reading) {
        let at = Some(reading.time.0);
        match reading.role {
            peerwatt_meter::Role::Grid => {
                self.last_reading = Some(reading.time);
                if let Some(w) = reading.grid_power {
                    (self.power.grid_w, self.power.grid_at) = (Some(w.0), at);
                }
            }
            _ => {
                if let Some(w) = reading.pv_power {
                    (self.power.pv_w, self.power.pv_at) = (Some(w.0), at);
                }
            }
        }
    }

    /// The grid meter went quiet (`true`) or reports again.
    pub fn meter_stale(&mut self, stale: bool) {
        self.meter_stale = stale;
    }

    /// The meter's state, in words.
    pub fn meter(&mut self, state: String) {
        self.meter = state;
    }

    /// One of the node's trades is durable.
    pub fn trade(&mut self, trade: &Recorded, length: IntervalLength) {
        self.trades.push((trade.accepted_at, trade_status(trade, length)));
    }

    /// Every reason the node does not trade at `now` (none while it trades): its meter, the
    /// trading core's state, its peers, and limits no neighbour can meet.
    fn not_trading<S: Store>(&self, node: &NodeView<'_, S>, now: Timestamp) -> Vec<String> {
        let mut why = Vec::new();
        if self.meter == "not configured" {
            why.push("no meter: add a [meter] section to node.toml (docs/meters.md)".to_owned());
        } else if self.meter.starts_with("down") {
            why.push(format!("the meter's broker is {}", self.meter));
        } else if self.meter_stale {
            why.push("the meter has gone quiet: no trading on old readings".to_owned());
        }
        match node.trader.trading_state(now) {
            peerwatt_market::TradingState::Trading { .. } => {}
            other => why.push(
                other
                    .to_string()
                    .trim_start_matches("not trading yet: ")
                    .trim_start_matches("not trading: ")
                    .to_owned(),
            ),
        }
        if node.peers.is_empty() {
            why.push("no peers connected: orders reach nobody".to_owned());
        }
        let limits = node.trader.limits();
        let terms = node.community.terms_at(node.community.interval.interval_at(now));
        let (retail, feed_in) = (terms.retail, terms.feed_in);
        if limits.min_sell_price.is_some_and(|p| p > retail) {
            why.push(format!(
                "your minimum sell price is above the retail tariff ({retail}): no neighbour buys above it"
            ));
        }
        if limits.max_buy_price.is_some_and(|p| p < feed_in) {
            why.push(format!(
                "your maximum buy price is below the feed-in tariff ({feed_in}): no neighbour sells below it"
            ));
        }
        why
    }

    /// The market in words: the trading core's state, or why the node does not trade.
    fn market_state<S: Store>(node: &NodeView<'_, S>, not_trading: &[String], now: Timestamp) -> String {
        if not_trading.is_empty() {
            return node.trader.trading_state(now).to_string();
        }
        format!("not trading: {}", not_trading.join("; "))
    }

    /// The members seen, by name, and whether each is connected.
    fn members<S: Store>(&mut self, node: &NodeView<'_, S>) -> Vec<MemberStatus> {
        let mut members: Vec<MemberStatus> = node
            .trader
            .members()
            .map(|(key, name)| {
                let peer = self
                    .peer_ids
                    .entry(*key)
                    .or_insert_with(|| peerwatt_net::peer_id_of(key).map(|p| p.to_string()).unwrap_or_default());
                MemberStatus { id: key.to_string(), name: name.to_owned(), connected: node.peers.contains(peer) }
            })
            .collect();
        members.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.id.cmp(&b.id)));
        members
    }

    /// Reads the settlements added to the ledger since the last write: at most
    /// [`TALLY_CHUNK`] entries a write, so that a node started on a ledger of years catches up
    /// over a few seconds instead of stalling its actor.
    fn read_settlements<S: Store>(&mut self, ledger: &Ledger<S>) {
        let (tally, seen) = &mut self.tally;
        let Ok(len) = ledger.len() else { return };
        if len <= *seen {
            return;
        }
        let to = len.min(seen.saturating_add(TALLY_CHUNK));
        match ledger.reader().settlements_between(*seen, to) {
            Ok(new) => {
                for s in &new {
                    if let Err(e) = tally.add(s.body()) {
                        tracing::warn!(error = %e, "a settlement in the ledger does not add up; left out of the status");
                    }
                }
                *seen = to;
                self.tally_error = None;
            }
            Err(e) => {
                // Once per kind of failure, not every second.
                let said = e.to_string();
                if self.tally_error.as_ref() != Some(&said) {
                    tracing::warn!(error = %said, "cannot read the ledger's settlements for the status");
                    self.tally_error = Some(said);
                }
            }
        }
    }

    /// The node signed a tree head.
    pub fn head_signed(&mut self, head: &peerwatt_core::Signed<peerwatt_core::TreeHead>) {
        let b = head.body();
        self.head = Some(Some(SignedHeadStatus { size: b.size, root: b.root.to_hex(), time: b.time.0 }));
    }

    /// The latest signed head (read from the ledger the first time).
    fn signed_head<S: Store>(&mut self, ledger: &Ledger<S>) -> Option<SignedHeadStatus> {
        if self.head.is_none() {
            let head = match ledger.reader().latest_head() {
                Ok(head) => head.map(|h| SignedHeadStatus {
                    size: h.body().size,
                    root: h.body().root.to_hex(),
                    time: h.body().time.0,
                }),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the ledger's signed heads for the status");
                    None
                }
            };
            self.head = Some(head);
        }
        self.head.clone().flatten()
    }

    /// What the settlements say: this month's and all.
    fn settled(&self, community: &Community, now: Timestamp, ledger_len: u64) -> SettledStatus {
        let tally = &self.tally.0;
        let length = community.interval;
        let month_start = peerwatt_market::bill::month_start(now.0);
        let first = IntervalId(month_start.div_ceil(length.millis()));
        SettledStatus {
            intervals: tally.len() as u64,
            complete: self.tally.1 >= ledger_len,
            month: tally.total(first, IntervalId(u64::MAX)),
            all: tally.total(IntervalId(0), IntervalId(u64::MAX)),
        }
    }

    /// Whether a write is due at `now`: once per `period_ms` of the node's clock, or
    /// `real_every` of real time (whichever comes first).
    pub fn due(&self, now: Timestamp, period_ms: u64, real_every: std::time::Duration) -> bool {
        self.last.is_none_or(|last| now.0.saturating_sub(last.0) >= period_ms)
            || self.last_real.is_none_or(|last| last.elapsed() >= real_every)
    }

    /// Writes `status.json` (a failure is logged: the status is not worth stopping for).
    pub fn write<S: Store>(&mut self, now: Timestamp, running: bool, node: NodeView<'_, S>) {
        self.last = Some(now);
        self.last_real = Some(std::time::Instant::now());
        let day_start = now.0 - now.0 % 86_400_000;
        self.trades.retain(|(accepted_at, _)| accepted_at.0 >= day_start);
        let not_trading = self.not_trading(&node, now);
        let market = Self::market_state(&node, &not_trading, now);
        let members = self.members(&node);
        self.read_settlements(node.ledger);
        let trades_today: Vec<TradeStatus> = self
            .trades
            .iter()
            .map(|(_, t)| {
                let mut t = t.clone();
                t.counterparty_name = members.iter().find(|m| m.id == t.counterparty).map(|m| m.name.clone());
                t
            })
            .collect();
        let community = node.community;
        let ledger_len = node.ledger.len().unwrap_or(0);
        let terms_now = community.terms_at(community.interval.interval_at(now));
        let signed_head = self.signed_head(node.ledger);
        let status = Status {
            updated_at: now.0,
            running,
            pid: std::process::id(),
            peer_id: node.trader.me().to_string(),
            name: node.trader.name().to_owned(),
            community: community.name.clone(),
            listen: self.listen.clone(),
            peers: node.peers,
            meter: self.meter.clone(),
            market,
            not_trading,
            members,
            interval: IntervalStatus {
                length_ms: community.interval.millis(),
                current_start: community.interval.start(community.interval.interval_at(now)).0,
                gate_closure_ms: community.gate_closure.as_millis() as u64,
            },
            tariffs: TariffStatus { retail: terms_now.retail.0, feed_in: terms_now.feed_in.0 },
            power: self.power,
            today: today(&trades_today, community),
            settled: self.settled(community, now, ledger_len),
            orders: orders(node.trader, community, now),
            trades_today,
            ledger: LedgerStatus { entries: ledger_len, root: node.ledger.root().to_hex(), signed_head },
            requests_pending: node.trader.pending_requests() as u64,
            limits: crate::config::PriceLimits::of(&node.trader.limits()),
            last_reading_at: self.last_reading.map(|t| t.0),
            counters: counters_of(node.metrics, node.trader),
        };
        if let Err(e) = status.write(&self.path) {
            tracing::warn!(error = %e, path = %self.path.display(), "cannot write the status file");
        }
        self.published.send_replace(Some(Arc::new(status)));
    }
}

/// The node's counters and the trading core's, by name (those never counted left out).
fn counters_of(metrics: &NodeMetrics, trader: &Trader) -> Counters {
    let mut all = Counters::default();
    let mut add = |name: &str, n: u64| {
        if n > 0 {
            all.add(name, n);
        }
    };
    metrics.each(&mut add);
    trader.metrics().each(&mut add);
    all
}

fn side_name(side: Side) -> &'static str {
    match side {
        Side::Sell => "sell",
        Side::Buy => "buy",
    }
}

/// The node's open orders at `now`.
fn orders(trader: &Trader, community: &Community, now: Timestamp) -> Vec<OrderStatus> {
    trader
        .open_intervals(now)
        .into_iter()
        .flat_map(|i| [(i, Side::Sell), (i, Side::Buy)])
        .filter_map(|(i, side)| {
            let (o, available) = trader.own_order(i, side)?;
            Some(OrderStatus {
                interval_start: community.interval.start(i).0,
                side: side_name(side).into(),
                energy_wh: o.body().energy.0,
                available_wh: available.0,
                price: o.body().price_at(now).0,
                limit_price: o.body().limit_price.0,
            })
        })
        .collect()
}

/// Today's trades summed, with their savings against the grid's tariffs in force for each
/// trade's interval.
fn today(trades: &[TradeStatus], community: &Community) -> TodayStatus {
    let money = |wh: u64, price: u64| Wh(wh).cost_at(peerwatt_core::Price(price)).map(|m| m.0).unwrap_or(i64::MAX);
    let mut t = TodayStatus::default();
    for trade in trades {
        let terms = community.terms_at(community.interval.interval_at(Timestamp(trade.interval_start)));
        let paid = money(trade.energy_wh, trade.price);
        if trade.direction == "sold" {
            t.sold_wh += trade.energy_wh;
            t.earned = t.earned.saturating_add(paid);
            t.savings = t.savings.saturating_add(paid.saturating_sub(money(trade.energy_wh, terms.feed_in.0)));
        } else {
            t.bought_wh += trade.energy_wh;
            t.spent = t.spent.saturating_add(paid);
            t.savings = t.savings.saturating_add(money(trade.energy_wh, terms.retail.0).saturating_sub(paid));
        }
    }
    t
}

fn trade_status(t: &Recorded, length: IntervalLength) -> TradeStatus {
    TradeStatus {
        interval_start: length.start(t.interval).0,
        direction: if t.side == Side::Sell { "sold" } else { "bought" }.into(),
        energy_wh: t.energy.0,
        price: t.price.0,
        counterparty: t.counterparty.to_string(),
        counterparty_name: None,
        role: if t.as_maker { "maker" } else { "taker" }.into(),
        accepted_at: t.accepted_at.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_order_age_falls_in_the_first_bucket_that_holds_it() {
        assert_eq!(order_age_counter(0), "gossip_order_age_le_50ms");
        assert_eq!(order_age_counter(50), "gossip_order_age_le_50ms");
        assert_eq!(order_age_counter(51), "gossip_order_age_le_200ms");
        assert_eq!(order_age_counter(5_001), "gossip_order_age_over_5000ms");
        let all = order_age_counters();
        assert_eq!(all.len(), 6);
        assert_eq!(all.first().map(String::as_str), Some("gossip_order_age_le_50ms"));
        assert_eq!(all.last().map(String::as_str), Some("gossip_order_age_over_5000ms"));
    }
}
