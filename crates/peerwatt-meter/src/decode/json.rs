//! Generic JSON: any payload, read with JSON pointers (RFC 6901), as evcc users know it.
//!
//! Each quantity (power, an import power subtracted from it, import and export counters) is one
//! source or a list of sources that are summed (phases, tariff registers). A source is a
//! pointer (`"/meter/power"`; `""` is the whole payload, so a plain-number topic works), or a
//! table with the topic it comes from, its pointer and its unit, for devices that publish each
//! value on its own topic. Values are converted exactly from their unit (`power_unit`:
//! W or kW, `energy_unit`: Wh or kWh, or a source's own `unit`), multiplied by `scale` /
//! `energy_scale` for anything else, and the power is negated by `invert`. A quantity whose
//! sources sit on several topics is reported once every one of them has arrived.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Format, Parts, Unit, number, parse_json, plain_number, scaled};
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

/// Where one value comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Source {
    /// A JSON pointer into every message (`""`: the whole payload).
    Pointer(String),
    /// A value on its own topic.
    On {
        /// The topic it is published on (exactly; default: every topic).
        topic: Option<String>,
        /// The pointer into that topic's payload (default `""`, a plain number).
        #[serde(default)]
        pointer: String,
        /// Its unit, if not the quantity's.
        unit: Option<Unit>,
    },
}

impl Source {
    fn topic(&self) -> Option<&str> {
        match self {
            Source::Pointer(_) => None,
            Source::On { topic, .. } => topic.as_deref(),
        }
    }
    fn pointer(&self) -> &str {
        match self {
            Source::Pointer(p) | Source::On { pointer: p, .. } => p,
        }
    }
    fn unit(&self) -> Option<Unit> {
        match self {
            Source::Pointer(_) => None,
            Source::On { unit, .. } => *unit,
        }
    }
}

/// One source, or several that are summed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Sources {
    /// One source.
    One(Source),
    /// Sources summed (phases, tariff registers).
    Sum(Vec<Source>),
}

impl Sources {
    fn list(&self) -> &[Source] {
        match self {
            Sources::One(s) => std::slice::from_ref(s),
            Sources::Sum(list) => list,
        }
    }
}

impl From<&str> for Sources {
    fn from(pointer: &str) -> Sources {
        Sources::One(Source::Pointer(pointer.to_owned()))
    }
}

/// Settings of the generic JSON decoder.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenericJsonConfig {
    /// Power (+ import, − export); summed if a list.
    pub power: Option<Sources>,
    /// Power fed into the grid, subtracted from `power` (meters that publish import power and
    /// export power separately, both ≥ 0).
    pub power_export: Option<Sources>,
    /// Import counter; summed if a list.
    pub import: Option<Sources>,
    /// Export counter; summed if a list.
    pub export: Option<Sources>,
    /// Unit of the powers (W or kW), default W.
    pub power_unit: Option<Unit>,
    /// Unit of the counters (Wh or kWh), default Wh.
    pub energy_unit: Option<Unit>,
    /// A further multiplier for every value (default 1), for units other than these.
    pub scale: Option<ScaleValue>,
    /// A further multiplier for the counters, if it differs from `scale`.
    pub energy_scale: Option<ScaleValue>,
    /// Negate the power (meters that report export as positive).
    #[serde(default)]
    pub invert: bool,
}

/// Which quantity a source feeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Quantity {
    Power,
    PowerExport,
    Import,
    Export,
}

impl Quantity {
    const ALL: [Quantity; 4] = [Quantity::Power, Quantity::PowerExport, Quantity::Import, Quantity::Export];
    fn name(self) -> &'static str {
        match self {
            Quantity::Power => "power",
            Quantity::PowerExport => "power_export",
            Quantity::Import => "import",
            Quantity::Export => "export",
        }
    }
    fn is_power(self) -> bool {
        matches!(self, Quantity::Power | Quantity::PowerExport)
    }
}

/// One compiled source: where, which quantity and part, and the exact factor to W or Wh.
#[derive(Debug, Clone)]
struct Compiled {
    topic: Option<String>,
    pointer: String,
    quantity: Quantity,
    part: usize,
    factor: Decimal,
}

/// Decodes any JSON with configured sources.
#[derive(Debug, Clone)]
pub struct GenericJsonDecoder {
    /// Shared by the copies a message is decoded into.
    sources: std::sync::Arc<[Compiled]>,
    parts: [Parts; 4],
    invert: bool,
}

