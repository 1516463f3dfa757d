//! The network service: one task owns the libp2p swarm (as in Forest's libp2p service).
//! The rest of the node talks to it through [`NetHandle`] commands with reply channels, and
//! hears from it through [`Event`]s. It knows nothing about trading.
//!
//! Every gossip message is handed out as [`Event::Gossip`] *before* it is forwarded
//! (`validate_messages`), and must be judged with [`NetHandle::report`]: accepted messages
//! are forwarded; rejected and ignored ones are dropped and not forwarded. A rejection lowers
//! the sender's gossipsub score ([`crate::scoring`]); a sender graylisted by its own rejected
//! messages is banned here. The node keeps its own count of invalid messages per peer too and
//! bans a peer with [`NetHandle::ban`].

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use libp2p::gossipsub::{self, IdentTopic, MessageAcceptance, MessageAuthenticity, MessageId, ValidationMode};
use libp2p::identity::Keypair;
use libp2p::request_response::{self, InboundRequestId, OutboundRequestId, ProtocolSupport, ResponseChannel};
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent, behaviour::toggle::Toggle};
use libp2p::{
    Multiaddr, PeerId, Swarm, SwarmBuilder, allow_block_list, connection_limits, identify, mdns, noise, tcp, yamux,
};
use thiserror::Error;
use tokio::sync::{mpsc, oneshot};

use crate::codec::{BytesCodec, MAX_FRAME, PEERS_PROTOCOL, TRADE_PROTOCOL};
use crate::peers::{self, AddressBook, Schedule};
use crate::scoring;

/// A network operation failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NetError {
    /// The service has stopped.
    #[error("the network service has stopped")]
    Stopped,
    /// Gossip could not be published (e.g. no peer subscribed yet).
    #[error("publish failed: {0}")]
    Publish(String),
    /// A request got no response.
    #[error("request failed: {0}")]
    Request(String),
    /// Dialling failed.
    #[error("dial failed: {0}")]
    Dial(String),
    /// Starting the swarm failed.
    #[error("cannot start the network: {0}")]
    Start(String),
    /// An address in `[network] listen` cannot be listened on.
    #[error("cannot listen on {addr}: {reason}")]
    Listen {
        /// The address.
        addr: String,
        /// Why (the whole chain of causes: "address already in use", …).
        reason: String,
    },
}

/// Each peer's rejected messages in the last [`scoring::REJECT_WINDOW`].
#[derive(Debug, Default)]
struct RecentRejects(HashMap<PeerId, VecDeque<std::time::Instant>>);

impl RecentRejects {
    /// One more from `peer`; how many in the window now.
    fn note(&mut self, peer: PeerId) -> usize {
        let now = std::time::Instant::now();
        let times = self.0.entry(peer).or_default();
        times.push_back(now);
        while times.front().is_some_and(|t| now.duration_since(*t) > scoring::REJECT_WINDOW) {
            times.pop_front();
        }
        times.len()
    }
}

/// Fails if another program holds `addr`'s port. libp2p listens with `SO_REUSEPORT` (hole
/// punching dials from the listening port), so a second node on the same port would listen
/// too, and the kernel would share the incoming connections between the two: a plain bind
/// first, without the option, tells (on Linux; two nodes starting at the same instant can
/// both pass it).
pub fn probe_port(addr: &Multiaddr) -> Result<(), String> {
    use libp2p::multiaddr::Protocol;
    let mut parts = addr.iter();
    let ip: std::net::IpAddr = match parts.next() {
        Some(Protocol::Ip4(ip)) => ip.into(),
        Some(Protocol::Ip6(ip)) => ip.into(),
        _ => return Ok(()),
    };
    let (kind, port) = match parts.next() {
        Some(Protocol::Tcp(port)) if port != 0 => (socket2::Type::STREAM, port),
        Some(Protocol::Udp(port)) if port != 0 => (socket2::Type::DGRAM, port),
        _ => return Ok(()),
    };
    let addr = std::net::SocketAddr::new(ip, port);
    let socket = socket2::Socket::new(socket2::Domain::for_address(addr), kind, None).map_err(|e| error_chain(&e))?;
    if ip.is_ipv6() {
        // As libp2p binds it: IPv6 only, beside the node's own IPv4 socket on the same port.
        socket.set_only_v6(true).map_err(|e| error_chain(&e))?;
    }
    // As std and libp2p do: connections of a node that just stopped (TIME_WAIT) do not hold
    // the port; another listener still does.
    socket.set_reuse_address(true).map_err(|e| error_chain(&e))?;
    socket.bind(&addr.into()).map_err(|e| {
        let kind = e.kind();
        format!("{}{}", error_chain(&e), listen_advice(kind))
    })
}

/// What a listen error usually means, by its kind.
fn listen_advice(kind: std::io::ErrorKind) -> &'static str {
    match kind {
        std::io::ErrorKind::AddrInUse => " (another program, maybe another node, uses that port)",
        std::io::ErrorKind::AddrNotAvailable => " (that address is not one of this machine's)",
        std::io::ErrorKind::PermissionDenied => " (ports below 1024 need privileges: use 4001)",
        _ => "",
    }
}

