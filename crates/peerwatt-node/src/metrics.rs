//! The node's own counters, typed: a field per counter, named once in [`NodeMetrics::each`].
//! The trading core counts its own ([`peerwatt_market::TraderMetrics`]); the status file (and
//! an exporter later) takes both under the same names, each a valid Prometheus metric name.

use std::collections::BTreeMap;

use peerwatt_market::Topic;

/// Counters of the node around its trading core.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeMetrics {
    /// Gossip frames accepted, by topic (in [`Topic::ALL`]'s order).
    pub gossip_accepted: [u64; 3],
    /// Gossip frames refused, by reason (`GossipReject::name`).
    pub gossip_rejected: BTreeMap<&'static str, u64>,
    /// Ledger writes, flushes or head signatures that failed.
    pub ledger_errors: u64,
    /// State database writes that failed.
    pub state_errors: u64,
    /// Persisted requests that could not be read at start.
    pub state_records_damaged: u64,
    /// Turns whose writes were applied as one group.
    pub ledger_group_commits: u64,
    /// Tree heads of this ledger signed.
    pub heads_signed: u64,
    /// Tree heads of other members recorded.
    pub heads_witnessed: u64,
    /// Peers banned for invalid messages.
    pub peers_banned: u64,
    /// Gossip messages dropped for slow peers.
    pub gossip_send_dropped: u64,
    /// Order frames that could not be published.
    pub orders_not_gossiped: u64,
    /// Trade announcements that could not be published.
    pub announcements_failed: u64,
    /// Tree heads that could not be published.
    pub heads_not_gossiped: u64,
    /// Meter messages decoded.
    pub meter_readings: u64,
    /// Meter messages refused.
    pub meter_readings_rejected: u64,
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
        let plain = [
            ("ledger_errors", self.ledger_errors),
            ("state_errors", self.state_errors),
            ("state_records_damaged", self.state_records_damaged),
            ("ledger_group_commits", self.ledger_group_commits),
            ("heads_signed", self.heads_signed),
            ("heads_witnessed", self.heads_witnessed),
            ("peers_banned", self.peers_banned),
            ("gossip_send_dropped", self.gossip_send_dropped),
            ("orders_not_gossiped", self.orders_not_gossiped),
            ("announcements_failed", self.announcements_failed),
            ("heads_not_gossiped", self.heads_not_gossiped),
            ("meter_readings", self.meter_readings),
            ("meter_readings_rejected", self.meter_readings_rejected),
        ];
        for (name, n) in plain {
            f(name, n);
        }
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
