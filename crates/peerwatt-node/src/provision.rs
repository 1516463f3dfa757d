//! Member directories written in one go, for communities made by a program rather than by
//! hand: the simulator's neighbourhood and the test communities. Each member gets a fresh
//! key, the community file, a certificate signed by the admin and a `node.toml`.

use std::path::Path;

use peerwatt_core::{Community, IntervalId, MembershipCert, NodeKey, Signed, Timestamp};

use crate::community_file::{certificate_text, community_toml};
use crate::config::{CommunitySection, FileError, NodeConfig};

/// A member directory that is ready for [`crate::start`].
#[derive(Debug, Clone)]
pub struct Provisioned {
    /// Its configuration, loaded back from the `node.toml` written.
    pub config: NodeConfig,
    /// Its public id (PeerId).
    pub peer_id: String,
    /// Its loopback TCP address with the `/p2p/` suffix, for others to bootstrap from.
    pub address: String,
}

/// What differs between members.
#[derive(Debug, Clone)]
pub struct MemberSpec<'a> {
    /// The loopback TCP port to listen on.
    pub port: u16,
    /// Addresses of members to connect to first.
    pub bootstrap: &'a [String],
    /// Its configuration (the node's name is also the certificate's); the community, the
    /// listen address and the bootstrap peers are set here.
    pub config: NodeConfig,
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> FileError + '_ {
    move |source| FileError::Read { path: path.to_owned(), source }
}

fn invalid(path: &Path, why: impl ToString) -> FileError {
    FileError::Invalid { path: path.to_owned(), why: why.to_string() }
}

/// Writes member `spec` of `community` into `dir` (created if missing), admitted by `admin`
/// for ever, and loads its configuration back.
pub fn member(
    dir: &Path,
    community: &Community,
    admin: &NodeKey,
    spec: MemberSpec<'_>,
) -> Result<Provisioned, FileError> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    // A community file carries the admin's signed rules; one built in code without them is
    // signed here, as version 1.
    let signed;
    let community = if community.rules.is_empty() {
        signed = community.clone().signed_by(admin, IntervalId(0), Timestamp(0));
        &signed
    } else {
        community
    };
    let key = NodeKey::generate().map_err(|e| invalid(dir, e))?;
    let key_path = dir.join("node.key");
    key.save(&key_path).map_err(|e| invalid(&key_path, e))?;
    let cert = Signed::sign(
        admin,
        MembershipCert {
            community: community.id,
            member: key.public(),
            name: spec.config.node.name.clone(),
            zone: "z".into(),
            valid_from: Timestamp(0),
            valid_until: Timestamp(u64::MAX),
        },
    );
    std::fs::write(dir.join("community.toml"), community_toml(community)).map_err(io(dir))?;
    std::fs::write(dir.join("membership.cert"), certificate_text(&cert, community)).map_err(io(dir))?;
    let mut config = spec.config;
    config.community = Some(CommunitySection { file: "community.toml".into(), certificate: "membership.cert".into() });
    config.network.listen = vec![format!("/ip4/127.0.0.1/tcp/{}", spec.port)];
    config.network.bootstrap = spec.bootstrap.to_vec();
    config.save(&dir.join("node.toml"))?;
    let peer_id = key.public().to_string();
    Ok(Provisioned { config, address: format!("/ip4/127.0.0.1/tcp/{}/p2p/{peer_id}", spec.port), peer_id })
}
