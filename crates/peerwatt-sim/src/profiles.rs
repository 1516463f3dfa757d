//! Household load (synPRO, 15-minute mean power) and irradiance (TMY3, hourly GHI), parsed
//! into integers: milliwatts and watts per square metre. The decimal text of the files is
//! converted exactly (`peerwatt_meter::decimal`), never through a float.

use peerwatt_meter::decimal::Decimal;
use thiserror::Error;

/// A profile file could not be read.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ProfileError {
    /// A line does not have the expected fields.
    #[error("line {line}: {why}")]
    Line {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        why: String,
    },
    /// The steps are not evenly spaced, or the file is empty.
    #[error("{0}")]
    Shape(String),
}

/// One household's electric load: the mean power of each step, in milliwatts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadProfile {
    /// Unix time of the first step's start, seconds.
    pub start_unix: u64,
    /// The step length, seconds (900 for synPRO).
    pub step_secs: u64,
    /// Mean power per step, mW.
    pub mean_mw: Vec<u64>,
}

impl LoadProfile {
    /// Parses a synPRO `.dat` file: `#` comments, a header line, then
    /// `YYYYMMDD;hhmmss;unixtimestamp;P_el` rows with `P_el` in watts.
    pub fn parse_synpro(text: &str) -> Result<LoadProfile, ProfileError> {
        let milli = Decimal::parse("1000").map_err(|e| ProfileError::Shape(e.to_string()))?;
        let mut times = Vec::new();
        let mut mean_mw = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line_no = i + 1;
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with("YYYYMMDD") {
                continue;
            }
            let bad = |why: &str| ProfileError::Line { line: line_no, why: why.to_owned() };
            let fields: Vec<&str> = line.split(';').collect();
            let [_, _, unix, power] = fields[..] else { return Err(bad("expected 4 `;`-separated fields")) };
            let unix = match unix.trim().parse::<u64>() {
                Ok(t) => t,
                // A few rows of the synPRO files carry the time in lossy scientific notation
                // (`1.611e+09`): such a row is one step after the row before, if that agrees.
                Err(_) => lossy_time(unix.trim(), &times).ok_or_else(|| bad("the unix time is not a whole number"))?,
            };
            let power = Decimal::parse(power.trim()).map_err(|e| bad(&format!("power: {e}")))?;
            let mw = power.scaled(milli).map_err(|e| bad(&format!("power: {e}")))?;
            let mw = u64::try_from(mw).map_err(|_| bad("negative load"))?;
            times.push(unix);
            mean_mw.push(mw);
        }
        let (start_unix, step_secs) = even_steps(&times)?;
        Ok(LoadProfile { start_unix, step_secs, mean_mw })
    }

    /// The energy drawn in step `i`, in milliwatt-hours, rounded down; `None` past the end.
    pub fn step_energy_mwh(&self, i: usize) -> Option<u64> {
        self.mean_mw.get(i).map(|mw| mw * self.step_secs / 3600)
    }
}

/// The time of a row whose unix time is written as `1.611e+09`: one step after the previous
/// row, provided the written value rounds to it within its precision (0.1 %).
fn lossy_time(text: &str, times: &[u64]) -> Option<u64> {
    let written = u64::try_from(Decimal::parse(text).ok()?.round().ok()?).ok()?;
    let [.., before, last] = times else { return None };
    let expected = last + (last - before);
    (expected.abs_diff(written) <= expected / 1_000).then_some(expected)
}

/// The start and step of evenly spaced time stamps.
fn even_steps(times: &[u64]) -> Result<(u64, u64), ProfileError> {
    let (Some(&first), Some(&second)) = (times.first(), times.get(1)) else {
        return Err(ProfileError::Shape("fewer than two rows".into()));
    };
    let step = second.saturating_sub(first);
    if step == 0 {
        return Err(ProfileError::Shape("the time stamps do not increase".into()));
    }
    if let Some(at) = times.windows(2).position(|w| w[1] != w[0] + step) {
        return Err(ProfileError::Shape(format!("row {} is not {step} s after the one before", at + 2)));
    }
    Ok((first, step))
}

/// A typical year of hourly global horizontal irradiance (TMY3), W/m².
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Irradiance {
    /// The station's name (line 1 of the file).
    pub station: String,
    /// UTC offset of the time stamps, hours (local standard time).
    pub utc_offset_hours: i64,
    /// GHI per hour of the year, hour 0 being the hour that ends at 01:00 on 1 January.
    pub ghi: Vec<u32>,
}

