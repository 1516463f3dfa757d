//! Stopping a node in the middle of trading (SIGTERM, `RunningNode::shutdown`) leaves every
//! trade in both parties' ledgers: two real nodes on loopback, real ledgers, a burst of
//! requests in flight when one of them is told to stop.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test panics to fail

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use peerwatt_core::{Clock, Hash, IntervalId, Price, Side, Signed, SystemClock, Wh};
use peerwatt_ledger::LedgerReader;
use peerwatt_node::{NodeConfig, RunningNode, Status};
use peerwatt_testkit::community_of;
use tokio::task::JoinSet;

/// A maker with a large offer and a taker, connected, and an interval open for trading.
async fn maker_and_taker(dir: &std::path::Path) -> (RunningNode, RunningNode, Vec<NodeConfig>, IntervalId) {
    let (community, configs) = community_of(dir, 2).unwrap();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let maker = peerwatt_node::start(&configs[0], clock.clone()).await.unwrap();
    let taker = peerwatt_node::start(&configs[1], clock.clone()).await.unwrap();
    let interval = IntervalId(community.interval.interval_at(clock.now()).0 + 3);
    if peerwatt_testkit::trade_once(&maker, &taker, interval, Wh(1)).await {
        return (maker, taker, configs, interval);
    }
    panic!("the nodes never traded");
}

/// `n` crossing 1 Wh bids placed at once by the taker: each sends a trade request.
fn bids(taker: &Arc<RunningNode>, interval: IntervalId, n: usize) -> JoinSet<()> {
    let mut placing = JoinSet::new();
    for _ in 0..n {
        let taker = taker.clone();
        placing.spawn(async move {
            // A bid placed after the taker began to stop is refused; that is part of the test.
            let _ = taker.place_order(interval, Side::Buy, Wh(1), Price(150_000)).await;
        });
    }
    placing
}

/// The trades in a node's ledger, by digest.
fn trades_in(cfg: &NodeConfig) -> BTreeSet<Hash> {
    let reader = LedgerReader::open_dir(&cfg.resolve(&cfg.node.ledger_dir)).unwrap();
    reader.trades().unwrap().iter().map(Signed::digest).collect()
}

async fn stop(node: Arc<RunningNode>) {
    Arc::try_unwrap(node).expect("no other handle").shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taker_stopped_with_requests_in_flight_waits_for_their_answers() {
    let dir = tempfile::tempdir().unwrap();
    let (maker, taker, configs, interval) = maker_and_taker(dir.path()).await;
    let taker = Arc::new(taker);
    let mut placing = bids(&taker, interval, 300);
    while placing.join_next().await.is_some() {}
    // Every bid is durable and its request queued or sent; most are unanswered yet.
    stop(taker).await;
    maker.shutdown().await;

    let (at_maker, at_taker) = (trades_in(&configs[0]), trades_in(&configs[1]));
    assert_eq!(at_maker, at_taker, "the two ledgers hold different trades");
    assert!(at_taker.len() > 100, "only {} trades", at_taker.len());
    let status = Status::read(&configs[1].status_file()).unwrap();
    assert!(!status.running);
    assert_eq!(status.requests_pending, 0, "the taker stopped with unanswered requests");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_maker_stopped_while_requests_arrive_withdraws_its_offer_and_delivers_every_agreed_trade() {
    let dir = tempfile::tempdir().unwrap();
    let (maker, taker, configs, interval) = maker_and_taker(dir.path()).await;
    let taker = Arc::new(taker);
    let mut placing = bids(&taker, interval, 300);
    tokio::time::sleep(Duration::from_millis(20)).await;
    maker.shutdown().await; // while bids are still being placed and answered
    while placing.join_next().await.is_some() {}
    stop(taker).await;

    let (at_maker, at_taker) = (trades_in(&configs[0]), trades_in(&configs[1]));
    assert_eq!(at_maker, at_taker, "the two ledgers hold different trades");
    let status = Status::read(&configs[0].status_file()).unwrap();
    assert!(!status.running);
    // The maker withdrew its offer when it began to stop.
    assert!(status.counters.get("orders_cancelled") >= 1, "{status:?}");
}
