//! A neighbourhood of real `peerwatt run` processes on loopback: a real mosquitto, a community
//! made with the CLI, fake meters publishing Tasmota SML payloads, and checks over the
//! ledgers the nodes leave behind. The tests name the `peerwatt` binary
//! (`env!("CARGO_BIN_EXE_peerwatt")`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use peerwatt_core::{Community, Encode, Hash, IntervalId, PublicKey, Side, Signed, Trade, Wh};
use peerwatt_ledger::LedgerReader;
use peerwatt_meter::interval::{IntervalTotals, Source};
use peerwatt_meter::{Format, History, MeterConfig, RoleConfig};
use peerwatt_net::free_port;
use peerwatt_node::NodeConfig;
use peerwatt_node::config::{Forecast, MarketSection, NetworkSection};
use rumqttc::{Client, MqttOptions, QoS};

use crate::mosquitto::Mosquitto;
use crate::wait;

/// The settlement interval of the test communities, seconds.
pub const INTERVAL_SECS: u64 = 10;
/// Feed-in and retail tariffs of the test communities.
pub const FEED_IN: u64 = 80_000;
/// See [`FEED_IN`].
pub const RETAIL: u64 = 300_000;

/// Runs the CLI `bin` to completion; returns stdout. Panics with its stderr on failure.
pub fn peerwatt(bin: &Path, args: &[&str]) -> String {
    let out = Command::new(bin).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "peerwatt {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The system clock, ms since the epoch.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

/// One household: a data directory, a node process, and its meter's grid power.
pub struct Household {
    /// Its name (`house-<n>`).
    pub name: String,
    /// Its data directory.
    pub dir: PathBuf,
    /// Its public id.
    pub id: String,
    /// Grid power: positive imports (deficit), negative exports (surplus).
    pub power_w: i64,
    /// Its listening port (TCP and/or QUIC).
    pub port: u16,
    /// The `peerwatt` binary.
    bin: PathBuf,
    child: Option<Child>,
    log: Arc<Mutex<Vec<String>>>,
    lines: Option<wait::Lines>,
}

impl Household {
    /// Starts `peerwatt run` (again, after a crash: same data directory).
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "{} is running already", self.name);
        let mut child = Command::new(&self.bin)
            .args(["run", "--config"])
            .arg(self.dir.join("node.toml"))
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        self.lines = Some(wait::Lines::into_log(stderr, self.log.clone()));
        self.child = Some(child);
    }

    /// Waits (up to `within`) for a log line containing `text`; returns it.
    pub fn wait_for_log(&mut self, text: &str, within: Duration) -> String {
        let lines = self.lines.as_ref().unwrap();
        lines.wait_for(&format!("of {} with {text:?}", self.name), within, |line| line.contains(text))
    }

    /// Everything it logged so far.
    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// The process id of its running `peerwatt run`.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(std::process::Child::id)
    }

    /// SIGKILL: no chance to clean up.
    pub fn kill_9(&mut self) {
        let mut child = self.child.take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// SIGSTOP: the process is frozen (its connections stay open, nothing is answered).
    pub fn freeze(&self) {
        self.signal("-STOP");
    }

    /// SIGCONT: a frozen process goes on.
    pub fn thaw(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, which: &str) {
        let child = self.child.as_ref().unwrap();
        let status = Command::new("kill").args([which, &child.id().to_string()]).status().unwrap();
        assert!(status.success(), "kill {which} {}", self.name);
    }

    /// The status once it satisfies `ready` (read every 100 ms, up to `within`).
    pub fn wait_for_status(
        &self,
        what: &str,
        within: Duration,
        ready: impl Fn(&peerwatt_node::Status) -> bool,
    ) -> peerwatt_node::Status {
        let read = || peerwatt_node::Status::read(&self.dir.join("status.json")).ok().filter(|st| ready(st));
        let what = format!("{}: {what}", self.name);
        wait::until_some(&what, within, read, || format!("log:\n{}", self.log_text()))
    }

    /// Writes the meter history of the `intervals` intervals before now, as the meter would
    /// have measured them at this household's fixed power: the forecaster has a history from
    /// the start, and the node trades in the first interval it can.
    pub fn seed_history(&self, intervals: u64) {
        let cfg = peerwatt_node::NodeConfig::load(&self.dir.join("node.toml")).unwrap();
        let length = INTERVAL_SECS * 1_000;
        let current = now_ms() / length;
        let wh = self.power_w.unsigned_abs() * INTERVAL_SECS / 3_600;
        let (imported, exported) = if self.power_w > 0 { (wh, 0) } else { (0, wh) };
        let totals: Vec<IntervalTotals> = (current - intervals..current)
            .map(|i| IntervalTotals {
                interval: IntervalId(i),
                start: peerwatt_core::Timestamp(i * length),
                imported: Wh(imported),
                exported: Wh(exported),
                complete: true,
                covered_ms: length,
                counter_reset: false,
                source: Source::Counters,
            })
            .collect();
        History::open(&cfg.meter_history_file(), 64).extend(&totals).unwrap();
    }

    /// SIGTERM, without waiting (see [`Household::stop`]).
    pub fn terminate(&self) {
        if self.child.is_some() {
            self.signal("-TERM");
        }
    }

    /// SIGTERM, and waits for a clean exit.
    pub fn stop(&mut self) {
        self.terminate();
        self.wait_exit();
    }

    /// Waits for a clean exit after [`Household::terminate`].
    pub fn wait_exit(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                assert!(status.success(), "{} exited with {status}; log:\n{}", self.name, self.log_text());
                return;
            }
            assert!(Instant::now() < deadline, "{} did not stop on SIGTERM", self.name);
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Its TCP multiaddress.
    pub fn address(&self) -> String {
        format!("/ip4/127.0.0.1/tcp/{}/p2p/{}", self.port, self.id)
    }

    /// Its QUIC multiaddress.
    pub fn quic_address(&self) -> String {
        format!("/ip4/127.0.0.1/udp/{}/quic-v1/p2p/{}", self.port, self.id)
    }

    /// Its status file, read now.
    pub fn status(&self) -> peerwatt_node::Status {
        peerwatt_node::Status::read(&self.dir.join("status.json"))
            .unwrap_or_else(|e| panic!("{}: no status ({e}); log:\n{}", self.name, self.log_text()))
    }
}

