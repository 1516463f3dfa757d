//! Official meter data (`--meter-data`): the grid operator's quarter-hour values per metering
//! point, against which each member's signed statements are compared (docs/audit.md,
//! docs/research/official-meter-data.md).
//!
//! The generic CSV, one row per metering point, interval and register, UTC times, kWh as a
//! decimal (read exactly, to the mWh):
//!
//! ```text
//! metering_point,interval_start,interval_end,direction,register,kwh,quality
//! AT0020000000000000000000000000001,2023-08-01T04:15:00Z,2023-08-01T04:30:00Z,consumption,1-1:1.9.0 G.01,0.017,L1
//! ```
//!
//! A household meter's import is the `G.01` register of its consumption point (or a register
//! named `import`), its export the `G.01` of its generation point (or `export`); the other
//! registers (the operator's allocation: G.02, G.03, P.01, …) are read and kept but not
//! compared with statements. A value of worse quality never replaces a better one (`L1` >
//! `L2` > unknown > `L3`); of equal quality the later row wins (a resend). `L3` values are
//! estimates the operator will replace: they are not compared.
//!
//! The map from members to metering points is a CSV `peer_id,metering_point` (a prosumer has
//! two points, one per row).

use std::collections::{BTreeMap, HashMap};

use peerwatt_core::{IntervalId, IntervalLength, PublicKey, Timestamp};
use serde::Serialize;

use crate::Audited;
use crate::exception::{Check, Exception};
use crate::trades::key;

/// The quality of an official value, best first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Quality {
    /// Measured.
    L1,
    /// A reliable substitute value.
    L2,
    /// Not stated.
    Unknown,
    /// An estimate to be replaced; not compared.
    L3,
}

impl Quality {
    /// `L1`, `L2`, `L3`, or empty for unknown.
    pub fn parse(text: &str) -> Option<Quality> {
        match text.trim() {
            "L1" => Some(Quality::L1),
            "L2" => Some(Quality::L2),
            "L3" => Some(Quality::L3),
            "" => Some(Quality::Unknown),
            _ => None,
        }
    }
}

/// What a register measures.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Register {
    /// Energy imported from the grid (G.01 of a consumption point).
    Import,
    /// Energy exported to the grid (G.01 of a generation point).
    Export,
    /// Another register, kept as named (the operator's allocation).
    Other(String),
}

/// One official value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Value {
    /// Energy, mWh.
    pub mwh: u64,
    /// Its quality.
    pub quality: Quality,
    /// The row it came from (1-based, the header is row 1).
    pub row: usize,
}

/// Official meter data: values by metering point, interval and register.
#[derive(Debug, Clone, Default)]
pub struct MeterData {
    /// The values.
    pub values: BTreeMap<(String, IntervalId, Register), Value>,
    /// Rows read.
    pub rows: u64,
    /// Rows whose value a better one kept out.
    pub superseded_by_better: u64,
}

/// Meter data or a map that cannot be used: the row and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MeterDataError {
    /// The header is not the expected one.
    #[error("the header must be {expected:?}, not {found:?}")]
    Header {
        /// The header required.
        expected: &'static str,
        /// The header found.
        found: String,
    },
    /// A grid operator's report that cannot be read as such.
    #[error("{0}")]
    Report(String),
    /// A row cannot be read.
    #[error("row {row}: {why}")]
    Row {
        /// 1-based row number.
        row: usize,
        /// Why.
        why: String,
    },
}

const DATA_HEADER: &str = "metering_point,interval_start,interval_end,direction,register,kwh,quality";
const MAP_HEADER: &str = "peer_id,metering_point";

/// The rows of a CSV with `header` and `columns` fields per row (no quoting: none of these
/// fields needs it), numbered from 2.
fn rows<'a>(text: &'a str, header: &'static str, columns: usize) -> Result<Vec<(usize, Vec<&'a str>)>, MeterDataError> {
    let mut lines = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty());
    let found = lines.next().map_or("", |(_, l)| l.trim_start_matches('\u{feff}').trim());
    if found != header {
        return Err(MeterDataError::Header { expected: header, found: found.to_owned() });
    }
    lines
        .map(|(i, line)| {
            let fields: Vec<&str> = line.trim_end_matches('\r').split(',').map(str::trim).collect();
            if fields.len() != columns {
                let why = format!("{} fields, expected {columns}", fields.len());
                return Err(MeterDataError::Row { row: i + 1, why });
            }
            Ok((i + 1, fields))
        })
        .collect()
}

