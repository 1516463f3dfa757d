//! Gossipsub peer scoring: the parameters in one place (as Lighthouse keeps its own), with
//! why each is what it is.
//!
//! A peerwatt node validates every gossip message itself (signatures, membership, the
//! market's rules) and reports a verdict: `Reject` only for what is invalid for every node
//! (a bad signature, a malformed frame, an outsider's certificate: `GossipReject::penalty`),
//! `Ignore` for what is late, a replay, or judged by this node's own view (its clock, its
//! community file), which an honest sender need not share. Scoring turns the rejects into a
//! score per peer, per topic; below [`GRAYLIST_THRESHOLD`] gossipsub ignores everything the
//! peer sends, and the network bans it once it rejected [`BAN_AFTER_REJECTS`] of its messages
//! itself. Honest peers validate before they forward, so they do not forward what every node
//! rejects. Gossipsub also lowers the score of peers that delivered the same invalid message
//! while it was being validated: only a dishonest or broken peer relays such messages. Everything else gossipsub can score is switched off or kept
//! small, because a street's meshes are small and its traffic bursty (orders every few
//! minutes): a peer that sends little is not a bad peer, and many homes may share one
//! address (a carrier's NAT, or one machine in tests).

use std::collections::HashMap;
use std::time::Duration;

use libp2p::gossipsub::{IdentTopic, PeerScoreParams, PeerScoreThresholds, TopicScoreParams};

/// Below this, the node no longer gossips (IHAVE/IWANT) with the peer.
pub const GOSSIP_THRESHOLD: f64 = -40.0;
/// Below this, the node no longer publishes its own messages to the peer.
pub const PUBLISH_THRESHOLD: f64 = -80.0;
/// Below this, everything from the peer is ignored (graylisted).
pub const GRAYLIST_THRESHOLD: f64 = -160.0;

/// The weight of an invalid message (P4, applied to the square of the decayed count, per
/// topic): the third invalid message on a topic in a short while graylists a peer
/// (3² × −20 = −180, less what it earned elsewhere: rotating over the four topics, about six).
/// Any negative score takes a peer out of the meshes for a while, so even one costs it
/// something until it decays.
pub const INVALID_MESSAGE_WEIGHT: f64 = -20.0;
/// How fast the count of invalid messages forgets, per [`DECAY_INTERVAL`]: halved in about
/// seventy seconds. While graylisted a peer's messages are not even validated (so not counted
/// either): three rejects keep it out for about six seconds, more for longer, and the node's
/// own strikes ban it for good after `ban_after_rejects`.
pub const INVALID_MESSAGE_DECAY: f64 = 0.99;
/// How often scores decay.
pub const DECAY_INTERVAL: Duration = Duration::from_secs(1);

/// A peer below the graylist is banned once this node itself rejected this many of its
/// messages within [`REJECT_WINDOW`] (a score can also sink from slowness alone: broken IWANT
/// promises; that is never banned).
pub const BAN_AFTER_REJECTS: usize = 3;
/// See [`BAN_AFTER_REJECTS`].
pub const REJECT_WINDOW: Duration = Duration::from_secs(60);

/// The thresholds.
pub fn thresholds() -> PeerScoreThresholds {
    PeerScoreThresholds {
        gossip_threshold: GOSSIP_THRESHOLD,
        publish_threshold: PUBLISH_THRESHOLD,
        graylist_threshold: GRAYLIST_THRESHOLD,
        // peerwatt does not take gossipsub's peer exchange (its own discovery does that).
        accept_px_threshold: 100.0,
        opportunistic_graft_threshold: 3.0,
    }
}

/// The score parameters for the node's `topics`, each weighted the same.
pub fn params(topics: &[String]) -> PeerScoreParams {
    let topics: HashMap<_, _> = topics.iter().map(|t| (IdentTopic::new(t).hash(), topic_params())).collect();
    PeerScoreParams {
        topics,
        topic_score_cap: 10.0,
        app_specific_weight: 0.0,
        // Many homes may share an address (a carrier's NAT; every node of a test on 127.0.0.1).
        ip_colocation_factor_weight: 0.0,
        // Broken IWANT promises: a small penalty, beyond a few.
        behaviour_penalty_weight: -1.0,
        behaviour_penalty_threshold: 6.0,
        behaviour_penalty_decay: 0.9,
        decay_interval: DECAY_INTERVAL,
        // A slow home (a Raspberry Pi on a busy uplink) is not a dishonest one.
        slow_peer_weight: 0.0,
        ..PeerScoreParams::default()
    }
}

/// One topic's: a little credit for time in the mesh and first deliveries, no penalty for
/// delivering little, a heavy one for invalid messages.
fn topic_params() -> TopicScoreParams {
    TopicScoreParams {
        topic_weight: 1.0,
        time_in_mesh_weight: 0.01,
        time_in_mesh_quantum: Duration::from_secs(1),
        time_in_mesh_cap: 300.0,
        first_message_deliveries_weight: 0.5,
        first_message_deliveries_decay: 0.9,
        first_message_deliveries_cap: 10.0,
        // Small meshes and bursty traffic: under-delivery says nothing about honesty.
        mesh_message_deliveries_weight: 0.0,
        mesh_failure_penalty_weight: 0.0,
        invalid_message_deliveries_weight: INVALID_MESSAGE_WEIGHT,
        invalid_message_deliveries_decay: INVALID_MESSAGE_DECAY,
        ..TopicScoreParams::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_parameters_are_ones_gossipsub_takes() {
        let p = params(&["a".into(), "b".into()]);
        assert_eq!(p.validate(), Ok(()));
        assert_eq!(p.topics.len(), 2);
        let t = thresholds();
        assert_eq!(t.validate(), Ok(()));
        // The third invalid message in a row (before it decays) reaches the graylist, even
        // from a peer with all the credit it can earn; two do not, even from a new one.
        let credit = 0.01 * 300.0 + 0.5 * 10.0;
        assert!(3.0_f64.powi(2) * INVALID_MESSAGE_WEIGHT + credit <= GRAYLIST_THRESHOLD);
        assert!(2.0_f64.powi(2) * INVALID_MESSAGE_WEIGHT > GRAYLIST_THRESHOLD);
    }
}
