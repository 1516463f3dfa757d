//! `node.toml`: the node's configuration. Unknown keys are errors, so a typo never silently
//! falls back to a default.

use std::path::{Path, PathBuf};

use anyhow::Context;
use peerwatt_meter::MeterConfig;
use serde::Deserialize;

/// The whole of `node.toml`.
#[derive(Debug, Clone, Deserialize)]
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
    /// The directory of the file; relative paths are relative to it.
    #[serde(skip)]
    pub dir: PathBuf,
}

/// `[node]`.
#[derive(Debug, Clone, Deserialize)]
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
}

/// `[community]` of `node.toml`: where the community file and this node's certificate are.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommunitySection {
    /// The community file from the admin (`community.toml`).
    pub file: PathBuf,
    /// This node's membership certificate.
    pub certificate: PathBuf,
}

/// `[log]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSection {
    /// A tracing filter (RUST_LOG wins).
    pub filter: Option<String>,
}

fn default_key_file() -> PathBuf {
    "node.key".into()
}

fn default_ledger_dir() -> PathBuf {
    "ledger".into()
}

impl NodeConfig {
    /// Reads and checks `path`.
    pub fn load(path: &Path) -> anyhow::Result<NodeConfig> {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        let mut cfg: NodeConfig =
            toml::from_str(&text).with_context(|| format!("{} is not a valid node configuration", path.display()))?;
        cfg.dir = path.parent().map(Path::to_owned).unwrap_or_default();
        Ok(cfg)
    }

    /// `p` resolved against the configuration's directory.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() { p.to_owned() } else { self.dir.join(p) }
    }
}
