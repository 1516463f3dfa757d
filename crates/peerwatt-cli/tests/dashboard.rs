//! The dashboard in a real browser: `peerwatt demo --serve` runs a street whose nodes serve
//! their dashboards; headless Chromium (Debian's `chromium`, which scripts/test installs)
//! loads one, and the page must show the trades and savings the node's API reports. A
//! screenshot is written to `target/test-artifacts/dashboard.png`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test panics to fail

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use peerwatt_testkit::http::get;
use peerwatt_testkit::wait::Lines;
use serde_json::Value;

fn chromium() -> PathBuf {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .expect("Chromium is not installed: scripts/test installs Debian's `chromium` package")
}

/// Chromium, headless, on `url`: `--dump-dom` (the page after its scripts ran, up to 5 s of
/// virtual time) or a screenshot.
fn browse(url: &str, extra: &[&str]) -> std::process::Output {
    Command::new(chromium())
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--virtual-time-budget=5000"])
        .args(extra)
        .arg(url)
        .stdin(Stdio::null())
        .output()
        .expect("chromium runs")
}

/// The value of `attr` on the element with id `id` in `dom`.
fn attr_of(dom: &str, id: &str, attr: &str) -> Option<String> {
    let at = dom.find(&format!("id=\"{id}\""))?;
    let tag_end = at + dom[at..].find('>')?;
    let tag_start = dom[..at].rfind('<')?;
    let tag = &dom[tag_start..tag_end];
    let key = format!("{attr}=\"");
    let from = tag.find(&key)? + key.len();
    Some(tag[from..from + tag[from..].find('"')?].to_owned())
}

fn address_of(url: &str) -> SocketAddr {
    url.trim_start_matches("http://").trim_end_matches('/').parse().unwrap()
}

fn artifacts() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    let dir = target.join("test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn a_demo_nodes_dashboard_shows_the_trades_and_savings_its_api_reports() {
    let browser = chromium();
    let tmp = tempfile::tempdir().unwrap();
    let mut demo = Command::new(env!("CARGO_BIN_EXE_peerwatt"))
        .args(["demo", "--households", "4", "--speed", "5760", "--serve", "127.0.0.1:0", "--out"])
        .arg(tmp.path().join("out"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lines = Lines::of(demo.stdout.take().unwrap());
    let serving =
        lines.wait_for("naming the dashboards' page", Duration::from_secs(60), |l| l.contains("dashboards: http://"));
    let street = serving.split_whitespace().find(|w| w.starts_with("http://")).unwrap().to_owned();
    lines.wait_for("saying the day is over", Duration::from_secs(180), |l| l.contains("the day is over"));

    // The street's page lists every household, each linking to its node's dashboard.
    let index = get(address_of(&street), "/");
    assert_eq!(index.code, 200);
    let nodes: Vec<String> = index
        .body
        .split("class=\"house\" href=\"")
        .skip(1)
        .map(|rest| rest[..rest.find('"').unwrap()].to_owned())
        .collect();
    assert_eq!(nodes.len(), 4, "{}", index.body);

    // The household with the most trades (the clock stands still now: its state is final).
    let states: Vec<(String, Value)> =
        nodes.iter().map(|url| (url.clone(), get(address_of(url), "/api/v1/state").json())).collect();
    let (url, state) = states.iter().max_by_key(|(_, s)| s["trades_today"].as_array().map_or(0, Vec::len)).unwrap();
    let trades = state["trades_today"].as_array().unwrap();
    assert!(!trades.is_empty(), "no household traded");

    // The page, after its scripts ran, shows what the API says.
    let deadline = Instant::now() + Duration::from_secs(60);
    let dom = loop {
        let out = browse(url, &["--dump-dom"]);
        let dom = String::from_utf8_lossy(&out.stdout).into_owned();
        if attr_of(&dom, "trade-count", "data-value").is_some_and(|v| !v.is_empty())
            && attr_of(&dom, "ledger-verified", "data-value").is_some_and(|v| !v.is_empty())
        {
            break dom;
        }
        assert!(Instant::now() < deadline, "the page never showed its figures:\n{dom}");
    };
    let value = |id: &str| attr_of(&dom, id, "data-value").unwrap_or_default();
    assert_eq!(value("trade-count"), trades.len().to_string());
    assert_eq!(value("savings-today"), state["today"]["savings"].to_string());
    assert_eq!(value("savings-month"), state["settled"]["month"]["savings"].to_string());
    assert_eq!(value("ledger-verified"), "true");
    let rows = dom.matches("<tr class=\"trade\">").count();
    assert_eq!(rows, trades.len().min(50));
    // Counterparties by name, as their certificates give them.
    let names: Vec<&str> = trades.iter().rev().take(50).filter_map(|t| t["counterparty_name"].as_str()).collect();
    assert!(!names.is_empty(), "the API names no counterparty");
    for name in names {
        assert!(dom.contains(&format!("\">{name}</td>")), "{name} is not in the trades table");
    }
    assert!(dom.contains(state["name"].as_str().unwrap()));

    // A screenshot, phone-sized, as the test's artifact.
    let shot = artifacts().join("dashboard.png");
    let _ = std::fs::remove_file(&shot);
    let out = browse(url, &["--window-size=412,2200", &format!("--screenshot={}", shot.display())]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let png = std::fs::read(&shot).unwrap();
    assert!(png.starts_with(b"\x89PNG") && png.len() > 20_000, "{} bytes", png.len());
    drop(browser);

    // Ctrl-C ends the demo: the nodes stop, the ledgers are verified, the report is written.
    let stopped = Command::new("kill").args(["-INT", &demo.id().to_string()]).status().unwrap();
    assert!(stopped.success());
    lines.wait_for("the report", Duration::from_secs(120), |l| l.contains("verifying every ledger"));
    let exit = demo.wait().unwrap();
    assert!(exit.success(), "{exit:?}\n{}", lines.text());
}
