//! The audit over a synthetic street: clean when nothing is wrong, and each planted fault
//! found as exactly its own exception.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test panics to fail

use std::path::PathBuf;

use peerwatt_audit::meter_data::{MeterData, PointMap};
use peerwatt_audit::street::{Plan, Spec, write_exports};
use peerwatt_audit::{Check, Input, Limits, Options, Report, audit};
use peerwatt_core::{Decode, Signed};
use peerwatt_ledger::{Ledger, MemoryStore};

const SPEC: Spec = Spec { members: 6, intervals: 8, witnesses: 2 };

fn exports(ledgers: &[Ledger<MemoryStore>], dir: &tempfile::TempDir) -> Vec<PathBuf> {
    write_exports(ledgers, dir.path()).unwrap()
}

fn audit_files(plan: &Plan, files: &[PathBuf], limits: Option<Limits>) -> Report {
    let inputs: Vec<Input> = files.iter().cloned().map(Input::Export).collect();
    let mut options = Options::new(plan.community.clone());
    options.limits = limits;
    audit(&inputs, &options).unwrap()
}

fn audit_of(plan: &Plan, ledgers: &[Ledger<MemoryStore>]) -> Report {
    let dir = tempfile::tempdir().unwrap();
    audit_files(plan, &exports(ledgers, &dir), None)
}

/// The checks that found something, each once.
fn checks(report: &Report) -> Vec<Check> {
    report.found().into_iter().map(|(c, _)| c).collect()
}

#[test]
fn a_sound_street_audits_clean_and_every_settlement_recomputes() {
    let plan = Plan::new(SPEC);
    let report = audit_of(&plan, &plan.build());
    assert!(report.is_clean(), "{:#?}", report.exceptions);
    let s = &report.summary;
    assert_eq!(s.ledgers_verified, 6);
    assert!(s.trades.trades >= 8 * 4, "the street trades: {:?}", s.trades);
    assert_eq!(s.trades.in_both_ledgers, s.trades.trades);
    assert_eq!(s.settlements.settlements, 6 * 8);
    assert_eq!(s.settlements.recomputed, 6 * 8, "every settlement recomputes from the statements");
    assert!(s.heads.checked >= s.heads.witnessed && s.heads.witnessed > 0, "{:?}", s.heads);
}

#[test]
fn a_trade_in_one_ledger_only_is_reported_against_the_party_missing_it() {
    let mut plan = Plan::new(SPEC);
    plan.intervals[2].trades[0].recorded[1] = false; // the taker never recorded it (and settles without it)
    plan.state_and_settle();
    let taker = plan.key(plan.intervals[2].trades[0].taker);
    let trade = plan.intervals[2].trades[0].trade.digest();
    let report = audit_of(&plan, &plan.build());
    assert_eq!(checks(&report), vec![Check::TradeOneSided], "{:#?}", report.exceptions);
    let e = &report.exceptions[0];
    assert_eq!(report.exceptions.len(), 1);
    assert_eq!(e.node.as_deref(), Some(peerwatt_core::PublicKey::from_bytes(&taker).unwrap().to_string().as_str()));
    assert_eq!(e.trade, Some(trade.to_hex()));
    assert_eq!(e.interval, Some(plan.intervals[2].interval.0));
    assert!(!e.evidence[0].hex.is_empty(), "the signed trade is the evidence");
}

#[test]
fn a_settlement_that_does_not_recompute_is_reported_with_the_fields_that_differ() {
    let mut plan = Plan::new(SPEC);
    let mut wrong = plan.intervals[3].settlements[1].body().clone();
    wrong.cost.0 += 1;
    plan.intervals[3].settlements[1] = Signed::sign(&plan.keys[1], wrong);
    let report = audit_of(&plan, &plan.build());
    assert_eq!(checks(&report), vec![Check::SettlementMismatch], "{:#?}", report.exceptions);
    let e = &report.exceptions[0];
    assert_eq!(report.exceptions.len(), 1);
    assert_eq!(e.interval, Some(plan.intervals[3].interval.0));
    assert!(e.expected.starts_with("cost=") && e.observed.starts_with("cost="), "{e:?}");
}

