//! The community and times shared by the market tests.

#![allow(dead_code)]

use std::time::Duration;

use peerwatt_core::{Community, IntervalId, IntervalLength, NodeKey, Price};

/// 2024-06-01T12:00:00Z: the start of interval `I`. Trading for it is open from 11:00:00 to
/// 11:59:00 (horizon 4 intervals, gate closure 60 s).
pub const START: u64 = 1_717_243_200_000;
/// The interval the tests trade in.
pub const I: IntervalId = IntervalId(START / 900_000);

/// The community admin's key.
pub fn admin() -> NodeKey {
    NodeKey::from_seed(&[3; 32])
}

/// The test community: 15-minute intervals, feed-in 0.080/kWh, retail 0.300/kWh.
pub fn community() -> Community {
    let admin = admin().public();
    Community {
        name: "Test".into(),
        id: Community::derive_id(&admin, "Test"),
        admin,
        interval: IntervalLength::DEFAULT,
        gate_closure: Duration::from_secs(60),
        horizon: 4,
        feed_in: Price(80_000),
        retail: Price(300_000),
        bootstrap: vec![],
    }
}
