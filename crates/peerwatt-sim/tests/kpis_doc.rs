//! The worked example of `docs/kpis.md`, computed, and checked against the page.

#![allow(clippy::unwrap_used)] // a test panics to fail

use peerwatt_core::{Community, Hash, IntervalId, NodeKey, Price, Settlement, Side, Timestamp, Wh};
use peerwatt_market::settlement::{OwnTrade, contracts_of, settle};
use peerwatt_market::statements::Kept;
use peerwatt_sim::household::Flows;
use peerwatt_sim::kpi::{Inputs, OrderRecord, Tariffs, TradeRecord, compute};

fn flows(load_wh: u64, pv_wh: u64, import_wh: u64, export_wh: u64) -> Vec<Flows> {
    vec![Flows { load_wh, pv_wh, import_wh, export_wh, ..Flows::default() }]
}

fn key(household: usize) -> [u8; 32] {
    NodeKey::from_seed(&[u8::try_from(household + 1).unwrap(); 32]).public().to_bytes()
}

/// The example's community: the tariffs of the page (feed-in 0.080, retail 0.300), sharing
/// pro rata at the midpoint.
fn community(tariffs: Tariffs) -> Community {
    let c = peerwatt_market::trader::testkit::community();
    assert_eq!((c.feed_in, c.retail), (tariffs.feed_in, tariffs.retail));
    c
}

/// Every household's own settlement of the single interval, as its node makes it: from the
/// households' statements (their flows, with the contracts their trades list) and its trades.
fn settlements(tariffs: Tariffs, flows: &[Vec<Flows>], trades: &[TradeRecord]) -> Vec<Vec<Option<Settlement>>> {
    let own_trades = |h: usize| -> Vec<OwnTrade> {
        trades
            .iter()
            .enumerate()
            .filter(|(_, t)| t.seller == h || t.buyer == h)
            .map(|(k, t)| OwnTrade {
                trade: Hash::of(&k.to_be_bytes()),
                counterparty: key(if t.seller == h { t.buyer } else { t.seller }),
                side: if t.seller == h { Side::Sell } else { Side::Buy },
                energy: t.energy,
                price: t.price,
            })
            .collect()
    };
    let kept: Vec<Kept> = (0..flows.len())
        .map(|h| Kept {
            revision: 0,
            imported: Wh(flows[h][0].import_wh),
            exported: Wh(flows[h][0].export_wh),
            complete: true,
            contracts: contracts_of(&own_trades(h)).0.into(),
            digest: Hash::of(&key(h)),
        })
        .collect();
    let mut members: Vec<([u8; 32], &Kept)> = kept.iter().enumerate().map(|(h, k)| (key(h), k)).collect();
    members.sort_by_key(|m| m.0);
    let c = community(tariffs);
    (0..flows.len())
        .map(|h| vec![Some(settle(&c, IntervalId(1), &key(h), &members, &own_trades(h), Timestamp(0)).unwrap())])
        .collect()
}

