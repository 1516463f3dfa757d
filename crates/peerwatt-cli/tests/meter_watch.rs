//! `peerwatt meter watch` end to end: a real mosquitto, the real binary, real output.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test panics to fail

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use peerwatt_meter::{Format, MeterConfig, RoleConfig};
use peerwatt_testkit::Mosquitto;
use peerwatt_testkit::wait::Lines;
use rumqttc::{Client, MqttOptions, QoS};

/// A node.toml with a meter section pointing at `port`.
fn node_toml(dir: &std::path::Path, port: u16, grid: RoleConfig) -> std::path::PathBuf {
    let path = dir.join("node.toml");
    let mut meter = MeterConfig::new("127.0.0.1", port);
    meter.reconnect_min_ms = 50;
    meter.reconnect_max_ms = 500;
    meter.grid = Some(grid);
    peerwatt_node::NodeConfig::builder("test").meter(meter).build().save(&path).unwrap();
    path
}

/// The binary's stdout, line by line, with a deadline.
struct Watch {
    child: Child,
    lines: Lines,
}

impl Watch {
    fn spawn(args: &[&str]) -> Watch {
        let mut child = Command::new(env!("CARGO_BIN_EXE_peerwatt"))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let lines = Lines::of(child.stdout.take().unwrap());
        Watch { child, lines }
    }

    /// Waits for a line starting with `prefix`; returns it.
    fn expect(&mut self, prefix: &str) -> String {
        self.lines.wait_for(&format!("starting with {prefix:?}"), Duration::from_secs(20), |l| l.starts_with(prefix))
    }

