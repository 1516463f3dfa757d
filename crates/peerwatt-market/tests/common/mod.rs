//! The community and times shared by the market tests.

#![allow(dead_code)]

use peerwatt_core::{Community, NodeKey};
/// 2024-06-01T12:00:00Z, the start of interval `I` (trading for it is open from 11:00:00 to
/// 11:59:00: horizon 4 intervals, gate closure 60 s), as in the trading core's street.
pub use peerwatt_market::trader::testkit::{I, START};

/// The community admin's key.
pub fn admin() -> NodeKey {
    NodeKey::from_seed(&[3; 32])
}

/// The test community: 15-minute intervals, feed-in 0.080/kWh, retail 0.300/kWh.
pub fn community() -> Community {
    peerwatt_market::trader::testkit::community_named(&admin(), "Test")
}
