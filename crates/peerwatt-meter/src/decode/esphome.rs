//! ESPHome's DSMR component: one plain number per topic, `<prefix>/sensor/<object_id>/state`,
//! powers in kW and energies in kWh. The object ids follow the sensor names of the DSMR
//! component (`power_consumed`, `energy_delivered_tariff1`, …; `_tariff_1` spellings too).
//! Import and export are the sums of both tariffs, so they are reported once both are known;
//! grid power once both directions are known.

use super::{Decoder, Format, KILO, add, plain_number, scaled};
use crate::reading::{Reason, Reject, Sample};

/// What an ESPHome DSMR object id measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Quantity {
    PowerIn,
    PowerOut,
    ImportTariff(usize),
    ExportTariff(usize),
}

fn quantity(object_id: &str) -> Option<Quantity> {
    Some(match object_id {
        "power_consumed" | "power_delivered" => Quantity::PowerIn,
        "power_produced" | "power_returned" => Quantity::PowerOut,
        "energy_delivered_tariff1" | "energy_delivered_tariff_1" => Quantity::ImportTariff(0),
        "energy_delivered_tariff2" | "energy_delivered_tariff_2" => Quantity::ImportTariff(1),
        "energy_returned_tariff1" | "energy_returned_tariff_1" => Quantity::ExportTariff(0),
        "energy_returned_tariff2" | "energy_returned_tariff_2" => Quantity::ExportTariff(1),
        _ => return None,
    })
}

/// Decodes ESPHome DSMR sensor states, remembering the latest value of each.
#[derive(Debug, Clone, Default)]
pub struct EsphomeDecoder {
    power_in: Option<i64>,
    power_out: Option<i64>,
    import: [Option<i64>; 2],
    export: [Option<i64>; 2],
}

/// The object id of `<prefix>/sensor/<object_id>/state`.
fn object_id(topic: &str) -> Option<&str> {
    let rest = topic.strip_suffix("/state")?;
    let (_, id) = rest.rsplit_once("/sensor/")?;
    (!id.is_empty() && !id.contains('/')).then_some(id)
}

impl Decoder for EsphomeDecoder {
    fn format(&self) -> Format {
        Format::Esphome
    }

    fn decode(&mut self, topic: &str, payload: &[u8]) -> Result<Sample, Reject> {
        let id = object_id(topic).ok_or_else(|| {
            Reject::new(Reason::WrongTopic, format!("{topic} is not an ESPHome …/sensor/<object_id>/state topic"))
        })?;
        let q = quantity(id).ok_or_else(|| {
            Reject::new(Reason::WrongTopic, format!("ESPHome sensor {id} is not a DSMR power or energy sensor"))
        })?;
        let value = scaled(plain_number(payload, id)?, KILO, id)?;
        match q {
            Quantity::PowerIn | Quantity::PowerOut if value < 0 => {
                return Err(Reject::new(
                    Reason::NegativePower,
                    format!("{id} is negative; DSMR reports both directions as ≥ 0"),
                ));
            }
            Quantity::PowerIn => self.power_in = Some(value),
            Quantity::PowerOut => self.power_out = Some(value),
            Quantity::ImportTariff(t) => self.import[t] = Some(value),
            Quantity::ExportTariff(t) => self.export[t] = Some(value),
        }
        let both = |pair: [Option<i64>; 2], what| match pair {
            [Some(a), Some(b)] => add(a, b, what).map(Some),
            _ => Ok(None),
        };
        Ok(match q {
            Quantity::PowerIn | Quantity::PowerOut => {
                Sample { power: self.power_in.zip(self.power_out).map(|(i, o)| i - o), ..Sample::default() }
            }
            Quantity::ImportTariff(_) => Sample { energy_in: both(self.import, "import")?, ..Sample::default() },
            Quantity::ExportTariff(_) => Sample { energy_out: both(self.export, "export")?, ..Sample::default() },
        })
    }
}