/// An error and all its causes, in one line (libp2p's transport errors say nothing
/// themselves: the reason is in their sources).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut said: Vec<String> = Vec::new();
    let mut next: Option<&dyn std::error::Error> = Some(e);
    while let Some(err) = next {
        let text = err.to_string();
        if !text.is_empty() && !said.iter().any(|s| s.contains(&text)) {
            said.push(text);
        }
        next = err.source();
    }
    if said.is_empty() { format!("{e:?}") } else { said.join(": ") }
}

/// Trade streams (requests and queries, both ways) open at once on one connection; yamux
/// allows 512.
pub const MAX_TRADE_STREAMS: usize = 256;

/// Fewest peers a node keeps in its gossip mesh of a topic (once it has that many subscribed).
pub const MESH_LOW: usize = 3;

/// How the network behaves. The timers are settable so tests can shorten them.
#[derive(Debug, Clone)]
pub struct NetConfig {
    /// Addresses to listen on (e.g. `/ip4/0.0.0.0/tcp/4001`).
    pub listen: Vec<Multiaddr>,
    /// Peers to dial at start (multiaddresses ending in `/p2p/<peer id>`).
    pub bootstrap: Vec<Multiaddr>,
    /// Discover peers on the local network with mDNS.
    pub mdns: bool,
    /// Gossipsub topics to join.
    pub topics: Vec<String>,
    /// Gossipsub heartbeat.
    pub heartbeat: Duration,
    /// How long a request may take.
    pub request_timeout: Duration,
    /// How often to look for peers once `target_peers` are connected: ask a connected peer for
    /// addresses it knows (see [`crate::peers`]). While short of peers the node looks every
    /// second (dialling one known peer each time), backing off to this while that finds
    /// nothing ([`crate::peers::Schedule`]).
    pub discovery_interval: Duration,
    /// How many events may wait for the owner before the network stops reading from peers.
    pub event_queue: usize,
    /// Discovered peers are dialled, and discovery runs at its fast pace, while fewer than this
    /// many are connected.
    pub target_peers: usize,
    /// Connection limits: beyond them a connection is refused.
    pub limits: Limits,
}

/// How many connections a node keeps (libp2p's connection limits). The defaults suit a
/// household's node on a Raspberry Pi in a community of up to 1,000 members: it dials
/// `target_peers` (16) itself and the makers it buys from, and accepts up to 48, 96 in all; a
/// community's bootstrap or relay node, which every new member dials first, raises them
/// (docs/operations.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Established connections in all.
    pub max_connections: u32,
    /// Established connections a peer opened to this node.
    pub max_inbound: u32,
    /// Connections per peer (TCP and QUIC at once, while one replaces the other).
    pub max_per_peer: u32,
    /// Incoming connections still in their handshake.
    pub max_pending_inbound: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_connections: 96, max_inbound: 48, max_per_peer: 2, max_pending_inbound: 16 }
    }
}

impl Limits {
    fn behaviour(&self) -> connection_limits::Behaviour {
        connection_limits::Behaviour::new(
            connection_limits::ConnectionLimits::default()
                .with_max_established(Some(self.max_connections))
                .with_max_established_incoming(Some(self.max_inbound))
                .with_max_established_per_peer(Some(self.max_per_peer))
                .with_max_pending_incoming(Some(self.max_pending_inbound)),
        )
    }
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            listen: Vec::new(),
            bootstrap: Vec::new(),
            mdns: false,
            topics: Vec::new(),
            heartbeat: Duration::from_secs(1),
            request_timeout: Duration::from_secs(10),
            discovery_interval: Duration::from_secs(30),
            event_queue: 4096,
            target_peers: 16,
            limits: Limits::default(),
        }
    }
}

/// A verdict on a gossip message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Valid: forward it.
    Accept,
    /// Invalid: drop it and do not forward it; gossipsub lowers the score of the peer that
    /// sent it ([`crate::scoring`]: a few in a row graylist it), and the node counts it
    /// against that peer itself (a ban after `ban_after_rejects`).
    Reject,
    /// Not invalid but not wanted (late, a replay, a duplicate): drop it and do not forward
    /// it; it costs the peer no score, and the node counts nothing against it.
    Ignore,
}

