//! Payload decoders, one per meter firmware, chosen by `format` in the configuration.
//!
//! Each decoder turns one MQTT message into a [`Sample`] (integer W and Wh) or a [`Reject`]
//! with a named reason. Decoders never panic on any input: bytes, text, JSON of any shape.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::decimal::{Decimal, NumberError};
use crate::reading::{Reason, Reject, Sample};

mod auto;
mod dsmr;
mod esphome;
mod json;
mod opendtu;
mod shelly;
mod tasmota;
mod zigbee2mqtt;

pub use auto::{AutoDecoder, detect};
pub use dsmr::DsmrReaderDecoder;
pub use esphome::EsphomeDecoder;
pub use json::{GenericJsonConfig, GenericJsonDecoder, ScaleValue};
pub use opendtu::OpendtuDecoder;
pub use shelly::ShellyGen2Decoder;
pub use tasmota::{TasmotaDecoder, TasmotaSmlKeys};
pub use zigbee2mqtt::Zigbee2mqttDecoder;

/// Deepest JSON nesting accepted; real meter payloads stay below 5.
pub const MAX_JSON_DEPTH: usize = 16;

/// The payload formats peerwatt understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// Tasmota: SML smart-meter reader or ENERGY (plugs), on `tele/<topic>/SENSOR`.
    Tasmota,
    /// Shelly Pro 3EM and other Gen2 energy meters: `status/em:0`, `status/emdata:0`, `events/rpc`.
    ShellyGen2,
    /// DSMR-reader's JSON telegram on `dsmr/json`.
    DsmrReader,
    /// ESPHome's DSMR component: one plain number per `…/sensor/<object_id>/state` topic.
    Esphome,
    /// OpenDTU (Hoymiles inverters): plain numbers under `solar/<serial>/0/…`.
    Opendtu,
    /// zigbee2mqtt devices reporting `power` (W) and `energy` (kWh).
    Zigbee2mqtt,
    /// Any JSON, read with JSON pointers plus `scale` and `invert` (as evcc users know it).
    Json,
    /// Recognise the format from the first payload.
    Auto,
}

