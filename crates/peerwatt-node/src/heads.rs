//! Tree heads: when this node signs its own, and which heads of other nodes it records.
//!
//! Every head a node records is a ledger entry (signed, hashed, stored, verified by auditors),
//! and every head it signs is a gossip message that every member checks. Recording every
//! head of every member every interval costs each node a ledger entry per member per
//! interval, and the entries themselves grow the ledger, so everybody signs a new head every
//! interval, which everybody records again: work that grows with the square of the community.
//! Two bounds keep it linear without weakening what heads prove (two heads of one node that
//! are not consistent, held by anyone, show a rewrite):
//!
//! - a node signs a head at most every [`WITNESS_PERIOD`] intervals (hourly), when its ledger
//!   grew: a head covers everything before it, so an hourly head proves as much as four
//!   quarter-hourly ones, at a quarter of the messages every member checks;
//! - it records a member's head at most once per [`WITNESS_PERIOD`], at most
//!   [`MAX_RECORDED_PER_INTERVAL`] heads per interval, the members recorded longest ago first.

use std::collections::HashMap;

use peerwatt_core::{Community, Encode, EntryKind, IntervalId, IntervalLength, PublicKey, Signed, Timestamp, TreeHead};
use peerwatt_market::trader::phase_offset;

use peerwatt_ledger::Store;

use crate::committer::{Committer, blocking};
use crate::metrics::NodeMetrics;

/// Intervals between two records of one member's head, and between two heads of a node (an
/// hour of 15-minute intervals).
pub const WITNESS_PERIOD: u64 = 4;
/// At most this many heads of other members are recorded per interval: 8 an hour, so in a
/// community of more than 9 every member's head is held by 8 others every hour (one honest
/// holder is enough to show a rewrite), and a ledger grows by 192 witnessed heads a day, not
/// 768 (see docs/decisions/0041-tree-heads-linear-in-community.md).
pub const MAX_RECORDED_PER_INTERVAL: usize = 2;

/// The heads of other members seen and recorded.
#[derive(Debug, Default)]
pub(crate) struct Witness {
    /// Per member: the size of its last recorded head and the interval it was recorded in.
    recorded: HashMap<PublicKey, (u64, IntervalId)>,
    /// Per member: its newest head not recorded yet.
    candidates: HashMap<PublicKey, Signed<TreeHead>>,
}

impl Witness {
    /// A valid head from gossip: kept as its member's candidate if it is newer than what is
    /// recorded or kept already.
    pub fn offer(&mut self, head: Signed<TreeHead>) {
        let size = head.body().size;
        let member = *head.signer();
        let recorded = self.recorded.get(&member).map_or(0, |(s, _)| *s);
        let kept = self.candidates.get(&member).map_or(0, |h| h.body().size);
        if size > recorded && size > kept {
            self.candidates.insert(member, head);
        }
    }

    /// The heads to record in `interval`: members not recorded for [`WITNESS_PERIOD`]
    /// intervals, longest ago (or never) first, at most [`MAX_RECORDED_PER_INTERVAL`]. They
    /// count as recorded from now; the others wait.
    pub fn due(&mut self, interval: IntervalId) -> Vec<Signed<TreeHead>> {
        let last = |m: &PublicKey| self.recorded.get(m).map(|(_, at)| *at);
        let mut eligible: Vec<(Option<IntervalId>, [u8; 32], PublicKey)> = self
            .candidates
            .keys()
            .map(|m| (last(m), m.to_bytes(), *m))
            .filter(|(at, _, _)| at.is_none_or(|at| interval.0.saturating_sub(at.0) >= WITNESS_PERIOD))
            .collect();
        // Never recorded (None) sorts first, then the oldest; the key breaks ties. Only the
        // first few are wanted: select them (linear) before sorting them.
        let key = |e: &(Option<IntervalId>, [u8; 32], PublicKey)| (e.0, e.1);
        if eligible.len() > MAX_RECORDED_PER_INTERVAL {
            eligible.select_nth_unstable_by_key(MAX_RECORDED_PER_INTERVAL, key);
            eligible.truncate(MAX_RECORDED_PER_INTERVAL);
        }
        eligible.sort_unstable_by_key(key);
        let mut due = Vec::with_capacity(eligible.len());
        for (_, _, member) in eligible {
            if let Some(head) = self.candidates.remove(&member) {
                self.recorded.insert(member, (head.body().size, interval));
                due.push(head);
            }
        }
        due
    }
}

