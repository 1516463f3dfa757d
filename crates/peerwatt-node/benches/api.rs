//! The HTTP interface's cost (`cargo bench -p peerwatt-node --bench api`):
//!
//! 1. `GET /api/v1/state` latency: 10,000 requests one after another, each on a new connection
//!    (as `curl` or Home Assistant's REST sensor sends them), p50, p99 and the worst;
//! 2. an idle node's resident memory with and without `[api]`, each in its own process (the
//!    benchmark runs itself again), after the node has been up and the API has answered 1,000
//!    requests.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark panics to fail

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use peerwatt_core::{Clock, SystemClock};
use peerwatt_node::RunningNode;
use peerwatt_node::config::ApiSection;
use peerwatt_testkit::community_of;
use peerwatt_testkit::http::get;

/// A node with or without the interface, up (its first status written).
async fn node(dir: &std::path::Path, api: bool) -> (RunningNode, Option<SocketAddr>) {
    let (_, configs) = community_of(dir, 1).unwrap();
    let mut cfg = configs[0].clone();
    if api {
        cfg.api = Some(ApiSection { listen: "127.0.0.1:0".into(), ..ApiSection::default() });
    }
    let node = peerwatt_node::start(&cfg, Arc::new(SystemClock) as Arc<dyn Clock>).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cfg.status_file().exists() {
        assert!(Instant::now() < deadline, "the node never wrote its status");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let addr = node.api_address();
    (node, addr)
}

/// `n` requests for the state, one after another; each one's time.
async fn states(addr: SocketAddr, n: usize) -> Vec<Duration> {
    tokio::task::spawn_blocking(move || {
        (0..n)
            .map(|_| {
                let started = Instant::now();
                let answer = get(addr, "/api/v1/state");
                assert_eq!(answer.code, 200, "{}", answer.body);
                started.elapsed()
            })
            .collect()
    })
    .await
    .unwrap()
}

/// The child: an idle node with or without the interface; prints its resident memory.
async fn memory(api: bool) {
    let dir = tempfile::tempdir().unwrap();
    let (node, addr) = node(dir.path(), api).await;
    if let Some(addr) = addr {
        states(addr, 1_000).await;
    }
    tokio::time::sleep(Duration::from_secs(5)).await; // idle
    println!("rss_kb {}", peerwatt_testkit::rss_kb());
    node.shutdown().await;
}

fn child_rss(api: bool) -> u64 {
    let exe = std::env::current_exe().unwrap();
    let out =
        std::process::Command::new(exe).args(["--memory", if api { "with" } else { "without" }]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix("rss_kb "))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{text}"))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--memory") {
        memory(args.get(i + 1).is_some_and(|m| m == "with")).await;
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (node, addr) = node(dir.path(), true).await;
    let addr = addr.unwrap();
    states(addr, 200).await; // warm up
    let mut times = states(addr, 10_000).await;
    times.sort();
    let at = |p: usize| times[(times.len() - 1) * p / 100];
    let us = |d: Duration| d.as_micros();
    println!(
        "GET /api/v1/state, 10,000 requests on new connections: p50 {} µs, p99 {} µs, worst {} µs ({} bytes each)",
        us(at(50)),
        us(at(99)),
        us(times[times.len() - 1]),
        get(addr, "/api/v1/state").body.len()
    );
    node.shutdown().await;
    let (without, with) = (child_rss(false), child_rss(true));
    println!(
        "idle node resident memory: {without} kB without [api], {with} kB with it (after 1,000 requests): {:+} kB",
        with as i64 - without as i64
    );
}
