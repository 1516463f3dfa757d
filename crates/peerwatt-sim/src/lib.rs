//! peerwatt-sim: the simulated neighbourhood behind `peerwatt demo`. Households are built from
//! real-shaped load and irradiance profiles (`data/`, with their licences) and run on the real
//! node: real MQTT meters, real libp2p, real ledgers.
//!
//! This crate grows with its issue; so far it reads the profiles.

pub mod profiles;
