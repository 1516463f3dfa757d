//! The maker's side of a `Requests` call from a real libp2p peer: every request of the batch
//! is judged on its own and answered in order, and only the good one becomes a trade.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test panics to fail

use std::sync::Arc;
use std::time::Duration;

use peerwatt_core::{
    Answer, Clock, Decode, Encode, IntervalId, NodeKey, Price, Side, Signed, SystemClock, TradeCall, TradeReply,
    TradeRequest, Wh,
};
use peerwatt_node::community_file::load_certificate;
use peerwatt_node::{NodeConfig, Status};
use peerwatt_testkit::community_of;

fn key_of(cfg: &NodeConfig) -> NodeKey {
    NodeKey::load(&cfg.resolve(&cfg.node.key_file)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_request_of_a_batch_is_judged_on_its_own_and_answered_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let (community, configs) = community_of(dir.path(), 2).unwrap();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let maker = peerwatt_node::start(&configs[0], clock.clone()).await.unwrap();
    let interval = IntervalId(community.interval.interval_at(clock.now()).0 + 3);
    let order = maker.place_order(interval, Side::Sell, Wh(100), Price(100_000)).await.unwrap();

    // The taker is a bare libp2p peer with member 1's key and certificate.
    let taker_key = key_of(&configs[1]);
    let section = configs[1].community.as_ref().unwrap();
    let cert = load_certificate(&configs[1].resolve(&section.certificate)).unwrap();
    let maker_key = key_of(&configs[0]).public();
    let maker_address = configs[0].network.listen[0].clone() + "/p2p/" + &maker_key.peer_id();
    let net_cfg = peerwatt_net::NetConfig {
        listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
        bootstrap: vec![maker_address.parse().unwrap()],
        ..peerwatt_net::NetConfig::default()
    };
    let (net, _events) = peerwatt_net::spawn(peerwatt_net::keypair_of(&taker_key).unwrap(), net_cfg).await.unwrap();
    let maker_peer: peerwatt_net::PeerId = maker_key.peer_id().parse().unwrap();
    let connected = || async { net.peers().await.unwrap().contains(&maker_peer) };
    peerwatt_testkit::wait::until_async("connected to the maker", Duration::from_secs(20), connected).await;

    let terms = |seq: u64, energy: u64, price: u64| TradeRequest {
        community: community.id,
        order,
        maker: maker_key,
        maker_side: Side::Sell,
        interval,
        energy: Wh(energy),
        price: Price(price),
        request_seq: seq,
        created_at: clock.now(),
    };
    let requests = vec![
        Signed::sign(&taker_key, terms(1, 40, 100_000)), // good
        Signed::sign(&taker_key, terms(2, 40, 90_000)),  // not the order's price
        Signed::sign(&NodeKey::from_seed(&[66; 32]), terms(3, 10, 100_000)), // not the certificate's member
        Signed::sign(&taker_key, terms(4, 70, 100_000)), // more than is left
        Signed::sign(&taker_key, terms(5, 60, 100_000)), // good: exactly what is left
    ];
    let call = TradeCall::Requests { cert, requests: requests.clone() };
    let reply = net.request(maker_peer, call.to_bytes()).await.unwrap();
    let TradeReply::Answers(answers) = TradeReply::from_bytes(&reply).unwrap() else { panic!("not answers") };
    assert_eq!(answers.len(), requests.len());
    let agreed: Vec<bool> = answers.iter().map(|a| matches!(a, Answer::Agreed(_))).collect();
    assert_eq!(agreed, [true, false, false, false, true], "{answers:?}");
    for (answer, request) in answers.iter().zip(&requests) {
        if let Answer::Agreed(trade) = answer {
            assert_eq!(trade.body().request, *request);
            trade.verify().unwrap();
        }
    }

    // The same batch again is answered from the ledger: the same trades, no new ones.
    let again = net.request(maker_peer, call.to_bytes()).await.unwrap();
    let TradeReply::Answers(again) = TradeReply::from_bytes(&again).unwrap() else { panic!("not answers") };
    assert_eq!(again[0], answers[0]);
    assert_eq!(again[4], answers[4]);

    maker.shutdown().await;
    let status = Status::read(&configs[0].status_file()).unwrap();
    assert_eq!(status.counters.get("trades_as_maker"), 2, "{status:?}");
    assert_eq!(status.trades_today.iter().map(|t| t.energy_wh).sum::<u64>(), 100);
}
