//! The node's HTTP interface, on a real node: every endpoint, JSON errors, and the token rules
//! (a request off a trusted loopback without a valid token: 401; a read token: read only).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test panics to fail

use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use peerwatt_core::{Clock, SystemClock};
use peerwatt_node::api::tokens::{self, Scope};
use peerwatt_node::config::ApiSection;
use peerwatt_node::{NodeConfig, RunningNode};
use peerwatt_testkit::community_of;

use peerwatt_testkit::http::{get, request as http};

/// Starts `cfg` with the HTTP interface on a free loopback port.
async fn start(mut cfg: NodeConfig, api: ApiSection) -> (RunningNode, SocketAddr) {
    cfg.api = Some(ApiSection { listen: "127.0.0.1:0".into(), ..api });
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let node = peerwatt_node::start(&cfg, clock).await.unwrap();
    let addr = node.api_address().expect("the API is on");
    (node, addr)
}

/// Waits until the node has published its first status (the API answers 503 before).
async fn wait_until_up(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let answer = tokio::task::spawn_blocking(move || get(addr, "/api/v1/health")).await.unwrap();
        if answer.code == 200 {
            return;
        }
        assert_eq!(answer.code, 503, "{}", answer.body);
        assert!(Instant::now() < deadline, "the node never reported itself up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_answers_and_every_error_is_json() {
    let dir = tempfile::tempdir().unwrap();
    let (community, configs) = community_of(dir.path(), 1).unwrap();
    let (node, addr) = start(configs[0].clone(), ApiSection::default()).await;
    wait_until_up(addr).await;
    let peer_id = node.peer_id().to_owned();
    let (health, state, head, metrics, missing, wrong_method) = tokio::task::spawn_blocking(move || {
        (
            get(addr, "/api/v1/health"),
            get(addr, "/api/v1/state"),
            get(addr, "/api/v1/ledger/head"),
            get(addr, "/metrics"),
            get(addr, "/api/v1/nothing-here"),
            http(addr, "POST", "/api/v1/state", &[("Content-Type", "application/json")], b"{}"),
        )
    })
    .await
    .unwrap();
    assert_eq!((health.code, health.json()["status"].as_str()), (200, Some("ok")));
    let s = state.json();
    assert_eq!(
        (s["peer_id"].as_str(), s["community"].as_str()),
        (Some(peer_id.as_str()), Some(community.name.as_str()))
    );
    assert_eq!(s["running"], true);
    // Who it is, the market's clock and tariffs, and every reason it does not trade.
    assert_eq!(s["name"], "node-0");
    assert_eq!(
        (s["tariffs"]["retail"].as_u64(), s["tariffs"]["feed_in"].as_u64()),
        (Some(community.retail.0), Some(community.feed_in.0))
    );
    assert_eq!(s["interval"]["length_ms"].as_u64(), Some(community.interval.millis()));
    let why: Vec<&str> = s["not_trading"].as_array().unwrap().iter().filter_map(|v| v.as_str()).collect();
    assert!(why.iter().any(|w| w.starts_with("no meter")), "{why:?}");
    assert!(why.iter().any(|w| w.starts_with("no peers connected")), "{why:?}");
    assert!(s["market"].as_str().unwrap().starts_with("not trading: no meter"), "{}", s["market"]);
    assert_eq!(s["settled"]["intervals"], 0);
    let h = head.json();
    assert_eq!(h["entries"], s["ledger"]["entries"]);
    assert_eq!(h["root"].as_str().map(str::len), Some(64));
    assert_eq!(metrics.code, 200);
    assert!(metrics.headers.contains("content-type: text/plain; version=0.0.4"), "{}", metrics.headers);
    assert!(metrics.body.contains(&format!("peerwatt_build_info{{version=\"{}\"}} 1", peerwatt_node::api::VERSION)));
    assert!(
        metrics.body.contains("# TYPE peerwatt_peers_connected gauge\npeerwatt_peers_connected 0\n"),
        "{}",
        metrics.body
    );
    for line in metrics.body.lines().filter(|l| !l.starts_with('#')) {
        assert!(line.starts_with("peerwatt_"), "{line}");
        assert!(!line.contains("12D3Koo"), "no peer ids in metrics: {line}");
    }
    assert_eq!((missing.code, missing.json()["status"].as_u64()), (404, Some(404)));
    assert!(missing.json()["error"].as_str().unwrap().contains("/api/v1/nothing-here"));
    assert_eq!(wrong_method.code, 405);
    assert_eq!(wrong_method.json()["status"], 405, "a JSON body even for the framework's own errors");
    node.shutdown().await;
    assert!(TcpStream::connect(addr).is_err(), "the interface stops with the node");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn off_a_trusted_loopback_a_request_needs_a_valid_token() {
    let dir = tempfile::tempdir().unwrap();
    let (_, configs) = community_of(dir.path(), 1).unwrap();
    let cfg = configs[0].clone();
    let tokens_file = cfg.resolve(&ApiSection::default().tokens_file);
    // Made before and after the node starts: both work, as the file is read when needed.
    let read = tokens::create(&tokens_file, "home-assistant", Scope::Read, 1).unwrap();
    let (node, addr) = start(cfg, ApiSection { trust_loopback: false, ..ApiSection::default() }).await;
    let control = tokens::create(&tokens_file, "me", Scope::Control, 2).unwrap();
    let bearer = |t: &str| format!("Bearer {t}");
    let (read2, control2) = (read.clone(), control.clone());
    let (none, wrong, with_read, with_control) = tokio::task::spawn_blocking(move || {
        (
            get(addr, "/api/v1/health"),
            http(addr, "GET", "/api/v1/health", &[("Authorization", "Bearer pwt_0000")], b""),
            http(addr, "GET", "/metrics", &[("Authorization", &bearer(&read2))], b""),
            http(addr, "GET", "/api/v1/ledger/head", &[("Authorization", &bearer(&control2))], b""),
        )
    })
    .await
    .unwrap();
    assert_eq!((none.code, none.json()["status"].as_u64()), (401, Some(401)));
    assert!(none.headers.contains("www-authenticate: bearer"), "{}", none.headers);
    assert_eq!(wrong.code, 401);
    assert!(wrong.json()["error"].as_str().unwrap().contains("not one of this node's"));
    // The node may not have published its status yet: up, or 503, never refused.
    assert!(matches!(with_read.code, 200 | 503), "{} {}", with_read.code, with_read.body);
    assert!(matches!(with_control.code, 200 | 503), "{} {}", with_control.code, with_control.body);
    // Changing the limits needs the control scope.
    let json = [("Content-Type", "application/json")];
    let body = br#"{"min_sell_price":1000,"max_buy_price":null}"#;
    let (read_put, control_put) = tokio::task::spawn_blocking(move || {
        let read_auth = [json[0], ("Authorization", &bearer(&read))];
        let control_auth = [json[0], ("Authorization", &bearer(&control))];
        (
            http(addr, "PUT", "/api/v1/limits", &read_auth, body),
            http(addr, "PUT", "/api/v1/limits", &control_auth, body),
        )
    })
    .await
    .unwrap();
    assert_eq!((read_put.code, read_put.json()["status"].as_u64()), (403, Some(403)));
    assert!(read_put.json()["error"].as_str().unwrap().contains("scope is read"), "{}", read_put.body);
    assert_eq!(control_put.code, 200, "{}", control_put.body);
    assert_eq!(control_put.json()["min_sell_price"], 1000);
    node.shutdown().await;
}

/// The limits in the node's latest status, once it shows `want`.
async fn wait_for_limits(addr: SocketAddr, want: serde_json::Value) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let state = tokio::task::spawn_blocking(move || get(addr, "/api/v1/state")).await.unwrap();
        if state.json()["limits"] == want {
            return;
        }
        assert!(Instant::now() < deadline, "the status never showed {want}: {}", state.body);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_are_set_checked_and_kept_and_bad_input_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (_, configs) = community_of(dir.path(), 1).unwrap();
    let cfg = configs[0].clone();
    let (node, addr) = start(cfg.clone(), ApiSection::default()).await;
    wait_until_up(addr).await;
    let json = [("Content-Type", "application/json")];
    let set = tokio::task::spawn_blocking(move || {
        http(addr, "PUT", "/api/v1/limits", &json, br#"{"min_sell_price":90000,"max_buy_price":250000}"#)
    })
    .await
    .unwrap();
    let want = serde_json::json!({"min_sell_price": 90000, "max_buy_price": 250000});
    assert_eq!((set.code, set.json()), (200, want.clone()), "{}", set.body);
    wait_for_limits(addr, want.clone()).await;
    let big = vec![b' '; 20 * 1024];
    let refused = tokio::task::spawn_blocking(move || {
        [
            http(addr, "PUT", "/api/v1/limits", &json, br#"{"min_sell_price":"#),
            http(addr, "PUT", "/api/v1/limits", &json, br#"{"min_sell_price":"cheap"}"#),
            http(addr, "PUT", "/api/v1/limits", &json, br#"{"min_sell_price":1,"max_buy":2}"#),
            http(addr, "PUT", "/api/v1/limits", &json, br#"{"min_sell_price":-5}"#),
            http(addr, "PUT", "/api/v1/limits", &json, br#"{"min_sell_price":99999999999}"#),
            http(addr, "PUT", "/api/v1/limits", &[], br#"{"min_sell_price":1}"#),
            http(addr, "PUT", "/api/v1/limits", &json, &big),
            get(addr, "/api/v1/limits"),
        ]
    })
    .await
    .unwrap();
    let codes: Vec<u16> = refused.iter().map(|a| a.code).collect();
    assert_eq!(
        codes,
        [400, 422, 422, 422, 422, 415, 413, 200],
        "{:?}",
        refused.iter().map(|a| &a.body).collect::<Vec<_>>()
    );
    for answer in &refused[..7] {
        assert_eq!(answer.json()["status"].as_u64(), Some(u64::from(answer.code)), "{}", answer.body);
    }
    assert_eq!(refused[7].json(), want, "nothing changed");
    node.shutdown().await;
    // Kept for the next start.
    let (node, addr) = start(cfg, ApiSection::default()).await;
    wait_for_limits(addr, want).await;
    // A limit no neighbour can meet is a reason not to trade, and the status says so.
    let json = [("Content-Type", "application/json")];
    let set = tokio::task::spawn_blocking(move || {
        http(addr, "PUT", "/api/v1/limits", &json, br#"{"min_sell_price":900000000,"max_buy_price":1}"#)
    })
    .await
    .unwrap();
    assert_eq!(set.code, 200, "{}", set.body);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let state = tokio::task::spawn_blocking(move || get(addr, "/api/v1/state")).await.unwrap().json();
        let why: Vec<String> =
            state["not_trading"].as_array().unwrap().iter().filter_map(|v| v.as_str().map(str::to_owned)).collect();
        if why.iter().any(|w| w.contains("minimum sell price is above the retail tariff"))
            && why.iter().any(|w| w.contains("maximum buy price is below the feed-in tariff"))
        {
            break;
        }
        assert!(Instant::now() < deadline, "the limits are not among the reasons: {why:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    node.shutdown().await;
}

#[test]
fn the_interfaces_doc_lists_every_metric_family_the_node_renders() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/interfaces.md")).unwrap();
    let mut status: peerwatt_node::Status = serde_json::from_value(serde_json::json!({
        "updated_at": 1, "running": true, "pid": 1, "peer_id": "p", "community": "c", "listen": [], "peers": [],
        "meter": "connected", "orders": [], "trades_today": [], "ledger": {"entries": 0, "root": ""},
        "counters": {"gossip_accepted_orders": 3, "gossip_rejected_replay": 1, "trades_recorded": 2,
                     "traded_energy_sold_wh": 500},
        "last_reading_at": 1796672945655_u64
    }))
    .unwrap();
    status.requests_pending = 0;
    let text = peerwatt_node::api::exposition::render(&status, "0.1.0", &Default::default());
    assert!(text.contains("peerwatt_ledger_flush_duration_seconds_count 0\n"), "{text}");
    // Energy in joules, and times in seconds, exactly.
    assert!(text.contains("peerwatt_traded_energy_joules_total{direction=\"sold\"} 1800000\n"), "{text}");
    assert!(text.contains("peerwatt_meter_last_reading_timestamp_seconds 1796672945.655\n"), "{text}");
    for family in text.lines().filter_map(|l| l.strip_prefix("# TYPE ")).map(|l| l.split(' ').next().unwrap()) {
        let documented = doc.contains(&format!("| `{family}"))
            || family.ends_with("_total") && doc.contains("| `peerwatt_<counter>_total`");
        assert!(documented, "{family} is not in docs/interfaces.md");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_meters_closed_intervals_are_served_by_range_in_json_and_csv() {
    use peerwatt_core::{IntervalId, Timestamp, Wh};
    use peerwatt_meter::{History, IntervalTotals, Source};
    let dir = tempfile::tempdir().unwrap();
    let (_, configs) = community_of(dir.path(), 1).unwrap();
    let cfg = configs[0].clone();
    // Three 15-minute intervals of 2026-12-07, as the meter client leaves them.
    let day = Timestamp::parse_utc("2026-12-07").unwrap().0;
    let closed: Vec<IntervalTotals> = (0..3u64)
        .map(|i| IntervalTotals {
            interval: IntervalId(day / 900_000 + i),
            start: Timestamp(day + i * 900_000),
            imported: Wh(100 * i),
            exported: Wh(7),
            complete: i > 0,
            covered_ms: 900_000,
            counter_reset: false,
            source: Source::Counters,
        })
        .collect();
    History::open(&cfg.meter_history_file(), 100).extend(&closed).unwrap();
    let (node, addr) = start(cfg, ApiSection::default()).await;
    let (all, later, csv, bad) = tokio::task::spawn_blocking(move || {
        (
            get(addr, "/api/v1/intervals"),
            get(addr, "/api/v1/intervals?from=2026-12-07T00:15Z"),
            get(addr, "/api/v1/intervals?format=csv"),
            get(addr, "/api/v1/intervals?to=tomorrow"),
        )
    })
    .await
    .unwrap();
    let all = all.json();
    assert_eq!(all.as_array().map(Vec::len), Some(3), "{all}");
    assert_eq!((all[2]["imported"].as_u64(), all[2]["exported"].as_u64()), (Some(200), Some(7)));
    assert_eq!(later.json().as_array().map(Vec::len), Some(2));
    let lines: Vec<&str> = csv.body.lines().collect();
    assert_eq!(lines.len(), 4, "{}", csv.body);
    assert!(lines[1].ends_with(",0,7,false,900000,false,counters"), "{}", lines[1]);
    assert_eq!(bad.code, 400);
    node.shutdown().await;
}

/// `docs/api/openapi.json`, from the repository's root.
fn kept_openapi() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/api/openapi.json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_is_the_one_in_docs_and_names_only_real_endpoints() {
    let dir = tempfile::tempdir().unwrap();
    let (_community, configs) = community_of(dir.path(), 1).unwrap();
    let api = ApiSection { trust_loopback: false, ..ApiSection::default() };
    let (_node, addr) = start(configs[0].clone(), api).await;
    // Served without a token: it describes the API, nothing of the household.
    let served = tokio::task::spawn_blocking(move || get(addr, "/api/v1/openapi.json")).await.unwrap();
    assert_eq!(served.code, 200, "{}", served.body);
    let doc = served.json();
    assert_eq!(doc["openapi"].as_str().map(|v| &v[..3]), Some("3.1"));
    let kept = kept_openapi();
    if std::env::var_os("PEERWATT_BLESS").is_some() {
        std::fs::write(&kept, &served.body).unwrap();
    }
    let on_disk = std::fs::read_to_string(&kept).unwrap_or_default();
    assert!(
        on_disk == served.body,
        "docs/api/openapi.json is not what the node serves: rewrite it with \
         `PEERWATT_BLESS=1 cargo test -p peerwatt-node --test api the_openapi_document` and commit it"
    );
    // Every documented path is routed (a request without a token is refused by the auth rules,
    // never "no such endpoint"), and every authenticated one documents 401.
    let paths = doc["paths"].as_object().unwrap().clone();
    assert!(paths.len() >= 11, "{:?}", paths.keys());
    for (path, item) in paths {
        let concrete = path.replace("{seq}", "0");
        for method in item.as_object().unwrap().keys() {
            let (m, p) = (method.to_uppercase(), concrete.clone());
            let answer = tokio::task::spawn_blocking(move || http(addr, &m, &p, &[], b"")).await.unwrap();
            assert!(!answer.body.contains("no such endpoint"), "{method} {path}: {}", answer.body);
            if path != "/api/v1/openapi.json" {
                assert_eq!(answer.code, 401, "{method} {path} without a token off trusted loopback");
                assert!(item[method]["responses"]["401"].is_object(), "{method} {path} documents 401");
            }
        }
    }
}
