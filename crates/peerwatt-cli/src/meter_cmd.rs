//! `peerwatt meter watch`: connect with the node's meter settings and show, live, every decoded
//! reading or the exact reason a message was refused, and the running interval totals, so a
//! homeowner can check the setup before joining a community.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::anyhow;
use peerwatt_core::{IntervalLength, SystemClock};
use peerwatt_meter::decode::Format;
use peerwatt_meter::scan::{Scan, ScanDecoder};
use peerwatt_meter::{
    Connection, History, Input, IntervalTotals, MeterConfig, MeterEvent, Outcome, Pipeline, Reason, Role,
};
use serde_json::json;
use tokio::sync::mpsc;

use crate::failure::{Failure, Hint};
use peerwatt_node::NodeConfig;

/// The `peerwatt meter` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum MeterCommand {
    /// Show live readings, refusals and interval totals from the configured meter.
    Watch(WatchArgs),
    /// Find the meters on a broker without settings: listens to every topic and prints a
    /// `[meter.<role>]` section for each meter it recognises.
    Scan(ScanArgs),
}

/// Arguments of `meter scan`.
#[derive(Debug, clap::Args)]
pub struct ScanArgs {
    /// A node configuration whose [meter] broker settings (host, port, login, TLS) to use.
    #[arg(long)]
    config: Option<PathBuf>,
    /// The broker's host (overrides the configuration's).
    #[arg(long)]
    host: Option<String>,
    /// The broker's port (overrides the configuration's).
    #[arg(long)]
    port: Option<u16>,
    /// Listen for this many seconds.
    #[arg(long, default_value_t = 30)]
    timeout: u64,
    /// Stop after this many messages.
    #[arg(long)]
    count: Option<u64>,
    /// One JSON object per line: each meter found, then a summary.
    #[arg(long)]
    json: bool,
}

/// Arguments of `meter watch`.
#[derive(Debug, clap::Args)]
pub struct WatchArgs {
    /// The node's configuration file.
    #[arg(long, default_value = "node.toml", env = "PEERWATT_CONFIG")]
    config: PathBuf,
    /// Print the recognised format of each meter and exit.
    #[arg(long)]
    detect: bool,
    /// Exit after this many messages.
    #[arg(long)]
    count: Option<u64>,
    /// With --detect: give up after this many seconds.
    #[arg(long, default_value_t = 60)]
    timeout: u64,
    /// One JSON object per line (readings, refusals, interval totals, connection state;
    /// docs/meters.md lists the fields) instead of lines for people.
    #[arg(long)]
    json: bool,
}

/// Runs a `peerwatt meter` subcommand.
pub fn run(cmd: MeterCommand) -> Result<ExitCode, Failure> {
    match cmd {
        MeterCommand::Watch(args) => watch(&args),
        MeterCommand::Scan(args) => scan(&args),
    }
}

fn watch(args: &WatchArgs) -> Result<ExitCode, Failure> {
    let cfg = NodeConfig::load(&args.config)
        .hint("`peerwatt init` writes a node.toml; docs/meters.md shows the [meter] lines")?;
    let meter = cfg
        .meter
        .clone()
        .ok_or_else(|| anyhow!("{} has no [meter] section", args.config.display()))
        .hint("add [meter] and [meter.grid] (format and topics); docs/meters.md has the lines for your meter")?;
    meter.require_grid().hint("add [meter.grid] with the format and topics of your grid meter (docs/meters.md)")?;
    let pipeline = meter.pipeline().hint("see docs/meters.md for the settings of each format")?;
    let accountant = meter.accountant().hint("interval_secs must divide a day (900 = 15 minutes)")?;
    let history = History::open(&cfg.dir.join("meter-history.json"), meter.history_intervals);
    let length = IntervalLength::from_secs(meter.interval_secs).unwrap_or_default();

    let broker = format!("{}:{}", meter.host, meter.port);
    if !args.json {
        println!("watching {broker} ({})", describe_roles(&meter));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(async {
        let (tx, mut events) = mpsc::channel(4096);
        let handle = peerwatt_meter::spawn(&meter, pipeline, accountant, history, Arc::new(SystemClock), tx)
            .hint("check the TLS settings of [meter]")?;
        let mut view = View { length, json: args.json, ..View::default() };
        let all_roles: Vec<Role> = meter.roles().iter().map(|(r, _)| *r).collect();
        let deadline = tokio::time::sleep(Duration::from_secs(args.timeout));
        tokio::pin!(deadline);
        let result = loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => break Ok(()),
                _ = &mut deadline, if args.detect => {
                    break Err(view.not_detected(&broker, args.timeout, "on the configured topics"));
                }
                event = events.recv() => {
                    let Some(event) = event else { break Ok(()) };
                    view.show(&event, args.detect);
                    let detected = if args.detect { view.detected(&all_roles) } else { None };
                    if let Some(done) = detected {
                        for (role, format, topic) in done {
                            view.detected_line(role, format, &topic);
                        }
                        break Ok(());
                    }
                    if args.count.is_some_and(|n| view.messages >= n) {
                        break Ok(());
                    }
                }
            }
        };
        // Let the client finish, then show what it reported before it stopped (e.g. the running
        // totals that follow the last counted message).
        handle.shutdown().await;
        while let Ok(event) = events.try_recv() {
            view.show(&event, args.detect);
        }
        view.summary();
        result.map(|()| ExitCode::SUCCESS)
    })
}

