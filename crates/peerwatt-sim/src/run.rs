//! Running a scenario: the households' meters publish to the embedded broker, one real node per
//! household trades on the accelerated clock, and afterwards the ledgers and meters are read
//! back into the report.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use peerwatt_audit::{Input, Options as AuditOptions};
use peerwatt_core::{Community, IntervalId, IntervalLength, NodeKey, Price, Timestamp};
use peerwatt_market::VerifiedMemo;
use peerwatt_market::settlement::WorkMemo;
use peerwatt_market::trader::{SETTLE_AFTER_MS, STATEMENT_GOSSIP_MS};
use peerwatt_meter::{History, IntervalTotals};
use peerwatt_meter::{MeterConfig, RoleConfig};
use peerwatt_net::{Hub, InProcessConfig};
use peerwatt_node::config::{ApiSection, Forecast, MarketSection, NetworkSection};
use peerwatt_node::provision::{self, MemberSpec, Provisioned};
use peerwatt_node::{FrameCache, NodeConfig, NodeEvent, RunningNode, Shared};
use thiserror::Error;
use tokio::sync::mpsc;

use crate::broker;
use crate::clock::AcceleratedClock;
use crate::household::{Flows, Household, Profiles, STEP_SECS, STEPS_PER_DAY, Variety, simulate};
use crate::ledgers::{self, LedgerSummary};
use crate::meters::{self, SimMeter};
use crate::report::{AuditCheck, LiveLine, Report};
use crate::rng::Rng;
use crate::scenario::{LIBP2P_UP_TO, NetworkChoice, Scenario, ScenarioError};

/// Days of meter history each node starts with (its forecaster looks back a week).
const HISTORY_DAYS: u64 = 7;

/// How long after its last reading was due the run waits for the simulated meters.
const METER_GRACE: Duration = Duration::from_secs(2);
/// 2021-01-01T00:00:00Z, the start of the profiles' year, ms.
const PROFILE_YEAR_START_MS: u64 = 1_609_459_200_000;
const STEP_MS: u64 = STEP_SECS * 1_000;

