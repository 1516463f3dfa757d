//! Gossip screening off the actor (Lighthouse's shape: validate on a worker, report the
//! verdict). Every network event passes through one task per node. Gossip is screened there
//! ([`GossipValidator::screen`]: framing, certificate, market rules but replay, signatures),
//! its verdict goes straight to the network, so a relay hop forwards a valid message without
//! waiting for the actor's turn, and what it found goes on to the actor, which applies it to
//! the trading core and counts it. Every other event (trade calls above all) is passed on
//! as it came, in a lane of its own that the actor reads first ([`Lanes`]).
//!
//! One worker per node is enough: a verification costs tens of microseconds, and a
//! community of a thousand members gossips a few hundred frames a second at its busiest. The
//! worker runs on the runtime's other threads while the actor works.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use peerwatt_core::Clock;
use peerwatt_market::{DecodedFrame, GossipReject, GossipValidator, Penalty, Screened, Topic, decode_frame};
use peerwatt_net::{Event, Network, PeerId, Verdict};
use tokio::sync::mpsc;

use crate::topics::Topics;

/// A gossip message, screened (its verdict already reported to the network).
#[derive(Debug)]
pub(crate) struct ScreenedGossip {
    /// The peer it came from.
    pub source: PeerId,
    /// What the screen found: the checked messages, or why it was refused.
    pub result: Result<Screened, GossipReject>,
}

/// What reaches the actor from the network, in two lanes: every event but gossip (calls,
/// answers' channels, peers coming and going) as it came, and screened gossip in batches.
/// The actor reads the first lane first: a trade call waits for no gossip queued before it
/// (under a flood, a maker's queue holds seconds of gossip, and a call answered after gate
/// closure is a trade lost).
#[derive(Debug)]
pub(crate) struct Lanes {
    /// Network events other than gossip.
    pub calls: mpsc::Receiver<Event>,
    /// Screened gossip, in batches of what was waiting.
    pub gossip: mpsc::Receiver<Vec<ScreenedGossip>>,
}

/// The worker's parts.
pub(crate) struct Screen<N: Network> {
    /// The validator, with its own certificate cache (see [`peerwatt_market::Trader::screener`]).
    pub validator: GossipValidator,
    /// The community's topic names.
    pub topics: Topics,
    /// The node's clock.
    pub clock: Arc<dyn Clock>,
    /// Where the verdicts go.
    pub net: N,
    /// Frames decoded once for the nodes of the process, if they share them.
    pub frames: Option<Arc<FrameCache>>,
}

/// Gossip frames decoded once for all the nodes of one process (the simulator's): the
/// in-process network hands every receiver the same bytes of a frame, and decoding and
/// hashing them once per receiver (499 times in a 500-household street) measured the
/// co-location, not the protocol; the same reason as the shared memo of verified signatures
/// (docs/decisions/0045-simulator-shares-signature-checks.md). Every receiver still makes every
/// check of its own on the decoded frame ([`GossipValidator::screen_decoded`]). Keyed by the
/// address and length of the bytes and the topic; an entry holds a reference to its bytes, so
/// the address is not reused while the entry is kept. Bounded: two generations of at most
/// `capacity` frames.
#[derive(Debug)]
pub struct FrameCache {
    capacity: usize,
    generations: Mutex<[HashMap<FrameKey, Cached>; 2]>,
}

type FrameKey = (usize, usize, Topic);
type Cached = (Bytes, Arc<Result<DecodedFrame, GossipReject>>);

impl Default for FrameCache {
    fn default() -> FrameCache {
        FrameCache { capacity: 4096, generations: Mutex::new([HashMap::new(), HashMap::new()]) }
    }
}

