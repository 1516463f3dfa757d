//! peerwatt-node: the daemon. It wires the meter (MQTT), the market (pure state machines), the
//! network (libp2p) and the ledger (sled) together, and is the only crate that knows them all.
//!
//! [`start`] brings a node up from its `node.toml` and returns a [`RunningNode`] to
//! [`RunningNode::shutdown`] (or wait on). The decisions are the trading core's
//! ([`peerwatt_market::Trader`], sans-IO); one task, the actor (`actor`), drives it, hands each
//! turn's writes to the committer (`committer`, which owns the ledger and the state database),
//! signs and records tree heads (`heads`) and writes the status (`status`). The network and
//! the meter client run as their own tasks and talk to it through channels; gossip passes a
//! screening worker (`screen`) on its way, which checks signatures and reports the verdict.

mod actor;
pub mod api;
mod committer;
pub mod community_file;
pub mod config;
mod heads;
pub mod home_assistant;
pub mod metrics;
pub mod provision;
mod screen;
pub mod state;
pub mod status;
mod topics;

use std::sync::Arc;
use std::time::Duration;

use peerwatt_core::keys::KeyError;
use peerwatt_core::{CertError, Clock, NodeKey};
use peerwatt_ledger::{Ledger, LedgerError, SledStore, Store};
use peerwatt_market::{Forecaster, Trader, TraderConfig, VerifiedMemo};
use peerwatt_meter::{History, MeterHandle};
use peerwatt_net::{Multiaddr, NetConfig, NetError};
use thiserror::Error;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::JoinHandle;

pub use config::{FileError, NodeConfig};
pub use screen::FrameCache;
pub use state::{State, StateError};
pub use status::{Counters, Status};
pub use topics::{NodeCommand, NodeEvent, Topics};

