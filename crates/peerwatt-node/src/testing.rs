//! Test and benchmark helpers (feature `test-utils`): a community with its admin and node
//! data directories on loopback, ready for [`crate::start`].

use std::path::Path;
use std::time::Duration;

use peerwatt_core::{Community, IntervalLength, MembershipCert, NodeKey, Price, Signed, Timestamp};

use crate::community_file::{certificate_text, community_toml};
use crate::config::{FileError, NodeConfig};

pub use peerwatt_meter::testing::free_port;

fn io(path: &Path) -> impl Fn(std::io::Error) -> FileError + '_ {
    move |source| FileError::Read { path: path.to_owned(), source }
}

/// Creates a community (60 s intervals, gate closure 5 s, horizon 4, feed-in 0.08, retail
/// 0.30) and `n` member nodes under `dir`, all on loopback TCP, node 0 the bootstrap peer of
/// the others, with the strategy off (orders are placed by hand). `extra` is appended to every
/// node.toml. Returns the community and each node's configuration.
pub fn community_of(dir: &Path, n: usize, extra: &str) -> Result<(Community, Vec<NodeConfig>), FileError> {
    let admin = NodeKey::from_seed(&[200; 32]);
    let community = Community {
        name: "Bench".into(),
        id: Community::derive_id(&admin.public(), "Bench"),
        admin: admin.public(),
        interval: IntervalLength::from_secs(60)
            .map_err(|e| FileError::Invalid { path: dir.into(), why: e.to_string() })?,
        gate_closure: Duration::from_secs(5),
        horizon: 4,
        feed_in: Price(80_000),
        retail: Price(300_000),
        bootstrap: Vec::new(),
    };
    let mut configs: Vec<NodeConfig> = Vec::new();
    let mut first = String::new();
    for i in 0..n {
        let node_dir = dir.join(format!("node-{i}"));
        std::fs::create_dir_all(&node_dir).map_err(io(&node_dir))?;
        let key = NodeKey::generate().map_err(|e| FileError::Invalid { path: node_dir.clone(), why: e.to_string() })?;
        let key_path = node_dir.join("node.key");
        key.save(&key_path).map_err(|e| FileError::Invalid { path: key_path.clone(), why: e.to_string() })?;
        let cert = Signed::sign(
            &admin,
            MembershipCert {
                community: community.id,
                member: key.public(),
                name: format!("node-{i}"),
                zone: "z".into(),
                valid_from: Timestamp(0),
                valid_until: Timestamp(u64::MAX),
            },
        );
        std::fs::write(node_dir.join("community.toml"), community_toml(&community)).map_err(io(&node_dir))?;
        std::fs::write(node_dir.join("membership.cert"), certificate_text(&cert, &community)).map_err(io(&node_dir))?;
        let port = free_port().map_err(io(&node_dir))?;
        let address = format!("/ip4/127.0.0.1/tcp/{port}/p2p/{}", key.public());
        let bootstrap = if i == 0 { String::new() } else { format!("\"{first}\"") };
        if i == 0 {
            first = address;
        }
        let toml = format!(
            "[node]\nname = \"node-{i}\"\n\n[community]\nfile = \"community.toml\"\ncertificate = \"membership.cert\"\n\n\
             [market]\nenabled = false\ntick_ms = 100\n\n[network]\nlisten = [\"/ip4/127.0.0.1/tcp/{port}\"]\n\
             bootstrap = [{bootstrap}]\nheartbeat_ms = 100\ndiscovery_ms = 500\n{extra}"
        );
        let path = node_dir.join("node.toml");
        std::fs::write(&path, toml).map_err(io(&path))?;
        configs.push(NodeConfig::load(&path)?);
    }
    Ok((community, configs))
}
