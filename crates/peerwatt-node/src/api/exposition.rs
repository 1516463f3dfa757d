//! `/metrics`: the node's status in the Prometheus text format (version 0.0.4), by the
//! conventions: one `peerwatt_` prefix, base units (energy in joules), counters ending in
//! `_total`, refusals and topics as labels, and no peer ids anywhere.

use std::fmt::Write;

use crate::metrics::{DURATION_BUCKETS_US, Durations};
use crate::status::Status;

/// Renders metric families one after another, each with its HELP and TYPE once.
#[derive(Debug, Default)]
pub(crate) struct Exposition {
    text: String,
}

/// A metric's type.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Kind {
    Counter,
    Gauge,
}

impl Kind {
    /// The type's name in the format.
    fn name(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        }
    }
}

impl Exposition {
    /// A family with one sample per label set (`labels` like `[("reason", "replay")]`).
    pub(crate) fn family(&mut self, name: &str, kind: Kind, help: &str, samples: &[(Vec<(&str, String)>, u64)]) {
        let kind = kind.name();
        let _ = writeln!(self.text, "# HELP {name} {}", help.replace('\\', "\\\\").replace('\n', "\\n"));
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
        for (labels, value) in samples {
            let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{}\"", escape(v))).collect();
            let labels = if labels.is_empty() { String::new() } else { format!("{{{}}}", labels.join(",")) };
            let _ = writeln!(self.text, "{name}{labels} {value}");
        }
    }

    /// A histogram of `durations`: cumulative counts per upper bound (shown in seconds), their
    /// sum and count.
    pub(crate) fn histogram(&mut self, name: &str, help: &str, durations: &Durations) {
        let (counts, sum_us, count) = durations.snapshot();
        let _ = writeln!(self.text, "# HELP {name} {help}");
        let _ = writeln!(self.text, "# TYPE {name} histogram");
        let mut cumulative = 0;
        for (bound, n) in DURATION_BUCKETS_US.iter().zip(&counts) {
            cumulative += n;
            let _ = writeln!(self.text, "{name}_bucket{{le=\"{}\"}} {cumulative}", seconds(*bound));
        }
        let _ = writeln!(self.text, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(self.text, "{name}_sum {}", seconds(sum_us));
        let _ = writeln!(self.text, "{name}_count {count}");
    }

    /// One unlabelled sample with a decimal value.
    pub(crate) fn decimal(&mut self, name: &str, kind: Kind, help: &str, value: &str) {
        let kind = kind.name();
        let _ = writeln!(self.text, "# HELP {name} {help}");
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
        let _ = writeln!(self.text, "{name} {value}");
    }

    /// One unlabelled sample.
    pub(crate) fn single(&mut self, name: &str, kind: Kind, help: &str, value: u64) {
        self.family(name, kind, help, &[(Vec::new(), value)]);
    }

    /// The text.
    pub(crate) fn finish(self) -> String {
        self.text
    }
}

/// Microseconds as decimal seconds, exactly (`1500` → `0.0015`).
fn seconds(us: u64) -> String {
    let frac = format!("{:06}", us % 1_000_000);
    let frac = frac.trim_end_matches('0');
    if frac.is_empty() { format!("{}", us / 1_000_000) } else { format!("{}.{frac}", us / 1_000_000) }
}

/// A label value, escaped as the format says.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// A counter name of the status as a metric name: `peerwatt_<name>_total`.
fn counter_name(name: &str) -> String {
    let base = name.strip_suffix("_total").unwrap_or(name);
    format!("peerwatt_{base}_total")
}

/// Joules in a watt-hour.
const JOULES_PER_WH: u64 = 3_600;

/// Durations the node measures: its ledger's flushes, and its interface's requests.
#[derive(Debug, Default)]
pub struct Timings {
    /// Flushes of the ledger and the state database (`fsync`).
    pub flushes: std::sync::Arc<Durations>,
    /// Requests to the HTTP interface, until their answer's head.
    pub requests: Durations,
}