/// Why a run failed.
#[derive(Debug, Error)]
pub enum RunError {
    /// The scenario.
    #[error(transparent)]
    Scenario(#[from] ScenarioError),
    /// The embedded profiles.
    #[error("profiles: {0}")]
    Profiles(#[from] crate::profiles::ProfileError),
    /// The embedded broker.
    #[error(transparent)]
    Broker(#[from] broker::BrokerError),
    /// Files of the run.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Why it failed.
        source: std::io::Error,
    },
    /// Writing a member's files.
    #[error("setting up a node: {0}")]
    Provision(#[from] peerwatt_node::FileError),
    /// A node did not start.
    #[error("starting {name}: {source}")]
    Start {
        /// The household.
        name: String,
        /// Why.
        source: peerwatt_node::StartError,
    },
    /// Reading the ledgers back.
    #[error("reading the ledgers: {0}")]
    Ledgers(#[from] ledgers::LedgerReadError),
    /// Computing the report.
    #[error("computing the report: {0}")]
    Kpi(#[from] crate::kpi::KpiError),
    /// The audit of the street could not run.
    #[error("auditing the ledgers: {0}")]
    Audit(#[from] peerwatt_audit::AuditError),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> RunError {
    let what = what.into();
    move |source| RunError::Io { what, source }
}

/// What a run needs besides its scenario.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The scenario.
    pub scenario: Scenario,
    /// Where the report (JSON and SVG) goes.
    pub out: PathBuf,
    /// Keep the nodes' data (keys, ledgers, meter history) here; a temporary directory that
    /// is removed afterwards otherwise.
    pub data_dir: Option<PathBuf>,
    /// Serve the street's dashboards: a page at this address lists the households, each
    /// linking to its node's own dashboard; after the day, the clock stands at its last
    /// moment and the nodes keep serving until Ctrl-C.
    pub serve: Option<String>,
}

/// Whoever shows a run's progress (the CLI prints; tests stay quiet).
pub trait Observer: Send {
    /// A phase of the run starts.
    fn phase(&mut self, what: &str);
    /// Interval `done` of `total` is over.
    fn interval(&mut self, line: &LiveLine, done: u64, total: u64);
    /// The street's dashboards are served at `url` (`--serve`).
    fn serving(&mut self, url: &str) {
        self.phase(&format!("dashboards: {url}"));
    }
}

/// An observer that shows nothing.
#[derive(Debug, Default)]
pub struct Quiet;

impl Observer for Quiet {
    fn phase(&mut self, _: &str) {}
    fn interval(&mut self, _: &LiveLine, _: u64, _: u64) {}
}

/// The times of a run, all on the simulated clock.
#[derive(Debug, Clone, Copy)]
pub struct Timeline {
    /// Where the simulated history (for the forecasters) begins.
    pub history_start: Timestamp,
    /// Where the clock starts: early enough for the first reported interval's trading window.
    pub origin: Timestamp,
    /// The first reported interval's start.
    pub start: Timestamp,
    /// The end of the last reported interval.
    pub end: Timestamp,
}

impl Timeline {
    /// The timeline of `s`.
    pub fn of(s: &Scenario) -> Result<Timeline, ScenarioError> {
        let start = Timestamp(s.first_day()? * 86_400_000 + u64::from(s.start_quarter) * STEP_MS);
        let warmup = u64::from(s.horizon_intervals) + 1;
        Ok(Timeline {
            history_start: Timestamp(start.0 - HISTORY_DAYS * STEPS_PER_DAY * STEP_MS),
            origin: Timestamp(start.0 - warmup * STEP_MS),
            start,
            end: Timestamp(start.0 + s.run_intervals() * STEP_MS),
        })
    }

    /// Steps from the history's start to `t`.
    pub fn steps_to(&self, t: Timestamp) -> usize {
        usize::try_from((t.0 - self.history_start.0) / STEP_MS).unwrap_or(0)
    }

    /// The community interval of the first reported one.
    pub fn first_interval(&self) -> IntervalId {
        IntervalId(self.start.0 / STEP_MS)
    }
}

/// One household's node and meter, set up.
struct Member {
    household: Household,
    provisioned: Provisioned,
    flows: Vec<Flows>,
}

/// Runs the scenario and returns its report (also written to `options.out`).
pub async fn run(options: &RunOptions, observer: &mut dyn Observer) -> Result<Report, RunError> {
    let wall = Instant::now();
    let s = &options.scenario;
    s.check()?;
    let timeline = Timeline::of(s)?;
    observer.phase("reading the household profiles");
    let profiles = Profiles::embedded()?;
    let (temp, data_dir) = data_dir_of(options)?;

    observer.phase("starting the embedded MQTT broker");
    let broker = broker::start(s.households + 1)?;

    observer.phase("setting up the households (keys, certificates, a week of meter history)");
    let api_ip = options.serve.as_deref().map(serve_ip).transpose()?;
    let members = set_up_households(s, &timeline, &profiles, &data_dir, broker.addr, api_ip)?;

    observer.phase(&format!("starting one node per household (real ledgers; network: {})", s.network_used()));
    let clock = Arc::new(AcceleratedClock::new(timeline.origin, s.speed));
    let (nodes, trades, settled) = start_nodes(&members, &clock, &shared_of(s)).await?;
    let street = match &options.serve {
        Some(listen) => {
            // The street's day stays on screen after it ends: its last moment, not the next day.
            clock.stand_at(Timestamp(timeline.end.0 - 1));
            let (url, server) = serve_street(listen, &members, &nodes).await?;
            observer.serving(&url);
            Some((url, server))
        }
        None => None,
    };
    if s.network_in_use() == NetworkChoice::Libp2p {
        // Let the nodes find each other and form the gossip mesh before the clock runs.
        tokio::time::sleep(Duration::from_millis(1_000 + 5 * s.households as u64)).await;
    }

    observer.phase("trading");
    clock.start();
    let period = Duration::from_secs(s.meter_period_secs);
    let meter_messages = Arc::new(AtomicU64::new(0));
    let last_reading = Timestamp(timeline.end.0 + 2 * u64::try_from(period.as_millis()).unwrap_or(0));
    let mut publisher = tokio::spawn(meters::publish(
        meters_of(&members, &timeline),
        clock.clone(),
        broker.addr,
        timeline.origin,
        last_reading,
        period,
        meter_messages.clone(),
    ));
    show_intervals(&timeline, &clock, &members, trades, observer).await;
    // The run ends with its clock: meters that fell behind (a host too busy for the speed)
    // are stopped a little after their last reading was due, not waited for. What they did
    // not publish shows in the report as intervals the nodes could not measure.
    let due = clock.instant_of(last_reading) + METER_GRACE;
    if tokio::time::timeout_at(due.into(), &mut publisher).await.is_err() {
        publisher.abort();
        tracing::warn!("the simulated meters fell behind the clock; stopped at the end of the run");
        observer.phase("the simulated meters fell behind the clock (this host is too busy for this speed)");
    }
    let published = meter_messages.load(Ordering::Relaxed);
    // The last readings close the last intervals in every node's meter history.
    tokio::time::sleep(Duration::from_millis(300)).await;
    if let Some((url, server)) = street {
        observer.phase(&format!(
            "the day is over; the clock stands at its last moment and the dashboards stay up at {url} until Ctrl-C"
        ));
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %e, "cannot wait for Ctrl-C; stopping now");
        }
        server.abort();
    } else if s.wait_for_settlement {
        observer.phase("settling: every node states its intervals in its hourly slot and settles them once its counterparties' statements are in");
        wait_until_settled(&settled, &timeline, &clock).await;
    }

    observer.phase("stopping the nodes (each drains: open requests answered, answers written)");
    let trading_secs = wall.elapsed().as_secs_f64();
    stop_all(nodes).await;

    observer.phase("verifying every ledger and settling against the meters");
    let names: Vec<(String, String)> =
        members.iter().map(|m| (m.provisioned.peer_id.clone(), m.household.name.clone())).collect();
    let configs: Vec<&NodeConfig> = members.iter().map(|m| &m.provisioned.config).collect();
    let summary: LedgerSummary = ledgers::read(&configs, &names)?;
    let audit = if s.audit {
        observer.phase("auditing the street: `peerwatt audit` over every node's ledger");
        Some(audit_street(s, &configs, &options.out)?)
    } else {
        None
    };
    let reported = timeline.steps_to(timeline.start)..timeline.steps_to(timeline.end);
    let mut report = Report::build(crate::report::Parts {
        scenario: s,
        timeline: &timeline,
        households: &members.iter().map(|m| m.household.clone()).collect::<Vec<_>>(),
        flows: &members.iter().map(|m| m.flows[reported.clone()].to_vec()).collect::<Vec<_>>(),
        ledgers: &summary,
        audit,
        meter_messages: published,
        node_counters: &summed_counters(&configs),
        wall_secs: wall.elapsed().as_secs_f64(),
        trading_secs,
        data_dir: options.data_dir.clone(),
    })?;
    report.write(&options.out).map_err(io(format!("writing the report to {}", options.out.display())))?;
    drop(temp);
    Ok(report)
}

/// `peerwatt audit` over every node's ledger, its report written to `out/audit/`.
fn audit_street(s: &Scenario, configs: &[&NodeConfig], out: &std::path::Path) -> Result<AuditCheck, RunError> {
    let community = community_of(s, &NodeKey::from_seed(&seed_bytes(s.seed)))?;
    let inputs: Vec<Input> = configs.iter().map(|c| Input::Store(c.resolve(&c.node.ledger_dir))).collect();
    let report = peerwatt_audit::audit(&inputs, &AuditOptions::new(community))?;
    let dir = out.join("audit");
    report.write_to(&dir).map_err(io(format!("writing the audit to {}", dir.display())))?;
    Ok(AuditCheck::of(&report, dir))
}

/// Every node's status counters (written when it stopped), summed. A node whose status file
/// cannot be read is left out, with a warning: the counters only judge the run.
fn summed_counters(configs: &[&NodeConfig]) -> peerwatt_node::Counters {
    let mut sum = peerwatt_node::Counters::default();
    for config in configs {
        match peerwatt_node::Status::read(&config.status_file()) {
            Ok(status) => status.counters.iter().for_each(|(name, n)| sum.add(name, n)),
            Err(e) => tracing::warn!(node = %config.node.name, error = %e, "cannot read the node's status file"),
        }
    }
    sum
}

/// Where the nodes' data goes: `--data-dir`, or a temporary directory (returned too, so that
/// it lives until the report is written).
fn data_dir_of(options: &RunOptions) -> Result<(Option<tempfile::TempDir>, PathBuf), RunError> {
    let (temp, dir) = match &options.data_dir {
        Some(dir) => (None, dir.clone()),
        None => {
            let t = tempfile::Builder::new().prefix("peerwatt-demo-").tempdir().map_err(io("a temporary directory"))?;
            let dir = t.path().to_owned();
            (Some(t), dir)
        }
    };
    std::fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
    Ok((temp, dir))
}

/// Draws the households, simulates their flows from a week before the run to its end, and
/// writes each one's node directory and meter history.
fn set_up_households(
    s: &Scenario,
    timeline: &Timeline,
    profiles: &Profiles,
    data_dir: &std::path::Path,
    broker: std::net::SocketAddr,
    api: Option<std::net::IpAddr>,
) -> Result<Vec<Member>, RunError> {
    let variety = Variety {
        pv_share_pct: s.pv_share_pct,
        battery_share_pct: s.battery_share_pct,
        limits_share_pct: s.limits_share_pct,
        feed_in: s.feed_in_tariff,
        retail: s.retail_tariff,
    };
    let steps = timeline.steps_to(timeline.end) as u64 + 2;
    let first_step = (timeline.history_start.0 - PROFILE_YEAR_START_MS) / STEP_MS;
    let admin = NodeKey::from_seed(&seed_bytes(s.seed));
    let community = community_of(s, &admin)?;
    let mut members: Vec<Member> = Vec::with_capacity(s.households);
    for i in 0..s.households {
        let household = Household::draw(s.seed, i, &variety);
        let flows = simulate(&household, profiles, s.seed, first_step, steps);
        let config = node_config(s, &household, broker, api);
        let port = peerwatt_net::free_port().map_err(io("a free port"))?;
        let bootstrap = bootstrap_of(&members, s.seed, i);
        let spec = MemberSpec { port, bootstrap: &bootstrap, config };
        let provisioned = provision::member(&data_dir.join(&household.name), &community, &admin, spec)?;
        write_history(&provisioned.config, timeline, &flows)?;
        members.push(Member { household, provisioned, flows });
    }
    Ok(members)
}

/// The simulated meters, from the clock's origin on, their counters carrying on from the
/// history.
fn meters_of(members: &[Member], timeline: &Timeline) -> Arc<[SimMeter]> {
    let live = timeline.steps_to(timeline.origin);
    members
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let before = &m.flows[..live];
            let base = (
                10_000_000 + 1_000 * i as u64 + before.iter().map(|f| f.import_wh).sum::<u64>(),
                2_000_000 + 500 * i as u64 + before.iter().map(|f| f.export_wh).sum::<u64>(),
            );
            SimMeter::new(&m.household.name, m.household.meter, timeline.origin, Arc::from(&m.flows[live..]), base)
        })
        .collect()
}

/// Trades as the live view sees them: interval, energy, price.
type TradeFeed = mpsc::UnboundedReceiver<(u64, u64, u64)>;

/// What the nodes of the run share: verified signatures (if the scenario says so) and the
/// in-process network (if the run uses it).
fn shared_of(s: &Scenario) -> Shared {
    let network = (s.network_in_use() == NetworkChoice::InProcess).then(|| {
        Hub::new(InProcessConfig {
            latency: Duration::from_millis(s.network_latency_ms),
            loss_per_million: s.network_loss_per_million,
            seed: s.seed,
            ..InProcessConfig::default()
        })
    });
    Shared {
        verified: s.share_verified_signatures.then(|| Arc::new(VerifiedMemo::default())),
        frames: s.share_verified_signatures.then(|| Arc::new(FrameCache::default())),
        settlement_work: s.share_verified_signatures.then(|| Arc::new(WorkMemo::default())),
        network,
    }
}

/// Starts one node per household on `clock`, and a feed of the trades they record.
async fn start_nodes(
    members: &[Member],
    clock: &Arc<AcceleratedClock>,
    shared: &Shared,
) -> Result<(Vec<RunningNode>, TradeFeed, Settled), RunError> {
    let mut nodes: Vec<RunningNode> = Vec::with_capacity(members.len());
    let (trade_tx, trade_rx) = mpsc::unbounded_channel();
    let settled: Settled = Arc::new(Mutex::new(vec![BTreeMap::new(); members.len()]));
    for (i, m) in members.iter().enumerate() {
        let node = peerwatt_node::start_shared(&m.provisioned.config, clock.clone(), shared.clone())
            .await
            .map_err(|source| RunError::Start { name: m.household.name.clone(), source })?;
        forward_events(&node, trade_tx.clone(), Arc::clone(&settled), i);
        nodes.push(node);
    }
    Ok((nodes, trade_rx, settled))
}

/// Per node: the intervals it settled, and whether its latest settlement was complete.
type Settled = Arc<Mutex<Vec<BTreeMap<u64, bool>>>>;

/// Waits until every node has settled every reported interval completely, or the clock has
/// passed the last settlement deadline (an interval closes, is stated within the hour and
/// settled at the latest two hours after its end; then the report shows what is missing).
async fn wait_until_settled(settled: &Settled, timeline: &Timeline, clock: &AcceleratedClock) {
    let (first, count) = (timeline.first_interval().0, (timeline.end.0 - timeline.start.0) / STEP_MS);
    let deadline = Timestamp(timeline.end.0 + SETTLE_AFTER_MS + STATEMENT_GOSSIP_MS);
    let all_settled = || {
        let nodes = settled.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        nodes.iter().all(|own| (first..first + count).all(|i| own.get(&i) == Some(&true)))
    };
    while !all_settled() && peerwatt_core::Clock::now(clock) < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The peers household `i` dials at start: the one before it and two others before it,
/// drawn from the seed. Spread like this, no node becomes everybody's bootstrap peer, and
/// every node is reachable from the first.
fn bootstrap_of(earlier: &[Member], seed: u64, i: usize) -> Vec<String> {
    let Some(previous) = earlier.last() else { return Vec::new() };
    let mut rng = Rng::new(seed ^ 0xB007_5742, i as u64);
    let mut picks = vec![previous.provisioned.address.clone()];
    for _ in 0..2 {
        let pick = usize::try_from(rng.range(0, earlier.len() as i64 - 1)).unwrap_or(0);
        let address = &earlier[pick].provisioned.address;
        if !picks.contains(address) {
            picks.push(address.clone());
        }
    }
    picks
}

/// Shows each reported interval once it is over: its trades (from the feed) and the street's
/// grid import and export.
async fn show_intervals(
    timeline: &Timeline,
    clock: &AcceleratedClock,
    members: &[Member],
    mut trades: TradeFeed,
    observer: &mut dyn Observer,
) {
    let mut live: BTreeMap<u64, LiveLine> = BTreeMap::new();
    let total = timeline.steps_to(timeline.end) - timeline.steps_to(timeline.start);
    for k in 0..total {
        let start = Timestamp(timeline.start.0 + k as u64 * STEP_MS);
        tokio::time::sleep_until(clock.instant_of(Timestamp(start.0 + STEP_MS)).into()).await;
        while let Ok((interval, energy, price)) = trades.try_recv() {
            live.entry(interval).or_default().add_trade(energy, price);
        }
        let at = timeline.steps_to(start);
        let mut line = live.get(&(start.0 / STEP_MS)).cloned().unwrap_or_default();
        line.start = start;
        for m in members {
            line.import_wh += m.flows[at].import_wh;
            line.export_wh += m.flows[at].export_wh;
        }
        observer.interval(&line, k as u64 + 1, total as u64);
    }
}

/// The community of the scenario, administered by `admin`, its rules signed as version 1.
fn community_of(s: &Scenario, admin: &NodeKey) -> Result<Community, RunError> {
    let name = "Demo Street".to_owned();
    Ok(Community {
        id: Community::derive_id(&admin.public(), &name),
        name,
        admin: admin.public(),
        interval: IntervalLength::from_secs(STEP_SECS).map_err(|e| ScenarioError::Invalid(e.to_string()))?,
        gate_closure: Duration::from_secs(s.gate_closure_secs),
        horizon: s.horizon_intervals,
        feed_in: Price(s.feed_in_tariff),
        retail: Price(s.retail_tariff),
        bootstrap: Vec::new(),
        sharing: peerwatt_core::Sharing::default(),
        rules: Default::default(),
    }
    .signed_by(admin, IntervalId(0), Timestamp(0)))
}

/// 32 seed bytes for the community admin's key, from the scenario seed (the same seed gives
/// the same community id).
fn seed_bytes(seed: u64) -> [u8; 32] {
    let mut r = crate::rng::Rng::new(seed, 0xAD_1117);
    let mut out = [0u8; 32];
    for chunk in out.chunks_mut(8) {
        chunk.copy_from_slice(&r.next_u64().to_le_bytes());
    }
    out
}

/// A household's node configuration: its strategy's timing and limits, and its meter on the
/// embedded broker.
fn node_config(s: &Scenario, h: &Household, broker: std::net::SocketAddr, api: Option<std::net::IpAddr>) -> NodeConfig {
    let market = MarketSection {
        enabled: true,
        tick_ms: s.tick_ms,
        reprice_ms: s.reprice_secs * 1_000,
        request_timeout_ms: 2_000,
        forecast: Forecast::SameTimeOfDay,
        forecast_days: HISTORY_DAYS,
        min_sell_price: h.min_sell_price,
        max_buy_price: h.max_buy_price,
        ..MarketSection::default()
    };
    let mut meter = MeterConfig::new(&broker.ip().to_string(), broker.port());
    meter.client_id = Some(h.name.clone());
    meter.stale_after_secs = 2 * STEP_SECS;
    meter.max_gap_secs = 2 * s.meter_period_secs + 30;
    meter.history_intervals = usize::try_from((HISTORY_DAYS + 1) * STEPS_PER_DAY).unwrap_or(usize::MAX);
    meter.grid = Some(RoleConfig::new(meters::format_of(h.meter), meters::topics(h.meter, &h.name)));
    // Each node looks for a few peers, enough for a gossip mesh, not the whole street: on one
    // machine every connection of every node costs the same two cores.
    let network = NetworkSection {
        heartbeat_ms: s.heartbeat_ms,
        discovery_ms: 2_000,
        target_peers: 8,
        ..NetworkSection::default()
    };
    // Nobody watches a large street's status files while it runs (the report reads the last
    // one, written when each node stops), and each lists every peer: written every 30 s
    // instead of every second (at 500 households every 5 s was still 5.7 % of the CPU).
    let status_every_ms = if s.households > LIBP2P_UP_TO { 30_000 } else { 1_000 };
    let builder =
        NodeConfig::builder(&h.name).status_every_ms(status_every_ms).market(market).meter(meter).network(network);
    match api {
        // Each node's dashboard on a port of its own, on the street page's address.
        Some(ip) => builder
            .api(ApiSection { listen: std::net::SocketAddr::new(ip, 0).to_string(), ..ApiSection::default() })
            .build(),
        None => builder.build(),
    }
}

/// The address `--serve` names, whose IP the nodes' dashboards listen on too.
fn serve_ip(listen: &str) -> Result<std::net::IpAddr, RunError> {
    use std::net::ToSocketAddrs;
    listen.to_socket_addrs().ok().and_then(|mut a| a.next()).map(|a| a.ip()).ok_or_else(|| RunError::Io {
        what: format!("--serve {listen}"),
        source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "not an address and port (e.g. 127.0.0.1:8480)"),
    })
}

/// Serves the page that lists the street's households, each linking to its node's dashboard.
async fn serve_street(
    listen: &str,
    members: &[Member],
    nodes: &[RunningNode],
) -> Result<(String, tokio::task::JoinHandle<()>), RunError> {
    let listener =
        tokio::net::TcpListener::bind(listen).await.map_err(io(format!("serving the dashboards on {listen}")))?;
    let addr = listener.local_addr().map_err(io(format!("serving the dashboards on {listen}")))?;
    let mut houses = Vec::new();
    for (m, node) in members.iter().zip(nodes) {
        let h = &m.household;
        let Some(api) = node.api_address() else { continue };
        let pv = if h.pv_wp > 0 { format!("{:.1} kWp PV", h.pv_wp as f64 / 1000.0) } else { "no PV".into() };
        let battery = if h.battery.is_some() { ", a battery" } else { "" };
        // Beyond loopback a node answers only with a token: the link carries a read token.
        let token = match addr.ip().is_loopback() {
            true => None,
            false => Some(street_token(&m.provisioned.config)?),
        };
        houses.push(peerwatt_node::api::street::House {
            name: h.name.clone(),
            about: format!("{}, {pv}{battery}", h.load.label()),
            port: api.port(),
            token,
        });
    }
    let host = if addr.ip().is_unspecified() { "127.0.0.1".to_owned() } else { addr.ip().to_string() };
    let server = peerwatt_node::api::street::spawn(listener, houses, host.clone());
    Ok((format!("http://{host}:{}/", addr.port()), server))
}

/// A read token for the street's page to hand out (the demo's nodes on a LAN).
fn street_token(cfg: &NodeConfig) -> Result<String, RunError> {
    let section = cfg.api.clone().unwrap_or_default();
    let path = cfg.resolve(&section.tokens_file);
    let now = u64::try_from(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_millis(),
    )
    .unwrap_or(0);
    peerwatt_node::api::tokens::create(&path, "demo-street", peerwatt_node::api::tokens::Scope::Read, now).map_err(
        |e| RunError::Io {
            what: format!("making a token in {}", path.display()),
            source: std::io::Error::other(e.to_string()),
        },
    )
}

/// Writes the week before the clock's origin into the node's meter history, as a meter that
/// had been running would have: complete intervals from the counters.
fn write_history(cfg: &NodeConfig, timeline: &Timeline, flows: &[Flows]) -> Result<(), RunError> {
    let path = cfg.meter_history_file();
    let mut history = History::open(&path, usize::try_from((HISTORY_DAYS + 1) * STEPS_PER_DAY).unwrap_or(768));
    let totals: Vec<IntervalTotals> = flows[..timeline.steps_to(timeline.origin)]
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let start = Timestamp(timeline.history_start.0 + i as u64 * STEP_MS);
            IntervalTotals {
                interval: IntervalId(start.0 / STEP_MS),
                start,
                imported: peerwatt_core::Wh(f.import_wh),
                exported: peerwatt_core::Wh(f.export_wh),
                complete: true,
                covered_ms: STEP_MS,
                counter_reset: false,
                source: peerwatt_meter::interval::Source::Counters,
            }
        })
        .collect();
    history.extend(&totals).map_err(io(format!("writing {}", path.display())))
}

/// Forwards each trade a node records as maker (so every trade is counted once): interval,
/// energy, price; and notes node `i`'s settlements.
fn forward_events(node: &RunningNode, tx: mpsc::UnboundedSender<(u64, u64, u64)>, settled: Settled, i: usize) {
    let mut events = node.subscribe();
    tokio::spawn(async move {
        loop {
            match events.recv().await {
                Ok(NodeEvent::TradeRecorded { as_maker: true, interval, energy, price, .. }) => {
                    // The live view may have finished; the settlements are still noted.
                    let _ = tx.send((interval.0, energy.0, price.0));
                }
                Ok(NodeEvent::Settled { interval, complete, .. }) => {
                    let mut nodes = settled.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    if let Some(own) = nodes.get_mut(i) {
                        own.insert(interval.0, complete);
                    }
                }
                Ok(_) => {}
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "the live view missed trade events (the report reads the ledgers)");
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        }
    });
}

/// Stops every node at once and waits for all.
async fn stop_all(nodes: Vec<RunningNode>) {
    let mut set = tokio::task::JoinSet::new();
    for node in nodes {
        set.spawn(node.shutdown());
    }
    while set.join_next().await.is_some() {}
}