impl FrameCache {
    /// The frame `data` decoded for `topic`: from the cache, or decoded now and kept.
    pub fn decode(&self, topic: Topic, data: &Bytes) -> Arc<Result<DecodedFrame, GossipReject>> {
        let key = (data.as_ptr() as usize, data.len(), topic);
        let found = {
            let g = self.generations.lock().unwrap_or_else(PoisonError::into_inner);
            g[0].get(&key).or_else(|| g[1].get(&key)).map(|(_, d)| Arc::clone(d))
        };
        if let Some(decoded) = found {
            return decoded;
        }
        let decoded = Arc::new(decode_frame(topic, data));
        let mut g = self.generations.lock().unwrap_or_else(PoisonError::into_inner);
        if g[0].len() >= self.capacity {
            g[1] = std::mem::take(&mut g[0]);
        }
        g[0].insert(key, (data.clone(), Arc::clone(&decoded)));
        decoded
    }
}

/// At most this many events are screened and handed to the actor together.
const BATCH: usize = 256;

/// Starts the worker between the network's events and the actor; returns what the actor
/// reads (see [`Lanes`]). Gossip goes in batches of what was waiting (one hand-off, and at
/// most one wake-up of the actor, for many messages: in a street of 500 nodes on one machine,
/// every frame is delivered 499 times, and the hand-offs were most of the cost).
pub(crate) fn spawn<N: Network>(screen: Screen<N>, events: mpsc::Receiver<Event>, queue: usize) -> Lanes {
    let (calls_tx, calls) = mpsc::channel(queue.max(1));
    let (gossip_tx, gossip) = mpsc::channel(queue.div_ceil(BATCH).max(1));
    tokio::spawn(screen.run(events, calls_tx, gossip_tx));
    Lanes { calls, gossip }
}

impl<N: Network> Screen<N> {
    async fn run(
        mut self,
        mut events: mpsc::Receiver<Event>,
        calls: mpsc::Sender<Event>,
        gossip: mpsc::Sender<Vec<ScreenedGossip>>,
    ) {
        let mut waiting = Vec::with_capacity(BATCH);
        while events.recv_many(&mut waiting, BATCH).await > 0 {
            // The calls of this batch go first, before its gossip is screened.
            let mut frames = Vec::with_capacity(waiting.len());
            for event in waiting.drain(..) {
                match event {
                    Event::Gossip { topic, id, source, data } => frames.push((topic, id, source, data)),
                    // Fails only when the actor has stopped.
                    other => {
                        if calls.send(other).await.is_err() {
                            return;
                        }
                    }
                }
            }
            if frames.is_empty() {
                continue;
            }
            let mut batch = Vec::with_capacity(frames.len());
            for (topic, id, source, data) in frames {
                let result = self.screen(&topic, &data);
                // Fails only when the network has stopped, which the actor notices.
                let _ = self.net.report(id, source, verdict_of(&result)).await;
                batch.push(ScreenedGossip { source, result });
            }
            if gossip.send(batch).await.is_err() {
                return; // the actor has stopped
            }
        }
    }

    fn screen(&mut self, topic: &str, data: &Bytes) -> Result<Screened, GossipReject> {
        let topic =
            self.topics.topic(topic).ok_or_else(|| GossipReject::Malformed(format!("unknown topic {topic}")))?;
        let now = self.clock.now();
        match &self.frames {
            Some(frames) => match &*frames.decode(topic, data) {
                Ok(frame) => self.validator.screen_decoded(topic, frame, now),
                Err(reject) => Err(reject.clone()),
            },
            None => self.validator.screen(topic, data, now),
        }
    }
}

