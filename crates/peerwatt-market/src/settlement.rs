//! Settlement (docs/settlement.md). Pure and exact: whole Wh, integer money.
//!
//! **What the nodes settle** ([`settle`]): each interval, from the members' signed meter
//! statements. A statement lists, per counterparty and side, the energy its signer
//! contracted in the interval; so every member, and an auditor, computes the same figures from
//! the same signed inputs:
//!
//! 1. the energy contracted between a seller and a buyer is the smaller of what the two
//!    statements list for each other;
//! 2. it is delivered as far as both meters carry it: at most the seller's export shared over
//!    all it sold, and the buyer's import shared over all it bought
//!    (`min(q, ⌊q·export/max(sold, export)⌋, ⌊q·import/max(bought, import)⌋)`), split over
//!    the pair's trades by the largest-remainder method in order of trade digest;
//! 3. ex-post sharing (if the community shares): what is left of every member's export after
//!    its deliveries is matched with what is left of every member's import, in proportion to
//!    each remainder (largest remainder, in order of member key);
//! 4. the rest is the grid's: import at the retail tariff, export at the feed-in tariff.
//!
//! **What the simulator's side calculation applies** ([`delivered`]): the older sequential
//! rules over the whole street, kept until the demo's report reads the nodes' settlements.
//!
//! 1. A seller that exported less than it sold delivers its export, shared over its trades in
//!    proportion to their energy.
//! 2. A buyer that imported less than it was delivered takes its import, shared the same way
//!    over what step 1 delivered to it.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

use peerwatt_core::{
    Community, Contracted, Hash, IntervalId, Money, Price, SettledTrade, Settlement, Side, Timestamp, UnitsError,
    messages::{MAX_CONTRACTS, MAX_SETTLED_TRADES},
};

use crate::statements::Kept;
use peerwatt_core::Wh;

/// `total` shared in proportion to `weights` (whose sum exceeds `total`) by the largest
/// remainder method: each gets the floor of its exact share, and the Wh left over go to the
/// largest remainders (the earlier on ties). The shares add up to `total` exactly.
pub fn shares(total: u64, weights: &[u64]) -> Vec<u64> {
    let sum: u128 = weights.iter().map(|w| u128::from(*w)).sum();
    if sum == 0 {
        return vec![0; weights.len()];
    }
    let exact: Vec<(u64, u128)> = weights
        .iter()
        .map(|w| {
            let scaled = u128::from(total) * u128::from(*w);
            (u64::try_from(scaled / sum).unwrap_or(u64::MAX), scaled % sum)
        })
        .collect();
    let mut out: Vec<u64> = exact.iter().map(|(q, _)| *q).collect();
    let left = total.saturating_sub(out.iter().sum());
    let mut order: Vec<usize> = (0..weights.len()).collect();
    order.sort_by(|a, b| exact[*b].1.cmp(&exact[*a].1).then(a.cmp(b)));
    for i in order.into_iter().take(usize::try_from(left).unwrap_or(usize::MAX)) {
        out[i] += 1;
    }
    out
}

/// The community's rules a settlement applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rules {
    /// Whether what contracts missed is shared ex post.
    pub sharing: bool,
    /// The price of shared energy.
    pub sharing_price: Price,
    /// The grid's retail tariff.
    pub retail: Price,
    /// The grid's feed-in tariff.
    pub feed_in: Price,
}

impl Rules {
    /// The rules of `community` in force for `interval`.
    pub fn at(community: &Community, interval: IntervalId) -> Rules {
        let terms = community.terms_at(interval);
        Rules {
            sharing: terms.sharing.is_on(),
            sharing_price: terms.sharing_price(),
            retail: terms.retail,
            feed_in: terms.feed_in,
        }
    }
}

/// One of the settling node's trades.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OwnTrade {
    /// The signed trade's digest.
    pub trade: Hash,
    /// The counterparty's key bytes.
    pub counterparty: [u8; 32],
    /// The settling node's side.
    pub side: Side,
    /// The energy contracted.
    pub energy: Wh,
    /// The trade price.
    pub price: Price,
}