impl Drop for Household {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A community with its broker, admin and households.
pub struct Neighbourhood {
    /// Where everything lives.
    pub root: tempfile::TempDir,
    /// The meters' broker.
    pub broker: Mosquitto,
    /// The admin's directory.
    pub admin: PathBuf,
    /// The community.
    pub community: Community,
    /// The households.
    pub households: Vec<Household>,
    bin: PathBuf,
    feeding: Arc<AtomicBool>,
    feeder: Option<JoinHandle<()>>,
}

impl Neighbourhood {
    /// A community (10 s intervals, gate closure 2 s, horizon 3) and one node per entry of
    /// `powers` (W; + imports, − exports). Node 0 listens on TCP and QUIC and is everyone's
    /// bootstrap peer; odd nodes reach it over QUIC.
    pub fn new(bin: impl Into<PathBuf>, powers: &[i64]) -> Neighbourhood {
        let bin: PathBuf = bin.into();
        let root = tempfile::tempdir().unwrap();
        let broker = Mosquitto::start().unwrap();
        let admin = root.path().join("admin");
        peerwatt(
            &bin,
            &[
                "community",
                "init",
                "--dir",
                admin.to_str().unwrap(),
                "--name",
                "Testville",
                "--interval-secs",
                &INTERVAL_SECS.to_string(),
                "--gate-closure-secs",
                "2",
                "--horizon",
                "3",
                "--feed-in",
                &FEED_IN.to_string(),
                "--retail",
                &RETAIL.to_string(),
            ],
        );
        let community = peerwatt_node::community_file::load_community(&admin.join("community.toml")).unwrap();
        let mut households: Vec<Household> = Vec::new();
        for (i, &power_w) in powers.iter().enumerate() {
            let name = format!("house-{i}");
            let dir = root.path().join(&name);
            let out = peerwatt(&bin, &["init", "--data-dir", dir.to_str().unwrap(), "--name", &name]);
            let id =
                out.lines().find_map(|l| l.trim().strip_prefix("public id:")).map(|s| s.trim().to_owned()).unwrap();
            peerwatt(
                &bin,
                &[
                    "community",
                    "admit",
                    "--dir",
                    admin.to_str().unwrap(),
                    "--node",
                    &id,
                    "--name",
                    &name,
                    "--zone",
                    "feeder-1",
                    "--out",
                    dir.join("membership.cert").to_str().unwrap(),
                ],
            );
            std::fs::copy(admin.join("community.toml"), dir.join("community.toml")).unwrap();
            let port = free_port().unwrap();
            let bootstrap = match households.first() {
                None => Vec::new(),
                Some(first) if i % 2 == 1 => vec![first.quic_address()],
                Some(first) => vec![first.address()],
            };
            let (tcp, quic) = (format!("/ip4/127.0.0.1/tcp/{port}"), format!("/ip4/127.0.0.1/udp/{port}/quic-v1"));
            let listen = match i {
                0 => vec![tcp, quic],
                _ if i % 2 == 1 => vec![quic],
                _ => vec![tcp],
            };
            let mut meter = MeterConfig::new("127.0.0.1", broker.port());
            meter.reconnect_min_ms = 50;
            meter.reconnect_max_ms = 500;
            meter.max_power_w = 100_000;
            meter.max_gap_secs = 3;
            meter.stale_after_secs = 5;
            meter.grid = Some(RoleConfig::new(Format::Tasmota, vec![format!("tele/{name}/SENSOR")]));
            let market = MarketSection {
                forecast: Forecast::Recent,
                forecast_intervals: 2,
                tick_ms: 200,
                reprice_ms: 1_000,
                request_timeout_ms: 1_500,
                ..MarketSection::default()
            };
            let network = NetworkSection {
                listen,
                bootstrap,
                heartbeat_ms: 200,
                discovery_ms: 1_000,
                ..NetworkSection::default()
            };
            NodeConfig::builder(&name)
                .log_filter("info")
                .meter(meter)
                .community("community.toml", "membership.cert")
                .market(market)
                .network(network)
                .build()
                .save(&dir.join("node.toml"))
                .unwrap();
            let bin = bin.clone();
            let log = Arc::default();
            households.push(Household { name, dir, id, power_w, port, bin, child: None, log, lines: None });
        }
        Neighbourhood {
            bin,
            root,
            broker,
            admin,
            community,
            households,
            feeding: Arc::new(AtomicBool::new(true)),
            feeder: None,
        }
    }

