//! Hostile peers (real libp2p nodes built here; the frames hold a real membership certificate)
//! relay every kind of bad gossip and then a flood. Each kind is refused and counted by the
//! honest nodes, they keep trading, and the flooding peer ends up banned.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test panics to fail

use std::time::Duration;

use peerwatt_core::*;
use peerwatt_net::{Event, NetConfig, NetHandle, keypair_of};
use peerwatt_testkit::households::*;

fn frame(cert: &Signed<MembershipCert>, message: Vec<u8>) -> Vec<u8> {
    GossipFrame::single(cert.clone(), message).to_bytes()
}

fn cert(signer: &NodeKey, community: &Community, member: PublicKey, until: Timestamp) -> Signed<MembershipCert> {
    Signed::sign(
        signer,
        MembershipCert {
            community: community.id,
            member,
            name: "mallory".into(),
            zone: "feeder-1".into(),
            valid_from: Timestamp(0),
            valid_until: until,
        },
    )
}

fn order(key: &NodeKey, community: &Community, interval: IntervalId, seq: u64, now: Timestamp) -> Signed<Order> {
    Signed::sign(
        key,
        Order {
            community: community.id,
            side: Side::Sell,
            interval,
            energy: Wh(10),
            start_price: Price(RETAIL),
            limit_price: Price(RETAIL),
            seq,
            created_at: now,
            expires_at: community.trading_window(interval).1,
            rules: community.terms_at(interval).version,
        },
    )
}

/// A hostile relay with `key`, connected to the honest node at `honest`; it judges nothing it
/// receives (it is not the one being tested). The task ends `true` once the honest node
/// disconnects it.
async fn relay(
    key: &NodeKey,
    honest: &str,
    topics: &peerwatt_node::Topics,
    honest_peer: peerwatt_net::PeerId,
) -> (NetHandle, tokio::task::JoinHandle<bool>) {
    let cfg = NetConfig {
        listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
        bootstrap: vec![honest.parse().unwrap()],
        topics: topics.all(),
        heartbeat: Duration::from_millis(200),
        discovery_interval: Duration::from_millis(1_000),
        ..NetConfig::default()
    };
    let (net, mut events) = peerwatt_net::spawn(keypair_of(key).unwrap(), cfg).await.unwrap();
    let judge = net.clone();
    let disconnected = tokio::spawn(async move {
        let mut connected = false;
        while let Some(e) = events.recv().await {
            match e {
                Event::Gossip { id, source, .. } => {
                    let _ = judge.report(id, source, peerwatt_net::Verdict::Ignore).await;
                }
                Event::PeerConnected(p) if p == honest_peer => connected = true,
                Event::PeerDisconnected(p) if p == honest_peer && connected => return true,
                _ => {}
            }
        }
        false
    });
    (net, disconnected)
}

