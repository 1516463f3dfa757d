//! The `peerwatt` command line: argument definitions and one module per command group.
//! `main.rs` only parses, sets up logging and reports failures.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub mod audit_cmd;
pub mod community_cmd;
pub mod datadir;
#[cfg(feature = "demo")]
pub mod demo_cmd;
pub mod doctor_cmd;
pub mod failure;
pub mod ha_cmd;
pub mod init;
pub mod ledger_cmd;
pub mod meter_cmd;
pub mod run_cmd;
pub mod statement_cmd;
pub mod token_cmd;

pub use failure::Failure;

/// peerwatt: peer-to-peer energy trading for neighbourhoods, with signed trades and a tamper-evident ledger.
#[derive(Debug, Parser)]
#[command(name = "peerwatt", version, long_about = None)]
pub struct Cli {
    /// More log output (-v: debug, -vv: trace); RUST_LOG overrides it.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Simulate a neighbourhood trading for a day on real nodes, and report what it earned.
    #[cfg(feature = "demo")]
    Demo(demo_cmd::DemoArgs),
    /// Create a node: its key, a commented node.toml and its ledger.
    Init(init::InitArgs),
    /// Inspect, verify, export and prove a node's ledger.
    #[command(subcommand)]
    Ledger(ledger_cmd::LedgerCommand),
    /// Check the household meter over MQTT.
    #[command(subcommand)]
    Meter(meter_cmd::MeterCommand),
    /// Create a community, admit members, check a membership.
    #[command(subcommand)]
    Community(community_cmd::CommunityCommand),
    /// Run the node: read the meter, trade with the community, record everything.
    Run(run_cmd::RunArgs),
    /// Show a node's peers, open orders, today's trades and ledger head.
    Status(run_cmd::StatusArgs),
    /// A household's statement for a month or any range, from its own settlements.
    Statement(statement_cmd::StatementArgs),
    /// Audit many ledgers against each other: trades, settlements, heads, zone limits.
    Audit(audit_cmd::AuditArgs),
    /// Bearer tokens for the node's HTTP interface (`[api]`).
    #[command(subcommand)]
    Token(token_cmd::TokenCommand),
    /// Home Assistant discovery (`[home_assistant]`): remove the node's device.
    #[command(subcommand)]
    Ha(ha_cmd::HaCommand),
    /// Check a node's setup (key, membership, meter, network, disk, ledger) and say what to fix.
    Doctor(DataDirArg),
}

/// Runs a parsed command line. Sets up logging first (`run` with its node's log filter).
pub fn run(cli: Cli) -> Result<ExitCode, Failure> {
    match cli.command {
        Command::Run(_) => {} // with the node's own filter
        // The nodes' info lines would drown the live view; libp2p and the broker are chatty.
        #[cfg(feature = "demo")]
        Command::Demo(_) if cli.verbose == 0 => init_logging_with("error,rumqttd=off"),
        #[cfg(feature = "demo")]
        Command::Demo(_) => init_logging_with("info,libp2p=warn,libp2p_gossipsub=error,rumqttd=off"),
        // `meter watch` prints every refusal and disconnect itself: the meter crate's warning
        // for the same event would say it twice.
        Command::Meter(_) if cli.verbose == 0 => init_logging_with("error"),
        _ => init_logging(cli.verbose),
    }
    match cli.command {
        #[cfg(feature = "demo")]
        Command::Demo(args) => demo_cmd::run(&args),
        Command::Init(args) => init::run(&args),
        Command::Ledger(cmd) => ledger_cmd::run(cmd),
        Command::Meter(cmd) => meter_cmd::run(cmd),
        Command::Community(cmd) => community_cmd::run(cmd),
        Command::Run(args) => run_cmd::run(&args, cli.verbose),
        Command::Status(args) => run_cmd::status(&args),
        Command::Statement(args) => statement_cmd::run(&args),
        Command::Audit(args) => audit_cmd::run(&args),
        Command::Token(cmd) => token_cmd::run(cmd),
        Command::Ha(cmd) => ha_cmd::run(cmd),
        Command::Doctor(args) => doctor_cmd::run(&args),
    }
}

/// Prints `text` to stdout; a reader that went away (`peerwatt status | head`) ends the output
/// quietly instead of failing the command.
pub fn print_text(text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

/// Logs to stderr: warnings by default, more with `-v`; `RUST_LOG` wins when set.
pub fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info,peerwatt=debug",
        _ => "debug,peerwatt=trace",
    };
    init_logging_with(default);
}

/// Logs to stderr with `default` as the filter unless `RUST_LOG` is set.
pub fn init_logging_with(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // Colours only on a terminal: journald, log files and pipes get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    // A second initialisation (tests calling run twice) is harmless: keep the first.
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(std::io::stderr).try_init();
}

/// `n` followed by the singular or plural noun: `1 entry`, `2 entries`.
pub fn count(n: u64, singular: &str, plural: &str) -> String {
    format!("{n} {}", if n == 1 { singular } else { plural })
}

/// A `--data-dir` argument shared by the commands that work on one node.
#[derive(Debug, Clone, clap::Args)]
pub struct DataDirArg {
    /// The node's data directory (holds node.key, node.toml and ledger/).
    #[arg(long, env = "PEERWATT_DATA_DIR")]
    pub data_dir: PathBuf,
}
