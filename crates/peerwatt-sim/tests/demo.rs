//! A short demo on the real parts (embedded broker, libp2p on loopback, sled ledgers): the
//! report's numbers are checked against the ledgers and the meters, independently read.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test panics to fail

use std::collections::HashMap;

use std::collections::BTreeMap;

use peerwatt_core::{Hash, Money, Price, Settlement, Side, Trade, Wh};
use peerwatt_ledger::LedgerReader;
use peerwatt_meter::History;
use peerwatt_sim::{Quiet, RunOptions, Scenario};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_demo_reports_what_the_ledgers_and_meters_hold() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("nodes");
    let out = dir.path().join("out");
    // Three households (one with PV) from 11:30 for six intervals.
    let scenario = Scenario { households: 3, start_quarter: 46, intervals: Some(6), ..Scenario::default() };
    let options = RunOptions { scenario, out: out.clone(), data_dir: Some(data.clone()), serve: None };
    let report = peerwatt_sim::run(&options, &mut Quiet).await.unwrap();

    // The ledgers: all verified, every trade in both parties' ledgers.
    assert!(report.ledgers.all_verified, "{:?}", report.ledgers.nodes);
    assert_eq!((report.ledgers.trades_in_one_ledger, report.ledgers.bad_trades), (0, 0));
    let c = &report.community;
    assert!(c.trades > 0, "a sunny noon trades");

    // Read every ledger ourselves: each trade once, by digest, within the reported intervals.
    let start_interval = report.intervals.first().map(|i| i.start.clone()).unwrap();
    assert!(start_interval.starts_with("2021-06-25T11:30"), "{start_interval}");
    let first = 1_624_620_600_000 / 900_000; // 2021-06-25T11:30Z
    let names: Vec<String> = report.households.iter().map(|h| h.household.name.clone()).collect();
    let mut peer_of = HashMap::new();
    let mut trades: HashMap<Hash, (usize, Trade)> = HashMap::new();
    // Per household, interval and side: the largest order (the forecast need, which in the
    // simulator does not change within a day, less what was already traded).
    let mut largest_order: HashMap<(usize, u64, u8), u64> = HashMap::new();
    // Per household: its latest settlement of each interval.
    let settlements = settlements_of(&data, &names);
    for (i, name) in names.iter().enumerate() {
        let reader = LedgerReader::open_dir(&data.join(name).join("ledger")).unwrap();
        peer_of.insert(reader.owner().unwrap().to_string(), i);
        for order in reader.orders().unwrap() {
            let o = order.body();
            let most = largest_order.entry((i, o.interval.0, o.side as u8)).or_insert(0);
            *most = (*most).max(o.energy.0);
        }
        for trade in reader.trades().unwrap() {
            let holders = trades.entry(trade.digest()).or_insert((0, trade.body().clone()));
            holders.0 += 1;
        }
    }
    let mut sold = vec![0u64; names.len()];
    let mut bought = vec![0u64; names.len()];
    let mut in_run = 0;
    for (holders, t) in trades.values() {
        assert_eq!(*holders, 2, "a trade is in both parties' ledgers");
        let terms = t.request.body();
        assert_eq!(terms.maker_side, Side::Sell, "only buyers take: every maker is a seller");
        if !(first..first + 6).contains(&terms.interval.0) {
            continue;
        }
        in_run += 1;
        assert!((80_000..=300_000).contains(&terms.price.0), "within the tariffs");
        sold[peer_of[&t.seller().to_string()]] += terms.energy.0;
        bought[peer_of[&t.buyer().to_string()]] += terms.energy.0;
    }
    assert_eq!(c.trades, in_run);
    // No household trades more than its forecast: the energy of a trade agreed but not yet
    // durable counts as spoken for (a tick in between once offered it again).
    let mut traded: HashMap<(usize, u64, u8), u64> = HashMap::new();
    for (_, t) in trades.values() {
        let terms = t.request.body();
        *traded.entry((peer_of[&t.seller().to_string()], terms.interval.0, Side::Sell as u8)).or_default() +=
            terms.energy.0;
        *traded.entry((peer_of[&t.buyer().to_string()], terms.interval.0, Side::Buy as u8)).or_default() +=
            terms.energy.0;
    }
    for (key, energy) in &traded {
        let most = largest_order.get(key).copied().unwrap_or(0);
        assert!(
            *energy <= most,
            "household {} traded {energy} Wh in interval {} on side {}, its largest order was {most} Wh",
            key.0,
            key.1,
            key.2
        );
    }
    assert_eq!(report.ledgers.trades_outside_run, trades.len() as u64 - in_run);

    let tariffs = report.tariffs;
    for (i, h) in report.households.iter().enumerate() {
        let d = &h.day;
        // Local energy: exactly what the ledgers hold.
        assert_eq!((d.sold_wh, d.bought_wh), (sold[i], bought[i]), "{}", names[i]);
        // Energy balance of the household, exact in Wh.
        assert_eq!(
            d.load_wh + d.battery_charge_wh + d.export_wh,
            d.pv_wh + d.battery_discharge_wh + d.import_wh,
            "{}",
            names[i]
        );
        // (Against the node's own meter figures, checked per settlement below: the simulated
        // meter's differ from them by the boundary smear.)
        assert!(d.delivered_sold_wh <= d.sold_wh && d.delivered_bought_wh <= d.bought_wh);
        // Every interval settled by the node itself, completely; the bill and the grid-only
        // baseline are its settlements', on its own signed meter figures.
        let own: Vec<&Settlement> = settlements[i].range(first..first + 6).map(|(_, s)| s).collect();
        assert_eq!(own.len(), 6, "{} settled every interval", names[i]);
        assert!(own.iter().all(|s| s.complete), "{}", names[i]);
        let cost = |wh: Wh, p: Price| wh.cost_at(p).unwrap().0;
        let baseline: i64 =
            own.iter().map(|s| cost(s.imported, tariffs.retail) - cost(s.exported, tariffs.feed_in)).sum();
        assert_eq!(d.baseline, baseline);
        assert_eq!(d.bill, own.iter().map(|s| s.cost.0).sum::<i64>());
        assert_eq!(
            d.bill,
            d.grid_cost - d.grid_credit + d.local_cost - d.local_credit + d.shared_cost - d.shared_credit
        );
        // What the settlements account for is exactly what the node's meter stated.
        for s in &own {
            let local_out = s.trades.iter().filter(|t| t.side == Side::Sell).map(|t| t.delivered.0).sum::<u64>();
            let local_in = s.trades.iter().filter(|t| t.side == Side::Buy).map(|t| t.delivered.0).sum::<u64>();
            assert_eq!(s.exported.0, local_out + s.shared_export.0 + s.grid_export.0);
            assert_eq!(s.imported.0, local_in + s.shared_import.0 + s.grid_import.0);
        }
        assert_eq!(d.savings, d.baseline - d.bill);
        assert!(d.savings >= 0);
        if d.sold_wh > 0 {
            assert!(d.savings > 0, "{} sold and saved nothing", names[i]);
        }
        // The node's own meter readings (through MQTT and the real decoders) agree with the
        // simulated meter: every interval measured, totals within the boundary smear.
        let history = History::open(&data.join(&names[i]).join("meter-history.json"), usize::MAX);
        let measured: Vec<_> = history.items().filter(|t| (first..first + 6).contains(&t.interval.0)).collect();
        assert_eq!(measured.len(), 6, "{}", names[i]);
        let import: u64 = measured.iter().map(|t| t.imported.0).sum();
        let export: u64 = measured.iter().map(|t| t.exported.0).sum();
        let slack = 40 + d.import_wh.max(d.export_wh) / 50;
        assert!(import.abs_diff(d.import_wh) <= slack, "{}: {import} vs {}", names[i], d.import_wh);
        assert!(export.abs_diff(d.export_wh) <= slack, "{}: {export} vs {}", names[i], d.export_wh);
    }
    // Both parties settle every trade alike: the same delivered energy and money.
    let mut by_trade: HashMap<Hash, Vec<(Wh, Money, Side)>> = HashMap::new();
    for own in &settlements {
        for s in own.range(first..first + 6).map(|(_, s)| s) {
            for t in &s.trades {
                by_trade.entry(t.trade).or_default().push((t.delivered, t.money, t.side));
            }
        }
    }
    assert_eq!(by_trade.len() as u64, in_run, "every trade of the run is settled");
    for (digest, sides) in &by_trade {
        assert_eq!(sides.len(), 2, "{digest:?} is settled by both parties");
        assert_eq!((sides[0].0, sides[0].1), (sides[1].0, sides[1].1), "{digest:?}: the parties differ");
        assert_ne!(sides[0].2, sides[1].2);
    }
    // Sharing balances: what exporters gave is what importers took.
    let shared = |f: fn(&Settlement) -> u64| {
        settlements.iter().flat_map(|o| o.range(first..first + 6)).map(|(_, s)| f(s)).sum::<u64>()
    };
    assert_eq!(shared(|s| s.shared_export.0), shared(|s| s.shared_import.0));
    assert_eq!(c.shared_wh, shared(|s| s.shared_import.0));
    // The community adds up.
    let sum =
        |f: fn(&peerwatt_sim::kpi::HouseholdReport) -> u64| report.households.iter().map(|h| f(&h.day)).sum::<u64>();
    assert_eq!(sum(|d| d.sold_wh), sum(|d| d.bought_wh));
    assert_eq!(sum(|d| d.delivered_sold_wh), sum(|d| d.delivered_bought_wh));
    assert_eq!(
        (c.traded_wh, c.delivered_wh, c.import_wh),
        (sum(|d| d.sold_wh), sum(|d| d.delivered_sold_wh), sum(|d| d.import_wh))
    );
    assert_eq!(c.savings, report.households.iter().map(|h| h.day.savings).sum::<i64>());
    assert!(c.welfare_trades <= c.welfare_optimal && c.efficiency_bp <= 10_000);
    assert_eq!(report.intervals.iter().map(|i| i.figures.trades).sum::<u64>(), c.trades);
    assert_eq!(report.meters.intervals_measured, report.meters.intervals_expected);
    // The network figures come from the nodes' counters: the orders the ledgers hold reached
    // the other two members (each arrival counted once per receiving node, replays aside).
    let arrivals: u64 = report.delivery.order_ages.iter().map(|(_, n)| n).sum();
    assert!(arrivals > 0 && report.delivery.median_order_age_ms.is_some(), "{:?}", report.delivery);
    assert!(
        arrivals <= 2 * report.ledgers.orders_published,
        "{arrivals} arrivals of {} orders",
        report.ledgers.orders_published
    );

    // The files the terminal names.
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(json["community"]["trades"].as_u64(), Some(c.trades));
    let svg = std::fs::read_to_string(out.join("day.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    assert!(report.render().contains("market efficiency"));
}

/// Every household's latest settlement of each interval, from its ledger.
fn settlements_of(data: &std::path::Path, names: &[String]) -> Vec<BTreeMap<u64, Settlement>> {
    names
        .iter()
        .map(|name| {
            let reader = LedgerReader::open_dir(&data.join(name).join("ledger")).unwrap();
            let all = reader.settlements().unwrap().into_iter().map(|s| s.body().clone());
            peerwatt_market::bill::latest(all).into_iter().map(|(i, s)| (i.0, s)).collect()
        })
        .collect()
}

/// A whole demo day (four households, twice the default speed): every trade of the day is
/// settled by both parties to the same delivered energy and money, every interval by every
/// node completely, and the sharing takes up what contracts missed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_parties_settle_every_trade_of_a_demo_day_alike() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("nodes");
    let scenario = Scenario { households: 4, speed: 2_880, ..Scenario::default() };
    let options = RunOptions { scenario, out: dir.path().join("out"), data_dir: Some(data.clone()), serve: None };
    let report = peerwatt_sim::run(&options, &mut Quiet).await.unwrap();
    let names: Vec<String> = report.households.iter().map(|h| h.household.name.clone()).collect();
    let settlements = settlements_of(&data, &names);
    let c = &report.community;
    assert!(c.trades > 0, "a sunny day trades");
    assert_eq!(c.unsettled_intervals, 0, "every household settled every interval");
    assert!(settlements.iter().all(|own| own.len() >= 96 && own.values().all(|s| s.complete)));
    let mut by_trade: HashMap<Hash, Vec<(Wh, Money, Side)>> = HashMap::new();
    for s in settlements.iter().flat_map(BTreeMap::values) {
        for t in &s.trades {
            by_trade.entry(t.trade).or_default().push((t.delivered, t.money, t.side));
        }
    }
    assert!(by_trade.len() as u64 >= c.trades, "every trade of the day is settled");
    for (digest, sides) in &by_trade {
        assert_eq!(sides.len(), 2, "{digest:?} is settled by both parties");
        assert_eq!((sides[0].0, sides[0].1), (sides[1].0, sides[1].1), "{digest:?}: the parties differ");
    }
    // Contracts and sharing together take up exactly what could physically have been shared
    // (per interval, the smaller of the import and export the statements state).
    assert_eq!(c.delivered_wh + c.shared_wh, c.shareable_wh, "{c:?}");
    // And the auditor, from the ledgers alone, finds every trade in both ledgers and every
    // settlement recomputing from the signed statements.
    let audit = report.audit.as_ref().unwrap();
    assert!(audit.clean, "{audit:?}");
    assert_eq!(audit.settlements_recomputed, audit.settlements);
    assert!(audit.settlements >= 4 * 96 && audit.trades_in_both_ledgers >= c.trades, "{audit:?}");
    assert!(report.render().contains("audit (`peerwatt audit` over every ledger): clean"));
}
