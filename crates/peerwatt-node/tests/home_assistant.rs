//! Home Assistant discovery on a real mosquitto: a node with `[home_assistant]` publishes
//! retained configs that pass Home Assistant's rules (docs/interfaces.md "Home Assistant"),
//! its state (the JSON of `GET /api/v1/state`) and availability; it publishes again when Home
//! Assistant comes online, says `offline` when it stops, and `remove` clears what it left.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test panics to fail

use std::sync::Arc;
use std::time::Duration;

use peerwatt_core::{Clock, SystemClock};
use peerwatt_meter::{Format, MeterConfig, RoleConfig};
use peerwatt_node::config::ApiSection;
use peerwatt_node::home_assistant::{self, Device, HomeAssistantSection};
use peerwatt_testkit::mqtt::{self, Watcher};
use peerwatt_testkit::{Mosquitto, community_of};
use serde_json::Value;

/// Waits, off the runtime's threads, until `done` holds for what `watcher` saw.
async fn until(watcher: &Arc<Watcher>, what: &'static str, done: impl Fn(&Watcher) -> bool + Send + 'static) {
    let w = watcher.clone();
    tokio::task::spawn_blocking(move || w.wait_until(what, Duration::from_secs(15), done)).await.unwrap();
}

fn json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(bytes)))
}

/// Home Assistant's rules for one sensor config (docs/interfaces.md lists them, after Home
/// Assistant's sensor and MQTT integrations); what breaks them.
fn rule_breaks(topic: &str, c: &Value) -> Vec<String> {
    let mut broken = Vec::new();
    let mut rule = |ok: bool, what: &str| {
        if !ok {
            broken.push(format!("{topic}: {what}"));
        }
    };
    let id_ok = |s: &str| !s.is_empty() && s.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == '-');
    let parts: Vec<&str> = topic.split('/').collect();
    rule(
        parts.len() == 5 && parts[1] == "sensor" && parts[4] == "config",
        "topic is <prefix>/sensor/<node>/<object>/config",
    );
    rule(parts.len() == 5 && id_ok(parts[2]) && id_ok(parts[3]), "node and object ids are [a-zA-Z0-9_-]");
    let text = |k: &str| c[k].as_str().unwrap_or("");
    rule(!text("unique_id").is_empty(), "unique_id is set");
    rule(!text("state_topic").is_empty(), "state_topic is set");
    rule(c["device"]["identifiers"].as_array().is_some_and(|ids| !ids.is_empty()), "device has identifiers");
    rule(!text("availability_topic").is_empty(), "availability_topic is set");
    rule(c.get("availability").is_none(), "availability and availability_topic are not both set");
    rule(c.get("origin").is_none_or(|o| o["name"].is_string()), "origin has a name");
    rule(c.get("object_id").is_none(), "no deprecated object_id");
    rule(text("entity_category") != "config", "a sensor's entity_category is never config");
    let (class, state_class, unit) = (text("device_class"), text("state_class"), c["unit_of_measurement"].as_str());
    match class {
        "energy" => {
            rule(matches!(unit, Some("Wh" | "kWh" | "MWh")), "energy in Wh, kWh or MWh");
            rule(matches!(state_class, "total" | "total_increasing"), "energy is total or total_increasing");
        }
        "power" => {
            rule(matches!(unit, Some("W" | "kW")), "power in W or kW");
            rule(state_class == "measurement", "power is a measurement");
        }
        "monetary" => {
            rule(
                unit.is_some_and(|u| u.len() == 3 && u.chars().all(|ch| ch.is_ascii_uppercase())),
                "money in an ISO 4217 code",
            );
            rule(matches!(state_class, "" | "total"), "money is total");
        }
        "enum" => {
            rule(c["options"].as_array().is_some_and(|o| !o.is_empty()), "an enum has options");
            rule(unit.is_none() && state_class.is_empty(), "an enum has no unit or state class");
        }
        "" => {
            rule(c.get("options").is_none(), "options only with device_class enum");
            if let Some(u) = unit {
                // The Energy dashboard's price entity: currency per kWh.
                rule(u.ends_with("/kWh") && u.len() == 7, "a unit without a device class is a price per kWh");
            }
            rule(matches!(state_class, "" | "measurement"), "a count or price is a measurement");
        }
        other => rule(false, &format!("unexpected device_class {other}")),
    }
    broken
}

