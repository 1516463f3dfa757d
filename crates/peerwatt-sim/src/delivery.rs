//! Did the machine keep up with the clock? The market needs orders to reach the other members
//! well within the trading window, and the window is short in real time when the clock runs
//! fast. Summed from every node's status counters after the run, and judged so that the report
//! can say when its market figures are limited by this machine rather than by the market.

use peerwatt_market::trader::metrics::own_order_wait_name;
use peerwatt_node::Counters;
use peerwatt_node::status::{ORDER_AGE_BUCKETS_MS, order_age_counters};
use serde::Serialize;

use crate::household::STEP_SECS;
use crate::scenario::Scenario;

/// Orders must arrive, at the median, within this fraction of the trading window (one part in
/// this many). The curves of a buyer and a seller cross about halfway through the window, and
/// the request and its answer need time after that. Measured on 100 households
/// (docs/benchmarks.md): with the median arrival within a fortieth of the window, 99.5 %
/// efficiency; at about half the window, 94.9 %; at over three quarters (1,440× and 2,880×),
/// under 35 %. A quarter warns before the market suffers much; the buckets are coarse, and
/// their upper bounds are what is compared.
const WINDOW_SHARE: u64 = 4;

/// How the community's network kept up with the accelerated clock.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DeliveryCheck {
    /// Gossiped orders by real time from their maker's signature to their arrival, summed
    /// over every node: the bucket's upper bound in ms (`None`: over the last bound), count.
    pub order_ages: Vec<(Option<u64>, u64)>,
    /// The makers' own share of that: how long their orders waited from signing until durable
    /// and handed to the network, summed over every node, by the same buckets.
    pub own_order_waits: Vec<(Option<u64>, u64)>,
    /// The upper bound of the bucket holding the median arrival, real ms (`None`: no orders
    /// arrived, or the median is over the last bound).
    pub median_order_age_ms: Option<u64>,
    /// The trading window, simulated ms.
    pub trading_window_ms: u64,
    /// Gossip messages dropped because a peer's send queue was full.
    pub gossip_dropped: u64,
    /// Meter readings the nodes refused (late readings look implausible when the clock is fast).
    pub meter_readings_rejected: u64,
    /// Whether orders arrived in time for the market (see [`WINDOW_SHARE`]).
    pub kept_up: bool,
}

impl DeliveryCheck {
    /// Judges the run from the nodes' summed counters.
    pub fn from_counters(counters: &Counters, s: &Scenario) -> DeliveryCheck {
        let bounds = ORDER_AGE_BUCKETS_MS.iter().copied().map(Some).chain([None]);
        let order_ages: Vec<(Option<u64>, u64)> =
            bounds.zip(order_age_counters()).map(|(bound, name)| (bound, counters.get(&name))).collect();
        let median_order_age_ms = median_bucket(&order_ages);
        let window_ms =
            (u64::from(s.horizon_intervals) * STEP_SECS).saturating_sub(s.gate_closure_secs).saturating_mul(1_000);
        let kept_up = match median_order_age_ms {
            Some(age) => age.saturating_mul(u64::from(s.speed)).saturating_mul(WINDOW_SHARE) <= window_ms,
            // No gossiped orders at all (nobody had anything to trade) is not a late network.
            None => order_ages.iter().all(|(_, n)| *n == 0),
        };
        let waits = ORDER_AGE_BUCKETS_MS.iter().copied().map(Some).chain([None]);
        let own_order_waits =
            waits.enumerate().map(|(i, bound)| (bound, counters.get(&own_order_wait_name(i)))).collect();
        DeliveryCheck {
            order_ages,
            own_order_waits,
            median_order_age_ms,
            trading_window_ms: window_ms,
            gossip_dropped: counters.get("gossip_send_dropped"),
            meter_readings_rejected: counters.get("meter_readings_rejected"),
            kept_up,
        }
    }

