//! `peerwatt ha`: Home Assistant discovery (`[home_assistant]` in node.toml). The node publishes
//! its discovery configs itself while it runs; `remove` clears them when the node goes away.

use std::process::ExitCode;

use anyhow::anyhow;
use peerwatt_node::NodeConfig;
use peerwatt_node::home_assistant::{self, Device};

use crate::DataDirArg;
use crate::datadir::DataDir;
use crate::failure::{Failure, Hint};

/// The `peerwatt ha` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum HaCommand {
    /// Remove the node's device from Home Assistant: clear its retained discovery configs,
    /// state and availability on the meter's broker (stop the node first, or it publishes them
    /// again).
    Remove(DataDirArg),
}

/// Runs a `peerwatt ha` subcommand.
pub fn run(cmd: HaCommand) -> Result<ExitCode, Failure> {
    match cmd {
        HaCommand::Remove(args) => remove(&args),
    }
}

fn remove(args: &DataDirArg) -> Result<ExitCode, Failure> {
    let dir = DataDir::new(&args.data_dir);
    let cfg = NodeConfig::load(&dir.config_path()).hint("is this a node's data directory?")?;
    let section = cfg.home_assistant.clone().unwrap_or_default();
    let broker = cfg
        .meter
        .clone()
        .ok_or_else(|| anyhow!("node.toml has no [meter] section: Home Assistant discovery uses the meter's broker"))
        .hint("nothing was published, so there is nothing to remove")?;
    let device = Device {
        node_id: section.checked_node_id(&cfg.node.name)?,
        name: cfg.node.name.clone(),
        public_id: dir.load_key()?.public().to_string(),
        version: peerwatt_node::api::VERSION.to_owned(),
    };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let cleared = runtime
        .block_on(home_assistant::remove(&broker, &section, &device))
        .hint(format!("is the broker at {}:{} up?", broker.host, broker.port))?;
    let configs = cleared.iter().filter(|t| t.ends_with("/config")).count();
    println!(
        "cleared {configs} discovery configs, the state and the availability of \"{}\" on {}:{}",
        device.node_id, broker.host, broker.port
    );
    Ok(ExitCode::SUCCESS)
}
