//! The messages of the direct trade protocol (`/peerwatt/trade/1`, libp2p request-response).
//!
//! A taker sends a [`TradeCall`]; the maker answers with a [`TradeReply`]:
//!
//! - `Request(certificate, signed request)` → `Agreed(signed trade)` or `Refused(reason)`; the
//!   taker's membership certificate travels with the request, so the maker can check that the
//!   taker is a member even if none of its gossip has arrived yet;
//! - `Requests(certificate, up to 64 signed requests)` → `Answers`: one `Agreed` or `Refused`
//!   per request, in order. Each request is judged on its own, exactly as if it had come alone;
//!   a busy taker sends what queued up for one maker in one call instead of one stream each.
//!   A call the maker refuses as a whole (not a member, malformed) is answered `Refused`;
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
/// Most requests in one `Requests` call (and answers in one `Answers` reply).
pub const MAX_BATCH: usize = 64;
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
    /// Take these (at most [`MAX_BATCH`]), each judged on its own.
    Requests {
        /// The taker's membership certificate.
        cert: Signed<MembershipCert>,
        /// The taker's signed requests.
        requests: Vec<Signed<TradeRequest>>,
    },
}

/// The maker's answer to one request of a `Requests` call.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(clippy::large_enum_variant)] // decoded once per call and consumed at once
pub enum Answer {
    /// Agreed: the trade, signed by both, already in the maker's ledger.
    Agreed(Signed<Trade>),
    /// Refused, and why.
    Refused(String),
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
    /// The answers to a `Requests` call, one per request, in order.
    Answers(Vec<Answer>),
}

/// A list of at most `max` items (`max` fits u16; longer lists are cut by the sender before
/// encoding, so an encoder never writes what a decoder refuses).
fn put_list<T: Encode>(w: &mut Writer, items: &[T], max: usize) {
    w.u16(u16::try_from(items.len().min(max)).unwrap_or(0));
    for item in items.iter().take(max) {
        w.put(item);
    }
}

fn get_list<T: Decode>(r: &mut Reader<'_>, what: &'static str, max: usize) -> Result<Vec<T>, DecodeError> {
    let n = usize::from(r.u16(what)?);
    if n > max {
        return Err(DecodeError::TooLong { what, len: n as u64, max: max as u64 });
    }
    (0..n).map(|_| r.get()).collect()
}

/// A refusal reason cut to [`MAX_REASON`] bytes on a character boundary.
fn put_reason(w: &mut Writer, reason: &str) {
    let mut end = reason.len().min(MAX_REASON);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    w.str(&reason[..end]);
}

/// A refusal reason as [`put_reason`] wrote it.
fn get_reason(r: &mut Reader<'_>) -> Result<String, DecodeError> {
    Ok(r.str(MAX_REASON, "refusal reason")?.to_owned())
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
                put_list(w, digests, MAX_QUERY);
            }
            TradeCall::Requests { cert, requests } => {
                w.u8(3).put(cert);
                put_list(w, requests, MAX_BATCH);
            }
        }
    }
}

impl Decode for TradeCall {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        version(r, "trade call")?;
        match r.u8("trade call")? {
            1 => Ok(TradeCall::Request { cert: r.get()?, request: r.get()? }),
            2 => Ok(TradeCall::Query(get_list(r, "query", MAX_QUERY)?)),
            3 => Ok(TradeCall::Requests { cert: r.get()?, requests: get_list(r, "requests", MAX_BATCH)? }),
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
                w.u8(2);
                put_reason(w, reason);
            }
            TradeReply::Known(trades) => {
                w.u8(3);
                put_list(w, trades, MAX_QUERY);
            }
            TradeReply::Answers(answers) => {
                w.u8(4);
                put_list(w, answers, MAX_BATCH);
            }
        }
    }
}

impl Decode for TradeReply {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        version(r, "trade reply")?;
        match r.u8("trade reply")? {
            1 => Ok(TradeReply::Agreed(r.get()?)),
            2 => Ok(TradeReply::Refused(get_reason(r)?)),
            3 => Ok(TradeReply::Known(get_list(r, "known trades", MAX_QUERY)?)),
            4 => Ok(TradeReply::Answers(get_list(r, "answers", MAX_BATCH)?)),
            tag => Err(DecodeError::UnknownTag { what: "trade reply", tag }),
        }
    }
}

