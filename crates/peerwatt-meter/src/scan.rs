//! Finding the meters on a broker without any settings: every message is offered to
//! [`detect`]; each recognised source (a device: one Tasmota, one Shelly, one OpenDTU total…)
//! gets its own decoder, and what it read, and on which topics, is kept for a suggested
//! `[meter.<role>]` section. Pure: `peerwatt meter scan` feeds it from a `#` subscription.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use crate::decode::{Decoder, DecoderSettings, Format, decoder_for, detect};
use crate::reading::{Reason, Reject, Role, Sample};

/// One meter found on the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// Its format.
    pub format: Format,
    /// What its topics have in common (the device's prefix).
    pub source: String,
    /// The topics whose messages it read (readings, or registers waiting for their companion).
    pub topics: BTreeSet<String>,
    /// The latest value of each quantity.
    pub latest: Sample,
    /// Messages of this source, and how many were refused.
    pub messages: u64,
    /// Refused messages of this source, by reason.
    pub refused: BTreeMap<Reason, u64>,
}

impl Found {
    /// The role such a meter usually has: an inverter is PV, anything else the grid meter.
    pub fn role(&self) -> Role {
        if self.format == Format::Opendtu { Role::Pv } else { Role::Grid }
    }

    /// The topics to subscribe to: those that were read, with a Gen1 3EM's channel as `+`
    /// (its phases arrive one topic each, and all three make the meter).
    pub fn suggested_topics(&self) -> BTreeSet<String> {
        self.topics
            .iter()
            .map(|t| match t.split_once("/emeter/").filter(|_| t.contains("shellyem3-")) {
                Some((device, rest)) => {
                    let quantity = rest.split_once('/').map_or(rest, |(_, q)| q);
                    format!("{device}/emeter/+/{quantity}")
                }
                None => t.clone(),
            })
            .collect()
    }

    /// A `[meter.<role>]` section that reads this meter.
    pub fn section(&self) -> String {
        let topics: Vec<String> = self.suggested_topics().iter().map(|t| format!("{t:?}")).collect();
        format!("[meter.{}]\nformat = \"{}\"\ntopics = [{}]\n", self.role(), self.format, topics.join(", "))
    }
}

/// The device part of a topic, which groups a meter's topics into one source.
fn source_of(format: Format, topic: &str) -> String {
    let before = |marker: &str| topic.rsplit_once(marker).map(|(s, _)| s.to_owned());
    let parent = || topic.rsplit_once('/').map_or(topic, |(s, _)| s).to_owned();
    let found = match format {
        Format::ShellyGen2 => before("/status/").or_else(|| before("/events/rpc")).or_else(|| before("/emeter/")),
        Format::DsmrReader => before("/reading/"),
        Format::Esphome => before("/sensor/"),
        Format::Opendtu => before("/ac/").map(|p| format!("{p}/ac")),
        Format::Tasmota => {
            // tele/<device>/SENSOR and stat/<device>/STATUS10 are one device.
            let mut parts = topic.split('/');
            match (parts.next(), parts.next()) {
                (Some("tele" | "stat"), Some(device)) => Some(device.to_owned()),
                _ => None,
            }
        }
        Format::Zigbee2mqtt | Format::Json | Format::Auto => None,
    };
    found.unwrap_or_else(|| match format {
        Format::Zigbee2mqtt if topic.matches('/').count() > 1 => parent(),
        Format::Tasmota | Format::Zigbee2mqtt => topic.to_owned(),
        _ => parent(),
    })
}

/// A source's decoder and what it has found.
#[derive(Debug)]
struct Source {
    decoder: Box<dyn Decoder>,
    found: Found,
}

/// The meters found so far.
#[derive(Debug, Default)]
pub struct Scan {
    sources: BTreeMap<(Format, String), Source>,
    /// Messages no format recognised.
    pub unrecognised: u64,
    /// Every topic seen.
    pub topics_seen: BTreeSet<String>,
}

impl Scan {
    /// Offers one message to the scan.
    pub fn observe(&mut self, topic: &str, payload: &[u8]) {
        self.topics_seen.insert(topic.to_owned());
        let settings = DecoderSettings::default();
        let Some(format) = detect(topic, payload, &settings.sml) else {
            self.unrecognised += 1;
            return;
        };
        let key = (format, source_of(format, topic));
        let source = match self.sources.get_mut(&key) {
            Some(s) => s,
            None => {
                let Ok(decoder) = decoder_for(format, &settings) else { return };
                let found = Found {
                    format,
                    source: key.1.clone(),
                    topics: BTreeSet::new(),
                    latest: Sample::default(),
                    messages: 0,
                    refused: BTreeMap::new(),
                };
                self.sources.entry(key).or_insert(Source { decoder, found })
            }
        };
        source.found.messages += 1;
        match source.decoder.decode(topic, payload) {
            Ok(sample) => {
                let latest = &mut source.found.latest;
                latest.power = sample.power.or(latest.power);
                latest.energy_in = sample.energy_in.or(latest.energy_in);
                latest.energy_out = sample.energy_out.or(latest.energy_out);
                source.found.topics.insert(topic.to_owned());
            }
            Err(reject) => *source.found.refused.entry(reject.reason).or_default() += 1,
        }
    }

    /// Every source that read at least one message, most messages first; with its device's
    /// last-will topic when one was seen (so an `Offline` makes the meter stale at once).
    pub fn found(&self) -> Vec<Found> {
        let mut found: Vec<Found> =
            self.sources.values().filter(|s| !s.found.topics.is_empty()).map(|s| s.found.clone()).collect();
        for f in &mut found {
            let will = match f.format {
                Format::Tasmota => format!("tele/{}/LWT", f.source),
                Format::Esphome => format!("{}/status", f.source),
                _ => continue,
            };
            if self.topics_seen.contains(&will) {
                f.topics.insert(will);
            }
        }
        found.sort_by(|a, b| b.messages.cmp(&a.messages).then_with(|| a.source.cmp(&b.source)));
        found
    }
}

/// A decoder that reads nothing itself but offers every message to a shared [`Scan`]: it lets
/// the MQTT client (and its reconnects and subscriptions) drive a scan of `#`.
#[derive(Debug, Clone, Default)]
pub struct ScanDecoder(pub Arc<Mutex<Scan>>);

impl Decoder for ScanDecoder {
    fn format(&self) -> Format {
        Format::Auto
    }

    fn decode_payload(&mut self, topic: &str, payload: &[u8]) -> Result<Sample, Reject> {
        match self.0.lock() {
            Ok(mut scan) => scan.observe(topic, payload),
            Err(poisoned) => poisoned.into_inner().observe(topic, payload),
        }
        Ok(Sample::default()) // nothing for the pipeline to validate: the scan keeps it all
    }

    fn decode(&mut self, topic: &str, payload: &[u8]) -> Result<Sample, Reject> {
        self.decode_payload(topic, payload) // availability messages too: the scan skips them
    }
}
