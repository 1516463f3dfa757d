//! Real libp2p swarms on loopback: discovery from one bootstrap peer (peer exchange), gossip that is forwarded
//! only once accepted, and request-response.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test panics to fail

use std::time::Duration;

use peerwatt_core::NodeKey;
use peerwatt_net::{Event, NetConfig, NetHandle, PeerId, Verdict, keypair_of, spawn};
use tokio::sync::mpsc;

const TOPIC: &str = "peerwatt/test/orders/1";

fn config(bootstrap: Vec<peerwatt_net::Multiaddr>) -> NetConfig {
    config_on("/ip4/127.0.0.1/tcp/0", bootstrap)
}

fn config_on(listen: &str, bootstrap: Vec<peerwatt_net::Multiaddr>) -> NetConfig {
    NetConfig {
        listen: vec![listen.parse().unwrap()],
        bootstrap,
        topics: vec![TOPIC.into()],
        heartbeat: Duration::from_millis(100),
        discovery_interval: Duration::from_millis(300),
        ..NetConfig::default()
    }
}

async fn node(seed: u8, bootstrap: Vec<peerwatt_net::Multiaddr>) -> (NetHandle, mpsc::Receiver<Event>) {
    node_with(seed, config(bootstrap)).await
}

async fn node_with(seed: u8, cfg: NetConfig) -> (NetHandle, mpsc::Receiver<Event>) {
    let key = NodeKey::from_seed(&[seed; 32]);
    let (handle, mut events) = spawn(keypair_of(&key).unwrap(), cfg).await.unwrap();
    assert_eq!(handle.peer_id().to_string(), key.public().peer_id(), "one key: the PeerId names the signer");
    // Wait until it listens.
    loop {
        if let Event::Listening(_) = next(&mut events).await {
            break;
        }
    }
    (handle, events)
}

async fn next(events: &mut mpsc::Receiver<Event>) -> Event {
    tokio::time::timeout(Duration::from_secs(20), events.recv())
        .await
        .expect("timed out waiting for a network event")
        .expect("network stopped")
}

async fn address_of(h: &NetHandle) -> peerwatt_net::Multiaddr {
    let addr = h.listen_addrs().await.unwrap().into_iter().next().unwrap();
    format!("{addr}/p2p/{}", h.peer_id()).parse().unwrap()
}

