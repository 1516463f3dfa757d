//! zigbee2mqtt devices (smart plugs, DIN-rail meters): JSON with `power` (W) and `energy` (kWh).

use super::{Decoder, Format, KILO, ONE, expect_object, field, parse_json, scaled};
use crate::reading::{Reason, Reject, Sample};

/// Decodes zigbee2mqtt device state.
#[derive(Debug, Clone, Copy, Default)]
pub struct Zigbee2mqttDecoder;

impl Decoder for Zigbee2mqttDecoder {
    fn format(&self) -> Format {
        Format::Zigbee2mqtt
    }

    fn decode(&mut self, _topic: &str, payload: &[u8]) -> Result<Sample, Reject> {
        let v = parse_json(payload)?;
        expect_object(&v)?;
        let sample = Sample {
            power: field(&v, "power")?.map(|d| scaled(d, ONE, "power")).transpose()?,
            energy_in: field(&v, "energy")?.map(|d| scaled(d, KILO, "energy")).transpose()?,
            energy_out: None,
        };
        if sample.is_empty() {
            return Err(Reject::new(Reason::MissingField, "neither power nor energy in the payload"));
        }
        Ok(sample)
    }
}
