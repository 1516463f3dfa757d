//! Simulated grid meters: each household's meter reader publishes its counters and power over
//! MQTT in its firmware's own format (Tasmota SML, Shelly Pro 3EM, DSMR-reader), so the nodes
//! read them through the real decoders.
//!
//! Counters are whole Wh and grow linearly through each quarter hour, so at every interval
//! boundary they hold exactly the simulated flows; a reading between boundaries holds the part
//! of the step's energy that has flowed by then (rounded down).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use peerwatt_core::Timestamp;
use rumqttc::{AsyncClient, MqttOptions, QoS};

use crate::clock::AcceleratedClock;
use crate::household::{Flows, MeterKind, STEP_SECS};

/// One household's simulated grid meter.
#[derive(Debug, Clone)]
pub struct SimMeter {
    /// The household (MQTT topics are made from it).
    pub name: String,
    /// The firmware.
    pub kind: MeterKind,
    /// When the first step of `flows` starts.
    pub first: Timestamp,
    /// The flows, step by step.
    flows: Arc<[Flows]>,
    /// Cumulative import and export before each step, per DSMR tariff (1: night, 2: day).
    prefix: Vec<[u64; 4]>,
}

/// The counters of a meter at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counters {
    /// Import on tariff 1 and 2, Wh.
    pub import: [u64; 2],
    /// Export on tariff 1 and 2, Wh.
    pub export: [u64; 2],
    /// Grid power, W (+ import, − export).
    pub power_w: i64,
}

impl Counters {
    /// Total import, Wh.
    pub fn import_wh(&self) -> u64 {
        self.import[0] + self.import[1]
    }

    /// Total export, Wh.
    pub fn export_wh(&self) -> u64 {
        self.export[0] + self.export[1]
    }
}

/// Whether step `i` after a midnight-aligned `first` falls into the night tariff (23:00 - 07:00).
fn night(first: Timestamp, i: usize) -> bool {
    let secs = first.0 / 1_000 + i as u64 * STEP_SECS;
    let hour = secs % 86_400 / 3_600;
    !(7..23).contains(&hour)
}

impl SimMeter {
    /// A meter whose counters stand at `base` (import, export Wh, split evenly over the
    /// tariffs) when `flows` start at `first`.
    pub fn new(name: &str, kind: MeterKind, first: Timestamp, flows: Arc<[Flows]>, base: (u64, u64)) -> SimMeter {
        let mut acc = [base.0 / 2, base.0 - base.0 / 2, base.1 / 2, base.1 - base.1 / 2];
        let mut prefix = Vec::with_capacity(flows.len() + 1);
        for (i, f) in flows.iter().enumerate() {
            prefix.push(acc);
            let t = usize::from(!night(first, i));
            acc[t] += f.import_wh;
            acc[2 + t] += f.export_wh;
        }
        prefix.push(acc);
        SimMeter { name: name.to_owned(), kind, first, flows, prefix }
    }

    /// The counters at `t` (held at the last value past the end, at the first before the start).
    pub fn counters_at(&self, t: Timestamp) -> Counters {
        let since = t.0.saturating_sub(self.first.0);
        let step_ms = STEP_SECS * 1_000;
        let i = usize::try_from(since / step_ms).unwrap_or(usize::MAX);
        let Some(f) = self.flows.get(i) else {
            let last = self.prefix.last().copied().unwrap_or_default();
            return Counters { import: [last[0], last[1]], export: [last[2], last[3]], power_w: 0 };
        };
        let within = since % step_ms;
        let mut c = self.prefix[i];
        let tariff = usize::from(!night(self.first, i));
        c[tariff] += f.import_wh * within / step_ms;
        c[2 + tariff] += f.export_wh * within / step_ms;
        // Mean power over the step: Wh per quarter hour × 4.
        let power_w = (i64::try_from(f.import_wh).unwrap_or(0) - i64::try_from(f.export_wh).unwrap_or(0)) * 4;
        Counters { import: [c[0], c[1]], export: [c[2], c[3]], power_w }
    }

