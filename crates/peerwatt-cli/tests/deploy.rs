//! `deploy/`: the systemd unit passes `systemd-analyze verify` and scores as well hardened;
//! the Dockerfile and compose file hold to the rules deploy/README.md states (checked by
//! reading them: this machine has no Docker daemon); the compose street's setup script sets
//! up a community whose nodes' memberships check.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test panics to fail

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn systemd_analyze() -> Option<PathBuf> {
    ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"].iter().map(PathBuf::from).find(|p| p.exists())
}

#[test]
fn the_systemd_unit_verifies_and_is_hardened() {
    let unit = read("deploy/systemd/peerwatt.service");
    for setting in [
        "User=peerwatt",
        "StateDirectory=peerwatt",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "Restart=on-failure",
        "KillSignal=SIGTERM",
        "TimeoutStopSec=30",
    ] {
        assert!(unit.lines().any(|l| l == setting), "the unit lacks {setting}");
    }
    let Some(analyze) = systemd_analyze() else {
        eprintln!("SKIPPED: systemd-analyze is not installed here; the unit was only read");
        return;
    };
    // `verify` checks that ExecStart's program exists: point it at the binary just built.
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("peerwatt.service");
    std::fs::write(&copy, unit.replace("/usr/local/bin/peerwatt", env!("CARGO_BIN_EXE_peerwatt"))).unwrap();
    let verify = Command::new(&analyze).arg("verify").arg(&copy).output().unwrap();
    let said = String::from_utf8_lossy(&verify.stderr).into_owned() + &String::from_utf8_lossy(&verify.stdout);
    assert!(verify.status.success() && said.trim().is_empty(), "systemd-analyze verify: {said}");
    // systemd's own exposure score: 0 (locked down) to 10; "OK" is below 4.
    let security =
        Command::new(&analyze).args(["security", "--offline=yes", "--no-pager"]).arg(&copy).output().unwrap();
    let text = String::from_utf8_lossy(&security.stdout).into_owned();
    let score: f64 = text
        .lines()
        .find_map(|l| l.split("exposure level for peerwatt.service: ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in:\n{text}{}", String::from_utf8_lossy(&security.stderr)));
    assert!(score <= 2.0, "exposure {score}:\n{text}");
}

#[test]
fn the_dockerfile_builds_in_one_stage_and_runs_as_nobody_in_a_small_one() {
    let file = read("deploy/docker/Dockerfile");
    let lines: Vec<&str> = file.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).collect();
    let froms: Vec<&str> = lines.iter().filter(|l| l.starts_with("FROM ")).copied().collect();
    assert_eq!(froms.len(), 2, "a build stage and a runtime stage: {froms:?}");
    for from in &froms {
        let image = from.split_whitespace().nth(1).unwrap();
        let tag = image.split_once(':').map(|(_, t)| t);
        assert!(tag.is_some_and(|t| t != "latest"), "{image}: pin a tag");
    }
    assert!(froms[1].contains("-slim"), "a small runtime image: {}", froms[1]);
    let runtime = &lines[lines.iter().position(|l| *l == froms[1]).unwrap()..];
    let user = runtime.iter().find_map(|l| l.strip_prefix("USER ")).expect("the runtime stage names a user");
    let uid = user.split(':').next().unwrap();
    assert!(uid != "0" && uid != "root", "USER {user}");
    assert!(runtime.iter().any(|l| l.starts_with("COPY --from=build ")), "the binary from the build stage");
    assert!(runtime.contains(&"STOPSIGNAL SIGTERM"));
    for l in runtime.iter().filter(|l| l.contains("apt-get install")) {
        assert!(l.contains("--no-install-recommends"), "{l}");
    }
    assert!(file.contains("rm -rf /var/lib/apt/lists/*"), "apt's lists stay out of the image");
    assert!(lines.iter().any(|l| l.starts_with("RUN cargo build --release --locked")), "built from the lock file");
    let ignore = read(".dockerignore");
    assert!(ignore.lines().any(|l| l == "target"), ".dockerignore keeps target/ out of the context");
}

#[test]
fn the_compose_street_has_a_broker_a_relay_and_three_households_that_drain_on_stop() {
    let compose: serde_yaml::Value = serde_yaml::from_str(&read("deploy/docker/compose.yaml")).unwrap();
    let services = compose["services"].as_mapping().unwrap();
    let names: Vec<&str> = services.keys().filter_map(|k| k.as_str()).collect();
    for wanted in ["mosquitto", "setup", "meters", "relay", "house-1", "house-2", "house-3"] {
        assert!(names.contains(&wanted), "no {wanted} in {names:?}");
    }
    for node in ["relay", "house-1", "house-2", "house-3"] {
        let s = &compose["services"][node];
        let command: Vec<&str> = s["command"].as_sequence().unwrap().iter().filter_map(|v| v.as_str()).collect();
        assert_eq!(command, ["run", "--config", &format!("/street/{node}/node.toml")]);
        // Merged from x-node by YAML's `<<` (serde_yaml keeps it as a key: read it there).
        let base = if s["stop_grace_period"].is_null() { &s["<<"] } else { s };
        assert_eq!(base["stop_grace_period"].as_str(), Some("30s"), "{node} drains on stop");
        assert_eq!(base["user"].as_str(), Some("10001:10001"), "{node} runs as the image's user");
        assert_eq!(
            base["depends_on"]["setup"]["condition"].as_str(),
            Some("service_completed_successfully"),
            "{node} starts once the street is set up"
        );
    }
    // The setup script's addresses are the compose network's.
    let setup = &compose["services"]["setup"]["environment"];
    assert_eq!(
        setup["BROKER"].as_str(),
        compose["services"]["mosquitto"]["networks"]["street"]["ipv4_address"].as_str()
    );
    assert_eq!(setup["RELAY_IP"].as_str(), compose["services"]["relay"]["networks"]["street"]["ipv4_address"].as_str());
}

#[test]
fn the_compose_streets_setup_script_admits_every_node() {
    let street = tempfile::tempdir().unwrap();
    let run = || {
        Command::new("sh")
            .arg(repo().join("deploy/docker/street-setup.sh"))
            .env("PEERWATT", env!("CARGO_BIN_EXE_peerwatt"))
            .env("STREET", street.path())
            .output()
            .unwrap()
    };
    let out = run();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let relay_id = std::fs::read_to_string(street.path().join("relay/node.toml")).unwrap();
    assert!(relay_id.contains("[network]"));
    for node in ["relay", "house-1", "house-2", "house-3"] {
        let config = street.path().join(node).join("node.toml");
        let check = Command::new(env!("CARGO_BIN_EXE_peerwatt"))
            .args(["community", "check", "--config"])
            .arg(&config)
            .output()
            .unwrap();
        assert!(check.status.success(), "{node}: {}", String::from_utf8_lossy(&check.stderr));
        let cfg = peerwatt_node::NodeConfig::load(&config).unwrap();
        if node != "relay" {
            assert!(cfg.meter.is_some(), "{node} reads its meter");
            let bootstrap = &cfg.network.bootstrap;
            assert!(
                bootstrap.len() == 1 && bootstrap[0].starts_with("/ip4/172.28.0.10/tcp/4001/p2p/12D3KooW"),
                "{bootstrap:?}"
            );
        }
    }
    // A second run leaves the street as it is.
    let again = run();
    assert!(again.status.success());
    assert!(String::from_utf8_lossy(&again.stdout).contains("set up already"));
}
