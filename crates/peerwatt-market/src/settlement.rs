//! Delivery of an interval's trades against what the meters measured (`docs/market.md`,
//! "Settlement"). Pure and exact: whole Wh, shares by the largest-remainder method, so the
//! delivered amounts always add up.
//!
//! 1. A seller that exported less than it sold delivers its export, shared over its trades in
//!    proportion to their energy.
//! 2. A buyer that imported less than it was delivered takes its import, shared the same way
//!    over what step 1 delivered to it.
//!
//! Only delivered energy is paid at the trade price. The rest of each party's meter figures is
//! the grid's: import at the retail tariff, export at the feed-in tariff. So energy a seller
//! failed to deliver costs the buyer exactly what the grid charges for it, and energy a buyer
//! did not take earns the seller the feed-in tariff.

use peerwatt_core::Wh;

/// One trade of the interval, between parties numbered by the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Contract {
    /// The seller's index into the meter figures.
    pub seller: usize,
    /// The buyer's index.
    pub buyer: usize,
    /// The energy traded.
    pub energy: Wh,
}

/// One party's meter figures for the interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Metered {
    /// Imported from the grid.
    pub imported: Wh,
    /// Exported to the grid.
    pub exported: Wh,
}

/// Why a settlement could not be computed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettlementError {
    /// A contract names a party without meter figures.
    #[error("contract {0} names a party without meter figures")]
    UnknownParty(usize),
}

/// The energy delivered under each contract (same order as `contracts`).
pub fn delivered(contracts: &[Contract], meters: &[Metered]) -> Result<Vec<Wh>, SettlementError> {
    if let Some(i) = contracts.iter().position(|c| c.seller >= meters.len() || c.buyer >= meters.len()) {
        return Err(SettlementError::UnknownParty(i));
    }
    let mut amounts: Vec<u64> = contracts.iter().map(|c| c.energy.0).collect();
    cap_per_party(contracts, &mut amounts, |c| c.seller, |p| meters[p].exported.0);
    cap_per_party(contracts, &mut amounts, |c| c.buyer, |p| meters[p].imported.0);
    Ok(amounts.into_iter().map(Wh).collect())
}

/// Scales each party's amounts down to its cap where they exceed it.
fn cap_per_party(
    contracts: &[Contract],
    amounts: &mut [u64],
    party: impl Fn(&Contract) -> usize,
    cap: impl Fn(usize) -> u64,
) {
    let mut parties: Vec<usize> = contracts.iter().map(&party).collect();
    parties.sort_unstable();
    parties.dedup();
    for p in parties {
        let mine: Vec<usize> = (0..contracts.len()).filter(|&i| party(&contracts[i]) == p).collect();
        let weights: Vec<u64> = mine.iter().map(|&i| amounts[i]).collect();
        let limit = cap(p);
        if weights.iter().sum::<u64>() <= limit {
            continue;
        }
        for (i, share) in mine.into_iter().zip(shares(limit, &weights)) {
            amounts[i] = share;
        }
    }
}

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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a test panics to fail

    use super::*;

    fn c(seller: usize, buyer: usize, energy: u64) -> Contract {
        Contract { seller, buyer, energy: Wh(energy) }
    }

    fn m(imported: u64, exported: u64) -> Metered {
        Metered { imported: Wh(imported), exported: Wh(exported) }
    }

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
    fn full_delivery_when_the_meters_cover_the_trades() {
        let meters = [m(0, 500), m(300, 0), m(400, 0)];
        let got = delivered(&[c(0, 1, 200), c(0, 2, 250)], &meters).unwrap();
        assert_eq!(got, vec![Wh(200), Wh(250)]);
    }

    #[test]
    fn a_short_seller_delivers_pro_rata_and_a_short_buyer_takes_its_import() {
        // Seller 0 sold 300 + 100 but exported 200: 150 and 50. Buyer 2 imported only 30.
        let meters = [m(0, 200), m(1_000, 0), m(30, 0)];
        let got = delivered(&[c(0, 1, 300), c(0, 2, 100)], &meters).unwrap();
        assert_eq!(got, vec![Wh(150), Wh(30)]);
        assert_eq!(delivered(&[c(0, 5, 1)], &meters), Err(SettlementError::UnknownParty(0)));
    }
}