    /// What the meter reader publishes at `t`: (topic, payload) pairs.
    pub fn payloads(&self, t: Timestamp) -> Vec<(String, String)> {
        let c = self.counters_at(t);
        let time = t.to_string();
        let time = time.get(..19).unwrap_or(&time);
        match self.kind {
            MeterKind::Tasmota => vec![(
                format!("tele/{}/SENSOR", self.name),
                format!(
                    r#"{{"Time":"{time}","SML":{{"Total_in":{},"Total_out":{},"Power_curr":{}}}}}"#,
                    kwh(c.import_wh()),
                    kwh(c.export_wh()),
                    c.power_w
                ),
            )],
            MeterKind::Shelly => vec![
                (format!("{}/status/em:0", self.name), format!(r#"{{"id":0,"total_act_power":{}.0}}"#, c.power_w)),
                (
                    format!("{}/status/emdata:0", self.name),
                    format!(r#"{{"id":0,"total_act":{}.00,"total_act_ret":{}.00}}"#, c.import_wh(), c.export_wh()),
                ),
            ],
            MeterKind::Dsmr => vec![(
                format!("dsmr/{}/json", self.name),
                format!(
                    r#"{{"read_at":"{time}+00:00","electricity_delivered_1":"{}","electricity_returned_1":"{}","electricity_delivered_2":"{}","electricity_returned_2":"{}","electricity_currently_delivered":{},"electricity_currently_returned":{}}}"#,
                    kwh(c.import[0]),
                    kwh(c.export[0]),
                    kwh(c.import[1]),
                    kwh(c.export[1]),
                    kwh(c.power_w.max(0).unsigned_abs()),
                    kwh((-c.power_w).max(0).unsigned_abs()),
                ),
            )],
        }
    }
}

/// The MQTT topics household `name`'s meter reader of `kind` publishes on (and its node
/// subscribes to).
pub fn topics(kind: MeterKind, name: &str) -> Vec<String> {
    match kind {
        MeterKind::Tasmota => vec![format!("tele/{name}/SENSOR")],
        MeterKind::Shelly => vec![format!("{name}/status/em:0"), format!("{name}/status/emdata:0")],
        MeterKind::Dsmr => vec![format!("dsmr/{name}/json")],
    }
}

/// The payload format of `kind` for `[meter.grid]`.
pub fn format_of(kind: MeterKind) -> peerwatt_meter::Format {
    match kind {
        MeterKind::Tasmota => peerwatt_meter::Format::Tasmota,
        MeterKind::Shelly => peerwatt_meter::Format::ShellyGen2,
        MeterKind::Dsmr => peerwatt_meter::Format::DsmrReader,
    }
}

/// `wh` as kWh with three decimals (exact).
fn kwh(wh: u64) -> String {
    format!("{}.{:03}", wh / 1_000, wh % 1_000)
}

/// Publishes every meter's reading every `period` of simulated time from `from` until `until`
/// (inclusive), paced by `clock`, with QoS 1 through one MQTT connection. Counts the messages
/// it published in `published` as it goes (the caller may stop it early and still know).
pub async fn publish(
    meters: Arc<[SimMeter]>,
    clock: Arc<AcceleratedClock>,
    broker: std::net::SocketAddr,
    from: Timestamp,
    until: Timestamp,
    period: Duration,
    published: Arc<AtomicU64>,
) {
    let mut options = MqttOptions::new("peerwatt-sim-meters", broker.ip().to_string(), broker.port());
    options.set_keep_alive(Duration::from_secs(30));
    options.set_inflight(1_000);
    let (client, mut events) = AsyncClient::new(options, 4_096);
    // The event loop runs on its own task and is polled continuously (rumqttc needs that).
    let poller = tokio::spawn(async move {
        loop {
            if let Err(e) = events.poll().await {
                tracing::warn!(error = %e, "simulated meters: MQTT connection error; retrying");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    });
    let period_ms = u64::try_from(period.as_millis()).unwrap_or(60_000).max(1_000);
    let mut t = from;
    while t <= until {
        tokio::time::sleep_until(clock.instant_of(t).into()).await;
        for meter in meters.iter() {
            for (topic, payload) in meter.payloads(t) {
                if client.publish(topic, QoS::AtLeastOnce, false, payload).await.is_err() {
                    tracing::error!("simulated meters: the MQTT client stopped");
                    poller.abort();
                    return;
                }
                published.fetch_add(1, Ordering::Relaxed);
            }
        }
        t = Timestamp(t.0 + period_ms);
    }
    // Let the last readings leave before the connection goes.
    let _ = client.disconnect().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    poller.abort();
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a test panics to fail

    use peerwatt_meter::decode::{Decoder, DsmrReaderDecoder, ShellyGen2Decoder, TasmotaDecoder};

    use super::*;

    const MIDNIGHT: Timestamp = Timestamp(1_624_579_200_000); // 2021-06-25T00:00:00Z

    fn flows() -> Arc<[Flows]> {
        let f = |import_wh, export_wh| Flows { import_wh, export_wh, ..Flows::default() };
        Arc::from(vec![f(400, 0), f(0, 1_000), f(101, 3)])
    }

    #[test]
    fn counters_grow_through_the_step_and_are_exact_at_boundaries() {
        let m = SimMeter::new("h", MeterKind::Dsmr, MIDNIGHT, flows(), (1_000_001, 500));
        let at = |secs: u64| m.counters_at(Timestamp(MIDNIGHT.0 + secs * 1_000));
        assert_eq!((at(0).import_wh(), at(0).export_wh()), (1_000_001, 500));
        assert_eq!(at(450).import_wh(), 1_000_201, "half of 400 Wh");
        assert_eq!(at(450).power_w, 1_600);
        assert_eq!((at(900).import_wh(), at(1_800).export_wh()), (1_000_401, 1_500));
        assert_eq!(at(1_350).power_w, -4_000);
        assert_eq!((at(99_999).import_wh(), at(99_999).export_wh()), (1_000_502, 1_503));
        // Night tariff at midnight: tariff 1 took all of it.
        assert_eq!(at(2_700).import, [500_000 + 501, 500_001]);
    }

    #[test]
    fn every_format_decodes_to_the_counters_through_the_real_decoders() {
        let t = Timestamp(MIDNIGHT.0 + 450_000);
        let m = |kind| SimMeter::new("house-01", kind, MIDNIGHT, flows(), (12_345_678, 9_876));
        let expect = (Some(1_600), Some(12_345_678 + 200), Some(9_876));
        let decoded = |mut d: Box<dyn Decoder>, kind| {
            let mut sample = peerwatt_meter::Sample::default();
            for (topic, payload) in m(kind).payloads(t) {
                let s = d.decode(&topic, payload.as_bytes()).unwrap();
                sample.power = s.power.or(sample.power);
                sample.energy_in = s.energy_in.or(sample.energy_in);
                sample.energy_out = s.energy_out.or(sample.energy_out);
            }
            (sample.power, sample.energy_in, sample.energy_out)
        };
        assert_eq!(decoded(Box::<TasmotaDecoder>::default(), MeterKind::Tasmota), expect);
        assert_eq!(decoded(Box::<ShellyGen2Decoder>::default(), MeterKind::Shelly), expect);
        assert_eq!(decoded(Box::<DsmrReaderDecoder>::default(), MeterKind::Dsmr), expect);
    }
}
