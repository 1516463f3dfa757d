//! DSMR-reader: the JSON telegram (`dsmr/json`), or split topics (`dsmr/reading/<field>`, one
//! plain value each). Fields: `electricity_delivered_1/2` and `electricity_returned_1/2` (kWh,
//! tariffs 1 and 2; "delivered" is what the grid delivered to the home, i.e. import),
//! `electricity_currently_delivered` / `_returned` (kW, both ≥ 0). In split mode import and
//! export are reported once both tariffs are known, and power once both directions are.

use super::{
    Format, KILO, Parts, Unit, add, expect_object, field, last_segment, parse_json, period_aggregate, period_reject,
    plain_number, plain_value, required, scaled,
};
use crate::reading::{Reason, Reject, Sample};

/// Decodes DSMR-reader telegrams and split topics.
#[derive(Debug, Clone)]
pub struct DsmrReaderDecoder {
    import: Parts,
    export: Parts,
    power_in: Parts,
    power_out: Parts,
}

impl Default for DsmrReaderDecoder {
    fn default() -> Self {
        DsmrReaderDecoder {
            import: Parts::new(2),
            export: Parts::new(2),
            power_in: Parts::new(1),
            power_out: Parts::new(1),
        }
    }
}

/// A direction-specific power in kW as W, refusing a negative one.
fn direction_power(kw: crate::decimal::Decimal, key: &str) -> Result<i64, Reject> {
    if kw.is_negative() {
        return Err(Reject::new(
            Reason::NegativePower,
            format!("{key} is negative; DSMR reports both directions as ≥ 0"),
        ));
    }
    scaled(kw, KILO, key)
}

impl DsmrReaderDecoder {
    fn telegram(&self, payload: &[u8]) -> Result<Sample, Reject> {
        let v = parse_json(payload)?;
        expect_object(&v)?;
        let wh = |key: &str| required(&v, key).and_then(|d| scaled(d, KILO, key));
        let import = add(wh("electricity_delivered_1")?, wh("electricity_delivered_2")?, "import")?;
        let export = add(wh("electricity_returned_1")?, wh("electricity_returned_2")?, "export")?;
        let watts = |key: &str| field(&v, key)?.map(|kw| direction_power(kw, key)).transpose();
        let power = match (watts("electricity_currently_delivered")?, watts("electricity_currently_returned")?) {
            (Some(d), Some(r)) => Some(d - r),
            (Some(d), None) => Some(d),
            (None, Some(r)) => Some(-r),
            (None, None) => None,
        };
        Ok(Sample { power, energy_in: Some(import), energy_out: Some(export) })
    }

    fn split(&mut self, topic: &str, payload: &[u8]) -> Result<Sample, Reject> {
        // The field and the folder it sits in (`dsmr/current-year/…`, `dsmr/day-consumption/…`):
        // not the whole topic, whose prefix is the user's (a "holiday-home/dsmr/…" is no day figure).
        let name = last_segment(topic);
        let folder = topic.strip_suffix(name).map(|t| last_segment(t.trim_end_matches('/'))).unwrap_or_default();
        if period_aggregate(name) || period_aggregate(folder) {
            return Err(period_reject(topic));
        }
        let kwh = || plain_value(payload, Unit::KWh, name);
        let mut sample = Sample::default();
        match name {
            "electricity_delivered_1" | "electricity_delivered_2" => {
                self.import.set(usize::from(name.ends_with('2')), kwh()?);
                sample.energy_in = self.import.total("import")?;
            }
            "electricity_returned_1" | "electricity_returned_2" => {
                self.export.set(usize::from(name.ends_with('2')), kwh()?);
                sample.energy_out = self.export.total("export")?;
            }
            "electricity_currently_delivered" | "electricity_currently_returned" => {
                let w = direction_power(plain_number(payload, name)?, name)?;
                let parts = if name.ends_with("delivered") { &mut self.power_in } else { &mut self.power_out };
                parts.set(0, w);
                let (i, o) = (self.power_in.total("power")?, self.power_out.total("power")?);
                sample.power = i.zip(o).map(|(i, o)| i - o);
            }
            _ if name.starts_with("phase_") => {
                return Err(Reject::new(
                    Reason::PartialQuantity,
                    format!("{name} is one phase, not the meter's total"),
                ));
            }
            _ => {
                return Err(Reject::new(
                    Reason::WrongTopic,
                    format!(
                        "DSMR-reader field {name} is not read (electricity_delivered_1/2, electricity_returned_1/2, electricity_currently_delivered/returned are)"
                    ),
                ));
            }
        }
        Ok(sample)
    }
}

impl super::Remembering for DsmrReaderDecoder {
    const FORMAT: Format = Format::DsmrReader;

    fn apply(&mut self, topic: &str, payload: &[u8]) -> Result<Sample, Reject> {
        // The telegram is JSON; a split topic carries one plain value.
        if topic.ends_with("/json") || payload.trim_ascii_start().starts_with(b"{") {
            return self.telegram(payload);
        }
        self.split(topic, payload)
    }
}
