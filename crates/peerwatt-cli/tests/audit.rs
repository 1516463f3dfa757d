//! `peerwatt audit` as an operator runs it: over a directory of export files, with the
//! community file; exit 0 and its three files when clean, 1 with the exception in
//! exceptions.csv, 2 when it cannot run.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test panics to fail

use std::path::Path;
use std::process::{Command, Output};

use peerwatt_audit::street::{Plan, Spec, write_exports};
use peerwatt_node::community_file::community_toml;

fn peerwatt(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_peerwatt")).args(args).env_remove("PEERWATT_DATA_DIR").output().unwrap()
}

/// Writes the street's exports to `dir/ledgers` and its community file to `dir/community.toml`.
fn street(plan: &Plan, dir: &Path) {
    write_exports(&plan.build(), &dir.join("ledgers")).unwrap();
    std::fs::write(dir.join("community.toml"), community_toml(&plan.community)).unwrap();
}

fn audit(dir: &Path, out: &str) -> Output {
    let (ledgers, community, out) = (dir.join("ledgers"), dir.join("community.toml"), dir.join(out));
    let args = [
        "audit",
        ledgers.to_str().unwrap(),
        "--community",
        community.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    peerwatt(&args)
}

const SPEC: Spec = Spec { members: 4, intervals: 4, witnesses: 2 };

#[test]
fn a_clean_street_exits_0_and_writes_the_three_files() {
    let dir = tempfile::tempdir().unwrap();
    street(&Plan::new(SPEC), dir.path());
    let o = audit(dir.path(), "out");
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("clean: no exceptions"));
    let out = dir.path().join("out");
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("audit.json")).unwrap()).unwrap();
    assert_eq!(json["clean"], true);
    assert_eq!(json["summary"]["ledgers_verified"], 4);
    assert_eq!(std::fs::read_to_string(out.join("exceptions.csv")).unwrap().lines().count(), 1, "the header only");
    assert_eq!(std::fs::read_to_string(out.join("zones.csv")).unwrap(), "zone,interval,traded_wh,limit_wh\n");
}

#[test]
fn exceptions_exit_1_and_are_listed_in_exceptions_csv() {
    let dir = tempfile::tempdir().unwrap();
    let mut plan = Plan::new(SPEC);
    plan.intervals[1].trades[0].recorded[0] = false; // the maker never recorded its trade
    plan.state_and_settle();
    street(&plan, dir.path());
    let o = audit(dir.path(), "out");
    assert_eq!(o.status.code(), Some(1), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("trade-one-sided 1"));
    let csv = std::fs::read_to_string(dir.path().join("out/exceptions.csv")).unwrap();
    let rows: Vec<&str> = csv.lines().collect();
    assert_eq!(rows.len(), 2, "{csv}");
    let maker = plan.keys[plan.intervals[1].trades[0].maker].public().to_string();
    let digest = plan.intervals[1].trades[0].trade.digest().to_hex();
    assert!(rows[1].starts_with(&format!("trade-one-sided,{maker},2026-06-01T00:15:00.000Z,{digest},")), "{csv}");
}

#[test]
fn an_audit_that_cannot_run_exits_2_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    street(&Plan::new(SPEC), dir.path());
    let ledgers = dir.path().join("ledgers");
    let missing = peerwatt(&["audit", ledgers.to_str().unwrap()]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("--community"));
    let nothing = peerwatt(&["audit", dir.path().join("absent").to_str().unwrap()]);
    assert_eq!(nothing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&nothing.stderr).contains("does not exist"));
}

#[test]
fn official_meter_data_is_read_from_the_generic_csv_or_an_eda_report() {
    let dir = tempfile::tempdir().unwrap();
    let plan = Plan::new(SPEC);
    street(&plan, dir.path());
    let map = dir.path().join("map.csv");
    let member = plan.keys[0].public();
    std::fs::write(&map, format!("peer_id,metering_point\n{member},AT0020000000000000000000000000001\n")).unwrap();
    let eda = concat!(env!("CARGO_MANIFEST_DIR"), "/../peerwatt-audit/tests/data/eda-2023-10-29.xlsx");
    let (ledgers, community) = (dir.path().join("ledgers"), dir.path().join("community.toml"));
    let run = |data: &str| {
        let out = dir.path().join("out");
        let args = [
            "audit",
            ledgers.to_str().unwrap(),
            "--community",
            community.to_str().unwrap(),
            "--meter-data",
            data,
            "--meter-map",
            map.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ];
        peerwatt(&args)
    };
    // The report's day (2023) holds no interval of the street (2026): read, nothing to compare.
    let o = run(eda);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("official meter data: 0 values compared"));
    // A CSV with a bad row: the audit cannot run, and says which row.
    let bad = dir.path().join("bad.csv");
    std::fs::write(&bad, "metering_point,interval_start,interval_end,direction,register,kwh,quality\nAT1,yesterday,today,consumption,x,1,L1\n").unwrap();
    let o = run(bad.to_str().unwrap());
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("row 2: \"yesterday\" is not a UTC time"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}
