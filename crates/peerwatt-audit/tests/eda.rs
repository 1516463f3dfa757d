//! The EDA energy-data reports of tests/data (made by make_eda_reports.py in the layout of real
//! reports): every quarter hour of a day with a change of clocks lands in its own UTC interval,
//! registers are told by their labels, qualities are kept, and a day with a quarter hour
//! missing is refused.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test panics to fail

use peerwatt_audit::eda::parse_report;
use peerwatt_audit::meter_data::{MeterData, Quality, Register};
use peerwatt_core::{IntervalId, IntervalLength, Timestamp};

const CONSUMER: &str = "AT0020000000000000000000000000001";
const PRODUCER: &str = "AT0020000000000000000000000000002";

fn report(name: &str) -> Result<MeterData, peerwatt_audit::meter_data::MeterDataError> {
    let bytes = std::fs::read(format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap();
    parse_report(&bytes, IntervalLength::DEFAULT)
}

/// The UTC starts of a point's register, in order.
fn starts(data: &MeterData, point: &str, register: &Register) -> Vec<String> {
    let len = IntervalLength::DEFAULT;
    data.values
        .keys()
        .filter(|(p, _, r)| p == point && r == register)
        .map(|(_, i, _)| len.start(*i).to_string())
        .collect()
}

fn contiguous(data: &MeterData, point: &str, register: &Register) -> bool {
    let ids: Vec<IntervalId> =
        data.values.keys().filter(|(p, _, r)| p == point && r == register).map(|(_, i, _)| *i).collect();
    ids.windows(2).all(|w| w[1].0 == w[0].0 + 1)
}

#[test]
fn the_autumn_day_has_100_quarter_hours_and_the_repeated_hour_is_summer_time_then_winter_time() {
    let data = report("eda-2023-10-29.xlsx").unwrap();
    let import = starts(&data, CONSUMER, &Register::Import);
    assert_eq!(import.len(), 100);
    assert!(contiguous(&data, CONSUMER, &Register::Import), "no two rows in one interval, no gap");
    assert_eq!(import[0], "2023-10-28T22:00:00.000Z", "00:00 CEST");
    assert_eq!(import[8], "2023-10-29T00:00:00.000Z", "the first 02:00, CEST");
    assert_eq!(import[12], "2023-10-29T01:00:00.000Z", "the second 02:00, CET");
    assert_eq!(import[99], "2023-10-29T22:45:00.000Z", "23:45 CET");
    // Values to the mWh, and their quality as the MM column says.
    let len = IntervalLength::DEFAULT;
    let at = |i: usize, register: Register, point: &str| {
        let interval =
            len.interval_at(Timestamp(len.start(len.interval_at(Timestamp(1_698_530_400_000))).0 + i as u64 * 900_000));
        data.values[&(point.to_owned(), interval, register)]
    };
    assert_eq!(
        (at(0, Register::Import, CONSUMER).mwh, at(0, Register::Import, CONSUMER).quality),
        (31_000, Quality::L1)
    );
    assert_eq!(at(5, Register::Import, CONSUMER).quality, Quality::L2);
    assert_eq!(at(6, Register::Import, CONSUMER).quality, Quality::L3);
    assert_eq!(at(3, Register::Other("Anteil gemeinschaftliche Erzeugung [KWH]".into()), CONSUMER).mwh, 2_181);
    assert_eq!(at(1, Register::Export, PRODUCER).mwh, 64_000, "the generation point's total is its export");
    assert_eq!(starts(&data, PRODUCER, &Register::Export).len(), 100);
    assert!(data.values.keys().all(|(p, _, _)| p == CONSUMER || p == PRODUCER), "TOTAL and MM are not points");
}

#[test]
fn the_spring_day_has_92_quarter_hours() {
    let data = report("eda-2023-03-26.xlsx").unwrap();
    let import = starts(&data, CONSUMER, &Register::Import);
    assert_eq!(import.len(), 92);
    assert!(contiguous(&data, CONSUMER, &Register::Import));
    assert_eq!(import[0], "2023-03-25T23:00:00.000Z", "00:00 CET");
    assert_eq!(import[8], "2023-03-26T01:00:00.000Z", "03:00 CEST follows 01:45 CET");
    assert_eq!(import[91], "2023-03-26T21:45:00.000Z", "23:45 CEST");
}

#[test]
fn a_day_with_a_quarter_hour_missing_or_a_file_that_is_no_report_is_refused() {
    let short = report("eda-2023-10-29-short.xlsx").unwrap_err().to_string();
    assert_eq!(short, "2023-10-29 has 99 quarter hours, not 100");
    let not_xlsx = parse_report(b"metering_point,interval_start\n", IntervalLength::DEFAULT).unwrap_err();
    assert!(not_xlsx.to_string().starts_with("not a workbook"), "{not_xlsx}");
    let bytes = std::fs::read(format!("{}/tests/data/eda-2023-03-26.xlsx", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let hourly = parse_report(&bytes, IntervalLength::from_secs(3_600).unwrap()).unwrap_err();
    assert!(hourly.to_string().contains("quarter hours"), "{hourly}");
}