/// What the network reports.
#[derive(Debug)]
pub enum Event {
    /// Listening on an address.
    Listening(Multiaddr),
    /// A connection to a peer was established.
    PeerConnected(PeerId),
    /// The last connection to a peer closed.
    PeerDisconnected(PeerId),
    /// A gossip message awaiting a verdict ([`NetHandle::report`]).
    Gossip {
        /// The topic.
        topic: Arc<str>,
        /// Its id (for the verdict).
        id: MessageId,
        /// The peer it came from (for the verdict).
        source: PeerId,
        /// The payload (shared: the in-process network hands one frame to every receiver).
        data: Bytes,
    },
    /// A message given to [`NetHandle::publish_nowait`] could not be published.
    PublishFailed {
        /// The topic.
        topic: String,
        /// Why (e.g. no peer subscribed yet).
        error: NetError,
    },
    /// Gossip messages to `peer` were dropped since the last heartbeat: its send queue was
    /// full, or they waited in it longer than gossipsub allows (3 s to forward, see
    /// `forward_queue_duration`; 5 s to publish). The peer, or this host, cannot keep up.
    SendDropped {
        /// The slow peer.
        peer: PeerId,
        /// How many messages were dropped.
        messages: usize,
    },
    /// A peer's invalid messages took its gossipsub score below the graylist
    /// ([`crate::scoring::GRAYLIST_THRESHOLD`]): the network has banned it.
    Graylisted(PeerId),
    /// A connection was refused: it would have exceeded the connection limits ([`Limits`]).
    ConnectionRefused {
        /// Which limit, in words.
        reason: String,
    },
    /// A request from a peer; answer it with [`NetHandle::respond`].
    Request {
        /// Who asks.
        peer: PeerId,
        /// The request bytes.
        data: Vec<u8>,
        /// Where the answer goes.
        channel: Responder,
    },
}

/// Where the answer to one inbound request goes (see [`NetHandle::respond`]). Dropping it
/// unanswered tells the requester there is no answer.
#[derive(Debug)]
pub struct Responder {
    reply: Reply,
}

/// Where an answer goes, by network.
#[derive(Debug)]
pub(crate) enum Reply {
    /// A libp2p request-response stream.
    Swarm { id: InboundRequestId, channel: ResponseChannel<Vec<u8>> },
    /// A caller in the same process (see [`crate::inproc`]).
    InProcess(oneshot::Sender<Vec<u8>>),
}

impl Responder {
    /// The answer to a call from a node of the same process.
    pub(crate) fn in_process(tx: oneshot::Sender<Vec<u8>>) -> Responder {
        Responder { reply: Reply::InProcess(tx) }
    }

    /// Where the answer goes.
    pub(crate) fn into_reply(self) -> Reply {
        self.reply
    }
}

/// What the node asks of its network service (libp2p's or the in-process one).
pub(crate) enum Command {
    /// Without `reply`, a failure is reported as [`Event::PublishFailed`].
    Publish {
        topic: String,
        data: Vec<u8>,
        reply: Option<oneshot::Sender<Result<(), NetError>>>,
    },
    Request {
        peer: PeerId,
        data: Vec<u8>,
        reply: oneshot::Sender<Result<Vec<u8>, NetError>>,
    },
    Respond {
        channel: Responder,
        data: Vec<u8>,
    },
    Report {
        id: MessageId,
        source: PeerId,
        verdict: Verdict,
    },
    Dial {
        addr: Multiaddr,
        reply: oneshot::Sender<Result<(), NetError>>,
    },
    ListenAddrs {
        reply: oneshot::Sender<Vec<Multiaddr>>,
    },
    Peers {
        reply: oneshot::Sender<Vec<PeerId>>,
    },
    MeshPeers {
        topic: String,
        reply: oneshot::Sender<Vec<PeerId>>,
    },
    PeerScore {
        peer: PeerId,
        reply: oneshot::Sender<Option<f64>>,
    },
    Ban {
        peer: PeerId,
    },
    Shutdown {
        done: oneshot::Sender<()>,
    },
}

/// Talks to the network task.
#[derive(Debug, Clone)]
pub struct NetHandle {
    commands: mpsc::Sender<Command>,
    peer_id: PeerId,
    /// Whether the network holds gossip until its verdict (libp2p's gossipsub does; the
    /// in-process network relays nothing, so a verdict there has nothing to hold up and is
    /// not sent: one message fewer per delivery, 500 times per frame in a large street).
    holds_gossip: bool,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Command")
    }
}

impl NetHandle {
    /// A handle on the service task reading `commands`.
    pub(crate) fn new(commands: mpsc::Sender<Command>, peer_id: PeerId, holds_gossip: bool) -> NetHandle {
        NetHandle { commands, peer_id, holds_gossip }
    }

    /// This node's peer id.
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    async fn call<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T, NetError> {
        let (tx, rx) = oneshot::channel();
        self.commands.send(make(tx)).await.map_err(|_| NetError::Stopped)?;
        rx.await.map_err(|_| NetError::Stopped)
    }

    /// Publishes `data` on `topic`.
    pub async fn publish(&self, topic: &str, data: Vec<u8>) -> Result<(), NetError> {
        self.call(|reply| Command::Publish { topic: topic.to_owned(), data, reply: Some(reply) }).await?
    }

    /// Publishes `data` on `topic` without waiting for the network task: a failure comes back
    /// as [`Event::PublishFailed`]. Errs only when the service has stopped.
    pub async fn publish_nowait(&self, topic: &str, data: Vec<u8>) -> Result<(), NetError> {
        let command = Command::Publish { topic: topic.to_owned(), data, reply: None };
        self.commands.send(command).await.map_err(|_| NetError::Stopped)
    }

