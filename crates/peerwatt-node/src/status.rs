//! What a running node reports about itself: counters, and `status.json`, which the node
//! rewrites every second (atomically) and `peerwatt status` reads.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use peerwatt_core::{Community, IntervalLength, Side, Timestamp};
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
    /// `maker` or `taker`: which side of the handshake this node was.
    pub role: String,
    /// When the maker accepted it (ms since the epoch).
    pub accepted_at: u64,
}

/// The node's ledger head.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerStatus {
    /// Entries.
    pub entries: u64,
    /// The Merkle root over them (hex).
    pub root: String,
}

/// Everything `status.json` holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// When this was written (ms since the epoch).
    pub updated_at: u64,
    /// Whether the node was running when it wrote this (false: written at shutdown).
    pub running: bool,
    /// The node's process id.
    pub pid: u32,
    /// The node's public id.
    pub peer_id: String,
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
    pub counters: Counters,
}

impl Status {
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

    /// A grid meter reading arrived at `time`.
    pub fn reading(&mut self, time: Timestamp) {
        self.last_reading = Some(time);
    }

    /// The meter's state, in words.
    pub fn meter(&mut self, state: String) {
        self.meter = state;
    }

    /// One of the node's trades is durable.
    pub fn trade(&mut self, trade: &Recorded, length: IntervalLength) {
        self.trades.push((trade.accepted_at, trade_status(trade, length)));
    }

    /// Whether the node trades, and if not, why: without a meter it cannot, without peers its
    /// orders reach nobody; else as the trading core says.
    fn market_state<S: Store>(&self, node: &NodeView<'_, S>, now: Timestamp) -> String {
        if self.meter == "not configured" {
            return "not trading: no meter (add a [meter] section to node.toml, docs/meters.md)".into();
        }
        let state = node.trader.trading_state(now).to_string();
        if node.peers.is_empty() {
            return format!("{state}; no peers connected: orders reach nobody");
        }
        state
    }

    /// Whether a write is due at `now`: once per `period` of the node's clock.
    pub fn due(&self, now: Timestamp, period_ms: u64) -> bool {
        self.last.is_none_or(|last| now.0.saturating_sub(last.0) >= period_ms)
    }

    /// Writes `status.json` (a failure is logged: the status is not worth stopping for).
    pub fn write<S: Store>(&mut self, now: Timestamp, running: bool, node: NodeView<'_, S>) {
        self.last = Some(now);
        let day_start = now.0 - now.0 % 86_400_000;
        self.trades.retain(|(accepted_at, _)| accepted_at.0 >= day_start);
        let market = self.market_state(&node, now);
        let status = Status {
            updated_at: now.0,
            running,
            pid: std::process::id(),
            peer_id: node.trader.me().to_string(),
            community: node.community.name.clone(),
            listen: self.listen.clone(),
            peers: node.peers,
            meter: self.meter.clone(),
            market,
            orders: orders(node.trader, node.community, now),
            trades_today: self.trades.iter().map(|(_, t)| t.clone()).collect(),
            ledger: LedgerStatus { entries: node.ledger.len().unwrap_or(0), root: node.ledger.root().to_hex() },
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

fn trade_status(t: &Recorded, length: IntervalLength) -> TradeStatus {
    TradeStatus {
        interval_start: length.start(t.interval).0,
        direction: if t.side == Side::Sell { "sold" } else { "bought" }.into(),
        energy_wh: t.energy.0,
        price: t.price.0,
        counterparty: t.counterparty.to_string(),
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
