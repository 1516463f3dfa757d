//! What a running node reports about itself: counters, and `status.json`, which the node
//! rewrites every second (atomically) and `peerwatt status` reads.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// Upper bounds of the buckets that count the age of gossiped orders on arrival, real ms.
pub const ORDER_AGE_BUCKETS_MS: [u64; 5] = [50, 200, 1_000, 2_000, 5_000];

/// The counter for a gossiped order that arrived `real_ms` after its maker signed it.
pub fn order_age_counter(real_ms: u64) -> String {
    match ORDER_AGE_BUCKETS_MS.iter().find(|&&limit| real_ms <= limit) {
        Some(limit) => format!("gossip_order_age_le_{limit}ms"),
        None => format!("gossip_order_age_over_{}ms", ORDER_AGE_BUCKETS_MS.last().copied().unwrap_or(0)),
    }
}

/// Every order-age counter, youngest bucket first.
pub fn order_age_counters() -> Vec<String> {
    let over = ORDER_AGE_BUCKETS_MS.last().copied().unwrap_or(0) + 1;
    ORDER_AGE_BUCKETS_MS.iter().copied().chain([over]).map(order_age_counter).collect()
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
    /// The node's open orders.
    pub orders: Vec<OrderStatus>,
    /// The node's trades since midnight UTC.
    pub trades_today: Vec<TradeStatus>,
    /// The ledger head.
    pub ledger: LedgerStatus,
    /// Trade requests sent whose answers have not arrived (asked about again until they do).
    #[serde(default)]
    pub requests_pending: u64,
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