    /// Sends a request to `peer` and waits for its response.
    pub async fn request(&self, peer: PeerId, data: Vec<u8>) -> Result<Vec<u8>, NetError> {
        self.call(|reply| Command::Request { peer, data, reply }).await?
    }

    /// Answers a request.
    pub async fn respond(&self, channel: Responder, data: Vec<u8>) -> Result<(), NetError> {
        self.commands.send(Command::Respond { channel, data }).await.map_err(|_| NetError::Stopped)
    }

    /// Judges a gossip message (exactly once per [`Event::Gossip`]).
    pub async fn report(&self, id: MessageId, source: PeerId, verdict: Verdict) -> Result<(), NetError> {
        if !self.holds_gossip {
            return Ok(());
        }
        self.commands.send(Command::Report { id, source, verdict }).await.map_err(|_| NetError::Stopped)
    }

    /// Dials an address.
    pub async fn dial(&self, addr: Multiaddr) -> Result<(), NetError> {
        self.call(|reply| Command::Dial { addr, reply }).await?
    }

    /// The addresses this node listens on.
    pub async fn listen_addrs(&self) -> Result<Vec<Multiaddr>, NetError> {
        self.call(|reply| Command::ListenAddrs { reply }).await
    }

    /// `peer`'s gossipsub score (see [`crate::scoring`]); `None` for a peer it knows nothing of.
    pub async fn peer_score(&self, peer: PeerId) -> Result<Option<f64>, NetError> {
        self.call(|reply| Command::PeerScore { peer, reply }).await
    }

    /// The peers this node is connected to.
    pub async fn peers(&self) -> Result<Vec<PeerId>, NetError> {
        self.call(|reply| Command::Peers { reply }).await
    }

    /// The peers in this node's gossip mesh of `topic`: those it forwards messages to at once
    /// (a connected peer outside the mesh only hears of them in lazy gossip, a heartbeat later).
    pub async fn mesh_peers(&self, topic: &str) -> Result<Vec<PeerId>, NetError> {
        self.call(|reply| Command::MeshPeers { topic: topic.to_owned(), reply }).await
    }

    /// Closes every connection to `peer` and refuses new ones (a peer that keeps sending
    /// invalid messages). Lasts until the node restarts.
    pub async fn ban(&self, peer: PeerId) -> Result<(), NetError> {
        self.commands.send(Command::Ban { peer }).await.map_err(|_| NetError::Stopped)
    }

    /// Stops the network once the answers already given have reached their requesters (or
    /// failed), waiting at most `grace`. Commands sent before it are served first; the swarm
    /// and its connections are closed when this returns.
    pub async fn shutdown(&self, grace: Duration) {
        let (done, stopped) = oneshot::channel();
        if self.commands.send(Command::Shutdown { done }).await.is_ok() {
            let _ = tokio::time::timeout(grace, stopped).await;
        }
    }
}

#[derive(NetworkBehaviour)]
struct Behaviour {
    // First: a connection beyond the limits is refused before any other behaviour sees it.
    limits: connection_limits::Behaviour,
    blocked: allow_block_list::Behaviour<allow_block_list::BlockedPeers>,
    gossipsub: gossipsub::Behaviour,
    trades: request_response::Behaviour<BytesCodec>,
    identify: identify::Behaviour,
    peers: request_response::Behaviour<BytesCodec>,
    mdns: Toggle<mdns::tokio::Behaviour>,
}

fn gossipsub_config(cfg: &NetConfig) -> Result<gossipsub::Config, NetError> {
    gossipsub::ConfigBuilder::default()
        .heartbeat_interval(cfg.heartbeat)
        // Every payload is signed by its member's key and carries the member's certificate,
        // checked in validation. A second gossipsub signature (and author, and sequence
        // number) per message would only cost a signature per publish and a check per hop.
        .validation_mode(ValidationMode::Anonymous)
        .validate_messages()
        // Content-addressed ids: the same signed message is the same message, whoever relays it.
        // The raw 32 bytes, not hex: ids fill every IHAVE and IWANT.
        .message_id_fn(|m: &gossipsub::Message| MessageId::new(&peerwatt_core::Hash::of(&m.data).0))
        // Small communities (3 nodes) must still form a mesh; large ones (1,000) stay bounded.
        // At least 3 mesh peers: with 2, the meshes of a community settle into long rings
        // (every node grafts until it has 2), and a message crosses a community of 100 one
        // heartbeat per hop through lazy gossip instead of in milliseconds through the mesh.
        .mesh_n_low(MESH_LOW)
        .mesh_n(MESH_LOW)
        .mesh_n_high(6)
        .mesh_outbound_min(1)
        // Lazy gossip (IHAVE) repairs what the mesh missed. Every IHAVE lists the ids of all
        // messages of the last heartbeats, and every receiver looks each one up: with the
        // defaults (a quarter of all peers, three heartbeats) a busy community spends more on
        // IHAVE than on the messages. Three peers, the last heartbeat's messages.
        .gossip_lazy(3)
        .gossip_factor(0.0)
        .history_gossip(1)
        // Publish to the mesh (or fanout) peers only, not to every connected peer: in a
        // community of hundreds each publish would otherwise cost a send and a receipt per peer.
        .flood_publish(false)
        // A relayed message still queued for a peer after this long is dropped (the default
        // is 1 s). An order stays good until its gate closure and a trade announcement for
        // good, so late beats lost: lazy gossip re-offers only the last heartbeat's messages.
        // In a busy 100-household simulation this dropped a third as many messages.
        .forward_queue_duration(Duration::from_secs(3))
        // No IDONTWANT: for a message above the threshold (default 1,000 bytes, which a
        // frame of four orders passes) every receiver tells each mesh peer it has it, one
        // control message per copy saved at best. Our frames are small; sending the copy
        // costs about what the notice does, and in a busy 100-household simulation turning
        // IDONTWANT off delivered more orders, not fewer.
        .idontwant_message_size_threshold(usize::MAX)
        .max_transmit_size(MAX_FRAME)
        .build()
        .map_err(|e| NetError::Start(e.to_string()))
}