/// Why an interval could not be settled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettleError {
    /// The settling node's own statement is not among the members'.
    #[error("this node has no statement of the interval")]
    NoOwnStatement,
    /// An amount does not fit its unit.
    #[error(transparent)]
    Units(#[from] UnitsError),
    /// More trades than a settlement lists.
    #[error("{0} trades in one interval; a settlement lists at most 512")]
    TooManyTrades(usize),
}

/// The community's figures of one interval, from its members' statements: what the market
/// and the sharing achieved against what was physically there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Totals {
    /// Members whose statements were read.
    pub members: u32,
    /// All members' import.
    pub imported: Wh,
    /// All members' export.
    pub exported: Wh,
    /// Energy contracted (as both parties' statements list it).
    pub contracted: Wh,
    /// Energy delivered under contract.
    pub delivered: Wh,
    /// Energy shared ex post.
    pub shared: Wh,
}

impl Totals {
    /// What could physically have been shared: the smaller of all export and all import.
    pub fn shareable(&self) -> Wh {
        Wh(self.imported.0.min(self.exported.0))
    }
}

/// An interval worked out for the whole community from its members' statements: the totals
/// and every member's share of the sharing. The same statements give the same result at every
/// member, so the simulator's nodes share it ([`WorkMemo`]).
#[derive(Debug)]
pub struct Worked {
    /// The community's totals.
    pub totals: Totals,
    /// SHA-256 over the statements' digests, in ascending order of member key.
    pub inputs: Hash,
    /// Per member (in the input order): shared export and shared import.
    shared: Vec<(Wh, Wh)>,
}

/// The energy contracted between `seller` and `buyer`: the smaller of their listings.
fn contracted(seller: &Kept, seller_key: &[u8; 32], buyer: &Kept, buyer_key: &[u8; 32]) -> u64 {
    listed(seller, buyer_key, Side::Sell).min(listed(buyer, seller_key, Side::Buy))
}

/// What `statement` lists for `counterparty` on `side`.
fn listed(statement: &Kept, counterparty: &[u8; 32], side: Side) -> u64 {
    statement
        .contracts
        .binary_search_by(|c| (&c.counterparty, c.side).cmp(&(counterparty, side)))
        .map_or(0, |i| statement.contracts[i].energy.0)
}

/// The total `statement` lists on `side`.
fn listed_total(statement: &Kept, side: Side) -> u64 {
    saturating_sum(statement.contracts.iter().filter(|c| c.side == side).map(|c| c.energy.0))
}

/// The sum, at most `u64::MAX` (statements are outside input: their figures are any u64).
fn saturating_sum(values: impl Iterator<Item = u64>) -> u64 {
    values.fold(0, u64::saturating_add)
}

/// `q · part / whole`, rounded down (`whole` > 0).
fn scaled(q: u64, part: u64, whole: u64) -> u64 {
    u64::try_from(u128::from(q) * u128::from(part) / u128::from(whole.max(1))).unwrap_or(u64::MAX)
}

/// Delivered between a seller and a buyer, each with its statement: the smaller listing, as
/// far as both meters carry it, each meter shared over everything its owner contracted on
/// that side.
fn pair_delivered(seller: (&[u8; 32], &Kept), buyer: (&[u8; 32], &Kept)) -> u64 {
    let q = contracted(seller.1, seller.0, buyer.1, buyer.0);
    if q == 0 {
        return 0;
    }
    let (seller, buyer) = (seller.1, buyer.1);
    let sold = listed_total(seller, Side::Sell);
    let bought = listed_total(buyer, Side::Buy);
    let by_seller = scaled(q, seller.exported.0, sold.max(seller.exported.0));
    let by_buyer = scaled(q, buyer.imported.0, bought.max(buyer.imported.0));
    q.min(by_seller).min(by_buyer)
}

/// The position of `key` among `members` (ascending by key).
fn position(members: &[([u8; 32], &Kept)], key: &[u8; 32]) -> Option<usize> {
    members.binary_search_by(|(k, _)| k.cmp(key)).ok()
}

