//! `node.toml`: the node's configuration. Unknown keys are errors, so a typo never silently
//! falls back to a default. The configuration is data: programs build it
//! ([`NodeConfig::builder`]) and write it ([`NodeConfig::save`]) rather than format TOML.

use std::path::{Path, PathBuf};
use std::time::Duration;

use peerwatt_core::{Price, Wh};
use peerwatt_market::{ForecastMethod, UserLimits};
use peerwatt_meter::MeterConfig;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// A configuration or community file could not be used.
#[derive(Debug, Error)]
pub enum FileError {
    /// The file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML of the expected shape.
    #[error("{} is not a valid {what}: {source}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// What it should be.
        what: &'static str,
        /// Where and why parsing failed.
        source: Box<toml::de::Error>,
    },
    /// The file could not be written.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file parses but its content is refused.
    #[error("{}: {why}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
}

/// The whole of `node.toml`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// `[node]`.
    pub node: NodeSection,
    /// `[log]`.
    #[serde(default)]
    pub log: LogSection,
    /// `[meter]`, once the homeowner connects a meter.
    pub meter: Option<MeterConfig>,
    /// `[community]`, once the node is admitted to one.
    pub community: Option<CommunitySection>,
    /// `[market]`: the homeowner's limits and the strategy's timing.
    #[serde(default)]
    pub market: MarketSection,
    /// `[network]`: where to listen and whom to ask first.
    #[serde(default)]
    pub network: NetworkSection,
    /// `[api]`: the local HTTP interface (REST API, Prometheus metrics); off without it.
    pub api: Option<ApiSection>,
    /// `[home_assistant]`: MQTT discovery on the meter's broker; off without it.
    pub home_assistant: Option<crate::home_assistant::HomeAssistantSection>,
    /// The directory of the file; relative paths are relative to it.
    #[serde(skip)]
    pub dir: PathBuf,
}

/// `[node]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSection {
    /// Display name.
    pub name: String,
    /// The node key file.
    #[serde(default = "default_key_file")]
    pub key_file: PathBuf,
    /// The ledger directory.
    #[serde(default = "default_ledger_dir")]
    pub ledger_dir: PathBuf,
    /// How often the node rewrites `status.json`, milliseconds (real time).
    #[serde(default = "default_status_every")]
    pub status_every_ms: u64,
}

/// `[community]` of `node.toml`: where the community file and this node's certificate are.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommunitySection {
    /// The community file from the admin (`community.toml`).
    pub file: PathBuf,
    /// This node's membership certificate.
    pub certificate: PathBuf,
}

/// `[log]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSection {
    /// A tracing filter (RUST_LOG wins).
    pub filter: Option<String>,
}

/// How the strategy forecasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Forecast {
    /// The same time of day over the last `forecast_days` days.
    SameTimeOfDay,
    /// The last `forecast_intervals` complete intervals.
    Recent,
}

/// `[market]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MarketSection {
    /// Trade automatically (false: the node only relays and records).
    pub enabled: bool,
    /// Never sell below this price (micro-currency per kWh).
    pub min_sell_price: Option<u64>,
    /// Never buy above this price (micro-currency per kWh).
    pub max_buy_price: Option<u64>,
    /// Never trade more than this many Wh per interval.
    pub max_energy_per_interval_wh: Option<u64>,
    /// Keep this many Wh of a forecast surplus unsold.
    pub reserve_wh: u64,
    /// How to forecast.
    pub forecast: Forecast,
    /// Days of history for `same-time-of-day`.
    pub forecast_days: u64,
    /// Intervals of history for `recent`.
    pub forecast_intervals: u64,
    /// How often the node re-prices its orders and looks for crossings, milliseconds (real time).
    pub tick_ms: u64,
    /// Re-publish an order at a new price at most this often, milliseconds of the node's clock
    /// (market time: on the simulator's accelerated clock it passes faster).
    pub reprice_ms: u64,
    /// A trade request without an answer after this long is asked about, milliseconds (real time).
    pub request_timeout_ms: u64,
}

