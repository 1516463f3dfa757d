//! The scale benchmark: N households × D simulated days on the real parts, one process.
//!
//! `cargo bench -p peerwatt-sim --bench scale -- 100` (or `500`, and optionally a number of
//! days and a speed; `libp2p` or `in-process` picks the network, else the scenario's `auto`,
//! which is in-process at these sizes): prints wall time, peak memory (total and per node), trades, efficiency and whether
//! the nodes kept pace with the accelerated clock. One size per run, so that the peak memory
//! is that size's. Results and commands are in `docs/benchmarks.md`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark panics to fail

use std::time::Instant;

use peerwatt_sim::{NetworkChoice, Quiet, RunOptions, Scenario};

fn main() {
    let words: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<u64> = words.iter().filter_map(|a| a.parse().ok()).collect();
    let network = match words.iter().find(|w| w.parse::<u64>().is_err() && !w.starts_with('-')).map(String::as_str) {
        Some("libp2p") => NetworkChoice::Libp2p,
        Some("in-process") => NetworkChoice::InProcess,
        _ => NetworkChoice::Auto,
    };
    let households = usize::try_from(args.first().copied().unwrap_or(100)).unwrap();
    let days = u32::try_from(args.get(1).copied().unwrap_or(1)).unwrap();
    // The targets are wall times for one day: 60 s for 100 households, 5 min for 500. The
    // clock alone takes 86,400 / speed seconds, so the speed leaves room for start and end
    // (about 30 s at 500 households): 2,880× is 30 s of clock, 330× is 262 s.
    let default_speed = if households <= 100 { 2_880 } else { 330 };
    let speed = u32::try_from(args.get(2).copied().unwrap_or(default_speed)).unwrap();
    let scenario = Scenario {
        households,
        days,
        speed,
        // Coarser timing than the 10-household demo: fewer re-pricings and meter messages.
        reprice_secs: 900,
        tick_ms: 100,
        heartbeat_ms: 1_000,
        meter_period_secs: 300,
        network,
        // The targets are for the day's trading: the hour or two after it, in which every node
        // states its last intervals and settles them, is clock time, not work (11 s at 330×).
        // The report says how many household intervals were settled by the day's end.
        wait_for_settlement: false,
        audit: false,
        ..Scenario::default()
    };
    let out = tempfile::tempdir().unwrap();
    let options = RunOptions { scenario, out: out.path().to_owned(), data_dir: None, serve: None };
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(8).enable_all().build().unwrap();
    let started = Instant::now();
    let report = runtime.block_on(peerwatt_sim::run(&options, &mut Quiet)).unwrap();
    let wall = started.elapsed().as_secs_f64();
    let rss = peerwatt_testkit::peak_rss_kb();
    let c = &report.community;
    let simulated = f64::from(days) * 86_400.0 / f64::from(speed);
    println!("scale: {households} households x {days} day(s), speed {speed}");
    println!("  network              {}", report.network);
    println!(
        "  wall time            {wall:.1} s (trading {:.1} s; the clock alone needs {simulated:.1} s)",
        report.timing.trading_secs
    );
    println!(
        "  peak RSS             {:.0} MB total, {:.1} MB per node",
        rss as f64 / 1_024.0,
        rss as f64 / 1_024.0 / households as f64
    );
    println!(
        "  trades               {} ({} kWh), in {} of {} intervals",
        c.trades,
        peerwatt_sim::report::kwh(c.traded_wh),
        c.intervals_with_trades,
        report.intervals.len()
    );
    println!("  orders published     {}", report.ledgers.orders_published);
    let household_intervals = households as u64 * report.intervals.len() as u64;
    println!(
        "  settled              {} of {household_intervals} household intervals by the end of the day; delivered {} of {} contracted, shared {}, local {} of {} shareable",
        household_intervals - c.unsettled_intervals,
        peerwatt_sim::report::kwh(c.delivered_wh),
        peerwatt_sim::report::kwh(c.traded_wh),
        peerwatt_sim::report::kwh(c.shared_wh),
        peerwatt_sim::report::kwh(c.delivered_wh + c.shared_wh),
        peerwatt_sim::report::kwh(c.shareable_wh),
    );
    println!(
        "  market efficiency    {} ({} basis points)",
        peerwatt_sim::report::percent(c.efficiency_bp),
        c.efficiency_bp
    );
    println!(
        "  ledgers verified     {} of {}",
        report.ledgers.nodes.iter().filter(|n| n.problem.is_none()).count(),
        report.ledgers.nodes.len()
    );
    println!(
        "  meter intervals      {} of {} measured, largest difference {} Wh",
        report.meters.intervals_measured, report.meters.intervals_expected, report.meters.max_interval_diff_wh
    );
    println!("  order age on arrival {}", order_ages(&report.delivery));
    println!("  of which the maker's {}", shares(&report.delivery.own_order_waits, last_bound(&report.delivery)));
    println!(
        "  kept up              {} (median order arrival within {} ms; {} gossip messages dropped, {} meter readings refused)",
        if report.delivery.kept_up { "yes" } else { "no" },
        report
            .delivery
            .median_order_age_ms
            .map_or(format!("over {}", last_bound(&report.delivery)), |ms| ms.to_string()),
        report.delivery.gossip_dropped,
        report.delivery.meter_readings_rejected
    );
}

/// How old gossiped orders were when they arrived (real time), over every node: the share of
/// arrivals in each bucket.
fn order_ages(delivery: &peerwatt_sim::delivery::DeliveryCheck) -> String {
    shares(&delivery.order_ages, last_bound(delivery))
}

/// Each bucket's share of `buckets`, in words.
fn shares(buckets: &[(Option<u64>, u64)], last: u64) -> String {
    let total: u64 = buckets.iter().map(|(_, n)| n).sum();
    buckets
        .iter()
        .map(|(bound, n)| {
            let bucket = bound.map_or(format!("over {last}ms"), |ms| format!("le {ms}ms"));
            format!("{bucket} {:.0} %", 100.0 * *n as f64 / total.max(1) as f64)
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The largest bucket bound, ms: older arrivals are counted as "over" it.
fn last_bound(delivery: &peerwatt_sim::delivery::DeliveryCheck) -> u64 {
    delivery.order_ages.iter().rev().find_map(|(bound, _)| *bound).unwrap_or(0)
}
