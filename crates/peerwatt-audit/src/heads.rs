//! Signed tree heads against the ledgers they describe. A node signs a head of its ledger
//! every hour and its neighbours record the heads they witness; an owner who later rewrites
//! or cuts its history cannot take those back. Two signed heads of one node that cannot both
//! be true (one size, two roots; or a witnessed head whose root is not the root of the owner's
//! ledger at that size, while the owner signed a later head over that ledger) are reported
//! with both signed heads as evidence.

use std::collections::{BTreeMap, BTreeSet};

use peerwatt_core::{Encode, Hash, Signed, TreeHead};
use peerwatt_ledger::merkle::{Frontier, empty_root};

use crate::Audited;
use crate::exception::{Check, Exception};
use crate::trades::key;

/// What the head checks counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct HeadCounts {
    /// Distinct heads witnessed by other nodes.
    pub witnessed: u64,
    /// Of them, checked against their owner's audited ledger.
    pub checked: u64,
    /// Of them, signed after their owner's audited ledger ends (not expected in it).
    pub after_ledger_end: u64,
}

/// A head and where it was found (a witnessed copy is preferred as evidence).
struct Seen<'a> {
    head: &'a Signed<TreeHead>,
    place: String,
    /// Whether another node recorded it (a head only in its own node's ledger was checked
    /// against the entries when that ledger verified).
    witnessed: bool,
}

/// Checks every head against the others of its node and against its node's ledger.
pub fn check(audited: &Audited<'_>, exceptions: &mut Vec<Exception>) -> HeadCounts {
    let mut by_signer: BTreeMap<[u8; 32], BTreeMap<(u64, Hash), Seen<'_>>> = BTreeMap::new();
    let mut counts = HeadCounts::default();
    for (owner, facts) in &audited.ledgers {
        for head in &facts.witnessed {
            let place = format!("head witnessed in the ledger of {}", key(owner));
            let heads = by_signer.entry(head.signer().to_bytes()).or_default();
            heads.entry((head.body().size, head.body().root)).or_insert(Seen { head, place, witnessed: true });
        }
    }
    counts.witnessed = by_signer.values().map(|h| h.len() as u64).sum();
    for (owner, facts) in &audited.ledgers {
        for head in &facts.heads {
            let place = format!("signed head in the ledger of {}", key(owner));
            let heads = by_signer.entry(*owner).or_default();
            heads.entry((head.body().size, head.body().root)).or_insert(Seen { head, place, witnessed: false });
        }
    }
    for (signer, heads) in &by_signer {
        let equivocal = same_size_two_roots(signer, heads, exceptions);
        let Some(ledger) = audited.ledgers.get(signer) else { continue };
        let sizes: BTreeSet<u64> = heads.keys().map(|(size, _)| *size).collect();
        let roots = roots_at(&ledger.leaves, &sizes);
        for ((size, root), seen) in heads {
            if equivocal.contains(size) {
                continue;
            }
            if !seen.witnessed {
                continue;
            }
            counts.checked += 1;
            let Some(actual) = roots.get(size) else {
                if ledger.last_time.is_some_and(|end| end < seen.head.body().time) {
                    counts.after_ledger_end += 1; // signed after the export was taken
                    continue;
                }
                exceptions.push(
                    Exception::new(
                        Check::LedgerCutShort,
                        format!("at least {size} entries, as its signed head says"),
                        format!("{} entries", ledger.leaves.len()),
                    )
                    .node(key(signer))
                    .evidence(&seen.place, &seen.head.to_bytes()),
                );
                continue;
            };
            if actual != root {
                let mut e = Exception::new(
                    Check::EquivocatingHeads,
                    format!("root {root} at size {size}, as the witnessed head says"),
                    format!("root {actual} at size {size} in the node's ledger"),
                )
                .node(key(signer))
                .evidence(&seen.place, &seen.head.to_bytes());
                if let Some(later) =
                    ledger.heads.iter().filter(|h| h.body().size >= *size).min_by_key(|h| h.body().size)
                {
                    e = e.evidence("the node's own signed head over its ledger", &later.to_bytes());
                }
                exceptions.push(e);
            }
        }
    }
    counts
}

/// Reports each size at which a node signed two roots; returns those sizes.
fn same_size_two_roots(
    signer: &[u8; 32],
    heads: &BTreeMap<(u64, Hash), Seen<'_>>,
    exceptions: &mut Vec<Exception>,
) -> BTreeSet<u64> {
    let mut sizes = BTreeSet::new();
    let mut previous: Option<(&(u64, Hash), &Seen<'_>)> = None;
    for (at, seen) in heads {
        if let Some((before, first)) = previous.filter(|(before, _)| before.0 == at.0) {
            if sizes.insert(at.0) {
                exceptions.push(
                    Exception::new(
                        Check::EquivocatingHeads,
                        format!("one root at size {}", at.0),
                        format!("roots {} and {}", before.1, at.1),
                    )
                    .node(key(signer))
                    .evidence(&first.place, &first.head.to_bytes())
                    .evidence(&seen.place, &seen.head.to_bytes()),
                );
            }
            continue;
        }
        previous = Some((at, seen));
    }
    sizes
}

/// The Merkle roots of the first `size` leaves for each of `sizes` within the ledger.
fn roots_at(leaves: &[Hash], sizes: &BTreeSet<u64>) -> BTreeMap<u64, Hash> {
    let mut roots = BTreeMap::new();
    if sizes.contains(&0) {
        roots.insert(0, empty_root());
    }
    let mut frontier = Frontier::new();
    let mut wanted = sizes.iter().copied().filter(|s| *s > 0).peekable();
    for leaf in leaves {
        if wanted.peek().is_none() {
            break;
        }
        frontier.push(*leaf, |_| {});
        if wanted.peek() == Some(&frontier.size()) {
            roots.insert(frontier.size(), frontier.root());
            wanted.next();
        }
    }
    roots
}