    fn wait(mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "peerwatt did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

/// Publishes like a meter firmware (a real MQTT client).
fn publish(port: u16, messages: &[(&str, &str)]) {
    publish_as("fake-meter", port, messages);
}

/// A Tasmota SML meter's three messages: a reading, one with a NaN counter, a reading 10 Wh on.
const SML_MESSAGES: [(&str, &str); 3] = [
    ("tele/meter/SENSOR", r#"{"Time":"t","SML":{"Total_in":34507.4761,"Total_out":14737.1422,"Power_curr":-894}}"#),
    ("tele/meter/SENSOR", r#"{"Time":"t","SML":{"Total_in":"NaN","Total_out":1,"Power_curr":1}}"#),
    ("tele/meter/SENSOR", r#"{"Time":"t","SML":{"Total_in":34507.4861,"Total_out":14737.1422,"Power_curr":-880}}"#),
];

#[test]
fn watch_prints_readings_refusals_and_running_totals() {
    let broker = Mosquitto::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config =
        node_toml(dir.path(), broker.port(), RoleConfig::new(Format::Tasmota, vec!["tele/meter/SENSOR".into()]));
    let mut watch = Watch::spawn(&["meter", "watch", "--config", config.to_str().unwrap(), "--count", "3"]);
    assert!(watch.expect("watching").contains("grid: tasmota on tele/meter/SENSOR"));
    watch.expect("connected");
    publish(broker.port(), &SML_MESSAGES);
    let first = watch.expect("reading");
    assert!(first.contains("grid power=-894 W import=34507476 Wh export=14737142 Wh"), "{first}");
    let refused = watch.expect("rejected");
    assert!(refused.contains("not_finite: Total_in is NaN"), "{refused}");
    let second = watch.expect("reading");
    assert!(second.contains("power=-880 W import=34507486 Wh"), "{second}");
    let running = watch.expect("running");
    assert!(running.contains("imported 10 Wh, exported 0 Wh"), "{running}");
    let summary = watch.expect("summary");
    assert_eq!(summary, "summary: 3 messages, 2 readings accepted, refused: not_finite 1");
    assert!(watch.wait().success());
    assert!(dir.path().join("node.toml").exists());
}

#[test]
fn detect_names_the_recognised_format() {
    let broker = Mosquitto::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = node_toml(dir.path(), broker.port(), RoleConfig::new(Format::Auto, vec!["dsmr/json".into()]));
    let mut watch = Watch::spawn(&["meter", "watch", "--config", config.to_str().unwrap(), "--detect"]);
    watch.expect("connected");
    let telegram = r#"{"electricity_delivered_1":1.0,"electricity_delivered_2":2.0,"electricity_returned_1":0,"electricity_returned_2":0,"electricity_currently_delivered":0.1,"electricity_currently_returned":0}"#;
    publish(broker.port(), &[("dsmr/json", telegram)]);
    assert_eq!(watch.expect("detected"), "detected grid: dsmr-reader (from dsmr/json)");
    assert!(watch.wait().success());
}

/// Runs `peerwatt meter watch --config <path>` to completion.
fn watch_once(path: &std::path::Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_peerwatt"))
        .args(["meter", "watch", "--config", path.to_str().unwrap()])
        .output()
        .unwrap()
}

#[test]
fn a_config_without_a_meter_fails_with_a_hint() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.toml");
    std::fs::write(&path, "[node]\nname = \"x\"\n").unwrap();
    let out = watch_once(&path);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("error: ") && err.contains("no [meter] section") && err.contains("hint: "), "{err}");

    std::fs::write(&path, "[node]\nname = \"x\"\n[meter]\nhots = \"typo\"\n").unwrap();
    let out = watch_once(&path);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("unknown field `hots`"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A PV meter alone: the grid meter is required, as docs/meters.md says.
    let mut meter = MeterConfig::new("127.0.0.1", 1883);
    meter.pv = Some(RoleConfig::new(Format::Opendtu, vec!["solar/ac/power".into()]));
    peerwatt_node::NodeConfig::builder("pv-only").meter(meter).build().save(&path).unwrap();
    let out = watch_once(&path);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no [meter.grid]: the meter at the grid connection is required"), "{err}");
}

#[test]
fn watch_json_prints_one_object_per_line() {
    let broker = Mosquitto::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config =
        node_toml(dir.path(), broker.port(), RoleConfig::new(Format::Tasmota, vec!["tele/meter/SENSOR".into()]));
    let watch = Watch::spawn(&["meter", "watch", "--config", config.to_str().unwrap(), "--count", "3", "--json"]);
    // Every line is one JSON object; waits for the next one `pick` accepts.
    let next = |what: &str, pick: &dyn Fn(&serde_json::Value) -> bool| -> serde_json::Value {
        let line = watch.lines.wait_for(what, Duration::from_secs(20), |l| {
            serde_json::from_str::<serde_json::Value>(l).is_ok_and(|v| pick(&v))
        });
        serde_json::from_str(&line).unwrap()
    };
    let of_type = |t: &'static str| move |v: &serde_json::Value| v["type"] == t;
    assert_eq!(
        next("connected", &of_type("connection")),
        serde_json::json!({"type": "connection", "state": "connected"})
    );
    publish(broker.port(), &SML_MESSAGES);
    let reading = next("a reading", &of_type("reading"));
    assert_eq!((reading["topic"].as_str(), reading["format"].as_str()), (Some("tele/meter/SENSOR"), Some("tasmota")));
    let r = &reading["reading"];
    assert_eq!((r["role"].as_str(), r["grid_power"].as_i64()), (Some("grid"), Some(-894)), "{reading}");
    assert_eq!(
        (r["import_total"].as_i64(), r["export_total"].as_i64()),
        (Some(34_507_476), Some(14_737_142)),
        "{reading}"
    );
    let refusal = next("a refusal", &of_type("refusal"));
    assert_eq!((refusal["reason"].as_str(), refusal["detail"].as_str()), (Some("not_finite"), Some("Total_in is NaN")));
    let running = next("the running totals after the second reading", &|v| {
        v["type"] == "running" && v["totals"]["imported"] == 10
    });
    assert_eq!(running["totals"]["exported"], 0);
    let summary = next("the summary", &of_type("summary"));
    assert_eq!(
        summary,
        serde_json::json!({"type": "summary", "messages": 3, "accepted": 2, "refused": {"not_finite": 1}})
    );
    assert!(watch.wait().success());
}

#[test]
fn detect_tells_an_unreachable_broker_from_a_quiet_one() {
    let dir = tempfile::tempdir().unwrap();
    let nobody = peerwatt_net::free_port().unwrap();
    let config = node_toml(dir.path(), nobody, RoleConfig::new(Format::Auto, vec!["tele/meter/SENSOR".into()]));
    let args = ["meter", "watch", "--config", config.to_str().unwrap(), "--detect", "--timeout", "2"];
    let out = Command::new(env!("CARGO_BIN_EXE_peerwatt")).args(args).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("cannot reach the broker at 127.0.0.1:{nobody}")), "{err}");
    assert_eq!(err.lines().filter(|l| l.starts_with("error:")).count(), 1, "said once: {err}");

    let broker = Mosquitto::start().unwrap();
    let quiet = tempfile::tempdir().unwrap();
    let config =
        node_toml(quiet.path(), broker.port(), RoleConfig::new(Format::Auto, vec!["tele/meter/SENSOR".into()]));
    let args = ["meter", "watch", "--config", config.to_str().unwrap(), "--detect", "--timeout", "2"];
    let out = Command::new(env!("CARGO_BIN_EXE_peerwatt")).args(args).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "connected to the broker at 127.0.0.1:{}, but no message arrived on the configured topics within 2 s",
            broker.port()
        )),
        "{err}"
    );
}