/// How long a peer exchange may take.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(5);
/// Peer exchanges open at once on one connection.
const EXCHANGE_STREAMS: usize = 4;
/// After this many exchanges in a row that taught nothing, a node with enough peers stops asking…
const QUIET_EXCHANGES: u32 = 3;
/// … except at every this many discovery ticks (to hear of newcomers).
const REFRESH_EVERY: usize = 20;

/// A request-response protocol of length-prefixed bytes (trades, peer exchange), both ways.
fn bytes_protocol(
    protocol: libp2p::StreamProtocol,
    timeout: Duration,
    streams: usize,
) -> request_response::Behaviour<BytesCodec> {
    request_response::Behaviour::with_codec(
        BytesCodec,
        [(protocol, ProtocolSupport::Full)],
        request_response::Config::default().with_request_timeout(timeout).with_max_concurrent_streams(streams),
    )
}

/// Starts the network task with the node's identity. Returns the handle and the event stream.
pub async fn spawn(keypair: Keypair, cfg: NetConfig) -> Result<(NetHandle, mpsc::Receiver<Event>), NetError> {
    let peer_id = keypair.public().to_peer_id();
    let gossip_cfg = gossipsub_config(&cfg)?;
    let request_timeout = cfg.request_timeout;
    let mdns_on = cfg.mdns;
    let topics = cfg.topics.clone();
    let limits = cfg.limits;
    let mut swarm = SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_tcp(tcp::Config::default().nodelay(true), noise::Config::new, yamux::Config::default)
        .map_err(|e| NetError::Start(e.to_string()))?
        .with_quic()
        .with_behaviour(|key| {
            let id = key.public().to_peer_id();
            let mut gossipsub = gossipsub::Behaviour::new(MessageAuthenticity::Anonymous, gossip_cfg)?;
            gossipsub.with_peer_score(scoring::params(&topics), scoring::thresholds())?;
            // Streams beyond the limit are dropped, not queued. A taker keeps at most 256
            // requests to one maker unanswered (`MAX_IN_FLIGHT_PER_MAKER`), sent in calls of up to
            // 64, one stream per call: four streams per maker when the calls are full.
            let trades = bytes_protocol(TRADE_PROTOCOL, request_timeout, MAX_TRADE_STREAMS);
            let identify = identify::Behaviour::new(identify::Config::new("/peerwatt/id/1".into(), key.public()));
            let peers = bytes_protocol(PEERS_PROTOCOL, EXCHANGE_TIMEOUT, EXCHANGE_STREAMS);
            let mdns = if mdns_on { Some(mdns::tokio::Behaviour::new(mdns::Config::default(), id)?) } else { None };
            Ok(Behaviour {
                limits: limits.behaviour(),
                blocked: Default::default(),
                gossipsub,
                trades,
                identify,
                peers,
                mdns: Toggle::from(mdns),
            })
        })
        .map_err(|e| NetError::Start(e.to_string()))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build();
    for topic in &cfg.topics {
        swarm
            .behaviour_mut()
            .gossipsub
            .subscribe(&IdentTopic::new(topic))
            .map_err(|e| NetError::Start(e.to_string()))?;
    }
    for addr in &cfg.listen {
        probe_port(addr).map_err(|reason| NetError::Listen { addr: addr.to_string(), reason })?;
        swarm
            .listen_on(addr.clone())
            .map_err(|e| NetError::Listen { addr: addr.to_string(), reason: error_chain(&e) })?;
    }
    let mut book = AddressBook::new(peer_id);
    for addr in &cfg.bootstrap {
        if let Some(peer) = peers::peer_in(addr) {
            book.learn(peer, addr);
        }
        if let Err(e) = swarm.dial(addr.clone()) {
            tracing::warn!(%addr, error = %e, "cannot dial bootstrap peer");
        }
    }
    let (cmd_tx, cmd_rx) = mpsc::channel(256);
    let (event_tx, event_rx) = mpsc::channel(cfg.event_queue.max(1));
    let task = Task {
        swarm,
        commands: cmd_rx,
        events: event_tx,
        pending: HashMap::new(),
        responding: HashSet::new(),
        closing: None,
        outbox: VecDeque::new(),
        connected: HashSet::new(),
        rejects: RecentRejects::default(),
        book,
        schedule: Schedule::new(cfg.discovery_interval),
        // The first round at once, as before: it retries a bootstrap peer that refused the dial.
        discovery_due: tokio::time::Instant::now(),
        exchange_turn: 0,
        quiet_exchanges: 0,
        cfg,
    };
    tokio::spawn(task.run());
    Ok((NetHandle::new(cmd_tx, peer_id, true), event_rx))
}

