//! `peerwatt community init|admit|check` as an admin and a member run them.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test panics to fail

use std::path::Path;
use std::process::{Command, Output};

use peerwatt_core::{Community, NodeKey};

fn peerwatt(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_peerwatt")).args(args).env_remove("PEERWATT_CONFIG").output().unwrap()
}

fn ok(o: Output) -> String {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// An admin's community and a member node admitted to it, wired into the node's node.toml.
fn admitted(dir: &Path, extra_admit: &[&str]) -> (String, std::path::PathBuf) {
    let c = dir.join("community");
    let n = dir.join("node");
    ok(peerwatt(&[
        "community",
        "init",
        "--dir",
        c.to_str().unwrap(),
        "--name",
        "Sunny Street",
        "--interval-minutes",
        "5",
    ]));
    let init = ok(peerwatt(&["init", "--data-dir", n.to_str().unwrap()]));
    let id = init.lines().find_map(|l| l.trim().strip_prefix("public id: ")).unwrap().to_owned();
    let cert = n.join("membership.cert");
    let mut args =
        vec!["community", "admit", "--dir", c.to_str().unwrap(), "--node", &id, "--name", "Ann", "--zone", "feeder-7"];
    args.extend_from_slice(&["--out", cert.to_str().unwrap()]);
    args.extend_from_slice(extra_admit);
    ok(peerwatt(&args));
    std::fs::copy(c.join("community.toml"), n.join("community.toml")).unwrap();
    let config = n.join("node.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str("\n[community]\nfile = \"community.toml\"\ncertificate = \"membership.cert\"\n");
    std::fs::write(&config, text).unwrap();
    (id, config)
}

#[test]
fn init_admit_and_check_a_membership() {
    let tmp = tempfile::tempdir().unwrap();
    let (id, config) = admitted(tmp.path(), &[]);
    let c = tmp.path().join("community");
    let admin = NodeKey::load(&c.join("admin.key")).unwrap();
    let text = std::fs::read_to_string(c.join("community.toml")).unwrap();
    assert!(text.contains(&format!("admin = \"{}\"", admin.public())));
    assert!(text.contains(&Community::derive_id(&admin.public(), "Sunny Street").0.to_hex()));
    assert!(text.contains("interval_minutes = 5"));

    let out = ok(peerwatt(&["community", "check", "--config", config.to_str().unwrap()]));
    assert!(out.starts_with(&format!("OK: {id} is a member of \"Sunny Street\" as \"Ann\" (zone feeder-7)")), "{out}");
    assert!(out.contains("5-minute intervals"));
}

#[test]
fn an_edited_community_file_or_a_foreign_certificate_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, config) = admitted(tmp.path(), &[]);
    let node = tmp.path().join("node");

    // Someone raises the feed-in... fine; someone renames the community: the id no longer matches.
    let file = node.join("community.toml");
    let original = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, original.replace("name = \"Sunny Street\"", "name = \"Shady Street\"")).unwrap();
    let out = peerwatt(&["community", "check", "--config", config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("community id does not match"), "{}", stderr(&out));
    std::fs::write(&file, &original).unwrap();

    // A certificate from another community's admin.
    let other = tmp.path().join("other");
    std::fs::create_dir(&other).unwrap();
    let (_, other_config) = admitted(&other, &[]);
    std::fs::copy(other.join("node").join("membership.cert"), node.join("membership.cert")).unwrap();
    let out = peerwatt(&["community", "check", "--config", config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("not by the community's admin"), "{}", stderr(&out));
    assert!(other_config.exists());
}

#[test]
fn an_expired_certificate_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, config) = admitted(tmp.path(), &["--valid-days", "0"]);
    let out = peerwatt(&["community", "check", "--config", config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("valid from"), "{}", stderr(&out));
}

