//! `peerwatt statement`: one household's statement of account for a month or any range, from
//! its own ledger alone (its signed settlements; docs/settlement.md, "A household's
//! statement"), as text, CSV or JSON.

use std::io::Write;
use std::process::ExitCode;

use anyhow::anyhow;
use peerwatt_core::Timestamp;
use peerwatt_market::bill::{Bill, kwh, money};
use peerwatt_node::NodeConfig;
use peerwatt_node::community_file::load_community;

use crate::DataDirArg;
use crate::datadir::DataDir;
use crate::failure::{Failure, Hint};

/// Arguments of `peerwatt statement`.
#[derive(Debug, clap::Args)]
pub struct StatementArgs {
    #[command(flatten)]
    dir: DataDirArg,
    /// A calendar month (UTC), `YYYY-MM`.
    #[arg(long, conflicts_with_all = ["from", "to"])]
    month: Option<String>,
    /// The first day (UTC), `YYYY-MM-DD`, or a moment, `YYYY-MM-DDTHH:MMZ`; the ledger's
    /// first interval if absent.
    #[arg(long)]
    from: Option<String>,
    /// The day after the last (UTC), or the moment the range ends; the ledger's last
    /// interval if absent.
    #[arg(long)]
    to: Option<String>,
    /// `text` for people, `csv` (one row per interval and a total row) or `json` for tools.
    #[arg(long, default_value = "text")]
    format: Format,
}

/// Output formats.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Format {
    Text,
    Csv,
    Json,
}

/// Runs `peerwatt statement`.
pub fn run(args: &StatementArgs) -> Result<ExitCode, Failure> {
    let (from, to) = range(args)?;
    let dir = DataDir::new(&args.dir.data_dir);
    let ms = interval_ms(&dir)?;
    let ledger = dir.open_ledger_reader()?;
    let settlements = ledger.settlements()?.into_iter().map(|s| s.body().clone());
    let statement = peerwatt_market::bill::statement_of(settlements, from, to, ms)?;
    let mut out = std::io::stdout().lock();
    match args.format {
        Format::Json => writeln!(out, "{}", serde_json::to_string_pretty(&statement)?)?,
        Format::Csv => write!(out, "{}", peerwatt_market::bill::csv(&statement, ms))?,
        Format::Text => write_text(&mut out, &statement, ms)?,
    }
    Ok(ExitCode::SUCCESS)
}

/// The community's interval length, ms, from the node's configuration.
fn interval_ms(dir: &DataDir) -> Result<u64, Failure> {
    let cfg = NodeConfig::load(&dir.config_path()).hint("`peerwatt init` writes a node.toml")?;
    let section = cfg
        .community
        .as_ref()
        .ok_or_else(|| anyhow!("{} has no [community] section", dir.config_path().display()))
        .hint("a statement needs the community's interval length: add [community] to node.toml")?;
    let community =
        load_community(&cfg.resolve(&section.file)).hint("ask your community admin for the current community.toml")?;
    Ok(community.interval.millis())
}

/// The range asked for, ms since the epoch, `[from, to)`.
fn range(args: &StatementArgs) -> Result<(u64, u64), Failure> {
    peerwatt_market::bill::range(args.month.as_deref(), args.from.as_deref(), args.to.as_deref())
        .map_err(|e| anyhow!(e))
        .hint("write a month as YYYY-MM, dates as YYYY-MM-DD or YYYY-MM-DDTHH:MMZ (UTC)")
}

fn write_text(out: &mut impl Write, b: &Bill, ms: u64) -> std::io::Result<()> {
    let t = &b.total;
    let (Some(first), Some(last)) = (b.intervals.first(), b.intervals.last()) else {
        return writeln!(out, "no settled interval in this range");
    };
    let provisional = b.intervals.iter().filter(|i| !i.complete).count();
    writeln!(
        out,
        "statement {} to {}: {} intervals settled{}",
        Timestamp(first.interval * ms),
        Timestamp((last.interval + 1) * ms),
        b.intervals.len(),
        if provisional > 0 { format!(" ({provisional} provisional)") } else { String::new() }
    )?;
    writeln!(out, "  {:<34} {:>12} {:>14}", "", "kWh", "money")?;
    let row = |out: &mut dyn Write, what: &str, wh: u64, m: Option<i64>| {
        writeln!(out, "  {what:<34} {:>12} {:>14}", kwh(wh), m.map(money).unwrap_or_default())
    };
    row(out, "imported (meter)", t.imported_wh, None)?;
    row(out, "exported (meter)", t.exported_wh, None)?;
    row(out, "bought under contract", t.bought_wh, None)?;
    row(out, "  of which delivered, paid", t.delivered_bought_wh, Some(-t.local_cost))?;
    row(out, "sold under contract", t.sold_wh, None)?;
    row(out, "  of which delivered, earned", t.delivered_sold_wh, Some(t.local_credit))?;
    row(out, "shared to you ex post, paid", t.shared_import_wh, Some(-t.shared_cost))?;
    row(out, "shared from you ex post, earned", t.shared_export_wh, Some(t.shared_credit))?;
    row(out, "grid import left, paid", t.grid_import_wh, Some(-t.grid_cost))?;
    row(out, "grid export left, earned", t.grid_export_wh, Some(t.grid_credit))?;
    writeln!(out, "  {:<34} {:>12} {:>14}", "net (negative: you paid)", "", money(-t.cost))?;
    writeln!(out, "  {:<34} {:>12} {:>14}", "with the grid alone", "", money(-t.baseline))?;
    writeln!(out, "  {:<34} {:>12} {:>14}", "saved", "", money(t.savings))
}