/// When this node signs a head of its own ledger.
#[derive(Debug, Default)]
pub(crate) struct HeadSchedule {
    /// The size of the last head signed.
    signed_size: u64,
    /// The interval of the last head signed (`None`: none since the start).
    signed_in: Option<IntervalId>,
}

impl HeadSchedule {
    /// A schedule whose last head has `size` entries (from the ledger at start).
    pub fn after(size: u64) -> HeadSchedule {
        HeadSchedule { signed_size: size, signed_in: None }
    }

    /// Whether a head is due in `interval` for a ledger of `size` entries.
    pub fn due(&self, size: u64, interval: IntervalId) -> bool {
        let period_over = self.signed_in.is_none_or(|at| interval.0.saturating_sub(at.0) >= WITNESS_PERIOD);
        size > self.signed_size && period_over
    }

    /// A head of `size` entries was signed in `interval`.
    pub fn signed(&mut self, size: u64, interval: IntervalId) {
        *self = HeadSchedule { signed_size: size, signed_in: Some(interval) };
    }
}

/// Heads, once per interval at this node's own phase of the hour: records the heads of
/// other members that are due, and signs a head of its own ledger when one is due. Why a
/// phase: with every node doing both at the same interval boundary, the community's heads all
/// left in the same instant, a burst of a hundred messages that every member receives, while
/// every node was busy with a ledger commit; it held up the orders queued behind it by seconds
/// in a 100-household community.
#[derive(Debug)]
pub(crate) struct Heads {
    witness: Witness,
    schedule: HeadSchedule,
    /// The interval of this node's shifted clock whose heads were handled last.
    phase_seen: Option<IntervalId>,
    /// This node's phase within the head period, ms (from its key).
    offset: u64,
    interval: IntervalLength,
}

impl Heads {
    /// The heads of node `me` in `community`, whose ledger's last head covers `signed_size`.
    pub fn new(me: &PublicKey, community: &Community, signed_size: u64) -> Heads {
        Heads {
            witness: Witness::default(),
            schedule: HeadSchedule::after(signed_size),
            phase_seen: None,
            offset: phase_offset(me, community.interval.millis() * WITNESS_PERIOD),
            interval: community.interval,
        }
    }

    /// A valid head of another member, from gossip.
    pub fn offer(&mut self, head: Signed<TreeHead>) {
        self.witness.offer(head);
    }

    /// The interval `now` is in on this node's clock shifted by its offset: the schedule
    /// counts these, so this node's heads fall at its own moment of the hour.
    fn phase(&self, now: Timestamp) -> IntervalId {
        self.interval.interval_at(Timestamp(now.0.saturating_add(self.offset)))
    }

