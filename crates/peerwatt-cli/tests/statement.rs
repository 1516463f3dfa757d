//! `peerwatt statement` on the ledgers of a short demo street: every household's statement
//! adds up exactly (Wh and money) to its own meter figures, and the households' statements
//! to the community totals of the demo's report; and `peerwatt audit` finds the street clean.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test panics to fail

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

fn peerwatt(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_peerwatt")).args(args).env_remove("PEERWATT_DATA_DIR").output().unwrap()
}

fn ok(o: Output) -> String {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap()
}

fn n(v: &Value, field: &str) -> i64 {
    v[field].as_i64().unwrap_or_else(|| panic!("{field} in {v}"))
}

fn statement(dir: &Path, extra: &[&str]) -> String {
    let mut args = vec!["statement", "--data-dir", dir.to_str().unwrap()];
    args.extend_from_slice(extra);
    ok(peerwatt(&args))
}

#[test]
fn every_households_statement_adds_up_to_its_meter_and_the_community_totals() {
    let dir = tempfile::tempdir().unwrap();
    let (data, out, scenario) = (dir.path().join("nodes"), dir.path().join("out"), dir.path().join("s.toml"));
    // Three households (one with PV) from 11:30 for six intervals.
    std::fs::write(&scenario, "households = 3\nstart_quarter = 46\nintervals = 6\n").unwrap();
    let args = ["demo", "--quiet", "--scenario", scenario.to_str().unwrap(), "--data-dir", data.to_str().unwrap()];
    ok(peerwatt(&[&args[..], &["--out", out.to_str().unwrap()]].concat()));
    let report: Value = serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    let community = &report["community"];
    let (mut delivered, mut shared, mut bills) = (0, 0, 0);
    for household in report["households"].as_array().unwrap() {
        let name = household["name"].as_str().unwrap();
        let node = data.join(name);
        // The run's intervals (the nodes also settled the hours before it, from their history).
        let run = ["--from", "2021-06-25T11:30Z", "--to", "2021-06-25T13:00Z"];
        let json: Value = serde_json::from_str(&statement(&node, &[&run[..], &["--format", "json"]].concat())).unwrap();
        let (t, intervals) = (&json["total"], json["intervals"].as_array().unwrap());
        assert_eq!(intervals.len(), 6, "{name}: every interval of the run settled");
        assert!(intervals.iter().all(|i| i["complete"] == true), "{name}");
        for line in intervals.iter().chain([t]) {
            // Every Wh the meter stated is delivered, shared or the grid's, on each side.
            assert_eq!(
                n(line, "imported_wh"),
                n(line, "delivered_bought_wh") + n(line, "shared_import_wh") + n(line, "grid_import_wh")
            );
            assert_eq!(
                n(line, "exported_wh"),
                n(line, "delivered_sold_wh") + n(line, "shared_export_wh") + n(line, "grid_export_wh")
            );
            // And the money nets to the cost exactly.
            assert_eq!(
                n(line, "cost"),
                n(line, "grid_cost") - n(line, "grid_credit") + n(line, "local_cost") - n(line, "local_credit")
                    + n(line, "shared_cost")
                    - n(line, "shared_credit")
            );
            assert_eq!(n(line, "savings"), n(line, "baseline") - n(line, "cost"));
        }
        let sum = |field: &str| intervals.iter().map(|i| n(i, field)).sum::<i64>();
        for field in ["imported_wh", "exported_wh", "delivered_sold_wh", "shared_import_wh", "cost", "baseline"] {
            assert_eq!(sum(field), n(t, field), "{name}: the total of {field}");
        }
        // The household's line of the report is its statement.
        assert_eq!((n(t, "cost"), n(t, "baseline")), (n(household, "bill"), n(household, "baseline")), "{name}");
        assert_eq!(n(t, "sold_wh"), n(household, "sold_wh"));
        delivered += n(t, "delivered_sold_wh");
        shared += n(t, "shared_import_wh");
        bills += n(t, "cost");

        // CSV: a header with the grid operators' codes, a row per interval and a total row.
        let csv = statement(&node, &[&run[..], &["--format", "csv"]].concat());
        let rows: Vec<&str> = csv.lines().collect();
        assert!(rows[0].contains("1-1:2.9.0 G.02 community share") && rows[0].contains("P.01"));
        assert_eq!(rows.len(), 1 + 6 + 1);
        assert!(rows[7].contains(",total,"));
        // Text, and ranges: the month holds the run and more, the next day nothing.
        assert!(statement(&node, &run).contains("saved"));
        let month: Value =
            serde_json::from_str(&statement(&node, &["--month", "2021-06", "--format", "json"])).unwrap();
        assert!(month["intervals"].as_array().unwrap().len() > 6);
        assert!(statement(&node, &["--from", "2021-06-26"]).contains("no settled interval"));
    }
    assert_eq!(
        (delivered, shared, bills),
        (n(community, "delivered_wh"), n(community, "shared_wh"), n(community, "bills"))
    );
    // The street audits clean from its data directories (the demo ran the same audit).
    assert_eq!(report["audit"]["clean"], true, "{}", report["audit"]);
    let audit_out = dir.path().join("audit");
    let audited = ok(peerwatt(&["audit", data.to_str().unwrap(), "--out", audit_out.to_str().unwrap()]));
    assert!(audited.contains("clean: no exceptions"), "{audited}");
    let json: Value = serde_json::from_slice(&std::fs::read(audit_out.join("audit.json")).unwrap()).unwrap();
    let settlements = &json["summary"]["settlements"];
    assert_eq!(settlements["recomputed"], settlements["settlements"]);
    assert_eq!(json["summary"]["trades"]["in_both_ledgers"], report["ledgers"]["trades_in_both_ledgers"]);
    let bad = peerwatt(&["statement", "--data-dir", data.join("house-01").to_str().unwrap(), "--month", "June"]);
    assert!(!bad.status.success() && String::from_utf8_lossy(&bad.stderr).contains("YYYY-MM"));
}