/// What the network does with a screened message: forward it, or drop it with or without
/// penalty (see [`GossipReject::penalty`]).
fn verdict_of(result: &Result<Screened, GossipReject>) -> Verdict {
    match result {
        Ok(_) => Verdict::Accept,
        Err(reject) => match reject.penalty() {
            Penalty::Ignore => Verdict::Ignore,
            Penalty::Reject => Verdict::Reject,
        },
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)] // a test panics to fail

    use std::time::Duration;

    use peerwatt_core::{
        Encode, GossipFrame, IntervalId, ManualClock, MembershipCert, NodeKey, Order, Price, Side, Signature, Signed,
        Timestamp, Wh,
    };
    use peerwatt_net::{Multiaddr, NetConfig, NetHandle, keypair_of};

    use super::*;
    use peerwatt_testkit::bench_community;

    async fn net(seed: u8, bootstrap: Vec<Multiaddr>, topics: &Topics) -> (NetHandle, mpsc::Receiver<Event>) {
        let cfg = NetConfig {
            listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
            bootstrap,
            topics: topics.all(),
            heartbeat: Duration::from_millis(100),
            discovery_interval: Duration::from_millis(300),
            // The ends of the line do not look for more peers: the middle must relay.
            target_peers: 1,
            ..NetConfig::default()
        };
        peerwatt_net::spawn(keypair_of(&NodeKey::from_seed(&[seed; 32])).unwrap(), cfg).await.unwrap()
    }

    async fn address_of(h: &NetHandle) -> Multiaddr {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(addr) = h.listen_addrs().await.unwrap().into_iter().next() {
                return format!("{addr}/p2p/{}", h.peer_id()).parse().unwrap();
            }
            assert!(tokio::time::Instant::now() < deadline, "never listened");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The admin's certificate for `member`, valid from 0 until `until`.
    fn cert_of(
        admin: &NodeKey,
        community: &peerwatt_core::Community,
        member: &NodeKey,
        until: Timestamp,
    ) -> Signed<MembershipCert> {
        let body = MembershipCert {
            community: community.id,
            member: member.public(),
            name: "a".into(),
            zone: "z".into(),
            valid_from: Timestamp(0),
            valid_until: until,
        };
        Signed::sign(admin, body)
    }

    /// The next gossip message on `events`, within 20 s.
    async fn next_gossip(events: &mut mpsc::Receiver<Event>) -> Vec<u8> {
        tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                if let Some(Event::Gossip { data, .. }) = events.recv().await {
                    return data.to_vec();
                }
            }
        })
        .await
        .expect("no gossip arrived")
    }

    /// A call queued behind a backlog of gossip reaches the actor's first lane while none of
    /// that gossip has been read: a maker answers calls without waiting for its gossip.
    #[tokio::test]
    async fn events_other_than_gossip_overtake_the_gossip_queued_before_them() {
        let (community, _) = bench_community();
        let topics = Topics::of(&community);
        let orders = topics.name(peerwatt_market::Topic::Orders).to_owned();
        let hub = peerwatt_net::Hub::new(peerwatt_net::InProcessConfig::default());
        let me = keypair_of(&NodeKey::from_seed(&[1; 32])).unwrap().public().to_peer_id();
        let (net, _) = peerwatt_net::spawn_in_process(&hub, me, topics.all());
        let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(Timestamp(0)));
        let screen = Screen { validator: GossipValidator::new(community), topics, clock, net, frames: None };
        let (events, rx) = mpsc::channel(8 * BATCH);
        let caller = keypair_of(&NodeKey::from_seed(&[2; 32])).unwrap().public().to_peer_id();
        for _ in 0..2 * BATCH {
            let gossip = Event::Gossip {
                topic: Arc::from(orders.as_str()),
                id: peerwatt_net::MessageId::new(&[]),
                source: caller,
                data: bytes::Bytes::from_static(b"not a frame"),
            };
            events.send(gossip).await.unwrap();
        }
        events.send(Event::PeerConnected(caller)).await.unwrap();
        let mut lanes = spawn(screen, rx, 4 * BATCH);
        let first = tokio::time::timeout(Duration::from_secs(20), lanes.calls.recv()).await.expect("no call");
        assert!(matches!(first, Some(Event::PeerConnected(p)) if p == caller));
        // The gossip was screened (refused: not a frame) and waits, unread, in its own lane.
        let batch = lanes.gossip.recv().await.unwrap();
        assert!(batch.iter().all(|g| matches!(g.result, Err(GossipReject::Malformed(_)))));
    }

    /// The nodes of a process decode a frame once: the same bytes give the same decoding,
    /// other bytes (even equal ones, as libp2p delivers them) their own, and each receiver's
    /// own checks still judge it.
    #[test]
    fn a_shared_frame_is_decoded_once_and_still_judged_by_each_receiver() {
        let (community, admin) = bench_community();
        let member = NodeKey::from_seed(&[1; 32]);
        let cert = cert_of(&admin, &community, &member, Timestamp(1_000));
        let head = Signed::sign(
            &member,
            peerwatt_core::TreeHead { size: 1, root: peerwatt_core::Hash([1; 32]), time: Timestamp(500) },
        );
        let data = bytes::Bytes::from(GossipFrame::single(cert, head.to_bytes()).to_bytes());
        let cache = FrameCache::default();
        let first = cache.decode(Topic::Heads, &data);
        assert!(Arc::ptr_eq(&first, &cache.decode(Topic::Heads, &data.clone())), "decoded once");
        let copy = bytes::Bytes::from(data.to_vec());
        assert!(!Arc::ptr_eq(&first, &cache.decode(Topic::Heads, &copy)), "other bytes, their own decoding");
        let frame = first.as_ref().as_ref().unwrap();
        let mut validator = GossipValidator::new(community);
        assert!(validator.screen_decoded(Topic::Heads, frame, Timestamp(600)).is_ok());
        let expired = validator.screen_decoded(Topic::Heads, frame, Timestamp(1_000)).unwrap_err();
        assert_eq!(expired.name(), "certificate_not_valid", "each receiver checks the time itself");
    }

    /// A line of three real libp2p nodes, A - B - C: B's actor never reads anything, and
    /// still a valid order from A reaches C (B's screen gave the verdict), while a forged one
    /// is not forwarded.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_relay_forwards_valid_gossip_while_its_actor_is_stalled() {
        let (community, admin) = bench_community();
        let topics = Topics::of(&community);
        let orders = topics.name(peerwatt_market::Topic::Orders).to_owned();
        let (b, b_events) = net(2, vec![], &topics).await;
        let b_addr = address_of(&b).await;
        let (a, _a_events) = net(1, vec![b_addr.clone()], &topics).await;
        let (_c, mut c_events) = net(3, vec![b_addr], &topics).await;

        let interval = IntervalId(29_000_000);
        let now = Timestamp(community.interval.start(interval).0 - 60_000);
        assert!(community.is_open(interval, now));
        let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(now));
        let validator = GossipValidator::new(community.clone());
        let screen = Screen { validator, topics: topics.clone(), clock, net: b.clone(), frames: None };
        // The actor's queue is never read.
        let _stalled_actor = spawn(screen, b_events, 4 * BATCH);

        // Wait for the mesh: B must have both ends in it before A publishes.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while b.mesh_peers(&orders).await.unwrap().len() < 2 {
            assert!(tokio::time::Instant::now() < deadline, "the mesh never formed");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }

        let member = NodeKey::from_seed(&[1; 32]);
        let cert = cert_of(&admin, &community, &member, Timestamp(u64::MAX));
        let order = |seq| {
            Signed::sign(
                &member,
                Order {
                    community: community.id,
                    side: Side::Sell,
                    interval,
                    energy: Wh(500),
                    start_price: Price(150_000),
                    limit_price: Price(150_000),
                    seq,
                    created_at: now,
                    expires_at: community.interval.start(interval),
                    rules: community.terms_at(interval).version,
                },
            )
        };
        let framed = |o: &Signed<Order>| GossipFrame::single(cert.clone(), o.to_bytes()).to_bytes();
        let forged = framed(&order(1).with_signature_for_tests(Signature::from_bytes(&[9; 64])));
        let valid = framed(&order(2));
        a.publish(&orders, forged).await.unwrap();
        a.publish(&orders, valid.clone()).await.unwrap();
        assert_eq!(&next_gossip(&mut c_events).await[..], &valid[..], "only the valid order is forwarded");
    }
}
