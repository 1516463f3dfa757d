//! The default strategy's worked examples (the same as in docs/market.md).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test panics to fail

use peerwatt_core::*;
use peerwatt_market::*;

mod common;
use common::*;

/// The trading window for `I` runs from 11:00:00 to 11:59:00 (3,540 s).
fn at_progress(num: u64, den: u64) -> Timestamp {
    Timestamp(START - 3_600_000 + 3_540_000 * num / den)
}

#[test]
fn prices_move_linearly_toward_each_other_and_meet_halfway() {
    let c = community();
    let none = UserLimits::default();
    let p = |side, t| price_at(&c, &none, side, I, t).unwrap().0;
    assert_eq!((p(Side::Sell, at_progress(0, 1)), p(Side::Buy, at_progress(0, 1))), (300_000, 80_000));
    assert_eq!((p(Side::Sell, at_progress(1, 4)), p(Side::Buy, at_progress(1, 4))), (245_000, 135_000));
    assert_eq!((p(Side::Sell, at_progress(1, 2)), p(Side::Buy, at_progress(1, 2))), (190_000, 190_000));
    // 1 ms before gate closure: step = floor(220,000 × 3,539,999 / 3,540,000) = 219,999.
    assert_eq!(p(Side::Sell, Timestamp(START - 60_001)), 80_001, "just before gate closure");
    assert_eq!(price_at(&c, &none, Side::Sell, I, Timestamp(START - 60_000)), None, "closed at gate closure");
    assert_eq!(price_at(&c, &none, Side::Buy, I, Timestamp(START - 3_600_001)), None, "not open yet");
}

#[test]
fn user_limits_bound_the_price() {
    let c = community();
    let limits =
        UserLimits { min_sell_price: Some(Price(200_000)), max_buy_price: Some(Price(150_000)), ..Default::default() };
    // Each curve runs to the party's own limit: 300,000 − 100,000 × 3/4 and 80,000 + 70,000 × 3/4.
    assert_eq!(price_at(&c, &limits, Side::Sell, I, at_progress(3, 4)), Some(Price(225_000)));
    assert_eq!(price_at(&c, &limits, Side::Buy, I, at_progress(3, 4)), Some(Price(132_500)));
    // … and never past it.
    assert_eq!(price_at(&c, &limits, Side::Sell, I, Timestamp(START - 60_001)), Some(Price(200_001)));
    assert_eq!(price_at(&c, &limits, Side::Buy, I, Timestamp(START - 60_001)), Some(Price(149_999)));
    // A seller with a lower floor always asks less than one with a higher floor.
    let cheap = UserLimits { min_sell_price: Some(Price(100_000)), ..Default::default() };
    for k in 1..10 {
        let (a, b) = (
            price_at(&c, &cheap, Side::Sell, I, at_progress(k, 10)),
            price_at(&c, &limits, Side::Sell, I, at_progress(k, 10)),
        );
        assert!(a < b, "{k}/10: {a:?} vs {b:?}");
    }
    // A limit outside [feed-in, retail] is clamped into it: nobody trades outside the tariffs.
    let wild = UserLimits { min_sell_price: Some(Price(1)), max_buy_price: Some(Price(999_999)), ..Default::default() };
    for (side, t) in
        [(Side::Sell, at_progress(99, 100)), (Side::Buy, at_progress(99, 100)), (Side::Sell, at_progress(1, 3))]
    {
        assert_eq!(price_at(&c, &wild, side, I, t), price_at(&c, &UserLimits::default(), side, I, t), "{side:?}");
    }
    // 99 % through the window: step = 220,000 × 0.99 = 217,800.
    assert_eq!(price_at(&c, &wild, Side::Sell, I, at_progress(99, 100)), Some(Price(82_200)));
    assert_eq!(price_at(&c, &wild, Side::Buy, I, at_progress(99, 100)), Some(Price(297_800)));
}

fn day_ago(days: u64, imported: u64, exported: u64, complete: bool) -> Observed {
    Observed { interval: IntervalId(I.0 - 96 * days), imported: Wh(imported), exported: Wh(exported), complete }
}