struct Task {
    swarm: Swarm<Behaviour>,
    commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<Event>,
    pending: HashMap<OutboundRequestId, oneshot::Sender<Result<Vec<u8>, NetError>>>,
    /// Answers handed to the swarm and not yet sent (or failed).
    responding: HashSet<InboundRequestId>,
    /// Set by [`NetHandle::shutdown`]: stop once `responding` is empty.
    closing: Option<oneshot::Sender<()>>,
    /// Events raised while serving a command, emitted before anything else.
    outbox: VecDeque<Event>,
    connected: HashSet<PeerId>,
    /// Each peer's recent rejected messages (a graylisted peer is banned on these).
    rejects: RecentRejects,
    /// Addresses of other members' nodes (see [`crate::peers`]).
    book: AddressBook,
    /// The pace of discovery rounds, and whom an exchange may ask now.
    schedule: Schedule,
    /// When the next discovery round is due (moved by [`Task::discover`] and [`Task::soon`]).
    discovery_due: tokio::time::Instant,
    /// Picks a different connected peer to ask at each exchange.
    exchange_turn: usize,
    /// Exchanges in a row that taught nothing new (see [`Task::discover`]).
    quiet_exchanges: u32,
    cfg: NetConfig,
}

impl Task {
    async fn run(mut self) {
        // One timer for discovery rounds, moved to `discovery_due` whenever that changes.
        let round = tokio::time::sleep_until(self.discovery_due);
        tokio::pin!(round);
        loop {
            while let Some(event) = self.outbox.pop_front() {
                self.emit(event).await;
            }
            if self.closing.is_some() && self.responding.is_empty() {
                if let Some(done) = self.closing.take() {
                    let _ = done.send(());
                }
                break; // the swarm, and with it every connection, is dropped
            }
            if round.deadline() != self.discovery_due {
                round.as_mut().reset(self.discovery_due);
            }
            tokio::select! {
                command = self.commands.recv() => match command {
                    Some(c) => self.on_command(c),
                    None => break, // every handle dropped: shut down
                },
                event = self.swarm.select_next_some() => self.on_swarm_event(event).await,
                () = &mut round => self.discover(),
            }
        }
    }

    /// Sends an event to the owner. Backpressure is deliberate (gossip awaiting validation must
    /// not be dropped), but commands are still served while waiting: the owner may itself be
    /// waiting on a command (a publish, a full command queue) before it reads another event,
    /// and two tasks waiting on each other's full queues would never wake.
    async fn emit(&mut self, event: Event) {
        let events = self.events.clone();
        let permit = loop {
            tokio::select! {
                permit = events.reserve() => break permit,
                command = self.commands.recv() => match command {
                    Some(c) => self.on_command(c),
                    None => return, // every handle dropped: nobody to tell
                },
            }
        };
        if let Ok(permit) = permit {
            permit.send(event);
        }
    }