/// Works the interval out from the members' statements (ascending by member key).
pub fn work(members: &[([u8; 32], &Kept)], rules: &Rules) -> Worked {
    let mut out = vec![0u64; members.len()];
    let mut into = vec![0u64; members.len()];
    let mut totals = Totals { members: u32::try_from(members.len()).unwrap_or(u32::MAX), ..Totals::default() };
    for (s, (seller_key, seller)) in members.iter().enumerate() {
        // Saturating: a member's statement is outside input, and its figures are any u64.
        totals.imported.0 = totals.imported.0.saturating_add(seller.imported.0);
        totals.exported.0 = totals.exported.0.saturating_add(seller.exported.0);
        for sale in seller.contracts.iter().filter(|c| c.side == Side::Sell) {
            let Some(b) = position(members, &sale.counterparty) else { continue };
            let buyer = members[b].1;
            let q = contracted(seller, seller_key, buyer, &sale.counterparty);
            totals.contracted.0 = totals.contracted.0.saturating_add(q);
            let d = pair_delivered((seller_key, seller), (&sale.counterparty, buyer));
            totals.delivered.0 = totals.delivered.0.saturating_add(d);
            out[s] = out[s].saturating_add(d);
            into[b] = into[b].saturating_add(d);
        }
    }
    let left_export: Vec<u64> = members.iter().zip(&out).map(|((_, m), d)| m.exported.0.saturating_sub(*d)).collect();
    let left_import: Vec<u64> = members.iter().zip(&into).map(|((_, m), d)| m.imported.0.saturating_sub(*d)).collect();
    let pool = if rules.sharing {
        saturating_sum(left_export.iter().copied()).min(saturating_sum(left_import.iter().copied()))
    } else {
        0
    };
    totals.shared = Wh(pool);
    let export_shares = allot(pool, &left_export);
    let import_shares = allot(pool, &left_import);
    let shared = export_shares.into_iter().zip(import_shares).map(|(e, i)| (Wh(e), Wh(i))).collect();
    Worked { totals, inputs: inputs_digest(members), shared }
}

/// SHA-256 over the statements' digests, in the members' order.
pub fn inputs_digest(members: &[([u8; 32], &Kept)]) -> Hash {
    let digests: Vec<&[u8]> = members.iter().map(|(_, m)| m.digest.0.as_slice()).collect();
    Hash::of_parts(&digests)
}

/// `pool` allotted over `remainders` in proportion (all of each if they add up to no more).
fn allot(pool: u64, remainders: &[u64]) -> Vec<u64> {
    if saturating_sum(remainders.iter().copied()) <= pool { remainders.to_vec() } else { shares(pool, remainders) }
}

/// The community's figures of one interval from its members' statements (ascending by key).
pub fn totals(members: &[([u8; 32], &Kept)], rules: &Rules) -> Totals {
    work(members, rules).totals
}

/// Intervals worked out once for all the nodes of one process (the simulator's): they read
/// the same statements and would each work out the same community-wide figures, 500 times
/// in a 500-household street; the cost of co-location, not of the protocol (like
/// docs/decisions/0045-simulator-shares-signature-checks.md). Each node still settles its own
/// trades and signs its own settlement. Keyed by the inputs' digest and the rules; bounded:
/// two generations of at most 4,096 intervals.
#[derive(Debug, Default)]
pub struct WorkMemo {
    generations: Mutex<[WorkedByInputs; 2]>,
}

/// Intervals worked out, by the digest of their statements and the rules.
type WorkedByInputs = HashMap<(Hash, Rules), Arc<Worked>>;

impl WorkMemo {
    /// The interval worked out for `members` under `rules`: from the memo, or now.
    pub fn work(&self, members: &[([u8; 32], &Kept)], rules: &Rules) -> Arc<Worked> {
        let key = (inputs_digest(members), *rules);
        {
            let g = self.generations.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(found) = g[0].get(&key).or_else(|| g[1].get(&key)) {
                return Arc::clone(found);
            }
        }
        let worked = Arc::new(work(members, rules));
        let mut g = self.generations.lock().unwrap_or_else(PoisonError::into_inner);
        if g[0].len() >= 4_096 {
            g[1] = std::mem::take(&mut g[0]);
        }
        g[0].insert(key, Arc::clone(&worked));
        worked
    }
}