impl Irradiance {
    /// Parses a TMY3 CSV: the station on line 1, column names on line 2, then hourly rows
    /// with GHI in column 5.
    pub fn parse_tmy3(text: &str) -> Result<Irradiance, ProfileError> {
        let mut lines = text.lines();
        let station_line = lines.next().ok_or_else(|| ProfileError::Shape("empty file".into()))?;
        let station: Vec<&str> = station_line.split(',').collect();
        let bad = |line: usize, why: &str| ProfileError::Line { line, why: why.to_owned() };
        let name = station.get(1).map(|s| s.trim_matches('"').to_owned()).ok_or_else(|| bad(1, "no station name"))?;
        let offset = station
            .get(3)
            .and_then(|s| Decimal::parse(s.trim()).ok())
            .and_then(|d| d.round().ok())
            .ok_or_else(|| bad(1, "no UTC offset"))?;
        let header = lines.next().ok_or_else(|| bad(2, "no column names"))?;
        if !header.split(',').nth(4).is_some_and(|c| c.starts_with("GHI")) {
            return Err(bad(2, "column 5 is not GHI"));
        }
        let mut ghi = Vec::new();
        for (i, line) in lines.enumerate() {
            let line_no = i + 3;
            let value = line.split(',').nth(4).ok_or_else(|| bad(line_no, "fewer than 5 columns"))?;
            ghi.push(value.trim().parse().map_err(|_| bad(line_no, "GHI is not a whole number of W/m²"))?);
        }
        if ghi.len() != 8_760 {
            return Err(ProfileError::Shape(format!("{} hourly rows, not 8,760", ghi.len())));
        }
        Ok(Irradiance { station: name, utc_offset_hours: offset, ghi })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a test panics to fail

    use super::*;

    fn data(name: &str) -> String {
        std::fs::read_to_string(format!("{}/data/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
    }

    #[test]
    fn every_synpro_file_is_a_year_of_quarter_hours_in_exact_milliwatts() {
        for name in [
            "synPRO_el_family.dat",
            "synPRO_el_2_fulltime_employees.dat",
            "synPRO_el_2_persons_over65.dat",
            "synPRO_el_single_person_under30.dat",
        ] {
            let p = LoadProfile::parse_synpro(&data(name)).unwrap();
            assert_eq!((p.step_secs, p.mean_mw.len()), (900, 35_040), "{name}");
            assert_eq!(p.start_unix, 1_609_455_600, "{name}");
            // A household uses between 1,000 and 10,000 kWh a year.
            let kwh: u64 = (0..p.mean_mw.len()).map(|i| p.step_energy_mwh(i).unwrap()).sum::<u64>() / 1_000_000;
            assert!((1_000..10_000).contains(&kwh), "{name}: {kwh} kWh");
        }
        // The first row of the family file is 391.93 W: exactly 391,930 mW.
        assert_eq!(LoadProfile::parse_synpro(&data("synPRO_el_family.dat")).unwrap().mean_mw[0], 391_930);
    }

    #[test]
    fn bad_load_lines_are_named() {
        let header = "# c\nYYYYMMDD;hhmmss;unixtimestamp;P_el\n";
        let text = format!("{header}20210101;000000;100;1.5\n20210101;001500;1000;x\n");
        assert!(matches!(LoadProfile::parse_synpro(&text), Err(ProfileError::Line { line: 4, .. })));
        let text = format!("{header}20210101;000000;100;1.5\n20210101;001500;1000;-2\n");
        assert!(matches!(LoadProfile::parse_synpro(&text), Err(ProfileError::Line { line: 4, .. })));
        // A lossy time is taken as one step on when it agrees, and refused when it does not.
        let text = format!("{header}a;b;1000000;1\na;b;1000900;1\na;b;1.0018e+06;1\na;b;1002700;1\n");
        assert_eq!(LoadProfile::parse_synpro(&text).unwrap().mean_mw.len(), 4);
        let text = format!("{header}a;b;1000000;1\na;b;1000900;1\na;b;2.0e+06;1\n");
        assert!(matches!(LoadProfile::parse_synpro(&text), Err(ProfileError::Line { line: 5, .. })));
        let text = format!("{header}a;b;100;1\na;b;1000;1\na;b;1950;1\n");
        assert_eq!(
            LoadProfile::parse_synpro(&text),
            Err(ProfileError::Shape("row 3 is not 900 s after the one before".into()))
        );
        assert!(matches!(LoadProfile::parse_synpro(header), Err(ProfileError::Shape(_))));
    }

    #[test]
    fn the_tmy3_file_is_a_year_of_hourly_ghi() {
        let sun = Irradiance::parse_tmy3(&data("tmy3_723170_greensboro_nc.csv")).unwrap();
        assert_eq!(sun.station, "GREENSBORO PIEDMONT TRIAD INT");
        assert_eq!(sun.utc_offset_hours, -5);
        assert_eq!(sun.ghi.len(), 8_760);
        // Dark at midnight, bright at noon in June; never above the solar constant.
        let june_21 = 171 * 24;
        assert_eq!(sun.ghi[june_21], 0);
        assert!(sun.ghi[june_21 + 12] > 500, "{}", sun.ghi[june_21 + 12]);
        assert!(sun.ghi.iter().all(|g| *g < 1_367));
        // A year of GHI there is about 1,600 to 1,800 kWh/m².
        let kwh_m2 = sun.ghi.iter().map(|g| u64::from(*g)).sum::<u64>() / 1_000;
        assert!((1_500..1_900).contains(&kwh_m2), "{kwh_m2}");
    }
}
