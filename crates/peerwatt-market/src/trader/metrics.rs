//! The trading core's counters: typed fields, named once. The node exports them under these
//! names (`status.json` today; Prometheus needs no renaming: every name is a valid metric name).

/// Upper bounds of the buckets that count the age of gossiped orders on arrival, real ms.
pub const ORDER_AGE_BUCKETS_MS: [u64; 5] = [50, 200, 1_000, 2_000, 5_000];

/// The name of bucket `index` (0 ..= [`ORDER_AGE_BUCKETS_MS`]`.len()`; the last one counts
/// everything over the last bound) of the age counters called `prefix`.
fn age_bucket_name(prefix: &str, index: usize) -> String {
    match ORDER_AGE_BUCKETS_MS.get(index) {
        Some(limit) => format!("{prefix}_le_{limit}ms"),
        None => format!("{prefix}_over_{}ms", ORDER_AGE_BUCKETS_MS.last().copied().unwrap_or(0)),
    }
}

/// The name of the order-age bucket `index`: gossiped orders by their age on arrival.
pub fn order_age_name(index: usize) -> String {
    age_bucket_name("gossip_order_age", index)
}

/// The name of bucket `index` of the time this node's own orders waited from signing to
/// being durable and handed to the network (same bounds as [`ORDER_AGE_BUCKETS_MS`]).
pub fn own_order_wait_name(index: usize) -> String {
    age_bucket_name("own_order_wait", index)
}

/// The bucket of an order that arrived `real_ms` after it was signed.
pub fn order_age_bucket(real_ms: u64) -> usize {
    ORDER_AGE_BUCKETS_MS.iter().position(|&limit| real_ms <= limit).unwrap_or(ORDER_AGE_BUCKETS_MS.len())
}

/// Declares a counter struct and the names of its plain counters in one place, so a counter
/// cannot be added without a name or named twice: each plain field (a `u64`) is named by its
/// identifier in `each_plain`; fields after `extra` (buckets, counters by key) are named by
/// the struct's own `each`. The node's counters use it too.
#[macro_export]
macro_rules! counters {
    (
        $(#[$doc:meta])* pub struct $name:ident {
            $($(#[$fdoc:meta])* $field:ident,)*
        }
        extra {
            $($(#[$edoc:meta])* $efield:ident: $ety:ty,)*
        }
    ) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Default, PartialEq, Eq)]
        pub struct $name {
            $($(#[$fdoc])* pub $field: u64,)*
            $($(#[$edoc])* pub $efield: $ety,)*
        }

        impl $name {
            /// Every plain counter with its name (counters never counted included).
            pub fn each_plain(&self, f: &mut impl FnMut(&str, u64)) {
                $(f(stringify!($field), self.$field);)*
            }
        }
    };
}

counters! {
    /// What the trading core counted.
    pub struct TraderMetrics {
        /// Orders signed and published by this node.
        orders_published,
        /// Cancellations (orders of energy 0) signed by this node.
        orders_cancelled,
        /// Trade requests received as maker.
        trade_requests_received,
        /// Trade requests refused as maker.
        trade_requests_refused,
        /// Trade requests this node sent as taker.
        trade_requests_sent,
        /// Trade requests whose call got no answer (asked about later).
        trade_requests_unanswered,
        /// Trade requests of this node its makers refused.
        trade_requests_refused_by_maker,
        /// Trade requests signed but never sent (they could not be persisted).
        trade_requests_not_sent,
        /// Queries sent about requests without an answer.
        queries_sent,
        /// Queries answered as maker.
        queries_answered,
        /// Queries of this node answered by makers.
        queries_answered_by_makers,
        /// Answers to this node's requests that did not verify or did not match.
        answers_invalid,
        /// Trades recorded as maker.
        trades_as_maker,
        /// Trades recorded as taker.
        trades_as_taker,
        /// Trade calls that did not decode.
        trade_calls_malformed,
        /// Closed meter intervals seen.
        meter_intervals,
        /// Meter statements of this node made durable (corrections included).
        statements_made,
        /// Corrections among them: an interval stated again with other figures.
        statements_corrected,
        /// Members' statements taken that superseded an earlier revision.
        statements_superseded,
        /// Members' statements refused as a second, different statement of a revision held.
        statements_equivocated,
        /// Counterparties left out of this node's statements (more than a statement lists).
        statements_contracts_left_out,
        /// Settlements of this node made durable (redos included).
        settlements_made,
        /// Redos among them: an interval settled again because its statements changed.
        settlements_redone,
        /// Settlements signed while a counterparty's statement was missing (provisional).
        settlements_provisional,
        /// Intervals that could not be settled (see the log).
        settlements_failed,
        /// Turns whose writes could not be recorded (ledger or state database).
        turns_refused,
    }
    extra {
        /// Gossiped order frames by the age of their first order on arrival (see
        /// [`ORDER_AGE_BUCKETS_MS`]).
        order_age: [u64; ORDER_AGE_BUCKETS_MS.len() + 1],
        /// This node's own orders by how long they waited from signing until durable and
        /// handed to the network (the part of an order's age on arrival that is the maker's
        /// own).
        own_order_wait: [u64; ORDER_AGE_BUCKETS_MS.len() + 1],
    }
}

impl TraderMetrics {
    /// Every counter with its name (counters never counted included).
    pub fn each(&self, mut f: impl FnMut(&str, u64)) {
        self.each_plain(&mut f);
        for (i, n) in self.order_age.iter().enumerate() {
            f(&order_age_name(i), *n);
        }
        for (i, n) in self.own_order_wait.iter().enumerate() {
            f(&own_order_wait_name(i), *n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_counter_has_one_name_and_the_age_buckets_follow_the_bounds() {
        let mut names = Vec::new();
        TraderMetrics::default().each(|name, _| names.push(name.to_owned()));
        let mut unique = names.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), names.len(), "a name is used twice: {names:?}");
        assert!(names.contains(&"gossip_order_age_le_50ms".to_owned()));
        assert!(names.contains(&"gossip_order_age_over_5000ms".to_owned()));
        assert_eq!(order_age_bucket(0), 0);
        assert_eq!(order_age_bucket(50), 0);
        assert_eq!(order_age_bucket(51), 1);
        assert_eq!(order_age_bucket(5_001), ORDER_AGE_BUCKETS_MS.len());
    }
}
