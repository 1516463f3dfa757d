//! The Austrian grid operators' energy-data report ("Energiedatenreport", EDA portal), as
//! official meter data for `--meter-data` (docs/research/official-meter-data.md, section 2).
//!
//! An XLSX workbook; sheet `Energiedaten`: column A holds the row labels (`MeteringpointID`,
//! `Energy direction`, `Metercode`, …), then one row per quarter hour whose column A is the
//! interval's start in local time (Europe/Vienna) without an offset. Every further column is
//! one metering point's register, followed by its `MM` quality column; the community's
//! `TOTAL` columns come last. Labels are matched without regard to case and spaces, and
//! registers by their label, never by position (the order differs between years).
//!
//! Local time: each day must have 96 quarter hours, 92 on the last Sunday of March (02:00 –
//! 02:45 do not exist) and 100 on the last Sunday of October, where 02:00 – 02:45 appear twice
//! under the same labels: the first run is summer time (UTC+2), the second winter time
//! (UTC+1), told apart by their order only. Values are kWh per quarter hour; the workbook
//! stores them as binary floating point, which is read once, as the shortest decimal that
//! gives it back, and taken to the mWh exactly (at most six decimals, as the reports write
//! them); nothing is computed in floating point.

use std::collections::{BTreeMap, HashMap};
use std::io::Cursor;

use calamine::{Data, Reader, Xlsx};
use peerwatt_core::time::{civil_from_days, days_from_civil};
use peerwatt_core::{IntervalLength, Timestamp};

use crate::meter_data::{MeterData, MeterDataError, Quality, Register, Value, kwh_to_mwh};

/// The sheet with the quarter hours.
const SHEET: &str = "Energiedaten";

/// Reads an energy-data report (the bytes of its .xlsx file).
pub fn parse_report(bytes: &[u8], length: IntervalLength) -> Result<MeterData, MeterDataError> {
    if length.secs() != 900 {
        return Err(MeterDataError::Report(format!(
            "the report has quarter hours, the community {}-second intervals",
            length.secs()
        )));
    }
    let mut book = Xlsx::new(Cursor::new(bytes)).map_err(|e| MeterDataError::Report(format!("not a workbook: {e}")))?;
    let range = book.worksheet_range(SHEET).map_err(|e| MeterDataError::Report(format!("no sheet {SHEET:?}: {e}")))?;
    let rows: Vec<&[Data]> = range.rows().collect();
    let labels = Labels::find(&rows)?;
    let columns = columns(&rows, &labels)?;
    let mut data = MeterData::default();
    let mut clock = LocalClock::default();
    for (i, row) in rows.iter().enumerate().skip(labels.first_data) {
        let at = |why: String| MeterDataError::Row { row: i + 1, why };
        let Some(local) = row.first().and_then(local_time) else {
            if row.iter().all(|c| matches!(c, Data::Empty)) {
                continue;
            }
            return Err(at(format!("{:?} is not a date and time", row.first())));
        };
        let start = clock.utc(local).map_err(at)?;
        let interval = length.interval_at(start);
        for column in &columns {
            let Some(mwh) = energy(row.get(column.value)).map_err(at)? else { continue };
            let quality = match column.quality {
                None => Quality::Unknown,
                Some(q) => {
                    let text = cell_text(row.get(q));
                    Quality::parse(&text).ok_or_else(|| at(format!("unknown quality {text:?}")))?
                }
            };
            data.insert((column.point.clone(), interval, column.register.clone()), Value { mwh, quality, row: i + 1 });
        }
    }
    clock.check_days()?;
    Ok(data)
}

/// Where the label rows and the quarter hours are.
struct Labels {
    point: usize,
    direction: usize,
    code: usize,
    first_data: usize,
}

