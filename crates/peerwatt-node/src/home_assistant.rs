//! Home Assistant MQTT discovery (`[home_assistant]` in node.toml): on the grid meter's broker,
//! the node publishes retained discovery configs for one device with the sensors Home
//! Assistant's Energy dashboard takes (energy bought, sold and shared, savings and money,
//! the local price, peers, market state), its state on `peerwatt/<node>/state` (the JSON of
//! `GET /api/v1/state`), and `online`/`offline` on `peerwatt/<node>/availability`, `offline`
//! also as its MQTT last will. `peerwatt ha remove` clears the retained configs.
//!
//! [`discovery`] is the sans-IO part (what is published where); [`spawn`] connects and
//! publishes; [`remove`] clears.

use std::sync::Arc;
use std::time::Duration;

use rumqttc::{AsyncClient, Event, EventLoop, LastWill, Packet, QoS};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use peerwatt_meter::{Backoff, MeterConfig};

use crate::status::Status;

/// `[home_assistant]`: Home Assistant discovery on the grid meter's broker.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HomeAssistantSection {
    /// Home Assistant's discovery prefix (its MQTT integration's setting).
    pub discovery_prefix: String,
    /// The ISO 4217 code of the community's currency (money sensors' unit).
    pub currency: String,
    /// The node's id in topics and entity ids (`[a-zA-Z0-9_-]`); default: the node's name,
    /// lower case, other characters as `_`.
    pub node_id: Option<String>,
    /// Publish the state at most this often, milliseconds.
    pub state_every_ms: u64,
}

impl Default for HomeAssistantSection {
    fn default() -> Self {
        HomeAssistantSection {
            discovery_prefix: "homeassistant".into(),
            currency: "EUR".into(),
            node_id: None,
            state_every_ms: 5_000,
        }
    }
}

/// A `[home_assistant]` section that cannot work.
#[derive(Debug, thiserror::Error)]
pub enum HomeAssistantError {
    /// Discovery is published on the meter's broker.
    #[error("[home_assistant] needs a [meter] section: discovery is published on the meter's broker")]
    NoBroker,
    /// Home Assistant ignores discovery topics with other characters.
    #[error("[home_assistant] {what} {value:?}: only letters, digits, '_' and '-' are allowed")]
    BadId {
        /// Which setting.
        what: &'static str,
        /// Its value.
        value: String,
    },
    /// Money sensors need a currency code.
    #[error("[home_assistant] currency {0:?}: an ISO 4217 code of three capital letters, such as EUR")]
    BadCurrency(String),
    /// The broker settings cannot be used.
    #[error("[home_assistant] the meter's broker: {0}")]
    Broker(#[from] peerwatt_meter::ConfigError),
}

/// Who the device is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// The id in topics (`peerwatt/<node_id>/…`) and unique ids.
    pub node_id: String,
    /// The name Home Assistant shows.
    pub name: String,
    /// The node's public id (the device's identifier: stable across renames).
    pub public_id: String,
    /// The software version.
    pub version: String,
}

/// `name` as a node id: lower case, anything but letters, digits, `_` and `-` as `_`.
pub fn node_id_of(name: &str) -> String {
    let id: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c.to_ascii_lowercase() } else { '_' })
        .collect();
    if id.is_empty() { "peerwatt".into() } else { id }
}

fn is_topic_id(id: &str) -> bool {
    !id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

impl HomeAssistantSection {
    /// Checks the section; the node id in force.
    pub fn checked_node_id(&self, node_name: &str) -> Result<String, HomeAssistantError> {
        if !is_topic_id(&self.discovery_prefix) {
            return Err(HomeAssistantError::BadId { what: "discovery_prefix", value: self.discovery_prefix.clone() });
        }
        if !(self.currency.len() == 3 && self.currency.chars().all(|c| c.is_ascii_uppercase())) {
            return Err(HomeAssistantError::BadCurrency(self.currency.clone()));
        }
        let id = self.node_id.clone().unwrap_or_else(|| node_id_of(node_name));
        if !is_topic_id(&id) {
            return Err(HomeAssistantError::BadId { what: "node_id", value: id });
        }
        Ok(id)
    }
}

/// The topic of the node's state.
pub fn state_topic(node_id: &str) -> String {
    format!("peerwatt/{node_id}/state")
}

/// The topic of the node's availability (`online`, `offline`).
pub fn availability_topic(node_id: &str) -> String {
    format!("peerwatt/{node_id}/availability")
}

/// How a sensor's value is read and what it is.
struct Sensor {
    /// The object id (and the unique id's end).
    key: &'static str,
    name: &'static str,
    /// The value: a path into the state, or a template of its own.
    value: Value,
    kind: Kind,
    icon: Option<&'static str>,
}

/// The sensor kinds the node publishes, each with Home Assistant's fitting classes.
enum Kind {
    /// Energy, Wh: `total`, not `total_increasing`: a settlement redone when late statements
    /// arrive moves energy between shared and delivered, so a figure may go down a little.
    Energy,
    /// Money in micro-currency, shown in currency units (`total`: it may go down).
    Money,
    /// Money of the month so far: no state class (it starts again each month; Home Assistant
    /// would take the drop for a loss).
    MonthMoney,
    /// A price in micro-currency per kWh, shown per kWh.
    Price,
    /// A power, W.
    Power,
    /// A count now.
    Count,
    /// One of a few states, with attributes.
    Enum(&'static [&'static str]),
}