/// The broker settings for `meter scan`: the configuration's, with --host and --port on top.
fn scan_broker(args: &ScanArgs) -> Result<MeterConfig, Failure> {
    let mut meter = match &args.config {
        Some(path) => NodeConfig::load(path)
            .hint("--config names a node.toml; without it, give --host and --port")?
            .meter
            .unwrap_or_else(|| MeterConfig::new("127.0.0.1", 1883)),
        None => MeterConfig::new("127.0.0.1", 1883),
    };
    if let Some(host) = &args.host {
        meter.host.clone_from(host);
    }
    if let Some(port) = args.port {
        meter.port = port;
    }
    Ok(meter)
}

fn scan(args: &ScanArgs) -> Result<ExitCode, Failure> {
    let meter = scan_broker(args)?;
    let shared = Arc::new(Mutex::new(Scan::default()));
    let input = Input { role: Role::Grid, topics: vec!["#".into()], decoder: Box::new(ScanDecoder(shared.clone())) };
    let pipeline = Pipeline::new(vec![input], meter.limits());
    let accountant = meter.accountant().hint("interval_secs must divide a day (900 = 15 minutes)")?;
    let broker = format!("{}:{}", meter.host, meter.port);
    let mut view = View { json: args.json, ..View::default() };
    if !args.json {
        println!("scanning {broker} (every topic, up to {} s)", args.timeout);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(async {
        let (tx, mut events) = mpsc::channel(4096);
        let handle =
            peerwatt_meter::spawn(&meter, pipeline, accountant, History::in_memory(1), Arc::new(SystemClock), tx)
                .hint("check the TLS settings of [meter]")?;
        let deadline = tokio::time::sleep(Duration::from_secs(args.timeout));
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => break,
                _ = &mut deadline => break,
                event = events.recv() => {
                    let Some(event) = event else { break };
                    match event {
                        MeterEvent::Message { .. } => view.messages += 1,
                        MeterEvent::Connection(_) => view.show(&event, true),
                        _ => {}
                    }
                    if args.count.is_some_and(|n| view.messages >= n) {
                        break;
                    }
                }
            }
        }
        handle.shutdown().await;
        Ok::<(), Failure>(())
    })?;
    let scan = match shared.lock() {
        Ok(scan) => scan,
        Err(poisoned) => poisoned.into_inner(),
    };
    report_scan(&view, &scan, &broker, args.timeout)
}

