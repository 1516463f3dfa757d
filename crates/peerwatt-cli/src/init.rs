//! `peerwatt init`: create a node's key, configuration and ledger.

use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::path::PathBuf;
use std::process::ExitCode;

use peerwatt_core::{EntryKind, NodeKey};

use crate::datadir::DataDir;
use crate::failure::{Failure, Hint};

/// Arguments of `peerwatt init`.
#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// Where to create the node (created if missing, mode 0700).
    #[arg(long, env = "PEERWATT_DATA_DIR")]
    pub data_dir: PathBuf,
    /// A display name for this node, written into node.toml.
    #[arg(long, default_value = "my-home")]
    pub name: String,
}

/// The commented default configuration written by `init`.
pub fn default_config(name: &str) -> String {
    let name = toml_string(name);
    format!(
        r#"# peerwatt node configuration, created by `peerwatt init`.
# Relative paths are relative to the directory of this file.

[node]
# A display name for this node; the community admin's certificate carries the official one.
name = {name}
# The node's secret key (ed25519, mode 0600). The same key is the node's libp2p identity,
# so the public id printed by `peerwatt init` names both the network peer and the signer.
key_file = "node.key"
# The node's tamper-evident ledger (a sled database directory).
ledger_dir = "ledger"

[log]
# Log filter (tracing EnvFilter syntax); the RUST_LOG environment variable overrides it.
filter = "info"

# Your meter, read over MQTT from the broker your meter reader already publishes to.
# `peerwatt meter scan --host <broker>` finds it and prints the lines; check them with
# `peerwatt meter watch --config node.toml`. docs/meters.md has the lines for Tasmota, Shelly,
# DSMR-reader, ESPHome, OpenDTU, zigbee2mqtt and any JSON.
#
# [meter]
# host = "127.0.0.1"
# port = 1883
# username = "peerwatt"            # the password goes in PEERWATT_MQTT_PASSWORD
#
# [meter.grid]
# format = "auto"                  # or tasmota, shelly-gen2, dsmr-reader, esphome, opendtu, zigbee2mqtt, json
# topics = ["tele/meter/SENSOR"]

# Your community: the file from your community admin and the certificate admitting this node
# (check both with `peerwatt community check --config node.toml`).
#
# [community]
# file = "community.toml"
# certificate = "membership.cert"

# Trading: the homeowner's limits and the strategy's timing (every key optional; these are
# the defaults). Prices are micro-currency per kWh (0.25 EUR/kWh = 250000); the limits can also
# be set while the node runs (PUT /api/v1/limits), which then win over these.
#
# [market]
# enabled = true                   # false: only relay, record and answer; never trade
# min_sell_price = 90000           # never sell below (default: no limit but the feed-in tariff)
# max_buy_price = 250000           # never buy above (default: no limit but the retail tariff)
# max_energy_per_interval_wh = 2000
# reserve_wh = 0                   # keep this much of a forecast surplus unsold
# forecast = "same-time-of-day"    # or "recent"
# forecast_days = 7
# forecast_intervals = 4
# tick_ms = 1000
# reprice_ms = 60000
# request_timeout_ms = 5000

# The network (docs/operations.md "Network"). Addresses are libp2p multiaddrs:
# /ip4/<address>/tcp/<port> for TCP, /ip4/<address>/udp/<port>/quic-v1 for QUIC, /ip6/... for
# IPv6; 0.0.0.0 listens on every interface. A bootstrap address ends in /p2p/<public id>.
#
# [network]
# listen = ["/ip4/0.0.0.0/tcp/4001", "/ip4/0.0.0.0/udp/4001/quic-v1"]
# bootstrap = []                   # more peers to dial first, besides the community file's
# mdns = false                     # also find peers on the LAN
# target_peers = 16                # look for more peers while fewer are connected
# ban_after_rejects = 20           # messages no honest node sends, before a peer is banned
# max_connections = 96             # connections in all (a Raspberry Pi in a community of 1,000)
# max_inbound = 48                 # connections peers open to this node: raise on a bootstrap node
# max_per_peer = 2
# max_pending_inbound = 16
# heartbeat_ms = 1000
# discovery_ms = 30000

# The local HTTP interface (REST API and Prometheus metrics, docs/interfaces.md); off without
# this section. Requests from other machines need a token: `peerwatt token new`.
#
# [api]
# listen = "127.0.0.1:8470"

# Home Assistant (docs/interfaces.md "Home Assistant"): a device with the Energy dashboard's
# sensors, published on the [meter] broker; off without this section. `peerwatt ha remove`
# clears it from Home Assistant.
#
# [home_assistant]
# discovery_prefix = "homeassistant"
# currency = "EUR"
"#
    )
}

