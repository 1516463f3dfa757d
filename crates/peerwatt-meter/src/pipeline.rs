//! From MQTT message to validated reading: topic routing, size limit, decoding, plausibility.
//! Pure and synchronous; the MQTT client feeds it and the CLI and node consume its outcomes.

use std::collections::BTreeMap;
use std::time::Duration;

use peerwatt_core::Timestamp;

use crate::decode::{Decoder, Format};
use crate::reading::{Counters, Reading, Reason, Reject, Role, Sample};

/// Plausibility limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest believable power, in W (a house connection: 3 × 63 A ≈ 43 kW).
    pub max_power_w: i64,
    /// Largest accepted payload, in bytes.
    pub max_payload_bytes: usize,
    /// A meter silent for longer than this is stale.
    pub stale_after: Duration,
    /// Counter rounding allowed on top of what `max_power_w` permits, in Wh.
    pub jump_slack_wh: i64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_power_w: 50_000,
            max_payload_bytes: 16 * 1024,
            stale_after: Duration::from_secs(120),
            jump_slack_wh: 10,
        }
    }
}

/// One configured meter: its role, the topic filters it listens to, and its decoder.
#[derive(Debug)]
pub struct Input {
    /// The meter's role.
    pub role: Role,
    /// MQTT topic filters (`+` and `#` wildcards allowed).
    pub topics: Vec<String>,
    /// The payload decoder.
    pub decoder: Box<dyn Decoder>,
}

/// What became of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A reading, possibly with a notice (a counter reset) that was counted and logged.
    Reading(Reading, Option<Reject>),
    /// Decoded, but it completes nothing yet (e.g. one of two tariffs).
    Pending,
    /// Refused.
    Rejected(Reject),
}

/// The last accepted counter value of one direction of one meter.
#[derive(Debug, Clone, Copy)]
struct LastCounter {
    time: Timestamp,
    value: i64,
}

#[derive(Debug, Default)]
struct RoleState {
    energy_in: Option<LastCounter>,
    energy_out: Option<LastCounter>,
    epoch: u32,
}

/// Routes, decodes and validates meter messages; counts every outcome.
#[derive(Debug)]
pub struct Pipeline {
    inputs: Vec<Input>,
    limits: Limits,
    state: BTreeMap<Role, RoleState>,
    counters: Counters,
    last_reading: Option<Timestamp>,
    started: Option<Timestamp>,
    stale_reported: bool,
    /// The meters whose device said it is offline (its last will), until their next reading.
    offline: BTreeMap<Role, Timestamp>,
}

