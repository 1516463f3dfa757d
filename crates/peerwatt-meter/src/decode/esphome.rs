//! ESPHome: one plain number per topic, `<prefix>/sensor/<object_id>/state`.
//!
//! By default the DSMR component's sensors, powers in kW and energies in kWh:
//! `power_delivered` / `power_consumed` and `power_returned` / `power_produced`, and the two
//! tariff registers of each direction (`energy_delivered_tariff1`, `energy_consumed_tariff_1`,
//! `energy_returned_tariff2`, `energy_produced_tariff_2`, …). Users who named their sensors
//! otherwise, or read another meter, list their object ids and units. Import and export are
//! reported once all their registers are known; grid power once both directions are.

use serde::{Deserialize, Serialize};

use super::{Format, Parts, Unit, period_aggregate, period_reject, plain_number, scaled};
use crate::reading::{Reason, Reject, Sample};

const fn kw() -> Unit {
    Unit::KW
}
const fn kwh() -> Unit {
    Unit::KWh
}

/// The object ids of an ESPHome meter, each list summed (tariff registers, phases).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EsphomeSensors {
    /// Power drawn from the grid; with no `power_out`, a signed power (+ import, − export).
    #[serde(default)]
    pub power_in: Vec<String>,
    /// Power fed into the grid (≥ 0), subtracted from `power_in`.
    #[serde(default)]
    pub power_out: Vec<String>,
    /// Import counter registers.
    #[serde(default)]
    pub import: Vec<String>,
    /// Export counter registers.
    #[serde(default)]
    pub export: Vec<String>,
    /// Unit of the powers, default kW.
    #[serde(default = "kw")]
    pub power_unit: Unit,
    /// Unit of the counters, default kWh.
    #[serde(default = "kwh")]
    pub energy_unit: Unit,
}

/// What an object id measures, and which register of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Quantity {
    PowerIn(usize),
    PowerOut(usize),
    Import(usize),
    Export(usize),
}

/// The DSMR component's object ids, in the spellings seen in the field.
fn dsmr_default(object_id: &str) -> Option<Quantity> {
    let tariff = |rest: &str| match rest {
        "1" | "_1" => Some(0),
        "2" | "_2" => Some(1),
        _ => None,
    };
    if let Some(rest) =
        object_id.strip_prefix("energy_delivered_tariff").or_else(|| object_id.strip_prefix("energy_consumed_tariff"))
    {
        return tariff(rest).map(Quantity::Import);
    }
    if let Some(rest) =
        object_id.strip_prefix("energy_returned_tariff").or_else(|| object_id.strip_prefix("energy_produced_tariff"))
    {
        return tariff(rest).map(Quantity::Export);
    }
    match object_id {
        "power_consumed" | "power_delivered" => Some(Quantity::PowerIn(0)),
        "power_produced" | "power_returned" => Some(Quantity::PowerOut(0)),
        _ => None,
    }
}

/// Decodes ESPHome sensor states, remembering the latest value of each.
#[derive(Debug, Clone)]
pub struct EsphomeDecoder {
    sensors: Option<EsphomeSensors>,
    power_unit: Unit,
    energy_unit: Unit,
    power_in: Parts,
    power_out: Parts,
    import: Parts,
    export: Parts,
}

impl Default for EsphomeDecoder {
    fn default() -> Self {
        EsphomeDecoder {
            sensors: None,
            power_unit: Unit::KW,
            energy_unit: Unit::KWh,
            power_in: Parts::new(1),
            power_out: Parts::new(1),
            import: Parts::new(2),
            export: Parts::new(2),
        }
    }
}

