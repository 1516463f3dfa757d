//! Validation of gossip (orders, trades, tree heads), before it is accepted and forwarded.
//!
//! Checks run cheapest first, so a flood of garbage costs little: size, framing, the
//! certificate's community, admin, member and validity window, the market rules (read-only),
//! and only then the signature verifications (certificate and order). Verified
//! certificates are cached by digest. Nothing is changed unless every check passes. An order
//! frame may carry a batch of one member's orders: each is checked and taken on its own, and
//! one refused with a penalty refuses the frame (see [`GossipValidator::accept_orders`]). A
//! trade frame may carry a batch of trades its announcer agreed: one bad trade refuses it.

use std::collections::HashSet;
use std::sync::Arc;

use peerwatt_core::{
    CertError, Community, Decode, GossipFrame, Hash, MembershipCert, Message, Order, PublicKey, Signed, Timestamp,
    Trade, TreeHead,
};
use thiserror::Error;

use crate::book::{Books, Inserted, MAX_CLOCK_SKEW_MS, OrderReject};
use crate::memo::VerifiedMemo;

/// The largest gossip frame accepted on the orders topic (a batch of up to 16 orders).
pub const MAX_ORDER_FRAME: usize = 4096;
/// The largest gossip frame accepted on the trades topic (a batch of up to 16 trades).
pub const MAX_TRADE_FRAME: usize = 8192;
/// The largest gossip frame accepted on the heads topic.
pub const MAX_HEAD_FRAME: usize = 1024;

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
    /// The message's signature (or a trade's either signature) does not verify.
    #[error("the message's signature does not verify")]
    BadSignature,
    /// A trade announced by a node that is not one of its two parties.
    #[error("the trade is announced by a node that is not a party to it")]
    NotParty,
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
            GossipReject::NotParty => "not_party",
            GossipReject::Rule(OrderReject::Replay { .. }) => "replay",
            GossipReject::Rule(OrderReject::NotOpen(_)) => "interval_not_open",
            GossipReject::Rule(OrderReject::OutOfWindow(_)) => "interval_out_of_window",
            GossipReject::Rule(OrderReject::Expired) => "expired",
            GossipReject::Rule(OrderReject::PriceOutOfRange { .. }) => "price_out_of_range",
            GossipReject::Rule(OrderReject::CurveBackwards) => "curve_backwards",
            GossipReject::Rule(OrderReject::FromTheFuture(_)) => "from_the_future",
            GossipReject::Rule(OrderReject::WrongCommunity) => "wrong_community",
        }
    }

    /// Whether the sender is penalised.
    pub fn penalty(&self) -> Penalty {
        match self {
            // Lateness is not malice: gossip may arrive just after gate closure or expiry, or
            // after the same maker's newer order for the interval (a replay: paths differ, and
            // a lost message comes back later through lazy gossip). A replay is refused before
            // any signature is checked, so ignoring it costs nothing.
            GossipReject::Rule(OrderReject::NotOpen(_) | OrderReject::Expired | OrderReject::Replay { .. }) => {
                Penalty::Ignore
            }
            _ => Penalty::Reject,
        }
    }
}

/// Validates gossip frames (orders, trades, tree heads), caching verified certificates.
#[derive(Debug, Default)]
pub struct GossipValidator {
    /// Digests of certificates whose signature verified.
    verified_certs: HashSet<Hash>,
    /// Signatures verified by the other nodes of this process, if they share them.
    shared: Option<Arc<VerifiedMemo>>,
}

impl GossipValidator {
    /// A validator with an empty certificate cache.
    pub fn new() -> GossipValidator {
        GossipValidator::default()
    }

    /// A validator that shares verified signatures with the other nodes of the process
    /// through `memo` (see [`crate::memo`]).
    pub fn sharing(memo: Arc<VerifiedMemo>) -> GossipValidator {
        GossipValidator { shared: Some(memo), ..GossipValidator::default() }
    }

