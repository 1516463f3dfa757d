//! Home Assistant against a real `peerwatt run`: the node's device appears (configs, state,
//! `online`), goes unavailable through its MQTT last will when the process is killed, and
//! `peerwatt ha remove` clears everything it left on the broker.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test panics to fail

use std::time::Duration;

use peerwatt_testkit::households::Neighbourhood;
use peerwatt_testkit::mqtt::{self, Watcher};

#[test]
fn a_killed_node_goes_unavailable_and_ha_remove_clears_its_device() {
    let mut street = Neighbourhood::new(env!("CARGO_BIN_EXE_peerwatt"), &[500]);
    let port = street.broker.port();
    let house = &mut street.households[0];
    let config = house.dir.join("node.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str("\n[home_assistant]\nstate_every_ms = 300\n");
    std::fs::write(&config, text).unwrap();

    let ha = Watcher::connect(port, "ha", &["homeassistant/#", "peerwatt/#"]);
    house.start();
    let configs = |w: &Watcher| w.all().keys().filter(|t| t.starts_with("homeassistant/sensor/house-0/")).count();
    ha.wait_until("the device's configs, online and its state", Duration::from_secs(30), |w| {
        configs(w) >= 12
            && w.is("peerwatt/house-0/availability", b"online")
            && w.latest("peerwatt/house-0/state").is_some()
    });
    let state: serde_json::Value = serde_json::from_slice(&ha.latest("peerwatt/house-0/state").unwrap()).unwrap();
    assert_eq!(state["peer_id"].as_str(), Some(house.id.as_str()));

    // Killed: no goodbye from the node, the broker says it (the last will).
    house.kill_9();
    ha.wait_until("offline through the last will", Duration::from_secs(30), |w| {
        w.is("peerwatt/house-0/availability", b"offline")
    });

    let dir = house.dir.to_str().unwrap().to_owned();
    let out = street.cli(&["ha", "remove", "--data-dir", &dir]);
    assert!(out.contains("cleared 12 discovery configs"), "{out}");
    let left = mqtt::retained(port, &["homeassistant/#", "peerwatt/#"]);
    assert!(left.is_empty(), "still retained: {left:?}");
}