/// A path into the state as a Jinja template (`value_json.a.b`).
fn path(p: &str) -> Value {
    Value::String(format!("{{{{ value_json.{p} }}}}"))
}

/// A micro-unit path scaled to whole units (Home Assistant shows decimals; the node keeps
/// integers).
fn micro(p: &str) -> Value {
    Value::String(format!("{{{{ (value_json.{p} / 1000000) | round(6) }}}}"))
}

fn sensors() -> Vec<Sensor> {
    let s = |key, name, value, kind, icon| Sensor { key, name, value, kind, icon };
    vec![
        s(
            "energy_bought",
            "Energy bought locally",
            path("settled.all.delivered_bought_wh"),
            Kind::Energy,
            Some("mdi:home-import-outline"),
        ),
        s(
            "energy_sold",
            "Energy sold locally",
            path("settled.all.delivered_sold_wh"),
            Kind::Energy,
            Some("mdi:home-export-outline"),
        ),
        s(
            "energy_shared_in",
            "Energy shared to the household",
            path("settled.all.shared_import_wh"),
            Kind::Energy,
            Some("mdi:transmission-tower-import"),
        ),
        s(
            "energy_shared_out",
            "Energy shared by the household",
            path("settled.all.shared_export_wh"),
            Kind::Energy,
            Some("mdi:transmission-tower-export"),
        ),
        s(
            "savings",
            "Savings against the grid",
            micro("settled.all.savings"),
            Kind::Money,
            Some("mdi:piggy-bank-outline"),
        ),
        s(
            "savings_month",
            "Savings this month",
            micro("settled.month.savings"),
            Kind::MonthMoney,
            Some("mdi:piggy-bank-outline"),
        ),
        s("local_cost", "Paid for local energy", micro("settled.all.local_cost"), Kind::Money, None),
        s("local_credit", "Paid for energy sold locally", micro("settled.all.local_credit"), Kind::Money, None),
        s(
            "local_price",
            "Local price",
            Value::String(
                // `None` is Home Assistant's "unknown" for a numeric sensor (no trade yet today).
                "{% set t = value_json.trades_today %}{{ ((t | last).price / 1000000) | round(6) if t else 'None' }}"
                    .into(),
            ),
            Kind::Price,
            Some("mdi:cash-sync"),
        ),
        s("grid_power", "Grid power", path("power.grid_w"), Kind::Power, None),
        s(
            "peers",
            "Peers connected",
            Value::String("{{ value_json.peers | length }}".into()),
            Kind::Count,
            Some("mdi:lan-connect"),
        ),
        s(
            "market",
            "Market",
            Value::String("{{ 'trading' if value_json.not_trading | length == 0 else 'not_trading' }}".into()),
            Kind::Enum(&["trading", "not_trading"]),
            Some("mdi:swap-horizontal"),
        ),
    ]
}

