//! peerwatt-net: the libp2p network of a peerwatt node, with no trading logic.
//!
//! One task owns the swarm: TCP (with noise and yamux) and QUIC, gossipsub (every message
//! validated by the node before it is forwarded), request-response for trade requests
//! (`/peerwatt/trade/1`), identify, peer discovery through an address book and peer exchange
//! (`/peerwatt/peers/1`, see [`peers`]) starting from the bootstrap list, and optional mDNS for
//! LAN communities. The node drives it through [`NetHandle`] and reads [`Event`]s.
//!
//! [`inproc`] serves the same handle and events between the nodes of one process (the
//! simulator's large streets), with configurable latency and loss. [`Network`] is the seam a
//! node is generic over.

pub mod codec;
pub mod inproc;
pub mod network;
pub mod peers;
pub mod ports;
pub mod scoring;
pub mod service;

pub use inproc::{Hub, InProcessConfig, spawn_in_process};
pub use libp2p::gossipsub::MessageId;
pub use libp2p::identity::Keypair;
pub use libp2p::{Multiaddr, PeerId};
pub use network::Network;
pub use ports::free_port;
pub use service::{
    Event, Limits, MESH_LOW, NetConfig, NetError, NetHandle, Responder, Verdict, error_chain, probe_port, spawn,
};

/// The libp2p peer id of a member's public key (the same ed25519 key); `None` if the key is
/// not one libp2p takes.
pub fn peer_id_of(key: &peerwatt_core::PublicKey) -> Option<PeerId> {
    let ed = libp2p::identity::ed25519::PublicKey::try_from_bytes(&key.to_bytes()).ok()?;
    Some(libp2p::identity::PublicKey::from(ed).to_peer_id())
}

/// The libp2p keypair of a node key: the same ed25519 key, so the PeerId names the signer.
/// Never substitutes another key: an error here means the node must not start.
pub fn keypair_of(key: &peerwatt_core::NodeKey) -> Result<Keypair, libp2p::identity::DecodingError> {
    let mut seed = *key.secret_seed();
    Keypair::ed25519_from_bytes(&mut seed)
}
