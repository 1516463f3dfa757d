//! An in-process network: the same [`NetHandle`] and [`Event`]s as the libp2p service, between
//! nodes of one process, through a [`Hub`]. For the simulator's large streets: on one machine,
//! a hundred libp2p stacks cost more CPU than the market they carry (connection tasks, noise,
//! yamux: a third of a 100-household run's CPU), and that measures the co-location, not the
//! protocol. Everything above the transport is unchanged: the node publishes the same signed
//! frames, every receiver judges them with the same validators, calls and answers are the same
//! bytes.
//!
//! What differs from gossipsub, on purpose: a frame goes from its publisher straight to every
//! other subscriber (one hop, no relays and so no verdicts to wait for), after the configured
//! latency, and each delivery is lost with the configured probability. A full event queue
//! drops the frame for that receiver, as a slow peer's send queue does (counted by the hub).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use libp2p::PeerId;
use libp2p::gossipsub::MessageId;
use tokio::sync::{mpsc, oneshot};

use crate::service::{Command, Event, NetError, NetHandle, Reply, Responder};

/// How the in-process network behaves.
#[derive(Debug, Clone)]
pub struct InProcessConfig {
    /// How long a frame, a call or an answer takes to arrive.
    pub latency: Duration,
    /// Deliveries lost, per million (gossip frames, calls and answers alike).
    pub loss_per_million: u32,
    /// Seeds the choice of what is lost (runs are repeatable in what they lose).
    pub seed: u64,
    /// A call without an answer after this long fails.
    pub request_timeout: Duration,
    /// Events waiting for a node before more are dropped.
    pub event_queue: usize,
}

impl Default for InProcessConfig {
    fn default() -> InProcessConfig {
        InProcessConfig {
            latency: Duration::from_millis(5),
            loss_per_million: 0,
            seed: 1,
            request_timeout: Duration::from_secs(10),
            event_queue: 4096,
        }
    }
}

/// One node on the hub.
struct Member {
    events: mpsc::Sender<Event>,
    topics: HashSet<String>,
    /// Peers this node banned: nothing passes between them any more.
    banned: HashSet<PeerId>,
}

/// The nodes of one process and what passes between them.
pub struct Hub {
    cfg: InProcessConfig,
    members: Mutex<HashMap<PeerId, Member>>,
    /// The state of the loss generator (splitmix64).
    loss_state: AtomicU64,
    dropped: AtomicU64,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub").field("cfg", &self.cfg).finish_non_exhaustive()
    }
}

impl Hub {
    /// An empty hub.
    pub fn new(cfg: InProcessConfig) -> Arc<Hub> {
        let seed = cfg.seed;
        Arc::new(Hub {
            cfg,
            members: Mutex::new(HashMap::new()),
            loss_state: AtomicU64::new(seed),
            dropped: AtomicU64::new(0),
        })
    }

