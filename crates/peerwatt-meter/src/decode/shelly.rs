//! Shelly energy meters, plugs and switches.
//!
//! Gen2/Gen3 (`<prefix>/status/<component>:<channel>`, and `<prefix>/events/rpc` whose
//! `NotifyStatus` / `NotifyFullStatus` carry changed fields, laid over the last full status so
//! a delta that only says `{"em:0":{"total_act_power":-512.3}}` still completes the picture):
//! - `em:N` (Pro 3EM): `total_act_power` (W, negative = export); `emdata:N`: `total_act`,
//!   `total_act_ret` (Wh);
//! - `em1:N` (Pro EM, EM Gen3): `act_power`; `em1data:N`: `total_act_energy`,
//!   `total_act_ret_energy` (Wh);
//! - `switch:N`, `pm1:N` (Plus 1PM, Plug, PM Mini): `apower`, `aenergy.total`,
//!   `ret_aenergy.total` (Wh).
//!
//! Gen1 (`shellies/<id>/emeter/<i>/power|total|total_returned`: W, Wh, Wh as plain numbers).
//!
//! Each quantity is the sum over the configured channels (default channel 0; a Gen1 3EM,
//! `shellyem3-…`, all three phases), known once every channel has reported it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{Decoder, Format, ONE, Parts, expect_object, number, object, parse_json, plain_value, scaled};
use crate::decode::Unit;
use crate::reading::{Reason, Reject, Sample};

/// Which of a Shelly's channels make up the meter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShellyChannels {
    /// The channels summed (the `N` of `em1:N`, the `<i>` of `emeter/<i>`).
    pub channels: Vec<u32>,
}

/// The fields of a Gen2 component: power, import, export (pointers into its status).
struct Component {
    power: Option<&'static str>,
    import: Option<&'static str>,
    export: Option<&'static str>,
}

/// The Gen2 components read, by name.
fn component(name: &str) -> Option<Component> {
    let c = |power, import, export| Some(Component { power, import, export });
    match name {
        "em" => c(Some("/total_act_power"), None, None),
        "emdata" => c(None, Some("/total_act"), Some("/total_act_ret")),
        "em1" => c(Some("/act_power"), None, None),
        "em1data" => c(None, Some("/total_act_energy"), Some("/total_act_ret_energy")),
        "switch" | "pm1" => c(Some("/apower"), Some("/aenergy/total"), Some("/ret_aenergy/total")),
        _ => None,
    }
}

/// The three quantities, each summed over the channels.
#[derive(Debug, Clone, Default)]
struct Quantities {
    power: Parts,
    import: Parts,
    export: Parts,
}

/// Decodes Shelly status topics, RPC notifications and Gen1 emeter topics.
#[derive(Debug, Clone, Default)]
pub struct ShellyGen2Decoder {
    /// Configured channels; `None` until the first message picks the default.
    channels: Option<Vec<u32>>,
    /// Whether the channels were configured rather than guessed from the device.
    configured: bool,
    /// A channel outside the guessed ones was seen on a device whose channels peerwatt cannot
    /// tell: every message is refused until the user says which channels make the meter.
    ambiguous: Option<u32>,
    /// The last known status of each Gen2 component (always a JSON object), by `name:N`.
    status: BTreeMap<String, Value>,
    sums: Quantities,
}

impl ShellyGen2Decoder {
    /// A decoder for these channels (default: 0, or the three phases of a Gen1 3EM).
    pub fn new(channels: Option<ShellyChannels>) -> Result<ShellyGen2Decoder, String> {
        let mut d = ShellyGen2Decoder::default();
        if let Some(c) = channels {
            if c.channels.is_empty() {
                return Err("shelly.channels lists no channel".into());
            }
            d.set_channels(c.channels);
            d.configured = true;
        }
        Ok(d)
    }

    fn set_channels(&mut self, channels: Vec<u32>) {
        let n = channels.len();
        self.sums = Quantities { power: Parts::new(n), import: Parts::new(n), export: Parts::new(n) };
        self.channels = Some(channels);
    }

    /// The position of `channel` among the configured ones, choosing the default on first use.
    fn slot(&mut self, channel: u32, topic: &str) -> Result<usize, Reject> {
        if self.channels.is_none() {
            self.set_channels(known_channels(topic).unwrap_or_else(|| vec![0]));
        }
        let channels = self.channels.as_deref().unwrap_or_default();
        channels.iter().position(|c| *c == channel).ok_or_else(|| {
            Reject::new(
                Reason::PartialQuantity,
                format!(
                    "channel {channel} is not one of the meter's channels {channels:?} ([meter.<role>.shelly] channels)"
                ),
            )
        })
    }

