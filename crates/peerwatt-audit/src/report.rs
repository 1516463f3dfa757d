//! The audit's results: `audit.json` (summary and every exception with its evidence),
//! `exceptions.csv` (check, node, interval, trade, expected, observed), `zones.csv` (zone,
//! interval, traded, limit) and a short summary for people.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::Path;

use peerwatt_core::{IntervalId, IntervalLength};
use serde::Serialize;

use crate::exception::{Check, Exception};
use crate::heads::HeadCounts;
use crate::meter_data::MeterDataCounts;
use crate::settlements::SettlementCounts;
use crate::trades::TradeCounts;
use crate::zones::ZoneRow;

/// What was audited and what was found, in numbers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// The community's name.
    pub community: String,
    /// Ledgers given.
    pub ledgers: u64,
    /// Of them, verified.
    pub ledgers_verified: u64,
    /// Verified ledgers of a node already audited (an earlier export), set aside.
    pub duplicate_ledgers: u64,
    /// Entries in the verified ledgers.
    pub entries: u64,
    /// Orders published.
    pub orders: u64,
    /// The trade check.
    pub trades: TradeCounts,
    /// The statement and settlement checks.
    pub settlements: SettlementCounts,
    /// The head checks.
    pub heads: HeadCounts,
    /// The comparison with official meter data, if any was given.
    pub meter_data: Option<MeterDataCounts>,
    /// Rows of `zones.csv`.
    pub zone_rows: u64,
    /// Exceptions per check (every check, 0 included).
    pub exceptions: BTreeMap<&'static str, u64>,
    /// How long the audit took, ms.
    pub elapsed_ms: u64,
}

/// An audit's results.
#[derive(Debug, Clone)]
pub struct Report {
    /// The summary.
    pub summary: Summary,
    /// Every exception, by check, node, interval and trade.
    pub exceptions: Vec<Exception>,
    /// Zones' traded energy per interval (empty without limits).
    pub zones: Vec<ZoneRow>,
    /// The community's interval length (to print intervals as times).
    pub interval: IntervalLength,
}

/// `audit.json`.
#[derive(Serialize)]
struct Json<'a> {
    clean: bool,
    summary: &'a Summary,
    exceptions: Vec<JsonException<'a>>,
}

#[derive(Serialize)]
struct JsonException<'a> {
    interval_start: Option<String>,
    #[serde(flatten)]
    exception: &'a Exception,
}

impl Report {
    /// Whether nothing was found.
    pub fn is_clean(&self) -> bool {
        self.exceptions.is_empty()
    }

    /// The checks that found something, with how many.
    pub fn found(&self) -> Vec<(Check, u64)> {
        let mut found: BTreeMap<Check, u64> = BTreeMap::new();
        for e in &self.exceptions {
            *found.entry(e.check).or_default() += 1;
        }
        found.into_iter().collect()
    }

    /// Exceptions per check name, every check listed.
    pub fn count_by_check(exceptions: &[Exception]) -> BTreeMap<&'static str, u64> {
        let mut counts: BTreeMap<&'static str, u64> = Check::ALL.iter().map(|c| (c.name(), 0)).collect();
        for e in exceptions {
            *counts.entry(e.check.name()).or_default() += 1;
        }
        counts
    }

    fn start(&self, interval: Option<u64>) -> Option<String> {
        interval.map(|i| self.interval.start(IntervalId(i)).to_string())
    }

    /// Writes `audit.json`, `exceptions.csv` and `zones.csv` into `dir` (created if needed).
    pub fn write_to(&self, dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(dir)?;
        let exceptions = self
            .exceptions
            .iter()
            .map(|e| JsonException { interval_start: self.start(e.interval), exception: e })
            .collect();
        let json = Json { clean: self.is_clean(), summary: &self.summary, exceptions };
        let mut out = io::BufWriter::new(std::fs::File::create(dir.join("audit.json"))?);
        serde_json::to_writer_pretty(&mut out, &json)?;
        writeln!(out)?;
        out.flush()?;
        let mut csv = io::BufWriter::new(std::fs::File::create(dir.join("exceptions.csv"))?);
        writeln!(csv, "check,node,interval,trade,expected,observed")?;
        for e in &self.exceptions {
            let row = [
                e.check.name().to_owned(),
                e.node.clone().unwrap_or_default(),
                self.start(e.interval).unwrap_or_default(),
                e.trade.clone().unwrap_or_default(),
                e.expected.clone(),
                e.observed.clone(),
            ];
            writeln!(csv, "{}", row.iter().map(|f| quoted(f)).collect::<Vec<_>>().join(","))?;
        }
        csv.flush()?;
        let mut zones = io::BufWriter::new(std::fs::File::create(dir.join("zones.csv"))?);
        writeln!(zones, "zone,interval,traded_wh,limit_wh")?;
        for z in &self.zones {
            let start = self.interval.start(IntervalId(z.interval)).to_string();
            writeln!(zones, "{},{start},{},{}", quoted(&z.zone), z.traded_wh, z.limit_wh)?;
        }
        zones.flush()
    }

    /// A few lines for people.
    pub fn human(&self) -> String {
        let s = &self.summary;
        let mut out = format!(
            "audited {} of {} ledgers of {} ({} entries) in {:.1} s\n",
            s.ledgers_verified,
            s.ledgers,
            s.community,
            s.entries,
            s.elapsed_ms as f64 / 1000.0
        );
        let t = &s.trades;
        out += &format!(
            "  trades: {} ({} in both parties' ledgers, {} with a party not audited, {} agreed after a party's ledger ends)\n",
            t.trades, t.in_both_ledgers, t.party_not_audited, t.after_ledger_end
        );
        let st = &s.settlements;
        out += &format!(
            "  settlements: {} checked, {} recomputed exactly from {} statements; {} pending a redo, {} changed after the statement window\n",
            st.settlements, st.recomputed, st.statements, st.pending_redo, st.changed_after_window
        );
        if st.members_not_audited > 0 {
            out += &format!(
                "  NOT COMPLETE: {} settlements read statements of members whose ledgers were not given; they were not recomputed\n",
                st.members_not_audited
            );
        }
        out += &format!(
            "  heads: {} witnessed, {} checked against their ledgers ({} signed after their ledger ends)\n",
            s.heads.witnessed, s.heads.checked, s.heads.after_ledger_end
        );
        if let Some(m) = &s.meter_data {
            out += &format!(
                "  official meter data: {} values compared, {} beyond the tolerance, {} estimated (L3) not compared, {} without a statement\n",
                m.compared, m.off, m.estimated, m.not_stated
            );
        }
        if self.is_clean() {
            out += "clean: no exceptions\n";
        } else {
            out += &format!("{} exceptions:", self.exceptions.len());
            for (check, n) in self.found() {
                out += &format!(" {} {n}", check.name());
            }
            out += "\n";
        }
        out
    }
}

/// A CSV field, quoted when it needs to be (RFC 4180).
fn quoted(field: &str) -> String {
    if field.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.to_owned()
    }
}
