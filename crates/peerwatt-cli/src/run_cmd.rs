//! `peerwatt run` and `peerwatt status`.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use peerwatt_core::{Clock, Price, SystemClock};
use peerwatt_node::{NodeConfig, Status};

use crate::failure::{Failure, Hint};

/// Arguments of `peerwatt run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The node's configuration file.
    #[arg(long, default_value = "node.toml", env = "PEERWATT_CONFIG")]
    config: PathBuf,
}

/// Arguments of `peerwatt status`.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// The node's data directory (where its node.toml is).
    #[arg(long, env = "PEERWATT_DATA_DIR")]
    data_dir: PathBuf,
    /// Print the status as JSON.
    #[arg(long)]
    json: bool,
}

/// Runs the node until SIGINT or SIGTERM.
pub fn run(args: &RunArgs, verbose: u8) -> Result<ExitCode, Failure> {
    let cfg = NodeConfig::load(&args.config).hint("`peerwatt init` writes a node.toml")?;
    let filter = match verbose {
        0 => cfg.log.filter.clone().unwrap_or_else(|| "info".into()),
        1 => "info,peerwatt=debug".into(),
        _ => "debug,peerwatt=trace".into(),
    };
    // libp2p is chatty at info; its warnings still show.
    crate::init_logging_with(&format!("{filter},libp2p=warn,libp2p_gossipsub=error"));
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(async {
        let node = match peerwatt_node::start(&cfg, Arc::new(SystemClock)).await {
            Ok(node) => node,
            Err(e) => {
                let hint = e.hint();
                return Err(e).hint(hint);
            }
        };
        eprintln!(
            "peerwatt node {} running; `peerwatt status --data-dir {}` shows it",
            node.peer_id(),
            cfg.dir.display()
        );
        wait_for_signal().await?;
        tracing::info!("shutting down");
        node.shutdown().await;
        Ok(ExitCode::SUCCESS)
    })
}

/// Waits for SIGINT (Ctrl-C) or SIGTERM (systemd, docker stop).
async fn wait_for_signal() -> std::io::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r,
        _ = term.recv() => Ok(()),
    }
}

/// Text from outside (a member's name in its certificate) as it may reach a terminal: control
/// characters (escape sequences) shown as `?`.
fn printable(text: &str) -> String {
    text.chars().map(|c| if c.is_control() { '?' } else { c }).collect()
}

/// Money in currency units (six decimals: it is kept in micro-currency).
fn money(m: i64) -> String {
    peerwatt_market::bill::money(m)
}

/// Prints what the node reported last.
pub fn status(args: &StatusArgs) -> Result<ExitCode, Failure> {
    // Written whole at the end: a reader that stops early (`| head`) ends the output, not the
    // command.
    let mut out = String::new();
    macro_rules! say {
        ($($arg:tt)*) => {{
            let _ = writeln!(out, $($arg)*);
        }};
    }
    let cfg = NodeConfig::load(&args.data_dir.join("node.toml")).hint("is this a node's data directory?")?;
    let status = Status::read(&cfg.status_file())
        .hint("the node has not run yet here: start it with `peerwatt run --config node.toml`")?;
    if args.json {
        say!("{}", serde_json::to_string_pretty(&status)?);
        crate::print_text(&out)?;
        return Ok(ExitCode::SUCCESS);
    }
    let now = SystemClock.now().0;
    let age = now.saturating_sub(status.updated_at);
    let state = if status.is_live(now) {
        format!("running (pid {}, updated {} ms ago)", status.pid, age)
    } else {
        format!("NOT running (last status at {})", clock_time(status.updated_at))
    };
    let me = if status.name.is_empty() { String::new() } else { format!("\"{}\" ", printable(&status.name)) };
    say!("node {me}{} in \"{}\": {state}", status.peer_id, status.community);
    for addr in &status.listen {
        say!("  listening on {addr}");
    }
    say!("  meter: {}", status.meter);
    if status.not_trading.is_empty() {
        if !status.market.is_empty() {
            say!("  market: {}", status.market);
        }
    } else {
        say!("  market: not trading, because:");
        for why in &status.not_trading {
            say!("    - {why}");
        }
    }
    let connected = status.members.iter().filter(|m| m.connected).count();
    say!(
        "peers: {} connected; members seen: {} ({connected} of them connected)",
        status.peers.len(),
        status.members.len()
    );
    for m in &status.members {
        say!("  {:<20} {}  {}", printable(&m.name), m.id, if m.connected { "connected" } else { "-" });
    }
    say!("open orders ({}):", status.orders.len());
    for o in &status.orders {
        say!(
            "  {}  {:<4}  {} Wh ({} Wh free) at {} now, limit {}",
            clock_time(o.interval_start),
            o.side,
            o.energy_wh,
            o.available_wh,
            Price(o.price),
            Price(o.limit_price)
        );
    }
    let t = &status.today;
    say!(
        "trades today ({}): sold {} Wh for {}, bought {} Wh for {}; {} saved against the grid's tariffs (as contracted)",
        status.trades_today.len(),
        t.sold_wh,
        money(t.earned),
        t.bought_wh,
        money(t.spent),
        money(t.savings)
    );
    for t in &status.trades_today {
        let with = t
            .counterparty_name
            .as_deref()
            .map_or_else(|| t.counterparty.clone(), |n| format!("{n} ({})", t.counterparty));
        say!(
            "  {}  {:<6} {} Wh at {} with {} (as {})",
            clock_time(t.interval_start),
            t.direction,
            t.energy_wh,
            Price(t.price),
            with,
            t.role
        );
    }
    let m = &status.settled.month;
    say!(
        "this month, settled: cost {}, {} saved; {} Wh bought and {} Wh sold delivered, {} Wh shared in, {} Wh shared out",
        money(m.cost),
        money(m.savings),
        m.delivered_bought_wh,
        m.delivered_sold_wh,
        m.shared_import_wh,
        m.shared_export_wh
    );
    say!("trade requests awaiting an answer: {}", status.requests_pending);
    say!("ledger: {} entries, root {}", status.ledger.entries, status.ledger.root);
    say!("counters:");
    for (name, value) in status.counters.iter() {
        say!("  {name} {value}");
    }
    crate::print_text(&out)?;
    Ok(ExitCode::SUCCESS)
}

/// `HH:MM:SS` UTC of a millisecond timestamp.
fn clock_time(ms: u64) -> String {
    let s = (ms / 1000) % 86_400;
    format!("{:02}:{:02}:{:02}Z", s / 3600, (s / 60) % 60, s % 60)
}