/// One corpus file's topic and payload, and the reading it completes (W, Wh, Wh).
fn corpus_message(name: &str) -> (String, String, [Option<i64>; 3]) {
    let path = format!("{}/../peerwatt-meter/tests/corpus/{name}.toml", env!("CARGO_MANIFEST_DIR"));
    let file: toml::Table = toml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let int = |k: &str| file.get(k).and_then(toml::Value::as_integer);
    let text = |k: &str| file[k].as_str().unwrap().to_owned();
    (text("topic"), text("payload"), [int("power_w"), int("energy_in_wh"), int("energy_out_wh")])
}

/// A family's meter, and corpus messages whose last completes a reading.
struct Family {
    meter: MeterConfig,
    messages: &'static [&'static str],
}

fn families(port: u16) -> Vec<(&'static str, Family)> {
    let grid = |format: Format, topics: &[&str], extra: &str| -> MeterConfig {
        let mut meter = MeterConfig::new("127.0.0.1", port);
        let mut role: toml::Table = toml::from_str(extra).unwrap();
        role.insert("format".into(), format.name().into());
        role.insert("topics".into(), topics.iter().map(|t| toml::Value::from(*t)).collect::<Vec<_>>().into());
        meter.grid = Some(role.try_into().unwrap());
        meter
    };
    let mut opendtu = grid(Format::Tasmota, &["tele/unused/SENSOR"], "");
    opendtu.pv = Some(RoleConfig::new(Format::Opendtu, vec!["solar/ac/#".into()]));
    vec![
        (
            "tasmota",
            Family {
                meter: grid(Format::Tasmota, &["tele/Zaehler/SENSOR"], ""),
                messages: &["tasmota-12-modbus-3phase-import-export"],
            },
        ),
        (
            "shelly",
            Family {
                meter: grid(Format::ShellyGen2, &["aiida/+/events/rpc"], ""),
                messages: &["shelly-01-pro3em-notifystatus-em0", "shelly-02-pro3em-notifystatus-emdata0"],
            },
        ),
        (
            "dsmr",
            Family {
                meter: grid(Format::DsmrReader, &["dsmr/reading/+"], ""),
                messages: &["dsmr-01-split-delivered-1-leading-zeros", "dsmr-02-split-delivered-2-leading-zeros"],
            },
        ),
        (
            "esphome",
            Family {
                meter: grid(Format::Esphome, &["<node>/sensor/+/state"], ""),
                messages: &["esphome-05-dsmr-power-consumed-kw", "esphome-06-dsmr-power-produced-kw"],
            },
        ),
        ("opendtu", Family { meter: opendtu, messages: &["opendtu-01-ac-power-total", "opendtu-02-ac-yieldtotal"] }),
        (
            "zigbee2mqtt",
            Family {
                meter: grid(Format::Zigbee2mqtt, &["zigbee2mqtt/+"], ""),
                messages: &["zigbee2mqtt-08-3phase-din-produced-energy"],
            },
        ),
        (
            "json",
            Family {
                meter: grid(
                    Format::Json,
                    &["dsmr/el"],
                    "json = { power = \"/p_consumed\", power_export = \"/p_generated\", import = \"/el_consumed\", export = \"/el_returned\" }",
                ),
                messages: &["json-03-dsmr2mqtt-el-wh"],
            },
        ),
    ]
}

