//! Every trade in both parties' ledgers, with the same bytes: a trade binds both, so each
//! must have recorded it (the maker before it answered, the taker when the answer came).

use std::collections::BTreeMap;

use peerwatt_core::{Hash, PublicKey};

use crate::Audited;
use crate::collect::TradeFact;
use crate::exception::{Check, Exception};

/// What the trade check counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct TradeCounts {
    /// Distinct trades found.
    pub trades: u64,
    /// Of them, held by both parties with the same bytes.
    pub in_both_ledgers: u64,
    /// Of them, with a party whose ledger was not audited (checked on one side only).
    pub party_not_audited: u64,
    /// Of them, agreed after a party's ledger ends (its export was taken before): not
    /// expected in that ledger.
    pub after_ledger_end: u64,
}

/// Checks every trade of the audited ledgers.
pub fn check(audited: &Audited<'_>, exceptions: &mut Vec<Exception>) -> TradeCounts {
    let mut by_request: BTreeMap<Hash, Vec<(&[u8; 32], &TradeFact)>> = BTreeMap::new();
    for (owner, facts) in &audited.ledgers {
        for t in &facts.trades {
            by_request.entry(t.request).or_default().push((owner, t));
        }
    }
    let mut counts = TradeCounts::default();
    for holders in by_request.values() {
        counts.trades += 1;
        let first = holders[0].1;
        let parties = [first.seller, first.buyer];
        if parties.iter().any(|p| !audited.ledgers.contains_key(p)) {
            counts.party_not_audited += 1;
        }
        let mut whole = true;
        for party in parties.iter().filter(|p| audited.ledgers.contains_key(*p)) {
            if holders.iter().any(|(h, _)| *h == party) {
                continue;
            }
            whole = false;
            let ends = audited.ledgers.get(party).and_then(|l| l.last_time);
            if ends.is_some_and(|end| end < first.accepted_at) {
                counts.after_ledger_end += 1;
            } else {
                exceptions.push(one_sided(party, holders[0]));
            }
        }
        if let Some((other, t)) = holders.iter().find(|(_, t)| t.digest != first.digest) {
            whole = false;
            exceptions.push(
                Exception::new(Check::TradeDiffers, format!("trade {}", first.digest), format!("trade {}", t.digest))
                    .node(key(other))
                    .interval(first.interval)
                    .trade(&first.digest)
                    .evidence(format!("the trade in the ledger of {}", key(holders[0].0)), &first.bytes)
                    .evidence(format!("the trade in the ledger of {}", key(other)), &t.bytes),
            );
        }
        if whole && parties.iter().all(|p| audited.ledgers.contains_key(p)) {
            counts.in_both_ledgers += 1;
        }
    }
    counts
}

fn one_sided(missing: &[u8; 32], (holder, t): (&[u8; 32], &TradeFact)) -> Exception {
    Exception::new(
        Check::TradeOneSided,
        "in the ledgers of both parties",
        format!("only in the ledger of {} (entry {})", key(holder), t.seq),
    )
    .node(key(missing))
    .interval(t.interval)
    .trade(&t.digest)
    .evidence(format!("the signed trade, from the ledger of {}", key(holder)), &t.bytes)
}

/// A node's peer id from its key bytes (the bytes of an audited ledger's owner are a key).
pub fn key(bytes: &[u8; 32]) -> String {
    PublicKey::from_bytes(bytes).map_or_else(|_| peerwatt_core::keys::hex_encode(bytes), |k| k.to_string())
}