/// The discovery configs: `(topic, payload)` for every sensor, to be published retained.
pub fn discovery(device: &Device, section: &HomeAssistantSection) -> Vec<(String, String)> {
    let id = &device.node_id;
    let device_json = json!({
        "identifiers": [format!("peerwatt_{}", device.public_id)],
        "name": device.name,
        "manufacturer": "peerwatt",
        "model": "peer-to-peer energy trading node",
        "sw_version": device.version,
    });
    sensors()
        .into_iter()
        .map(|sensor| {
            let mut config = json!({
                "name": sensor.name,
                // The public id, not the node id: a device renamed keeps its entities' history.
                "unique_id": format!("peerwatt_{}_{}", device.public_id, sensor.key),
                "default_entity_id": format!("sensor.peerwatt_{id}_{}", sensor.key),
                "state_topic": state_topic(id),
                "value_template": sensor.value,
                "availability_topic": availability_topic(id),
                "payload_available": "online",
                "payload_not_available": "offline",
                "device": device_json,
                "origin": {"name": "peerwatt", "sw_version": device.version,
                           "support_url": "https://github.com/peerwatt/peerwatt"},
            });
            let fields = match sensor.kind {
                Kind::Energy => json!({"device_class": "energy", "state_class": "total", "unit_of_measurement": "Wh"}),
                Kind::Money => json!({"device_class": "monetary", "state_class": "total", "unit_of_measurement": section.currency}),
                Kind::MonthMoney => json!({"device_class": "monetary", "unit_of_measurement": section.currency}),
                Kind::Price => json!({"state_class": "measurement", "unit_of_measurement": format!("{}/kWh", section.currency)}),
                Kind::Power => json!({"device_class": "power", "state_class": "measurement", "unit_of_measurement": "W"}),
                Kind::Count => json!({"state_class": "measurement"}),
                Kind::Enum(options) => json!({
                    "device_class": "enum",
                    "options": options,
                    "json_attributes_topic": state_topic(id),
                    "json_attributes_template": "{{ {'reasons': value_json.not_trading, 'summary': value_json.market} | tojson }}",
                }),
            };
            if let (Some(all), Some(extra)) = (config.as_object_mut(), fields.as_object()) {
                all.extend(extra.clone());
                if let Some(icon) = sensor.icon {
                    all.insert("icon".into(), icon.into());
                }
            }
            let topic = format!("{}/sensor/{id}/{}/config", section.discovery_prefix, sensor.key);
            (topic, config.to_string())
        })
        .collect()
}

/// A running publisher.
#[derive(Debug)]
pub struct HomeAssistant {
    task: JoinHandle<()>,
}

impl HomeAssistant {
    /// Waits until the publisher has said `offline` (after the node's shutdown).
    pub async fn stopped(self) {
        let _ = self.task.await;
    }
}

/// Starts publishing: configs and `online` on every connection (and when Home Assistant says
/// it came online), the state as the node reports it, at most every `state_every_ms`; at
/// shutdown the last state and `offline`.
pub fn spawn(
    broker: &MeterConfig,
    section: &HomeAssistantSection,
    device: Device,
    status: watch::Receiver<Option<Arc<Status>>>,
    shutdown: watch::Receiver<bool>,
) -> Result<HomeAssistant, HomeAssistantError> {
    let client_id =
        format!("{}-ha", broker.client_id.clone().unwrap_or_else(|| format!("peerwatt-{}", device.node_id)));
    let mut options = peerwatt_meter::mqtt_options(broker, Some(client_id))?;
    options.set_last_will(LastWill::new(availability_topic(&device.node_id), "offline", QoS::AtLeastOnce, true));
    let (client, eventloop) = AsyncClient::new(options, 64);
    let publisher = Publisher {
        client,
        configs: discovery(&device, section),
        birth_topic: format!("{}/status", section.discovery_prefix),
        state_every: Duration::from_millis(section.state_every_ms.max(100)),
        device,
        backoff: Backoff::new(
            Duration::from_millis(broker.reconnect_min_ms.max(1)),
            Duration::from_millis(broker.reconnect_max_ms.max(1)),
        ),
    };
    Ok(HomeAssistant { task: tokio::spawn(publisher.run(eventloop, status, shutdown)) })
}

struct Publisher {
    client: AsyncClient,
    configs: Vec<(String, String)>,
    birth_topic: String,
    state_every: Duration,
    device: Device,
    backoff: Backoff,
}

impl Publisher {
    async fn run(
        mut self,
        mut eventloop: EventLoop,
        status: watch::Receiver<Option<Arc<Status>>>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut tick = tokio::time::interval(self.state_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut connected = false;
        loop {
            let event = tokio::select! {
                _ = shutdown.changed() => break,
                _ = tick.tick() => {
                    if connected {
                        self.publish_state(&status).await;
                    }
                    continue;
                }
                event = eventloop.poll() => event,
            };
            match event {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    connected = true;
                    self.backoff.reset();
                    self.subscribe_birth().await;
                    self.announce(&status).await;
                }
                // A retained `online` is an old birth, not a restart (and it comes again with
                // every subscription): only a live one means Home Assistant came up.
                Ok(Event::Incoming(Packet::Publish(p)))
                    if p.topic == self.birth_topic && &p.payload[..] == b"online" && !p.retain =>
                {
                    tracing::info!("Home Assistant came online: publishing discovery again");
                    self.announce(&status).await;
                }
                Ok(_) => {}
                Err(e) => {
                    connected = false;
                    let retry_in = self.backoff.step();
                    tracing::warn!(error = %e, ?retry_in, "Home Assistant's MQTT connection down");
                    tokio::select! {
                        _ = shutdown.changed() => break,
                        _ = tokio::time::sleep(retry_in) => {}
                    }
                }
            }
        }
        if connected {
            self.say_goodbye(&status, &mut eventloop).await;
        }
    }