#[test]
fn the_forecast_sells_the_median_surplus_and_buys_the_low_quartile_of_the_import() {
    let c = community();
    let history = vec![
        day_ago(1, 50, 650, true),   // +600
        day_ago(2, 100, 500, true),  // +400
        day_ago(3, 0, 9_999, false), // incomplete: ignored
        day_ago(9, 0, 9_999, true),  // beyond 7 days: ignored
        Observed { interval: IntervalId(I.0 - 1), imported: Wh(0), exported: Wh(9_999), complete: true }, // other time of day
    ];
    let f = Forecaster::new(&c, history, 7);
    assert_eq!(f.net_export(I), Some(400), "the lower median of +400 and +600");
    assert_eq!(f.net_export(IntervalId(I.0 + 1)), None, "no history at 12:15");
    // A week of evening load with two spikes (an oven, guests): the contract is the load that
    // recurs, the 2nd lowest of the seven days, not the average the spikes inflate (207).
    let evening: Vec<Observed> =
        [90, 60, 700, 50, 80, 400, 70].iter().enumerate().map(|(d, &wh)| day_ago(d as u64 + 1, wh, 0, true)).collect();
    assert_eq!(Forecaster::new(&c, evening, 7).net_export(I), Some(-60));
    // A surplus on most days is sold at the median even if one day was cloudy.
    let sunny: Vec<Observed> = [900, 850, -200, 950, 800]
        .iter()
        .enumerate()
        .map(|(d, &net)| {
            let (imported, exported) = if net < 0 { (200, 0) } else { (0, net as u64) };
            day_ago(d as u64 + 1, imported, exported, true)
        })
        .collect();
    assert_eq!(Forecaster::new(&c, sunny, 7).net_export(I), Some(850));
}

#[test]
fn intents_never_exceed_the_forecast_or_the_limits() {
    let c = community();
    let f = Forecaster::new(&c, vec![day_ago(1, 0, 500, true)], 7);
    let limits = UserLimits { reserve: Wh(100), ..Default::default() };
    let t = at_progress(1, 2);
    assert_eq!(
        intent(&c, &limits, &f, I, Wh(0), t),
        Some(Intent { side: Side::Sell, energy: Wh(400), price: Price(190_000), limit: Price(80_000) })
    );
    assert_eq!(
        intent(&c, &limits, &f, I, Wh(150), t).map(|i| i.energy),
        Some(Wh(250)),
        "minus what is already sold or requested"
    );
    assert_eq!(intent(&c, &limits, &f, I, Wh(400), t), None, "nothing more to sell");
    let capped = UserLimits { max_energy_per_interval: Some(Wh(300)), ..limits };
    assert_eq!(intent(&c, &capped, &f, I, Wh(0), t).map(|i| i.energy), Some(Wh(300)));

    let deficit = Forecaster::new(&c, vec![day_ago(1, 700, 100, true)], 7);
    assert_eq!(
        intent(&c, &limits, &deficit, I, Wh(0), t),
        Some(Intent { side: Side::Buy, energy: Wh(600), price: Price(190_000), limit: Price(300_000) })
    );
    assert_eq!(intent(&c, &limits, &Forecaster::new(&c, vec![], 7), I, Wh(0), t), None, "no history, no trading");
}

#[test]
fn the_recent_forecast_averages_the_last_complete_intervals() {
    let obs = |i: u64, imported: u64, exported: u64, complete: bool| Observed {
        interval: IntervalId(I.0 - i),
        imported: Wh(imported),
        exported: Wh(exported),
        complete,
    };
    let history = vec![obs(5, 0, 900, true), obs(3, 100, 400, true), obs(2, 0, 200, true), obs(1, 0, 5_000, false)];
    let f = Forecaster::with_method(&community(), history, ForecastMethod::Recent { intervals: 2 });
    // The incomplete interval 1 is skipped; the last two complete are 3 (+300) and 2 (+200).
    assert_eq!(f.net_export(I), Some(250));
    let mut f = f;
    f.observe(obs(1, 700, 0, true));
    assert_eq!(f.net_export(I), Some(-250), "(-700 + 200) / 2");
    assert_eq!(f.net_export(IntervalId(I.0 - 5)), None, "nothing before the first observation");
}

#[test]
fn a_new_node_trades_cautiously_from_its_first_complete_hour() {
    let c = community();
    let recent = |back: u64, imported: u64| Observed {
        interval: IntervalId(I.0 - back),
        imported: Wh(imported),
        exported: Wh(0),
        complete: true,
    };
    // Three complete intervals: not an hour yet.
    let f = Forecaster::new(&c, vec![recent(4, 400), recent(3, 200), recent(2, 600)], 7);
    assert_eq!(f.net_export(I), None, "no complete hour, no trading");
    // Four: half the hour's mean deficit, (400 + 200 + 600 + 200) / 4 / 2.
    let f = Forecaster::new(&c, vec![recent(5, 400), recent(4, 200), recent(3, 600), recent(2, 200)], 7);
    assert_eq!(f.net_export(I), Some(-175));
    let t = Timestamp(c.trading_window(I).0.0 + 1_000);
    let want = intent(&c, &UserLimits::default(), &f, I, Wh(0), t).expect("it trades");
    assert_eq!((want.side, want.energy), (Side::Buy, Wh(175)));
    // With a day of history, the same time of day decides (here: none, so no trading).
    let mut old = vec![recent(96 + 10, 100)];
    old.extend([recent(5, 400), recent(4, 200), recent(3, 600), recent(2, 200)]);
    assert_eq!(Forecaster::new(&c, old, 7).net_export(I), None);
}
