//! Meter statements: this node's own, numbered and corrected, and the latest revision of
//! every member's statement of each recent interval (what settlement and ex-post sharing are
//! computed from). Pure bookkeeping: signing, ledger and gossip are the trading core's.
//!
//! A node states each interval once, when its meter closes it. If the meter later reports the
//! interval differently (a late reading), the node signs a correction with the next revision;
//! every member keeps the highest revision it has seen and counts the ones it superseded. Two
//! different statements of one revision are an equivocation of their signer: the first is
//! kept, the second is refused and counted. Statements older than
//! [`STATEMENT_MAX_AGE_MS`] are dropped.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use peerwatt_core::{
    Community, CommunityId, Contracted, Hash, IntervalId, MeterFigures, MeterStatement, NodeKey, PublicKey, Signed,
    Timestamp, Wh,
};

use crate::gossip::{GossipReject, STATEMENT_MAX_AGE_MS, Stated};
use crate::strategy::Observed;

/// One closed interval as this node's meter measured it: what the node states.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Measured {
    /// The interval.
    pub interval: IntervalId,
    /// What the meter measured.
    pub figures: MeterFigures,
}

impl Measured {
    /// What the forecaster learns from it.
    pub fn observed(&self) -> Observed {
        let f = &self.figures;
        Observed { interval: self.interval, imported: f.imported, exported: f.exported, complete: f.complete }
    }

    /// The figures `statement` states (to state them again after its write failed).
    pub fn stated_in(statement: &MeterStatement) -> Measured {
        Measured { interval: statement.interval, figures: statement.figures.clone() }
    }
}

/// A member's statement as kept: the figures of its latest revision, its contracts, and its
/// digest (the signed statement itself is in its signer's ledger; a community's worth of them
/// in every member's memory was most of a node's memory in a 500-member street).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kept {
    /// The revision.
    pub revision: u32,
    /// Imported from the grid.
    pub imported: Wh,
    /// Exported to the grid.
    pub exported: Wh,
    /// Whether readings covered the whole interval.
    pub complete: bool,
    /// The energy the member contracted, per counterparty and side (ascending; shared by
    /// every member that keeps it in one process).
    pub contracts: Arc<[Contracted]>,
    /// The signed statement's digest.
    pub digest: Hash,
}

impl From<Stated> for Kept {
    fn from(s: Stated) -> Kept {
        Kept {
            revision: s.revision,
            imported: s.imported,
            exported: s.exported,
            complete: s.complete,
            contracts: s.contracts,
            digest: s.digest,
        }
    }
}

impl Kept {
    /// What a signed statement says (for an auditor reading it from a ledger).
    pub fn of_statement(statement: &Signed<MeterStatement>) -> Kept {
        Kept::from(Stated::of(statement, statement.digest()))
    }
}

/// How a member's statement was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Taken {
    /// The first statement of the member's interval seen here.
    New,
    /// A correction: it superseded the revision held.
    Superseded(u32),
}

/// Own and members' statements; see the module documentation.
#[derive(Debug)]
pub struct Statements {
    community: CommunityId,
    interval_ms: u64,
    /// Per interval, per member (this node included), the latest revision.
    by_interval: BTreeMap<IntervalId, HashMap<[u8; 32], Kept>>,
    /// This node's own latest statements, whole (to number and compare its corrections).
    own: BTreeMap<IntervalId, Signed<MeterStatement>>,
    /// Per interval, how many statements were taken (a settlement redoes its interval when
    /// this moved on).
    changes: BTreeMap<IntervalId, u64>,
}

impl Statements {
    /// An empty store for `community`.
    pub fn new(community: &Community) -> Statements {
        Statements {
            community: community.id,
            interval_ms: community.interval.millis(),
            by_interval: BTreeMap::new(),
            own: BTreeMap::new(),
            changes: BTreeMap::new(),
        }
    }

    /// The statement this node makes of `measured` at `now`: revision 0, or the next revision
    /// if it stated the interval differently before; `None` if it stated the same already, or
    /// if the interval ended more than [`STATEMENT_MAX_AGE_MS`] ago.
    /// `pending`: its statement of the interval that is signed but not yet durable, if any
    /// (newer than the one kept here).
    /// `contracts`: what the node contracted in the interval (see [`MeterStatement::contracts`]).
    pub fn own(
        &self,
        key: &NodeKey,
        measured: &Measured,
        contracts: &[Contracted],
        pending: Option<&Signed<MeterStatement>>,
        now: Timestamp,
    ) -> Option<Signed<MeterStatement>> {
        // Past the window every member refuses it, and this node's own earlier statement of
        // it is no longer kept to number a correction after.
        let end = (measured.interval.0 + 1).saturating_mul(self.interval_ms);
        if now.0.saturating_sub(end) > STATEMENT_MAX_AGE_MS {
            return None;
        }
        let latest = pending.or_else(|| self.own.get(&measured.interval));
        if latest.is_some_and(|s| s.body().figures == measured.figures && s.body().contracts == contracts) {
            return None;
        }
        let statement = MeterStatement {
            community: self.community,
            interval: measured.interval,
            revision: latest.map_or(0, |s| s.body().revision.saturating_add(1)),
            figures: measured.figures.clone(),
            contracts: contracts.to_vec(),
            created_at: now,
        };
        Some(Signed::sign(key, statement))
    }

