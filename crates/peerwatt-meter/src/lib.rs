//! peerwatt-meter: reads the household's meter over MQTT the way homeowners already publish it
//! (Tasmota, Shelly Gen2, DSMR-reader, ESPHome, OpenDTU, zigbee2mqtt, or any JSON), validates
//! every message, and accounts energy per settlement interval.
//!
//! - [`decimal`]: the single rule that turns payload numbers into integers;
//! - [`decode`]: one decoder per firmware, plus `auto`;
//! - [`pipeline`]: topic routing, size limit, decoding and plausibility, with counters;
//! - [`interval`]: per-interval import/export and the persisted history;
//! - [`config`] and [`client`]: the `[meter]` settings and the MQTT client task;
//! - [`scan`]: finding the meters on a broker without settings (`peerwatt meter scan`).

pub mod client;
pub mod config;
pub mod decimal;
pub mod decode;
pub mod interval;
pub mod pipeline;
pub mod reading;
pub mod scan;

pub use client::{Backoff, Connection, MeterEvent, MeterHandle, mqtt_options, spawn};
pub use config::{ConfigError, MeterConfig, RoleConfig};
pub use decode::Format;
pub use interval::{Accountant, History, IntervalTotals, Source};
pub use pipeline::{Input, Limits, Outcome, Pipeline, topic_matches};
pub use reading::{Counters, Reading, Reason, Reject, Role, Sample};