impl Format {
    /// The configuration name (`"shelly-gen2"`, …).
    pub fn name(self) -> &'static str {
        match self {
            Format::Tasmota => "tasmota",
            Format::ShellyGen2 => "shelly-gen2",
            Format::DsmrReader => "dsmr-reader",
            Format::Esphome => "esphome",
            Format::Opendtu => "opendtu",
            Format::Zigbee2mqtt => "zigbee2mqtt",
            Format::Json => "json",
            Format::Auto => "auto",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Turns MQTT messages of one format into samples.
pub trait Decoder: Send + fmt::Debug {
    /// The format decoded (for `auto`, the one recognised, once it is known).
    fn format(&self) -> Format;
    /// Decodes one message.
    fn decode(&mut self, topic: &str, payload: &[u8]) -> Result<Sample, Reject>;
}

/// A decoder for `format`; `json` needs the generic JSON settings.
pub fn decoder_for(
    format: Format,
    json: Option<&GenericJsonConfig>,
    sml: &TasmotaSmlKeys,
) -> Result<Box<dyn Decoder>, String> {
    Ok(match format {
        Format::Tasmota => Box::new(TasmotaDecoder::new(sml.clone())),
        Format::ShellyGen2 => Box::new(ShellyGen2Decoder::default()),
        Format::DsmrReader => Box::new(DsmrReaderDecoder),
        Format::Esphome => Box::new(EsphomeDecoder::default()),
        Format::Opendtu => Box::new(OpendtuDecoder),
        Format::Zigbee2mqtt => Box::new(Zigbee2mqttDecoder),
        Format::Json => {
            let cfg = json.ok_or("format = \"json\" needs a [meter.<role>.json] section with JSON pointers")?;
            Box::new(GenericJsonDecoder::new(cfg.clone())?)
        }
        Format::Auto => Box::new(AutoDecoder::new(sml.clone())),
    })
}

/// 1,000: kWh → Wh and kW → W.
pub(crate) const KILO: Decimal = Decimal::from_int(1000);
/// 1: the value is already in W or Wh.
pub(crate) const ONE: Decimal = Decimal::from_int(1);

/// The payload as UTF-8 text.
pub(crate) fn text(payload: &[u8]) -> Result<&str, Reject> {
    std::str::from_utf8(payload).map_err(|e| Reject::new(Reason::Malformed, format!("payload is not UTF-8 text ({e})")))
}

/// Parses a JSON payload, refusing deep nesting before the parser sees it.
pub(crate) fn parse_json(payload: &[u8]) -> Result<Value, Reject> {
    let text = text(payload)?;
    check_depth(text)?;
    serde_json::from_str(text).map_err(|e| {
        let reason = if e.to_string().contains("number out of range") { Reason::OutOfRange } else { Reason::Malformed };
        Reject::new(reason, format!("invalid JSON: {e}"))
    })
}

/// Refuses JSON nested deeper than [`MAX_JSON_DEPTH`], scanning outside strings.
fn check_depth(text: &str) -> Result<(), Reject> {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for b in text.bytes() {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > MAX_JSON_DEPTH {
                    return Err(Reject::new(
                        Reason::TooDeep,
                        format!("JSON nested deeper than {MAX_JSON_DEPTH} levels"),
                    ));
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// A plain-number payload (ESPHome, OpenDTU).
pub(crate) fn plain_number(payload: &[u8], what: &str) -> Result<Decimal, Reject> {
    let text = text(payload)?;
    Decimal::parse(text).map_err(|e| number_reject(e, what, text))
}

fn number_reject(e: NumberError, what: &str, value: &str) -> Reject {
    let shown: String = value.chars().take(40).collect();
    match e {
        NumberError::NotANumber => Reject::new(Reason::NonNumeric, format!("{what} is not a number: {shown:?}")),
        NumberError::NotFinite => Reject::new(Reason::NotFinite, format!("{what} is {shown}")),
        NumberError::OutOfRange => Reject::new(Reason::OutOfRange, format!("{what} is out of range: {shown}")),
    }
}

/// The number at `key` of a JSON object: `None` if absent or null; numeric strings accepted.
pub(crate) fn field(v: &Value, key: &str) -> Result<Option<Decimal>, Reject> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => number(value, key).map(Some),
    }
}

/// A JSON value that must be a number (or a numeric string).
pub(crate) fn number(value: &Value, what: &str) -> Result<Decimal, Reject> {
    match value {
        Value::Number(n) => {
            let text = n.to_string();
            Decimal::parse(&text).map_err(|e| number_reject(e, what, &text))
        }
        Value::String(s) => Decimal::parse(s).map_err(|e| number_reject(e, what, s)),
        other => Err(Reject::new(Reason::WrongType, format!("{what} is {}, not a number", type_name(other)))),
    }
}

/// The number at `key`, or the exact sum of the numbers in an array or object there (per
/// phase or channel: `[p1, p2, p3]` or `{"L1": …, "L2": …}`): `None` if absent or null.
pub(crate) fn field_sum(v: &Value, key: &str) -> Result<Option<Decimal>, Reject> {
    let parts: Vec<&Value> = match v.get(key) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Array(items)) => items.iter().collect(),
        Some(Value::Object(map)) => map.values().collect(),
        Some(value) => return number(value, key).map(Some),
    };
    if parts.is_empty() {
        return Err(Reject::new(Reason::MissingField, format!("{key} is empty")));
    }
    let mut sum = Decimal::from_int(0);
    for part in parts {
        let n = number(part, key)?;
        sum = sum.checked_add(n).map_err(|e| number_reject(e, key, "its sum"))?;
    }
    Ok(Some(sum))
}

/// The number at `key`, which must be there.
pub(crate) fn required(v: &Value, key: &str) -> Result<Decimal, Reject> {
    field(v, key)?.ok_or_else(|| Reject::new(Reason::MissingField, format!("{key} is missing")))
}

/// The object at `key`, which must be a JSON object.
pub(crate) fn object<'a>(v: &'a Value, key: &str) -> Result<Option<&'a Value>, Reject> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(o @ Value::Object(_)) => Ok(Some(o)),
        Some(other) => Err(Reject::new(Reason::WrongType, format!("{key} is {}, not an object", type_name(other)))),
    }
}

/// The payload must be a JSON object.
pub(crate) fn expect_object(v: &Value) -> Result<(), Reject> {
    match v {
        Value::Object(_) => Ok(()),
        other => Err(Reject::new(Reason::WrongType, format!("payload is {}, not a JSON object", type_name(other)))),
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// `round(d × scale)` as an integer, refusals named after `what`.
pub(crate) fn scaled(d: Decimal, scale: Decimal, what: &str) -> Result<i64, Reject> {
    d.scaled(scale).map_err(|e| number_reject(e, what, "its scaled value"))
}

/// Sums two integer quantities (tariff 1 + tariff 2), refusing overflow.
pub(crate) fn add(a: i64, b: i64, what: &str) -> Result<i64, Reject> {
    a.checked_add(b).ok_or_else(|| Reject::new(Reason::OutOfRange, format!("{what} overflows")))
}
