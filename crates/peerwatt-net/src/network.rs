//! The seam between a node and its network: what the node asks of it. [`NetHandle`] serves it
//! for both transports (libp2p, [`crate::spawn`]; in-process, [`crate::spawn_in_process`]):
//! each runs as a task that owns its connections and reads the handle's commands, and both
//! hand the node the same [`Event`](crate::Event)s. The node is generic over this trait, so a
//! transport that is neither (a test's recorder, a future relay-only client) plugs in the same way.

use std::future::Future;
use std::time::Duration;

use libp2p::PeerId;
use libp2p::gossipsub::MessageId;

use crate::service::{NetError, NetHandle, Responder, Verdict};

/// A node's network: gossip out, calls out and their answers, answers to calls in, verdicts
/// on gossip in, bans and a graceful stop.
pub trait Network: Clone + Send + Sync + 'static {
    /// This node's id on the network.
    fn peer_id(&self) -> PeerId;

    /// Gossips `data` on `topic` without waiting for the network; a failure comes back as
    /// [`Event::PublishFailed`](crate::Event::PublishFailed).
    fn publish_nowait(&self, topic: &str, data: Vec<u8>) -> impl Future<Output = Result<(), NetError>> + Send;

    /// Calls `peer` and waits for its answer (or the request timeout).
    fn request(&self, peer: PeerId, data: Vec<u8>) -> impl Future<Output = Result<Vec<u8>, NetError>> + Send;

    /// Answers a call that arrived as [`Event::Request`](crate::Event::Request).
    fn respond(&self, channel: Responder, data: Vec<u8>) -> impl Future<Output = Result<(), NetError>> + Send;

    /// Tells the network what to do with a gossip message awaiting a verdict.
    fn report(
        &self,
        id: MessageId,
        source: PeerId,
        verdict: Verdict,
    ) -> impl Future<Output = Result<(), NetError>> + Send;

    /// Cuts `peer` off for good.
    fn ban(&self, peer: PeerId) -> impl Future<Output = Result<(), NetError>> + Send;

    /// Stops, letting answers already given reach their callers for at most `grace`.
    fn shutdown(&self, grace: Duration) -> impl Future<Output = ()> + Send;
}

impl Network for NetHandle {
    fn peer_id(&self) -> PeerId {
        NetHandle::peer_id(self)
    }

    fn publish_nowait(&self, topic: &str, data: Vec<u8>) -> impl Future<Output = Result<(), NetError>> + Send {
        NetHandle::publish_nowait(self, topic, data)
    }

    fn request(&self, peer: PeerId, data: Vec<u8>) -> impl Future<Output = Result<Vec<u8>, NetError>> + Send {
        NetHandle::request(self, peer, data)
    }

    fn respond(&self, channel: Responder, data: Vec<u8>) -> impl Future<Output = Result<(), NetError>> + Send {
        NetHandle::respond(self, channel, data)
    }

    fn report(
        &self,
        id: MessageId,
        source: PeerId,
        verdict: Verdict,
    ) -> impl Future<Output = Result<(), NetError>> + Send {
        NetHandle::report(self, id, source, verdict)
    }

    fn ban(&self, peer: PeerId) -> impl Future<Output = Result<(), NetError>> + Send {
        NetHandle::ban(self, peer)
    }

    fn shutdown(&self, grace: Duration) -> impl Future<Output = ()> + Send {
        NetHandle::shutdown(self, grace)
    }
}