    fn on_command(&mut self, command: Command) {
        let b = self.swarm.behaviour_mut();
        match command {
            Command::Publish { topic, data, reply } => {
                let result = b
                    .gossipsub
                    .publish(IdentTopic::new(topic.clone()), data)
                    .map(|_| ())
                    .map_err(|e| NetError::Publish(e.to_string()));
                match (reply, result) {
                    (Some(reply), result) => {
                        let _ = reply.send(result);
                    }
                    (None, Err(error)) => self.outbox.push_back(Event::PublishFailed { topic, error }),
                    (None, Ok(())) => {}
                }
            }
            Command::Request { peer, data, reply } => {
                // A maker the node is not connected to is dialled at its address in the book.
                let id =
                    b.trades.send_request_with_addresses(&peer, data, self.book.address(&peer).into_iter().collect());
                self.pending.insert(id, reply);
            }
            Command::Respond { channel, data } => match channel.into_reply() {
                Reply::Swarm { id, channel } => {
                    if b.trades.send_response(channel, data).is_ok() {
                        self.responding.insert(id);
                    } else {
                        tracing::debug!("response not sent: the requester is gone");
                    }
                }
                Reply::InProcess(tx) => {
                    let _ = tx.send(data);
                }
            },
            Command::Report { id, source, verdict } => {
                let acceptance = match verdict {
                    Verdict::Accept => MessageAcceptance::Accept,
                    Verdict::Reject => MessageAcceptance::Reject,
                    Verdict::Ignore => MessageAcceptance::Ignore,
                };
                b.gossipsub.report_message_validation_result(&id, &source, acceptance);
                // A peer whose invalid messages took it below the graylist is cut off, as a
                // ban: gossipsub would only stop listening to it, and while it listens no
                // more, the node's own strikes stop counting too. Only on this node's own
                // rejects of messages the peer sent (a low score alone can come from slowness:
                // broken IWANT promises).
                let rejects = if verdict == Verdict::Reject { self.rejects.note(source) } else { 0 };
                let graylisted = b.gossipsub.peer_score(&source).is_some_and(|s| s <= scoring::GRAYLIST_THRESHOLD);
                if rejects >= scoring::BAN_AFTER_REJECTS && graylisted {
                    b.blocked.block_peer(source);
                    let _ = self.swarm.disconnect_peer_id(source);
                    self.outbox.push_back(Event::Graylisted(source));
                }
            }
            Command::Dial { addr, reply } => {
                if let Some(peer) = peers::peer_in(&addr) {
                    self.book.learn(peer, &addr);
                }
                let _ = reply.send(self.swarm.dial(addr).map_err(|e| NetError::Dial(e.to_string())));
            }
            Command::ListenAddrs { reply } => {
                let _ = reply.send(self.swarm.listeners().cloned().collect());
            }
            Command::Peers { reply } => {
                let _ = reply.send(self.connected.iter().copied().collect());
            }
            Command::PeerScore { peer, reply } => {
                let _ = reply.send(b.gossipsub.peer_score(&peer));
            }
            Command::MeshPeers { topic, reply } => {
                let _ = reply.send(b.gossipsub.mesh_peers(&IdentTopic::new(topic).hash()).copied().collect());
            }
            Command::Ban { peer } => {
                // Blocking closes the peer's connections and refuses new ones, both ways.
                b.blocked.block_peer(peer);
                let _ = self.swarm.disconnect_peer_id(peer);
            }
            Command::Shutdown { done } => self.closing = Some(done),
        }
    }

    /// Each discovery round: while short of peers, dials one known peer not connected yet; and
    /// asks one connected peer for addresses it knows, while that still teaches something (or
    /// while short of peers), and now and then anyway to hear of newcomers. One dial and one
    /// small request per round, not one per peer heard of: enough peers for a gossip mesh and
    /// some spares, and in time an address for every member a taker may need to reach. The
    /// next round comes when [`Schedule`] says: soon while short of peers, else at the
    /// configured interval.
    ///
    /// A node with no peer at all keeps dialling the peers it knows (its bootstrap list at
    /// first), one per round: a bootstrap peer that was not up yet when the node started is
    /// tried again.
    fn discover(&mut self) {
        let short = self.short();
        if short && let Some(addr) = self.book.next_unconnected(&self.connected) {
            self.dial_known(addr);
        }
        self.discovery_due = tokio::time::Instant::now() + self.schedule.after_round(short);
        if self.connected.is_empty() {
            return;
        }
        self.exchange_turn = self.exchange_turn.wrapping_add(1);
        let curious = self.quiet_exchanges < QUIET_EXCHANGES || self.exchange_turn.is_multiple_of(REFRESH_EVERY);
        if short || curious {
            let mut connected: Vec<PeerId> = self.connected.iter().copied().collect();
            connected.sort_unstable();
            let asked = connected[self.exchange_turn % connected.len()];
            self.ask(asked);
        }
    }

    /// Whether fewer peers than the target are connected.
    fn short(&self) -> bool {
        self.connected.len() < self.cfg.target_peers
    }

    /// Brings the next discovery round forward to within a fast round (see [`Schedule::hurry`]):
    /// something changed while the node is short of peers, so looking again may find more.
    fn soon(&mut self) {
        let wait = self.schedule.hurry();
        self.discovery_due = self.discovery_due.min(tokio::time::Instant::now() + wait);
    }

    /// Asks `peer` for the addresses it knows, unless it was asked a moment ago (a peer that
    /// reconnects over and over must not be asked each time).
    fn ask(&mut self, peer: PeerId) {
        if self.schedule.may_ask(peer, std::time::Instant::now()) {
            self.swarm.behaviour_mut().peers.send_request(&peer, Vec::new());
        }
    }

    /// Dials a peer from the address book unless it is connected or being dialled already:
    /// rounds come every second while short of peers, and a handshake on a busy host may take
    /// longer. (A refused dial does not fail trade requests waiting for the same peer.)
    fn dial_known(&mut self, addr: Multiaddr) {
        let opts = match peers::peer_in(&addr) {
            Some(peer) => DialOpts::peer_id(peer)
                .condition(PeerCondition::DisconnectedAndNotDialing)
                .addresses(vec![addr])
                .build(),
            None => DialOpts::from(addr),
        };
        let _ = self.swarm.dial(opts);
    }

    /// A first connection to `peer`. While still short of peers the node asks it for addresses
    /// at once, rather than at the next round: a newcomer whose only peer is its bootstrap
    /// node would otherwise know nobody else for a whole round, and with a backed-off schedule
    /// that is up to the configured interval (30 s by default).
    fn on_new_peer(&mut self, peer: PeerId) {
        if self.short() {
            self.ask(peer);
            self.soon();
        }
    }