/// Waits until `h` is connected to `peer` (polling).
async fn until_connected(h: &NetHandle, peer: PeerId) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !h.peers().await.unwrap().contains(&peer) {
        assert!(tokio::time::Instant::now() < deadline, "never connected to {peer}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Publishes, retrying while the mesh forms.
async fn publish(h: &NetHandle, data: &[u8]) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        match h.publish(TOPIC, data.to_vec()).await {
            Ok(()) => return,
            Err(e) if tokio::time::Instant::now() < deadline => {
                tracing::debug!("retrying publish: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("could not publish: {e}"),
        }
    }
}

/// The next gossip message, judging nothing.
async fn gossip(events: &mut mpsc::Receiver<Event>) -> (peerwatt_net::MessageId, PeerId, Vec<u8>) {
    loop {
        if let Event::Gossip { id, source, data, .. } = next(events).await {
            return (id, source, data.to_vec());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_validation_forwarding_and_requests() {
    let (a, mut a_events) = node(1, vec![]).await;
    let a_addr = address_of(&a).await;
    let (b, _b_events) = node(2, vec![a_addr.clone()]).await;
    let (c, mut c_events) = node(3, vec![a_addr]).await;

    // C only knew A; peer exchange (A knows B from identify) leads it to B.
    until_connected(&c, b.peer_id()).await;
    until_connected(&b, c.peer_id()).await;

    // Take B out of C's direct reach, so B's gossip must travel through A. A ban holds even
    // though the address book keeps offering the address.
    c.ban(b.peer_id()).await.unwrap();
    b.ban(c.peer_id()).await.unwrap();

    // A rejects the first message: it must not be forwarded to C.
    publish(&b, b"forged order").await;
    let (id, source, data) = gossip(&mut a_events).await;
    assert_eq!((data.as_slice(), source), (&b"forged order"[..], b.peer_id()));
    a.report(id, source, Verdict::Reject).await.unwrap();

    // A accepts the second: it reaches C, which judges it too.
    publish(&b, b"valid order").await;
    let (id, source, data) = gossip(&mut a_events).await;
    assert_eq!(data, b"valid order");
    a.report(id, source, Verdict::Accept).await.unwrap();
    let (id, source, data) = gossip(&mut c_events).await;
    assert_eq!(data, b"valid order", "C never saw the rejected message");
    c.report(id, source, Verdict::Accept).await.unwrap();

    // Request-response: B asks A, A answers.
    let asker = b.clone();
    let a_peer = a.peer_id();
    let response = tokio::spawn(async move { asker.request(a_peer, b"trade request".to_vec()).await });
    let (peer, data, channel) = loop {
        if let Event::Request { peer, data, channel } = next(&mut a_events).await {
            break (peer, data, channel);
        }
    };
    assert_eq!((peer, data.as_slice()), (b.peer_id(), &b"trade request"[..]));
    a.respond(channel, b"trade".to_vec()).await.unwrap();
    assert_eq!(response.await.unwrap().unwrap(), b"trade");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_carries_gossip_and_requests() {
    let quic = "/ip4/127.0.0.1/udp/0/quic-v1";
    let (a, mut a_events) = node_with(11, config_on(quic, vec![])).await;
    let a_addr = address_of(&a).await;
    assert!(a_addr.to_string().contains("/quic-v1/"), "{a_addr}");
    let (b, _b_events) = node_with(12, config_on(quic, vec![a_addr])).await;
    until_connected(&b, a.peer_id()).await;

    publish(&b, b"over quic").await;
    let (id, source, data) = gossip(&mut a_events).await;
    assert_eq!(data, b"over quic");
    a.report(id, source, Verdict::Accept).await.unwrap();

    let a_peer = a.peer_id();
    let response = tokio::spawn(async move { b.request(a_peer, b"ping".to_vec()).await });
    let channel = loop {
        if let Event::Request { channel, .. } = next(&mut a_events).await {
            break channel;
        }
    };
    a.respond(channel, b"pong".to_vec()).await.unwrap();
    assert_eq!(response.await.unwrap().unwrap(), b"pong");
}

/// The owner may wait on a command (here: publishing) while the network waits for it to take
/// an event from a full queue. Commands are still served then, so neither waits forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_are_served_while_the_event_queue_is_full() {
    let (a, _a_events) = node(1, vec![]).await;
    let a_addr = address_of(&a).await;
    let (b, mut b_events) = node_with(2, NetConfig { event_queue: 2, ..config(vec![a_addr]) }).await;
    until_connected(&a, b.peer_id()).await;
    // B reads nothing while A gossips more than B's queue holds.
    for n in 0..20u32 {
        publish(&a, &n.to_be_bytes()).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    for n in 100..110u32 {
        tokio::time::timeout(Duration::from_secs(10), b.publish(TOPIC, n.to_be_bytes().to_vec()))
            .await
            .expect("a command was not served while the event queue was full")
            .unwrap();
    }
    // Nothing was dropped: all 20 messages arrive once B reads again.
    let mut got = std::collections::HashSet::new();
    while got.len() < 20 {
        let (id, source, data) = gossip(&mut b_events).await;
        b.report(id, source, Verdict::Accept).await.unwrap();
        got.insert(data);
    }
}

/// A node whose bootstrap peer is not up yet when it starts keeps trying it, and connects
/// once the peer listens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bootstrap_peer_that_starts_later_is_reached() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let late_key = NodeKey::from_seed(&[21; 32]);
    let late_id = late_key.public().peer_id();
    let bootstrap: peerwatt_net::Multiaddr = format!("/ip4/127.0.0.1/tcp/{port}/p2p/{late_id}").parse().unwrap();
    let (early, _early_events) = node(22, vec![bootstrap]).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(early.peers().await.unwrap().is_empty());
    let (late, _late_events) = node_with(21, config_on(&format!("/ip4/127.0.0.1/tcp/{port}"), vec![])).await;
    until_connected(&early, late.peer_id()).await;
}

/// Waits until `peer`'s score at `h` satisfies `ok`; returns it.
async fn score_until(h: &NetHandle, peer: PeerId, what: &str, ok: impl Fn(f64) -> bool) -> f64 {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let score = h.peer_score(peer).await.unwrap();
        if let Some(s) = score.filter(|s| ok(*s)) {
            return s;
        }
        assert!(tokio::time::Instant::now() < deadline, "{what}: score {score:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_flooding_invalid_frames_is_graylisted_and_an_honest_late_one_is_not() {
    use peerwatt_net::scoring::GRAYLIST_THRESHOLD;
    let (a, mut a_events) = node(11, vec![]).await;
    let a_addr = address_of(&a).await;
    let (liar, _liar_events) = node(12, vec![a_addr.clone()]).await;
    let (honest, _honest_events) = node(13, vec![a_addr]).await;
    until_connected(&a, liar.peer_id()).await;
    until_connected(&a, honest.peer_id()).await;

    // The honest peer's gossip: every other message late (ignored, at no cost), the rest
    // valid. Its first deliveries earn it credit, and ignoring costs it none.
    for i in 0..20u8 {
        publish(&honest, &[b'h', i]).await;
        let (id, source, _) = loop {
            let (id, source, data) = gossip(&mut a_events).await;
            if source == honest.peer_id() {
                break (id, source, data);
            }
            a.report(id, source, Verdict::Ignore).await.unwrap();
        };
        a.report(id, source, if i % 2 == 0 { Verdict::Ignore } else { Verdict::Accept }).await.unwrap();
    }
    let honest_score = score_until(&a, honest.peer_id(), "the honest peer earns credit", |s| s > 0.0).await;

    // The liar floods frames no honest node sends: A rejects each, and soon ignores the liar.
    let mut rejected = 0;
    while a.peer_score(liar.peer_id()).await.unwrap().is_none_or(|s| s > GRAYLIST_THRESHOLD) {
        publish(&liar, &[b'x', rejected]).await;
        let (id, source, _) = gossip(&mut a_events).await;
        a.report(id, source, if source == liar.peer_id() { Verdict::Reject } else { Verdict::Ignore }).await.unwrap();
        rejected += 1;
        assert!(rejected < 50, "still not graylisted after {rejected} invalid frames");
    }
    let liar_score = score_until(&a, liar.peer_id(), "the liar graylisted", |s| s <= GRAYLIST_THRESHOLD).await;
    assert!(rejected <= 6, "graylisted after {rejected} invalid frames (score {liar_score})");
    // Graylisted is banned: A cuts the liar off.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while a.peers().await.unwrap().contains(&liar.peer_id()) {
        assert!(tokio::time::Instant::now() < deadline, "the graylisted liar is still connected");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Graylisted: what it sends now never reaches A's validation.
    publish(&liar, b"after the graylist").await;
    publish(&honest, b"honest again").await;
    loop {
        let (id, source, data) = gossip(&mut a_events).await;
        assert_ne!(data, b"after the graylist", "a graylisted peer's message was delivered");
        a.report(id, source, Verdict::Ignore).await.unwrap();
        if data == b"honest again" {
            break;
        }
    }
    assert!(a.peer_score(honest.peer_id()).await.unwrap().unwrap() >= 0.0, "honest {honest_score}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_inbound_limit_are_refused_and_reported() {
    let limits = peerwatt_net::Limits { max_inbound: 1, ..peerwatt_net::Limits::default() };
    let (a, mut a_events) = node_with(21, NetConfig { limits, ..config(vec![]) }).await;
    let a_addr = address_of(&a).await;
    let (b, _b_events) = node(22, vec![a_addr.clone()]).await;
    until_connected(&a, b.peer_id()).await;
    let (c, _c_events) = node(23, vec![a_addr]).await;
    let reason = loop {
        if let Event::ConnectionRefused { reason } = next(&mut a_events).await {
            break reason;
        }
    };
    assert!(reason.contains("incoming"), "{reason}");
    let peers = a.peers().await.unwrap();
    assert_eq!(peers, vec![b.peer_id()], "only the first peer in");
    // C's side saw its connection established before A refused it: it closes.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while c.peers().await.unwrap().contains(&a.peer_id()) {
        assert!(tokio::time::Instant::now() < deadline, "C still counts A as a peer");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
