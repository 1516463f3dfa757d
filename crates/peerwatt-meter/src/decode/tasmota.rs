//! Tasmota: `tele/<topic>/SENSOR`.
//!
//! SML smart-meter readers: `{"Time":"…","SML":{"Total_in":34507.4761,"Total_out":14737.1422,"Power_curr":-894}}`
//! (kWh counters, W, negative = export). The SML names come from the user's meter script, so
//! they are configurable. Plugs: `{"ENERGY":{"Total":196.708,"Power":0,…}}` (kWh, W).

use serde::{Deserialize, Serialize};

use super::{Decoder, Format, KILO, ONE, field, field_sum, object, parse_json, scaled};
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
        let parsed = parse_json(payload)?;
        // The `Status 10` reply (stat/<topic>/STATUS10, and `cm?cmnd=status 10` over HTTP)
        // wraps the same sensors in StatusSNS (STATUS8 on older firmware).
        let v = object(&parsed, "StatusSNS")?.unwrap_or(&parsed);
        let k = &self.keys;
        if let Some(sml) = object(v, &k.object)? {
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
        if let Some(energy) = object(v, "ENERGY")? {
            // Multi-channel and three-phase devices publish arrays (or, for Total, an object
            // keyed by phase): summed exactly, then rounded once. A meter that counts import
            // and export (ImportActive/ExportActive, per phase) gives both counters; its
            // Total is Tasmota's own sum and says neither.
            let import = field_sum(energy, "ImportActive")?;
            let export = field_sum(energy, "ExportActive")?;
            let (total, name) = match import {
                Some(i) => (Some(i), "ImportActive"),
                None => (field_sum(energy, "Total")?, "Total"),
            };
            let sample = Sample {
                power: field_sum(energy, "Power")?.map(|d| scaled(d, ONE, "Power")).transpose()?,
                energy_in: total.map(|d| scaled(d, KILO, name)).transpose()?,
                energy_out: export.map(|d| scaled(d, KILO, "ExportActive")).transpose()?,
            };
            if sample.is_empty() {
                return Err(Reject::new(Reason::MissingField, "ENERGY has neither Total nor Power"));
            }
            return Ok(sample);
        }
        Err(Reject::new(Reason::MissingField, format!("neither {} nor ENERGY in the payload", k.object)))
    }
}
