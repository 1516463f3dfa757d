//! OpenDTU (Hoymiles inverters): plain numbers under its MQTT prefix (default `solar/`):
//! `<prefix>/ac/power` (W) and `<prefix>/ac/yieldtotal` (kWh) over all inverters, or
//! `<prefix>/<serial>/0/power` and `…/0/yieldtotal` for one inverter (channel 0 is its AC
//! output; channels 1–6 are its DC inputs). The first source seen is the meter: a message
//! from another (the per-inverter topics once the total is read) would count power twice.

use super::{Format, Unit, last_segment, period_aggregate, period_reject, plain_value};
use crate::reading::{Reason, Reject, Sample};

/// Decodes OpenDTU totals and inverter topics.
#[derive(Debug, Clone, Default)]
pub struct OpendtuDecoder {
    /// The topic prefix of the source read (`solar/ac` or `solar/<serial>/0`).
    source: Option<String>,
}

impl super::Remembering for OpendtuDecoder {
    const FORMAT: Format = Format::Opendtu;

    fn apply(&mut self, topic: &str, payload: &[u8]) -> Result<Sample, Reject> {
        let (source, quantity) = topic.rsplit_once('/').unwrap_or(("", topic));
        let channel = last_segment(source);
        if source.split('/').any(|segment| segment == "status") {
            return Err(Reject::new(Reason::Availability, format!("{topic} is an inverter status, not a measurement")));
        }
        if period_aggregate(quantity) {
            return Err(period_reject(topic));
        }
        if channel != "ac" && channel != "0" {
            let why = if channel.parse::<u32>().is_ok() {
                (Reason::PartialQuantity, format!("{topic} is DC input {channel}, not the inverter's AC output"))
            } else {
                (Reason::WrongTopic, format!("{topic} is not an OpenDTU …/ac/… or …/<serial>/0/… topic"))
            };
            return Err(Reject::new(why.0, why.1));
        }
        let sample = match quantity {
            "power" => Sample { power: Some(plain_value(payload, Unit::W, quantity)?), ..Sample::default() },
            "yieldtotal" => Sample { energy_in: Some(plain_value(payload, Unit::KWh, quantity)?), ..Sample::default() },
            _ => {
                return Err(Reject::new(
                    Reason::WrongTopic,
                    format!("OpenDTU {quantity} is not read (power in W and yieldtotal in kWh are)"),
                ));
            }
        };
        match &self.source {
            Some(known) if known != source => Err(Reject::new(
                Reason::WrongTopic,
                format!("{topic} is another source than {known}/…, which is read; subscribe to one of them"),
            )),
            Some(_) => Ok(sample),
            None => {
                self.source = Some(source.to_owned());
                Ok(sample)
            }
        }
    }
}
