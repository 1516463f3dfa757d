//! A node that traded, seen through its interface: `/metrics` for real (`promtool check
//! metrics` passes it, and a real Prometheus server, Debian's `prometheus` package, which
//! scripts/test installs, scrapes it and answers a query for its trades with what the node's
//! state says), and `/trades` and `/statement` in JSON and CSV.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test panics to fail

use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use peerwatt_core::{Clock, IntervalId, SystemClock, Wh};
use peerwatt_node::config::ApiSection;
use peerwatt_testkit::community_of;
use peerwatt_testkit::http::get;

/// A program of the `prometheus` package.
fn program(name: &str) -> PathBuf {
    let path = PathBuf::from("/usr/bin").join(name);
    assert!(path.exists(), "{name} is missing: scripts/test installs Debian's prometheus package");
    path
}

/// A process killed when the test ends.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A maker with the HTTP interface on, a taker, and one trade between them.
async fn traded(
    dir: &std::path::Path,
) -> (peerwatt_node::RunningNode, peerwatt_node::RunningNode, std::net::SocketAddr, usize) {
    let (community, configs) = community_of(dir, 2).unwrap();
    let mut maker_cfg = configs[0].clone();
    maker_cfg.api = Some(ApiSection { listen: "127.0.0.1:0".into(), ..ApiSection::default() });
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let maker = peerwatt_node::start(&maker_cfg, clock.clone()).await.unwrap();
    let taker = peerwatt_node::start(&configs[1], clock.clone()).await.unwrap();
    let api = maker.api_address().unwrap();

    // One trade.
    let interval = IntervalId(community.interval.interval_at(clock.now()).0 + 3);
    let traded = peerwatt_testkit::trade_once(&maker, &taker, interval, Wh(500)).await;
    assert!(traded, "the nodes never traded");
    // The maker's state shows the trade once it has written its status.
    let deadline = Instant::now() + Duration::from_secs(20);
    let sold = loop {
        let state = tokio::task::spawn_blocking(move || get(api, "/api/v1/state")).await.unwrap();
        let sold = state.json()["trades_today"].as_array().map_or(0, |t| t.len());
        if sold > 0 {
            break sold;
        }
        assert!(Instant::now() < deadline, "the maker's state never showed its trade");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    (maker, taker, api, sold)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_scrapes_a_trading_node_and_promtool_passes_its_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let (maker, taker, api, sold) = traded(dir.path()).await;
    let metrics = tokio::task::spawn_blocking(move || get(api, "/metrics")).await.unwrap();
    // The maker's trade was made durable: its flushes were timed.
    let flushes = metrics.body.lines().find_map(|l| l.strip_prefix("peerwatt_ledger_flush_duration_seconds_count "));
    assert!(flushes.and_then(|n| n.parse::<u64>().ok()).is_some_and(|n| n > 0), "{}", metrics.body);
    // The maker sold 500 Wh: 1,800,000 J.
    assert!(
        metrics.body.contains("peerwatt_traded_energy_joules_total{direction=\"sold\"} 1800000\n"),
        "{}",
        metrics.body
    );
    let mut check = Command::new(program("promtool"))
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    check.stdin.take().unwrap().write_all(metrics.body.as_bytes()).unwrap();
    let checked = check.wait_with_output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&checked.stdout), String::from_utf8_lossy(&checked.stderr));
    assert!(checked.status.success() && said.trim().is_empty(), "promtool check metrics: {said}\n{}", metrics.body);

    // A real Prometheus scrapes the node every second and answers a query for its trades.
    let port = peerwatt_testkit::free_port().unwrap();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!("global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: peerwatt\n    static_configs:\n      - targets: [\"{api}\"]\n"),
    )
    .unwrap();
    let _prometheus = Killed(
        Command::new(program("prometheus"))
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("tsdb").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let server: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let query = "/api/v1/query?query=peerwatt_trades_today%7Bdirection%3D%22sold%22%7D";
    let deadline = Instant::now() + Duration::from_secs(60);
    let value = loop {
        let answer =
            tokio::task::spawn_blocking(move || std::net::TcpStream::connect(server).ok().map(|_| get(server, query)))
                .await
                .unwrap();
        let found = answer.filter(|a| a.code == 200).and_then(|a| {
            let v = a.json();
            v["data"]["result"][0]["value"][1].as_str().map(str::to_owned)
        });
        if let Some(value) = found {
            break value;
        }
        assert!(Instant::now() < deadline, "Prometheus never answered the query with the node's trades");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(value, sold.to_string(), "Prometheus says what the node's state says");
    maker.shutdown().await;
    taker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trades_and_the_statement_are_served_in_json_and_csv_and_a_bad_range_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (maker, taker, api, _) = traded(dir.path()).await;
    let taker_id = taker.peer_id().to_owned();
    let answers = tokio::task::spawn_blocking(move || {
        [
            "/api/v1/trades",
            "/api/v1/trades?format=csv",
            "/api/v1/trades?from=2000-01-01&to=2000-01-02",
            "/api/v1/trades?from=yesterday",
            "/api/v1/trades?colour=red",
            "/api/v1/statement?format=xml",
            "/api/v1/statement?month=2026-12",
            "/api/v1/statement?format=csv",
        ]
        .map(|path| get(api, path))
    })
    .await
    .unwrap();
    let [all, csv, none, bad_date, unknown, bad_format, month, statement_csv] = answers;
    let rows = all.json();
    let row = &rows[0];
    assert_eq!(rows.as_array().map(Vec::len), Some(1), "{}", all.body);
    assert_eq!((row["direction"].as_str(), row["energy_wh"].as_u64()), (Some("sold"), Some(500)));
    assert_eq!((row["counterparty"].as_str(), row["role"].as_str()), (Some(taker_id.as_str()), Some("maker")));
    assert!(csv.headers.contains("content-type: text/csv"), "{}", csv.headers);
    let lines: Vec<&str> = csv.body.lines().collect();
    assert_eq!(lines.len(), 2, "{}", csv.body);
    assert!(lines[1].contains(&format!(",sold,500,{},{taker_id},maker,", row["price"])), "{}", lines[1]);
    assert_eq!(none.json(), serde_json::json!([]));
    for refused in [&bad_date, &unknown, &bad_format] {
        assert_eq!((refused.code, refused.json()["status"].as_u64()), (400, Some(400)), "{}", refused.body);
    }
    assert!(bad_date.json()["error"].as_str().unwrap().contains("is not a date"));
    // No interval has settled yet (settlement follows the meter statements): an empty statement.
    assert_eq!(month.json()["intervals"], serde_json::json!([]), "{}", month.body);
    assert!(statement_csv.body.starts_with(peerwatt_market::bill::CSV_HEADER), "{}", statement_csv.body);
    maker.shutdown().await;
    taker.shutdown().await;
}
