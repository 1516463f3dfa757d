//! peerwatt core: the vocabulary every other crate speaks.
//!
//! Integer units ([`units`]), UTC-aligned settlement intervals and clocks ([`time`]), node keys
//! ([`keys`]), the canonical binary encoding ([`encoding`]), signed envelopes ([`envelope`])
//! the protocol's messages ([`messages`]) and the direct trade protocol ([`wire`]). Pure: no I/O except reading and writing key files.

pub mod community;
pub mod encoding;
pub mod envelope;
pub mod hash;
pub mod keys;
pub mod messages;
pub mod rules;
pub mod time;
pub mod units;
pub mod wire;

pub use community::{CertError, Community, CommunityError, Sharing};
pub use encoding::{Decode, DecodeError, Encode};
pub use envelope::{EnvelopeError, Kind, Message, Signed, VerifiedDecodeError};
pub use hash::Hash;
pub use keys::{NodeKey, PublicKey, Signature};
pub use messages::{
    CommunityId, Contracted, EntryKind, GossipFrame, LedgerEntry, MembershipCert, MeterFigures, MeterMethod,
    MeterStatement, Order, SettledTrade, Settlement, Side, Trade, TradeRequest, TreeHead,
};
pub use rules::{CommunityRules, Terms};
pub use time::{Clock, IntervalId, IntervalLength, ManualClock, SystemClock, Timestamp};
pub use units::{Money, Price, UnitsError, W, Wh};
pub use wire::{Answer, TradeCall, TradeReply};
