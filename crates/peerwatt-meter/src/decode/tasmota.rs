//! Tasmota: `tele/<topic>/SENSOR`, and the `Status 10` reply `stat/<topic>/STATUS10`.
//!
//! SML smart-meter readers: `{"Time":"…","SML":{"Total_in":34507.4761,"Total_out":14737.1422,"Power_curr":-894}}`
//! (kWh counters, W, negative = export). The SML object and value names come from the user's
//! meter script, so they are configurable, as are their units. Plugs and energy monitors:
//! `{"ENERGY":{"Total":196.708,"Power":0,…}}` (kWh, W), per phase or channel as arrays.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Decoder, Format, KILO, ONE, Unit, field, field_sum, number, object, parse_json, scaled};
use crate::decimal::Decimal;
use crate::reading::{Reason, Reject, Sample};

/// The JSON names and units a Tasmota SML script uses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TasmotaSmlKeys {
    /// The object holding the values (the script's meter prefix, `""` when it is empty);
    /// default: the object that has one of the value names below.
    pub object: Option<String>,
    /// Import counter, default `Total_in`.
    pub import: String,
    /// Export counter, default `Total_out`.
    pub export: String,
    /// Current power (negative = export), default `Power_curr`.
    pub power: String,
    /// A separate export power subtracted from `power` (scripts that publish `Pp` and `Pm`).
    pub power_export: Option<String>,
    /// Unit of the power values, default W.
    pub power_unit: Unit,
    /// Unit of the counters, default kWh.
    pub energy_unit: Unit,
}

impl Default for TasmotaSmlKeys {
    fn default() -> Self {
        TasmotaSmlKeys {
            object: None,
            import: "Total_in".into(),
            export: "Total_out".into(),
            power: "Power_curr".into(),
            power_export: None,
            power_unit: Unit::W,
            energy_unit: Unit::KWh,
        }
    }
}

impl TasmotaSmlKeys {
    /// The SML object of a SENSOR message: the configured one, or else the one object (other
    /// than Tasmota's own) holding one of the value names.
    pub fn find<'a>(&self, sensors: &'a Value) -> Option<(&'a str, &'a Value)> {
        let Value::Object(map) = sensors else { return None };
        if let Some(name) = &self.object {
            return map.get_key_value(name).filter(|(_, v)| v.is_object()).map(|(k, v)| (k.as_str(), v));
        }
        let names = [Some(&self.import), Some(&self.export), Some(&self.power), self.power_export.as_ref()];
        map.iter().filter(|(k, _)| !TASMOTA_OBJECTS.contains(&k.as_str())).find_map(|(k, v)| {
            let has = |n: &&String| v.get(n.as_str()).is_some();
            (v.is_object() && names.iter().flatten().any(has)).then_some((k.as_str(), v))
        })
    }
}

/// Objects Tasmota itself publishes, never an SML meter.
const TASMOTA_OBJECTS: [&str; 4] = ["ENERGY", "StatusSNS", "StatusPWR", "Wifi"];

/// Decodes Tasmota SENSOR telemetry and Status replies.
#[derive(Debug, Clone, Default)]
pub struct TasmotaDecoder {
    keys: TasmotaSmlKeys,
}

impl TasmotaDecoder {
    /// A decoder using these SML names; refuses an energy unit for power and the reverse.
    pub fn new(keys: TasmotaSmlKeys) -> Result<TasmotaDecoder, String> {
        keys.power_unit.check(true, "sml.power_unit")?;
        keys.energy_unit.check(false, "sml.energy_unit")?;
        Ok(TasmotaDecoder { keys })
    }