    /// Subscribes to Home Assistant's birth messages, on every connection (rumqttc does not
    /// keep subscriptions across reconnects).
    async fn subscribe_birth(&self) {
        if let Err(e) = self.client.subscribe(&self.birth_topic, QoS::AtMostOnce).await {
            tracing::warn!(error = %e, "cannot subscribe to Home Assistant's status");
        }
    }

    /// Publishes the configs, `online` and the state.
    async fn announce(&self, status: &watch::Receiver<Option<Arc<Status>>>) {
        for (topic, payload) in &self.configs {
            self.publish(topic.clone(), payload.clone().into_bytes()).await;
        }
        self.publish(availability_topic(&self.device.node_id), b"online".to_vec()).await;
        self.publish_state(status).await;
    }

    async fn publish_state(&self, status: &watch::Receiver<Option<Arc<Status>>>) {
        let latest = status.borrow().clone();
        let Some(latest) = latest else { return };
        match serde_json::to_vec(&*latest) {
            Ok(json) => self.publish(state_topic(&self.device.node_id), json).await,
            Err(e) => tracing::warn!(error = %e, "cannot encode the state for Home Assistant"),
        }
    }

    /// Retained, at least once: a restarted Home Assistant finds them on the broker.
    async fn publish(&self, topic: String, payload: Vec<u8>) {
        if let Err(e) = self.client.publish(topic, QoS::AtLeastOnce, true, payload).await {
            tracing::warn!(error = %e, "cannot publish to Home Assistant");
        }
    }

    /// The last state and `offline`, then a clean disconnect (so the broker does not send
    /// the last will as well); at most two seconds.
    async fn say_goodbye(&self, status: &watch::Receiver<Option<Arc<Status>>>, eventloop: &mut EventLoop) {
        self.publish_state(status).await;
        self.publish(availability_topic(&self.device.node_id), b"offline".to_vec()).await;
        let _ = self.client.disconnect().await;
        let drain = async {
            while let Ok(event) = eventloop.poll().await {
                if matches!(event, Event::Outgoing(rumqttc::Outgoing::Disconnect)) {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(2), drain).await;
    }
}

/// Clears a node's retained discovery configs, state and availability: every config of
/// the current version, and any other config retained under the node's id (an older
/// version's). Returns the topics cleared.
pub async fn remove(
    broker: &MeterConfig,
    section: &HomeAssistantSection,
    device: &Device,
) -> Result<Vec<String>, RemoveError> {
    let client_id = format!("peerwatt-ha-remove-{}", std::process::id());
    let options = peerwatt_meter::mqtt_options(broker, Some(client_id)).map_err(HomeAssistantError::from)?;
    let (client, mut eventloop) = AsyncClient::new(options, 64);
    let mut topics: Vec<String> = discovery(device, section).into_iter().map(|(t, _)| t).collect();
    let wildcard = format!("{}/+/{}/+/config", section.discovery_prefix, device.node_id);
    let work = async {
        let mut subscribed = false;
        // Retained configs arrive right after the subscription's acknowledgement; a quiet
        // half second after it means all have.
        loop {
            let quiet = tokio::time::sleep(Duration::from_millis(500));
            let event = tokio::select! {
                event = eventloop.poll() => event.map_err(|e| RemoveError::Broker(e.to_string()))?,
                _ = quiet, if subscribed => break,
            };
            match event {
                Event::Incoming(Packet::ConnAck(_)) => {
                    client
                        .subscribe(&wildcard, QoS::AtMostOnce)
                        .await
                        .map_err(|e| RemoveError::Broker(e.to_string()))?;
                }
                Event::Incoming(Packet::SubAck(_)) => subscribed = true,
                Event::Incoming(Packet::Publish(p))
                    if p.retain && !p.payload.is_empty() && !topics.contains(&p.topic) =>
                {
                    topics.push(p.topic.clone());
                }
                _ => {}
            }
        }
        topics.push(state_topic(&device.node_id));
        topics.push(availability_topic(&device.node_id));
        for topic in &topics {
            client
                .publish(topic.clone(), QoS::AtLeastOnce, true, Vec::new())
                .await
                .map_err(|e| RemoveError::Broker(e.to_string()))?;
        }
        // Until the broker has every clearing (its PubAcks), then a clean disconnect.
        let mut acked = 0;
        while acked < topics.len() {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::PubAck(_))) => acked += 1,
                Ok(_) => {}
                Err(e) => return Err(RemoveError::Broker(e.to_string())),
            }
        }
        client.disconnect().await.map_err(|e| RemoveError::Broker(e.to_string()))?;
        while let Ok(event) = eventloop.poll().await {
            if matches!(event, Event::Outgoing(rumqttc::Outgoing::Disconnect)) {
                break;
            }
        }
        Ok::<_, RemoveError>(())
    };
    tokio::time::timeout(Duration::from_secs(15), work).await.map_err(|_| RemoveError::Timeout)??;
    Ok(topics)
}

