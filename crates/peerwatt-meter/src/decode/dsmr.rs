//! DSMR-reader's JSON telegram (`dsmr/json`): `electricity_delivered_1/2` and
//! `electricity_returned_1/2` (kWh, tariffs 1 and 2; "delivered" is what the grid delivered to
//! the home, i.e. import), `electricity_currently_delivered` / `_returned` (kW, both ≥ 0).

use super::{Decoder, Format, KILO, add, expect_object, field, parse_json, required, scaled};
use crate::reading::{Reason, Reject, Sample};

/// Decodes DSMR-reader telegrams.
#[derive(Debug, Clone, Copy, Default)]
pub struct DsmrReaderDecoder;

impl Decoder for DsmrReaderDecoder {
    fn format(&self) -> Format {
        Format::DsmrReader
    }

    fn decode(&mut self, _topic: &str, payload: &[u8]) -> Result<Sample, Reject> {
        let v = parse_json(payload)?;
        expect_object(&v)?;
        let wh = |key: &str| required(&v, key).and_then(|d| scaled(d, KILO, key));
        let import = add(wh("electricity_delivered_1")?, wh("electricity_delivered_2")?, "import")?;
        let export = add(wh("electricity_returned_1")?, wh("electricity_returned_2")?, "export")?;
        let watts = |key: &str| -> Result<Option<i64>, Reject> {
            let Some(kw) = field(&v, key)? else { return Ok(None) };
            if kw.is_negative() {
                return Err(Reject::new(
                    Reason::NegativePower,
                    format!("{key} is negative; DSMR reports both directions as ≥ 0"),
                ));
            }
            scaled(kw, KILO, key).map(Some)
        };
        let power = match (watts("electricity_currently_delivered")?, watts("electricity_currently_returned")?) {
            (Some(d), Some(r)) => Some(d - r),
            (Some(d), None) => Some(d),
            (None, Some(r)) => Some(-r),
            (None, None) => None,
        };
        Ok(Sample { power, energy_in: Some(import), energy_out: Some(export) })
    }
}
