//! Tasmota: `tele/<topic>/SENSOR`.
//!
//! SML smart-meter readers: `{"Time":"…","SML":{"Total_in":34507.4761,"Total_out":14737.1422,"Power_curr":-894}}`
//! (kWh counters, W, negative = export). The SML names come from the user's meter script, so
//! they are configurable. Plugs: `{"ENERGY":{"Total":196.708,"Power":0,…}}` (kWh, W).

use serde::{Deserialize, Serialize};

use super::{Decoder, Format, KILO, ONE, field, object, parse_json, scaled};
use crate::reading::{Reason, Reject, Sample};

/// The JSON names a Tasmota SML script uses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TasmotaSmlKeys {
    /// The object holding the values (the script's meter name), default `SML`.
    pub object: String,
    /// Import counter in kWh, default `Total_in`.
    pub import: String,
    /// Export counter in kWh, default `Total_out`.
    pub export: String,
    /// Current power in W (negative = export), default `Power_curr`.
    pub power: String,
}

impl Default for TasmotaSmlKeys {
    fn default() -> Self {
        TasmotaSmlKeys {
            object: "SML".into(),
            import: "Total_in".into(),
            export: "Total_out".into(),
            power: "Power_curr".into(),
        }
    }
}

/// Decodes Tasmota SENSOR telemetry.
#[derive(Debug, Clone, Default)]
pub struct TasmotaDecoder {
    keys: TasmotaSmlKeys,
}

impl TasmotaDecoder {
    /// A decoder using these SML names.
    pub fn new(keys: TasmotaSmlKeys) -> TasmotaDecoder {
        TasmotaDecoder { keys }
    }
}

impl Decoder for TasmotaDecoder {
    fn format(&self) -> Format {
        Format::Tasmota
    }

    fn decode(&mut self, _topic: &str, payload: &[u8]) -> Result<Sample, Reject> {
        let v = parse_json(payload)?;
        let k = &self.keys;
        if let Some(sml) = object(&v, &k.object)? {
            let sample = Sample {
                power: field(sml, &k.power)?.map(|d| scaled(d, ONE, &k.power)).transpose()?,
                energy_in: field(sml, &k.import)?.map(|d| scaled(d, KILO, &k.import)).transpose()?,
                energy_out: field(sml, &k.export)?.map(|d| scaled(d, KILO, &k.export)).transpose()?,
            };
            if sample.is_empty() {
                return Err(Reject::new(
                    Reason::MissingField,
                    format!("{} has none of {}, {}, {}", k.object, k.import, k.export, k.power),
                ));
            }
            return Ok(sample);
        }
        if let Some(energy) = object(&v, "ENERGY")? {
            let sample = Sample {
                power: field(energy, "Power")?.map(|d| scaled(d, ONE, "Power")).transpose()?,
                energy_in: field(energy, "Total")?.map(|d| scaled(d, KILO, "Total")).transpose()?,
                energy_out: None,
            };
            if sample.is_empty() {
                return Err(Reject::new(Reason::MissingField, "ENERGY has neither Total nor Power"));
            }
            return Ok(sample);
        }
        Err(Reject::new(Reason::MissingField, format!("neither {} nor ENERGY in the payload", k.object)))
    }
}
