//! The in-process network serves the same handle and events as the libp2p service: gossip to
//! every other subscriber, calls answered through the same responder, bans, loss and latency.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test panics to fail

use std::time::Duration;

use peerwatt_net::{Event, Hub, InProcessConfig, NetHandle, PeerId, spawn_in_process};
use tokio::sync::mpsc;

const TOPIC: &str = "peerwatt/test/orders/1";

fn peer(n: u8) -> PeerId {
    let key = peerwatt_core::NodeKey::from_seed(&[n; 32]);
    peerwatt_net::keypair_of(&key).unwrap().public().to_peer_id()
}

fn join(hub: &std::sync::Arc<Hub>, n: u8) -> (NetHandle, mpsc::Receiver<Event>) {
    spawn_in_process(hub, peer(n), vec![TOPIC.to_owned()])
}

/// The next event that is not a connection event, within a second.
async fn next_message(events: &mut mpsc::Receiver<Event>) -> Option<Event> {
    tokio::time::timeout(Duration::from_secs(1), async {
        loop {
            match events.recv().await {
                Some(Event::PeerConnected(_) | Event::PeerDisconnected(_)) => {}
                other => return other,
            }
        }
    })
    .await
    .ok()
    .flatten()
}

#[tokio::test]
async fn gossip_reaches_every_other_subscriber_after_the_latency() {
    let latency = Duration::from_millis(30);
    let hub = Hub::new(InProcessConfig { latency, ..InProcessConfig::default() });
    let (a, _a_events) = join(&hub, 1);
    let (_b, mut b_events) = join(&hub, 2);
    let (_c, mut c_events) = join(&hub, 3);
    assert_eq!(a.peers().await.unwrap().len(), 2, "everyone is connected at once");
    let sent = tokio::time::Instant::now();
    a.publish(TOPIC, b"frame".to_vec()).await.unwrap();
    for events in [&mut b_events, &mut c_events] {
        match next_message(events).await {
            Some(Event::Gossip { topic, source, data, .. }) => {
                assert_eq!((&*topic, source, &*data), (TOPIC, peer(1), &b"frame"[..]));
            }
            other => panic!("expected the frame, got {other:?}"),
        }
    }
    assert!(sent.elapsed() >= latency, "delivered before the latency");
    assert!(a.publish("peerwatt/test/unknown/1", vec![1]).await.is_err(), "nobody subscribed");
}

#[tokio::test]
async fn a_call_is_answered_through_the_responder_and_a_ban_cuts_the_pair_off() {
    let hub = Hub::new(InProcessConfig::default());
    let (a, _a_events) = join(&hub, 1);
    let (b, mut b_events) = join(&hub, 2);
    let answering = tokio::spawn(async move {
        if let Some(Event::Request { peer: from, data, channel }) = next_message(&mut b_events).await {
            assert_eq!(from, peer(1));
            b.respond(channel, [data, b" answered".to_vec()].concat()).await.unwrap();
        }
        (b, b_events)
    });
    let answer = a.request(peer(2), b"asked".to_vec()).await.unwrap();
    assert_eq!(answer, b"asked answered");
    let (b, mut b_events) = answering.await.unwrap();
    b.ban(peer(1)).await.unwrap();
    assert!(a.request(peer(2), b"again".to_vec()).await.is_err(), "a banned peer cannot call");
    assert!(a.publish(TOPIC, b"frame".to_vec()).await.is_err(), "nor gossip to the one who banned it");
    assert!(next_message(&mut b_events).await.is_none());
}

#[tokio::test]
async fn every_delivery_is_lost_at_a_loss_of_one_million_per_million() {
    let hub = Hub::new(InProcessConfig {
        loss_per_million: 1_000_000,
        request_timeout: Duration::from_millis(200),
        ..InProcessConfig::default()
    });
    let (a, _a_events) = join(&hub, 1);
    let (_b, mut b_events) = join(&hub, 2);
    let _ = a.publish(TOPIC, b"frame".to_vec()).await;
    assert!(next_message(&mut b_events).await.is_none(), "a lost frame arrived");
    assert!(a.request(peer(2), b"asked".to_vec()).await.is_err(), "a lost call is a failed call");
}
