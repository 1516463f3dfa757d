//! This node's settlements (see [`crate::settlement`] and docs/settlement.md). The node keeps
//! its trades per interval; once an interval's statements are in, it settles its side of the
//! interval against them in its next hourly slot and signs the `Settlement` into its ledger.
//! An interval is due when as many members have stated it as stated the interval before and
//! every counterparty's statement is in, or at the latest [`SETTLE_AFTER_MS`] after its end
//! (then it may be provisional); nothing is due before the node has run for a statement slot. A statement that arrives or changes later redoes the settlement in the node's
//! next hourly slot (at its own phase of the hour, as its statements), with the next revision if its figures change; nothing changes once the
//! statements' window ([`crate::gossip::STATEMENT_MAX_AGE_MS`]) has passed.

use std::collections::BTreeMap;

use peerwatt_core::{IntervalId, Settlement, Signed, Timestamp, Trade};

use super::stating::STATEMENT_GOSSIP_MS;
use super::{Effect, Trader, own_side, phase_offset};
use crate::settlement::{self, OwnTrade};
use crate::statements::drop_before;

/// An interval is settled at the latest this long after its end (node-clock ms): two
/// statement slots, by when every running member has stated it.
pub const SETTLE_AFTER_MS: u64 = 2 * STATEMENT_GOSSIP_MS;

/// This node's trades and settlements of recent intervals.
#[derive(Debug, Default)]
pub(super) struct Settling {
    /// This node's trades, per interval.
    trades: BTreeMap<IntervalId, Vec<OwnTrade>>,
    /// Per interval: its latest settlement, and what it read.
    settled: BTreeMap<IntervalId, Settled>,
    /// The statement slot of the last tick.
    last_slot: u64,
    /// The node's first tick: nothing is due until the members have had a statement slot since.
    first_tick: Option<Timestamp>,
}

/// An interval's settlement as far as it got.
#[derive(Debug, Default)]
struct Settled {
    /// The latest durable settlement.
    durable: Option<Signed<Settlement>>,
    /// One signed but not yet durable.
    in_flight: Option<Signed<Settlement>>,
    /// The statements' change count and the number of trades the latest computation read.
    read: Option<(u64, usize)>,
}

impl Settled {
    fn latest(&self) -> Option<&Signed<Settlement>> {
        self.in_flight.as_ref().or(self.durable.as_ref())
    }
}

/// The figures of a settlement, without its revision and time (two that agree need no redo).
fn figures(s: &Settlement) -> Settlement {
    Settlement { revision: 0, created_at: Timestamp(0), ..s.clone() }
}

impl Trader {
    /// One of this node's trades is in its ledger: kept for its interval's statement and
    /// settlement. A trade of an interval stated already (recorded late, after a restart)
    /// makes the interval's statement due again, with the trade listed.
    pub(super) fn note_trade(&mut self, trade: &Signed<Trade>) {
        let request = &trade.body().request;
        let terms = request.body();
        let counterparty = if *trade.signer() == self.me { request.signer() } else { trade.signer() };
        let own = OwnTrade {
            trade: trade.digest(),
            counterparty: counterparty.to_bytes(),
            side: own_side(&self.me, trade),
            energy: terms.energy,
            price: terms.price,
        };
        let trades = self.settling.trades.entry(terms.interval).or_default();
        if trades.iter().any(|t| t.trade == own.trade) {
            return;
        }
        trades.push(own);
        self.restate_interval(terms.interval);
    }

    /// This node's trades of `interval`.
    pub(super) fn trades_of(&self, interval: IntervalId) -> &[OwnTrade] {
        self.settling.trades.get(&interval).map_or(&[], Vec::as_slice)
    }

    /// In each of the node's settlement slots (hourly, at its own phase of the hour, as its
    /// statements): settles every interval that is due, and settles again those whose
    /// statements changed since. Not at each tick: the interval's last statement makes it due
    /// at every member at once, and the whole community signing and writing at that moment
    /// was a burst; nor at each arrival, which would sign a revision per member.
    pub(super) fn settlements_tick(&mut self, now: Timestamp) {
        self.prune_settling(now);
        self.settling.first_tick.get_or_insert(now);
        let slot = now.0.saturating_add(phase_offset(&self.me, STATEMENT_GOSSIP_MS)) / STATEMENT_GOSSIP_MS;
        if slot == self.settling.last_slot {
            return;
        }
        self.settling.last_slot = slot;
        let stated: Vec<IntervalId> = self.statements.own_intervals().collect();
        for interval in stated {
            let settled = self.settling.settled.get(&interval).is_some_and(|s| s.latest().is_some());
            if settled || self.settlement_due(interval, now) {
                self.settle(interval, now);
            }
        }
    }

