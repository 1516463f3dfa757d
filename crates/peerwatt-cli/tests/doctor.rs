//! `peerwatt doctor` on a healthy node (stopped, then running with a peer and its meter), and
//! on six kinds of breakage, each named on its own line with what to fix, and exit 1.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test panics to fail

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output};
use std::time::Duration;

use peerwatt_ledger::{LedgerReader, SledStore, Store};
use peerwatt_testkit::households::Neighbourhood;

fn doctor(dir: &std::path::Path) -> (Option<i32>, String) {
    let out: Output =
        Command::new(env!("CARGO_BIN_EXE_peerwatt")).args(["doctor", "--data-dir"]).arg(dir).output().unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
}

/// Asserts that doctor fails on exactly the check `name`, with a fix, and passes the rest.
fn fails_on(dir: &std::path::Path, name: &str) {
    let (code, said) = doctor(dir);
    assert_eq!(code, Some(1), "{said}");
    let failed: Vec<&str> = said.lines().filter(|l| l.starts_with("FAIL ")).collect();
    assert_eq!(failed.len(), 1, "{said}");
    assert!(failed[0].starts_with(&format!("FAIL {name}: ")), "{said}");
    let at = said.lines().position(|l| l.starts_with("FAIL ")).unwrap();
    assert!(said.lines().nth(at + 1).is_some_and(|l| l.trim_start().starts_with("fix: ")), "{said}");
}

#[test]
fn doctor_passes_a_healthy_node_and_names_each_breakage() {
    let mut street = Neighbourhood::new(env!("CARGO_BIN_EXE_peerwatt"), &[-2_000, 2_000]);
    let dir = street.households[0].dir.clone();

    // Healthy and stopped: everything it can check without the node is good.
    let (code, said) = doctor(&dir);
    assert_eq!(code, Some(0), "{said}");
    for check in ["data directory", "key", "community", "certificate", "broker", "listen", "disk", "ledger"] {
        assert!(said.lines().any(|l| l.starts_with(&format!("ok   {check}: "))), "{check}:\n{said}");
    }
    assert!(said.ends_with("all good\n"), "{said}");

    // 1. The key readable by others.
    let key = dir.join("node.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    fails_on(&dir, "key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();

    // 2. A community file that is not the admin's (renamed: its id no longer matches).
    let file = dir.join("community.toml");
    let original = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, original.replace("name = \"Testville\"", "name = \"Elsewhere\"")).unwrap();
    fails_on(&dir, "community");
    std::fs::write(&file, &original).unwrap();

    // 3. An expired certificate.
    let cert = dir.join("membership.cert");
    let good_cert = std::fs::read(&cert).unwrap();
    let id = street.households[0].id.clone();
    let admin = street.admin.to_str().unwrap().to_owned();
    street.cli(&[
        "community",
        "admit",
        "--dir",
        &admin,
        "--node",
        &id,
        "--name",
        "house-0",
        "--zone",
        "feeder-1",
        "--valid-days",
        "0",
        "--out",
        cert.to_str().unwrap(),
        "--force",
    ]);
    fails_on(&dir, "certificate");
    std::fs::write(&cert, &good_cert).unwrap();

    // 4. The listen port held by another program.
    let holder = std::net::TcpListener::bind(("127.0.0.1", street.households[0].port)).unwrap();
    fails_on(&dir, "listen");
    drop(holder);

    // 5. A ledger altered behind the node's back.
    let ledger_dir = dir.join("ledger");
    let saved = {
        let ledger = LedgerReader::open_dir(&ledger_dir).unwrap();
        let bytes = ledger.entry_bytes(0).unwrap();
        let mut bad = bytes.clone();
        let n = bad.len();
        bad[n - 64 - 3] ^= 0x01;
        ledger.store().tamper_entry(0, Some(bad)).unwrap();
        ledger.store().sync().unwrap();
        bytes
    };
    fails_on(&dir, "ledger");
    {
        let store = SledStore::open(&ledger_dir).unwrap();
        store.tamper_entry(0, Some(saved)).unwrap();
        store.sync().unwrap();
    }

    // 6. The broker down.
    street.broker.stop();
    fails_on(&dir, "broker");
    street.broker.restart().unwrap();

    // Healthy and running: its peer and its meter's readings too.
    street.start_meters();
    street.start_all();
    street.households[0].wait_for_status("a peer and a reading", Duration::from_secs(60), |s| {
        !s.peers.is_empty() && s.last_reading_at.is_some()
    });
    let (code, said) = doctor(&dir);
    assert_eq!(code, Some(0), "{said}");
    assert!(said.lines().any(|l| l.starts_with("ok   peers: 1 connected")), "{said}");
    assert!(said.lines().any(|l| l.starts_with("ok   meter: ")), "{said}");
    street.stop_all();
}