impl Default for MarketSection {
    fn default() -> Self {
        MarketSection {
            enabled: true,
            min_sell_price: None,
            max_buy_price: None,
            max_energy_per_interval_wh: None,
            reserve_wh: 0,
            forecast: Forecast::SameTimeOfDay,
            forecast_days: 7,
            forecast_intervals: 4,
            tick_ms: 1_000,
            reprice_ms: 60_000,
            request_timeout_ms: 5_000,
        }
    }
}

impl MarketSection {
    /// The homeowner's limits for the strategy.
    pub fn limits(&self) -> UserLimits {
        UserLimits {
            min_sell_price: self.min_sell_price.map(Price),
            max_buy_price: self.max_buy_price.map(Price),
            max_energy_per_interval: self.max_energy_per_interval_wh.map(Wh),
            reserve: Wh(self.reserve_wh),
        }
    }

    /// The forecast method.
    pub fn forecast_method(&self) -> ForecastMethod {
        match self.forecast {
            Forecast::SameTimeOfDay => ForecastMethod::SameTimeOfDay { days: self.forecast_days },
            Forecast::Recent => ForecastMethod::Recent { intervals: self.forecast_intervals },
        }
    }
}

/// `[network]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NetworkSection {
    /// Multiaddresses to listen on.
    pub listen: Vec<String>,
    /// More bootstrap peers (besides the community file's).
    pub bootstrap: Vec<String>,
    /// Find peers on the local network with mDNS.
    pub mdns: bool,
    /// Gossipsub heartbeat, milliseconds.
    pub heartbeat_ms: u64,
    /// How often to look for more peers once `target_peers` are connected (dial a known one,
    /// ask a connected one for the addresses it knows: peer exchange, see
    /// `peerwatt_net::peers`), milliseconds. While short of peers a node looks every second,
    /// backing off to this.
    pub discovery_ms: u64,
    /// Ban a peer after this many messages that no honest node sends.
    pub ban_after_rejects: u32,
    /// Look for more peers while fewer than this many are connected.
    pub target_peers: usize,
    /// Established connections in all, at most.
    pub max_connections: u32,
    /// Connections other peers opened to this node, at most (raise it on a community's
    /// bootstrap or relay node).
    pub max_inbound: u32,
    /// Connections per peer, at most.
    pub max_per_peer: u32,
    /// Incoming connections still in their handshake, at most.
    pub max_pending_inbound: u32,
}

impl Default for NetworkSection {
    fn default() -> Self {
        NetworkSection {
            listen: vec!["/ip4/0.0.0.0/tcp/4001".into(), "/ip4/0.0.0.0/udp/4001/quic-v1".into()],
            bootstrap: Vec::new(),
            mdns: false,
            heartbeat_ms: 1_000,
            discovery_ms: 30_000,
            ban_after_rejects: 20,
            target_peers: 16,
            max_connections: 96,
            max_inbound: 48,
            max_per_peer: 2,
            max_pending_inbound: 16,
        }
    }
}

impl NetworkSection {
    /// The connection limits: the total at least the inbound limit and the peers this node
    /// dials itself (full inbound must not stop it from dialling a maker).
    pub fn limits(&self) -> peerwatt_net::Limits {
        let own = u32::try_from(self.target_peers).unwrap_or(u32::MAX);
        peerwatt_net::Limits {
            max_connections: self.max_connections.max(self.max_inbound.saturating_add(own)).max(1),
            max_inbound: self.max_inbound,
            max_per_peer: self.max_per_peer.max(1),
            max_pending_inbound: self.max_pending_inbound,
        }
    }

    /// The gossipsub heartbeat.
    pub fn heartbeat(&self) -> Duration {
        Duration::from_millis(self.heartbeat_ms.max(10))
    }
}

/// The homeowner's price limits, micro-currency per kWh (`limits.json`, the API's body).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PriceLimits {
    /// Never sell below this price (`null`: no limit of the homeowner's own).
    pub min_sell_price: Option<u64>,
    /// Never buy above this price.
    pub max_buy_price: Option<u64>,
}

