//! Payload decoders, one per meter firmware, chosen by `format` in the configuration.
//!
//! Each decoder turns one MQTT message into a [`Sample`] (integer W and Wh) or a [`Reject`]
//! with a named reason. Decoders never panic on any input: bytes, text, JSON of any shape.

use std::fmt;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

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
pub use esphome::{EsphomeDecoder, EsphomeSensors};
pub use json::{GenericJsonConfig, GenericJsonDecoder, ScaleValue, Source, Sources};
pub use opendtu::OpendtuDecoder;
pub use shelly::{ShellyChannels, ShellyGen2Decoder};
pub use tasmota::{TasmotaDecoder, TasmotaSmlKeys};
pub use zigbee2mqtt::Zigbee2mqttDecoder;

/// Deepest JSON nesting accepted; real meter payloads stay below 5.
pub const MAX_JSON_DEPTH: usize = 16;

/// The payload formats peerwatt understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// Tasmota: SML smart-meter reader or ENERGY (plugs), on `tele/<topic>/SENSOR`.
    Tasmota,
    /// Shelly energy meters, plugs and switches: Gen2/Gen3 status topics and `events/rpc`
    /// (`em`, `emdata`, `em1`, `em1data`, `switch`, `pm1`), and Gen1 `shellies/<id>/emeter/<i>/…`.
    ShellyGen2,
    /// DSMR-reader: the JSON telegram on `dsmr/json`, or one value per `dsmr/reading/<field>`.
    DsmrReader,
    /// ESPHome: one plain number per `…/sensor/<object_id>/state` topic (DSMR names by default).
    Esphome,
    /// OpenDTU (Hoymiles inverters): plain numbers under `solar/ac/…` (all inverters) or
    /// `solar/<serial>/0/…` (one).
    Opendtu,
    /// zigbee2mqtt devices: JSON with `power` (W), `energy` and `produced_energy` (kWh), or one
    /// attribute per topic.
    Zigbee2mqtt,
    /// Any JSON or plain number, read with JSON pointers, units, sums and `invert`.
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
    /// Decodes one message of this format. A refused message changes nothing.
    fn decode_payload(&mut self, topic: &str, payload: &[u8]) -> Result<Sample, Reject>;
    /// A copy of a decoder that remembers earlier messages (registers, last status), so the
    /// pipeline can undo a message whose reading it then refuses; `None` for one that does not.
    fn snapshot(&self) -> Option<Box<dyn Decoder>> {
        None
    }
    /// Decodes one message: availability messages (last wills, `online`) are refused as such
    /// for every format before the format's own decoding.
    fn decode(&mut self, topic: &str, payload: &[u8]) -> Result<Sample, Reject> {
        if let Some(refusal) = availability(topic, payload) {
            return Err(refusal);
        }
        self.decode_payload(topic, payload)
    }
}

/// A decoder that remembers earlier messages (tariff registers, phases, the last source):
/// it decodes each message into a copy of itself, kept only if the message is read, and the
/// pipeline can undo a message whose reading it then refuses ([`Decoder::snapshot`]).
pub(crate) trait Remembering: Clone + Send + fmt::Debug + 'static {
    /// The format decoded.
    const FORMAT: Format;
    /// Decodes one message into `self` (a copy, dropped if this fails).
    fn apply(&mut self, topic: &str, payload: &[u8]) -> Result<Sample, Reject>;
}

impl<T: Remembering> Decoder for T {
    fn format(&self) -> Format {
        T::FORMAT
    }

    fn decode_payload(&mut self, topic: &str, payload: &[u8]) -> Result<Sample, Reject> {
        transaction(self, |d| d.apply(topic, payload))
    }

    fn snapshot(&self) -> Option<Box<dyn Decoder>> {
        Some(Box::new(self.clone()))
    }
}

/// What a meter's decoder is told besides its format (the `[meter.<role>.…]` subsections).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DecoderSettings {
    /// Tasmota SML names and units.
    pub sml: TasmotaSmlKeys,
    /// Generic JSON sources (required for `format = "json"`).
    pub json: Option<GenericJsonConfig>,
    /// ESPHome object ids and units (default: the DSMR component's names).
    pub esphome: Option<EsphomeSensors>,
    /// Shelly channels (default: channel 0; all three phases of a Gen1 3EM).
    pub shelly: Option<ShellyChannels>,
}

