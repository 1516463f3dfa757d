//! What a node has spoken for, per interval and side: the one place the strategy asks.
//!
//! Energy is spoken for from the moment it is promised: requested as a taker (no answer yet),
//! agreed (signed, waiting for the flush that makes it durable) and traded (in the ledger).
//! Each claim is keyed by the digest of the request it belongs to, so a trade is counted once
//! however it arrives (an answer, an announcement, a maker's reply to a query, a restart)
//! and moves between the stages without ever being added twice. The double sale fixed in
//! 4c4f3ab came from the three stages being summed from three owners: a trade agreed and not
//! yet flushed was in none of them for a moment, and a tick offered its energy again.

use std::collections::HashMap;

use peerwatt_core::{Hash, IntervalId, Side, Wh};

/// How far a claim has come.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// A request of this node as taker, without a final answer.
    Requested,
    /// Agreed and signed by both, waiting for the flush that makes it durable.
    Agreed,
    /// In this node's ledger.
    Traded,
}

/// One claim on energy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Claim {
    interval: IntervalId,
    side: Side,
    energy: Wh,
    stage: Stage,
}

/// Every claim of this node, by request digest, with the totals per interval and side.
#[derive(Debug, Default, Clone)]
pub struct Position {
    claims: HashMap<Hash, Claim>,
    totals: HashMap<(IntervalId, u8), u64>,
}

impl Position {
    /// Energy spoken for in `interval` on `side`: requested, agreed and traded.
    pub fn committed(&self, interval: IntervalId, side: Side) -> Wh {
        Wh(self.totals.get(&(interval, side as u8)).copied().unwrap_or(0))
    }

    /// The stage of the claim of request `digest`, if there is one.
    pub fn stage(&self, digest: &Hash) -> Option<Stage> {
        self.claims.get(digest).map(|c| c.stage)
    }

    /// Puts the claim of request `digest` at `stage` (adding it if new; its terms never change,
    /// so a claim already there keeps its energy).
    pub fn set(&mut self, digest: Hash, interval: IntervalId, side: Side, energy: Wh, stage: Stage) {
        match self.claims.get_mut(&digest) {
            Some(claim) => claim.stage = stage,
            None => {
                self.claims.insert(digest, Claim { interval, side, energy, stage });
                *self.totals.entry((interval, side as u8)).or_insert(0) += energy.0;
            }
        }
    }

    /// Moves an existing claim to `stage`; no claim, no change.
    pub fn advance(&mut self, digest: &Hash, stage: Stage) {
        if let Some(claim) = self.claims.get_mut(digest) {
            claim.stage = stage;
        }
    }

    /// Drops the claim of request `digest` (refused, aborted): its energy is free again.
    pub fn release(&mut self, digest: &Hash) {
        if let Some(claim) = self.claims.remove(digest) {
            let key = (claim.interval, claim.side as u8);
            if let Some(total) = self.totals.get_mut(&key) {
                *total = total.saturating_sub(claim.energy.0);
                if *total == 0 {
                    self.totals.remove(&key);
                }
            }
        }
    }

    /// Forgets the claims of intervals before `first_open`: the strategy never asks again.
    pub fn prune_before(&mut self, first_open: IntervalId) {
        self.claims.retain(|_, c| c.interval >= first_open);
        self.totals.retain(|(interval, _), _| *interval >= first_open);
    }

    /// How many claims there are at `stage`.
    pub fn count(&self, stage: Stage) -> usize {
        self.claims.values().filter(|c| c.stage == stage).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claim_counts_once_through_every_stage_until_released() {
        let mut p = Position::default();
        let (d, i) = (Hash::of(b"request"), IntervalId(7));
        p.set(d, i, Side::Buy, Wh(30), Stage::Requested);
        assert_eq!(p.committed(i, Side::Buy), Wh(30));
        // The same trade arriving again (answer, announcement) moves it, never adds it.
        p.set(d, i, Side::Buy, Wh(30), Stage::Agreed);
        p.advance(&d, Stage::Traded);
        p.set(d, i, Side::Buy, Wh(30), Stage::Traded);
        assert_eq!(p.committed(i, Side::Buy), Wh(30));
        assert_eq!(p.committed(i, Side::Sell), Wh::ZERO);
        assert_eq!(p.stage(&d), Some(Stage::Traded));
        p.release(&d);
        assert_eq!(p.committed(i, Side::Buy), Wh::ZERO);
        p.release(&d); // twice: nothing more to free
        assert_eq!(p.committed(i, Side::Buy), Wh::ZERO);
    }

    #[test]
    fn closed_intervals_are_forgotten() {
        let mut p = Position::default();
        p.set(Hash::of(b"a"), IntervalId(1), Side::Sell, Wh(5), Stage::Traded);
        p.set(Hash::of(b"b"), IntervalId(2), Side::Sell, Wh(6), Stage::Agreed);
        p.prune_before(IntervalId(2));
        assert_eq!(p.committed(IntervalId(1), Side::Sell), Wh::ZERO);
        assert_eq!(p.committed(IntervalId(2), Side::Sell), Wh(6));
        assert_eq!(p.count(Stage::Agreed), 1);
    }
}