    /// Refuses everything once channels were seen that a guess cannot place.
    fn check_ambiguous(&self) -> Result<(), Reject> {
        match self.ambiguous {
            None => Ok(()),
            Some(channel) => Err(Reject::new(
                Reason::PartialQuantity,
                format!(
                    "this Shelly also publishes channel {channel}: say which channels make the meter, e.g. [meter.<role>.shelly] channels = [0] (one clamp) or [0, 1, 2] (three phases)"
                ),
            )),
        }
    }

    /// Records what a Gen2 component's status says, and returns what is now known.
    /// `device` is what names the device (its topic, and a notification's `src`).
    fn component(&mut self, key: &str, status: &Value, delta: bool, device: &str) -> Result<Sample, Reject> {
        let (name, channel) = split_key(key)
            .ok_or_else(|| Reject::new(Reason::WrongTopic, format!("{key} is not a Shelly component")))?;
        let fields = component(name).ok_or_else(|| {
            Reject::new(Reason::WrongTopic, format!("Shelly component {name} measures no power or energy"))
        })?;
        let slot = self.slot(channel, device)?;
        let merged = self.status.entry(key.to_owned()).or_insert_with(|| Value::Object(Map::new()));
        if delta {
            merge(merged, status);
        } else {
            *merged = status.clone();
        }
        let merged = merged.clone();
        let read = |p: Option<&str>| -> Result<Option<i64>, Reject> {
            let Some(p) = p else { return Ok(None) };
            match merged.pointer(p) {
                None | Some(Value::Null) => Ok(None),
                Some(v) => scaled(number(v, p)?, ONE, p).map(Some),
            }
        };
        let (power, import, export) = (read(fields.power)?, read(fields.import)?, read(fields.export)?);
        if power.is_none() && import.is_none() && export.is_none() {
            return Err(Reject::new(Reason::MissingField, format!("{key} carries no power or energy value")));
        }
        let mut sample = Sample::default();
        if let Some(w) = power {
            self.sums.power.set(slot, w);
            sample.power = self.sums.power.total("power")?;
        }
        if let Some(wh) = import {
            self.sums.import.set(slot, wh);
            sample.energy_in = self.sums.import.total("import")?;
        }
        if let Some(wh) = export {
            self.sums.export.set(slot, wh);
            sample.energy_out = self.sums.export.total("export")?;
        }
        Ok(sample)
    }

    fn notification(&mut self, topic: &str, v: &Value) -> Result<Sample, Reject> {
        let device = format!("{topic} {}", v.get("src").and_then(Value::as_str).unwrap_or_default());
        let method = v.get("method").and_then(Value::as_str).unwrap_or("");
        if method != "NotifyStatus" && method != "NotifyFullStatus" {
            return Err(Reject::new(Reason::MissingField, format!("RPC event {method:?} carries no status")));
        }
        let params = object(v, "params")?.ok_or_else(|| Reject::new(Reason::MissingField, "params is missing"))?;
        let Value::Object(params) = params else { return Err(Reject::new(Reason::WrongType, "params")) };
        let mut sample = Sample::default();
        let mut read_any = false;
        let mut other_channel = None;
        for (key, status) in params {
            let Some((name, _)) = split_key(key) else { continue };
            if component(name).is_none() || !status.is_object() {
                continue;
            }
            match self.component(key, status, true, &device) {
                Ok(s) => {
                    read_any = true;
                    sample.power = s.power.or(sample.power);
                    sample.energy_in = s.energy_in.or(sample.energy_in);
                    sample.energy_out = s.energy_out.or(sample.energy_out);
                }
                Err(e) if e.reason == Reason::PartialQuantity => other_channel = Some(e),
                Err(e) => return Err(e),
            }
        }
        match (read_any, other_channel) {
            (false, Some(e)) => Err(e),
            (false, None) => {
                Err(Reject::new(Reason::MissingField, "the notification changes no power or energy value"))
            }
            (true, _) => Ok(sample),
        }
    }