/// A decoder for `format` with `settings`; `json` needs the generic JSON settings.
pub fn decoder_for(format: Format, settings: &DecoderSettings) -> Result<Box<dyn Decoder>, String> {
    Ok(match format {
        Format::Tasmota => Box::new(TasmotaDecoder::new(settings.sml.clone())?),
        Format::ShellyGen2 => Box::new(ShellyGen2Decoder::new(settings.shelly.clone())?),
        Format::DsmrReader => Box::new(DsmrReaderDecoder::default()),
        Format::Esphome => Box::new(EsphomeDecoder::new(settings.esphome.clone())?),
        Format::Opendtu => Box::new(OpendtuDecoder::default()),
        Format::Zigbee2mqtt => Box::new(Zigbee2mqttDecoder),
        Format::Json => {
            let cfg = settings
                .json
                .as_ref()
                .ok_or("format = \"json\" needs a [meter.<role>.json] section with JSON pointers")?;
            Box::new(GenericJsonDecoder::new(cfg.clone())?)
        }
        Format::Auto => Box::new(AutoDecoder::new(settings.clone())),
    })
}

/// A unit a value is published in: it is converted to W or Wh exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Unit {
    /// Watts.
    W,
    /// Kilowatts.
    #[serde(rename = "kW")]
    KW,
    /// Watt-hours.
    Wh,
    /// Kilowatt-hours.
    #[serde(rename = "kWh")]
    KWh,
}

impl Unit {
    /// The factor to W or Wh.
    pub(crate) fn factor(self) -> Decimal {
        match self {
            Unit::W | Unit::Wh => ONE,
            Unit::KW | Unit::KWh => KILO,
        }
    }

    /// Whether it is a unit of power (W, kW) rather than energy.
    pub fn is_power(self) -> bool {
        matches!(self, Unit::W | Unit::KW)
    }

    /// Refuses a power unit for an energy value and the reverse.
    pub(crate) fn check(self, power: bool, what: &str) -> Result<Unit, String> {
        if self.is_power() == power {
            Ok(self)
        } else {
            Err(format!("{what}: {self:?} is not a unit of {}", if power { "power" } else { "energy" }))
        }
    }
}

/// Last topic segments that carry a device's availability (last wills, online flags).
const AVAILABILITY_TOPICS: [&str; 5] = ["lwt", "availability", "online", "status", "connected"];

/// Whether `topic` is one where devices publish their availability.
fn availability_topic(topic: &str) -> bool {
    let last = last_segment(topic);
    AVAILABILITY_TOPICS.iter().any(|t| last.eq_ignore_ascii_case(t))
}

/// An availability message (an MQTT last will, `online`, zigbee2mqtt's `{"state":"online"}`)
/// on an availability topic: never a measurement, whatever the decoder would make of it.
/// (Tasmota's `stat/<topic>/STATUS` replies are JSON objects with readings, and pass.)
fn availability(topic: &str, payload: &[u8]) -> Option<Reject> {
    if !availability_topic(topic) {
        return None;
    }
    let text = std::str::from_utf8(payload).ok()?.trim();
    let z2m_json = last_segment(topic).eq_ignore_ascii_case("availability");
    (z2m_json || !text.starts_with('{')).then(|| {
        let shown: String = text.chars().take(20).collect();
        Reject::new(
            Reason::Availability,
            format!("{topic} says {shown:?}: the device's availability, not a measurement"),
        )
    })
}

/// Whether a message on an availability topic says the device went away (`offline`, `false`,
/// `disconnected`, or zigbee2mqtt's `{"state":"offline"}`).
pub fn says_offline(topic: &str, payload: &[u8]) -> bool {
    if !availability_topic(topic) {
        return false;
    }
    let Ok(text) = std::str::from_utf8(payload) else { return false };
    let text = text.trim();
    let word = |t: &str| ["offline", "false", "disconnected"].iter().any(|w| t.eq_ignore_ascii_case(w));
    word(text)
        || serde_json::from_str::<Value>(text)
            .ok()
            .and_then(|v| v.get("state").and_then(Value::as_str).map(word))
            .unwrap_or(false)
}

/// Names of figures that reset every day, month or year, recognised in topics and keys.
const PERIOD_WORDS: [&str; 9] = ["today", "yesterday", "yieldday", "daily", "_day", "day-", "month", "year", "period"];

/// Whether `name` (a topic, object id or key) names a period figure rather than a counter.
pub(crate) fn period_aggregate(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    PERIOD_WORDS.iter().any(|w| lower.contains(w))
}

