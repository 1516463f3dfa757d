//! peerwatt-testkit: what the tests and benchmarks of every crate share, and nothing the
//! `peerwatt` binary links (a dev-dependency only).
//!
//! - [`mosquitto`]: a real mosquitto broker on a free loopback port;
//! - [`community`]: a community and its members' data directories, ready for
//!   [`peerwatt_node::start`];
//! - [`households`]: a neighbourhood of real `peerwatt run` processes with fake meters, and
//!   the checks over the ledgers they leave;
//! - [`wait`]: waiting on conditions, never on fixed sleeps.
//!
//! Free loopback ports are [`peerwatt_net::free_port`] (the demo needs them too); the trades a
//! ledger holds are [`peerwatt_ledger::LedgerReader::trades`].

#![allow(clippy::unwrap_used, clippy::expect_used)] // a helper panics to fail the test

pub mod community;
pub mod households;
pub mod mosquitto;
pub mod wait;

pub use community::{bench_community, community_of};
pub use mosquitto::{BrokerOptions, Mosquitto};
pub use peerwatt_net::free_port;
