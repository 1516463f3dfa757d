//! `peerwatt audit`: many ledgers checked against each other (docs/audit.md). Finds the
//! ledgers among the paths given, runs [`peerwatt_audit::audit`], writes `audit.json`,
//! `exceptions.csv` and `zones.csv`, and prints a short summary. Exit 0: clean; 1:
//! exceptions found; 2: the audit could not run.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::anyhow;
use peerwatt_audit::meter_data::{MeterData, PointMap};
use peerwatt_audit::{Input, Limits, OfficialData, Options, audit, eda};
use peerwatt_core::Community;
use peerwatt_ledger::SledStore;
use peerwatt_ledger::export::MAGIC as EXPORT_MAGIC;
use peerwatt_node::NodeConfig;
use peerwatt_node::community_file::load_community;

use crate::failure::{EXIT_INVALID, Failure, Hint};

/// Arguments of `peerwatt audit`.
#[derive(Debug, clap::Args)]
pub struct AuditArgs {
    /// Ledgers: export files (`peerwatt ledger export`), node data directories, or directories
    /// holding them.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// The community.toml whose rules the settlements apply; by default the one a data
    /// directory's node.toml names.
    #[arg(long)]
    community: Option<PathBuf>,
    /// Zone limits (TOML: `[[zone]]` with `name`, `limit_wh`, `members`).
    #[arg(long)]
    limits: Option<PathBuf>,
    /// The grid operator's official meter values: the generic CSV (metering_point,
    /// interval_start, interval_end, direction, register, kwh, quality) or an EDA energy-data
    /// report (.xlsx); docs/audit.md.
    #[arg(long, requires = "meter_map")]
    meter_data: Option<PathBuf>,
    /// Which metering points are whose (CSV: peer_id, metering_point).
    #[arg(long, requires = "meter_data")]
    meter_map: Option<PathBuf>,
    /// Largest difference from the official values not reported, Wh per interval and direction.
    #[arg(long, default_value_t = 5)]
    tolerance_wh: u64,
    /// Where to write audit.json, exceptions.csv and zones.csv.
    #[arg(long, default_value = ".")]
    out: PathBuf,
    /// Ledgers read at once (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
}

/// Runs `peerwatt audit`.
pub fn run(args: &AuditArgs) -> Result<ExitCode, Failure> {
    let mut found = Found::default();
    for path in &args.paths {
        found.add(path)?;
    }
    if found.inputs.is_empty() {
        return Err(anyhow!("no ledgers found in {}", list(&args.paths)))
            .hint("give export files (`peerwatt ledger export`) or node data directories");
    }
    let community = match (&args.community, &found.community) {
        (Some(file), _) | (None, Some(file)) => {
            load_community(file).hint("the community.toml the members were admitted under")?
        }
        (None, None) => {
            return Err(anyhow!("no community file: the settlements cannot be recomputed without its rules"))
                .hint("pass --community community.toml");
        }
    };
    let mut options = Options::new(community_checked(community)?);
    if let Some(file) = &args.limits {
        let text = std::fs::read_to_string(file).map_err(|e| anyhow!("{}: {e}", file.display()))?;
        options.limits = Some(Limits::parse(&text).map_err(|e| anyhow!("{}: {e}", file.display()))?);
    }
    if let (Some(data), Some(map)) = (&args.meter_data, &args.meter_map) {
        options.meter_data = Some(official(data, map, args.tolerance_wh, &options.community)?);
    }
    if let Some(threads) = args.threads {
        options.threads = threads.max(1);
    }
    let report = audit(&found.inputs, &options)
        .hint("stop the node, or audit its export (`peerwatt ledger export`), if its ledger is in use")?;
    report.write_to(&args.out).map_err(|e| anyhow!("writing the report to {}: {e}", args.out.display()))?;
    print!("{}", report.human());
    println!("report: {} (audit.json, exceptions.csv, zones.csv)", args.out.display());
    Ok(if report.is_clean() { ExitCode::SUCCESS } else { ExitCode::from(EXIT_INVALID) })
}