    /// Verifies a message's signatures (through the shared memo, if there is one; `digest`
    /// is only computed for the memo, and callers that hold it already pass it on).
    fn verify_signed<T: Message>(&self, signed: &Signed<T>, digest: impl FnOnce() -> Hash) -> Result<(), GossipReject> {
        let verify = || signed.verify().map_err(|_| GossipReject::BadSignature);
        match &self.shared {
            Some(memo) => memo.check(digest(), verify),
            None => verify(),
        }
    }

    /// The frame, with its certificate checked against `community` at `now` (all but its
    /// signature: that comes last, see [`GossipValidator::verify_cert`]).
    fn open_frame(
        &self,
        community: &Community,
        data: &[u8],
        max: usize,
        now: Timestamp,
    ) -> Result<GossipFrame, GossipReject> {
        if data.len() > max {
            return Err(GossipReject::Oversized(data.len()));
        }
        let frame = GossipFrame::from_bytes(data).map_err(|e| GossipReject::Malformed(e.to_string()))?;
        let cert = frame.cert.body();
        if cert.community != community.id {
            return Err(GossipReject::WrongCommunity);
        }
        if *frame.cert.signer() != community.admin {
            return Err(GossipReject::NotAdmitted);
        }
        if !cert.is_valid_at(now) {
            return Err(GossipReject::CertificateNotValid);
        }
        Ok(frame)
    }

    /// A frame of exactly one signed message (heads travel one per frame).
    fn open<T: Message>(
        &self,
        community: &Community,
        data: &[u8],
        max: usize,
        now: Timestamp,
    ) -> Result<(GossipFrame, Signed<T>), GossipReject> {
        let frame = self.open_frame(community, data, max, now)?;
        let [message] = frame.messages.as_slice() else {
            return Err(GossipReject::Malformed("a batch on a topic of single messages".into()));
        };
        let message = Signed::<T>::from_bytes(message).map_err(|e| GossipReject::Malformed(e.to_string()))?;
        Ok((frame, message))
    }

    /// Whether a certificate's signature verifies, checked once per certificate.
    fn cert_signature_ok(&mut self, cert: &Signed<MembershipCert>) -> bool {
        let cert_id = cert.digest();
        if self.verified_certs.contains(&cert_id) {
            return true;
        }
        let ok = cert.verify().is_ok();
        if ok {
            self.verified_certs.insert(cert_id);
        }
        ok
    }

    /// Checks the frame certificate's signature, once per certificate.
    fn verify_cert(&mut self, frame: &GossipFrame) -> Result<(), GossipReject> {
        self.cert_signature_ok(&frame.cert).then_some(()).ok_or(GossipReject::BadCertificateSignature)
    }

    /// Checks a certificate presented outside gossip (with a trade request): like
    /// [`Community::check_cert`], verifying the signature once per certificate.
    pub fn check_cert(
        &mut self,
        community: &Community,
        cert: &Signed<MembershipCert>,
        member: &PublicKey,
        now: Timestamp,
    ) -> Result<(), CertError> {
        community.check_cert_terms(cert, member, now)?;
        self.cert_signature_ok(cert).then_some(()).ok_or(CertError::BadSignature)
    }

    /// Checks a frame from the orders topic and inserts its orders, in the frame's order.
    ///
    /// Every order must be signed by the certificate's member. An order refused without
    /// penalty (late: [`Penalty::Ignore`]) is skipped; one refused with a penalty refuses the
    /// frame, and orders before it in the frame (valid, and the same member's) stay in the
    /// books. A frame of late orders only is refused with the first one's reason, so it is
    /// neither forwarded nor penalised.
    pub fn accept_orders(
        &mut self,
        books: &mut Books,
        data: &[u8],
        now: Timestamp,
    ) -> Result<Vec<(Signed<Order>, Inserted)>, GossipReject> {
        let frame = self.open_frame(books.community(), data, MAX_ORDER_FRAME, now)?;
        let member = frame.cert.body().member;
        let orders = frame
            .messages
            .iter()
            .map(|m| Signed::<Order>::from_bytes(m).map_err(|e| GossipReject::Malformed(e.to_string())))
            .collect::<Result<Vec<_>, _>>()?;
        if orders.iter().any(|o| *o.signer() != member) {
            return Err(GossipReject::NotMember);
        }
        let mut late = None;
        let mut accepted = Vec::with_capacity(orders.len());
        for order in orders {
            match self.accept_one_order(books, &frame, order, now) {
                Ok(taken) => accepted.push(taken),
                Err(reject) if reject.penalty() == Penalty::Ignore => {
                    late.get_or_insert(reject);
                }
                Err(reject) => return Err(reject),
            }
        }
        match late {
            Some(reject) if accepted.is_empty() => Err(reject),
            _ => Ok(accepted),
        }
    }

