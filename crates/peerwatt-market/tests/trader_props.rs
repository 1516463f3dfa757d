//! Random interleavings of two to five trading cores on a simulated network: messages delivered
//! in any order or lost, ticks, slow flushes, clocks moving on, crashes that lose or keep what
//! was not flushed. After the street settles, every invariant of the market must hold:
//!
//! - no energy sold or bought twice: no node trades more in an interval than its forecast (the
//!   user's limits are the defaults: no reserve, no cap);
//! - every agreed trade is in its maker's ledger and its taker's ledger, exactly once each;
//! - nothing is left pending: every request got a final answer.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test panics to fail

use std::collections::HashMap;

use peerwatt_core::{Hash, Side, Signed, Trade};
use peerwatt_market::trader::own_side;
use peerwatt_market::trader::testkit::Street;
use proptest::prelude::*;

/// One step of an interleaving.
#[derive(Debug, Clone)]
enum Step {
    /// Deliver the message at this position of the queue (modulo its length), or lose it.
    Deliver { at: usize, lose: bool },
    /// A tick at a node.
    Tick(usize),
    /// A node flushes what it applied.
    Flush(usize),
    /// The clock moves on by this many ms.
    Advance(u64),
    /// A node crashes, keeping or losing what it did not flush, and starts again.
    Crash { node: usize, keep: bool },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        8 => (any::<usize>(), prop::bool::weighted(0.05)).prop_map(|(at, lose)| Step::Deliver { at, lose }),
        3 => (0usize..5).prop_map(Step::Tick),
        3 => (0usize..5).prop_map(Step::Flush),
        2 => (0u64..20_000).prop_map(Step::Advance),
        1 => ((0usize..5), any::<bool>()).prop_map(|(node, keep)| Step::Crash { node, keep }),
    ]
}

fn street_and_steps() -> impl Strategy<Value = (Vec<i64>, Vec<Step>)> {
    let net = prop::collection::vec(prop_oneof![-64i64..=-1, 1i64..=64], 2..=5);
    (net, prop::collection::vec(step(), 0..300))
}

fn run(street: &mut Street, steps: &[Step]) {
    let n = street.houses.len();
    for s in steps {
        match *s {
            Step::Deliver { at, lose } if !street.queue.is_empty() => {
                let k = at % street.queue.len();
                street.deliver(k, lose);
            }
            Step::Deliver { .. } => {}
            Step::Tick(i) => street.tick(i % n),
            Step::Flush(i) => street.flush(i % n),
            Step::Advance(ms) => street.advance(ms),
            Step::Crash { node, keep } => {
                street.crash(node % n, keep);
                street.start(node % n);
            }
        }
    }
}

/// The market's invariants over the settled street.
fn check(street: &Street, net: &[i64]) -> Result<(), TestCaseError> {
    let mut per_trade: HashMap<Hash, Vec<usize>> = HashMap::new();
    let mut trades: HashMap<Hash, Signed<Trade>> = HashMap::new();
    for (n, &net_export) in net.iter().enumerate() {
        let me = street.key_of(n);
        let mut energy: HashMap<(u64, Side), u64> = HashMap::new();
        for t in street.trades(n) {
            let terms = t.body().request.body();
            let side = own_side(&me, &t);
            *energy.entry((terms.interval.0, side)).or_default() += terms.energy.0;
            per_trade.entry(t.digest()).or_default().push(n);
            trades.insert(t.digest(), t);
        }
        let (sell_cap, buy_cap) = (net_export.max(0).unsigned_abs(), (-net_export).max(0).unsigned_abs());
        for ((interval, side), wh) in energy {
            let cap = if side == Side::Sell { sell_cap } else { buy_cap };
            prop_assert!(wh <= cap, "house {n} traded {wh} Wh on {side:?} in {interval}, more than its forecast {cap}");
        }
    }
    for (digest, holders) in &per_trade {
        let t = &trades[digest];
        let key_index = |k| (0..net.len()).find(|&i| street.key_of(i) == k).unwrap();
        let maker = key_index(*t.signer());
        let taker = key_index(*t.body().request.signer());
        let mut expected = vec![maker, taker];
        expected.sort_unstable();
        let mut got = holders.clone();
        got.sort_unstable();
        prop_assert_eq!(got, expected, "trade {} is not exactly once in each party's ledger", digest);
    }
    for (n, house) in street.houses.iter().enumerate() {
        prop_assert!(house.requests.is_empty(), "house {} keeps {} persisted requests", n, house.requests.len());
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn any_interleaving_settles_with_every_trade_once_and_nothing_oversold((net, steps) in street_and_steps()) {
        let mut street = Street::new(&net);
        run(&mut street, &steps);
        prop_assert!(street.settle(400), "the street did not settle");
        check(&street, &net)?;
    }
}