    /// Gen1: `shellies/<id>/emeter/<i>/<quantity>`, a plain number.
    fn gen1(&mut self, topic: &str, payload: &[u8]) -> Result<Sample, Reject> {
        let mut parts = topic.rsplit('/');
        let (quantity, channel) = (parts.next(), parts.next());
        let (Some(quantity), Some(channel)) = (quantity, channel) else {
            return Err(Reject::new(Reason::WrongTopic, format!("{topic} is not a Shelly emeter topic")));
        };
        let channel: u32 = channel
            .parse()
            .map_err(|_| Reject::new(Reason::WrongTopic, format!("{topic}: {channel:?} is not a channel number")))?;
        let (parts, what) = match quantity {
            "power" => (Kind::Power, "power"),
            "total" => (Kind::Import, "total"),
            "total_returned" => (Kind::Export, "total_returned"),
            other => {
                return Err(Reject::new(
                    Reason::WrongTopic,
                    format!("Shelly emeter {other} is not read (power in W, total and total_returned in Wh are)"),
                ));
            }
        };
        let value = plain_value(payload, if parts == Kind::Power { Unit::W } else { Unit::Wh }, what)?;
        let slot = self.slot(channel, topic)?;
        let mut sample = Sample::default();
        match parts {
            Kind::Power => {
                self.sums.power.set(slot, value);
                sample.power = self.sums.power.total("power")?;
            }
            Kind::Import => {
                self.sums.import.set(slot, value);
                sample.energy_in = self.sums.import.total("import")?;
            }
            Kind::Export => {
                self.sums.export.set(slot, value);
                sample.energy_out = self.sums.export.total("export")?;
            }
        }
        Ok(sample)
    }
}

/// Which quantity a Gen1 topic carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Power,
    Import,
    Export,
}

/// The channels of a device recognised by its id in the topic: a Gen1 3EM's three phases,
/// or channel 0 of the two-clamp meters (Shelly EM, Pro EM, EM Gen3), whose second clamp
/// measures another circuit.
fn known_channels(topic: &str) -> Option<Vec<u32>> {
    let t = topic.to_ascii_lowercase();
    if t.contains("shellyem3-") {
        Some(vec![0, 1, 2])
    } else if ["shellyem-", "shellyproem50", "shellyemg3"].iter().any(|d| t.contains(d)) {
        Some(vec![0])
    } else {
        None
    }
}

/// The channel a topic (or the first component of a notification) is about.
fn channel_of(topic: &str) -> Option<u32> {
    if let Some((_, rest)) = topic.split_once("/emeter/") {
        return rest.split('/').next()?.parse().ok();
    }
    split_key(topic.rsplit_once("/status/")?.1).map(|(_, c)| c)
}

/// `em1:2` → (`em1`, 2).
fn split_key(key: &str) -> Option<(&str, u32)> {
    let (name, channel) = key.split_once(':')?;
    Some((name, channel.parse().ok()?))
}

/// Lays the fields of `from` over `into` (both JSON objects).
fn merge(into: &mut Value, from: &Value) {
    if let (Value::Object(into), Value::Object(fields)) = (into, from) {
        for (k, v) in fields {
            into.insert(k.clone(), v.clone());
        }
    }
}

impl Decoder for ShellyGen2Decoder {
    fn format(&self) -> Format {
        Format::ShellyGen2
    }

    fn decode_payload(&mut self, topic: &str, payload: &[u8]) -> Result<Sample, Reject> {
        self.check_ambiguous()?;
        let result = super::transaction(self, |d| d.apply(topic, payload));
        if let Err(refused) = &result {
            // Learnt from the refusal itself: a device that cannot be placed publishes a channel
            // beyond channel 0, so channel 0 alone may be one phase of three.
            if refused.reason == Reason::PartialQuantity && !self.configured && known_channels(topic).is_none() {
                self.ambiguous = channel_of(topic);
            }
        }
        result
    }

    fn snapshot(&self) -> Option<Box<dyn Decoder>> {
        Some(Box::new(self.clone()))
    }
}

impl ShellyGen2Decoder {
    /// Decodes one message into `self` (a copy, kept only if the message is read).
    fn apply(&mut self, topic: &str, payload: &[u8]) -> Result<Sample, Reject> {
        if topic.contains("/emeter/") {
            return self.gen1(topic, payload);
        }
        let v = parse_json(payload)?;
        expect_object(&v)?;
        if topic.ends_with("/rpc") {
            return self.notification(topic, &v);
        }
        if let Some((_, key)) = topic.rsplit_once("/status/") {
            return self.component(key, &v, false, topic);
        }
        Err(Reject::new(Reason::WrongTopic, format!("{topic} is not a Shelly status, events/rpc or emeter topic")))
    }
}
