//! peerwatt's market, pure and driven by an injected clock: no network, no disk.
//!
//! - [`book`]: order books per open interval, price-time priority, replacement and cancellation;
//! - [`gossip`]: validation of gossip in two stages: a stateless screen (certificate, rules,
//!   signatures, cheapest first) for a worker, and what the core applies;
//! - [`maker`]: the maker's authority over its orders (reserve, commit after the ledger, abort);
//! - [`memo`]: verified signatures shared by the nodes of one process (the simulator's);
//! - [`taker`]: the taker's requests and exactly-once recording of its trades;
//! - [`strategy`]: forecast, price curves and bounds of the default strategy;
//! - [`trader`]: the trading core, sans-IO: all of the above as one state machine a node drives;
//! - [`settlement`]: delivery of trades against the meters, exact to the Wh.
//!
//! The handshake (see `docs/market.md`): the taker signs a request against a maker's order; the
//! maker checks it, reserves the energy, countersigns, appends the trade to its ledger
//! (flushed) and only then answers; the taker verifies both signatures and records it; the
//! maker announces it. No trade exists without both signatures.

pub mod bill;
pub mod book;
pub mod gossip;
pub mod maker;
pub mod memo;
pub mod settlement;
pub mod statements;
pub mod strategy;
pub mod taker;
pub mod trader;

pub use book::{BookOrder, Books, Inserted, OrderReject, TAKING_SIDE, taking_order};
pub use gossip::{
    DecodedFrame, GossipReject, GossipValidator, Penalty, STATEMENT_MAX_AGE_MS, Screened, Stated, Topic, decode_frame,
    insert_screened,
};
pub use maker::{Acceptance, Maker, Refusal, Reserved};
pub use memo::VerifiedMemo;
pub use statements::{Measured, Statements, Taken};
pub use strategy::{ForecastMethod, Forecaster, Intent, Observed, UserLimits, intent, price_at};
pub use taker::{RequestState, Taker, TakerAction};
pub use trader::{CallId, CommandId, Effect, Input, Recorded, ReplyTo, Trader, TraderConfig, TradingState, Writes};