    /// Runs the CLI to completion; returns stdout (see [`peerwatt`]).
    pub fn cli(&self, args: &[&str]) -> String {
        peerwatt(&self.bin, args)
    }

    /// Starts the fake meters: every 500 ms each household's Tasmota publishes its counters
    /// (kWh with three decimals) and power, integrated exactly from its fixed grid power.
    pub fn start_meters(&mut self) {
        let mut o = MqttOptions::new(format!("fake-meters-{}", self.broker.port()), "127.0.0.1", self.broker.port());
        o.set_keep_alive(Duration::from_secs(30));
        let (client, mut connection) = Client::new(o, 256);
        std::thread::spawn(move || for _ in connection.iter() {});
        let meters: Vec<(String, i64)> = self.households.iter().map(|h| (h.name.clone(), h.power_w)).collect();
        let feeding = self.feeding.clone();
        let t0 = now_ms();
        self.feeder = Some(std::thread::spawn(move || {
            while feeding.load(Ordering::Relaxed) {
                let elapsed = now_ms() - t0;
                for (name, power) in &meters {
                    let wh = power.unsigned_abs() * elapsed / 3_600_000;
                    let (import, export) = if *power > 0 { (wh, 0) } else { (0, wh) };
                    let payload = format!(
                        r#"{{"Time":"t","SML":{{"Total_in":{}.{:03},"Total_out":{}.{:03},"Power_curr":{power}}}}}"#,
                        1000 + import / 1000,
                        import % 1000,
                        500 + export / 1000,
                        export % 1000
                    );
                    let _ = client.publish(format!("tele/{name}/SENSOR"), QoS::AtMostOnce, false, payload);
                }
                std::thread::sleep(Duration::from_millis(500));
            }
        }));
    }

    /// Seeds every household's meter history (see [`Household::seed_history`]) and starts
    /// every node.
    pub fn start_all(&mut self) {
        for h in &mut self.households {
            h.seed_history(2);
            h.start();
        }
    }

    /// Stops every node (SIGTERM), all at once, and the meters.
    pub fn stop_all(&mut self) {
        for h in &self.households {
            h.terminate();
        }
        for h in &mut self.households {
            h.wait_exit();
        }
        self.feeding.store(false, Ordering::Relaxed);
        if let Some(f) = self.feeder.take() {
            let _ = f.join();
        }
    }
}

/// The makers with an order on one side of an interval, with their earliest creation time.
pub type Makers = Vec<(PublicKey, u64)>;

/// What the ledgers of a stopped neighbourhood show, checked for the market's invariants.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Every trade once, by digest.
    pub trades: BTreeMap<Hash, Signed<Trade>>,
    /// Orders with energy, by interval: (sellers, buyers) with the earliest creation time.
    pub orders: BTreeMap<IntervalId, (Makers, Makers)>,
    /// Trades per interval.
    pub trades_per_interval: BTreeMap<IntervalId, usize>,
}