    /// Deliveries dropped because a receiver's event queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    fn members(&self) -> MutexGuard<'_, HashMap<PeerId, Member>> {
        self.members.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether the next delivery is lost (a splitmix64 draw against the loss rate).
    fn lost(&self) -> bool {
        if self.cfg.loss_per_million == 0 {
            return false;
        }
        let mut z =
            self.loss_state.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed).wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        z % 1_000_000 < u64::from(self.cfg.loss_per_million)
    }

    /// Whether `a` and `b` may talk (neither banned the other).
    fn open_between(members: &HashMap<PeerId, Member>, a: &PeerId, b: &PeerId) -> bool {
        let banned = |x: &PeerId, y: &PeerId| members.get(x).is_some_and(|m| m.banned.contains(y));
        !banned(a, b) && !banned(b, a)
    }

    /// Hands `event` to `to` now; a full queue drops it (counted).
    fn deliver(&self, to: &mpsc::Sender<Event>, event: Event) {
        if to.try_send(event).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Joins node `me` to `hub`, subscribed to `topics`. Returns its handle and event stream, as
/// [`crate::spawn`] does for libp2p; every member already there is connected at once.
pub fn spawn_in_process(hub: &Arc<Hub>, me: PeerId, topics: Vec<String>) -> (NetHandle, mpsc::Receiver<Event>) {
    let (cmd_tx, cmd_rx) = mpsc::channel(256);
    let (event_tx, event_rx) = mpsc::channel(hub.cfg.event_queue.max(1));
    {
        let mut members = hub.members();
        for (peer, member) in members.iter() {
            hub.deliver(&member.events, Event::PeerConnected(me));
            hub.deliver(&event_tx, Event::PeerConnected(*peer));
        }
        let member = Member { events: event_tx, topics: topics.into_iter().collect(), banned: HashSet::new() };
        members.insert(me, member);
    }
    tokio::spawn(run(Arc::clone(hub), me, cmd_rx));
    (NetHandle::new(cmd_tx, me, false), event_rx)
}

/// The node's service task: carries out its commands on the hub until it shuts down.
async fn run(hub: Arc<Hub>, me: PeerId, mut commands: mpsc::Receiver<Command>) {
    while let Some(command) = commands.recv().await {
        match command {
            Command::Publish { topic, data, reply } => {
                let result = publish(&hub, me, topic.clone(), data);
                match reply {
                    Some(reply) => {
                        let _ = reply.send(result);
                    }
                    None => {
                        if let Err(error) = result
                            && let Some(m) = hub.members().get(&me)
                        {
                            hub.deliver(&m.events, Event::PublishFailed { topic, error });
                        }
                    }
                }
            }
            Command::Request { peer, data, reply } => request(&hub, me, peer, data, reply),
            Command::Respond { channel, data } => {
                if let Reply::InProcess(tx) = channel.into_reply() {
                    let _ = tx.send(data);
                }
            }
            Command::Report { .. } => {} // not sent by an in-process handle: nothing is relayed
            Command::Dial { reply, .. } => {
                let _ = reply.send(Ok(()));
            }
            Command::ListenAddrs { reply } => {
                let _ = reply.send(Vec::new());
            }
            Command::Peers { reply } | Command::MeshPeers { reply, .. } => {
                let members = hub.members();
                let peers = members.keys().filter(|p| **p != me && Hub::open_between(&members, &me, p)).copied();
                let _ = reply.send(peers.collect());
            }
            // Nothing is relayed in process, so nothing is scored.
            Command::PeerScore { reply, .. } => {
                let _ = reply.send(None);
            }
            Command::Ban { peer } => {
                let mut members = hub.members();
                if let Some(m) = members.get_mut(&me) {
                    m.banned.insert(peer);
                    hub.deliver(&m.events, Event::PeerDisconnected(peer));
                }
            }
            Command::Shutdown { done } => {
                hub.members().remove(&me);
                let _ = done.send(());
                return;
            }
        }
    }
    hub.members().remove(&me);
}

/// Sends a frame to every other subscriber of `topic` after the latency (those subscribed
/// then: the hub is looked at once more, so no list of 499 senders is copied per frame).
fn publish(hub: &Arc<Hub>, me: PeerId, topic: String, data: Vec<u8>) -> Result<(), NetError> {
    let reachable = {
        let members = hub.members();
        members.iter().any(|(p, m)| *p != me && m.topics.contains(&topic) && Hub::open_between(&members, &me, p))
    };
    if !reachable {
        return Err(NetError::Publish("no peer subscribed".into()));
    }
    // Nothing is relayed and no verdict is taken (an in-process handle sends none), so the
    // message needs no id: an empty one, which every receiver's copy shares without an
    // allocation each.
    let id = MessageId::new(&[]);
    // One copy of the frame and the topic for every receiver: a street of 500 copied each
    // frame 499 times.
    let (topic, data): (Arc<str>, Bytes) = (Arc::from(topic), Bytes::from(data));
    let hub = Arc::clone(hub);
    tokio::spawn(async move {
        tokio::time::sleep(hub.cfg.latency).await;
        let members = hub.members();
        for (peer, member) in members.iter() {
            let subscribed = *peer != me && member.topics.contains(&*topic);
            if subscribed && Hub::open_between(&members, &me, peer) && !hub.lost() {
                let event = Event::Gossip { topic: topic.clone(), id: id.clone(), source: me, data: data.clone() };
                hub.deliver(&member.events, event);
            }
        }
    });
    Ok(())
}

/// Calls `peer`: the request arrives after the latency, the answer comes back after it too,
/// and no answer within the request timeout fails the call.
fn request(hub: &Arc<Hub>, me: PeerId, peer: PeerId, data: Vec<u8>, reply: oneshot::Sender<Result<Vec<u8>, NetError>>) {
    let target = {
        let members = hub.members();
        members.get(&peer).filter(|_| Hub::open_between(&members, &me, &peer)).map(|m| m.events.clone())
    };
    let Some(target) = target else {
        let _ = reply.send(Err(NetError::Request("not connected".into())));
        return;
    };
    let (lost_there, lost_back) = (hub.lost(), hub.lost());
    let hub = Arc::clone(hub);
    tokio::spawn(async move {
        let (latency, timeout) = (hub.cfg.latency, hub.cfg.request_timeout);
        let answer = tokio::time::timeout(timeout, async move {
            tokio::time::sleep(latency).await;
            let (tx, rx) = oneshot::channel();
            if !lost_there {
                hub.deliver(&target, Event::Request { peer: me, data, channel: Responder::in_process(tx) });
            }
            let answer = rx.await.map_err(|_| NetError::Request("no answer".into()))?;
            tokio::time::sleep(latency).await;
            if lost_back {
                return std::future::pending().await;
            }
            Ok(answer)
        })
        .await;
        let _ = reply.send(answer.unwrap_or_else(|_| Err(NetError::Request("timed out".into()))));
    });
}
