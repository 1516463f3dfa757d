//! Validation of gossiped orders, before they are accepted and forwarded.
//!
//! Checks run cheapest first, so a flood of garbage costs little: size, framing, the
//! certificate's community, admin, member and validity window, the market rules (read-only),
//! and only then the two signature verifications (certificate and order). Verified
//! certificates are cached by digest. Nothing is changed unless every check passes.

use std::collections::HashSet;

use peerwatt_core::{Decode, GossipFrame, Hash, Order, Signed, Timestamp};
use thiserror::Error;

use crate::book::{Books, Inserted, OrderReject};

/// The largest gossip frame accepted on the orders topic.
pub const MAX_ORDER_FRAME: usize = 1024;

/// Why a gossiped order was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum GossipReject {
    /// Larger than any honest frame.
    #[error("frame of {0} bytes is too large")]
    Oversized(usize),
    /// Not a gossip frame carrying an order.
    #[error("malformed: {0}")]
    Malformed(String),
    /// The certificate is for another community.
    #[error("the certificate is for another community")]
    WrongCommunity,
    /// The certificate is not signed by this community's admin.
    #[error("the certificate is not issued by the community admin")]
    NotAdmitted,
    /// The order's signer is not the certificate's member.
    #[error("the order is not signed by the certified member")]
    NotMember,
    /// The certificate is expired or not yet valid.
    #[error("the certificate is not valid now")]
    CertificateNotValid,
    /// The certificate's signature does not verify.
    #[error("the certificate's signature does not verify")]
    BadCertificateSignature,
    /// The order's signature does not verify.
    #[error("the order's signature does not verify")]
    BadSignature,
    /// The order breaks a market rule (window, expiry, price, replay, clock).
    #[error("{0}")]
    Rule(OrderReject),
}

/// What the network should do with a refused message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Penalty {
    /// Drop it and lower the sender's score: no honest node sends this.
    Reject,
    /// Drop it without penalty: an honest node can send it (e.g. delivered just after gate closure).
    Ignore,
}

impl GossipReject {
    /// A stable snake_case name for counters and logs.
    pub fn name(&self) -> &'static str {
        match self {
            GossipReject::Oversized(_) => "oversized",
            GossipReject::Malformed(_) => "malformed",
            GossipReject::WrongCommunity => "wrong_community",
            GossipReject::NotAdmitted => "not_admitted",
            GossipReject::NotMember => "not_member",
            GossipReject::CertificateNotValid => "certificate_not_valid",
            GossipReject::BadCertificateSignature => "bad_certificate_signature",
            GossipReject::BadSignature => "bad_signature",
            GossipReject::Rule(OrderReject::Replay { .. }) => "replay",
            GossipReject::Rule(OrderReject::NotOpen(_)) => "interval_not_open",
            GossipReject::Rule(OrderReject::Expired) => "expired",
            GossipReject::Rule(OrderReject::PriceOutOfRange { .. }) => "price_out_of_range",
            GossipReject::Rule(OrderReject::FromTheFuture(_)) => "from_the_future",
            GossipReject::Rule(OrderReject::WrongCommunity) => "wrong_community",
        }
    }

    /// Whether the sender is penalised.
    pub fn penalty(&self) -> Penalty {
        match self {
            // Lateness is not malice: gossip may arrive just after gate closure or expiry.
            GossipReject::Rule(OrderReject::NotOpen(_) | OrderReject::Expired) => Penalty::Ignore,
            _ => Penalty::Reject,
        }
    }
}

/// Validates gossiped orders into the books, caching verified certificates.
#[derive(Debug, Default)]
pub struct OrderValidator {
    /// Digests of certificates whose signature verified.
    verified_certs: HashSet<Hash>,
}

impl OrderValidator {
    /// A validator with an empty certificate cache.
    pub fn new() -> OrderValidator {
        OrderValidator::default()
    }

    /// Checks a frame from the orders topic and, if it is valid, inserts its order.
    pub fn accept(
        &mut self,
        books: &mut Books,
        data: &[u8],
        now: Timestamp,
    ) -> Result<(Signed<Order>, Inserted), GossipReject> {
        if data.len() > MAX_ORDER_FRAME {
            return Err(GossipReject::Oversized(data.len()));
        }
        let frame = GossipFrame::from_bytes(data).map_err(|e| GossipReject::Malformed(e.to_string()))?;
        let order = Signed::<Order>::from_bytes(&frame.message).map_err(|e| GossipReject::Malformed(e.to_string()))?;
        let community = books.community();
        let cert = frame.cert.body();
        if cert.community != community.id {
            return Err(GossipReject::WrongCommunity);
        }
        if *frame.cert.signer() != community.admin {
            return Err(GossipReject::NotAdmitted);
        }
        if cert.member != *order.signer() {
            return Err(GossipReject::NotMember);
        }
        if !cert.is_valid_at(now) {
            return Err(GossipReject::CertificateNotValid);
        }
        books.check(&order, now).map_err(GossipReject::Rule)?;
        let cert_id = frame.cert.digest();
        if !self.verified_certs.contains(&cert_id) {
            frame.cert.verify().map_err(|_| GossipReject::BadCertificateSignature)?;
            self.verified_certs.insert(cert_id);
        }
        order.verify().map_err(|_| GossipReject::BadSignature)?;
        let inserted = books.insert(&order, now).map_err(GossipReject::Rule)?;
        Ok((order, inserted))
    }
}