/// A refusal of the period figure `name`.
pub(crate) fn period_reject(name: &str) -> Reject {
    Reject::new(
        Reason::PeriodAggregate,
        format!("{name} is a figure for a period that resets (a day, month or year), not the meter's counter"),
    )
}

/// Runs `step` on a copy of `state` and keeps the copy only if it succeeds: a refused message
/// leaves a decoder that remembers earlier messages as it was.
pub(crate) fn transaction<T: Clone, R>(
    state: &mut T,
    step: impl FnOnce(&mut T) -> Result<R, Reject>,
) -> Result<R, Reject> {
    let mut next = state.clone();
    let result = step(&mut next)?;
    *state = next;
    Ok(result)
}

/// A quantity made of parts that arrive in separate messages (tariff registers, phases,
/// channels): known once every part has been seen, then their exact sum.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Parts(Vec<Option<i64>>);

impl Parts {
    /// `n` parts, none known yet.
    pub(crate) fn new(n: usize) -> Parts {
        Parts(vec![None; n])
    }

    /// Whether the quantity has any part at all.
    pub(crate) fn is_used(&self) -> bool {
        !self.0.is_empty()
    }

    /// Records part `i`.
    pub(crate) fn set(&mut self, i: usize, value: i64) {
        if let Some(slot) = self.0.get_mut(i) {
            *slot = Some(value);
        }
    }

    /// The sum once every part is known.
    pub(crate) fn total(&self, what: &str) -> Result<Option<i64>, Reject> {
        let mut sum = 0i64;
        for part in &self.0 {
            let Some(v) = part else { return Ok(None) };
            sum = add(sum, *v, what)?;
        }
        Ok((!self.0.is_empty()).then_some(sum))
    }
}

/// 1,000: kWh → Wh and kW → W.
pub(crate) const KILO: Decimal = Decimal::from_int(1000);
/// 1: the value is already in W or Wh.
pub(crate) const ONE: Decimal = Decimal::from_int(1);

/// The payload as UTF-8 text.
pub(crate) fn text(payload: &[u8]) -> Result<&str, Reject> {
    std::str::from_utf8(payload).map_err(|e| Reject::new(Reason::Malformed, format!("payload is not UTF-8 text ({e})")))
}

/// Parses a JSON payload, refusing deep nesting before the parser sees it and any object
/// that names a key twice (which of the two would the meter mean?).
pub(crate) fn parse_json(payload: &[u8]) -> Result<Value, Reject> {
    let text = text(payload)?;
    check_depth(text)?;
    match serde_json::from_str::<Strict>(text) {
        Ok(Strict(value)) => Ok(value),
        Err(e) => {
            let message = e.to_string();
            let reason = if message.starts_with(REPEATED) {
                Reason::RepeatedKey
            } else if message.contains("number out of range") {
                Reason::OutOfRange
            } else {
                Reason::Malformed
            };
            Err(Reject::new(reason, format!("invalid JSON: {message}")))
        }
    }
}

/// The start of the parser's message for a repeated key.
const REPEATED: &str = "the key";

/// A JSON value whose objects were checked for repeated keys while parsing.
struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Strict, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(Strict)
    }
}

/// Builds a [`Value`] as serde_json does, refusing a key an object already has.
struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(Strict(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let Strict(value) = map.next_value()?;
            if object.contains_key(&key) {
                let shown: String = key.chars().take(40).collect();
                return Err(de::Error::custom(format!("{REPEATED} {shown:?} appears twice in one object")));
            }
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
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

/// A plain-number payload in `unit`, as W or Wh.
pub(crate) fn plain_value(payload: &[u8], unit: Unit, what: &str) -> Result<i64, Reject> {
    scaled(plain_number(payload, what)?, unit.factor(), what)
}

/// The last segment of a topic.
pub(crate) fn last_segment(topic: &str) -> &str {
    topic.rsplit('/').next().unwrap_or(topic)
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

/// `a − b` (an import power less an export power), refusing overflow.
pub(crate) fn sub(a: i64, b: i64, what: &str) -> Result<i64, Reject> {
    a.checked_sub(b).ok_or_else(|| Reject::new(Reason::OutOfRange, format!("{what} overflows")))
}

/// Sums two integer quantities (tariff 1 + tariff 2), refusing overflow.
pub(crate) fn add(a: i64, b: i64, what: &str) -> Result<i64, Reject> {
    a.checked_add(b).ok_or_else(|| Reject::new(Reason::OutOfRange, format!("{what} overflows")))
}