impl GenericJsonDecoder {
    /// A decoder for `cfg`; refuses pointers that are not RFC 6901, wrong units and bad scales.
    pub fn new(cfg: GenericJsonConfig) -> Result<GenericJsonDecoder, String> {
        let scale = cfg.scale.as_ref().map_or(Ok(Decimal::from_int(1)), ScaleValue::decimal)?;
        let energy_scale = cfg.energy_scale.as_ref().map_or(Ok(scale), ScaleValue::decimal)?;
        let power_unit = cfg.power_unit.unwrap_or(Unit::W).check(true, "json.power_unit")?;
        let energy_unit = cfg.energy_unit.unwrap_or(Unit::Wh).check(false, "json.energy_unit")?;
        let mut sources = Vec::new();
        let mut parts: [Parts; 4] = Default::default();
        for (q, configured) in Quantity::ALL.into_iter().zip([&cfg.power, &cfg.power_export, &cfg.import, &cfg.export])
        {
            let Some(configured) = configured else { continue };
            let list = configured.list();
            if list.is_empty() {
                return Err(format!("json.{} lists no source", q.name()));
            }
            for (part, s) in list.iter().enumerate() {
                let p = s.pointer();
                if !p.is_empty() && !p.starts_with('/') {
                    return Err(format!("JSON pointer {p:?} must start with '/' (or be \"\" for the whole payload)"));
                }
                let (default_unit, multiplier) =
                    if q.is_power() { (power_unit, scale) } else { (energy_unit, energy_scale) };
                let unit = s.unit().unwrap_or(default_unit).check(q.is_power(), &format!("json.{} unit", q.name()))?;
                let factor = unit.factor().checked_mul(multiplier).map_err(|e| format!("json.{}: {e}", q.name()))?;
                sources.push(Compiled {
                    topic: s.topic().map(str::to_owned),
                    pointer: p.to_owned(),
                    quantity: q,
                    part,
                    factor,
                });
            }
            parts[q as usize] = Parts::new(list.len());
        }
        if cfg.power_export.is_some() && cfg.power.is_none() {
            return Err("json.power_export needs json.power (the import power it is subtracted from)".into());
        }
        if sources.is_empty() {
            return Err("format = \"json\" needs at least one of power, import, export".into());
        }
        Ok(GenericJsonDecoder { sources: sources.into(), parts, invert: cfg.invert })
    }

    /// The value of one source in a message (parsed once, as JSON or as a plain number).
    fn value(source: &Compiled, message: &Message) -> Result<i64, Reject> {
        let p = &source.pointer;
        let what = if p.is_empty() { source.quantity.name() } else { p.as_str() };
        let d = match message {
            Message::Json(v) => match v.pointer(p) {
                None | Some(Value::Null) => return Err(Reject::new(Reason::MissingField, format!("nothing at {p:?}"))),
                Some(value) => number(value, what)?,
            },
            Message::Plain(d) if p.is_empty() => *d,
            Message::Plain(_) => {
                return Err(Reject::new(Reason::WrongType, format!("a plain number, where {p:?} points into JSON")));
            }
        };
        scaled(d, source.factor, what)
    }

    fn total(&self, q: Quantity) -> Result<Option<i64>, Reject> {
        self.parts[q as usize].total(q.name())
    }
}

/// A payload, parsed once.
enum Message {
    Json(Value),
    Plain(Decimal),
}

impl super::Remembering for GenericJsonDecoder {
    const FORMAT: Format = Format::Json;

    fn apply(&mut self, topic: &str, payload: &[u8]) -> Result<Sample, Reject> {
        let matching: Vec<usize> =
            (0..self.sources.len()).filter(|i| self.sources[*i].topic.as_deref().is_none_or(|t| t == topic)).collect();
        if matching.is_empty() {
            return Err(Reject::new(Reason::WrongTopic, format!("no [meter.<role>.json] source reads {topic}")));
        }
        let trimmed = payload.trim_ascii();
        let message = if trimmed.starts_with(b"{") || trimmed.starts_with(b"[") {
            Message::Json(parse_json(payload)?)
        } else {
            Message::Plain(plain_number(payload, topic)?)
        };
        // Every value first, so a refused message changes nothing.
        let mut values = Vec::with_capacity(matching.len());
        for i in &matching {
            values.push(Self::value(&self.sources[*i], &message)?);
        }
        let mut touched = [false; 4];
        for (i, v) in matching.iter().zip(values) {
            let s = &self.sources[*i];
            self.parts[s.quantity as usize].set(s.part, v);
            touched[s.quantity as usize] = true;
        }
        let mut power = None;
        if touched[Quantity::Power as usize] || touched[Quantity::PowerExport as usize] {
            power = self.total(Quantity::Power)?;
            if self.parts[Quantity::PowerExport as usize].is_used() {
                power = match (power, self.total(Quantity::PowerExport)?) {
                    (Some(p), Some(out)) => Some(super::sub(p, out, "power")?),
                    _ => None,
                };
            }
            if self.invert {
                power = power.map(|p| super::sub(0, p, "power")).transpose()?;
            }
        }
        let counter = |q: Quantity| if touched[q as usize] { self.total(q) } else { Ok(None) };
        Ok(Sample { power, energy_in: counter(Quantity::Import)?, energy_out: counter(Quantity::Export)? })
    }
}
