//! `format = "auto"`: recognise the firmware from the first payload, then decode with it.

use serde_json::Value;

use super::{Decoder, DecoderSettings, Format, TasmotaSmlKeys, decoder_for};
use crate::reading::{Reason, Reject, Sample};

/// Gen2/Gen3 Shelly components that carry power or energy, as they appear in status topics.
const SHELLY_STATUS: [&str; 6] =
    ["/status/em:", "/status/emdata:", "/status/em1:", "/status/em1data:", "/status/switch:", "/status/pm1:"];
/// Topic endings of plain-number topics, with the firmware that publishes them.
const PLAIN_TOPICS: [(&str, Format); 4] = [
    ("/0/power", Format::Opendtu),
    ("/0/yieldtotal", Format::Opendtu),
    ("/ac/power", Format::Opendtu),
    ("/ac/yieldtotal", Format::Opendtu),
];

/// Which format a message looks like, if any. Checks the topic shape first (Shelly, ESPHome,
/// OpenDTU, DSMR-reader's split topics are recognisable by topic), then the JSON keys.
pub fn detect(topic: &str, payload: &[u8], sml: &TasmotaSmlKeys) -> Option<Format> {
    if SHELLY_STATUS.iter().any(|s| topic.contains(s)) || topic.ends_with("/events/rpc") || topic.contains("/emeter/") {
        return Some(Format::ShellyGen2);
    }
    let text = std::str::from_utf8(payload).ok()?.trim();
    if crate::decimal::Decimal::parse(text).is_ok() {
        if topic.contains("/sensor/") && topic.ends_with("/state") {
            return Some(Format::Esphome);
        }
        if topic.starts_with("zigbee2mqtt/") && (topic.ends_with("/power") || topic.ends_with("/energy")) {
            return Some(Format::Zigbee2mqtt);
        }
        if topic.contains("/reading/electricity_") {
            return Some(Format::DsmrReader);
        }
        if topic.contains("/relay/") {
            return None; // a Gen1 Shelly plug's relay/0/power, not an inverter's channel 0
        }
        return PLAIN_TOPICS.iter().find(|(end, _)| topic.ends_with(end)).map(|(_, f)| *f);
    }
    if text.len() > 64 * 1024 {
        return None;
    }
    let Ok(parsed @ Value::Object(_)) = serde_json::from_str::<Value>(text) else { return None };
    let v = parsed.get("StatusSNS").filter(|s| s.is_object()).unwrap_or(&parsed);
    let tasmota = ["ENERGY", "StatusPWR"].iter().any(|k| v.get(k).is_some_and(Value::is_object))
        || topic.ends_with("/ENERGY") && v.get("Total").is_some(); // before Tasmota 5.11
    if tasmota || sml.find(v).is_some() {
        Some(Format::Tasmota)
    } else if v.get("electricity_delivered_1").is_some() {
        Some(Format::DsmrReader)
    } else if ["power", "energy", "produced_energy", "current_tier1_summ_delivered"].iter().any(|k| v.get(k).is_some())
    {
        Some(Format::Zigbee2mqtt)
    } else {
        None
    }
}

/// Recognises the format on the first recognisable message, then delegates to its decoder.
#[derive(Debug)]
pub struct AutoDecoder {
    settings: DecoderSettings,
    inner: Option<Box<dyn Decoder>>,
}

impl AutoDecoder {
    /// A decoder that has not recognised anything yet.
    pub fn new(settings: DecoderSettings) -> AutoDecoder {
        AutoDecoder { settings, inner: None }
    }
}

impl Decoder for AutoDecoder {
    fn format(&self) -> Format {
        self.inner.as_ref().map_or(Format::Auto, |d| d.format())
    }

    fn snapshot(&self) -> Option<Box<dyn Decoder>> {
        let inner = match &self.inner {
            None => None,
            Some(d) => Some(d.snapshot()?), // a stateless format needs no undoing
        };
        Some(Box::new(AutoDecoder { settings: self.settings.clone(), inner }))
    }

    fn decode_payload(&mut self, topic: &str, payload: &[u8]) -> Result<Sample, Reject> {
        if self.inner.is_none() {
            let format = detect(topic, payload, &self.settings.sml).ok_or_else(|| {
                Reject::new(
                    Reason::UnrecognisedFormat,
                    format!("cannot tell the meter format from this message on {topic}"),
                )
            })?;
            let decoder =
                decoder_for(format, &self.settings).map_err(|e| Reject::new(Reason::UnrecognisedFormat, e))?;
            tracing::info!(%topic, %format, "recognised meter format");
            self.inner = Some(decoder);
        }
        match self.inner.as_mut() {
            Some(d) => d.decode(topic, payload),
            None => Err(Reject::new(Reason::UnrecognisedFormat, "no format recognised")),
        }
    }
}
