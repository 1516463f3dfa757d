//! The node's seams: the same node over another store and another network. Two nodes whose
//! ledgers are memory stores trade over the in-process network, and both ledgers hold the
//! trade, signed by both, with nothing of a ledger on disk.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test panics to fail

use std::sync::Arc;
use std::time::Duration;

use peerwatt_core::{Clock, IntervalId, Price, Side, Signed, SystemClock, Wh};
use peerwatt_ledger::{LedgerReader, MemoryStore};
use peerwatt_net::{Hub, InProcessConfig};
use peerwatt_node::{NodeEvent, Shared, start_with_store};
use peerwatt_testkit::community_of;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_trade_on_memory_ledgers_over_the_in_process_network() {
    let dir = tempfile::tempdir().unwrap();
    let (community, configs) = community_of(dir.path(), 2).unwrap();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let shared = Shared { network: Some(Hub::new(InProcessConfig::default())), ..Shared::default() };
    let stores = [Arc::new(MemoryStore::new()), Arc::new(MemoryStore::new())];
    let maker = start_with_store(&configs[0], clock.clone(), shared.clone(), stores[0].clone()).await.unwrap();
    let taker = start_with_store(&configs[1], clock.clone(), shared, stores[1].clone()).await.unwrap();

    let interval = IntervalId(community.interval.interval_at(clock.now()).0 + 3);
    maker.place_order(interval, Side::Sell, Wh(500), Price(100_000)).await.unwrap();
    // The offer reaches the taker after the network's latency: bid until the taker trades.
    let mut events = taker.subscribe();
    let traded = async {
        loop {
            taker.place_order(interval, Side::Buy, Wh(200), Price(150_000)).await.unwrap();
            if let Ok(Ok(NodeEvent::TradeRecorded { energy, price, .. })) =
                tokio::time::timeout(Duration::from_millis(200), events.recv()).await
            {
                return (energy, price);
            }
        }
    };
    let (energy, price) = tokio::time::timeout(Duration::from_secs(20), traded).await.expect("the nodes never traded");
    assert_eq!((energy, price), (Wh(200), Price(100_000)), "the taker buys what it bid for at the maker's price");
    tokio::join!(maker.shutdown(), taker.shutdown());

    let trades: Vec<_> = stores.iter().map(|s| LedgerReader::new(s.clone()).unwrap().trades().unwrap()).collect();
    assert_eq!(trades[0].len(), 1, "the maker's ledger: {:?}", trades[0]);
    assert_eq!(trades[0], trades[1], "the same trade, byte for byte, in both ledgers");
    assert_eq!(trades[0].iter().map(Signed::digest).count(), 1);
    for cfg in &configs {
        assert!(
            !cfg.resolve(&cfg.node.ledger_dir).exists(),
            "a ledger on disk: the node must use the store it was given"
        );
    }
}
