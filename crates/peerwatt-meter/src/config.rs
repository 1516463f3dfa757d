//! The `[meter]` section of `node.toml`.

use std::path::PathBuf;
use std::time::Duration;

use peerwatt_core::IntervalLength;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::decode::{
    DecoderSettings, EsphomeSensors, Format, GenericJsonConfig, ShellyChannels, TasmotaSmlKeys, decoder_for,
};
use crate::interval::Accountant;
use crate::pipeline::{Input, Limits, Pipeline};
use crate::reading::Role;

/// A meter configuration that cannot work.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// No meter role has topics.
    #[error("no meter configured: add a [meter.grid] section with format and topics")]
    NoMeter,
    /// A PV or battery meter without the grid meter: the node states, trades and settles
    /// what crosses the grid connection, which only the grid meter measures.
    #[error(
        "no [meter.grid]: the meter at the grid connection is required; a PV or battery meter alone cannot say what was imported or exported"
    )]
    NoGridMeter,
    /// A role lists no topics.
    #[error("[meter.{0}] lists no topics")]
    NoTopics(Role),
    /// A role's decoder settings are wrong.
    #[error("[meter.{0}]: {1}")]
    Decoder(Role, String),
    /// The interval length does not divide a day.
    #[error("meter interval_secs: {0}")]
    Interval(#[from] peerwatt_core::time::IntervalError),
    /// The TLS CA file cannot be read.
    #[error("cannot read TLS CA file {path}: {source}")]
    CaFile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// One meter (grid, PV or battery).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleConfig {
    /// The payload format.
    pub format: Format,
    /// MQTT topic filters to subscribe to.
    pub topics: Vec<String>,
    /// Tasmota SML names and units (only for `format = "tasmota"` with a custom meter script).
    #[serde(default)]
    pub sml: TasmotaSmlKeys,
    /// Generic JSON sources (only for `format = "json"`).
    pub json: Option<GenericJsonConfig>,
    /// ESPHome object ids and units (only for `format = "esphome"` with other sensor names).
    pub esphome: Option<EsphomeSensors>,
    /// Shelly channels (only for `format = "shelly-gen2"` when not channel 0).
    pub shelly: Option<ShellyChannels>,
}

impl RoleConfig {
    /// A meter of `format` on `topics`, with no further decoder settings.
    pub fn new(format: Format, topics: Vec<String>) -> RoleConfig {
        RoleConfig { format, topics, sml: TasmotaSmlKeys::default(), json: None, esphome: None, shelly: None }
    }

    /// The decoder settings of this meter.
    pub fn settings(&self) -> DecoderSettings {
        DecoderSettings {
            sml: self.sml.clone(),
            json: self.json.clone(),
            esphome: self.esphome.clone(),
            shelly: self.shelly.clone(),
        }
    }
}

fn default_host() -> String {
    "127.0.0.1".into()
}
const fn default_port() -> u16 {
    1883
}
const fn default_keep_alive() -> u64 {
    30
}
const fn default_max_power() -> i64 {
    50_000
}
const fn default_stale() -> u64 {
    120
}
const fn default_max_payload() -> usize {
    16 * 1024
}
const fn default_max_gap() -> u64 {
    60
}
const fn default_interval() -> u64 {
    900
}
const fn default_history() -> usize {
    30 * 96
}
const fn default_reconnect_min() -> u64 {
    500
}
const fn default_reconnect_max() -> u64 {
    30_000
}

