//! Interval accounting: boundary-straddling readings, counter resets, gaps, power-only input.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test panics to fail

use std::time::Duration;

use peerwatt_core::{IntervalId, IntervalLength, Timestamp, W, Wh};
use peerwatt_meter::{Accountant, History, IntervalTotals, Reading, Role, Source};

/// 2024-06-01T12:00:00Z, the start of interval `I0` (15-minute intervals).
const T0: u64 = 1_717_243_200_000;
const I0: u64 = T0 / 900_000;

fn at(secs: u64) -> Timestamp {
    Timestamp(T0 + secs * 1000)
}

fn counters(t: Timestamp, import: u64, export: u64, epoch: u32) -> Reading {
    Reading {
        time: t,
        role: Role::Grid,
        grid_power: None,
        import_total: Some(Wh(import)),
        export_total: Some(Wh(export)),
        pv_power: None,
        pv_yield_total: None,
        battery_power: None,
        counter_epoch: epoch,
    }
}

fn power(t: Timestamp, w: i64) -> Reading {
    Reading { grid_power: Some(W(w)), import_total: None, export_total: None, ..counters(t, 0, 0, 0) }
}

fn accountant() -> Accountant {
    Accountant::new(IntervalLength::DEFAULT, Duration::from_secs(60))
}

/// (interval relative to `I0`, imported Wh, exported Wh, complete).
fn summary(t: &IntervalTotals) -> (i64, u64, u64, bool) {
    (t.interval.0 as i64 - I0 as i64, t.imported.0, t.exported.0, t.complete)
}

#[test]
fn readings_every_30_s_give_exact_complete_intervals() {
    let mut a = accountant();
    // From 11:59:40 to 12:30:20 every 30 s, importing 10 Wh and exporting 3 Wh per 30 s.
    for i in 0..=62u64 {
        a.observe(&counters(Timestamp(T0 - 20_000 + i * 30_000), 1_000 + 10 * i, 500 + 3 * i, 0));
    }
    let closed = a.close(at(1820));
    // Interval −1 saw only its last 20 s (6 Wh import, 2 Wh export: 10 and 3 per 30 s, split
    // 20:10 by time, floor-cumulative); 0 and 1 are complete: 900 s = 300 Wh import, 90 Wh export.
    assert_eq!(
        closed.iter().map(summary).collect::<Vec<_>>(),
        vec![(-1, 6, 2, false), (0, 300, 90, true), (1, 300, 90, true)]
    );
    assert!(closed.iter().all(|t| t.source == Source::Counters));
}

#[test]
fn a_reading_pair_straddling_a_boundary_is_split_by_time() {
    let mut a = accountant();
    // 12:14:50 → 12:15:10: 20 Wh imported; 10 s on each side of 12:15.
    a.observe(&counters(at(890), 1_000, 0, 0));
    a.observe(&counters(at(910), 1_020, 0, 0));
    // 12:15:10 → 12:15:40: 7 Wh over 30 s, all in interval 1.
    a.observe(&counters(at(940), 1_027, 7, 0));
    a.observe(&counters(at(1900), 1_027, 7, 0)); // much later, to close interval 1
    let closed = a.close(at(1900));
    let by_id = |id: u64| closed.iter().find(|t| t.interval == IntervalId(I0 + id)).copied().unwrap();
    assert_eq!(by_id(0).imported, Wh(10));
    assert_eq!(by_id(1).imported.0, 10 + 7, "the rest of the straddling pair, then the next pair");
    assert_eq!(by_id(1).exported, Wh(7));
    assert!(!by_id(0).complete && !by_id(1).complete, "only 10 s of interval 0 and a gap in interval 1 were covered");
    // Energy is conserved exactly: everything between the first and last counters is booked.
    let total: u64 = closed.iter().map(|t| t.imported.0).sum();
    assert_eq!(total, 27);
}

#[test]
fn uneven_splits_still_add_up_exactly() {
    let mut a = accountant();
    // 7 Wh over 3 intervals' worth of uneven overlap: 12:14:59 → 12:45:01 (one pair, long gap).
    a.observe(&counters(at(899), 100, 0, 0));
    a.observe(&counters(at(2701), 107, 0, 0));
    a.observe(&counters(at(3601), 107, 0, 0)); // closes the interval holding 12:45:01
    let closed = a.close(at(3601));
    assert_eq!(closed.len(), 4, "12:00, 12:15, 12:30, 12:45; 13:00 holds the latest reading");
    assert_eq!(closed.iter().map(|t| t.imported.0).sum::<u64>(), 7);
    assert!(closed.iter().all(|t| !t.complete), "a gap longer than max_gap leaves intervals incomplete");
}

#[test]
fn a_counter_reset_books_nothing_across_it_and_marks_the_interval() {
    let mut a = accountant();
    for i in 0..=30u64 {
        a.observe(&counters(at(i * 30), 5_000 + 10 * i, 0, 0)); // 12:00:00 … 12:15:00
    }
    a.observe(&counters(at(930), 2, 0, 1)); // meter replaced: new epoch
    for i in 1..=30u64 {
        a.observe(&counters(at(930 + i * 30), 2 + 10 * i, 0, 1));
    }
    let closed = a.close(at(1900));
    let by_id = |id: u64| closed.iter().find(|t| t.interval == IntervalId(I0 + id)).copied().unwrap();
    assert_eq!(summary(&by_id(0)), (0, 300, 0, true));
    let second = by_id(1);
    assert!(second.counter_reset && !second.complete);
    assert_eq!(second.imported, Wh(290), "the 30 s across the reset are unknown; the rest is counted");
}

