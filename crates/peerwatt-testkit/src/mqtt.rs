//! An MQTT subscriber for tests: keeps the latest message of every topic it sees (and how many
//! came), and finds what a broker still retains.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rumqttc::{Client, Event, MqttOptions, Packet, QoS};

use crate::wait;

type Seen = Arc<Mutex<BTreeMap<String, (Vec<u8>, usize)>>>;

/// A subscriber on its own thread.
pub struct Watcher {
    client: Client,
    seen: Seen,
}

impl Watcher {
    /// Subscribes to `filters` on the broker at 127.0.0.1:`port` as client `name`.
    pub fn connect(port: u16, name: &str, filters: &[&str]) -> Watcher {
        let mut options = MqttOptions::new(format!("{name}-{}", std::process::id()), "127.0.0.1", port);
        options.set_max_packet_size(1 << 22, 1 << 22);
        let (client, mut connection) = Client::new(options, 64);
        for f in filters {
            client.subscribe(*f, QoS::AtLeastOnce).unwrap();
        }
        let seen: Seen = Arc::default();
        let kept = seen.clone();
        std::thread::spawn(move || {
            for event in connection.iter() {
                match event {
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let mut seen = kept.lock().unwrap();
                        let entry = seen.entry(p.topic.clone()).or_default();
                        *entry = (p.payload.to_vec(), entry.1 + 1);
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
        });
        Watcher { client, seen }
    }

    /// The latest payload on `topic`.
    pub fn latest(&self, topic: &str) -> Option<Vec<u8>> {
        self.seen.lock().unwrap().get(topic).map(|(p, _)| p.clone())
    }

    /// Whether the latest payload on `topic` is `payload`.
    pub fn is(&self, topic: &str, payload: &[u8]) -> bool {
        self.latest(topic).is_some_and(|p| p == payload)
    }

    /// How many messages came on `topic`.
    pub fn count(&self, topic: &str) -> usize {
        self.seen.lock().unwrap().get(topic).map_or(0, |(_, n)| *n)
    }

    /// Every topic seen, with its latest payload.
    pub fn all(&self) -> BTreeMap<String, Vec<u8>> {
        self.seen.lock().unwrap().iter().map(|(t, (p, _))| (t.clone(), p.clone())).collect()
    }

    /// Publishes `payload` on `topic` (at least once).
    pub fn publish(&self, topic: &str, payload: &[u8], retain: bool) {
        self.client.publish(topic, QoS::AtLeastOnce, retain, payload.to_vec()).unwrap();
    }

    /// Waits (up to `within`) until `done` holds.
    pub fn wait_until(&self, what: &str, within: Duration, done: impl Fn(&Watcher) -> bool) {
        wait::until(what, within, || done(self));
    }
}

/// The topics under `filters` that the broker still retains a message for: a new subscriber
/// gets every retained message before a marker it publishes after subscribing.
pub fn retained(port: u16, filters: &[&str]) -> Vec<String> {
    let marker = "peerwatt-testkit/marker";
    let mut all = filters.to_vec();
    all.push(marker);
    let watcher = Watcher::connect(port, "retained", &all);
    watcher.publish(marker, b"m", false);
    watcher.wait_until("the marker", Duration::from_secs(10), |w| w.latest(marker).is_some());
    watcher.all().into_iter().filter(|(t, p)| t != marker && !p.is_empty()).map(|(t, _)| t).collect()
}