/// The state's value at `value_json.a.b` of a plain template (`{{ value_json.a.b }}`, maybe
/// scaled), if the template is one.
fn template_path(template: &str) -> Option<Vec<String>> {
    let start = template.find("value_json.")? + "value_json.".len();
    let rest = &template[start..];
    let end = rest.find(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '_' || ch == '.')).unwrap_or(rest.len());
    Some(rest[..end].split('.').map(str::to_owned).collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_configs_pass_home_assistants_rules_and_state_mirrors_the_api() {
    let broker = Mosquitto::start().expect("mosquitto (scripts/test installs it)");
    let dir = tempfile::tempdir().unwrap();
    let (_community, configs) = community_of(dir.path(), 1).unwrap();
    let mut cfg = configs[0].clone();
    let mut meter: MeterConfig = toml::from_str("").unwrap();
    meter.port = broker.port();
    meter.client_id = Some(format!("ha-test-{}", std::process::id()));
    meter.grid = Some(RoleConfig::new(Format::Tasmota, vec!["tele/meter/SENSOR".into()]));
    cfg.meter = Some(meter.clone());
    let section = HomeAssistantSection { node_id: Some("house_1".into()), state_every_ms: 200, ..Default::default() };
    cfg.home_assistant = Some(section.clone());
    cfg.api = Some(ApiSection { listen: "127.0.0.1:0".into(), ..ApiSection::default() });

    let ha = Arc::new(Watcher::connect(broker.port(), "ha", &["homeassistant/#", "peerwatt/#"]));
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let node = peerwatt_node::start(&cfg, clock).await.unwrap();
    let peer_id = node.peer_id().to_owned();

    // A grid reading, so the state has a power to show.
    ha.publish("tele/meter/SENSOR", br#"{"ENERGY":{"Total":1234.5,"Power":-730}}"#, false);
    until(&ha, "configs, online and a state with the reading", |w| {
        w.all().keys().filter(|t| t.starts_with("homeassistant/")).count() >= 12
            && w.is("peerwatt/house_1/availability", b"online")
            && w.latest("peerwatt/house_1/state").is_some_and(|st| json(&st)["power"]["grid_w"] == -730)
    })
    .await;

    // Every config passes Home Assistant's rules; unique ids are unique.
    let configs: Vec<(String, Value)> =
        ha.all().into_iter().filter(|(t, _)| t.starts_with("homeassistant/")).map(|(t, p)| (t, json(&p))).collect();
    let broken: Vec<String> = configs.iter().flat_map(|(t, c)| rule_breaks(t, c)).collect();
    assert!(broken.is_empty(), "{broken:#?}");
    let mut ids: Vec<&str> = configs.iter().map(|(_, c)| c["unique_id"].as_str().unwrap()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), configs.len(), "unique ids repeat");
    // The Energy dashboard's sensors are there.
    let class_of = |key: &str| {
        let (_, c) = configs.iter().find(|(t, _)| t.ends_with(&format!("/{key}/config"))).unwrap();
        (c["device_class"].as_str().unwrap_or("").to_owned(), c["state_class"].as_str().unwrap_or("").to_owned())
    };
    assert_eq!(class_of("energy_bought"), ("energy".into(), "total".into()));
    assert_eq!(class_of("energy_sold"), ("energy".into(), "total".into()));
    assert_eq!(class_of("energy_shared_in"), ("energy".into(), "total".into()));
    assert_eq!(class_of("savings"), ("monetary".into(), "total".into()));
    assert_eq!(class_of("market"), ("enum".into(), String::new()));

    // The state is `GET /state`'s JSON, and every template's path is in it.
    let state = json(&ha.latest("peerwatt/house_1/state").unwrap());
    assert_eq!(state["peer_id"].as_str(), Some(peer_id.as_str()));
    let addr = node.api_address().unwrap();
    let api = tokio::task::spawn_blocking(move || peerwatt_testkit::http::get(addr, "/api/v1/state")).await.unwrap();
    let api = api.json();
    let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(&state), keys(&api), "the MQTT state has the API's fields");
    for (topic, c) in &configs {
        for field in ["value_template", "json_attributes_template"] {
            let Some(path) = c[field].as_str().and_then(template_path) else { continue };
            let value = path.iter().fold(&state, |v, key| &v[key.as_str()]);
            assert!(!value.is_null(), "{topic}: {field} reads value_json.{} which the state lacks", path.join("."));
        }
    }

    // Home Assistant restarting (its birth message) gets the configs again.
    let savings = "homeassistant/sensor/house_1/savings/config";
    let before = ha.count(savings);
    ha.publish("homeassistant/status", b"online", false);
    until(&ha, "configs published again", move |w| w.count(savings) > before).await;

    // Stopping says offline (retained: a later Home Assistant sees the node gone).
    node.shutdown().await;
    until(&ha, "offline", |w| w.is("peerwatt/house_1/availability", b"offline")).await;
    assert_eq!(json(&ha.latest("peerwatt/house_1/state").unwrap())["running"], false);

    // Removing clears every retained config, the state and the availability.
    let device = Device {
        node_id: "house_1".into(),
        name: cfg.node.name.clone(),
        public_id: peer_id.clone(),
        version: String::new(),
    };
    let cleared = home_assistant::remove(&meter, &section, &device).await.unwrap();
    assert!(cleared.len() >= 14, "{cleared:?}");
    let port = broker.port();
    let left =
        tokio::task::spawn_blocking(move || mqtt::retained(port, &["homeassistant/#", "peerwatt/#"])).await.unwrap();
    assert!(left.is_empty(), "retained after remove: {left:?}");
}