    /// The terminal's lines: how fast orders arrived, and a warning when too late.
    pub fn render(&self, s: &Scenario) -> String {
        let median = match self.median_order_age_ms {
            Some(ms) => {
                let simulated_s = ms.saturating_mul(u64::from(s.speed)) / 1_000;
                let simulated = match simulated_s {
                    0..120 => format!("{simulated_s} simulated seconds"),
                    _ => format!("{} simulated minutes", simulated_s / 60),
                };
                format!("within {ms} ms at the median (about {simulated})")
            }
            None if self.kept_up => "none gossiped".to_owned(),
            None => format!("over {} ms at the median", ORDER_AGE_BUCKETS_MS.last().copied().unwrap_or(0)),
        };
        let mut out = format!(
            "  network: orders reached the other members {median}, of a {}-minute trading window; {} gossip messages dropped, {} meter readings refused\n",
            self.trading_window_ms / 60_000,
            self.gossip_dropped,
            self.meter_readings_rejected
        );
        if !self.kept_up {
            out.push_str(&format!(
                "  ! this machine could not keep up with {} households at speed {}: orders arrived late in the\n    \
                 trading window, so the trades and the market efficiency above are limited by the machine,\n    \
                 not by the market. A lower --speed gives the network time (orders should arrive within a\n    \
                 quarter of the trading window).\n",
                s.households, s.speed
            ));
        }
        out
    }
}

/// The upper bound of the bucket that holds the median of `buckets` (`None` if there is
/// nothing, or the median is in the open-ended last bucket).
fn median_bucket(buckets: &[(Option<u64>, u64)]) -> Option<u64> {
    let total: u64 = buckets.iter().map(|(_, n)| n).sum();
    if total == 0 {
        return None;
    }
    let mut seen = 0;
    for (bound, n) in buckets {
        seen += n;
        // The median is the ceil(total / 2)-th arrival.
        if seen * 2 >= total {
            return *bound;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use peerwatt_node::status::order_age_counter;

    fn counters(ages: &[(u64, u64)]) -> Counters {
        let mut c = Counters::default();
        for (ms, n) in ages {
            c.add(&order_age_counter(*ms), *n);
        }
        c
    }

    fn scenario(speed: u32) -> Scenario {
        // The default window: 4 intervals of 15 min, closing 60 s before: 59 minutes.
        Scenario { speed, ..Scenario::default() }
    }

    #[test]
    fn the_median_is_the_bucket_holding_the_middle_arrival() {
        assert_eq!(median_bucket(&[(Some(50), 3), (Some(200), 3), (None, 1)]), Some(200));
        assert_eq!(median_bucket(&[(Some(50), 4), (Some(200), 3), (None, 1)]), Some(50));
        assert_eq!(median_bucket(&[(Some(50), 1), (None, 5)]), None);
        assert_eq!(median_bucket(&[(Some(50), 0), (None, 0)]), None);
    }

    #[test]
    fn a_run_keeps_up_when_orders_arrive_within_a_quarter_of_the_window() {
        // 59 simulated minutes: a quarter is 885 s. At 1,440× the median bucket of 200 ms is
        // 288 simulated seconds (in time); 1,000 ms is 24 minutes (too late).
        let fast = DeliveryCheck::from_counters(&counters(&[(40, 10), (150, 30), (900, 5)]), &scenario(1_440));
        assert_eq!(fast.median_order_age_ms, Some(200));
        assert_eq!(fast.trading_window_ms, 59 * 60_000);
        assert!(fast.kept_up);
        assert!(!fast.render(&scenario(1_440)).contains("could not keep up"));

        let late = DeliveryCheck::from_counters(&counters(&[(40, 10), (900, 30)]), &scenario(1_440));
        assert_eq!(late.median_order_age_ms, Some(1_000));
        assert!(!late.kept_up);
        assert!(late.render(&scenario(1_440)).contains("could not keep up with 10 households at speed 1440"));
        // The same arrivals at 720× take 12 simulated minutes: in time. At 1,000× 16.7: late.
        assert!(DeliveryCheck::from_counters(&counters(&[(900, 30)]), &scenario(720)).kept_up);
        assert!(!DeliveryCheck::from_counters(&counters(&[(900, 30)]), &scenario(1_000)).kept_up);
    }

    #[test]
    fn no_orders_is_not_a_late_network_but_orders_all_over_the_last_bucket_are() {
        assert!(DeliveryCheck::from_counters(&Counters::default(), &scenario(1_440)).kept_up);
        let lost = DeliveryCheck::from_counters(&counters(&[(9_000, 3)]), &scenario(1_440));
        assert_eq!(lost.median_order_age_ms, None);
        assert!(!lost.kept_up);
        assert!(lost.render(&scenario(1_440)).contains("over 5000 ms"));
    }

    #[test]
    fn drops_and_refused_readings_are_carried_from_the_counters() {
        let mut c = counters(&[(40, 1)]);
        c.add("gossip_send_dropped", 7);
        c.add("meter_readings_rejected", 3);
        let d = DeliveryCheck::from_counters(&c, &scenario(1_440));
        assert_eq!((d.gossip_dropped, d.meter_readings_rejected), (7, 3));
    }
}