    /// A peer-exchange request or answer (handled here: the node never sees them).
    fn on_exchange(&mut self, event: request_response::Event<Vec<u8>, Vec<u8>>) {
        match event {
            request_response::Event::Message {
                peer,
                message: request_response::Message::Request { channel, .. },
                ..
            } => {
                let answer = peers::encode_answer(&self.book.answer_for(&peer));
                let _ = self.swarm.behaviour_mut().peers.send_response(channel, answer);
            }
            request_response::Event::Message {
                peer,
                message: request_response::Message::Response { response, .. },
                ..
            } => {
                let answer = peers::decode_answer(&response);
                if answer.refused > 0 {
                    tracing::debug!(%peer, refused = answer.refused, "peer exchange: unusable addresses skipped");
                }
                let learned = answer.peers.iter().filter(|(p, a)| self.book.learn(*p, a)).count();
                self.quiet_exchanges = if learned > 0 { 0 } else { self.quiet_exchanges.saturating_add(1) };
                if learned > 0 && self.short() {
                    self.soon(); // new addresses to dial
                }
            }
            request_response::Event::OutboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, %error, "peer exchange failed");
            }
            _ => {}
        }
    }

    async fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::NewListenAddr { address, .. } => self.emit(Event::Listening(address)).await,
            SwarmEvent::IncomingConnectionError { error: libp2p::swarm::ListenError::Denied { cause }, .. } => {
                if let Some(exceeded) = cause.downcast_ref::<connection_limits::Exceeded>() {
                    self.emit(Event::ConnectionRefused { reason: exceeded.to_string() }).await;
                }
            }
            SwarmEvent::ConnectionEstablished { peer_id, num_established, .. }
                if num_established.get() == 1 && self.connected.insert(peer_id) =>
            {
                self.on_new_peer(peer_id);
                self.emit(Event::PeerConnected(peer_id)).await;
            }
            SwarmEvent::ConnectionClosed { peer_id, num_established: 0, .. } if self.connected.remove(&peer_id) => {
                if self.short() {
                    self.soon(); // a peer to replace
                }
                self.emit(Event::PeerDisconnected(peer_id)).await;
            }
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            })) => {
                let topic = Arc::from(message.topic.as_str());
                let data = Bytes::from(message.data);
                self.emit(Event::Gossip { topic, id: message_id, source: propagation_source, data }).await;
            }
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(gossipsub::Event::SlowPeer {
                peer_id,
                failed_messages,
            })) => {
                let messages = failed_messages.priority + failed_messages.non_priority;
                self.emit(Event::SendDropped { peer: peer_id, messages }).await;
            }
            SwarmEvent::Behaviour(BehaviourEvent::Trades(request_response::Event::Message {
                peer, message, ..
            })) => match message {
                request_response::Message::Request { request, channel, request_id } => {
                    let channel = Responder { reply: Reply::Swarm { id: request_id, channel } };
                    self.emit(Event::Request { peer, data: request, channel }).await;
                }
                request_response::Message::Response { request_id, response } => {
                    if let Some(reply) = self.pending.remove(&request_id) {
                        let _ = reply.send(Ok(response));
                    }
                }
            },
            SwarmEvent::Behaviour(BehaviourEvent::Trades(request_response::Event::OutboundFailure {
                request_id,
                error,
                ..
            })) => {
                if let Some(reply) = self.pending.remove(&request_id) {
                    let _ = reply.send(Err(NetError::Request(error.to_string())));
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Trades(
                request_response::Event::ResponseSent { request_id, .. }
                | request_response::Event::InboundFailure { request_id, .. },
            )) => {
                self.responding.remove(&request_id);
            }
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. })) => {
                // What a peer says it listens on goes into the address book.
                self.book.learn_best(peer_id, &info.listen_addrs);
            }
            SwarmEvent::Behaviour(BehaviourEvent::Peers(event)) => self.on_exchange(event),
            SwarmEvent::Behaviour(BehaviourEvent::Mdns(mdns::Event::Discovered(found))) => {
                // One dial per peer (its addresses together), and none to a peer connected or
                // being dialled: a peer announces TCP and QUIC, and two connections more than
                // `max_per_peer` would be refused and counted as overload.
                let mut by_peer: HashMap<PeerId, Vec<Multiaddr>> = HashMap::new();
                for (peer, addr) in found {
                    self.book.learn(peer, &addr);
                    by_peer.entry(peer).or_default().push(addr);
                }
                for (peer, addresses) in by_peer {
                    if !self.connected.contains(&peer) && self.connected.len() < self.cfg.target_peers {
                        let opts = libp2p::swarm::dial_opts::DialOpts::peer_id(peer)
                            .condition(libp2p::swarm::dial_opts::PeerCondition::DisconnectedAndNotDialing)
                            .addresses(addresses)
                            .build();
                        let _ = self.swarm.dial(opts);
                    }
                }
            }
            _ => {}
        }
    }
}
