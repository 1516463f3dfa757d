//! Recomputes the worked example of `docs/settlement.md` from the document itself: the
//! statements block is settled for every member and must give the results block exactly.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test panics to fail

use std::collections::BTreeMap;

use peerwatt_core::{Community, Contracted, Hash, IntervalId, Money, NodeKey, Price, Side, Timestamp, Wh};
use peerwatt_market::settlement::{OwnTrade, Rules, settle, totals};
use peerwatt_market::statements::Kept;

/// The lines of the fenced block ```` ```text NAME ````, comments dropped.
fn block(doc: &str, name: &str) -> Vec<String> {
    let start = doc.find(&format!("```text {name}\n")).unwrap_or_else(|| panic!("no block {name}"));
    doc[start..]
        .lines()
        .skip(1)
        .take_while(|l| !l.starts_with("```"))
        .filter(|l| !l.trim_start().starts_with('#') && !l.trim().is_empty())
        .map(str::to_owned)
        .collect()
}

fn key(name: &str) -> [u8; 32] {
    NodeKey::from_seed(&[name.as_bytes()[0]; 32]).public().to_bytes()
}

/// One member's statement and trades, from a line of the inputs block.
fn member(line: &str) -> (String, Kept, Vec<OwnTrade>) {
    let f: Vec<&str> = line.split_whitespace().collect();
    let name = f[0].to_owned();
    let contracts = f[3..].join(" ");
    let mut trades = Vec::new();
    for c in contracts.split(',').map(str::trim).filter(|c| !c.is_empty()) {
        let p: Vec<&str> = c.split_whitespace().collect();
        let side = if p[0] == "sell" { Side::Sell } else { Side::Buy };
        let (seller, buyer) = if side == Side::Sell { (name.as_str(), p[1]) } else { (p[1], name.as_str()) };
        trades.push(OwnTrade {
            trade: Hash::of(format!("{seller}->{buyer}").as_bytes()),
            counterparty: key(p[1]),
            side,
            energy: Wh(p[2].parse().unwrap()),
            price: Price(p[3].parse().unwrap()),
        });
    }
    let (listed, left_out) = peerwatt_market::settlement::contracts_of(&trades);
    assert_eq!(left_out, 0);
    let kept = Kept {
        revision: 0,
        imported: Wh(f[1].parse().unwrap()),
        exported: Wh(f[2].parse().unwrap()),
        complete: true,
        contracts: listed.into_iter().collect::<Vec<Contracted>>().into(),
        digest: Hash::of(name.as_bytes()),
    };
    (name, kept, trades)
}

/// The example's community: 15-minute intervals, feed-in 0.080000, retail 0.300000, sharing
/// pro rata at the midpoint.
fn community() -> Community {
    peerwatt_market::trader::testkit::community()
}

#[test]
fn the_worked_example_of_docs_settlement_recomputes() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/settlement.md")).unwrap();
    let inputs: Vec<(String, Kept, Vec<OwnTrade>)> =
        block(&doc, "settlement-example.inputs").iter().map(|l| member(l)).collect();
    let mut members: Vec<([u8; 32], &Kept)> = inputs.iter().map(|(n, k, _)| (key(n), k)).collect();
    members.sort_by_key(|a| a.0);
    let c = community();
    assert_eq!(Rules::at(&c, IntervalId(0)).sharing_price, Price(190_000), "the midpoint of the tariffs");
    let mut got = BTreeMap::new();
    for (name, _, trades) in &inputs {
        let s = settle(&c, IntervalId(1), &key(name), &members, trades, Timestamp(0)).unwrap();
        assert!(s.complete);
        let delivered = |side: Side| s.trades.iter().filter(|t| t.side == side).map(|t| t.delivered.0).sum::<u64>();
        got.insert(
            name.clone(),
            vec![
                delivered(Side::Sell) as i64,
                delivered(Side::Buy) as i64,
                s.shared_export.0 as i64,
                s.shared_import.0 as i64,
                s.grid_import.0 as i64,
                s.grid_export.0 as i64,
                s.cost.0,
                s.baseline.0,
            ],
        );
    }
    let want: BTreeMap<String, Vec<i64>> = block(&doc, "settlement-example.results")
        .iter()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f[0].to_owned(), f[1..].iter().map(|v| v.parse().unwrap()).collect())
        })
        .collect();
    assert_eq!(got, want);
    let t = totals(&members, &Rules::at(&c, IntervalId(0)));
    assert_eq!((t.contracted, t.delivered, t.shared, t.shareable()), (Wh(1_000), Wh(800), Wh(200), Wh(1_000)));
    // Money balances between the members: what the buyers and importers pay, the sellers and
    // exporters earn (the grid's part aside).
    let grid = |i: &(String, Kept, Vec<OwnTrade>)| {
        let g = &got[&i.0];
        Money(Wh(g[4] as u64).cost_at(Price(300_000)).unwrap().0 - Wh(g[5] as u64).cost_at(Price(80_000)).unwrap().0)
    };
    let between: i64 = inputs.iter().map(|i| got[&i.0][6] - grid(i).0).sum();
    assert_eq!(between, 0, "members pay each other exactly what they earn from each other");
}