#[test]
fn readings_in_the_same_millisecond_lose_no_energy() {
    let mut a = accountant();
    a.observe(&counters(at(0), 100, 0, 0));
    a.observe(&counters(at(0), 110, 0, 0)); // same time stamp, counter moved
    a.observe(&counters(at(30), 115, 0, 0));
    a.observe(&counters(at(930), 115, 0, 0));
    let closed = a.close(at(930));
    assert_eq!(closed[0].imported, Wh(15));
}

#[test]
fn power_only_sources_are_integrated() {
    let mut a = accountant();
    // 1,200 W import for 12:00–12:10, then 2,400 W export until 12:15:30, every 10 s.
    for i in 0..=93u64 {
        let w = if i < 60 { 1_200 } else { -2_400 };
        a.observe(&power(at(i * 10), w));
    }
    let closed = a.close(at(930 + 60));
    let first = closed.iter().find(|t| t.interval == IntervalId(I0)).copied().unwrap();
    // 1.2 kW × 10 min = 200 Wh; 2.4 kW × 5 min = 200 Wh.
    assert_eq!((first.imported, first.exported, first.complete, first.source), (Wh(200), Wh(200), true, Source::Power));
}

#[test]
fn power_gaps_are_not_invented() {
    let mut a = accountant();
    a.observe(&power(at(0), 1_000));
    a.observe(&power(at(30), 1_000));
    a.observe(&power(at(600), 1_000)); // 9.5 minutes of silence
    a.observe(&power(at(900), 1_000));
    let closed = a.close(at(2000));
    let first = closed.iter().find(|t| t.interval == IntervalId(I0)).copied().unwrap();
    assert_eq!(first.imported, Wh(8), "only the 30 s before the gap: 1 kW × 30 s = 8.3 Wh");
    assert!(!first.complete);
    assert_eq!(first.covered_ms, 30_000);
}

#[test]
fn silent_meters_still_close_intervals_and_late_energy_is_not_lost() {
    let mut a = accountant();
    a.observe(&counters(at(0), 100, 0, 0));
    a.observe(&counters(at(30), 110, 0, 0));
    // No readings; the clock moves past interval 0's end + max_gap: it closes, incomplete.
    let closed = a.close(at(961));
    assert_eq!(closed.len(), 1);
    assert_eq!((closed[0].imported, closed[0].complete), (Wh(10), false));
    // The meter comes back in interval 2: the energy of the silence goes to the oldest open interval.
    a.observe(&counters(at(1850), 150, 0, 0));
    a.observe(&counters(at(2750), 160, 0, 0));
    a.observe(&counters(at(3600), 160, 0, 0)); // closes the interval holding 12:45:50
    let later = a.close(at(3600));
    assert_eq!(later.iter().map(|t| t.imported.0).sum::<u64>(), 50);
}

#[test]
fn history_survives_a_restart_and_is_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meter-history.json");
    let mut a = accountant();
    for i in 0..=200u64 {
        a.observe(&counters(at(i * 30), 10 * i, 0, 0));
    }
    let closed = a.close(at(6000));
    assert_eq!(closed.len(), 6);
    let mut h = History::open(&path, 4);
    h.extend(&closed).unwrap();
    let reopened = History::open(&path, 4);
    let kept: Vec<_> = reopened.items().copied().collect();
    assert_eq!(kept, closed[2..].to_vec(), "the newest 4 of 6 are kept, across a restart");

    // Appends, then a compaction: the file never holds more than twice the capacity.
    let mut h = History::open(&path, 4);
    for t in &closed {
        h.extend(std::slice::from_ref(t)).unwrap();
        let lines = std::fs::read_to_string(&path).unwrap().lines().count();
        assert!(lines <= 8, "{lines} lines for a capacity of 4");
    }
    assert_eq!(History::open(&path, 4).items().copied().collect::<Vec<_>>(), closed[2..].to_vec());

    // A crash in the middle of an append: the cut line is dropped, the rest kept, and the next
    // save leaves a clean file.
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.extend_from_slice(b"{\"interval\":");
    std::fs::write(&path, &bytes).unwrap();
    let mut torn = History::open(&path, 4);
    assert_eq!(torn.items().copied().collect::<Vec<_>>(), closed[2..].to_vec());
    torn.extend(&closed[5..]).unwrap();
    let reread = History::open(&path, 4);
    assert_eq!(reread.items().count(), 4);
    assert!(!dir.path().join("meter-history.json.corrupt").exists());

    // The older format, one JSON array, is still read.
    std::fs::write(&path, serde_json::to_vec(&closed[..3]).unwrap()).unwrap();
    assert_eq!(History::open(&path, 4).items().copied().collect::<Vec<_>>(), closed[..3].to_vec());

    std::fs::write(&path, b"{ not json").unwrap();
    let damaged = History::open(&path, 4);
    assert_eq!(damaged.items().count(), 0);
    assert!(dir.path().join("meter-history.json.corrupt").exists(), "a damaged file is kept aside, not lost");
}