    /// Once per phase interval: records the heads due and returns this node's own head if
    /// one is due (signed; to gossip).
    pub fn on_tick<S: Store + 'static>(
        &mut self,
        now: Timestamp,
        committer: &mut Committer<S>,
        metrics: &mut NodeMetrics,
    ) -> Option<Signed<TreeHead>> {
        let phase = self.phase(now);
        if self.phase_seen == Some(phase) {
            return None;
        }
        self.phase_seen = Some(phase);
        self.record_due(now, committer, metrics);
        let size = committer.ledger().len().unwrap_or(0);
        if !self.schedule.due(size, phase) {
            return None;
        }
        match blocking(|| committer.ledger().sign_head()) {
            Ok(head) => {
                self.schedule.signed(head.body().size, phase);
                metrics.heads_signed += 1;
                Some(head)
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot sign a tree head");
                metrics.ledger_errors += 1;
                None
            }
        }
    }

    /// Records the heads of other members due now, in one ledger batch, durable with the next
    /// flush (nothing leaves the node on the strength of them).
    pub fn record_due<S: Store + 'static>(
        &mut self,
        now: Timestamp,
        committer: &mut Committer<S>,
        metrics: &mut NodeMetrics,
    ) {
        let due = self.witness.due(self.phase(now));
        if due.is_empty() {
            return;
        }
        let items: Vec<_> = due.iter().map(|h| (EntryKind::WitnessedHead, h.to_bytes())).collect();
        let n = items.len() as u64;
        match committer.append_unsynced(items) {
            Ok(()) => metrics.heads_witnessed += n,
            Err(e) => {
                tracing::error!(error = %e, "cannot record witnessed heads");
                metrics.ledger_errors += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use peerwatt_core::{Hash, NodeKey, Timestamp};

    use super::*;

    fn head(key: &NodeKey, size: u64) -> Signed<TreeHead> {
        Signed::sign(key, TreeHead { size, root: Hash::of(&size.to_be_bytes()), time: Timestamp(size) })
    }

    fn keys(n: u8) -> Vec<NodeKey> {
        (0..n).map(|i| NodeKey::from_seed(&[i + 1; 32])).collect()
    }

    #[test]
    fn a_member_is_recorded_at_most_once_per_period_with_its_newest_head() {
        let k = keys(1);
        let mut w = Witness::default();
        w.offer(head(&k[0], 3));
        w.offer(head(&k[0], 5));
        w.offer(head(&k[0], 4)); // older than the candidate: ignored
        let due = w.due(IntervalId(10));
        assert_eq!(due.iter().map(|h| h.body().size).collect::<Vec<_>>(), vec![5]);
        w.offer(head(&k[0], 7));
        for i in 11..10 + WITNESS_PERIOD {
            assert!(w.due(IntervalId(i)).is_empty(), "recorded again in interval {i}");
        }
        let due = w.due(IntervalId(10 + WITNESS_PERIOD));
        assert_eq!(due.iter().map(|h| h.body().size).collect::<Vec<_>>(), vec![7]);
        w.offer(head(&k[0], 6)); // not newer than the recorded head
        assert!(w.due(IntervalId(100)).is_empty());
    }

    #[test]
    fn at_most_the_cap_is_recorded_per_interval_longest_ago_first() {
        let k = keys(MAX_RECORDED_PER_INTERVAL as u8 + 4);
        let mut w = Witness::default();
        for key in &k {
            w.offer(head(key, 1));
        }
        let first: Vec<PublicKey> = w.due(IntervalId(0)).iter().map(|h| *h.signer()).collect();
        assert_eq!(first.len(), MAX_RECORDED_PER_INTERVAL);
        // The four left over were never recorded: they go first next time, before anyone
        // recorded in interval 0, even when everybody has a newer head.
        for key in &k {
            w.offer(head(key, 2));
        }
        let second: Vec<PublicKey> = w.due(IntervalId(WITNESS_PERIOD)).iter().map(|h| *h.signer()).collect();
        assert_eq!(second.len(), MAX_RECORDED_PER_INTERVAL);
        let never: Vec<PublicKey> = k.iter().map(NodeKey::public).filter(|p| !first.contains(p)).collect();
        assert_eq!(never.len(), 4);
        assert!(second.iter().all(|p| never.contains(p)), "members never recorded come first");
    }

    #[test]
    fn a_head_is_signed_hourly_when_the_ledger_grew() {
        let mut s = HeadSchedule::after(0);
        assert!(!s.due(0, IntervalId(1)), "an empty ledger needs no head");
        assert!(s.due(2, IntervalId(1)), "the first head after the start comes at once");
        s.signed(2, IntervalId(1));
        assert!(!s.due(9, IntervalId(2)), "grown, but within the hour");
        assert!(!s.due(2, IntervalId(1 + WITNESS_PERIOD)), "the hour is over, but nothing is new");
        assert!(s.due(3, IntervalId(1 + WITNESS_PERIOD)));
    }
}