impl EsphomeDecoder {
    /// A decoder for these object ids (default: the DSMR component's).
    pub fn new(sensors: Option<EsphomeSensors>) -> Result<EsphomeDecoder, String> {
        let Some(s) = sensors else { return Ok(EsphomeDecoder::default()) };
        s.power_unit.check(true, "esphome.power_unit")?;
        s.energy_unit.check(false, "esphome.energy_unit")?;
        if s.power_in.is_empty() && s.import.is_empty() && s.export.is_empty() {
            return Err("esphome lists no power_in, import or export object id".into());
        }
        if !s.power_out.is_empty() && s.power_in.is_empty() {
            return Err("esphome.power_out needs power_in (the power drawn from the grid)".into());
        }
        Ok(EsphomeDecoder {
            power_unit: s.power_unit,
            energy_unit: s.energy_unit,
            power_in: Parts::new(s.power_in.len()),
            power_out: Parts::new(s.power_out.len()),
            import: Parts::new(s.import.len()),
            export: Parts::new(s.export.len()),
            sensors: Some(s),
        })
    }

    fn quantity(&self, object_id: &str) -> Option<Quantity> {
        let Some(s) = &self.sensors else { return dsmr_default(object_id) };
        let find = |list: &[String]| list.iter().position(|id| id == object_id);
        find(&s.power_in)
            .map(Quantity::PowerIn)
            .or_else(|| find(&s.power_out).map(Quantity::PowerOut))
            .or_else(|| find(&s.import).map(Quantity::Import))
            .or_else(|| find(&s.export).map(Quantity::Export))
    }

    fn unknown(&self, id: &str) -> Reject {
        if period_aggregate(id) {
            return period_reject(id);
        }
        let lower = id.to_ascii_lowercase();
        let measures = lower.contains("power") || lower.contains("energy");
        if measures && ["_l1", "_l2", "_l3", "phase"].iter().any(|p| lower.contains(p)) {
            return Reject::new(
                Reason::PartialQuantity,
                format!("ESPHome sensor {id} is one phase, not the meter's total"),
            );
        }
        let known = if self.sensors.is_some() { "in [meter.<role>.esphome]" } else { "a DSMR power or energy sensor" };
        Reject::new(Reason::WrongTopic, format!("ESPHome sensor {id} is not {known}"))
    }
}

/// The object id of `<prefix>/sensor/<object_id>/state`.
fn object_id(topic: &str) -> Option<&str> {
    let rest = topic.strip_suffix("/state")?;
    let (_, id) = rest.rsplit_once("/sensor/")?;
    (!id.is_empty() && !id.contains('/')).then_some(id)
}

impl super::Remembering for EsphomeDecoder {
    const FORMAT: Format = Format::Esphome;

    fn apply(&mut self, topic: &str, payload: &[u8]) -> Result<Sample, Reject> {
        let id = object_id(topic).ok_or_else(|| {
            Reject::new(Reason::WrongTopic, format!("{topic} is not an ESPHome …/sensor/<object_id>/state topic"))
        })?;
        // The value first: a failed sensor's `nan` is counted as such whichever sensor it is.
        let value = plain_number(payload, id)?;
        let q = self.quantity(id).ok_or_else(|| self.unknown(id))?;
        let mut sample = Sample::default();
        match q {
            Quantity::PowerIn(i) | Quantity::PowerOut(i) => {
                let value = scaled(value, self.power_unit.factor(), id)?;
                let per_direction = self.power_out.is_used();
                if value < 0 && per_direction {
                    return Err(Reject::new(
                        Reason::NegativePower,
                        format!("{id} is negative; a power per direction is ≥ 0"),
                    ));
                }
                let parts = if matches!(q, Quantity::PowerIn(_)) { &mut self.power_in } else { &mut self.power_out };
                parts.set(i, value);
                let drawn = self.power_in.total("power")?;
                sample.power = if self.power_out.is_used() {
                    drawn.zip(self.power_out.total("power")?).map(|(i, o)| i - o)
                } else {
                    drawn
                };
            }
            Quantity::Import(i) => {
                self.import.set(i, scaled(value, self.energy_unit.factor(), id)?);
                sample.energy_in = self.import.total("import")?;
            }
            Quantity::Export(i) => {
                self.export.set(i, scaled(value, self.energy_unit.factor(), id)?);
                sample.energy_out = self.export.total("export")?;
            }
        }
        Ok(sample)
    }
}
