//! The `peerwatt` binary as a user runs it: real processes, real files, real sled ledgers.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test panics to fail

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use peerwatt_core::NodeKey;
use peerwatt_ledger::{LedgerReader, Store};

fn peerwatt(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_peerwatt")).args(args).env_remove("PEERWATT_DATA_DIR").output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn init(dir: &Path) -> String {
    let out = peerwatt(&["init", "--data-dir", dir.to_str().unwrap(), "--name", "test home"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let line = text.lines().find(|l| l.contains("public id:")).unwrap();
    line.split_whitespace().last().unwrap().to_owned()
}

/// Opens the ledger of the node in `dir` as that node (to add entries as a running node would).
fn open_as_owner(dir: &Path) -> peerwatt_ledger::Ledger<peerwatt_ledger::SledStore> {
    let key = NodeKey::load(&dir.join("node.key")).unwrap();
    peerwatt_ledger::Ledger::open_dir(&dir.join("ledger"), key, std::sync::Arc::new(peerwatt_core::SystemClock))
        .unwrap()
}

/// Every failure is one `error:` line and one `hint:` line.
fn assert_one_line_with_hint(o: &Output) {
    let err = stderr(o);
    let lines: Vec<_> = err.lines().collect();
    assert_eq!(lines.len(), 2, "{err}");
    assert!(lines[0].starts_with("error: "), "{err}");
    assert!(lines[1].starts_with("hint: "), "{err}");
}

#[test]
fn init_creates_a_private_key_a_config_and_a_ledger_and_prints_the_peer_id() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("node");
    let id = init(&dir);

    let key = NodeKey::load(&dir.join("node.key")).unwrap();
    assert_eq!(id, key.public().peer_id());
    assert!(id.starts_with("12D3KooW"));
    assert_eq!(fs::metadata(dir.join("node.key")).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700);

    let config: toml::Table = toml::from_str(&fs::read_to_string(dir.join("node.toml")).unwrap()).unwrap();
    assert_eq!(config["node"]["name"].as_str(), Some("test home"));

    let ledger = LedgerReader::open_dir(&dir.join("ledger")).unwrap();
    assert_eq!(ledger.owner(), Some(key.public()));
    assert_eq!(ledger.verify().unwrap().entries, 1);
}

#[test]
fn init_refuses_to_overwrite_a_key() {
    let tmp = tempfile::tempdir().unwrap();
    let id = init(tmp.path());
    let before = fs::read(tmp.path().join("node.key")).unwrap();
    let out = peerwatt(&["init", "--data-dir", tmp.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert_one_line_with_hint(&out);
    assert!(stderr(&out).contains(&id), "names the existing node");
    assert_eq!(fs::read(tmp.path().join("node.key")).unwrap(), before);
}

#[test]
fn a_key_readable_by_others_is_refused_with_a_fix() {
    let tmp = tempfile::tempdir().unwrap();
    init(tmp.path());
    fs::set_permissions(tmp.path().join("node.key"), fs::Permissions::from_mode(0o640)).unwrap();
    let out = peerwatt(&["ledger", "prove", "--data-dir", tmp.path().to_str().unwrap(), "--seq", "0"]);
    assert_eq!(out.status.code(), Some(2));
    assert_one_line_with_hint(&out);
    assert!(stderr(&out).contains("chmod 600"), "{}", stderr(&out));
}

#[test]
fn show_and_verify_a_fresh_ledger() {
    let tmp = tempfile::tempdir().unwrap();
    let id = init(tmp.path());
    let d = tmp.path().to_str().unwrap();
    let out = peerwatt(&["ledger", "show", "--data-dir", d]);
    assert!(out.status.success());
    assert!(stdout(&out).contains("config-change"));
    assert!(stdout(&out).contains(&format!("node initialised: {id}")));

    let out = peerwatt(&["ledger", "show", "--data-dir", d, "--json"]);
    let line: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(line["seq"], 0);
    assert_eq!(line["kind"], "config-change");

    let out = peerwatt(&["ledger", "verify", "--data-dir", d]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with(&format!("OK: ledger of {id} verified: 1 entry, 1 signed tree head")),
        "{}",
        stdout(&out)
    );
}

#[test]
fn verify_exits_1_and_names_the_entry_when_the_ledger_was_altered() {
    let tmp = tempfile::tempdir().unwrap();
    init(tmp.path());
    let d = tmp.path().to_str().unwrap();
    // Add entries as the node would, then alter entry 2 behind the ledger's back.
    {
        let ledger = open_as_owner(tmp.path());
        for i in 0..4u8 {
            ledger.append(peerwatt_core::EntryKind::ConfigChange, vec![b'a' + i; 10]).unwrap();
        }
        // Flip one payload byte of entry 2 (the last 64 bytes are the signature).
        let mut bytes = ledger.entry_bytes(2).unwrap();
        let n = bytes.len();
        bytes[n - 64 - 3] ^= 0x01;
        ledger.store().tamper_entry(2, Some(bytes)).unwrap();
    }
    let out = peerwatt(&["ledger", "verify", "--data-dir", d]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_one_line_with_hint(&out);
    assert!(stderr(&out).contains("entry 2: bad signature"), "{}", stderr(&out));
}

#[test]
fn export_then_verify_the_file_and_catch_truncation() {
    let tmp = tempfile::tempdir().unwrap();
    init(tmp.path());
    let d = tmp.path().to_str().unwrap();
    let file = tmp.path().join("ledger.pwl");
    let f = file.to_str().unwrap();
    let out = peerwatt(&["ledger", "export", "--data-dir", d, "--out", f]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = peerwatt(&["ledger", "verify", "--file", f]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).starts_with("OK: export of 12D3KooW"));

    // A second export to the same path needs --force.
    let out = peerwatt(&["ledger", "export", "--data-dir", d, "--out", f]);
    assert_eq!(out.status.code(), Some(2));
    assert_one_line_with_hint(&out);

    let bytes = fs::read(&file).unwrap();
    let cut = tmp.path().join("cut.pwl");
    fs::write(&cut, &bytes[..bytes.len() - 20]).unwrap();
    let out = peerwatt(&["ledger", "verify", "--file", cut.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert_one_line_with_hint(&out);
    assert!(stderr(&out).contains("truncated"), "{}", stderr(&out));
}

#[test]
fn prove_prints_a_proof_that_check_proof_accepts_and_alterations_fail() {
    let tmp = tempfile::tempdir().unwrap();
    init(tmp.path());
    let d = tmp.path().to_str().unwrap();
    {
        let ledger = open_as_owner(tmp.path());
        ledger.append_batch((0..9u8).map(|i| (peerwatt_core::EntryKind::ConfigChange, vec![i])).collect()).unwrap();
    }
    let out = peerwatt(&["ledger", "prove", "--data-dir", d, "--seq", "6"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let proof: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(proof["seq"], 6);
    assert_eq!(proof["tree_size"], 10, "a fresh head covering the entry was signed");
    assert_eq!(proof["path"].as_array().unwrap().len(), 4);
    let path = tmp.path().join("proof.json");
    fs::write(&path, stdout(&out)).unwrap();
    let out = peerwatt(&["ledger", "check-proof", "--file", path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).starts_with("OK: entry 6 (config-change"));

    // Alter one hash of the path.
    let mut altered = proof.clone();
    let first = altered["path"][0].as_str().unwrap().to_owned();
    let replacement = if first.starts_with('0') { "1" } else { "0" };
    let flipped = format!("{replacement}{}", &first[1..]);
    altered["path"][0] = serde_json::Value::String(flipped);
    fs::write(&path, altered.to_string()).unwrap();
    let out = peerwatt(&["ledger", "check-proof", "--file", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert_one_line_with_hint(&out);
    assert!(stderr(&out).contains("does not hold"), "{}", stderr(&out));

    let out = peerwatt(&["ledger", "prove", "--data-dir", d, "--seq", "99"]);
    assert_eq!(out.status.code(), Some(2));
    assert_one_line_with_hint(&out);
}

#[test]
fn commands_on_a_missing_data_dir_fail_with_a_hint() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("nothing-here");
    for args in [
        vec!["ledger", "show", "--data-dir", d.to_str().unwrap()],
        vec!["ledger", "verify", "--data-dir", d.to_str().unwrap()],
        vec!["ledger", "prove", "--data-dir", d.to_str().unwrap(), "--seq", "0"],
        vec!["ledger", "verify", "--file", d.to_str().unwrap()],
        vec!["ledger", "check-proof", "--file", d.to_str().unwrap()],
    ] {
        let out = peerwatt(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert_one_line_with_hint(&out);
    }
}

#[test]
fn a_ledger_in_use_is_reported_as_such() {
    let tmp = tempfile::tempdir().unwrap();
    init(tmp.path());
    let _held = LedgerReader::open_dir(&tmp.path().join("ledger")).unwrap();
    let out = peerwatt(&["ledger", "verify", "--data-dir", tmp.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert_one_line_with_hint(&out);
    assert!(stderr(&out).contains("in use"), "{}", stderr(&out));
}

/// What the `peerwatt` binary links, as cargo resolves it (offline, from the lock file): no
/// test harness in any build, and without the default `demo` feature neither the simulator
/// nor its embedded broker.
#[test]
fn the_binary_links_no_test_harness_and_the_demo_is_a_feature() {
    let tree = |extra: &[&str]| {
        let out = Command::new(env!("CARGO"))
            .args(["tree", "--offline", "-p", "peerwatt-cli", "-e", "normal,features", "--prefix", "none"])
            .args(extra)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .unwrap();
        assert!(out.status.success(), "cargo tree failed: {}", stderr(&out));
        stdout(&out)
    };
    let (full, daemon) = (tree(&[]), tree(&["--no-default-features"]));
    assert!(full.contains("peerwatt-sim"), "the default build has the demo:\n{full}");
    for harness in ["test-utils", "peerwatt-testkit"] {
        assert!(!full.contains(harness), "the binary links {harness}:\n{full}");
    }
    for demo_only in ["peerwatt-sim", "rumqttd", "tempfile"] {
        assert!(!daemon.contains(demo_only), "the daemon links {demo_only}:\n{daemon}");
    }
}

#[test]
fn token_new_prints_a_secret_once_and_keeps_only_its_hash() {
    let dir = tempfile::tempdir().unwrap();
    init(dir.path());
    let d = dir.path().to_str().unwrap();
    let out = peerwatt(&["token", "new", "--data-dir", d, "--name", "home-assistant"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let secret = stdout(&out).trim().to_owned();
    assert!(secret.starts_with("pwt_") && secret.len() == 68, "{secret}");
    assert!(stderr(&out).contains("no [api] section"), "says the interface is off: {}", stderr(&out));
    let file = fs::read_to_string(dir.path().join("api-tokens.json")).unwrap();
    assert!(!file.contains(&secret[4..]) && file.contains("home-assistant"), "{file}");
    assert_eq!(fs::metadata(dir.path().join("api-tokens.json")).unwrap().permissions().mode() & 0o777, 0o600);
    let again = peerwatt(&["token", "new", "--data-dir", d, "--name", "home-assistant", "--scope", "control"]);
    assert_eq!(again.status.code(), Some(2));
    assert!(stderr(&again).contains("a token named \"home-assistant\" exists"), "{}", stderr(&again));
    let control = peerwatt(&["token", "new", "--data-dir", d, "--name", "me", "--scope", "control"]);
    assert!(control.status.success());
    let list = stdout(&peerwatt(&["token", "list", "--data-dir", d]));
    assert!(list.contains("home-assistant\tread") && list.contains("me\tcontrol"), "{list}");
    assert!(peerwatt(&["token", "remove", "--data-dir", d, "--name", "me"]).status.success());
    assert!(!stdout(&peerwatt(&["token", "list", "--data-dir", d])).contains("me\t"));
    assert_eq!(peerwatt(&["token", "remove", "--data-dir", d, "--name", "me"]).status.code(), Some(2));
}

#[test]
fn status_piped_into_a_reader_that_stops_early_neither_panics_nor_fails() {
    let dir = tempfile::tempdir().unwrap();
    init(dir.path());
    let status: peerwatt_node::Status = serde_json::from_value(serde_json::json!({
        "updated_at": 1, "running": false, "pid": 1, "peer_id": "p", "community": "c", "listen": [], "peers": [],
        "meter": "connected", "orders": [], "trades_today": [], "ledger": {"entries": 0, "root": ""},
        "counters": {"trades_recorded": 2}
    }))
    .unwrap();
    status.write(&dir.path().join("status.json")).unwrap();
    for json in [false, true] {
        let mut args = vec!["status", "--data-dir", dir.path().to_str().unwrap()];
        if json {
            args.push("--json");
        }
        let mut child = Command::new(env!("CARGO_BIN_EXE_peerwatt"))
            .args(&args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take()); // the reader is gone before the first line (`| head -0`)
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
    }
}

#[test]
fn a_second_node_on_a_busy_port_says_which_address_and_why() {
    let mut street = peerwatt_testkit::households::Neighbourhood::new(env!("CARGO_BIN_EXE_peerwatt"), &[0, 0]);
    street.households[0].start();
    street.households[0].wait_for_log("listening address=/ip4/127.0.0.1/tcp/", std::time::Duration::from_secs(30));
    let busy = format!("/ip4/127.0.0.1/tcp/{}", street.households[0].port);
    let config = street.households[1].dir.join("node.toml");
    let mut cfg = peerwatt_node::NodeConfig::load(&config).unwrap();
    cfg.network.listen = vec![busy.clone()];
    cfg.save(&config).unwrap();
    let mut second = Command::new(env!("CARGO_BIN_EXE_peerwatt"))
        .args(["run", "--config"])
        .arg(&config)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // It must refuse to start; one that starts anyway (sharing the port) is killed and fails.
    let pid = second.id().to_string();
    peerwatt_testkit::wait::until_some(
        "the second node to refuse the busy port",
        std::time::Duration::from_secs(30),
        || second.try_wait().unwrap(),
        || {
            let _ = Command::new("kill").args(["-9", &pid]).status();
            "it started anyway (killed)".to_owned()
        },
    );
    let out = second.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let said = stderr(&out);
    assert!(said.contains(&format!("cannot listen on {busy}: ")), "{said}");
    assert!(said.to_lowercase().contains("address already in use") || said.contains("os error 98"), "{said}");
    assert!(said.contains("(another program, maybe another node, uses that port)"), "{said}");
    assert!(said.contains("hint: change [network] listen in node.toml"), "{said}");
}