/// Runs `meter watch --json --count N` for one family's messages; returns its JSON lines up
/// to the summary.
fn watch_family(port: u16, dir: &std::path::Path, name: &str, family: &Family) -> Vec<serde_json::Value> {
    let path = dir.join(format!("{name}.toml"));
    peerwatt_node::NodeConfig::builder(name).meter(family.meter.clone()).build().save(&path).unwrap();
    let count = family.messages.len().to_string();
    let watch = Watch::spawn(&["meter", "watch", "--config", path.to_str().unwrap(), "--json", "--count", &count]);
    let is_json = |l: &str| serde_json::from_str::<serde_json::Value>(l).is_ok();
    watch.lines.wait_for("connected", Duration::from_secs(20), |l| is_json(l) && l.contains("\"connected\""));
    let messages: Vec<_> = family.messages.iter().map(|m| corpus_message(m)).collect();
    let pairs: Vec<(&str, &str)> = messages.iter().map(|(t, p, _)| (t.as_str(), p.as_str())).collect();
    publish_as(&format!("fake-{name}"), port, &pairs);
    let mut lines = Vec::new();
    loop {
        let line = watch.lines.wait_for(&format!("{name}: the next JSON line"), Duration::from_secs(20), is_json);
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        let done = v["type"] == "summary";
        lines.push(v);
        if done {
            break;
        }
    }
    assert!(watch.wait().success(), "{name}");
    lines
}

/// Publishes as `client_id`, so several fake meters can publish at once.
fn publish_as(client_id: &str, port: u16, messages: &[(&str, &str)]) {
    let (client, mut connection) = Client::new(MqttOptions::new(client_id, "127.0.0.1", port), 10);
    for (topic, payload) in messages {
        client.publish(*topic, QoS::AtLeastOnce, false, payload.as_bytes().to_vec()).unwrap();
    }
    client.disconnect().unwrap();
    for event in connection.iter() {
        if event.is_err() {
            break;
        }
    }
}

#[test]
fn watch_json_reads_a_real_payload_of_every_family_over_mosquitto() {
    let broker = Mosquitto::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let port = broker.port();
    let results: Vec<_> = std::thread::scope(|s| {
        let runs: Vec<_> = families(port)
            .into_iter()
            .map(|(name, family)| {
                let dir = dir.path();
                s.spawn(move || (name, family.messages, watch_family(port, dir, name, &family)))
            })
            .collect();
        runs.into_iter().map(|r| r.join().unwrap()).collect()
    });
    assert_eq!(results.len(), 7, "every family");
    for (name, messages, lines) in results {
        let summary = lines.last().unwrap();
        let n = messages.len() as u64;
        // A register of a split-topic meter is accepted as `partial` until its companion arrives.
        let partial = lines.iter().filter(|l| l["type"] == "partial").count() as u64;
        assert_eq!(
            (
                summary["messages"].as_u64(),
                summary["accepted"].as_u64(),
                summary["refused"].as_object().map(|o| o.len())
            ),
            (Some(n), Some(n - partial), Some(0)),
            "{name}: {summary}"
        );
        let reading =
            lines.iter().rev().find(|l| l["type"] == "reading").unwrap_or_else(|| panic!("{name}: no reading"));
        let (topic, _, [power, energy_in, energy_out]) = corpus_message(messages[messages.len() - 1]);
        assert_eq!(reading["topic"].as_str(), Some(topic.as_str()), "{name}");
        let r = &reading["reading"];
        let got = if r["role"] == "pv" {
            [r["pv_power"].as_i64(), r["pv_yield_total"].as_i64(), None]
        } else {
            [r["grid_power"].as_i64(), r["import_total"].as_i64(), r["export_total"].as_i64()]
        };
        // The last message completes what it carries; the earlier ones may have carried the rest.
        for (i, (want, got)) in [power, energy_in, energy_out].into_iter().zip(got).enumerate() {
            if want.is_some() {
                assert_eq!(got, want, "{name}: field {i} of {reading}");
            }
        }
    }
}