    /// The market rules, the certificate's signature (cached) and the order's, then the book.
    fn accept_one_order(
        &mut self,
        books: &mut Books,
        frame: &GossipFrame,
        order: Signed<Order>,
        now: Timestamp,
    ) -> Result<(Signed<Order>, Inserted), GossipReject> {
        books.check(&order, now).map_err(GossipReject::Rule)?;
        self.verify_cert(frame)?;
        self.verify_signed(&order, || order.digest())?;
        let inserted = books.insert(&order, now).map_err(GossipReject::Rule)?;
        Ok((order, inserted))
    }

    /// Checks a frame from the trades topic: 1 to 16 trades announced by a party to each of
    /// them, with both signatures, for this community, within the tariffs. `verified` holds
    /// the digests of trades whose signatures were checked before (a digest covers the
    /// signatures, so an identical copy needs no second check). One bad trade refuses the
    /// frame: an honest node announces only trades it agreed.
    pub fn accept_trades(
        &mut self,
        community: &Community,
        data: &[u8],
        now: Timestamp,
        verified: &HashSet<Hash>,
    ) -> Result<Vec<Signed<Trade>>, GossipReject> {
        let frame = self.open_frame(community, data, MAX_TRADE_FRAME, now)?;
        let trades = frame
            .messages
            .iter()
            .map(|m| Signed::<Trade>::from_bytes(m).map_err(|e| GossipReject::Malformed(e.to_string())))
            .collect::<Result<Vec<_>, _>>()?;
        let announcer = frame.cert.body().member;
        for trade in &trades {
            check_trade_terms(community, trade, &announcer)?;
        }
        self.verify_cert(&frame)?;
        for trade in &trades {
            // Both signatures: the maker's on the trade, the taker's on the request inside.
            let digest = trade.digest();
            if !verified.contains(&digest) {
                self.verify_signed(trade, || digest)?;
            }
        }
        Ok(trades)
    }

    /// Checks a frame from the heads topic: a member's signed ledger tree head.
    pub fn accept_head(
        &mut self,
        community: &Community,
        data: &[u8],
        now: Timestamp,
    ) -> Result<Signed<TreeHead>, GossipReject> {
        let (frame, head) = self.open::<TreeHead>(community, data, MAX_HEAD_FRAME, now)?;
        if frame.cert.body().member != *head.signer() {
            return Err(GossipReject::NotMember);
        }
        if head.body().time.0 > now.0.saturating_add(MAX_CLOCK_SKEW_MS) {
            return Err(GossipReject::Rule(OrderReject::FromTheFuture(head.body().time.0 - now.0)));
        }
        self.verify_cert(&frame)?;
        self.verify_signed(&head, || head.digest())?;
        Ok(head)
    }
}

/// The checks of an announced trade that need no signature: announced by one of its two
/// parties, for this community, at a price within the tariffs.
fn check_trade_terms(community: &Community, trade: &Signed<Trade>, announcer: &PublicKey) -> Result<(), GossipReject> {
    let terms = trade.body().request.body();
    if announcer != trade.signer() && announcer != trade.body().request.signer() {
        return Err(GossipReject::NotParty);
    }
    if terms.community != community.id {
        return Err(GossipReject::WrongCommunity);
    }
    if terms.price < community.feed_in || terms.price > community.retail {
        return Err(GossipReject::Rule(OrderReject::PriceOutOfRange {
            price: terms.price,
            feed_in: community.feed_in,
            retail: community.retail,
        }));
    }
    Ok(())
}