/// `peerwatt ha remove` could not clear the configs.
#[derive(Debug, thiserror::Error)]
pub enum RemoveError {
    /// The settings.
    #[error(transparent)]
    Config(#[from] HomeAssistantError),
    /// The broker.
    #[error("the broker: {0}")]
    Broker(String),
    /// No answer in time.
    #[error("the broker did not answer within 15 s")]
    Timeout,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device() -> Device {
        Device { node_id: "alice".into(), name: "Alice".into(), public_id: "pk".into(), version: "0.1.0".into() }
    }

    #[test]
    fn a_name_becomes_an_id_home_assistant_takes() {
        assert_eq!(node_id_of("Alice's house 2"), "alice_s_house_2");
        assert_eq!(node_id_of(""), "peerwatt");
        let s = HomeAssistantSection { node_id: Some("a.b".into()), ..Default::default() };
        assert!(matches!(s.checked_node_id("x"), Err(HomeAssistantError::BadId { what: "node_id", .. })));
        let s = HomeAssistantSection { currency: "euro".into(), ..Default::default() };
        assert!(matches!(s.checked_node_id("x"), Err(HomeAssistantError::BadCurrency(_))));
    }

    #[test]
    fn the_sensor_table_in_the_docs_is_the_one_published() {
        let doc = include_str!("../../../docs/interfaces.md");
        let section = doc.split("\n## Home Assistant").nth(1).unwrap().split("\n## ").next().unwrap();
        let rows: Vec<Vec<&str>> = section
            .lines()
            .filter(|l| l.starts_with("| `"))
            .map(|l| l.trim_matches('|').split('|').map(str::trim).collect())
            .collect();
        let configs = discovery(&device(), &HomeAssistantSection::default());
        assert_eq!(rows.len(), configs.len(), "one row per sensor");
        for (row, (topic, payload)) in rows.iter().zip(&configs) {
            let key = row[0].trim_matches('`');
            assert!(topic.ends_with(&format!("/{key}/config")), "{key} is not the sensor of {topic}");
            let c: Value = serde_json::from_str(payload).unwrap();
            assert_eq!(row[1], c["name"].as_str().unwrap(), "{key}'s name");
            let class = c["device_class"].as_str().unwrap_or("–");
            assert!(row[2].starts_with(class), "{key}: device class {class}, the docs say {}", row[2]);
            assert_eq!(row[3], c["state_class"].as_str().unwrap_or("–"), "{key}'s state class");
            let unit = c["unit_of_measurement"].as_str().unwrap_or("–").replace("EUR", "currency");
            assert_eq!(row[4], unit, "{key}'s unit");
            if row[5].starts_with('`') {
                let path = row[5].trim_matches('`');
                assert!(c["value_template"].as_str().unwrap().contains(&format!("value_json.{path}")), "{key}'s value");
            }
        }
    }

    #[test]
    fn every_config_has_its_own_topic_and_unique_id() {
        let configs = discovery(&device(), &HomeAssistantSection::default());
        let mut ids: Vec<String> = configs
            .iter()
            .map(|(_, p)| serde_json::from_str::<Value>(p).unwrap()["unique_id"].as_str().unwrap().to_owned())
            .collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), configs.len());
        assert!(configs.iter().all(|(t, _)| t.starts_with("homeassistant/sensor/alice/") && t.ends_with("/config")));
    }
}