impl PriceLimits {
    /// The prices of `limits`.
    pub fn of(limits: &UserLimits) -> PriceLimits {
        PriceLimits {
            min_sell_price: limits.min_sell_price.map(|p| p.0),
            max_buy_price: limits.max_buy_price.map(|p| p.0),
        }
    }

    /// Writes them to `path` atomically.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?)?;
        std::fs::rename(&tmp, path)
    }
}

/// `[api]`: the node's local HTTP interface. Requests from loopback need no token (unless
/// `trust_loopback = false`, as behind a reverse proxy on the same host); any other needs a
/// bearer token from `peerwatt token new`, whose scope (read or control) decides what it may do.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiSection {
    /// Address and port to listen on (default 127.0.0.1:8470; `0.0.0.0:8470` for the LAN).
    pub listen: String,
    /// Serve loopback requests without a token.
    pub trust_loopback: bool,
    /// The hashed tokens, relative to node.toml's directory.
    pub tokens_file: PathBuf,
    /// Largest request body, bytes.
    pub max_body_bytes: usize,
    /// Longest a request may take, milliseconds.
    pub timeout_ms: u64,
}

impl Default for ApiSection {
    fn default() -> Self {
        ApiSection {
            listen: "127.0.0.1:8470".into(),
            trust_loopback: true,
            tokens_file: "api-tokens.json".into(),
            max_body_bytes: 16 * 1024,
            timeout_ms: 5_000,
        }
    }
}

fn default_key_file() -> PathBuf {
    "node.key".into()
}

fn default_ledger_dir() -> PathBuf {
    "ledger".into()
}

const fn default_status_every() -> u64 {
    1_000
}

/// Builds a [`NodeConfig`]: defaults everywhere, then what the caller sets.
#[derive(Debug, Clone)]
pub struct NodeConfigBuilder {
    config: NodeConfig,
}

impl NodeConfigBuilder {
    /// A tracing filter for the node's log.
    pub fn log_filter(mut self, filter: &str) -> NodeConfigBuilder {
        self.config.log.filter = Some(filter.to_owned());
        self
    }

    /// Home Assistant discovery on the meter's broker.
    pub fn home_assistant(mut self, section: crate::home_assistant::HomeAssistantSection) -> NodeConfigBuilder {
        self.config.home_assistant = Some(section);
        self
    }

    /// The HTTP interface.
    pub fn api(mut self, api: ApiSection) -> NodeConfigBuilder {
        self.config.api = Some(api);
        self
    }

    /// The meter.
    pub fn meter(mut self, meter: MeterConfig) -> NodeConfigBuilder {
        self.config.meter = Some(meter);
        self
    }

    /// The community file and the membership certificate (relative to the file's directory).
    pub fn community(mut self, file: impl Into<PathBuf>, certificate: impl Into<PathBuf>) -> NodeConfigBuilder {
        self.config.community = Some(CommunitySection { file: file.into(), certificate: certificate.into() });
        self
    }

    /// How often the node rewrites `status.json`, real ms.
    pub fn status_every_ms(mut self, ms: u64) -> NodeConfigBuilder {
        self.config.node.status_every_ms = ms;
        self
    }

    /// `[market]`.
    pub fn market(mut self, market: MarketSection) -> NodeConfigBuilder {
        self.config.market = market;
        self
    }

    /// `[network]`.
    pub fn network(mut self, network: NetworkSection) -> NodeConfigBuilder {
        self.config.network = network;
        self
    }

    /// The configuration.
    pub fn build(self) -> NodeConfig {
        self.config
    }
}

impl NodeConfig {
    /// A builder for the node named `name` (its key in `node.key`, its ledger in `ledger/`).
    pub fn builder(name: &str) -> NodeConfigBuilder {
        NodeConfigBuilder {
            config: NodeConfig {
                node: NodeSection {
                    name: name.to_owned(),
                    key_file: default_key_file(),
                    ledger_dir: default_ledger_dir(),
                    status_every_ms: default_status_every(),
                },
                log: LogSection::default(),
                meter: None,
                community: None,
                market: MarketSection::default(),
                network: NetworkSection::default(),
                api: None,
                home_assistant: None,
                dir: PathBuf::new(),
            },
        }
    }