#[test]
fn the_worked_example_of_the_kpi_page() {
    let (a, b, c) = (0, 1, 2);
    let tariffs = Tariffs { feed_in: Price(80_000), retail: Price(300_000) };
    let flows = [flows(200, 1_000, 0, 800), flows(500, 0, 500, 0), flows(300, 200, 100, 0)];
    let trades = [
        TradeRecord { interval: 0, seller: a, buyer: b, energy: Wh(400), price: Price(200_000) },
        TradeRecord { interval: 0, seller: a, buyer: c, energy: Wh(150), price: Price(180_000) },
    ];
    let order = |household, side, energy, reservation| OrderRecord {
        interval: 0,
        household,
        side,
        energy: Wh(energy),
        reservation: Price(reservation),
    };
    let orders =
        [order(a, Side::Sell, 700, 80_000), order(b, Side::Buy, 400, 300_000), order(c, Side::Buy, 250, 250_000)];
    let settled = settlements(tariffs, &flows, &trades);
    let k =
        compute(Inputs { tariffs, flows: &flows, trades: &trades, orders: &orders, settlements: &settled }).unwrap();
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/kpis.md")).unwrap();

    // Every flow balances (load + export = pv + import here: no batteries).
    assert!(flows.iter().flatten().all(Flows::balances));
    // Settlement: 400 to B in full, 100 of 150 to C; A's 100 Wh left shared with B.
    assert_eq!((k.households[a].delivered_sold_wh, k.households[a].sold_wh), (500, 550));
    assert_eq!((k.households[b].delivered_bought_wh, k.households[c].delivered_bought_wh), (400, 100));
    assert_eq!((k.households[a].shared_export_wh, k.households[b].shared_import_wh), (100, 100));
    for (name, h) in ["A", "B", "C"].iter().zip(&k.households) {
        let row = format!(
            "| {name} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            h.grid_cost,
            h.grid_credit,
            h.local_cost,
            h.local_credit,
            h.shared_cost,
            h.shared_credit,
            h.bill,
            h.baseline,
            h.savings
        );
        assert!(doc.contains(&row), "docs/kpis.md lacks the row {row}");
        assert_eq!(h.savings, h.baseline - h.bill);
    }
    let c = &k.community;
    assert_eq!((c.load_wh, c.pv_wh, c.import_wh, c.export_wh, c.delivered_wh), (1_000, 1_200, 600, 800, 500));
    assert_eq!((c.shared_wh, c.shareable_wh, c.unsettled_intervals), (100, 600, 0));
    for (value, text) in [
        (c.delivered_of_traded_bp, "**9091 bp** (90.9 %)"),
        (c.local_of_shareable_bp, "**10000 bp** (100.0 %)"),
        (c.self_sufficiency_bp, "**10000 bp** (100.0 %)"),
        (c.self_consumption_bp, "**8333 bp** (83.3 %)"),
        (c.local_share_bp, "**10000 bp** (100.0 %)"),
        (c.efficiency_bp, "**8697 bp** (87.0 %)"),
    ] {
        assert!(text.contains(&format!("**{value} bp**")), "{value} vs {text}");
        assert!(doc.contains(text), "docs/kpis.md lacks {text}");
    }
    assert!(doc.contains(&format!("**{}**", c.savings)) && c.savings == 132_000);
    assert_eq!(c.bills, k.households.iter().map(|h| h.bill).sum::<i64>());
    let welfare = |w: u128| (w + 500) / 1_000;
    assert_eq!((welfare(c.welfare_trades), welfare(c.welfare_optimal)), (113_500, 130_500));
    assert!(doc.contains("**113500**") && doc.contains("**130500**"));
    assert_eq!(k.intervals[0].clearing_price, 165_000);
    assert!(doc.contains("0.165"));
}

#[test]
fn trades_never_beat_the_optimal_clearing_and_bad_indices_are_refused() {
    let tariffs = Tariffs { feed_in: Price(80_000), retail: Price(300_000) };
    let flows = [flows(0, 500, 0, 500), flows(400, 0, 400, 0)];
    let trades = [TradeRecord { interval: 0, seller: 0, buyer: 1, energy: Wh(300), price: Price(190_000) }];
    let orders = [
        OrderRecord { interval: 0, household: 0, side: Side::Sell, energy: Wh(500), reservation: Price(80_000) },
        OrderRecord { interval: 0, household: 1, side: Side::Buy, energy: Wh(400), reservation: Price(300_000) },
    ];
    let settled = settlements(tariffs, &flows, &trades);
    let k =
        compute(Inputs { tariffs, flows: &flows, trades: &trades, orders: &orders, settlements: &settled }).unwrap();
    assert_eq!(k.community.efficiency_bp, 7_500, "300 of the 400 Wh that could trade");
    assert!(k.community.welfare_trades <= k.community.welfare_optimal);
    let stranger = [TradeRecord { interval: 0, seller: 0, buyer: 7, energy: Wh(1), price: Price(190_000) }];
    assert!(
        compute(Inputs { tariffs, flows: &flows, trades: &stranger, orders: &orders, settlements: &settled }).is_err()
    );
    let late = [TradeRecord { interval: 3, seller: 0, buyer: 1, energy: Wh(1), price: Price(190_000) }];
    assert!(compute(Inputs { tariffs, flows: &flows, trades: &late, orders: &orders, settlements: &settled }).is_err());
    // Without settlements, every household interval is the grid's.
    let k = compute(Inputs { tariffs, flows: &flows, trades: &trades, orders: &orders, settlements: &[] }).unwrap();
    assert_eq!((k.community.unsettled_intervals, k.community.delivered_wh, k.community.savings), (2, 0, 0));
}