    /// Whether `interval` is due: all its statements in, or its deadline passed.
    fn settlement_due(&self, interval: IntervalId, now: Timestamp) -> bool {
        // A node that just started has not heard the members' statements yet (they state in
        // their hourly slots): settled now, its earlier intervals would read its own alone.
        let running = self.settling.first_tick.map_or(0, |first| now.0.saturating_sub(first.0));
        if running < STATEMENT_GOSSIP_MS {
            return false;
        }
        let end = self.community.interval.start(IntervalId(interval.0 + 1));
        if now.0 >= end.0.saturating_add(SETTLE_AFTER_MS) {
            return true;
        }
        let stated = self.statements.count(interval);
        let before = self.statements.count(IntervalId(interval.0.saturating_sub(1)));
        stated >= before.max(1)
            && self.trades_of(interval).iter().all(|t| self.statements.has(&t.counterparty, interval))
    }

    /// Settles `interval` if what it reads changed since, and signs the result into the turn
    /// if its figures did.
    fn settle(&mut self, interval: IntervalId, now: Timestamp) {
        let read = (self.statements.changes(interval), self.trades_of(interval).len());
        let held = self.settling.settled.entry(interval).or_default();
        if held.read == Some(read) {
            return;
        }
        held.read = Some(read);
        let previous = held.latest().map(|s| (s.body().revision, figures(s.body())));
        let members = self.statements.members_of(interval);
        let trades = self.trades_of(interval);
        let rules = settlement::Rules::at(&self.community, interval);
        let worked = match &self.work_memo {
            Some(memo) => memo.work(&members, &rules),
            None => std::sync::Arc::new(settlement::work(&members, &rules)),
        };
        let me = self.me.to_bytes();
        let mut settlement =
            match settlement::settle_worked(&self.community, interval, &me, &members, &worked, trades, now) {
                Ok(s) => s,
                Err(error) => {
                    tracing::warn!(interval = interval.0, %error, "cannot settle the interval");
                    self.metrics.settlements_failed += 1;
                    return;
                }
            };
        if let Some((revision, earlier)) = previous {
            if earlier == figures(&settlement) {
                return;
            }
            settlement.revision = revision.saturating_add(1);
            self.metrics.settlements_redone += 1;
        }
        if !settlement.complete {
            self.metrics.settlements_provisional += 1;
        }
        let signed = Signed::sign(&self.key, settlement);
        if let Some(held) = self.settling.settled.get_mut(&interval) {
            held.in_flight = Some(signed.clone());
        }
        self.turn.settlements.push(signed);
    }

    /// The turn's settlements are durable.
    pub(super) fn settlements_durable(&mut self, settlements: Vec<Signed<Settlement>>) {
        for settlement in settlements {
            self.metrics.settlements_made += 1;
            let b = settlement.body();
            self.effects.push(Effect::Settled { interval: b.interval, revision: b.revision, complete: b.complete });
            let held = self.settling.settled.entry(b.interval).or_default();
            if held.in_flight.as_ref() == Some(&settlement) {
                held.in_flight = None;
            }
            held.durable = Some(settlement);
        }
    }

    /// The turn's settlements could not be written: their intervals are settled again in the
    /// next slot.
    pub(super) fn settlements_failed(&mut self, settlements: Vec<Signed<Settlement>>) {
        for settlement in settlements {
            if let Some(held) = self.settling.settled.get_mut(&settlement.body().interval) {
                held.in_flight = None;
                held.read = None;
            }
        }
    }

    /// A settlement of this node's, read back from its ledger after a restart.
    pub(super) fn restore_settlement(&mut self, settlement: Signed<Settlement>) {
        if *settlement.signer() != self.me {
            return;
        }
        let held = self.settling.settled.entry(settlement.body().interval).or_default();
        if held.durable.as_ref().is_none_or(|d| d.body().revision < settlement.body().revision) {
            held.durable = Some(settlement);
        }
    }

    /// This node's latest settlement of `interval`, if any.
    pub fn settlement(&self, interval: IntervalId) -> Option<&Signed<Settlement>> {
        self.settling.settled.get(&interval).and_then(Settled::latest)
    }

    /// Drops the trades and settlements of intervals past the statements' window.
    fn prune_settling(&mut self, now: Timestamp) {
        let Some(first_kept) = self.statements.first_kept(now) else { return };
        drop_before(&mut self.settling.trades, first_kept);
        drop_before(&mut self.settling.settled, first_kept);
    }
}