impl Labels {
    fn find(rows: &[&[Data]]) -> Result<Labels, MeterDataError> {
        let label = |r: &[Data]| cell_text(r.first()).to_lowercase().replace(' ', "");
        let find = |name: &str| {
            rows.iter()
                .position(|r| label(r) == name)
                .ok_or_else(|| MeterDataError::Report(format!("no row labelled {name:?} in column A")))
        };
        let (point, direction, code) = (find("meteringpointid")?, find("energydirection")?, find("metercode")?);
        let first_data = (code + 1..rows.len())
            .find(|&i| rows[i].first().and_then(local_time).is_some())
            .ok_or_else(|| MeterDataError::Report("no quarter hours after the Metercode row".into()))?;
        Ok(Labels { point, direction, code, first_data })
    }
}

/// One metering point's register in the sheet.
struct Column {
    value: usize,
    quality: Option<usize>,
    point: String,
    register: Register,
}

fn columns(rows: &[&[Data]], labels: &Labels) -> Result<Vec<Column>, MeterDataError> {
    let at = |r: usize, c: usize| cell_text(rows[r].get(c));
    let width = rows[labels.point].len();
    let mut out = Vec::new();
    for c in 1..width {
        let point = at(labels.point, c);
        let code = at(labels.code, c);
        if point.is_empty() || point.eq_ignore_ascii_case("MM") || point.eq_ignore_ascii_case("TOTAL") {
            continue;
        }
        if code.to_lowercase().starts_with("keine daten") {
            continue; // "no data available" for this point
        }
        let direction = at(labels.direction, c).to_lowercase();
        let register = register_of(&direction, &code).ok_or_else(|| MeterDataError::Row {
            row: labels.direction + 1,
            why: format!("column {}: energy direction {direction:?} is neither CONSUMPTION nor GENERATION", c + 1),
        })?;
        let quality = at(labels.point, c + 1).eq_ignore_ascii_case("MM").then_some(c + 1);
        out.push(Column { value: c, quality, point, register });
    }
    if out.is_empty() {
        return Err(MeterDataError::Report("no metering point columns".into()));
    }
    Ok(out)
}

/// A register from its report label: a household meter's import is the consumption point's
/// measured total, its export the generation point's; the allocation's registers are kept
/// under their labels.
fn register_of(direction: &str, label: &str) -> Option<Register> {
    let l = label.to_lowercase();
    Some(match direction {
        "consumption" if l.starts_with("gesamtverbrauch lt. messung") => Register::Import,
        "generation" if l.starts_with("gesamte gemeinschaftliche erzeugung") => Register::Export,
        "consumption" | "generation" => Register::Other(label.to_owned()),
        _ => return None,
    })
}

/// A cell as trimmed text (empty for an empty cell).
fn cell_text(cell: Option<&Data>) -> String {
    match cell {
        None | Some(Data::Empty) => String::new(),
        Some(d) => d.to_string().trim().to_owned(),
    }
}

/// A value cell's energy, mWh: `None` for an empty cell.
fn energy(cell: Option<&Data>) -> Result<Option<u64>, String> {
    let text = match cell {
        None | Some(Data::Empty) => return Ok(None),
        // The shortest decimal that reads back as the stored number (Rust's `Display`).
        Some(Data::Float(f)) => format!("{f}"),
        Some(Data::Int(i)) => i.to_string(),
        Some(Data::String(s)) => s.trim().replace(',', "."),
        Some(other) => return Err(format!("{other:?} is not an amount of kWh")),
    };
    kwh_to_mwh(&text).map(Some).ok_or_else(|| format!("{text:?} is not an amount of kWh with at most six decimals"))
}

/// A local wall-clock time: (days since 1970-01-01, minute of the day).
type Local = (u64, u64);

/// Column A of a quarter-hour row: text `dd.MM.yyyy HH:mm[:ss]` or `yyyy-MM-dd HH:mm:ss`, or
/// an Excel date serial (days since 1899-12-30), to the minute.
fn local_time(cell: &Data) -> Option<Local> {
    match cell {
        Data::String(s) => local_text(s.trim()),
        Data::DateTime(d) => serial(d.as_f64()),
        Data::Float(f) => serial(*f),
        _ => None,
    }
}

