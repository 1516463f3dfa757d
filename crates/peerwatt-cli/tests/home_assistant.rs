//! Home Assistant against a real `peerwatt run`: the node's device appears (configs, state,
//! `online`), goes unavailable through its MQTT last will when the process is killed, and
//! `peerwatt ha remove` clears everything it left on the broker.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test panics to fail

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use peerwatt_testkit::households::Neighbourhood;
use peerwatt_testkit::wait;
use rumqttc::{Client, Event, MqttOptions, Packet, QoS};

type Seen = Arc<Mutex<BTreeMap<String, Vec<u8>>>>;

/// A subscriber to everything peerwatt and Home Assistant publish, keeping the latest message
/// of each topic.
fn listen(port: u16, name: &str) -> (Client, Seen) {
    let options = MqttOptions::new(format!("{name}-{}", std::process::id()), "127.0.0.1", port);
    let (client, mut connection) = Client::new(options, 64);
    client.subscribe("homeassistant/#", QoS::AtLeastOnce).unwrap();
    client.subscribe("peerwatt/#", QoS::AtLeastOnce).unwrap();
    let seen: Seen = Arc::default();
    let kept = seen.clone();
    std::thread::spawn(move || {
        for event in connection.iter() {
            match event {
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    kept.lock().unwrap().insert(p.topic.clone(), p.payload.to_vec());
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
    });
    (client, seen)
}

fn is(seen: &Seen, topic: &str, payload: &[u8]) -> bool {
    seen.lock().unwrap().get(topic).is_some_and(|p| p == payload)
}

#[test]
fn a_killed_node_goes_unavailable_and_ha_remove_clears_its_device() {
    let mut street = Neighbourhood::new(env!("CARGO_BIN_EXE_peerwatt"), &[500]);
    let port = street.broker.port();
    let house = &mut street.households[0];
    let config = house.dir.join("node.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str("\n[home_assistant]\nstate_every_ms = 300\n");
    std::fs::write(&config, text).unwrap();

    let (_client, seen) = listen(port, "ha");
    house.start();
    let configs =
        |s: &Seen| s.lock().unwrap().keys().filter(|t| t.starts_with("homeassistant/sensor/house-0/")).count();
    wait::until("the device's configs and online", Duration::from_secs(30), || {
        configs(&seen) >= 12 && is(&seen, "peerwatt/house-0/availability", b"online")
    });
    let state = seen.lock().unwrap()["peerwatt/house-0/state"].clone();
    let state: serde_json::Value = serde_json::from_slice(&state).unwrap();
    assert_eq!(state["peer_id"].as_str(), Some(house.id.as_str()));

    // Killed: no goodbye from the node, the broker says it (the last will).
    house.kill_9();
    wait::until("offline through the last will", Duration::from_secs(30), || {
        is(&seen, "peerwatt/house-0/availability", b"offline")
    });

    let dir = house.dir.to_str().unwrap().to_owned();
    let out = street.cli(&["ha", "remove", "--data-dir", &dir]);
    assert!(out.contains("cleared 12 discovery configs"), "{out}");
    // A new subscriber gets every retained message before one published after it subscribed.
    let (later, left) = listen(port, "later");
    later.publish("peerwatt/marker", QoS::AtLeastOnce, false, "m").unwrap();
    wait::until("the marker", Duration::from_secs(10), || left.lock().unwrap().contains_key("peerwatt/marker"));
    let retained: Vec<String> = left
        .lock()
        .unwrap()
        .iter()
        .filter(|(t, p)| *t != "peerwatt/marker" && !p.is_empty())
        .map(|(t, _)| t.clone())
        .collect();
    assert!(retained.is_empty(), "still retained: {retained:?}");
}