/// The node's metrics from its latest status, and the durations it measured.
pub fn render(status: &Status, version: &str, timings: &Timings) -> String {
    let mut out = Exposition::default();
    out.histogram(
        "peerwatt_http_request_duration_seconds",
        "How long the node's HTTP interface took to answer a request.",
        &timings.requests,
    );
    out.histogram(
        "peerwatt_ledger_flush_duration_seconds",
        "How long making a group of the node's writes durable (fsync) took.",
        &timings.flushes,
    );
    out.family(
        "peerwatt_build_info",
        Kind::Gauge,
        "The running build; always 1.",
        &[(vec![("version", version.to_owned())], 1)],
    );
    out.single(
        "peerwatt_running",
        Kind::Gauge,
        "1 while the node runs, 0 once it has stopped.",
        u64::from(status.running),
    );
    out.single("peerwatt_peers_connected", Kind::Gauge, "Peers connected.", status.peers.len() as u64);
    out.single("peerwatt_orders_open", Kind::Gauge, "The node's open orders.", status.orders.len() as u64);
    out.single("peerwatt_ledger_entries", Kind::Gauge, "Entries in the node's ledger.", status.ledger.entries);
    out.single(
        "peerwatt_trade_requests_pending",
        Kind::Gauge,
        "Trade requests sent whose answers have not arrived.",
        status.requests_pending,
    );
    let stale = status.meter.starts_with("stale") || status.meter == "not configured";
    out.single(
        "peerwatt_meter_stale",
        Kind::Gauge,
        "1 when the grid meter gives no current reading.",
        u64::from(stale),
    );
    if let Some(at) = status.last_reading_at {
        out.decimal(
            "peerwatt_meter_last_reading_timestamp_seconds",
            Kind::Gauge,
            "When the grid meter's last reading arrived (Unix time; its age is time() minus this).",
            &seconds(at.saturating_mul(1_000)),
        );
    }
    let mut trades: Vec<(Vec<(&str, String)>, u64)> = Vec::new();
    let mut energy: Vec<(Vec<(&str, String)>, u64)> = Vec::new();
    for direction in ["sold", "bought"] {
        let of = status.trades_today.iter().filter(|t| t.direction == direction);
        trades.push((vec![("direction", direction.to_owned())], of.clone().count() as u64));
        let wh: u64 = of.map(|t| t.energy_wh).sum();
        energy.push((vec![("direction", direction.to_owned())], wh.saturating_mul(JOULES_PER_WH)));
    }
    out.family("peerwatt_trades_today", Kind::Gauge, "The node's trades since midnight UTC, by direction.", &trades);
    out.family(
        "peerwatt_traded_energy_today_joules",
        Kind::Gauge,
        "Energy of the node's trades since midnight UTC, by direction (1 Wh = 3600 J).",
        &energy,
    );
    counters(&mut out, status);
    out.finish()
}

/// Every counter of the status: gossip by topic and by refusal as labels, the rest by name.
fn counters(out: &mut Exposition, status: &Status) {
    let mut accepted = Vec::new();
    let mut rejected = Vec::new();
    let mut energy = Vec::new();
    for (name, n) in status.counters.iter() {
        if let Some(direction) = name.strip_prefix("traded_energy_").and_then(|d| d.strip_suffix("_wh")) {
            energy.push((vec![("direction", direction.to_owned())], n.saturating_mul(JOULES_PER_WH)));
        } else if let Some(topic) = name.strip_prefix("gossip_accepted_") {
            accepted.push((vec![("topic", topic.to_owned())], n));
        } else if let Some(reason) = name.strip_prefix("gossip_rejected_") {
            rejected.push((vec![("reason", reason.to_owned())], n));
        } else {
            out.single(&counter_name(name), Kind::Counter, &format!("Node counter {name}."), n);
        }
    }
    if !accepted.is_empty() {
        out.family("peerwatt_gossip_accepted_total", Kind::Counter, "Gossip frames accepted, by topic.", &accepted);
    }
    if !energy.is_empty() {
        out.family(
            "peerwatt_traded_energy_joules_total",
            Kind::Counter,
            "Energy of the node's recorded trades since it started, by direction (1 Wh = 3600 J).",
            &energy,
        );
    }
    if !rejected.is_empty() {
        out.family("peerwatt_gossip_rejected_total", Kind::Counter, "Gossip frames refused, by reason.", &rejected);
    }
}