    /// Takes a member's verified statement: kept if it is the first of its interval or a newer
    /// revision; refused if it is not newer, or is a second, different statement of the
    /// revision held.
    pub fn insert(&mut self, stated: Stated) -> Result<Taken, GossipReject> {
        let members = self.by_interval.entry(stated.interval).or_default();
        let Some(held) = members.get_mut(&stated.member) else {
            let (member, interval) = (stated.member, stated.interval);
            members.insert(member, Kept::from(stated));
            *self.changes.entry(interval).or_default() += 1;
            return Ok(Taken::New);
        };
        if stated.revision == held.revision && stated.digest != held.digest {
            return Err(GossipReject::Equivocation(stated.revision));
        }
        if stated.revision <= held.revision {
            return Err(GossipReject::Superseded { revision: stated.revision, held: held.revision });
        }
        let (superseded, interval) = (held.revision, stated.interval);
        *held = Kept::from(stated);
        *self.changes.entry(interval).or_default() += 1;
        Ok(Taken::Superseded(superseded))
    }

    /// Takes one of this node's own statements, durable in its ledger (made now, or read back
    /// after a restart): kept whole as the latest of its interval if it is newer.
    pub fn insert_own(&mut self, statement: Signed<MeterStatement>) {
        let body = statement.body();
        if self.own.get(&body.interval).is_some_and(|held| held.body().revision >= body.revision) {
            return;
        }
        let _ = self.insert(Stated::of(&statement, statement.digest()));
        self.own.insert(body.interval, statement);
    }

    /// This node's own latest statement of `interval`, if one is kept.
    pub fn own_of(&self, interval: IntervalId) -> Option<&Signed<MeterStatement>> {
        self.own.get(&interval)
    }

    /// The latest statement of `member` for `interval`, if one is kept.
    pub fn get(&self, member: &PublicKey, interval: IntervalId) -> Option<&Kept> {
        self.by_interval.get(&interval).and_then(|m| m.get(&member.to_bytes()))
    }

    /// Every member's latest statement of `interval`.
    pub fn of_interval(&self, interval: IntervalId) -> impl Iterator<Item = &Kept> {
        self.by_interval.get(&interval).into_iter().flat_map(HashMap::values)
    }

    /// Every member's latest statement of `interval`, in ascending order of member key (what
    /// settlement reads).
    pub fn members_of(&self, interval: IntervalId) -> Vec<([u8; 32], &Kept)> {
        let mut members: Vec<([u8; 32], &Kept)> =
            self.by_interval.get(&interval).into_iter().flatten().map(|(k, v)| (*k, v)).collect();
        members.sort_unstable_by_key(|a| a.0);
        members
    }

    /// How many members' statements of `interval` are kept.
    pub fn count(&self, interval: IntervalId) -> usize {
        self.by_interval.get(&interval).map_or(0, HashMap::len)
    }

    /// Whether a statement of the member with key bytes `member` for `interval` is kept.
    pub fn has(&self, member: &[u8; 32], interval: IntervalId) -> bool {
        self.by_interval.get(&interval).is_some_and(|m| m.contains_key(member))
    }

    /// The intervals this node's own statements are kept for.
    pub fn own_intervals(&self) -> impl Iterator<Item = IntervalId> + '_ {
        self.own.keys().copied()
    }

    /// How many statements of `interval` were taken so far (new ones and corrections).
    pub fn changes(&self, interval: IntervalId) -> u64 {
        self.changes.get(&interval).copied().unwrap_or(0)
    }

    /// How many statements are kept.
    pub fn len(&self) -> usize {
        self.by_interval.values().map(HashMap::len).sum()
    }

    /// Whether none is kept.
    pub fn is_empty(&self) -> bool {
        self.by_interval.is_empty()
    }

    /// Drops the statements of intervals that ended more than [`STATEMENT_MAX_AGE_MS`] before
    /// `now`.
    pub fn prune(&mut self, now: Timestamp) {
        let Some(first_kept) = self.first_kept(now) else { return };
        drop_before(&mut self.by_interval, first_kept);
        drop_before(&mut self.own, first_kept);
        drop_before(&mut self.changes, first_kept);
    }

    /// The oldest interval whose statements are kept at `now` (`None`: all are).
    pub fn first_kept(&self, now: Timestamp) -> Option<IntervalId> {
        let cutoff = now.0.checked_sub(STATEMENT_MAX_AGE_MS + self.interval_ms)?;
        // Intervals are numbered from the epoch in steps of the interval length.
        Some(IntervalId(cutoff / self.interval_ms.max(1)))
    }
}