/// The settlement of `me` for `interval` from the members' statements (ascending by member
/// key, `me` among them) and its own trades of the interval. Revision 0; the caller numbers
/// redos. `complete` is false if a counterparty's statement is missing: its trades are then
/// delivered as 0 until it comes.
pub fn settle(
    community: &Community,
    interval: IntervalId,
    me: &[u8; 32],
    members: &[([u8; 32], &Kept)],
    trades: &[OwnTrade],
    now: Timestamp,
) -> Result<Settlement, SettleError> {
    let worked = work(members, &Rules::at(community, interval));
    settle_worked(community, interval, me, members, &worked, trades, now)
}

/// [`settle`] with the interval worked out already (by [`work`] on the same `members`).
pub fn settle_worked(
    community: &Community,
    interval: IntervalId,
    me: &[u8; 32],
    members: &[([u8; 32], &Kept)],
    worked: &Worked,
    trades: &[OwnTrade],
    now: Timestamp,
) -> Result<Settlement, SettleError> {
    if trades.len() > MAX_SETTLED_TRADES {
        return Err(SettleError::TooManyTrades(trades.len()));
    }
    let rules = Rules::at(community, interval);
    let at = position(members, me).ok_or(SettleError::NoOwnStatement)?;
    let own = members[at].1;
    let (shared_export, shared_import) = worked.shared.get(at).copied().unwrap_or_default();
    let settled = settle_trades(me, own, members, trades)?;
    let delivered = |side: Side| saturating_sum(settled.iter().filter(|t| t.side == side).map(|t| t.delivered.0));
    let money = |side: Side| -> Result<Money, UnitsError> {
        settled.iter().filter(|t| t.side == side).try_fold(Money(0), |sum, t| sum.checked_add(t.money))
    };
    let grid_import = Wh(own.imported.0.saturating_sub(delivered(Side::Buy).saturating_add(shared_import.0)));
    let grid_export = Wh(own.exported.0.saturating_sub(delivered(Side::Sell).saturating_add(shared_export.0)));
    let cost = money(Side::Buy)?
        .checked_sub(money(Side::Sell)?)?
        .checked_add(shared_import.cost_at(rules.sharing_price)?)?
        .checked_sub(shared_export.cost_at(rules.sharing_price)?)?
        .checked_add(grid_import.cost_at(rules.retail)?)?
        .checked_sub(grid_export.cost_at(rules.feed_in)?)?;
    let baseline = own.imported.cost_at(rules.retail)?.checked_sub(own.exported.cost_at(rules.feed_in)?)?;
    Ok(Settlement {
        community: community.id,
        interval,
        revision: 0,
        complete: trades.iter().all(|t| position(members, &t.counterparty).is_some()),
        statement: own.digest,
        members: worked.totals.members,
        inputs: worked.inputs,
        imported: own.imported,
        exported: own.exported,
        trades: settled,
        shared_import,
        shared_export,
        sharing_price: rules.sharing_price,
        grid_import,
        grid_export,
        retail: rules.retail,
        feed_in: rules.feed_in,
        cost,
        baseline,
        created_at: now,
    })
}