#[test]
fn a_rewritten_history_is_shown_by_the_heads_its_neighbours_witnessed() {
    let plan = Plan::new(SPEC);
    let honest = plan.build();
    let rewritten =
        plan.build_with(|m| if m == 0 { "peerwatt init (rewritten)".into() } else { "peerwatt init".into() });
    let dir = tempfile::tempdir().unwrap();
    let mut files = exports(&honest, &dir);
    let forged = tempfile::tempdir().unwrap();
    files[0] = exports(&rewritten[..1], &forged).remove(0);
    let report = audit_files(&plan, &files, None);
    assert_eq!(checks(&report), vec![Check::EquivocatingHeads], "{:#?}", report.exceptions);
    let owner = plan.keys[0].public().to_string();
    for e in &report.exceptions {
        assert_eq!(e.node.as_deref(), Some(owner.as_str()));
        assert_eq!(e.evidence.len(), 2, "both signed heads are the evidence: {e:?}");
        for evidence in &e.evidence {
            let bytes = hex::decode(&evidence.hex).unwrap();
            let head = Signed::<peerwatt_core::TreeHead>::from_bytes(&bytes).unwrap();
            head.verify().unwrap();
            assert_eq!(head.signer(), &plan.keys[0].public());
        }
    }
}

#[test]
fn a_ledger_that_does_not_verify_is_one_exception_and_takes_no_further_part() {
    let plan = Plan::new(SPEC);
    let dir = tempfile::tempdir().unwrap();
    let files = exports(&plan.build(), &dir);
    let mut bytes = std::fs::read(&files[3]).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x01;
    std::fs::write(&files[3], bytes).unwrap();
    let report = audit_files(&plan, &files, None);
    assert_eq!(checks(&report), vec![Check::LedgerInvalid], "{:#?}", report.exceptions);
    assert_eq!(report.exceptions.len(), 1);
    assert_eq!(report.summary.ledgers_verified, 5);
    assert!(report.exceptions[0].observed.contains("entry"), "names the entry: {:?}", report.exceptions[0]);
}

#[test]
fn a_zone_over_its_limit_is_reported_per_interval_and_every_zone_row_written() {
    let plan = Plan::new(SPEC);
    let ledgers = plan.build();
    let (a, b) = (plan.keys[0].public(), plan.keys[3].public());
    let limits = Limits::parse(&format!(
        "[[zone]]\nname = \"north\"\nlimit_wh = 300\nmembers = [\"{a}\", \"{b}\"]\n\n[[zone]]\nname = \"all-but\"\nlimit_wh = 100000\nmembers = [\"{a}\"]\n"
    ))
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let report = audit_files(&plan, &exports(&ledgers, &dir), Some(limits));
    assert_eq!(checks(&report), vec![Check::ZoneOverLimit], "{:#?}", report.exceptions);
    let over: Vec<_> = report.zones.iter().filter(|z| z.traded_wh > z.limit_wh).collect();
    assert_eq!(over.len(), report.exceptions.len());
    assert!(report.zones.iter().any(|z| z.zone == "all-but"), "zones under their limit are rows too");
    let out = tempfile::tempdir().unwrap();
    report.write_to(out.path()).unwrap();
    let zones = std::fs::read_to_string(out.path().join("zones.csv")).unwrap();
    assert_eq!(zones.lines().count(), report.zones.len() + 1);
    let csv = std::fs::read_to_string(out.path().join("exceptions.csv")).unwrap();
    assert_eq!(csv.lines().next(), Some("check,node,interval,trade,expected,observed"));
    assert_eq!(csv.lines().filter(|l| l.starts_with("zone-over-limit,")).count(), report.exceptions.len());
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.path().join("audit.json")).unwrap()).unwrap();
    assert_eq!(json["clean"], false);
    assert_eq!(json["summary"]["exceptions"]["zone-over-limit"], report.exceptions.len());
}