/// Drops the entries of intervals before `first`. Called every tick: the map is split only
/// when it holds one (a split moves every entry it keeps).
pub(crate) fn drop_before<V>(map: &mut BTreeMap<IntervalId, V>, first: IntervalId) {
    if map.first_key_value().is_some_and(|(oldest, _)| *oldest < first) {
        *map = map.split_off(&first);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a test panics to fail

    use super::*;
    use crate::trader::testkit::{self, community};

    fn measured(imported: u64) -> Measured {
        testkit::measured(IntervalId(100), imported)
    }

    fn store(s: &mut Statements, st: Signed<MeterStatement>) -> Result<Taken, GossipReject> {
        s.insert(Stated::of(&st, st.digest()))
    }

    #[test]
    fn an_interval_is_stated_once_and_corrected_with_the_next_revision() {
        let (c, key) = (community(), NodeKey::from_seed(&[1; 32]));
        let mut s = Statements::new(&c);
        let first = s.own(&key, &measured(120), &[], None, Timestamp(1)).unwrap();
        assert_eq!(first.body().revision, 0);
        assert_eq!(s.own(&key, &measured(130), &[], Some(&first), Timestamp(1)).unwrap().body().revision, 1);
        s.insert_own(first.clone());
        assert_eq!(s.get(&key.public(), IntervalId(100)).map(|k| k.digest), Some(first.digest()));
        assert!(
            s.own(&key, &measured(120), &[], None, Timestamp(2)).is_none(),
            "the same figures are not stated again"
        );
        let correction = s.own(&key, &measured(130), &[], None, Timestamp(3)).unwrap();
        assert_eq!(correction.body().revision, 1);
        s.insert_own(correction);
        let kept = s.get(&key.public(), IntervalId(100)).unwrap();
        assert_eq!((kept.revision, kept.imported), (1, Wh(130)));
        s.insert_own(first);
        assert_eq!(s.own_of(IntervalId(100)).unwrap().body().revision, 1, "an older own statement changes nothing");
    }

    #[test]
    fn older_revisions_and_equivocations_are_refused_and_the_first_is_kept() {
        let (c, key) = (community(), NodeKey::from_seed(&[1; 32]));
        let (mut signer, mut s) = (Statements::new(&c), Statements::new(&c));
        let r0 = signer.own(&key, &measured(120), &[], None, Timestamp(1)).unwrap();
        let r0_other = signer.own(&key, &measured(999), &[], None, Timestamp(1)).unwrap();
        signer.insert_own(r0.clone());
        let r1 = signer.own(&key, &measured(130), &[], None, Timestamp(2)).unwrap();
        store(&mut s, r0.clone()).unwrap();
        assert_eq!(store(&mut s, r0.clone()), Err(GossipReject::Superseded { revision: 0, held: 0 }));
        assert_eq!(store(&mut s, r0_other), Err(GossipReject::Equivocation(0)));
        assert_eq!(s.get(&key.public(), IntervalId(100)).unwrap().digest, r0.digest(), "the first is kept");
        assert_eq!(store(&mut s, r1), Ok(Taken::Superseded(0)));
        assert_eq!(store(&mut s, r0), Err(GossipReject::Superseded { revision: 0, held: 1 }));
    }

    #[test]
    fn an_interval_past_the_window_is_not_stated() {
        let (c, key) = (community(), NodeKey::from_seed(&[1; 32]));
        let s = Statements::new(&c);
        let end = c.interval.start(IntervalId(101)).0;
        assert!(s.own(&key, &measured(1), &[], None, Timestamp(end + STATEMENT_MAX_AGE_MS)).is_some());
        assert!(s.own(&key, &measured(1), &[], None, Timestamp(end + STATEMENT_MAX_AGE_MS + 1)).is_none());
    }

    #[test]
    fn statements_older_than_the_window_are_dropped() {
        let (c, key) = (community(), NodeKey::from_seed(&[1; 32]));
        let mut s = Statements::new(&c);
        s.insert_own(s.own(&key, &measured(1), &[], None, Timestamp(1)).unwrap());
        let end = c.interval.start(IntervalId(101)).0;
        s.prune(Timestamp(end + STATEMENT_MAX_AGE_MS));
        assert_eq!(s.len(), 1, "kept for the whole window");
        s.prune(Timestamp(end + STATEMENT_MAX_AGE_MS + c.interval.millis() + 1));
        assert!(s.is_empty());
    }
}
