//! `peerwatt meter watch`: connect with the node's meter settings and show, live, every decoded
//! reading or the exact reason a message was refused, and the running interval totals, so a
//! homeowner can check the setup before joining a community.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::anyhow;
use peerwatt_core::{IntervalLength, SystemClock};
use peerwatt_meter::decode::Format;
use peerwatt_meter::{Connection, History, IntervalTotals, MeterEvent, Outcome, Reason, Role};
use tokio::sync::mpsc;

use crate::failure::{Failure, Hint};
use peerwatt_node::NodeConfig;

/// The `peerwatt meter` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum MeterCommand {
    /// Show live readings, refusals and interval totals from the configured meter.
    Watch(WatchArgs),
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
}

/// Runs a `peerwatt meter` subcommand.
pub fn run(cmd: MeterCommand) -> Result<ExitCode, Failure> {
    match cmd {
        MeterCommand::Watch(args) => watch(&args),
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
    let pipeline = meter.pipeline().hint("see docs/meters.md for the settings of each format")?;
    let accountant = meter.accountant().hint("interval_secs must divide a day (900 = 15 minutes)")?;
    let history = History::open(&cfg.dir.join("meter-history.json"), meter.history_intervals);
    let length = IntervalLength::from_secs(meter.interval_secs).unwrap_or_default();

    println!("watching {}:{} ({})", meter.host, meter.port, describe_roles(&meter));
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(async {
        let (tx, mut events) = mpsc::channel(4096);
        let handle = peerwatt_meter::spawn(&meter, pipeline, accountant, history, Arc::new(SystemClock), tx)
            .hint("check the TLS settings of [meter]")?;
        let mut view = View { length, ..View::default() };
        let all_roles: Vec<Role> = meter.roles().iter().map(|(r, _)| *r).collect();
        let deadline = tokio::time::sleep(Duration::from_secs(args.timeout));
        tokio::pin!(deadline);
        let result = loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => break Ok(()),
                _ = &mut deadline, if args.detect => {
                    break Err(anyhow!("no recognisable meter message within {} s", args.timeout))
                        .hint("check the topics with the broker (e.g. `mosquitto_sub -v -t '#'`) and the meter's MQTT settings");
                }
                event = events.recv() => {
                    let Some(event) = event else { break Ok(()) };
                    view.show(&event, args.detect);
                    let detected = if args.detect { view.detected(&all_roles) } else { None };
                    if let Some(done) = detected {
                        for line in done {
                            println!("{line}");
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
            MeterEvent::Connection(Connection::Connected) => println!("connected; subscriptions active"),
            MeterEvent::Connection(Connection::Connecting) => {}
            MeterEvent::Connection(Connection::Down { error, retry_in }) => {
                println!("disconnected: {error} (retrying in {} ms)", retry_in.as_millis());
            }
            MeterEvent::Message { topic, format, outcome } => {
                self.messages += 1;
                match outcome {
                    Outcome::Reading(r, notice) => {
                        self.accepted += 1;
                        self.first_reading.entry(r.role).or_insert_with(|| topic.clone());
                        if let Some(f) = format {
                            self.recognised.insert(r.role, *f);
                        }
                        if let Some(n) = notice {
                            *self.rejected.entry(n.reason).or_default() += 1;
                            println!("notice   {topic}: {n}");
                        }
                        if !quiet {
                            println!("reading  {r}");
                        }
                    }
                    Outcome::Pending => {
                        if !quiet {
                            println!("partial  {topic}: waiting for the companion value");
                        }
                    }
                    Outcome::Rejected(reject) => {
                        *self.rejected.entry(reject.reason).or_default() += 1;
                        println!("rejected {topic}: {reject}");
                    }
                }
            }
            MeterEvent::Stale(reject) => {
                *self.rejected.entry(reject.reason).or_default() += 1;
                println!("stale    {}", reject.detail);
            }
            MeterEvent::Running(t) if !quiet => println!("running  {}", self.describe(t)),
            MeterEvent::Interval(t) if !quiet => println!("interval {}", self.describe(t)),
            MeterEvent::Running(_) | MeterEvent::Interval(_) => {}
        }
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

    /// Once every role has delivered a reading: one line per role naming its format.
    fn detected(&self, all: &[Role]) -> Option<Vec<String>> {
        if !all.iter().all(|r| self.first_reading.contains_key(r)) {
            return None;
        }
        Some(
            all.iter()
                .map(|r| {
                    let topic = &self.first_reading[r];
                    let format = self.recognised.get(r).copied().unwrap_or(Format::Auto);
                    format!("detected {r}: {format} (from {topic})")
                })
                .collect(),
        )
    }

    fn summary(&self) {
        let refused: Vec<String> = self.rejected.iter().map(|(r, n)| format!("{r} {n}")).collect();
        println!(
            "summary: {} messages, {} readings accepted, refused: {}",
            self.messages,
            self.accepted,
            if refused.is_empty() { "none".to_owned() } else { refused.join(", ") }
        );
    }
}