/// `name` as a TOML basic string.
fn toml_string(name: &str) -> String {
    toml::Value::String(name.to_owned()).to_string()
}

/// Runs `peerwatt init`.
pub fn run(args: &InitArgs) -> Result<ExitCode, Failure> {
    let dir = DataDir::new(&args.data_dir);
    let key_path = dir.key_path();
    if key_path.exists() {
        let id = NodeKey::load(&key_path).map(|k| k.public().to_string()).unwrap_or_else(|_| "unreadable".into());
        return Err(anyhow::anyhow!("{} already holds a node key (public id {id})", key_path.display()))
            .hint("a node key is never overwritten; use another --data-dir for a new node");
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir.root())
        .hint("check that the parent directory exists and is writable")?;

    let key = NodeKey::generate().hint("the operating system's random number generator failed")?;
    key.save(&key_path).hint("check that the data directory is writable")?;
    let public = key.public();
    let config_path = dir.config_path();
    let config_note = if config_path.exists() {
        "kept the existing one"
    } else {
        fs::write(&config_path, default_config(&args.name)).hint("check that the data directory is writable")?;
        "created"
    };

    let ledger = dir.create_ledger(key)?;
    let note = format!("node initialised: {public}");
    ledger.append(EntryKind::ConfigChange, note.into_bytes())?;
    ledger.sign_head()?;

    println!("Initialised a peerwatt node in {}", dir.root().display());
    println!("  public id: {public}");
    println!("  key:       {} (mode 0600; back it up, keep it secret)", key_path.display());
    println!("  config:    {} ({config_note})", config_path.display());
    println!("  ledger:    {} ({})", dir.ledger_path().display(), crate::count(ledger.len()?, "entry", "entries"));
    println!();
    println!("Give your public id to your community admin to be admitted.");
    println!("Inspect the ledger with `peerwatt ledger show --data-dir {}`.", dir.root().display());
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_config_in_the_repository_is_what_init_writes() {
        let example = include_str!("../../../config/node.example.toml");
        assert_eq!(example, default_config("my-home"), "regenerate config/node.example.toml from default_config");
    }

    /// The config with every commented-out section and setting switched on.
    fn every_example_on(text: &str) -> String {
        text.lines()
            .map(|line| match line.strip_prefix("# ") {
                Some(rest)
                    if rest.starts_with('[') || rest.split_once(" = ").is_some_and(|(k, _)| !k.contains(' ')) =>
                {
                    rest
                }
                _ => line,
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn every_documented_setting_is_one_the_node_reads_and_the_defaults_are_the_codes() {
        let text = every_example_on(&default_config("my-home"));
        let cfg: peerwatt_node::NodeConfig = toml::from_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        // The example shows the defaults where it says so.
        let (network, defaults) = (&cfg.network, peerwatt_node::config::NetworkSection::default());
        assert_eq!(network.listen, defaults.listen);
        assert_eq!(
            (network.target_peers, network.ban_after_rejects),
            (defaults.target_peers, defaults.ban_after_rejects)
        );
        assert_eq!(
            (network.heartbeat_ms, network.discovery_ms, network.mdns),
            (defaults.heartbeat_ms, defaults.discovery_ms, defaults.mdns)
        );
        let (market, defaults) = (&cfg.market, peerwatt_node::config::MarketSection::default());
        assert_eq!(
            (market.tick_ms, market.reprice_ms, market.request_timeout_ms),
            (defaults.tick_ms, defaults.reprice_ms, defaults.request_timeout_ms)
        );
        assert_eq!(
            (market.forecast_days, market.forecast_intervals),
            (defaults.forecast_days, defaults.forecast_intervals)
        );
        assert!(cfg.meter.is_some() && cfg.community.is_some() && cfg.api.is_some() && cfg.home_assistant.is_some());
    }

    #[test]
    fn default_config_is_valid_toml_and_quotes_the_name() {
        let text = default_config("Ann's \"sunny\" roof");
        let value: toml::Table = toml::from_str(&text).unwrap();
        assert_eq!(value["node"]["name"].as_str(), Some("Ann's \"sunny\" roof"));
        assert_eq!(value["node"]["key_file"].as_str(), Some("node.key"));
    }
}