async fn publish(net: &NetHandle, topic: &str, data: Vec<u8>) {
    for _ in 0..200 {
        if net.publish(topic, data.clone()).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the hostile peer could not publish");
}

#[test]
fn a_hostile_member_is_refused_counted_and_banned_while_honest_nodes_trade() {
    let mut hood = Neighbourhood::new(env!("CARGO_BIN_EXE_peerwatt"), &[-36_000, 18_000]);
    hood.start_meters();
    hood.start_all();
    let community = hood.community.clone();
    let admin = NodeKey::load(&hood.admin.join("admin.key")).unwrap();
    let mallory = NodeKey::from_seed(&[66; 32]);
    let outsider = NodeKey::from_seed(&[67; 32]);
    let rogue_admin = NodeKey::from_seed(&[68; 32]);
    let good_cert = cert(&admin, &community, mallory.public(), Timestamp(u64::MAX));
    let expired_cert = cert(&admin, &community, mallory.public(), Timestamp(now_ms() - 1_000));
    let rogue_cert = cert(&rogue_admin, &community, outsider.public(), Timestamp(u64::MAX));
    let topics = peerwatt_node::Topics::of(&community);
    let honest = hood.households[0].address();
    let honest_peer: peerwatt_net::PeerId = hood.households[0].id.parse().unwrap();
    let honest_status = &hood.households[0];

    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let banned = runtime.block_on(async {
        // Hostile relays: real libp2p nodes that send what they are given. Each kind of bad
        // frame is relayed by one of them, two at most each: three rejects in a short while
        // graylist a relay (crates/peerwatt-net/src/scoring.rs), and a graylisted relay is cut
        // off before it could show the rest.
        let (first, _) = relay(&mallory, &honest, &topics, honest_peer).await;
        let (second, _) = relay(&NodeKey::from_seed(&[69; 32]), &honest, &topics, honest_peer).await;
        let (third, _) = relay(&NodeKey::from_seed(&[70; 32]), &honest, &topics, honest_peer).await;
        let (flooder, disconnected) = relay(&NodeKey::from_seed(&[71; 32]), &honest, &topics, honest_peer).await;
        // Wait for trading to be under way: the honest nodes see each other and trade.
        honest_status.wait_for_status("a trade", Duration::from_secs(60), |st| !st.trades_today.is_empty());
        let now = Timestamp(now_ms());
        let open = IntervalId(community.interval.interval_at(now).0 + 2);
        let o = &topics.orders;
        // One valid order first (so the replay below is a replay), then each kind of bad one.
        publish(&first, o, frame(&good_cert, order(&mallory, &community, open, 100, now).to_bytes())).await;
        let forged =
            order(&mallory, &community, open, 101, now).with_signature_for_tests(Signature::from_bytes(&[9; 64]));
        publish(&first, o, frame(&good_cert, forged.to_bytes())).await;
        publish(&first, o, frame(&good_cert, order(&outsider, &community, open, 1, now).to_bytes())).await;
        publish(&second, o, frame(&rogue_cert, order(&outsider, &community, open, 2, now).to_bytes())).await;
        publish(&second, o, frame(&expired_cert, order(&mallory, &community, open, 102, now).to_bytes())).await;
        publish(&third, o, frame(&good_cert, order(&mallory, &community, open, 50, now).to_bytes())).await;
        publish(&third, o, vec![7u8; 5_000]).await;
        let past = IntervalId(open.0 - 1_000);
        let future = IntervalId(open.0 + 1_000);
        publish(&third, o, frame(&good_cert, order(&mallory, &community, past, 103, now).to_bytes())).await;
        publish(&flooder, o, frame(&good_cert, order(&mallory, &community, future, 104, now).to_bytes())).await;
        // The flood: distinct garbage (identical payloads would be dropped as duplicates).
        for n in 0..500u32 {
            let _ = flooder.publish(o, format!("garbage {n}").into_bytes()).await;
        }
        let banned =
            tokio::time::timeout(Duration::from_secs(15), disconnected).await.is_ok_and(|r| r.unwrap_or(false));
        // Re-dialling a node that banned the flooder does not get it back in.
        let _ = flooder.dial(honest.parse().unwrap()).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(!flooder.peers().await.unwrap().contains(&honest_peer), "the banned peer is connected again");
        banned
    });
    assert!(banned, "the hostile peer was never disconnected");
    let flood_ended = now_ms();
    // Honest trading goes on.
    hood.households[0].wait_for_status("a trade after the attack", Duration::from_secs(60), |st| {
        st.trades_today.iter().any(|t| t.accepted_at > flood_ended)
    });
    hood.stop_all();

    let st = hood.households[0].status();
    for reason in [
        "bad_signature",
        "not_member",
        "not_admitted",
        "certificate_not_valid",
        "replay",
        "oversized",
        "interval_out_of_window",
        "malformed",
    ] {
        assert!(st.counters.get(&format!("gossip_rejected_{reason}")) >= 1, "{reason} not counted: {:?}", st.counters);
    }
    assert!(st.counters.get("peers_banned") >= 1, "{:?}", st.counters);
    eprintln!("honest node counters: {:?}", st.counters);
    let out = check_ledgers(&hood.households);
    let after = out.trades.values().filter(|t| t.body().accepted_at.0 > flood_ended).count();
    assert!(after > 0, "no trade after the attack; {} in all", out.trades.len());
}
