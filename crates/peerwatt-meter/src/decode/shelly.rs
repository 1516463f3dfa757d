//! Shelly Pro 3EM and other Gen2 energy meters.
//!
//! - `<prefix>/status/em:0`: `total_act_power` (W, negative = export);
//! - `<prefix>/status/emdata:0`: `total_act` (import Wh) and `total_act_ret` (export Wh);
//! - `<id>/events/rpc`: `NotifyStatus` / `NotifyFullStatus` whose `params` carry changed fields
//!   of `em:0` / `emdata:0`. They are laid over the last full status, so a delta that only says
//!   `{"em:0":{"total_act_power":-512.3}}` still yields a complete picture.

use serde_json::{Map, Value};

use super::{Decoder, Format, ONE, expect_object, field, object, parse_json, scaled};
use crate::reading::{Reason, Reject, Sample};

/// Decodes Shelly Gen2 status topics and RPC notifications.
#[derive(Debug, Clone)]
pub struct ShellyGen2Decoder {
    /// The last known `em:0` status (always a JSON object).
    em: Value,
    /// The last known `emdata:0` status (always a JSON object).
    emdata: Value,
}

impl Default for ShellyGen2Decoder {
    fn default() -> Self {
        ShellyGen2Decoder { em: Value::Object(Map::new()), emdata: Value::Object(Map::new()) }
    }
}

/// Lays the fields of `from` over `into` (both JSON objects).
fn merge(into: &mut Value, from: &Value) {
    if let (Value::Object(into), Value::Object(fields)) = (into, from) {
        for (k, v) in fields {
            into.insert(k.clone(), v.clone());
        }
    }
}

impl ShellyGen2Decoder {
    fn power(&self) -> Result<Option<i64>, Reject> {
        field(&self.em, "total_act_power")?.map(|d| scaled(d, ONE, "total_act_power")).transpose()
    }

    fn energy(&self) -> Result<(Option<i64>, Option<i64>), Reject> {
        let import = field(&self.emdata, "total_act")?.map(|d| scaled(d, ONE, "total_act")).transpose()?;
        let export = field(&self.emdata, "total_act_ret")?.map(|d| scaled(d, ONE, "total_act_ret")).transpose()?;
        Ok((import, export))
    }
}

impl Decoder for ShellyGen2Decoder {
    fn format(&self) -> Format {
        Format::ShellyGen2
    }

    fn decode(&mut self, topic: &str, payload: &[u8]) -> Result<Sample, Reject> {
        let v = parse_json(payload)?;
        expect_object(&v)?;
        let mut sample = Sample::default();
        if topic.ends_with("/status/em:0") {
            self.em = v;
            sample.power =
                Some(self.power()?.ok_or_else(|| Reject::new(Reason::MissingField, "total_act_power is missing"))?);
        } else if topic.ends_with("/status/emdata:0") {
            self.emdata = v;
            let (import, export) = self.energy()?;
            if import.is_none() && export.is_none() {
                return Err(Reject::new(Reason::MissingField, "total_act and total_act_ret are missing"));
            }
            (sample.energy_in, sample.energy_out) = (import, export);
        } else if topic.ends_with("/events/rpc") {
            let method = v.get("method").and_then(Value::as_str).unwrap_or("");
            if method != "NotifyStatus" && method != "NotifyFullStatus" {
                return Err(Reject::new(Reason::MissingField, format!("RPC event {method:?} carries no status")));
            }
            let params = object(&v, "params")?.ok_or_else(|| Reject::new(Reason::MissingField, "params is missing"))?;
            if let Some(em) = object(params, "em:0")? {
                merge(&mut self.em, em);
                sample.power = self.power()?;
            }
            if let Some(data) = object(params, "emdata:0")? {
                merge(&mut self.emdata, data);
                (sample.energy_in, sample.energy_out) = self.energy()?;
            }
            if sample.is_empty() {
                return Err(Reject::new(Reason::MissingField, "the notification changes no em:0 or emdata:0 value"));
            }
        } else {
            return Err(Reject::new(
                Reason::WrongTopic,
                format!("{topic} is not a Shelly em:0/emdata:0 status or events/rpc topic"),
            ));
        }
        Ok(sample)
    }
}