fn serial(f: f64) -> Option<Local> {
    if !(25_569.0..2_958_466.0).contains(&f) {
        return None; // before 1970 or after 9999
    }
    // Rounded to the minute: the serial of 06:15 is not exact in binary.
    let minutes = (f * 1_440.0).round() as u64;
    Some((minutes / 1_440 - 25_569, minutes % 1_440))
}

fn local_text(s: &str) -> Option<Local> {
    let (date, time) = s.split_once(' ')?;
    let (y, m, d) = match date.split('.').collect::<Vec<_>>()[..] {
        [d, m, y] => (y, m, d),
        _ => match date.split('-').collect::<Vec<_>>()[..] {
            [y, m, d] => (y, m, d),
            _ => return None,
        },
    };
    let mut hm = time.split(':');
    let (h, min): (u64, u64) = (hm.next()?.parse().ok()?, hm.next()?.parse().ok()?);
    if h > 23 || min > 59 {
        return None;
    }
    Some((days_from_civil(y.parse().ok()?, m.parse().ok()?, d.parse().ok()?)?, h * 60 + min))
}

/// The day (days since 1970-01-01) of the last Sunday of `month` in `year`.
fn last_sunday(year: u64, month: u64) -> Option<u64> {
    let next = if month == 12 { days_from_civil(year + 1, 1, 1)? } else { days_from_civil(year, month + 1, 1)? };
    let last = next - 1;
    Some(last - (last + 4) % 7) // 1970-01-01 was a Thursday: (days + 4) % 7 is 0 on Sundays
}

/// Local Vienna times to UTC, in row order, counting each day's quarter hours.
#[derive(Default)]
struct LocalClock {
    /// Per local day: its quarter hours, and of the repeated autumn hour those seen once.
    days: BTreeMap<u64, (usize, HashMap<u64, u8>)>,
}

impl LocalClock {
    fn utc(&mut self, (day, minute): Local) -> Result<Timestamp, String> {
        let (year, _, _) = civil_from_days(day);
        let spring = last_sunday(year, 3).ok_or("no such year")?;
        let autumn = last_sunday(year, 10).ok_or("no such year")?;
        let (count, repeated) = self.days.entry(day).or_default();
        *count += 1;
        let in_changed_hour = (120..180).contains(&minute);
        let summer = if day == spring && in_changed_hour {
            return Err("02:00 – 02:59 do not exist on the day clocks go forward".into());
        } else if day == autumn && in_changed_hour {
            let seen = repeated.entry(minute).or_default();
            *seen += 1;
            match *seen {
                1 => true,  // the first run: still summer time
                2 => false, // the repeated run: winter time
                _ => return Err("a quarter hour of the repeated hour appears three times".into()),
            }
        } else if day == spring {
            minute >= 180 // from 03:00, summer time
        } else if day == autumn {
            minute < 120 // before 02:00, still summer time
        } else {
            spring < day && day < autumn
        };
        let offset_min = if summer { 120 } else { 60 };
        let utc_min = (day * 1_440 + minute).checked_sub(offset_min).ok_or("before 1970")?;
        Ok(Timestamp(utc_min * 60_000))
    }

    /// Every day has 96 quarter hours, 92 when clocks go forward, 100 when they go back.
    fn check_days(&self) -> Result<(), MeterDataError> {
        for (&day, (count, _)) in &self.days {
            let (year, month, d) = civil_from_days(day);
            let expected = if Some(day) == last_sunday(year, 3) {
                92
            } else if Some(day) == last_sunday(year, 10) {
                100
            } else {
                96
            };
            if *count != expected {
                return Err(MeterDataError::Report(format!(
                    "{year:04}-{month:02}-{d:02} has {count} quarter hours, not {expected}"
                )));
            }
        }
        Ok(())
    }
}