impl Encode for Answer {
    fn encode(&self, w: &mut Writer) {
        match self {
            Answer::Agreed(trade) => {
                w.u8(1).put(trade);
            }
            Answer::Refused(reason) => {
                w.u8(2);
                put_reason(w, reason);
            }
        }
    }
}

impl Decode for Answer {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        match r.u8("answer")? {
            1 => Ok(Answer::Agreed(r.get()?)),
            2 => Ok(Answer::Refused(get_reason(r)?)),
            tag => Err(DecodeError::UnknownTag { what: "answer", tag }),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a test panics to fail

    use super::*;
    use crate::{CommunityId, IntervalId, NodeKey, Price, Side, Timestamp, Wh};

    fn request(seq: u64) -> Signed<TradeRequest> {
        let key = NodeKey::from_seed(&[7; 32]);
        Signed::sign(
            &key,
            TradeRequest {
                community: CommunityId(Hash([1; 32])),
                order: Hash([2; 32]),
                maker: NodeKey::from_seed(&[8; 32]).public(),
                maker_side: Side::Sell,
                interval: IntervalId(5),
                energy: Wh(10),
                price: Price(100_000),
                request_seq: seq,
                created_at: Timestamp(1),
            },
        )
    }

    fn cert() -> Signed<MembershipCert> {
        Signed::sign(
            &NodeKey::from_seed(&[9; 32]),
            MembershipCert {
                community: CommunityId(Hash([1; 32])),
                member: NodeKey::from_seed(&[7; 32]).public(),
                name: "a".into(),
                zone: "z".into(),
                valid_from: Timestamp(0),
                valid_until: Timestamp(10),
            },
        )
    }

    #[test]
    fn a_batch_of_requests_and_its_answers_round_trip_in_order() {
        let requests: Vec<_> = (0..MAX_BATCH as u64).map(request).collect();
        let call = TradeCall::Requests { cert: cert(), requests };
        assert_eq!(TradeCall::from_bytes(&call.to_bytes()).unwrap(), call);
        let trade =
            Signed::sign(&NodeKey::from_seed(&[8; 32]), Trade { request: request(0), accepted_at: Timestamp(2) });
        let reply = TradeReply::Answers(vec![Answer::Refused("insufficient".into()), Answer::Agreed(trade)]);
        assert_eq!(TradeReply::from_bytes(&reply.to_bytes()).unwrap(), reply);
    }

    #[test]
    fn a_batch_longer_than_the_limit_is_refused_when_decoded_and_cut_when_encoded() {
        let call = TradeCall::Requests { cert: cert(), requests: (0..=MAX_BATCH as u64).map(request).collect() };
        // The encoder never writes more than the decoder takes.
        let TradeCall::Requests { requests, .. } = TradeCall::from_bytes(&call.to_bytes()).unwrap() else {
            panic!("not a batch")
        };
        assert_eq!(requests.len(), MAX_BATCH);
        // A hostile count is refused before anything is read.
        let mut bytes = vec![TRADE_WIRE_VERSION, 3];
        bytes.extend_from_slice(&cert().to_bytes());
        bytes.extend_from_slice(&(MAX_BATCH as u16 + 1).to_be_bytes());
        assert!(matches!(TradeCall::from_bytes(&bytes), Err(DecodeError::TooLong { what: "requests", .. })));
        let answers = [TRADE_WIRE_VERSION, 4, 0xff, 0xff];
        assert!(matches!(TradeReply::from_bytes(&answers), Err(DecodeError::TooLong { what: "answers", .. })));
    }

    #[test]
    fn an_answer_cannot_nest_a_reply() {
        // Tag 3 would be `Known` in a reply; inside `Answers` only 1 and 2 exist.
        let bytes = [TRADE_WIRE_VERSION, 4, 0, 1, 3, 0, 0];
        assert!(matches!(TradeReply::from_bytes(&bytes), Err(DecodeError::UnknownTag { what: "answer", tag: 3 })));
    }
}