/// Reads the official meter data and the map of metering points.
fn official(data: &Path, map: &Path, tolerance_wh: u64, community: &Community) -> Result<OfficialData, Failure> {
    let read = |p: &Path| std::fs::read_to_string(p).map_err(|e| anyhow!("{}: {e}", p.display()));
    let bytes = std::fs::read(data).map_err(|e| anyhow!("{}: {e}", data.display()))?;
    // An .xlsx (a zip) is a grid operator's energy-data report; anything else the generic CSV.
    let values = if bytes.starts_with(b"PK\x03\x04") {
        eda::parse_report(&bytes, community.interval)
            .map_err(|e| anyhow!("{}: {e}", data.display()))
            .hint("an EDA energy-data report (sheet Energiedaten), as docs/audit.md describes")?
    } else {
        let text = String::from_utf8(bytes).map_err(|_| anyhow!("{}: not UTF-8 text", data.display()))?;
        MeterData::parse_csv(&text, community.interval)
            .map_err(|e| anyhow!("{}: {e}", data.display()))
            .hint("the generic meter data CSV is described in docs/audit.md")?
    };
    let map = PointMap::parse_csv(&read(map)?).map_err(|e| anyhow!("{}: {e}", map.display()))?;
    Ok(OfficialData { data: values, map, tolerance_wh })
}

fn community_checked(community: Community) -> Result<Community, Failure> {
    community.check().map_err(|e| anyhow!("the community file is not valid: {e}"))?;
    Ok(community)
}

fn list(paths: &[PathBuf]) -> String {
    paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
}

/// The ledgers found, and a community file named by a data directory.
#[derive(Debug, Default)]
struct Found {
    inputs: Vec<Input>,
    community: Option<PathBuf>,
}

impl Found {
    /// A path given on the command line: a file, a data directory, a ledger directory, or a
    /// directory of them (one level).
    fn add(&mut self, path: &Path) -> Result<(), Failure> {
        if path.is_file() {
            if !is_export(path)? {
                let why = anyhow!("{} is not a ledger export (it does not start with PWLEDGER)", path.display());
                return Err(why.into());
            }
            self.inputs.push(Input::Export(path.to_owned()));
            return Ok(());
        }
        if !path.is_dir() {
            return Err(anyhow!("{} does not exist", path.display())).hint("give export files or data directories");
        }
        if self.add_dir(path)? {
            return Ok(());
        }
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)?.filter_map(Result::ok).map(|e| e.path()).collect();
        entries.sort();
        let before = self.inputs.len();
        for entry in entries {
            if entry.is_file() && is_export(&entry)? {
                self.inputs.push(Input::Export(entry));
            } else if entry.is_dir() {
                self.add_dir(&entry)?;
            }
        }
        if self.inputs.len() == before {
            let why =
                anyhow!("{} holds no ledger: no export files, data directories or ledger directories", path.display());
            return Err(why.into());
        }
        Ok(())
    }

    /// A node data directory (with node.toml) or a ledger directory; false if neither.
    fn add_dir(&mut self, dir: &Path) -> Result<bool, Failure> {
        let config = dir.join("node.toml");
        if config.is_file() {
            let cfg = NodeConfig::load(&config).hint("a data directory's node.toml, as `peerwatt init` writes it")?;
            if let (None, Some(section)) = (&self.community, &cfg.community) {
                self.community = Some(cfg.resolve(&section.file));
            }
            self.inputs.push(Input::Store(cfg.resolve(&cfg.node.ledger_dir)));
            return Ok(true);
        }
        if SledStore::exists(dir) {
            self.inputs.push(Input::Store(dir.to_owned()));
            return Ok(true);
        }
        Ok(false)
    }
}

/// Whether the file starts as a ledger export does.
fn is_export(path: &Path) -> Result<bool, Failure> {
    let mut magic = [0u8; EXPORT_MAGIC.len()];
    let mut file = std::fs::File::open(path).map_err(|e| anyhow!("{}: {e}", path.display()))?;
    Ok(file.read(&mut magic)? == magic.len() && &magic == EXPORT_MAGIC)
}
