//! zigbee2mqtt devices (smart plugs, DIN-rail meters) on `zigbee2mqtt/<friendly name>`: JSON
//! with `power` (W), `energy` (import, kWh) and `produced_energy` (export, kWh); a French Linky
//! through a LiXee gives its tariff registers `current_tier<N>_summ_delivered` (kWh), summed.
//! In the "attribute" output mode each value is a plain number on `<device>/<attribute>`.

use serde_json::Value;

use super::{
    Decoder, Format, KILO, ONE, Unit, expect_object, field, last_segment, parse_json, period_aggregate, period_reject,
    plain_value, scaled,
};
use crate::decimal::Decimal;
use crate::reading::{Reason, Reject, Sample};

/// Decodes zigbee2mqtt device state.
#[derive(Debug, Clone, Copy, Default)]
pub struct Zigbee2mqttDecoder;

/// The import counter: `energy`, or the sum of a Linky's tariff registers.
fn import(v: &Value) -> Result<Option<(Decimal, &'static str)>, Reject> {
    if let Some(e) = field(v, "energy")? {
        return Ok(Some((e, "energy")));
    }
    let mut sum: Option<Decimal> = None;
    for tier in 1..=10 {
        let key = format!("current_tier{tier}_summ_delivered");
        if let Some(d) = field(v, &key)? {
            let total = sum.unwrap_or(Decimal::from_int(0));
            sum = Some(total.checked_add(d).map_err(|_| Reject::new(Reason::OutOfRange, "the tariff registers' sum"))?);
        }
    }
    Ok(sum.map(|s| (s, "current_tier<N>_summ_delivered")))
}

/// One attribute on its own topic.
fn attribute(topic: &str, payload: &[u8]) -> Result<Sample, Reject> {
    let name = last_segment(topic);
    match name {
        "power" => Ok(Sample { power: Some(plain_value(payload, Unit::W, name)?), ..Sample::default() }),
        "energy" => Ok(Sample { energy_in: Some(plain_value(payload, Unit::KWh, name)?), ..Sample::default() }),
        "produced_energy" => {
            Ok(Sample { energy_out: Some(plain_value(payload, Unit::KWh, name)?), ..Sample::default() })
        }
        _ if period_aggregate(name) => Err(period_reject(topic)),
        _ => Err(Reject::new(
            Reason::WrongTopic,
            format!("zigbee2mqtt attribute {name} is not read (power, energy and produced_energy are)"),
        )),
    }
}

impl Decoder for Zigbee2mqttDecoder {
    fn format(&self) -> Format {
        Format::Zigbee2mqtt
    }

    fn decode_payload(&mut self, topic: &str, payload: &[u8]) -> Result<Sample, Reject> {
        if !payload.trim_ascii_start().starts_with(b"{") {
            return attribute(topic, payload);
        }
        let v = parse_json(payload)?;
        expect_object(&v)?;
        let sample = Sample {
            power: field(&v, "power")?.map(|d| scaled(d, ONE, "power")).transpose()?,
            energy_in: import(&v)?.map(|(d, name)| scaled(d, KILO, name)).transpose()?,
            energy_out: field(&v, "produced_energy")?.map(|d| scaled(d, KILO, "produced_energy")).transpose()?,
        };
        if sample.is_empty() {
            return Err(Reject::new(Reason::MissingField, "neither power nor energy in the payload"));
        }
        Ok(sample)
    }
}
