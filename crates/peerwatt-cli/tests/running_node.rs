//! The CLI against a running node: `peerwatt ledger export` while the node holds its ledger
//! gives, through the node's HTTP interface, a file that verifies; `verify` and `show` work
//! the same way.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test panics to fail

use std::process::Command;
use std::sync::Arc;

use peerwatt_core::{Clock, IntervalId, Price, Side, SystemClock, Wh};
use peerwatt_node::config::ApiSection;
use peerwatt_testkit::community_of;

fn peerwatt(args: Vec<String>) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_peerwatt")).args(args).env_remove("PEERWATT_DATA_DIR").output().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ledger_export_on_a_running_node_gives_a_file_that_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let (community, configs) = community_of(dir.path(), 1).unwrap();
    let mut cfg = configs[0].clone();
    let port = peerwatt_net::free_port().unwrap();
    cfg.api = Some(ApiSection { listen: format!("127.0.0.1:{port}"), ..ApiSection::default() });
    let data_dir = cfg.dir.clone();
    cfg.save(&data_dir.join("node.toml")).unwrap();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let node = peerwatt_node::start(&cfg, clock.clone()).await.unwrap();
    // A few orders, so the ledger has entries the node appended while running.
    let interval = IntervalId(community.interval.interval_at(clock.now()).0 + 3);
    for wh in [1_000, 2_000, 3_000] {
        node.place_order(interval, Side::Sell, Wh(wh), Price(100_000)).await.unwrap();
    }
    let d = data_dir.to_str().unwrap().to_owned();
    let file = dir.path().join("running.pwl").to_str().unwrap().to_owned();
    // `show`'s and `verify`'s old hint sent users to `export`, which now works on a running node.
    let args = vec!["ledger".into(), "export".into(), "--data-dir".into(), d.clone(), "--out".into(), file.clone()];
    let export = tokio::task::spawn_blocking(move || peerwatt(args)).await.unwrap();
    let text = String::from_utf8_lossy(&export.stdout).into_owned();
    assert!(export.status.success(), "{}", String::from_utf8_lossy(&export.stderr));
    assert!(text.contains(&format!("from the running node at 127.0.0.1:{port}")), "{text}");
    let args = vec!["ledger".into(), "verify".into(), "--file".into(), file.clone()];
    let verify = tokio::task::spawn_blocking(move || peerwatt(args)).await.unwrap();
    let report = String::from_utf8_lossy(&verify.stdout).into_owned();
    assert!(verify.status.success(), "{report}{}", String::from_utf8_lossy(&verify.stderr));
    // The three orders (and the node's first entries) are in it, covered by a signed head.
    let entries: u64 = text.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!(entries >= 3, "{text}");
    assert!(text.contains("signed tree head"), "{text}");
    // An inclusion proof from the running node, checked by the CLI with nothing but the file.
    let api: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let (proof, beyond, not_a_number) = tokio::task::spawn_blocking(move || {
        use peerwatt_testkit::http::get;
        (
            get(api, "/api/v1/ledger/proof/2"),
            get(api, "/api/v1/ledger/proof/99999"),
            get(api, "/api/v1/ledger/proof/two"),
        )
    })
    .await
    .unwrap();
    assert_eq!(proof.code, 200, "{}", proof.body);
    let proof_path = dir.path().join("proof.json");
    std::fs::write(&proof_path, &proof.body).unwrap();
    let args = vec!["ledger".into(), "check-proof".into(), "--file".into(), proof_path.to_str().unwrap().to_owned()];
    let checked = tokio::task::spawn_blocking(move || peerwatt(args)).await.unwrap();
    assert!(
        checked.status.success(),
        "{}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
    assert_eq!((beyond.code, not_a_number.code), (404, 400), "{} {}", beyond.body, not_a_number.body);
    // `verify --data-dir` checks the running node's ledger the same way.
    let args = vec!["ledger".into(), "verify".into(), "--data-dir".into(), d.clone()];
    let live = tokio::task::spawn_blocking(move || peerwatt(args)).await.unwrap();
    let said = String::from_utf8_lossy(&live.stdout).into_owned();
    assert!(live.status.success(), "{said}{}", String::from_utf8_lossy(&live.stderr));
    assert!(said.contains("of the running node"), "{said}");
    // `show` lists the running node's entries: the last two, and from entry 0 on, as JSON (every entry from 0).
    let args = vec!["ledger".into(), "show".into(), "--data-dir".into(), d.clone(), "--limit".into(), "2".into()];
    let shown = tokio::task::spawn_blocking(move || peerwatt(args)).await.unwrap();
    let table = String::from_utf8_lossy(&shown.stdout).into_owned();
    assert!(shown.status.success(), "{table}{}", String::from_utf8_lossy(&shown.stderr));
    assert!(table.contains(&format!("ledger of {}", node.peer_id())), "{table}");
    let rows: Vec<&str> =
        table.lines().filter(|l| l.contains("order-published") || l.contains("witnessed-head")).collect();
    assert!(rows.iter().any(|l| l.contains("order-published")), "{table}");
    let args: Vec<String> =
        ["ledger", "show", "--data-dir", &d, "--from", "0", "--limit", "50", "--json"].map(String::from).to_vec();
    let shown = tokio::task::spawn_blocking(move || peerwatt(args)).await.unwrap();
    let lines: Vec<serde_json::Value> =
        String::from_utf8_lossy(&shown.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.first().map(|l| l["seq"].clone()), Some(serde_json::json!(0)));
    assert!(lines.len() as u64 >= entries, "{lines:?}");
    assert_eq!(lines.iter().filter(|l| l["kind"] == "order-published").count(), 3);
    node.shutdown().await;
}