/// Whether MQTT topic filter `filter` matches `topic`.
pub fn topic_matches(filter: &str, topic: &str) -> bool {
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

impl Pipeline {
    /// A pipeline for these meters.
    pub fn new(inputs: Vec<Input>, limits: Limits) -> Pipeline {
        Pipeline {
            inputs,
            limits,
            state: BTreeMap::new(),
            counters: Counters::default(),
            last_reading: None,
            started: None,
            stale_reported: false,
            offline: BTreeMap::new(),
        }
    }

    /// Every topic filter to subscribe to.
    pub fn topics(&self) -> Vec<String> {
        self.inputs.iter().flat_map(|i| i.topics.iter().cloned()).collect()
    }

    /// Each meter's role and (recognised) format.
    pub fn formats(&self) -> Vec<(Role, Format)> {
        self.inputs.iter().map(|i| (i.role, i.decoder.format())).collect()
    }

    /// The position of the meter whose topic filters match `topic`.
    fn input_for(&self, topic: &str) -> Option<usize> {
        self.inputs.iter().position(|i| i.topics.iter().any(|f| topic_matches(f, topic)))
    }

    /// The (recognised) format of the meter that `topic` belongs to.
    pub fn format_of(&self, topic: &str) -> Option<Format> {
        self.input_for(topic).map(|i| self.inputs[i].decoder.format())
    }

    /// Accepted and refused counts.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// When the last reading was accepted.
    pub fn last_reading(&self) -> Option<Timestamp> {
        self.last_reading
    }

    /// Handles one message received at `now`.
    pub fn handle(&mut self, topic: &str, payload: &[u8], now: Timestamp) -> Outcome {
        self.started.get_or_insert(now);
        match self.process(topic, payload, now) {
            Ok(Some((reading, notice))) => {
                self.counters.accepted += 1;
                if let Some(n) = &notice {
                    self.counters.count(n.reason);
                    tracing::warn!(%topic, reason = %n.reason, "{}", n.detail);
                }
                self.last_reading = Some(now);
                self.offline.remove(&reading.role);
                if !self.offline.contains_key(&Role::Grid) {
                    self.stale_reported = false; // a PV reading does not bring an offline grid meter back
                }
                Outcome::Reading(reading, notice)
            }
            Ok(None) => Outcome::Pending,
            Err(reject) => {
                if reject.reason == Reason::Availability && crate::decode::says_offline(topic, payload) {
                    // The device's last will: its readings stop now. For the grid meter that
                    // makes the meter stale now rather than after `stale_after` of silence.
                    if let Some(i) = self.input_for(topic) {
                        self.offline.entry(self.inputs[i].role).or_insert(now);
                    }
                }
                self.counters.count(reject.reason);
                tracing::warn!(%topic, reason = %reject.reason, "meter message rejected: {}", reject.detail);
                Outcome::Rejected(reject)
            }
        }
    }

    fn process(
        &mut self,
        topic: &str,
        payload: &[u8],
        now: Timestamp,
    ) -> Result<Option<(Reading, Option<Reject>)>, Reject> {
        if payload.len() > self.limits.max_payload_bytes {
            return Err(Reject::new(
                Reason::Oversized,
                format!("{} bytes; the limit is {}", payload.len(), self.limits.max_payload_bytes),
            ));
        }
        let index = self
            .input_for(topic)
            .ok_or_else(|| Reject::new(Reason::WrongTopic, format!("{topic} matches no configured meter topic")))?;
        let input = &mut self.inputs[index];
        let role = input.role;
        let before = input.decoder.snapshot();
        let sample = input.decoder.decode(topic, payload)?;
        if sample.is_empty() {
            return Ok(None);
        }
        let state = self.state.entry(role).or_default();
        match validate(&self.limits, state, &sample, now) {
            Ok(notice) => Ok(Some((Reading::from_sample(now, role, &sample, state.epoch), notice))),
            Err(refused) => {
                // Undo what the decoder remembered of it: a glitch must not stay in a register.
                if let Some(before) = before {
                    input.decoder = before;
                }
                Err(refused)
            }
        }
    }

    /// Reports staleness once when no reading arrived for `stale_after` (counted as `stale`).
    pub fn check_stale(&mut self, now: Timestamp) -> Option<Reject> {
        let since = self.last_reading.or(self.started)?;
        let silent = now.saturating_since(since) >= self.limits.stale_after;
        let offline = self.offline.contains_key(&Role::Grid);
        if self.stale_reported || !silent && !offline {
            return None;
        }
        self.stale_reported = true;
        self.counters.count(Reason::Stale);
        let detail = if offline && !silent {
            "the grid meter's device says it is offline (its last will)".to_owned()
        } else {
            format!("no meter reading for {} s", now.saturating_since(since).as_secs())
        };
        let reject = Reject::new(Reason::Stale, detail);
        tracing::warn!(reason = %reject.reason, "{}", reject.detail);
        Some(reject)
    }

    /// Whether the meter is stale now (no reading within `stale_after`, or the grid meter's
    /// device said it went offline since its last reading).
    pub fn is_stale(&self, now: Timestamp) -> bool {
        self.offline.contains_key(&Role::Grid)
            || self.last_reading.is_none_or(|t| now.saturating_since(t) >= self.limits.stale_after)
    }
}

/// Checks a sample against the limits and the meter's last counters; updates them if it passes.
fn validate(limits: &Limits, state: &mut RoleState, s: &Sample, now: Timestamp) -> Result<Option<Reject>, Reject> {
    if let Some(p) = s.power.filter(|p| p.unsigned_abs() > limits.max_power_w.unsigned_abs()) {
        let detail = format!("{p} W exceeds the limit of {} W", limits.max_power_w);
        return Err(Reject::new(Reason::ImplausiblePower, detail));
    }
    let mut reset = None;
    for (value, last, name) in [(s.energy_in, state.energy_in, "import"), (s.energy_out, state.energy_out, "export")] {
        let Some(value) = value else { continue };
        if value < 0 {
            return Err(Reject::new(Reason::NegativeCounter, format!("{name} counter is {value} Wh")));
        }
        let Some(last) = last else { continue };
        if value < last.value {
            reset = Some(Reject::new(
                Reason::CounterReset,
                format!(
                    "{name} counter went back from {} Wh to {value} Wh: meter reset or replaced, new counter epoch",
                    last.value
                ),
            ));
            continue;
        }
        let millis = i128::from(now.saturating_since(last.time).as_millis() as u64);
        let allowed = i128::from(limits.max_power_w) * millis / 3_600_000 + i128::from(limits.jump_slack_wh);
        if i128::from(value - last.value) > allowed {
            return Err(Reject::new(
                Reason::ImplausibleJump,
                format!(
                    "{name} counter rose {} Wh in {} ms, more than {} W could deliver",
                    value - last.value,
                    millis,
                    limits.max_power_w
                ),
            ));
        }
    }
    if reset.is_some() {
        state.epoch += 1;
        state.energy_in = None;
        state.energy_out = None;
    }
    if let Some(v) = s.energy_in {
        state.energy_in = Some(LastCounter { time: now, value: v });
    }
    if let Some(v) = s.energy_out {
        state.energy_out = Some(LastCounter { time: now, value: v });
    }
    Ok(reset)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_filters_follow_mqtt_rules() {
        assert!(topic_matches("tele/meter/SENSOR", "tele/meter/SENSOR"));
        assert!(topic_matches("tele/+/SENSOR", "tele/meter/SENSOR"));
        assert!(topic_matches("solar/#", "solar/116/0/power"));
        assert!(topic_matches("#", "anything/at/all"));
        assert!(!topic_matches("tele/+/SENSOR", "tele/meter/STATE"));
        assert!(!topic_matches("tele/meter", "tele/meter/SENSOR"));
        assert!(!topic_matches("tele/meter/SENSOR/x", "tele/meter/SENSOR"));
    }
}
