//! peerwatt-sim: the simulated neighbourhood behind `peerwatt demo`. Households are built from
//! real-shaped load and irradiance profiles (`data/`, embedded, with their licences) and run on
//! the real node: real MQTT meters on an embedded broker, real libp2p on loopback, real sled
//! ledgers, on one accelerated clock. Afterwards the ledgers are verified and read back, the
//! trades are settled against the meters, and the report is computed.
//!
//! - [`profiles`] and [`household`]: who lives in the street and what flows through the meters;
//! - [`meters`] and [`broker`]: simulated meter readers publishing over MQTT;
//! - [`clock`]: the accelerated clock;
//! - [`run`]: one node per household, the live view, shutdown and read-back;
//! - [`kpi`] (pure), [`report`] and [`chart`]: what the day earned, and how good the market was;
//! - [`delivery`]: whether this machine kept up with the clock, so the market figures mean what they say.

pub mod broker;
pub mod chart;
pub mod clock;
pub mod delivery;
pub mod household;
pub mod kpi;
pub mod ledgers;
pub mod meters;
pub mod profiles;
pub mod report;
pub mod rng;
pub mod run;
pub mod scenario;

pub use report::{LiveLine, Report};
pub use run::{Observer, Quiet, RunError, RunOptions, run};
pub use scenario::{NetworkChoice, Scenario};