#[test]
fn scan_finds_the_meters_on_a_broker_without_settings_and_prints_their_sections() {
    let broker = Mosquitto::start().unwrap();
    let port = broker.port();
    // What a home broker holds (retained, as firmwares publish their state): a Tasmota meter,
    // OpenDTU's totals, DSMR-reader's split topics, a last will and a thermostat.
    let names = [
        "tasmota-12-modbus-3phase-import-export",
        "opendtu-01-ac-power-total",
        "opendtu-02-ac-yieldtotal",
        "dsmr-01-split-delivered-1-leading-zeros",
        "dsmr-02-split-delivered-2-leading-zeros",
    ];
    let mut messages: Vec<(String, String)> = names.iter().map(|n| corpus_message(n)).map(|(t, p, _)| (t, p)).collect();
    messages.push(("tele/Zaehler/LWT".into(), "Online".into()));
    messages.push(("home/livingroom/temperature".into(), "21.5".into()));
    let (client, mut connection) = Client::new(MqttOptions::new("retained-home", "127.0.0.1", port), 10);
    for (topic, payload) in &messages {
        client.publish(topic.as_str(), QoS::AtLeastOnce, true, payload.as_bytes().to_vec()).unwrap();
    }
    client.disconnect().unwrap();
    for event in connection.iter() {
        if event.is_err() {
            break;
        }
    }
    let count = messages.len().to_string();
    let port_arg = port.to_string();
    let args = ["meter", "scan", "--port", &port_arg, "--count", &count, "--timeout", "20", "--json"];
    let out = Command::new(env!("CARGO_BIN_EXE_peerwatt")).args(args).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<serde_json::Value> =
        String::from_utf8_lossy(&out.stdout).lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let found = |source: &str| {
        lines
            .iter()
            .find(|l| l["type"] == "found" && l["source"] == source)
            .unwrap_or_else(|| panic!("{source}: {lines:#?}"))
    };
    let tasmota = found("Zaehler");
    assert_eq!(
        tasmota["section"],
        "[meter.grid]\nformat = \"tasmota\"\ntopics = [\"tele/Zaehler/LWT\", \"tele/Zaehler/SENSOR\"]\n",
        "with its last will"
    );
    assert_eq!((tasmota["power"].as_i64(), tasmota["import"].as_i64()), (Some(-215), Some(11_489_575)));
    let dtu = found("solar/ac");
    assert_eq!((dtu["role"].as_str(), dtu["import"].as_i64()), (Some("pv"), Some(13_338)));
    let dsmr = found("dsmr");
    assert_eq!(dsmr["import"].as_i64(), Some(15_030_717), "both tariff registers summed: {dsmr}");
    let summary = lines.last().unwrap();
    assert_eq!(
        (summary["type"].as_str(), summary["found"].as_u64(), summary["messages"].as_u64()),
        (Some("summary"), Some(3), Some(messages.len() as u64)),
        "{summary}"
    );
    // For people: the output docs/meters.md shows, on this broker.
    let args = ["meter", "scan", "--port", &port_arg, "--count", &count, "--timeout", "20"];
    let out = Command::new(env!("CARGO_BIN_EXE_peerwatt")).args(args).output().unwrap();
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/meters.md")).unwrap();
    let start = doc.find("```text\nscanning ").unwrap() + "```text\n".len();
    let shown = &doc[start..start + doc[start..].find("```").unwrap()];
    let shown = shown.replace("192.168.1.10:1883", &format!("127.0.0.1:{port}")).replace("up to 30 s", "up to 20 s");
    assert_eq!(String::from_utf8_lossy(&out.stdout), shown);
    // The section it prints is a configuration that works: `meter watch` reads the meter with it.
    let dir = tempfile::tempdir().unwrap();
    let section = format!("[meter]\nport = {port}\n{}", tasmota["section"].as_str().unwrap());
    let path = dir.path().join("node.toml");
    std::fs::write(&path, format!("[node]\nname = \"scanned\"\n{section}")).unwrap();
    // Two retained messages: the meter's and its last will's.
    let mut watch = Watch::spawn(&["meter", "watch", "--config", path.to_str().unwrap(), "--count", "2"]);
    let reading = watch.expect("reading");
    assert!(reading.contains("grid power=-215 W import=11489575 Wh export=5134481 Wh"), "{reading}");
    assert!(watch.wait().success());
}