/// `me`'s trades with what each pair delivered split over them (largest remainder in order of
/// trade digest), in that order.
fn settle_trades(
    me: &[u8; 32],
    own: &Kept,
    members: &[([u8; 32], &Kept)],
    trades: &[OwnTrade],
) -> Result<Vec<SettledTrade>, UnitsError> {
    let mut sorted = trades.to_vec();
    sorted.sort_unstable_by_key(|a| (a.counterparty, a.side, a.trade));
    let mut settled = Vec::with_capacity(sorted.len());
    for group in sorted.chunk_by(|a, b| (a.counterparty, a.side) == (b.counterparty, b.side)) {
        let (counterparty, side) = (&group[0].counterparty, group[0].side);
        let delivered = match position(members, counterparty).map(|i| members[i].1) {
            None => 0,
            Some(theirs) => match side {
                Side::Sell => pair_delivered((me, own), (counterparty, theirs)),
                Side::Buy => pair_delivered((counterparty, theirs), (me, own)),
            },
        };
        let energies: Vec<u64> = group.iter().map(|t| t.energy.0).collect();
        for (t, d) in group.iter().zip(allot(delivered, &energies)) {
            let delivered = Wh(d);
            settled.push(SettledTrade {
                trade: t.trade,
                counterparty: t.counterparty,
                side: t.side,
                energy: t.energy,
                price: t.price,
                delivered,
                money: delivered.cost_at(t.price)?,
            });
        }
    }
    settled.sort_unstable_by_key(|a| a.trade);
    Ok(settled)
}

/// The contracts a node's statement lists from its trades of the interval: summed per
/// counterparty and side, in ascending order, and how many were left out: a statement lists
/// at most [`MAX_CONTRACTS`] (the largest; trades with the others are delivered as 0, which
/// the auditor reports).
pub fn contracts_of(trades: &[OwnTrade]) -> (Vec<Contracted>, usize) {
    let mut sums: BTreeMap<([u8; 32], Side), u64> = BTreeMap::new();
    for t in trades.iter().filter(|t| t.energy.0 > 0) {
        let sum = sums.entry((t.counterparty, t.side)).or_default();
        *sum = sum.saturating_add(t.energy.0);
    }
    let mut listed: Vec<Contracted> =
        sums.into_iter().map(|((counterparty, side), e)| Contracted { counterparty, side, energy: Wh(e) }).collect();
    let left_out = listed.len().saturating_sub(MAX_CONTRACTS);
    if left_out > 0 {
        listed.sort_by(|a, b| b.energy.cmp(&a.energy).then(a.cmp(b)));
        listed.truncate(MAX_CONTRACTS);
        listed.sort();
    }
    (listed, left_out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a test panics to fail

    use super::*;

    #[test]
    fn shares_add_up_and_follow_the_weights() {
        assert_eq!(shares(100, &[1, 1, 1]), vec![34, 33, 33]);
        assert_eq!(shares(10, &[30, 10]), vec![8, 2]); // 7.5 and 2.5: the tied remainder goes to the earlier
        assert_eq!(shares(0, &[5, 5]), vec![0, 0]);
        assert_eq!(shares(7, &[0, 0]), vec![0, 0]);
        for total in 0..50 {
            assert_eq!(shares(total, &[13, 29, 8]).iter().sum::<u64>(), total);
        }
    }

    #[test]
    fn the_memo_works_an_interval_out_once_for_the_same_statements() {
        let kept = |digest: u8, imported: u64, exported: u64| Kept {
            revision: 0,
            imported: Wh(imported),
            exported: Wh(exported),
            complete: true,
            contracts: Arc::from(Vec::new()),
            digest: Hash([digest; 32]),
        };
        let (a, b, c) = (kept(1, 0, 300), kept(2, 500, 0), kept(3, 100, 0));
        let members = [([1; 32], &a), ([2; 32], &b), ([3; 32], &c)];
        let rules =
            Rules { sharing: true, sharing_price: Price(190_000), retail: Price(300_000), feed_in: Price(80_000) };
        let memo = WorkMemo::default();
        let first = memo.work(&members, &rules);
        assert!(Arc::ptr_eq(&first, &memo.work(&members, &rules)), "the same statements: worked out once");
        assert_eq!(first.totals, work(&members, &rules).totals);
        assert_eq!(
            (first.totals.shared, first.shared[1], first.shared[2]),
            (Wh(300), (Wh(0), Wh(250)), (Wh(0), Wh(50)))
        );
        let changed = kept(4, 500, 0);
        let other = [([1; 32], &a), ([2; 32], &changed), ([3; 32], &c)];
        assert!(!Arc::ptr_eq(&first, &memo.work(&other, &rules)), "another statement: worked out anew");
    }
}