/// The official data of the plan's meters as the generic CSV: a consumption and a generation
/// point per member; `edit` may change a row (member, interval index, export?) → (kWh, quality).
fn official_csv(plan: &Plan, edit: impl Fn(usize, usize, bool) -> Option<(String, &'static str)>) -> (String, String) {
    let mut data = String::from("metering_point,interval_start,interval_end,direction,register,kwh,quality\n");
    let mut map = String::from("peer_id,metering_point\n");
    let len = plan.community.interval;
    for m in 0..plan.keys.len() {
        let peer = plan.keys[m].public();
        map += &format!("{peer},AT00200000000000000000000000{m:05}C\n{peer},AT00200000000000000000000000{m:05}G\n");
        for (k, i) in plan.intervals.iter().enumerate() {
            let (start, end) = (len.start(i.interval), len.end(i.interval));
            for (export, wh) in [(false, i.metered[m].0.0), (true, i.metered[m].1.0)] {
                let (point, direction) = if export { ('G', "generation") } else { ('C', "consumption") };
                let (kwh, quality) = edit(m, k, export).unwrap_or((format!("{}.{:03}", wh / 1000, wh % 1000), "L1"));
                data += &format!(
                    "AT00200000000000000000000000{m:05}{point},{start},{end},{direction},1-1:{}.9.0 G.01,{kwh},{quality}\n",
                    if export { 2 } else { 1 }
                );
            }
            // The operator's allocation is read, not compared.
            data +=
                &format!("AT00200000000000000000000000{m:05}C,{start},{end},consumption,1-1:2.9.0 G.02,9.999999,L1\n");
        }
    }
    (data, map)
}

fn with_meter_data(plan: &Plan, data: &str, map: &str) -> Report {
    let dir = tempfile::tempdir().unwrap();
    let files = exports(&plan.build(), &dir);
    let inputs: Vec<Input> = files.into_iter().map(Input::Export).collect();
    let mut options = Options::new(plan.community.clone());
    options.meter_data = Some(peerwatt_audit::OfficialData {
        data: MeterData::parse_csv(data, plan.community.interval).unwrap(),
        map: PointMap::parse_csv(map).unwrap(),
        tolerance_wh: 5,
    });
    audit(&inputs, &options).unwrap()
}

#[test]
fn statements_that_match_the_official_meter_data_audit_clean() {
    let plan = Plan::new(SPEC);
    let (data, map) = official_csv(&plan, |_, _, _| None);
    let report = with_meter_data(&plan, &data, &map);
    assert!(report.is_clean(), "{:#?}", report.exceptions);
    let counts = report.summary.meter_data.unwrap();
    assert_eq!(counts.compared, 6 * 8 * 2, "import and export of every member and interval");
    assert_eq!((counts.off, counts.estimated, counts.not_stated), (0, 0, 0));
}

#[test]
fn a_statement_off_the_official_meter_data_is_reported_and_estimates_are_not_compared() {
    let plan = Plan::new(SPEC);
    let off = plan.intervals[5].metered[2].0.0 + 6; // beyond the 5 Wh tolerance
    let within = plan.intervals[1].metered[3].1.0 + 5;
    let (data, map) = official_csv(&plan, |m, k, export| match (m, k, export) {
        (2, 5, false) => Some((format!("{}.{:03}", off / 1000, off % 1000), "L2")),
        (3, 1, true) => Some((format!("{}.{:03}", within / 1000, within % 1000), "L1")),
        (4, 0, false) => Some(("99.0".into(), "L3")), // an estimate: not compared
        _ => None,
    });
    // A resend of worse quality does not replace a measured value.
    let resend = format!(
        "AT0020000000000000000000000000001C,{},{},consumption,1-1:1.9.0 G.01,50.0,L3\n",
        plan.community.interval.start(plan.intervals[0].interval),
        plan.community.interval.end(plan.intervals[0].interval)
    );
    let report = with_meter_data(&plan, &(data + &resend), &map);
    assert_eq!(checks(&report), vec![Check::StatementOffMeterData], "{:#?}", report.exceptions);
    assert_eq!(report.exceptions.len(), 1);
    let e = &report.exceptions[0];
    assert_eq!(e.node, Some(plan.keys[2].public().to_string()));
    assert_eq!(e.interval, Some(plan.intervals[5].interval.0));
    assert!(
        e.expected.starts_with(&format!("import {off}.000 Wh (official, AT0020000000000000000000000000002C row ")),
        "{e:?}"
    );
    let counts = report.summary.meter_data.unwrap();
    assert_eq!((counts.off, counts.estimated, counts.superseded_by_better), (1, 1, 1));
}