/// Prints each meter found with its section; fails as `--detect` does when there is none.
fn report_scan(view: &View, scan: &Scan, broker: &str, timeout: u64) -> Result<ExitCode, Failure> {
    let found = scan.found();
    for f in &found {
        let latest = f.latest;
        let reading: Vec<String> =
            [("power", latest.power, "W"), ("import", latest.energy_in, "Wh"), ("export", latest.energy_out, "Wh")]
                .iter()
                .filter_map(|(name, v, unit)| v.map(|v| format!("{name} {v} {unit}")))
                .collect();
        let reading =
            if reading.is_empty() { "waiting for its other registers".to_owned() } else { reading.join(", ") };
        let refused: serde_json::Map<String, serde_json::Value> =
            f.refused.iter().map(|(r, n)| (r.name().to_owned(), json!(n))).collect();
        view.line(
            || {
                let plural = if f.messages == 1 { "" } else { "s" };
                format!(
                    "\n{} on {}: {reading} ({} message{plural})\n{}",
                    f.format,
                    f.source,
                    f.messages,
                    f.section().trim_end()
                )
            },
            || {
                json!({"type": "found", "format": f.format.to_string(), "role": f.role(), "source": f.source,
                       "topics": f.suggested_topics(), "power": latest.power, "import": latest.energy_in,
                       "export": latest.energy_out, "messages": f.messages, "refused": refused, "section": f.section()})
            },
        );
    }
    view.line(
        || {
            format!(
                "\nfound {} meter{} in {} messages on {} topics ({} not recognisable as a meter)",
                found.len(),
                if found.len() == 1 { "" } else { "s" },
                view.messages,
                scan.topics_seen.len(),
                scan.unrecognised
            )
        },
        || {
            json!({"type": "summary", "found": found.len(), "messages": view.messages,
                   "topics": scan.topics_seen.len(), "unrecognised": scan.unrecognised})
        },
    );
    if found.is_empty() {
        return Err(view.not_detected(broker, timeout, "on any topic"));
    }
    let grids = found.iter().filter(|f| f.role() == Role::Grid).count();
    if grids > 1 && !view.json {
        println!(
            "a node reads one grid meter: take the section of the meter at your grid connection; a plug or a second meter can be [meter.pv] or [meter.battery]"
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn describe_roles(meter: &peerwatt_meter::MeterConfig) -> String {
    meter
        .roles()
        .iter()
        .map(|(r, c)| format!("{r}: {} on {}", c.format, c.topics.join(", ")))
        .collect::<Vec<_>>()
        .join("; ")
}

/// What has been seen so far, for live lines and the summary.
#[derive(Debug, Default)]
struct View {
    length: IntervalLength,
    /// One JSON object per line instead of text.
    json: bool,
    /// Whether the broker ever accepted the connection, and the last error if not.
    connected: bool,
    last_error: Option<String>,
    messages: u64,
    accepted: u64,
    rejected: BTreeMap<Reason, u64>,
    /// Per role, the topic of the first accepted reading.
    first_reading: BTreeMap<Role, String>,
    /// The format each role's decoder reports (for `auto`, the recognised one).
    recognised: BTreeMap<Role, Format>,
}

impl View {
    fn show(&mut self, event: &MeterEvent, quiet: bool) {
        match event {
            MeterEvent::Connection(Connection::Connected) => {
                self.connected = true;
                self.line(
                    || "connected; subscriptions active".into(),
                    || json!({"type": "connection", "state": "connected"}),
                );
            }
            MeterEvent::Connection(Connection::Connecting) => {}
            MeterEvent::Connection(Connection::Down { error, retry_in }) => {
                self.last_error = Some(error.to_string());
                let retry_ms = u64::try_from(retry_in.as_millis()).unwrap_or(u64::MAX);
                self.line(
                    || format!("disconnected: {error} (retrying in {retry_ms} ms)"),
                    || json!({"type": "connection", "state": "down", "error": error.to_string(), "retry_in_ms": retry_ms}),
                );
            }
            MeterEvent::Message { topic, format, outcome } => self.message(topic, format.as_ref(), outcome, quiet),
            MeterEvent::Stale(reject) => {
                *self.rejected.entry(reject.reason).or_default() += 1;
                self.line(
                    || format!("stale    {}", reject.detail),
                    || json!({"type": "stale", "reason": reject.reason.name(), "detail": reject.detail}),
                );
            }
            MeterEvent::Running(t) if !quiet => self.totals("running", t),
            MeterEvent::Interval(t) if !quiet => self.totals("interval", t),
            MeterEvent::Running(_) | MeterEvent::Interval(_) => {}
        }
    }

    /// One line of output: text for people, or a JSON object.
    fn line(&self, text: impl FnOnce() -> String, object: impl FnOnce() -> serde_json::Value) {
        if self.json {
            println!("{}", object());
        } else {
            println!("{}", text());
        }
    }

    fn message(&mut self, topic: &str, format: Option<&Format>, outcome: &Outcome, quiet: bool) {
        self.messages += 1;
        let format_name = format.map(|f| f.to_string());
        match outcome {
            Outcome::Reading(r, notice) => {
                self.accepted += 1;
                self.first_reading.entry(r.role).or_insert_with(|| topic.to_owned());
                if let Some(f) = format {
                    self.recognised.insert(r.role, *f);
                }
                if let Some(n) = notice {
                    *self.rejected.entry(n.reason).or_default() += 1;
                    self.line(
                        || format!("notice   {topic}: {n}"),
                        || json!({"type": "notice", "topic": topic, "reason": n.reason.name(), "detail": n.detail}),
                    );
                }
                if !quiet {
                    self.line(
                        || format!("reading  {r}"),
                        || json!({"type": "reading", "topic": topic, "format": format_name, "reading": r}),
                    );
                }
            }
            Outcome::Pending => {
                if !quiet {
                    self.line(
                        || format!("partial  {topic}: waiting for the companion value"),
                        || json!({"type": "partial", "topic": topic}),
                    );
                }
            }
            Outcome::Rejected(reject) => {
                *self.rejected.entry(reject.reason).or_default() += 1;
                self.line(
                    || format!("rejected {topic}: {reject}"),
                    || json!({"type": "refusal", "topic": topic, "format": format_name, "reason": reject.reason.name(), "detail": reject.detail}),
                );
            }
        }
    }

    fn totals(&self, kind: &'static str, t: &IntervalTotals) {
        self.line(|| format!("{kind:<8} {}", self.describe(t)), || json!({"type": kind, "totals": t}));
    }

    fn describe(&self, t: &IntervalTotals) -> String {
        let state = if t.complete {
            "complete".to_owned()
        } else {
            format!(
                "incomplete, {} of {} s covered{}",
                t.covered_ms / 1000,
                self.length.secs(),
                if t.counter_reset { ", counter reset" } else { "" }
            )
        };
        format!("{} ({}): imported {}, exported {} [{state}]", t.interval, t.start, t.imported, t.exported)
    }

    /// Once every role has delivered a reading: per role, its format and first topic.
    fn detected(&self, all: &[Role]) -> Option<Vec<(Role, Format, String)>> {
        if !all.iter().all(|r| self.first_reading.contains_key(r)) {
            return None;
        }
        Some(
            all.iter()
                .map(|r| (*r, self.recognised.get(r).copied().unwrap_or(Format::Auto), self.first_reading[r].clone()))
                .collect(),
        )
    }

    fn detected_line(&self, role: Role, format: Format, topic: &str) {
        self.line(
            || format!("detected {role}: {format} (from {topic})"),
            || json!({"type": "detected", "role": role, "format": format.to_string(), "topic": topic}),
        );
    }

    /// Why `--detect` found nothing: the broker never answered, or it did and nothing on the
    /// topics was a meter message this build recognises.
    fn not_detected(&self, broker: &str, timeout: u64, listened: &str) -> Failure {
        if !self.connected {
            let why = self.last_error.as_deref().unwrap_or("no answer");
            return Failure::from(anyhow!("cannot reach the broker at {broker}: {why}"))
                .with_hint("check [meter] host and port (and TLS), and that the broker runs");
        }
        let seen = if self.messages == 0 {
            format!("no message arrived {listened}")
        } else {
            format!("{} messages arrived, none recognisable as a meter reading", self.messages)
        };
        Failure::from(anyhow!("connected to the broker at {broker}, but {seen} within {timeout} s")).with_hint(
            "check the topics with the broker (e.g. `mosquitto_sub -v -t '#'`) and the meter's MQTT settings",
        )
    }

    fn summary(&self) {
        let refused: Vec<String> = self.rejected.iter().map(|(r, n)| format!("{r} {n}")).collect();
        let by_reason: serde_json::Map<String, serde_json::Value> =
            self.rejected.iter().map(|(r, n)| (r.name().to_owned(), json!(n))).collect();
        self.line(
            || {
                format!(
                    "summary: {} messages, {} readings accepted, refused: {}",
                    self.messages,
                    self.accepted,
                    if refused.is_empty() { "none".to_owned() } else { refused.join(", ") }
                )
            },
            || json!({"type": "summary", "messages": self.messages, "accepted": self.accepted, "refused": by_reason}),
        );
    }
}
