//! Generic JSON: any payload, read with JSON pointers (RFC 6901) for power, import and export,
//! multiplied by `scale` (to W and Wh; `energy_scale` overrides it for the counters) and
//! negated by `invert` (for meters that count export as positive), as evcc users know it.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Decoder, Format, number, parse_json, scaled};
use crate::decimal::Decimal;
use crate::reading::{Reason, Reject, Sample};

/// A scale factor written as a TOML number or string (`scale = 0.001`, `scale = "1000"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ScaleValue {
    /// An integer.
    Int(i64),
    /// A TOML float; its shortest decimal text is used, so `0.001` means exactly 1/1000.
    Float(f64),
    /// A decimal string.
    Text(String),
}

impl ScaleValue {
    fn decimal(&self) -> Result<Decimal, String> {
        let text = match self {
            ScaleValue::Int(i) => i.to_string(),
            ScaleValue::Float(f) => f.to_string(),
            ScaleValue::Text(s) => s.clone(),
        };
        Decimal::parse(&text).map_err(|e| format!("scale {text:?}: {e}"))
    }
}

/// Settings of the generic JSON decoder.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenericJsonConfig {
    /// Pointer to the power (e.g. `/meter/power`); after scaling, W with + import.
    pub power: Option<String>,
    /// Pointer to the import counter; after scaling, Wh.
    pub import: Option<String>,
    /// Pointer to the export counter; after scaling, Wh.
    pub export: Option<String>,
    /// Multiplier for every value (default 1).
    pub scale: Option<ScaleValue>,
    /// Multiplier for the counters, if it differs from `scale`.
    pub energy_scale: Option<ScaleValue>,
    /// Negate the power (meters that report export as positive).
    #[serde(default)]
    pub invert: bool,
}

/// Decodes any JSON with configured pointers.
#[derive(Debug, Clone)]
pub struct GenericJsonDecoder {
    cfg: GenericJsonConfig,
    power_scale: Decimal,
    energy_scale: Decimal,
}

impl GenericJsonDecoder {
    /// A decoder for `cfg`; refuses pointers that are not RFC 6901 and bad scales.
    pub fn new(cfg: GenericJsonConfig) -> Result<GenericJsonDecoder, String> {
        for p in [&cfg.power, &cfg.import, &cfg.export].into_iter().flatten() {
            if !p.is_empty() && !p.starts_with('/') {
                return Err(format!("JSON pointer {p:?} must start with '/'"));
            }
        }
        if cfg.power.is_none() && cfg.import.is_none() && cfg.export.is_none() {
            return Err("format = \"json\" needs at least one of power, import, export".into());
        }
        let power_scale = cfg.scale.as_ref().map_or(Ok(Decimal::from_int(1)), ScaleValue::decimal)?;
        let energy_scale = cfg.energy_scale.as_ref().map_or(Ok(power_scale), ScaleValue::decimal)?;
        Ok(GenericJsonDecoder { cfg, power_scale, energy_scale })
    }

    fn at(v: &Value, pointer: &Option<String>, scale: Decimal) -> Result<Option<i64>, Reject> {
        let Some(p) = pointer else { return Ok(None) };
        match v.pointer(p) {
            None | Some(Value::Null) => Err(Reject::new(Reason::MissingField, format!("nothing at {p}"))),
            Some(value) => scaled(number(value, p)?, scale, p).map(Some),
        }
    }
}

impl Decoder for GenericJsonDecoder {
    fn format(&self) -> Format {
        Format::Json
    }

    fn decode(&mut self, _topic: &str, payload: &[u8]) -> Result<Sample, Reject> {
        let v = parse_json(payload)?;
        let mut power = Self::at(&v, &self.cfg.power, self.power_scale)?;
        if self.cfg.invert {
            power = power.map(|p| -p);
        }
        Ok(Sample {
            power,
            energy_in: Self::at(&v, &self.cfg.import, self.energy_scale)?,
            energy_out: Self::at(&v, &self.cfg.export, self.energy_scale)?,
        })
    }
}