/// A decimal kWh as mWh, exactly (at most six decimals; no sign, no exponent).
pub fn kwh_to_mwh(text: &str) -> Option<u64> {
    let (whole, frac) = text.split_once('.').unwrap_or((text, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !digits(whole) || !digits(frac) || frac.len() > 6 {
        return None;
    }
    let scale = 10u64.pow(6 - u32::try_from(frac.len()).ok()?);
    let frac = if frac.is_empty() { 0 } else { frac.parse::<u64>().ok()? * scale };
    whole.parse::<u64>().ok()?.checked_mul(1_000_000)?.checked_add(frac)
}

impl MeterData {
    /// Reads the generic CSV; every interval must be one of the community's (`length`).
    pub fn parse_csv(text: &str, length: IntervalLength) -> Result<MeterData, MeterDataError> {
        let mut data = MeterData::default();
        for (row, f) in rows(text, DATA_HEADER, 7)? {
            let bad = |why: String| MeterDataError::Row { row, why };
            let start = Timestamp::parse_utc(f[1]).ok_or_else(|| bad(format!("{:?} is not a UTC time", f[1])))?;
            let end = Timestamp::parse_utc(f[2]).ok_or_else(|| bad(format!("{:?} is not a UTC time", f[2])))?;
            let interval = length.interval_at(start);
            if length.start(interval) != start || end.0 != start.0 + length.millis() {
                return Err(bad(format!(
                    "{} – {} is not one of the community's {}-second intervals",
                    f[1],
                    f[2],
                    length.secs()
                )));
            }
            let register = register(f[3], f[4]).ok_or_else(|| bad(format!("unknown direction {:?}", f[3])))?;
            let mwh = kwh_to_mwh(f[5]).ok_or_else(|| bad(format!("{:?} is not an amount of kWh", f[5])))?;
            let quality = Quality::parse(f[6]).ok_or_else(|| bad(format!("unknown quality {:?}", f[6])))?;
            if f[0].is_empty() {
                return Err(bad("no metering point".into()));
            }
            data.insert((f[0].to_owned(), interval, register), Value { mwh, quality, row });
        }
        Ok(data)
    }

    /// Adds a value unless one of better quality is held.
    pub fn insert(&mut self, at: (String, IntervalId, Register), value: Value) {
        self.rows += 1;
        match self.values.get(&at) {
            Some(held) if held.quality < value.quality => self.superseded_by_better += 1,
            _ => {
                self.values.insert(at, value);
            }
        }
    }
}

/// The register of a row: the household meter's import or export, or another.
fn register(direction: &str, code: &str) -> Option<Register> {
    let g01 = code.ends_with("G.01") && code.starts_with("1-1:");
    Some(match (direction, code) {
        (_, "import") => Register::Import,
        (_, "export") => Register::Export,
        ("consumption", _) if g01 => Register::Import,
        ("generation", _) if g01 => Register::Export,
        ("consumption" | "generation", other) => Register::Other(other.to_owned()),
        _ => return None,
    })
}

/// Which metering points are whose.
#[derive(Debug, Clone, Default)]
pub struct PointMap {
    /// By member key, its metering points.
    pub points: HashMap<[u8; 32], Vec<String>>,
}

impl PointMap {
    /// Reads the `peer_id,metering_point` CSV.
    pub fn parse_csv(text: &str) -> Result<PointMap, MeterDataError> {
        let mut map = PointMap::default();
        let mut owners: HashMap<&str, [u8; 32]> = HashMap::new();
        for (row, f) in rows(text, MAP_HEADER, 2)? {
            let bad = |why: String| MeterDataError::Row { row, why };
            let member = PublicKey::from_peer_id(f[0]).map_err(|e| bad(format!("{:?} is not a peer id: {e}", f[0])))?;
            match owners.insert(f[1], member.to_bytes()) {
                Some(other) if other != member.to_bytes() => {
                    return Err(bad(format!("metering point {} is mapped to two members", f[1])));
                }
                Some(_) => continue, // the same row twice
                None => map.points.entry(member.to_bytes()).or_default().push(f[1].to_owned()),
            }
        }
        Ok(map)
    }
}

/// What the comparison counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct MeterDataCounts {
    /// Official import and export values compared with a statement.
    pub compared: u64,
    /// Of them, beyond the tolerance (each an exception).
    pub off: u64,
    /// Official values of estimated quality (L3), not compared.
    pub estimated: u64,
    /// Official values with no statement of their member and interval.
    pub not_stated: u64,
    /// Official rows whose value a better one kept out.
    pub superseded_by_better: u64,
}

/// Compares every audited member's final statements with the official import and export of
/// its metering points (summed, for a member with several), within `tolerance_wh`.
pub fn check(
    audited: &Audited<'_>,
    data: &MeterData,
    map: &PointMap,
    tolerance_wh: u64,
    exceptions: &mut Vec<Exception>,
) -> MeterDataCounts {
    let mut counts = MeterDataCounts { superseded_by_better: data.superseded_by_better, ..MeterDataCounts::default() };
    for (member, facts) in &audited.ledgers {
        let Some(points) = map.points.get(member) else { continue };
        let mut official: BTreeMap<(IntervalId, bool), (u64, Vec<String>)> = BTreeMap::new();
        for point in points {
            let range = (point.clone(), IntervalId(0), Register::Import)
                ..=(point.clone(), IntervalId(u64::MAX), Register::Export);
            for ((p, interval, register), value) in data.values.range(range) {
                let export = match register {
                    Register::Import => false,
                    Register::Export => true,
                    Register::Other(_) => continue,
                };
                if value.quality == Quality::L3 {
                    counts.estimated += 1;
                    continue;
                }
                let slot = official.entry((*interval, export)).or_default();
                slot.0 = slot.0.saturating_add(value.mwh);
                slot.1.push(format!("{p} row {}", value.row));
            }
        }
        let mut stated: BTreeMap<IntervalId, &crate::collect::StatementFact> = BTreeMap::new();
        for s in &facts.statements {
            let slot = stated.entry(s.interval).or_insert(s);
            if s.kept.revision >= slot.kept.revision {
                *slot = s;
            }
        }
        for ((interval, export), (mwh, rows)) in official {
            let Some(statement) = stated.get(&interval) else {
                counts.not_stated += 1;
                continue;
            };
            counts.compared += 1;
            let wh = if export { statement.kept.exported.0 } else { statement.kept.imported.0 };
            if wh.saturating_mul(1_000).abs_diff(mwh) <= tolerance_wh.saturating_mul(1_000) {
                continue;
            }
            counts.off += 1;
            let what = if export { "export" } else { "import" };
            exceptions.push(
                Exception::new(
                    Check::StatementOffMeterData,
                    format!(
                        "{what} {}.{:03} Wh (official, {}) ± {tolerance_wh} Wh",
                        mwh / 1_000,
                        mwh % 1_000,
                        rows.join(", ")
                    ),
                    format!("{what} {wh} Wh (statement revision {})", statement.kept.revision),
                )
                .node(key(member))
                .interval(interval)
                .evidence(format!("the statement, entry {}", statement.seq), &statement.bytes),
            );
        }
    }
    counts
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a test panics to fail

    use super::*;

    #[test]
    fn kwh_are_read_exactly_to_the_mwh_and_anything_else_is_refused() {
        assert_eq!(kwh_to_mwh("0.017"), Some(17_000));
        assert_eq!(kwh_to_mwh("0.000727"), Some(727));
        assert_eq!(kwh_to_mwh("12"), Some(12_000_000));
        assert_eq!(kwh_to_mwh("1484.023555"), Some(1_484_023_555));
        for bad in ["", ".5", "-1", "0,017", "1e3", "0.0000001", "nan", "1.2.3"] {
            assert_eq!(kwh_to_mwh(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn bad_meter_data_is_refused_with_its_row() {
        let len = IntervalLength::DEFAULT;
        let parse = |body: &str| MeterData::parse_csv(&format!("{DATA_HEADER}\n{body}"), len).unwrap_err().to_string();
        assert!(MeterData::parse_csv("a,b\n", len).unwrap_err().to_string().contains("header"));
        let row = "AT1,2023-08-01T04:15:00Z,2023-08-01T04:30:00Z,consumption,1-1:1.9.0 G.01";
        assert_eq!(parse(&format!("{row},0.017,L1\n{row},0.01,L4")), "row 3: unknown quality \"L4\"");
        assert!(
            parse("AT1,2023-08-01T04:10:00Z,2023-08-01T04:25:00Z,consumption,1-1:1.9.0 G.01,1,L1")
                .contains("not one of the community's 900-second intervals")
        );
        assert!(
            parse("AT1,2023-08-01T06:15:00+02:00,2023-08-01T06:30:00+02:00,consumption,x,1,L1")
                .contains("not a UTC time")
        );
        assert!(parse(&format!("{row},0.017")).contains("6 fields, expected 7"));
        assert!(parse("AT1,2023-08-01T04:15:00Z,2023-08-01T04:30:00Z,sideways,x,1,L1").contains("unknown direction"));
        let map = PointMap::parse_csv("peer_id,metering_point\nnot-a-peer,AT1\n").unwrap_err().to_string();
        assert!(map.starts_with("row 2: \"not-a-peer\" is not a peer id"), "{map}");
    }
}