/// How to reach the MQTT broker and which meters to read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeterConfig {
    /// Broker host.
    #[serde(default = "default_host")]
    pub host: String,
    /// Broker port (1883, or 8883 for TLS).
    #[serde(default = "default_port")]
    pub port: u16,
    /// MQTT client id; default `peerwatt-<pid>`.
    pub client_id: Option<String>,
    /// Broker user name.
    pub username: Option<String>,
    /// Broker password (the environment variable `PEERWATT_MQTT_PASSWORD` overrides it).
    pub password: Option<String>,
    /// Connect with TLS.
    #[serde(default)]
    pub tls: bool,
    /// PEM file of the CA that signed the broker's certificate (default: the system's roots).
    pub ca_file: Option<PathBuf>,
    /// MQTT keep-alive, seconds.
    #[serde(default = "default_keep_alive")]
    pub keep_alive_secs: u64,
    /// First reconnect delay, milliseconds; doubles up to `reconnect_max_ms`.
    #[serde(default = "default_reconnect_min")]
    pub reconnect_min_ms: u64,
    /// Longest reconnect delay, milliseconds.
    #[serde(default = "default_reconnect_max")]
    pub reconnect_max_ms: u64,
    /// Largest believable power, W.
    #[serde(default = "default_max_power")]
    pub max_power_w: i64,
    /// Seconds without a reading before the meter counts as stale (and the node stops offering).
    #[serde(default = "default_stale")]
    pub stale_after_secs: u64,
    /// Largest accepted payload, bytes.
    #[serde(default = "default_max_payload")]
    pub max_payload_bytes: usize,
    /// Readings further apart than this (seconds) leave a gap in interval coverage.
    #[serde(default = "default_max_gap")]
    pub max_gap_secs: u64,
    /// Settlement interval length, seconds (the community's setting overrides it).
    #[serde(default = "default_interval")]
    pub interval_secs: u64,
    /// Closed intervals kept in the history (default 30 days of 15-minute intervals).
    #[serde(default = "default_history")]
    pub history_intervals: usize,
    /// The grid connection meter.
    pub grid: Option<RoleConfig>,
    /// The PV inverter.
    pub pv: Option<RoleConfig>,
    /// The home battery.
    pub battery: Option<RoleConfig>,
}

impl MeterConfig {
    /// The broker at `host`:`port`, every other setting at its default, and no meter yet
    /// (set [`MeterConfig::grid`] and the others).
    pub fn new(host: &str, port: u16) -> MeterConfig {
        MeterConfig {
            host: host.to_owned(),
            port,
            client_id: None,
            username: None,
            password: None,
            tls: false,
            ca_file: None,
            keep_alive_secs: default_keep_alive(),
            reconnect_min_ms: default_reconnect_min(),
            reconnect_max_ms: default_reconnect_max(),
            max_power_w: default_max_power(),
            stale_after_secs: default_stale(),
            max_payload_bytes: default_max_payload(),
            max_gap_secs: default_max_gap(),
            interval_secs: default_interval(),
            history_intervals: default_history(),
            grid: None,
            pv: None,
            battery: None,
        }
    }
}

impl MeterConfig {
    /// The configured roles.
    pub fn roles(&self) -> Vec<(Role, &RoleConfig)> {
        [(Role::Grid, &self.grid), (Role::Pv, &self.pv), (Role::Battery, &self.battery)]
            .into_iter()
            .filter_map(|(r, c)| c.as_ref().map(|c| (r, c)))
            .collect()
    }

    /// The plausibility limits.
    pub fn limits(&self) -> Limits {
        Limits {
            max_power_w: self.max_power_w,
            max_payload_bytes: self.max_payload_bytes,
            stale_after: Duration::from_secs(self.stale_after_secs),
            ..Limits::default()
        }
    }

    /// A pipeline with one decoder per configured role.
    pub fn pipeline(&self) -> Result<Pipeline, ConfigError> {
        let mut inputs = Vec::new();
        for (role, rc) in self.roles() {
            if rc.topics.is_empty() {
                return Err(ConfigError::NoTopics(role));
            }
            let decoder = decoder_for(rc.format, &rc.settings()).map_err(|e| ConfigError::Decoder(role, e))?;
            inputs.push(Input { role, topics: rc.topics.clone(), decoder });
        }
        if inputs.is_empty() {
            return Err(ConfigError::NoMeter);
        }
        Ok(Pipeline::new(inputs, self.limits()))
    }

    /// A node's meter: the grid meter is required (a PV or battery meter alone cannot say
    /// what crossed the grid connection, which is what a node states, trades and settles).
    pub fn require_grid(&self) -> Result<(), ConfigError> {
        if self.grid.is_none() && (self.pv.is_some() || self.battery.is_some()) {
            return Err(ConfigError::NoGridMeter);
        }
        Ok(())
    }

    /// The interval accountant for the grid meter.
    pub fn accountant(&self) -> Result<Accountant, ConfigError> {
        Ok(Accountant::new(IntervalLength::from_secs(self.interval_secs)?, Duration::from_secs(self.max_gap_secs)))
    }
}
