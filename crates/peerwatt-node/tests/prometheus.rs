//! `/metrics` for real: `promtool check metrics` passes it, and a real Prometheus server
//! (Debian's `prometheus` package, which scripts/test installs) scrapes a node that traded and
//! answers a query for its trades with what the node's state says.

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_scrapes_a_trading_node_and_promtool_passes_its_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let (community, configs) = community_of(dir.path(), 2).unwrap();
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

    let metrics = tokio::task::spawn_blocking(move || get(api, "/metrics")).await.unwrap();
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
