//! OpenDTU (Hoymiles inverters): plain numbers under `solar/<serial>/0/…`, where channel 0 is
//! the inverter's AC side: `power` (W) and `yieldtotal` (kWh).

use super::{Decoder, Format, KILO, ONE, plain_number, scaled};
use crate::reading::{Reason, Reject, Sample};

/// Decodes OpenDTU inverter topics.
#[derive(Debug, Clone, Copy, Default)]
pub struct OpendtuDecoder;

impl Decoder for OpendtuDecoder {
    fn format(&self) -> Format {
        Format::Opendtu
    }

    fn decode(&mut self, topic: &str, payload: &[u8]) -> Result<Sample, Reject> {
        if topic.ends_with("/0/power") {
            Ok(Sample { power: Some(scaled(plain_number(payload, "power")?, ONE, "power")?), ..Sample::default() })
        } else if topic.ends_with("/0/yieldtotal") {
            let wh = scaled(plain_number(payload, "yieldtotal")?, KILO, "yieldtotal")?;
            Ok(Sample { energy_in: Some(wh), ..Sample::default() })
        } else {
            Err(Reject::new(Reason::WrongTopic, format!("{topic} is not an OpenDTU …/0/power or …/0/yieldtotal topic")))
        }
    }
}
