//! `format = "auto"`: recognise the firmware from the first payload, then decode with it.

use serde_json::Value;

use super::{Decoder, Format, TasmotaSmlKeys, decoder_for};
use crate::reading::{Reason, Reject, Sample};

/// Which format a message looks like, if any. Checks the topic shape first (Shelly, ESPHome,
/// OpenDTU are recognisable by topic), then the JSON keys.
pub fn detect(topic: &str, payload: &[u8], sml: &TasmotaSmlKeys) -> Option<Format> {
    if topic.ends_with("/status/em:0") || topic.ends_with("/status/emdata:0") || topic.ends_with("/events/rpc") {
        return Some(Format::ShellyGen2);
    }
    let text = std::str::from_utf8(payload).ok()?.trim();
    if crate::decimal::Decimal::parse(text).is_ok() {
        if topic.contains("/sensor/") && topic.ends_with("/state") {
            return Some(Format::Esphome);
        }
        if topic.ends_with("/0/power") || topic.ends_with("/0/yieldtotal") {
            return Some(Format::Opendtu);
        }
        return None;
    }
    if text.len() > 64 * 1024 {
        return None;
    }
    let Ok(Value::Object(map)) = serde_json::from_str::<Value>(text) else { return None };
    if map.get(&sml.object).is_some_and(Value::is_object) || map.get("ENERGY").is_some_and(Value::is_object) {
        Some(Format::Tasmota)
    } else if map.contains_key("electricity_delivered_1") {
        Some(Format::DsmrReader)
    } else if map.contains_key("power") || map.contains_key("energy") {
        Some(Format::Zigbee2mqtt)
    } else {
        None
    }
}

/// Recognises the format on the first recognisable message, then delegates to its decoder.
#[derive(Debug)]
pub struct AutoDecoder {
    sml: TasmotaSmlKeys,
    inner: Option<Box<dyn Decoder>>,
}

impl AutoDecoder {
    /// A decoder that has not recognised anything yet.
    pub fn new(sml: TasmotaSmlKeys) -> AutoDecoder {
        AutoDecoder { sml, inner: None }
    }
}

impl Decoder for AutoDecoder {
    fn format(&self) -> Format {
        self.inner.as_ref().map_or(Format::Auto, |d| d.format())
    }

    fn decode(&mut self, topic: &str, payload: &[u8]) -> Result<Sample, Reject> {
        if self.inner.is_none() {
            let format = detect(topic, payload, &self.sml).ok_or_else(|| {
                Reject::new(
                    Reason::UnrecognisedFormat,
                    format!("cannot tell the meter format from this message on {topic}"),
                )
            })?;
            let decoder =
                decoder_for(format, None, &self.sml).map_err(|e| Reject::new(Reason::UnrecognisedFormat, e))?;
            tracing::info!(%topic, %format, "recognised meter format");
            self.inner = Some(decoder);
        }
        match self.inner.as_mut() {
            Some(d) => d.decode(topic, payload),
            None => Err(Reject::new(Reason::UnrecognisedFormat, "no format recognised")),
        }
    }
}
