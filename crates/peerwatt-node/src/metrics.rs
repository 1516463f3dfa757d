//! The node's own counters, typed: a field per counter, named once (the market's
//! [`peerwatt_market::counters!`]).
//! The trading core counts its own ([`peerwatt_market::TraderMetrics`]); the status file (and
//! an exporter later) takes both under the same names, each a valid Prometheus metric name.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use peerwatt_market::Topic;

peerwatt_market::counters! {
    /// Counters of the node around its trading core.
    pub struct NodeMetrics {
        /// Ledger writes, flushes or head signatures that failed.
        ledger_errors,
        /// State database writes that failed.
        state_errors,
        /// Persisted requests that could not be read at start.
        state_records_damaged,
        /// Turns whose writes were applied as one group.
        ledger_group_commits,
        /// Tree heads of this ledger signed.
        heads_signed,
        /// Tree heads of other members recorded.
        heads_witnessed,
        /// Peers banned for invalid messages.
        peers_banned,
        /// Gossip messages dropped for slow peers.
        gossip_send_dropped,
        /// Connections refused: beyond the connection limits (`[network] max_*`).
        connections_refused,
        /// Order frames that could not be published.
        orders_not_gossiped,
        /// Trade announcements that could not be published.
        announcements_failed,
        /// Tree heads that could not be published.
        heads_not_gossiped,
        /// Frames of meter statements that could not be published.
        statements_not_gossiped,
        /// Meter messages decoded.
        meter_readings,
        /// Meter messages refused.
        meter_readings_rejected,
        /// Energy this node sold in trades recorded since it started, Wh.
        traded_energy_sold_wh,
        /// Energy this node bought in trades recorded since it started, Wh.
        traded_energy_bought_wh,
    }
    extra {
        /// Gossip frames accepted, by topic (in [`Topic::ALL`]'s order).
        gossip_accepted: [u64; Topic::ALL.len()],
        /// Gossip frames refused, by reason (`GossipReject::name`).
        gossip_rejected: BTreeMap<&'static str, u64>,
    }
}

impl NodeMetrics {
    /// A frame on `topic` was accepted.
    pub fn accepted(&mut self, topic: Topic) {
        if let Some(n) = Topic::ALL.iter().position(|t| *t == topic).and_then(|i| self.gossip_accepted.get_mut(i)) {
            *n += 1;
        }
    }

    /// A frame was refused for `reason`.
    pub fn rejected(&mut self, reason: &'static str) {
        *self.gossip_rejected.entry(reason).or_insert(0) += 1;
    }

    /// Every counter with its name; the refusals only for reasons seen.
    pub fn each(&self, mut f: impl FnMut(&str, u64)) {
        for (topic, n) in Topic::ALL.iter().zip(self.gossip_accepted) {
            f(&format!("gossip_accepted_{}", topic.name()), n);
        }
        for (reason, n) in &self.gossip_rejected {
            f(&format!("gossip_rejected_{reason}"), *n);
        }
        self.each_plain(&mut f);
    }
}

/// Upper bounds of the duration buckets, microseconds (an `fsync` and a request alike).
pub const DURATION_BUCKETS_US: [u64; 9] = [500, 1_000, 2_500, 5_000, 10_000, 50_000, 250_000, 1_000_000, 5_000_000];

/// Durations as a histogram, counted without locks: shared between the task that times
/// something (a flush, a request) and the interface that shows it.
#[derive(Debug, Default)]
pub struct Durations {
    buckets: [AtomicU64; DURATION_BUCKETS_US.len()],
    sum_us: AtomicU64,
    count: AtomicU64,
}

impl Durations {
    /// One duration of `us` microseconds.
    pub fn observe(&self, us: u64) {
        if let Some(i) = DURATION_BUCKETS_US.iter().position(|b| us <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.sum_us.fetch_add(us, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// One duration, from `started` until now.
    pub fn since(&self, started: std::time::Instant) {
        self.observe(u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX));
    }

    /// The count in each bucket (not cumulative), the sum in microseconds, and the count.
    pub fn snapshot(&self) -> (Vec<u64>, u64, u64) {
        let counts = self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).collect();
        (counts, self.sum_us.load(Ordering::Relaxed), self.count.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_named_once_and_refusals_by_reason() {
        let mut m = NodeMetrics::default();
        m.accepted(Topic::Trades);
        m.rejected("replay");
        m.rejected("replay");
        let mut seen = BTreeMap::new();
        m.each(|name, n| {
            assert!(seen.insert(name.to_owned(), n).is_none(), "{name} named twice");
        });
        assert_eq!(seen.get("gossip_accepted_trades"), Some(&1));
        assert_eq!(seen.get("gossip_accepted_orders"), Some(&0));
        assert_eq!(seen.get("gossip_rejected_replay"), Some(&2));
        assert!(seen.keys().all(|k| k.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')));
    }
}
