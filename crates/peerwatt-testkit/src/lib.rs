//! peerwatt-testkit: what the tests and benchmarks of every crate share, and nothing the
//! `peerwatt` binary links (a dev-dependency only).
//!
//! - [`mosquitto`]: a real mosquitto broker on a free loopback port;
//! - [`community`]: a community and its members' data directories, ready for
//!   [`peerwatt_node::start`];
//! - [`households`]: a neighbourhood of real `peerwatt run` processes with fake meters, and
//!   the checks over the ledgers they leave;
//! - [`wait`]: waiting on conditions, never on fixed sleeps;
//! - [`http`]: a plain HTTP client for the node's interface;
//! - [`mqtt`]: a subscriber that keeps what it sees, and what a broker retains.
//!
//! Free loopback ports are [`peerwatt_net::free_port`] (the demo needs them too); the trades a
//! ledger holds are [`peerwatt_ledger::LedgerReader::trades`].

#![allow(clippy::unwrap_used, clippy::expect_used)] // a helper panics to fail the test

pub mod community;
pub mod households;
pub mod http;
pub mod mosquitto;
pub mod mqtt;
pub mod wait;

pub use community::{bench_community, community_of, trade_once};
pub use mosquitto::{BrokerOptions, Mosquitto};
pub use peerwatt_net::free_port;

/// Peak resident memory of this process, kB (Linux `VmHWM`; 0 where it cannot be read): what
/// the benchmarks report as peak memory.
pub fn peak_rss_kb() -> u64 {
    proc_status_kb("VmHWM:")
}

/// Resident memory of this process now, kB (Linux `VmRSS`; 0 where it cannot be read).
pub fn rss_kb() -> u64 {
    proc_status_kb("VmRSS:")
}

/// Resident memory of process `pid`, kB (Linux `VmRSS`; 0 where it cannot be read).
pub fn rss_kb_of(pid: u32) -> u64 {
    status_kb(&format!("/proc/{pid}/status"), "VmRSS:")
}

/// A kB figure of `/proc/self/status`.
fn proc_status_kb(field: &str) -> u64 {
    status_kb("/proc/self/status", field)
}

/// A kB figure of a `/proc/<pid>/status` file.
fn status_kb(path: &str, field: &str) -> u64 {
    let status = std::fs::read_to_string(path).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}