/// Reads every household's ledger and checks, panicking with the reason if one fails:
/// every trade is in both parties' ledgers byte-identical and in no one else's, no ledger
/// holds a trade twice, no maker's order was traded beyond its energy, every price lies within
/// [feed-in, retail], and `peerwatt ledger verify` passes on every ledger.
pub fn check_ledgers(households: &[Household]) -> Outcome {
    let mut out = Outcome::default();
    let mut holders: HashMap<Hash, Vec<(PublicKey, Vec<u8>)>> = HashMap::new();
    let mut order_energy: HashMap<Hash, Wh> = HashMap::new();
    for h in households {
        let verify = Command::new(&h.bin).args(["ledger", "verify", "--data-dir"]).arg(&h.dir).output().unwrap();
        assert!(
            verify.status.success(),
            "{}: ledger verify failed: {}",
            h.name,
            String::from_utf8_lossy(&verify.stdout)
        );
        let reader = LedgerReader::open_dir(&h.dir.join("ledger")).unwrap();
        let owner = reader.owner().unwrap();
        let mut in_this = HashSet::new();
        for order in reader.orders().unwrap() {
            assert_eq!(*order.signer(), owner, "{}: an order of another node in its ledger", h.name);
            let o = order.body();
            order_energy.insert(order.digest(), o.energy);
            if o.energy > Wh::ZERO {
                let sides = out.orders.entry(o.interval).or_default();
                let list = if o.side == Side::Sell { &mut sides.0 } else { &mut sides.1 };
                match list.iter_mut().find(|(k, _)| *k == owner) {
                    Some((_, first)) => *first = (*first).min(o.created_at.0),
                    None => list.push((owner, o.created_at.0)),
                }
            }
        }
        for trade in reader.trades().unwrap() {
            assert!(in_this.insert(trade.digest()), "{}: trade recorded twice", h.name);
            holders.entry(trade.digest()).or_default().push((owner, trade.to_bytes()));
            out.trades.insert(trade.digest(), trade);
        }
    }
    let mut sold_per_order: HashMap<Hash, u64> = HashMap::new();
    for (digest, trade) in &out.trades {
        let t = trade.body();
        let parties = [*t.seller(), *t.buyer()];
        let have = &holders[digest];
        assert_eq!(have.len(), 2, "trade {digest} is in {} ledgers, not both parties'", have.len());
        for (holder, bytes) in have {
            assert!(parties.contains(holder), "trade {digest} is in a third party's ledger");
            assert_eq!(bytes, &have[0].1, "trade {digest} differs between the two ledgers");
        }
        assert_ne!(have[0].0, have[1].0);
        let terms = t.request.body();
        assert!(
            (FEED_IN..=RETAIL).contains(&terms.price.0),
            "trade {digest} at {} outside [feed-in, retail]",
            terms.price
        );
        *sold_per_order.entry(terms.order).or_default() += terms.energy.0;
        *out.trades_per_interval.entry(terms.interval).or_default() += 1;
    }
    for (order, traded) in sold_per_order {
        let offered = order_energy.get(&order).copied().expect("a trade against an order its maker never recorded");
        assert!(traded <= offered.0, "order {order}: {traded} Wh traded of {} Wh offered", offered.0);
    }
    out
}

/// The intervals in which a seller and a buyer both had an order out at least `lead_ms`
/// before gate closure (so the strategy had time to cross them), and whose trading window
/// closed before `until_ms`.
pub fn tradable_intervals(out: &Outcome, community: &Community, lead_ms: u64, until_ms: u64) -> Vec<IntervalId> {
    out.orders
        .iter()
        .filter(|(i, (sellers, buyers))| {
            let (_, closes) = community.trading_window(**i);
            let early = |list: &Makers| list.iter().any(|(_, t)| t + lead_ms <= closes.0);
            closes.0 <= until_ms && early(sellers) && early(buyers)
        })
        .map(|(i, _)| *i)
        .collect()
}

/// `dir`'s path as a string.
pub fn s(dir: &Path) -> &str {
    dir.to_str().unwrap()
}
