//! This node's meter statements and the members' (see [`crate::statements`]). Closed
//! intervals wait for the node's statement slot, once an hour at an offset of its own (from
//! its key); then every waiting interval is stated in one turn, and once durable the
//! statements leave in one gossip frame. A stopping node states what waits at once. So a
//! community's statements neither burst at each interval's end (every meter closes it at the
//! same moment: one ledger flush per member at once) nor cost a frame per interval per member;
//! members already share their 15-minute data with their energy community, and settlement
//! loses nothing by waiting for the hour.

use std::collections::{BTreeMap, HashMap};

use peerwatt_core::{IntervalId, MeterStatement, Signed, Timestamp};

use super::{Topic, Trader, phase_offset};
use crate::gossip::{GossipReject, Stated};
use crate::statements::{Measured, Statements, Taken};

/// How often a node states (and gossips) the intervals its meter closed since the last time,
/// node-clock ms.
pub const STATEMENT_GOSSIP_MS: u64 = 3_600_000;

/// This node's closed intervals on their way to statements.
#[derive(Debug, Default)]
pub(super) struct Stating {
    /// Closed intervals waiting for the next statement slot (the newest figures of each).
    waiting: BTreeMap<IntervalId, Measured>,
    /// Statements signed in a turn whose writes are not durable yet, by interval.
    in_flight: HashMap<IntervalId, Signed<MeterStatement>>,
    /// The statement slot of the last tick (none before the first: a node states nothing
    /// at its first tick, when it has no peers to gossip to yet).
    last_slot: Option<u64>,
}

impl Trader {
    /// A closed meter interval: the forecaster learns it, and it waits for the node's next
    /// statement slot.
    pub(super) fn on_measured(&mut self, measured: Measured) {
        self.metrics.meter_intervals += 1;
        self.forecaster.observe(measured.observed());
        self.stating.waiting.insert(measured.interval, measured);
    }

    /// Closed intervals read back from the meter's history after a restart: those not yet
    /// stated in the ledger (closed after the last statement slot before the stop) wait for
    /// the next slot; the others are skipped there as stated already.
    pub fn restate(&mut self, measured: impl IntoIterator<Item = Measured>) {
        for m in measured {
            self.stating.waiting.entry(m.interval).or_insert(m);
        }
    }

    /// An interval this node stated already is due again (a trade of it was recorded late):
    /// it waits for the next slot with the figures stated, and the statement's contracts are
    /// listed anew then.
    pub(super) fn restate_interval(&mut self, interval: IntervalId) {
        let stated = self.stating.in_flight.get(&interval).or_else(|| self.statements.own_of(interval));
        if let Some(statement) = stated {
            let measured = Measured::stated_in(statement.body());
            self.stating.waiting.entry(interval).or_insert(measured);
        }
    }

    /// Signs a statement (or a correction) of every waiting interval into the turn; one
    /// stated with the same figures before is not stated again.
    pub(super) fn state_waiting(&mut self, now: Timestamp) {
        for (interval, measured) in std::mem::take(&mut self.stating.waiting) {
            let in_flight = self.stating.in_flight.get(&interval);
            let (contracts, left_out) = crate::settlement::contracts_of(self.trades_of(interval));
            if left_out > 0 {
                tracing::warn!(interval = interval.0, left_out, "more counterparties than a statement lists");
                self.metrics.statements_contracts_left_out += left_out as u64;
            }
            let Some(statement) = self.statements.own(&self.key, &measured, &contracts, in_flight, now) else {
                continue;
            };
            if statement.body().revision > 0 {
                self.metrics.statements_corrected += 1;
            }
            self.stating.in_flight.insert(interval, statement.clone());
            self.turn.statements.push(statement);
        }
    }

    /// The turn's statements are durable: kept, and gossiped.
    pub(super) fn statements_durable(&mut self, statements: Vec<Signed<MeterStatement>>) {
        for statement in &statements {
            self.forget_in_flight(statement);
            self.statements.insert_own(statement.clone());
            self.metrics.statements_made += 1;
        }
        self.gossip_in_frames(Topic::Statements, &statements);
    }

    /// The turn's statements could not be written: their intervals wait for the next slot
    /// (they never left the node, so their revisions are free).
    pub(super) fn statements_failed(&mut self, statements: Vec<Signed<MeterStatement>>) {
        for statement in statements {
            self.forget_in_flight(&statement);
            let measured = Measured::stated_in(statement.body());
            self.stating.waiting.entry(measured.interval).or_insert(measured);
        }
    }

    fn forget_in_flight(&mut self, statement: &Signed<MeterStatement>) {
        let interval = statement.body().interval;
        if self.stating.in_flight.get(&interval) == Some(statement) {
            self.stating.in_flight.remove(&interval);
        }
    }

    /// Every tick: old statements are dropped, and in a new slot the waiting intervals are
    /// stated.
    pub(super) fn statements_tick(&mut self, now: Timestamp) {
        self.statements.prune(now);
        let offset = phase_offset(&self.me, STATEMENT_GOSSIP_MS);
        let slot = now.0.saturating_add(offset) / STATEMENT_GOSSIP_MS;
        if self.stating.last_slot.replace(slot).is_some_and(|last| last != slot) {
            self.state_waiting(now);
        }
    }

    /// Members' statements that passed the screen: each kept if it is new or a correction.
    /// `Err` with the first refusal if none was kept.
    pub(super) fn on_statements(&mut self, statements: Vec<Stated>) -> Result<(), GossipReject> {
        let mut first_refusal = None;
        let mut kept = 0;
        for stated in statements {
            match self.statements.insert(stated) {
                Ok(Taken::New) => kept += 1,
                Ok(Taken::Superseded(_)) => {
                    kept += 1;
                    self.metrics.statements_superseded += 1;
                }
                Err(refusal) => {
                    if matches!(refusal, GossipReject::Equivocation(_)) {
                        self.metrics.statements_equivocated += 1;
                    }
                    first_refusal.get_or_insert(refusal);
                }
            }
        }
        match first_refusal {
            Some(refusal) if kept == 0 => Err(refusal),
            _ => Ok(()),
        }
    }

    /// A statement of this node's, read back from its ledger after a restart.
    pub(super) fn restore_statement(&mut self, statement: Signed<MeterStatement>) {
        if *statement.signer() == self.me {
            self.statements.insert_own(statement);
        }
    }

    /// The members' latest statements (this node's own included), for settlement.
    pub fn statements(&self) -> &Statements {
        &self.statements
    }
}
