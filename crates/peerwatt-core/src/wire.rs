//! The messages of the direct trade protocol (`/peerwatt/trade/1`, libp2p request-response).
//!
//! A taker sends a [`TradeCall`]; the maker answers with a [`TradeReply`]:
//!
//! - `Request(certificate, signed request)` → `Agreed(signed trade)` or `Refused(reason)`; the
//!   taker's membership certificate travels with the request, so the maker can check that the
//!   taker is a member even if none of its gossip has arrived yet;
//! - `Query(request digests)` → `Known(trades)`: the agreed trades among the asked requests.
//!   A request the maker does not list is not agreed, and the maker will never agree it
//!   afterwards (it is closed), so the answer is final. A taker whose answer was lost (timeout,
//!   crash) asks this to learn the outcome exactly once.
//!
//! Each message starts with a version byte and a tag byte.

use crate::encoding::{Decode, DecodeError, Encode, Reader, Writer};
use crate::envelope::Signed;
use crate::hash::Hash;
use crate::messages::{MembershipCert, Trade, TradeRequest};

/// The version byte of trade-protocol messages.
pub const TRADE_WIRE_VERSION: u8 = 1;
/// Most request digests in one query (and trades in one answer).
pub const MAX_QUERY: usize = 64;
/// Longest refusal reason, bytes.
pub const MAX_REASON: usize = 256;

/// What a taker sends to a maker.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(clippy::large_enum_variant)] // decoded once per call and consumed at once
pub enum TradeCall {
    /// Take (part of) one of the maker's orders.
    Request {
        /// The taker's membership certificate.
        cert: Signed<MembershipCert>,
        /// The taker's signed request.
        request: Signed<TradeRequest>,
    },
    /// Which of these requests (by digest) did you agree?
    Query(Vec<Hash>),
}

/// What a maker answers.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(clippy::large_enum_variant)] // decoded once per call and consumed at once
pub enum TradeReply {
    /// The request is agreed: the trade, signed by both, already in the maker's ledger.
    Agreed(Signed<Trade>),
    /// The request is refused, and why.
    Refused(String),
    /// The agreed trades among the queried requests; the others are final refusals.
    Known(Vec<Signed<Trade>>),
}

fn put_list<T: Encode>(w: &mut Writer, items: &[T]) {
    // MAX_QUERY fits u16; longer lists are cut by the sender before encoding.
    w.u16(u16::try_from(items.len().min(MAX_QUERY)).unwrap_or(0));
    for item in items.iter().take(MAX_QUERY) {
        w.put(item);
    }
}

fn get_list<T: Decode>(r: &mut Reader<'_>, what: &'static str) -> Result<Vec<T>, DecodeError> {
    let n = usize::from(r.u16(what)?);
    if n > MAX_QUERY {
        return Err(DecodeError::TooLong { what, len: n as u64, max: MAX_QUERY as u64 });
    }
    (0..n).map(|_| r.get()).collect()
}

fn version(r: &mut Reader<'_>, what: &'static str) -> Result<(), DecodeError> {
    match r.u8(what)? {
        TRADE_WIRE_VERSION => Ok(()),
        version => Err(DecodeError::UnsupportedVersion { what, version }),
    }
}

impl Encode for TradeCall {
    fn encode(&self, w: &mut Writer) {
        w.u8(TRADE_WIRE_VERSION);
        match self {
            TradeCall::Request { cert, request } => {
                w.u8(1).put(cert).put(request);
            }
            TradeCall::Query(digests) => {
                w.u8(2);
                put_list(w, digests);
            }
        }
    }
}

impl Decode for TradeCall {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        version(r, "trade call")?;
        match r.u8("trade call")? {
            1 => Ok(TradeCall::Request { cert: r.get()?, request: r.get()? }),
            2 => Ok(TradeCall::Query(get_list(r, "query")?)),
            tag => Err(DecodeError::UnknownTag { what: "trade call", tag }),
        }
    }
}

impl Encode for TradeReply {
    fn encode(&self, w: &mut Writer) {
        w.u8(TRADE_WIRE_VERSION);
        match self {
            TradeReply::Agreed(trade) => {
                w.u8(1).put(trade);
            }
            TradeReply::Refused(reason) => {
                let mut end = reason.len().min(MAX_REASON);
                while !reason.is_char_boundary(end) {
                    end -= 1;
                }
                w.u8(2).str(&reason[..end]);
            }
            TradeReply::Known(trades) => {
                w.u8(3);
                put_list(w, trades);
            }
        }
    }
}

impl Decode for TradeReply {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        version(r, "trade reply")?;
        match r.u8("trade reply")? {
            1 => Ok(TradeReply::Agreed(r.get()?)),
            2 => Ok(TradeReply::Refused(r.str(MAX_REASON, "refusal reason")?.to_owned())),
            3 => Ok(TradeReply::Known(get_list(r, "known trades")?)),
            tag => Err(DecodeError::UnknownTag { what: "trade reply", tag }),
        }
    }
}
