//! `peerwatt demo`: a simulated neighbourhood trading for a day on the real node (see the
//! `peerwatt-sim` crate), with a progress bar, a line per interval and the final report.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use peerwatt_sim::{LiveLine, NetworkChoice, Observer, RunOptions, Scenario};

use crate::failure::{Failure, Hint};

/// Runtime worker threads. More than the cores on purpose: every node flushes its sled
/// ledger on the worker it runs on, and while one waits for the disk the others keep the
/// rest of the street going.
const WORKERS: usize = 8;

/// Arguments of `peerwatt demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Households in the street [default: 10, or the scenario's].
    #[arg(long)]
    households: Option<usize>,
    /// Simulated days [default: 1, or the scenario's].
    #[arg(long)]
    days: Option<u32>,
    /// Simulated seconds per real second [default: 1440, a day in a minute, or the scenario's].
    #[arg(long)]
    speed: Option<u32>,
    /// Seed of the households' variety and the noise [default: 1, or the scenario's].
    #[arg(long)]
    seed: Option<u64>,
    /// The network between the nodes: auto (libp2p on loopback up to 20 households,
    /// in-process above), libp2p, or in-process [default: auto, or the scenario's].
    #[arg(long, value_parser = parse_network)]
    network: Option<NetworkChoice>,
    /// A scenario file (TOML; see config/demo-scenario.toml); flags override it.
    #[arg(long)]
    scenario: Option<PathBuf>,
    /// Where to write report.json and day.svg.
    #[arg(long, default_value = "peerwatt-demo")]
    out: PathBuf,
    /// Keep every node's data (keys, ledgers, meter history) here instead of a temporary directory.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// No progress bar and no line per interval, only the report.
    #[arg(long)]
    quiet: bool,
    /// Serve the street's dashboards: a page at this address (default 127.0.0.1:8480) lists
    /// the households, each linking to its node's dashboard; after the day the street stays
    /// up on its last moment until Ctrl-C.
    #[arg(long, value_name = "ADDRESS", num_args = 0..=1, default_missing_value = "127.0.0.1:8480")]
    serve: Option<String>,
}

/// `--network`: as the scenario file spells it.
fn parse_network(text: &str) -> Result<NetworkChoice, String> {
    match text {
        "auto" => Ok(NetworkChoice::Auto),
        "libp2p" => Ok(NetworkChoice::Libp2p),
        "in-process" => Ok(NetworkChoice::InProcess),
        other => Err(format!("{other:?} is not a network: auto, libp2p or in-process")),
    }
}

/// Runs the demo.
pub fn run(args: &DemoArgs) -> Result<ExitCode, Failure> {
    let mut scenario = match &args.scenario {
        Some(path) => Scenario::load(path).hint("config/demo-scenario.toml lists every key with its default")?,
        None => Scenario::default(),
    };
    scenario.households = args.households.unwrap_or(scenario.households);
    scenario.days = args.days.unwrap_or(scenario.days);
    scenario.speed = args.speed.unwrap_or(scenario.speed);
    scenario.seed = args.seed.unwrap_or(scenario.seed);
    scenario.network = args.network.unwrap_or(scenario.network);
    scenario.check().hint("see `peerwatt demo --help`")?;
    if let Some(dir) = &args.data_dir
        && std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some())
    {
        return Err(anyhow::anyhow!("{} is not empty", dir.display()))
            .hint("--data-dir needs a new or empty directory");
    }
    let options =
        RunOptions { scenario, out: args.out.clone(), data_dir: args.data_dir.clone(), serve: args.serve.clone() };
    println!(
        "peerwatt demo: {} households, {} simulated from {}, at {}x speed (seed {})",
        options.scenario.households,
        match options.scenario.intervals {
            Some(n) => format!("{n} quarter hours"),
            None => crate::count(u64::from(options.scenario.days), "day", "days"),
        },
        options.scenario.date,
        options.scenario.speed,
        options.scenario.seed
    );
    let mut view = Terminal::new(args.quiet);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(WORKERS).enable_all().build()?;
    let report = runtime.block_on(peerwatt_sim::run(&options, &mut view)).hint("run with -v for the nodes' logs")?;
    view.finish();
    print!("{}", report.render());
    let c = &report.community;
    if !report.ledgers.all_verified || report.ledgers.trades_in_one_ledger > 0 || report.ledgers.bad_trades > 0 {
        eprintln!("error: the ledgers do not agree (see above)");
        return Ok(ExitCode::from(crate::failure::EXIT_INVALID));
    }
    tracing::debug!(trades = c.trades, "demo finished");
    Ok(ExitCode::SUCCESS)
}

/// The terminal view: phases, a line per interval on stdout, a progress bar on stderr when it
/// is a terminal.
struct Terminal {
    quiet: bool,
    bar: bool,
    header: bool,
}

impl Terminal {
    fn new(quiet: bool) -> Terminal {
        Terminal { quiet, bar: !quiet && std::io::stderr().is_terminal(), header: false }
    }

    fn clear_bar(&self) {
        if self.bar {
            eprint!("\r\x1b[2K");
        }
    }

    fn finish(&mut self) {
        self.clear_bar();
    }
}

impl Observer for Terminal {
    fn phase(&mut self, what: &str) {
        if !self.quiet {
            self.clear_bar();
            println!("- {what}");
        }
    }

    fn serving(&mut self, url: &str) {
        // Even when quiet: it is what the user asked for.
        self.clear_bar();
        println!("- dashboards: {url} (one per household; open it in a browser)");
        let _ = std::io::stdout().flush();
    }

    fn interval(&mut self, line: &LiveLine, done: u64, total: u64) {
        if self.quiet {
            return;
        }
        self.clear_bar();
        if !self.header {
            println!("time   local trades     kWh  price/kWh         community grid (kWh)");
            self.header = true;
        }
        println!("{}", line.render());
        if self.bar {
            let width = 40;
            let filled = usize::try_from(done * width / total.max(1)).unwrap_or(0);
            eprint!("\r[{}{}] {done}/{total} intervals", "#".repeat(filled), ".".repeat(40 - filled.min(40)));
            let _ = std::io::stderr().flush();
        }
    }
}