#[test]
fn admin_mistakes_fail_with_hints() {
    let tmp = tempfile::tempdir().unwrap();
    let c = tmp.path().join("c");
    ok(peerwatt(&["community", "init", "--dir", c.to_str().unwrap(), "--name", "X"]));
    let again = peerwatt(&["community", "init", "--dir", c.to_str().unwrap(), "--name", "X"]);
    assert_eq!(again.status.code(), Some(2));
    assert!(stderr(&again).contains("hint:"));
    let bad_id = peerwatt(&[
        "community",
        "admit",
        "--dir",
        c.to_str().unwrap(),
        "--node",
        "not-an-id",
        "--name",
        "A",
        "--zone",
        "z",
        "--out",
        "/tmp/x.cert",
    ]);
    assert_eq!(bad_id.status.code(), Some(2));
    assert!(stderr(&bad_id).contains("12D3KooW"), "{}", stderr(&bad_id));
    let inverted = peerwatt(&[
        "community",
        "init",
        "--dir",
        tmp.path().join("d").to_str().unwrap(),
        "--name",
        "Y",
        "--feed-in",
        "400000",
    ]);
    assert_eq!(inverted.status.code(), Some(2));
    assert!(stderr(&inverted).contains("feed-in tariff"), "{}", stderr(&inverted));
    let bad_interval = peerwatt(&[
        "community",
        "init",
        "--dir",
        tmp.path().join("e").to_str().unwrap(),
        "--name",
        "Z",
        "--interval-minutes",
        "7",
    ]);
    assert_eq!(bad_interval.status.code(), Some(2));
}

#[test]
fn a_hand_edited_parameter_is_refused_by_check_and_by_run_and_the_admin_signs_a_new_version() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, config) = admitted(tmp.path(), &[]);
    let file = tmp.path().join("node").join("community.toml");
    let original = std::fs::read_to_string(&file).unwrap();
    assert!(original.contains("signed_rules = ["), "the file carries the admin's signature");
    let out = ok(peerwatt(&["community", "check", "--config", config.to_str().unwrap()]));
    assert!(out.contains("rules: version 1 in force"), "{out}");

    // A member raises the retail tariff in its own copy, or shortens the interval.
    for (from, to, field) in [
        ("retail_tariff = 300000", "retail_tariff = 350000", "retail tariff 350000 here, 300000 signed"),
        ("interval_minutes = 5", "interval_minutes = 15", "interval 900 here, 300 signed"),
        ("sharing = \"pro-rata\"", "sharing = \"off\"", "sharing Off here, ProRata signed"),
    ] {
        assert!(original.contains(from), "{from}");
        std::fs::write(&file, original.replace(from, to)).unwrap();
        let check = peerwatt(&["community", "check", "--config", config.to_str().unwrap()]);
        assert_eq!(check.status.code(), Some(1), "{}", stderr(&check));
        assert!(stderr(&check).contains(field), "{}", stderr(&check));
        let run = peerwatt(&["run", "--config", config.to_str().unwrap()]);
        assert!(!run.status.success());
        assert!(stderr(&run).contains(field), "run refuses it too: {}", stderr(&run));
    }
    // Dropping the signatures does not help.
    let unsigned: String = original.lines().filter(|l| !l.starts_with("  \"")).collect::<Vec<_>>().join("\n");
    std::fs::write(&file, unsigned).unwrap();
    let check = peerwatt(&["community", "check", "--config", config.to_str().unwrap()]);
    assert_eq!(check.status.code(), Some(1));
    assert!(stderr(&check).contains("no signed rules"), "{}", stderr(&check));

    // The admin changes the tariff from a later interval: a second signed version.
    let c = tmp.path().join("community");
    let changed = ok(peerwatt(&[
        "community",
        "rules",
        "--dir",
        c.to_str().unwrap(),
        "--from",
        "2099-01-01",
        "--retail",
        "320000",
    ]));
    assert!(changed.contains("Signed version 2") && changed.contains("2099-01-01T00:00:00.000Z"), "{changed}");
    std::fs::copy(c.join("community.toml"), &file).unwrap();
    let out = ok(peerwatt(&["community", "check", "--config", config.to_str().unwrap()]));
    assert!(
        out.contains("rules: version 1 in force, signed by the admin; version 2 takes effect at 2099-01-01"),
        "{out}"
    );
    let past = peerwatt(&["community", "rules", "--dir", c.to_str().unwrap(), "--from", "2020-01-01", "--retail", "1"]);
    assert_eq!(past.status.code(), Some(2), "{}", stderr(&past));
}

#[test]
fn a_missing_certificate_could_not_be_checked_and_exits_2() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, config) = admitted(tmp.path(), &[]);
    std::fs::remove_file(tmp.path().join("node").join("membership.cert")).unwrap();
    let out = peerwatt(&["community", "check", "--config", config.to_str().unwrap()]);
    // 2: could not run (nothing was checked); 1 is kept for "checked and found bad".
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("membership.cert"), "{}", stderr(&out));
}