/// Why a node did not start.
#[derive(Debug, Error)]
pub enum StartError {
    /// A configuration or community file.
    #[error(transparent)]
    File(#[from] FileError),
    /// node.toml names no community.
    #[error("the configuration has no [community] section: the node is not a member of a community yet")]
    NoCommunity,
    /// The node key.
    #[error("node key: {0}")]
    Key(#[from] KeyError),
    /// The membership certificate does not admit this node.
    #[error("membership certificate: {0}")]
    Membership(#[from] CertError),
    /// The ledger.
    #[error("ledger: {0}")]
    Ledger(#[from] LedgerError),
    /// The node state database.
    #[error(transparent)]
    State(#[from] StateError),
    /// The network.
    #[error("network: {0}")]
    Net(#[from] NetError),
    /// A listen or bootstrap address.
    #[error("bad multiaddress {0:?}")]
    Address(String),
    /// The meter settings.
    #[error("meter: {0}")]
    Meter(#[from] peerwatt_meter::ConfigError),
    /// `[home_assistant]` cannot work.
    #[error(transparent)]
    HomeAssistant(#[from] home_assistant::HomeAssistantError),
    /// The HTTP interface cannot listen where `[api] listen` says.
    #[error("cannot start the HTTP interface on {listen}: {source}")]
    Api {
        /// The address.
        listen: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

impl StartError {
    /// What the user can do about it, in one line.
    pub fn hint(&self) -> &'static str {
        match self {
            StartError::File(_) => "the file named above must exist and be readable; `peerwatt init` writes node.toml",
            StartError::NoCommunity | StartError::Membership(_) => {
                "`peerwatt community check --config node.toml` checks the membership; ask your community admin (docs/operations.md)"
            }
            StartError::Key(_) => "the key file must exist and be private to its owner (mode 0600)",
            StartError::Ledger(_) | StartError::State(_) => {
                "is another node running on this data directory? `peerwatt ledger verify` checks the ledger (docs/operations.md)"
            }
            StartError::Net(NetError::Listen { .. }) => {
                "change [network] listen in node.toml (docs/operations.md \"Network\")"
            }
            StartError::Net(_) => "see docs/operations.md \"Network\"",
            StartError::Address(_) => {
                "[network] addresses are multiaddrs, e.g. \"/ip4/0.0.0.0/tcp/4001\" or \"/ip4/0.0.0.0/udp/4001/quic-v1\" (docs/operations.md \"Network\")"
            }
            StartError::Meter(_) => {
                "`peerwatt meter watch --config node.toml` checks the meter settings (docs/meters.md)"
            }
            StartError::HomeAssistant(_) => "see docs/interfaces.md \"Home Assistant\"",
            StartError::Api { .. } => {
                "another program uses that port: change [api] listen in node.toml (docs/interfaces.md)"
            }
        }
    }
}

/// A node that is running.
#[derive(Debug)]
pub struct RunningNode {
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
    meter: Option<MeterHandle>,
    peer_id: String,
    commands: mpsc::Sender<NodeCommand>,
    events: broadcast::Sender<NodeEvent>,
    /// The HTTP interface's task and where it listens.
    api: Option<(JoinHandle<()>, std::net::SocketAddr)>,
    /// Home Assistant's publisher, and its stop (after the node's last status).
    home_assistant: Option<(home_assistant::HomeAssistant, watch::Sender<bool>)>,
}

impl RunningNode {
    /// Where the HTTP interface listens (`[api]`), if it is on.
    pub fn api_address(&self) -> Option<std::net::SocketAddr> {
        self.api.as_ref().map(|(_, addr)| *addr)
    }

    /// The node's public id (its PeerId).
    pub fn peer_id(&self) -> &str {
        &self.peer_id
    }

    /// Places an order by hand (outside the strategy); returns its id once it is recorded and
    /// published, and after the node has sent requests for whatever it crosses.
    pub async fn place_order(
        &self,
        interval: peerwatt_core::IntervalId,
        side: peerwatt_core::Side,
        energy: peerwatt_core::Wh,
        price: peerwatt_core::Price,
    ) -> Result<peerwatt_core::Hash, String> {
        let (reply, rx) = oneshot::channel();
        let command = NodeCommand::PlaceOrder { interval, side, energy, price, reply };
        self.commands.send(command).await.map_err(|_| "the node has stopped".to_owned())?;
        rx.await.map_err(|_| "the node has stopped".to_owned())?
    }

    /// Subscribes to the node's events (trades recorded, …).
    pub fn subscribe(&self) -> broadcast::Receiver<NodeEvent> {
        self.events.subscribe()
    }

    /// Stops the node gracefully and waits until everything is written: it stops trading,
    /// cancels its orders, waits (a request timeout at most) for the answers to the requests
    /// it sent, and lets the answers it gave reach their takers.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
        if let Some((api, _)) = self.api {
            let _ = api.await;
        }
        if let Some((publisher, stop)) = self.home_assistant {
            let _ = stop.send(true);
            publisher.stopped().await;
        }
        if let Some(meter) = self.meter {
            meter.shutdown().await;
        }
    }
}

fn addresses(list: &[String]) -> Result<Vec<Multiaddr>, StartError> {
    list.iter().map(|a| a.parse().map_err(|_| StartError::Address(a.clone()))).collect()
}

/// What the nodes of one process may share. A node on its own needs none of it; the
/// simulator runs hundreds of nodes in one process.
#[derive(Debug, Clone, Default)]
pub struct Shared {
    /// Signatures of gossiped messages verified by any node of the process, each checked
    /// once for all of them (see [`peerwatt_market::memo`]).
    pub verified: Option<Arc<VerifiedMemo>>,
    /// The in-process network the nodes of the process trade over instead of libp2p (see
    /// [`peerwatt_net::inproc`]).
    pub network: Option<Arc<peerwatt_net::Hub>>,
    /// Gossip frames decoded once for all the nodes of the process (see [`FrameCache`]).
    pub frames: Option<Arc<FrameCache>>,
    /// Each settled interval's community-wide figures worked out once for all the nodes of
    /// the process (see [`peerwatt_market::settlement::WorkMemo`]).
    pub settlement_work: Option<Arc<peerwatt_market::settlement::WorkMemo>>,
}

/// Starts a node from its configuration, with `clock` as its only source of time.
pub async fn start(cfg: &NodeConfig, clock: Arc<dyn Clock>) -> Result<RunningNode, StartError> {
    start_shared(cfg, clock, Shared::default()).await
}

/// Starts a node like [`start`], sharing `shared` with the other nodes of the process.
pub async fn start_shared(cfg: &NodeConfig, clock: Arc<dyn Clock>, shared: Shared) -> Result<RunningNode, StartError> {
    let store = SledStore::open(&cfg.resolve(&cfg.node.ledger_dir)).map_err(LedgerError::from)?;
    start_with_store(cfg, clock, shared, store).await
}

/// Starts a node like [`start_shared`] with its ledger in `store` (the daemon's is sled in
/// the data directory; a test may pass a memory store, and keep a handle to it by passing an
/// `Arc`).
pub async fn start_with_store<S: Store + 'static>(
    cfg: &NodeConfig,
    clock: Arc<dyn Clock>,
    shared: Shared,
    store: S,
) -> Result<RunningNode, StartError> {
    let section = cfg.community.as_ref().ok_or(StartError::NoCommunity)?;
    let key = NodeKey::load(&cfg.resolve(&cfg.node.key_file))?;
    let community = community_file::load_community(&cfg.resolve(&section.file))?;
    let cert = community_file::load_certificate(&cfg.resolve(&section.certificate))?;
    community.check_cert(&cert, &key.public(), clock.now())?;
    let ledger = Arc::new(Ledger::open(store, NodeKey::from_seed(&key.secret_seed()), clock.clone())?);
    let state = State::open(&cfg.state_dir())?;
    let api_ledger: Arc<dyn api::LedgerAccess> = ledger.clone();
    let flush_times = Arc::new(metrics::Durations::default());
    let api_me = key.public();
    let api_interval_ms = community.interval.millis();

    // The meter: its interval is the community's.
    let (meter_tx, meter_rx) = mpsc::channel(4096);
    let mut observed = Vec::new();
    let mut recent = Vec::new();
    let meter = match &cfg.meter {
        Some(m) => {
            m.require_grid()?;
            let mut m = m.clone();
            m.interval_secs = community.interval.secs();
            let history = History::open(&cfg.meter_history_file(), m.history_intervals);
            observed = history.items().map(actor::observed).collect();
            // Intervals closed before a stop may not be stated yet (statements wait for the
            // node's hourly slot): those that can still be settled are offered again: this
            // node states them in its next slot and the members theirs in their next, both
            // within the statement window (older ones would be refused by the members, and
            // settled on this node's statement alone for good).
            let format = m.grid.as_ref().map_or("none", |g| g.format.name());
            let settleable = peerwatt_market::STATEMENT_MAX_AGE_MS - 2 * peerwatt_market::trader::STATEMENT_GOSSIP_MS;
            let window_start = clock.now().0.saturating_sub(settleable);
            recent =
                history.items().filter(|t| t.start.0 >= window_start).map(|t| actor::measured(t, format)).collect();
            Some(peerwatt_meter::spawn(&m, m.pipeline()?, m.accountant()?, history, clock.clone(), meter_tx)?)
        }
        None => None,
    };
    let forecaster = Forecaster::with_method(&community, observed, cfg.market.forecast_method());

    let topics = Topics::of(&community);
    let mut bootstrap = addresses(&community.bootstrap)?;
    bootstrap.extend(addresses(&cfg.network.bootstrap)?);
    let event_queue = NetConfig::default().event_queue;
    let net_cfg = NetConfig {
        listen: addresses(&cfg.network.listen)?,
        bootstrap,
        mdns: cfg.network.mdns,
        topics: topics.all(),
        heartbeat: cfg.network.heartbeat(),
        request_timeout: Duration::from_millis(cfg.market.request_timeout_ms.max(100)),
        discovery_interval: Duration::from_millis(cfg.network.discovery_ms.max(100)),
        target_peers: cfg.network.target_peers.max(1),
        limits: cfg.network.limits(),
        event_queue,
    };
    let keypair = peerwatt_net::keypair_of(&key).map_err(|e| NetError::Start(e.to_string()))?;
    let (net, net_events) = match &shared.network {
        Some(hub) => peerwatt_net::spawn_in_process(hub, keypair.public().to_peer_id(), topics.all()),
        None => peerwatt_net::spawn(keypair, net_cfg).await?,
    };

    let peer_id = key.public().to_string();
    let rate = clock.rate().max(1);
    let trader_cfg = TraderConfig {
        enabled: cfg.market.enabled,
        limits: cfg.effective_limits(),
        reprice_ms: cfg.market.reprice_ms,
        // The timeout is real time; the core compares it with times of the node's clock.
        request_timeout_ms: cfg.market.request_timeout_ms.saturating_mul(u64::from(rate)),
        clock_rate: rate,
    };
    let next_request = state.next_request_seq()?;
    let mut trader =
        Trader::new(key, community.clone(), cert.clone(), forecaster, trader_cfg, next_request, shared.verified);
    if let Some(memo) = shared.settlement_work {
        trader.share_settlement_work(memo);
    }
    let damaged = restore(&mut trader, &ledger, &state, clock.now())?;
    trader.restate(recent);
    let screen = screen::Screen {
        validator: trader.screener(),
        topics: topics.clone(),
        clock: clock.clone(),
        net: net.clone(),
        frames: shared.frames.clone(),
    };
    let inbound = screen::spawn(screen, net_events, event_queue);

    // Home Assistant's settings are checked before the node trades, too.
    let ha_device = match (&cfg.home_assistant, &cfg.meter) {
        (Some(section), Some(_)) => Some(home_assistant::Device {
            node_id: section.checked_node_id(&cfg.node.name)?,
            name: cfg.node.name.clone(),
            public_id: peer_id.clone(),
            version: api::VERSION.to_owned(),
        }),
        (Some(_), None) => return Err(home_assistant::HomeAssistantError::NoBroker.into()),
        (None, _) => None,
    };
    // The HTTP interface listens before the node trades: a busy port is a start error.
    let api_listener = match &cfg.api {
        Some(section) => {
            let bound = api::bind(section).await;
            Some(bound.map_err(|source| StartError::Api { listen: section.listen.clone(), source })?)
        }
        None => None,
    };

    let (command_tx, command_rx) = mpsc::channel(256);
    let (events, _) = broadcast::channel(4096);
    let mut reporter = status::Reporter::new(cfg.status_file());
    if meter.is_some() {
        reporter.meter("connecting".into());
    }
    let published = reporter.subscribe();
    let ha_status = reporter.subscribe();
    let mut node = actor::Node::new(actor::Parts {
        trader,
        committer: committer::Committer::new(ledger, state).timed(flush_times.clone()),
        clock,
        community,
        cert,
        market: cfg.market.clone(),
        net,
        reporter,
        ban_after: cfg.network.ban_after_rejects,
        status_every_ms: cfg.node.status_every_ms,
        events: events.clone(),
        meter_format: cfg.meter.as_ref().and_then(|m| m.grid.as_ref()).map_or("none", |g| g.format.name()).to_owned(),
    });
    if damaged > 0 {
        node.damaged_records(damaged as u64);
    }
    let meter_events = meter.as_ref().map(|_| meter_rx);
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let api = match (api_listener, &cfg.api) {
        (Some(listener), Some(section)) => {
            let addr =
                listener.local_addr().map_err(|source| StartError::Api { listen: section.listen.clone(), source })?;
            let context = api::Api {
                status: published,
                commands: command_tx.clone(),
                limits_file: cfg.limits_file(),
                ledger: api_ledger.clone(),
                me: api_me,
                interval_ms: api_interval_ms,
                timings: api::exposition::Timings { flushes: flush_times.clone(), ..Default::default() },
                meter_history: cfg.meter_history_file(),
                tokens: cfg.resolve(&section.tokens_file),
                trust_loopback: section.trust_loopback,
                timeout: Duration::from_millis(section.timeout_ms.max(1)),
                verification: Default::default(),
            };
            tracing::info!(%addr, "HTTP interface listening");
            Some((api::spawn(listener, context, section.max_body_bytes, shutdown_rx.clone()), addr))
        }
        _ => None,
    };
    let home_assistant = match (ha_device, &cfg.home_assistant, &cfg.meter) {
        (Some(device), Some(section), Some(broker)) => {
            let (stop, stopped) = watch::channel(false);
            Some((home_assistant::spawn(broker, section, device, ha_status, stopped)?, stop))
        }
        _ => None,
    };
    let task = tokio::spawn(node.run(inbound, meter_events, command_rx, shutdown_rx));
    Ok(RunningNode { shutdown: shutdown_tx, task, meter, peer_id, commands: command_tx, events, api, home_assistant })
}

/// Rebuilds the core's state from the ledger (own orders, agreed trades) and the state
/// database (requests whose outcome is unknown), after a restart or a crash. Returns how many
/// persisted requests could not be read.
fn restore<S: Store>(
    trader: &mut Trader,
    ledger: &Ledger<S>,
    state: &State,
    now: peerwatt_core::Timestamp,
) -> Result<usize, StartError> {
    let len = ledger.len()?;
    let (pending, damaged) = state.pending_requests();
    if damaged > 0 {
        tracing::warn!(damaged, "unreadable pending requests in the node state were skipped");
    }
    // The entries are read one at a time, in one pass: a ledger of years is not held whole.
    let (mut unreadable, mut recorded) = (None, 0usize);
    let entries = (0..len).map_while(|seq| ledger.entry(seq).map_err(|e| unreadable = Some(e)).ok()).map(|entry| {
        let body = entry.body();
        if body.kind == peerwatt_core::EntryKind::TradeAgreed {
            recorded += 1;
        }
        (body.kind, body.payload.clone())
    });
    let settled = trader.restore(entries, pending, now);
    if let Some(e) = unreadable {
        return Err(e.into());
    }
    if let Err(e) = state.forget_requests(&settled) {
        tracing::warn!(error = %e, "cannot forget requests recorded before the restart");
    }
    // The restored trades' effects (status, events) are carried out with the actor's first turn.
    tracing::info!(
        entries = len,
        trades = recorded,
        pending_requests = trader.pending_requests(),
        "state restored from the ledger"
    );
    Ok(damaged)
}
