//! This node's meter statements and the members' (see [`crate::statements`]): a closed
//! interval is stated in the turn's ledger writes, and once durable it waits for the node's
//! next statement slot, when everything waiting leaves in one gossip frame. Members already
//! share their 15-minute data with their energy community; a frame an hour per member, at an
//! offset of the node's own, costs the community a fraction of what its orders do.

use std::collections::HashMap;

use peerwatt_core::{Hash, IntervalId, MeterStatement, Signed, Timestamp};

use super::{Topic, Trader, phase_offset};
use crate::gossip::GossipReject;
use crate::statements::{Measured, Statements, Taken};

/// How often a node gossips the statements made since the last time, node-clock ms.
pub const STATEMENT_GOSSIP_MS: u64 = 3_600_000;

/// This node's statements on their way out.
#[derive(Debug, Default)]
pub(super) struct Stating {
    /// Signed, in a turn whose writes are not durable yet, by interval.
    pending: HashMap<IntervalId, Signed<MeterStatement>>,
    /// Durable, waiting for the next statement slot.
    unsent: Vec<Signed<MeterStatement>>,
    /// The statement slot of the last gossip.
    last_slot: u64,
}

impl Trader {
    /// A closed meter interval: the forecaster learns it, and this node states it (or
    /// corrects its statement) with the turn.
    pub(super) fn on_measured(&mut self, measured: &Measured, now: Timestamp) {
        self.metrics.meter_intervals += 1;
        self.forecaster.observe(measured.observed());
        let pending = self.stating.pending.get(&measured.interval);
        let Some(statement) = self.statements.own(&self.key, measured, pending, now) else { return };
        if statement.body().revision > 0 {
            self.metrics.statements_corrected += 1;
        }
        self.stating.pending.insert(measured.interval, statement.clone());
        self.turn.statements.push(statement);
    }

    /// The turn's statements are durable: kept, and queued for the next slot (or sent now
    /// by a node that is stopping).
    pub(super) fn statements_durable(&mut self, statements: Vec<Signed<MeterStatement>>) {
        for statement in statements {
            let interval = statement.body().interval;
            if self.stating.pending.get(&interval) == Some(&statement) {
                self.stating.pending.remove(&interval);
            }
            let digest = statement.digest();
            // Its own newer statement is never refused; an older one is just not kept.
            let _ = self.statements.insert(statement.clone(), digest);
            self.metrics.statements_made += 1;
            self.stating.unsent.push(statement);
        }
        if self.draining {
            self.send_statements();
        }
    }

    /// The turn's statements could not be written: stated again with the next turn (they
    /// never left the node, so their revisions are free).
    pub(super) fn statements_failed(&mut self, statements: Vec<Signed<MeterStatement>>, now: Timestamp) {
        for statement in statements {
            let interval = statement.body().interval;
            if self.stating.pending.get(&interval) == Some(&statement) {
                self.stating.pending.remove(&interval);
            }
            let measured = Measured::stated_in(statement.body());
            if let Some(again) = self.statements.own(&self.key, &measured, self.stating.pending.get(&interval), now) {
                self.stating.pending.insert(interval, again.clone());
                self.turn.statements.push(again);
            }
        }
    }

    /// Every tick: old statements are dropped, and in a new slot the waiting ones leave.
    pub(super) fn statements_tick(&mut self, now: Timestamp) {
        self.statements.prune(now);
        let offset = phase_offset(&self.me, STATEMENT_GOSSIP_MS);
        let slot = now.0.saturating_add(offset) / STATEMENT_GOSSIP_MS;
        if slot != self.stating.last_slot {
            self.stating.last_slot = slot;
            self.send_statements();
        }
    }

    /// Gossips every statement waiting, in frames of up to 16.
    pub(super) fn send_statements(&mut self) {
        let unsent = std::mem::take(&mut self.stating.unsent);
        self.gossip_in_frames(Topic::Statements, &unsent);
    }

    /// Members' statements that passed the screen: each kept if it is new or a correction.
    /// `Err` with the first refusal if none was kept.
    pub(super) fn on_statements(
        &mut self,
        statements: Vec<(Signed<MeterStatement>, Hash)>,
    ) -> Result<(), GossipReject> {
        let mut first_refusal = None;
        let mut kept = 0;
        for (statement, digest) in statements {
            match self.statements.insert(statement, digest) {
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
            let digest = statement.digest();
            let _ = self.statements.insert(statement, digest);
        }
    }

    /// The members' latest statements (this node's own included), for settlement.
    pub fn statements(&self) -> &Statements {
        &self.statements
    }
}