    fn sml(&self, name: &str, sml: &Value) -> Result<Sample, Reject> {
        let k = &self.keys;
        if all_zero(sml) {
            return Err(Reject::new(
                Reason::AllZero,
                format!("every value of {name:?} is 0: the meter script has not decoded a telegram yet"),
            ));
        }
        let watts = |key: &str| field(sml, key)?.map(|d| scaled(d, k.power_unit.factor(), key)).transpose();
        let wh = |key: &str| field(sml, key)?.map(|d| scaled(d, k.energy_unit.factor(), key)).transpose();
        let mut power = watts(&k.power)?;
        if let Some(out_key) = &k.power_export {
            power = match (power, watts(out_key)?) {
                (Some(p), Some(out)) => Some(super::sub(p, out, &k.power)?),
                _ => None, // half a power is no power
            };
        }
        let sample = Sample { power, energy_in: wh(&k.import)?, energy_out: wh(&k.export)? };
        if sample.is_empty() {
            return Err(Reject::new(
                Reason::MissingField,
                format!("{name:?} has none of {}, {}, {}", k.import, k.export, k.power),
            ));
        }
        Ok(sample)
    }
}

/// Whether every number in an SML object is zero (and there is at least one).
fn all_zero(sml: &Value) -> bool {
    let Value::Object(map) = sml else { return false };
    let mut numbers = map.values().filter(|v| v.is_number()).peekable();
    numbers.peek().is_some() && numbers.all(|v| number(v, "").is_ok_and(Decimal::is_zero))
}

/// The ENERGY object of a message: under `ENERGY`, the pre-5.11 `StatusPWR`, or the whole
/// payload of the pre-5.11 `tele/<topic>/ENERGY` topic.
fn energy_object<'a>(topic: &str, v: &'a Value) -> Result<Option<&'a Value>, Reject> {
    if let Some(e) = object(v, "ENERGY")? {
        return Ok(Some(e));
    }
    if let Some(e) = object(v, "StatusPWR")? {
        return Ok(Some(e));
    }
    Ok((topic.ends_with("/ENERGY") && v.is_object()).then_some(v))
}

/// ENERGY: import/export counters per phase if the device counts both directions; else
/// `Total` is the import counter, unless a negative Total, Today or Yesterday shows it is a
/// net counter (it runs backwards while exporting) and so neither.
fn energy(energy: &Value) -> Result<Sample, Reject> {
    let import = field_sum(energy, "ImportActive")?;
    let export = field_sum(energy, "ExportActive")?;
    let (total, name) = match import {
        Some(i) => (Some(i), "ImportActive"),
        None => {
            let mut net = false;
            for key in ["Total", "Today", "Yesterday"] {
                net |= field_sum(energy, key)?.is_some_and(Decimal::is_negative);
            }
            (if net { None } else { field_sum(energy, "Total")? }, "Total")
        }
    };
    let sample = Sample {
        power: field_sum(energy, "Power")?.map(|d| scaled(d, ONE, "Power")).transpose()?,
        energy_in: total.map(|d| scaled(d, KILO, name)).transpose()?,
        energy_out: export.map(|d| scaled(d, KILO, "ExportActive")).transpose()?,
    };
    if sample.is_empty() {
        return Err(Reject::new(Reason::MissingField, "ENERGY has neither Total nor Power"));
    }
    Ok(sample)
}

impl Decoder for TasmotaDecoder {
    fn format(&self) -> Format {
        Format::Tasmota
    }

    fn decode_payload(&mut self, topic: &str, payload: &[u8]) -> Result<Sample, Reject> {
        if topic.ends_with("/RESULT") {
            return Err(Reject::new(
                Reason::WrongTopic,
                format!("{topic} is a command reply, not telemetry (subscribe to tele/<topic>/SENSOR)"),
            ));
        }
        let parsed = parse_json(payload)?;
        // The `Status 10` reply (stat/<topic>/STATUS10, and `cm?cmnd=status 10` over HTTP)
        // wraps the same sensors in StatusSNS (STATUS8 on older firmware).
        let v = object(&parsed, "StatusSNS")?.unwrap_or(&parsed);
        object(v, self.keys.object.as_deref().unwrap_or("SML"))?; // there, but not an object: wrong_type
        if let Some((name, sml)) = self.keys.find(v) {
            return self.sml(name, sml);
        }
        if let Some(e) = energy_object(topic, v)? {
            return energy(e);
        }
        let meter = self.keys.object.as_deref().unwrap_or("an SML meter object");
        Err(Reject::new(Reason::MissingField, format!("neither {meter:?} nor ENERGY in the payload")))
    }
}
