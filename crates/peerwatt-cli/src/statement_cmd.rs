//! `peerwatt statement`: one household's statement of account for a month or any range, from
//! its own ledger alone (its signed settlements; docs/settlement.md, "A household's
//! statement"), as text, CSV or JSON.

use std::io::Write;
use std::process::ExitCode;

use anyhow::anyhow;
use peerwatt_core::Timestamp;
use peerwatt_market::bill::{Bill, Line, bill, latest};
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
    let in_range = ledger
        .settlements()?
        .into_iter()
        .map(|s| s.body().clone())
        .filter(|s| (from..to).contains(&s.interval.0.saturating_mul(ms)));
    let statement = bill(latest(in_range).values())?;
    let mut out = std::io::stdout().lock();
    match args.format {
        Format::Json => writeln!(out, "{}", serde_json::to_string_pretty(&statement)?)?,
        Format::Csv => write_csv(&mut out, &statement, ms)?,
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
    let community = load_community(&cfg.resolve(&section.file))
        .invalid("ask your community admin for the current community.toml")?;
    Ok(community.interval.millis())
}

/// The range asked for, ms since the epoch, `[from, to)`.
fn range(args: &StatementArgs) -> Result<(u64, u64), Failure> {
    let day = |text: &str| -> Result<u64, Failure> {
        match Timestamp::parse_utc(text) {
            Some(t) => Ok(t.0),
            None => {
                Err(anyhow!("{text:?} is not a date")).hint("write dates as YYYY-MM-DD, or YYYY-MM-DDTHH:MMZ (UTC)")
            }
        }
    };
    if let Some(month) = &args.month {
        let first = match Timestamp::parse_date(&format!("{month}-01")) {
            Some(t) => t.0,
            None => return Err(anyhow!("{month:?} is not a month")).hint("write the month as YYYY-MM (UTC)"),
        };
        let (y, m) = month.split_once('-').unwrap_or(("", ""));
        let (y, m): (u64, u64) = (y.parse().unwrap_or(0), m.parse().unwrap_or(0));
        let next = if m == 12 { format!("{:04}-01-01", y + 1) } else { format!("{y:04}-{:02}-01", m + 1) };
        return Ok((first, day(&next)?));
    }
    let from = args.from.as_deref().map(day).transpose()?.unwrap_or(0);
    let to = args.to.as_deref().map(day).transpose()?.unwrap_or(u64::MAX);
    Ok((from, to))
}

/// kWh with three decimals (exact: the energies are whole Wh).
fn kwh(wh: u64) -> String {
    format!("{}.{:03}", wh / 1_000, wh % 1_000)
}

/// Currency units with six decimals (exact: money is in micro-currency).
fn money(m: i64) -> String {
    let sign = if m < 0 { "-" } else { "" };
    format!("{sign}{}.{:06}", m.unsigned_abs() / 1_000_000, m.unsigned_abs() % 1_000_000)
}

/// The CSV columns: the statement's own, then the names communities exchange with grid
/// operators (the OBIS-style codes of Austrian energy communities, docs/settlement.md).
const CSV_HEADER: &str = "interval_start,interval_end,revision,complete,imported_kwh,exported_kwh,bought_kwh,sold_kwh,\
delivered_bought_kwh,delivered_sold_kwh,shared_import_kwh,shared_export_kwh,grid_import_kwh,grid_export_kwh,\
local_cost,local_credit,shared_cost,shared_credit,grid_cost,grid_credit,cost,baseline,savings,\
1-1:1.9.0 G.01 consumption,1-1:2.9.0 G.02 community share,1-1:2.9.0 G.03 self-coverage,\
1-1:2.9.0 G.01 generation,1-1:2.9.0 P.01 surplus to grid";

fn csv_fields(l: &Line) -> String {
    let community_share = l.delivered_bought_wh + l.shared_import_wh;
    let fields = [
        kwh(l.imported_wh),
        kwh(l.exported_wh),
        kwh(l.bought_wh),
        kwh(l.sold_wh),
        kwh(l.delivered_bought_wh),
        kwh(l.delivered_sold_wh),
        kwh(l.shared_import_wh),
        kwh(l.shared_export_wh),
        kwh(l.grid_import_wh),
        kwh(l.grid_export_wh),
        money(l.local_cost),
        money(l.local_credit),
        money(l.shared_cost),
        money(l.shared_credit),
        money(l.grid_cost),
        money(l.grid_credit),
        money(l.cost),
        money(l.baseline),
        money(l.savings),
        kwh(l.imported_wh),
        kwh(community_share),
        kwh(community_share.min(l.imported_wh)),
        kwh(l.exported_wh),
        kwh(l.grid_export_wh),
    ];
    fields.join(",")
}

fn write_csv(out: &mut impl Write, b: &Bill, ms: u64) -> std::io::Result<()> {
    writeln!(out, "{CSV_HEADER}")?;
    for i in &b.intervals {
        let (start, end) = (Timestamp(i.interval * ms), Timestamp((i.interval + 1) * ms));
        writeln!(out, "{start},{end},{},{},{}", i.revision, i.complete, csv_fields(&i.line))?;
    }
    let (first, last) = match (b.intervals.first(), b.intervals.last()) {
        (Some(f), Some(l)) => (Timestamp(f.interval * ms).to_string(), Timestamp((l.interval + 1) * ms).to_string()),
        _ => (String::new(), String::new()),
    };
    writeln!(out, "{first},{last},total,{},{}", b.intervals.iter().all(|i| i.complete), csv_fields(&b.total))
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