    /// The configuration as `node.toml` says it.
    pub fn to_toml(&self) -> Result<String, toml::ser::Error> {
        toml::to_string(self)
    }

    /// Writes the configuration to `path` (relative paths in it are relative to the file's
    /// directory, which becomes [`NodeConfig::dir`]).
    pub fn save(&mut self, path: &Path) -> Result<(), FileError> {
        let text = self.to_toml().map_err(|e| FileError::Invalid { path: path.to_owned(), why: e.to_string() })?;
        std::fs::write(path, text).map_err(|source| FileError::Write { path: path.to_owned(), source })?;
        self.dir = path.parent().map(Path::to_owned).unwrap_or_default();
        Ok(())
    }

    /// Reads and checks `path`.
    pub fn load(path: &Path) -> Result<NodeConfig, FileError> {
        let text = std::fs::read_to_string(path).map_err(|source| FileError::Read { path: path.to_owned(), source })?;
        let mut cfg: NodeConfig = toml::from_str(&text).map_err(|source| FileError::Parse {
            path: path.to_owned(),
            what: "node configuration",
            source: Box::new(source),
        })?;
        cfg.dir = path.parent().map(Path::to_owned).unwrap_or_default();
        Ok(cfg)
    }

    /// `p` resolved against the configuration's directory.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() { p.to_owned() } else { self.dir.join(p) }
    }

    /// Where the running node writes its status (read by `peerwatt status`).
    pub fn status_file(&self) -> PathBuf {
        self.dir.join("status.json")
    }

    /// The price limits set through the API (`PUT /api/v1/limits`), which override `[market]`'s
    /// `min_sell_price` and `max_buy_price` from the next start on.
    pub fn limits_file(&self) -> PathBuf {
        self.dir.join("limits.json")
    }

    /// `[market]`'s limits, with the prices of `limits.json` over them if the API set any (a
    /// damaged file is reported and ignored: node.toml's limits hold).
    pub fn effective_limits(&self) -> UserLimits {
        let mut limits = self.market.limits();
        match std::fs::read_to_string(self.limits_file()) {
            Err(_) => {}
            Ok(text) => match serde_json::from_str::<PriceLimits>(&text) {
                Ok(set) => {
                    limits.min_sell_price = set.min_sell_price.map(Price);
                    limits.max_buy_price = set.max_buy_price.map(Price);
                }
                Err(e) => tracing::warn!(error = %e, "limits.json is damaged; the limits of node.toml hold"),
            },
        }
        limits
    }

    /// The node's own state database (pending trade requests).
    pub fn state_dir(&self) -> PathBuf {
        self.dir.join("state")
    }

    /// The persisted meter history.
    pub fn meter_history_file(&self) -> PathBuf {
        self.dir.join("meter-history.json")
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a test panics to fail

    use peerwatt_meter::{Format, RoleConfig};

    use super::*;

    #[test]
    fn a_built_configuration_is_written_and_read_back_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let mut meter = MeterConfig::new("127.0.0.1", 1884);
        meter.grid = Some(RoleConfig::new(Format::Tasmota, vec!["tele/house/SENSOR".into()]));
        let market =
            MarketSection { forecast: Forecast::Recent, min_sell_price: Some(90_000), ..MarketSection::default() };
        let network = NetworkSection { listen: vec!["/ip4/127.0.0.1/tcp/4001".into()], ..NetworkSection::default() };
        let mut built = NodeConfig::builder("Ann's roof")
            .log_filter("info")
            .meter(meter)
            .community("community.toml", "membership.cert")
            .market(market)
            .network(network)
            .build();
        let path = dir.path().join("node.toml");
        built.save(&path).unwrap();
        let loaded = NodeConfig::load(&path).unwrap();
        assert_eq!(loaded.to_toml().unwrap(), built.to_toml().unwrap());
        assert_eq!(loaded.market.min_sell_price, Some(90_000));
        assert_eq!(loaded.meter.unwrap().grid.unwrap().format, Format::Tasmota);
        assert_eq!(loaded.dir, dir.path());
    }
}
