//! Validation of gossip (orders, trades, tree heads), before it is accepted and forwarded.
//!
//! Two stages, so that the expensive one runs off the node's actor (Lighthouse's shape):
//! [`GossipValidator::screen`] makes every check that needs no state of the node's (size,
//! framing, the certificate's community, admin, member and validity window, the market rules
//! but replay, and last the signatures), on any thread, and its verdict goes straight to the
//! network, so a relay hop never waits for the node's turn. What passes is [`Screened`]; the
//! trading core then applies it ([`insert_screened`] for orders), where the one rule that
//! needs the books, replay, is checked (a replay is ignored without penalty, so forwarding
//! it costs an honest neighbour nothing but one more screen).
//!
//! Checks run cheapest first, so a flood of garbage costs little. Verified certificates are
//! cached by digest, and verified signed messages in a [`VerifiedMemo`] (the node's own, or
//! the one the nodes of a process share). An order frame may carry a batch of one member's
//! orders: late ones are skipped without penalty, and one refused with a penalty refuses the
//! frame. A trade frame may carry a batch of trades its announcer agreed: one bad trade
//! refuses it.

use std::collections::HashMap;
use std::sync::Arc;

use peerwatt_core::{
    CertError, Community, Contracted, Decode, GossipFrame, Hash, IntervalId, MembershipCert, Message, MeterStatement,
    Order, PublicKey, Signed, Timestamp, Trade, TreeHead, Wh,
};
use thiserror::Error;

use crate::book::{Books, Inserted, MAX_CLOCK_SKEW_MS, OrderReject, check_order_terms, skew_for_rate};
use crate::memo::VerifiedMemo;

/// A gossip topic of the community.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Topic {
    /// Orders (offers and bids).
    Orders,
    /// Agreed trades, announced by their maker.
    Trades,
    /// Signed ledger tree heads.
    Heads,
    /// Signed meter statements.
    Statements,
}

impl Topic {
    /// Every topic.
    pub const ALL: [Topic; 4] = [Topic::Orders, Topic::Trades, Topic::Heads, Topic::Statements];

    /// The topic's name, as in `peerwatt/<community>/<name>/1`, counters and logs.
    pub fn name(self) -> &'static str {
        match self {
            Topic::Orders => "orders",
            Topic::Trades => "trades",
            Topic::Heads => "heads",
            Topic::Statements => "statements",
        }
    }
}
/// The largest gossip frame accepted on the orders topic (a batch of up to 16 orders).
pub const MAX_ORDER_FRAME: usize = 4096;
/// The largest gossip frame accepted on the trades topic (a batch of up to 16 trades).
pub const MAX_TRADE_FRAME: usize = 8192;
/// The largest gossip frame accepted on the heads topic.
pub const MAX_HEAD_FRAME: usize = 1024;
/// The largest gossip frame accepted on the statements topic (a batch of up to 16 statements,
/// each listing up to 40 contracts; a sender packs its frames to stay within it).
pub const MAX_STATEMENT_FRAME: usize = 32 * 1024;

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
    /// An announced trade's price is outside the tariffs of this node's community file for
    /// its interval (a trade carries no rules version: the sender's file may differ).
    #[error("{0}")]
    TradeTerms(OrderReject),
    /// A meter statement of a revision already superseded or already held.
    #[error("meter statement revision {revision} is not newer than the {held} held")]
    Superseded {
        /// The statement's revision.
        revision: u32,
        /// The revision held.
        held: u32,
    },
    /// A second, different meter statement of a revision already held: its signer
    /// equivocates (the first is kept).
    #[error("a different meter statement of revision {0} is held already")]
    Equivocation(u32),
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
            GossipReject::Superseded { .. } => "superseded",
            GossipReject::Equivocation(_) => "equivocation",
            GossipReject::Rule(OrderReject::Replay { .. }) => "replay",
            GossipReject::Rule(OrderReject::NotOpen(_)) => "interval_not_open",
            GossipReject::Rule(OrderReject::OutOfWindow(_)) => "interval_out_of_window",
            GossipReject::Rule(OrderReject::Expired) => "expired",
            GossipReject::Rule(OrderReject::PriceOutOfRange { .. }) => "price_out_of_range",
            GossipReject::TradeTerms(_) => "price_out_of_range",
            GossipReject::Rule(OrderReject::CurveBackwards) => "curve_backwards",
            GossipReject::Rule(OrderReject::FromTheFuture(_)) => "from_the_future",
            GossipReject::Rule(OrderReject::WrongCommunity) => "wrong_community",
            GossipReject::Rule(OrderReject::OtherRules { .. }) => "other_rules",
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
            // A relay cannot tell either from a valid statement: it may not have seen the
            // newer or the first one. The signer's equivocation is counted where it is held.
            GossipReject::Superseded { .. } | GossipReject::Equivocation(_) => Penalty::Ignore,
            // An honest member whose community file is older (or newer) than this node's:
            // refused and counted, not punished; the count tells the operator to update.
            GossipReject::Rule(OrderReject::OtherRules { .. }) => Penalty::Ignore,
            // Judged by this node's own view, which an honest sender need not share: its clock
            // (a home node that booted before its clock was set sees everything as from the
            // future, and new certificates as not valid yet) and its community file (a trade
            // carries no rules version: during a change of tariffs, nodes with the old and the
            // new file disagree on its price range; an order names its version, and one of
            // another version is `other_rules`). Refused and counted, never punished.
            GossipReject::Rule(OrderReject::FromTheFuture(_))
            | GossipReject::TradeTerms(_)
            | GossipReject::CertificateNotValid => Penalty::Ignore,
            _ => Penalty::Reject,
        }
    }
}

/// Gossip that passed every check needing no state of the node's: what a screening worker
/// hands the trading core, each signed message with its digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Screened {
    /// One member's orders, in the frame's order; `late` is why the first order of the frame
    /// that was skipped without penalty was skipped, if one was.
    Orders {
        /// The orders and their digests.
        orders: Vec<(Signed<Order>, Hash)>,
        /// The first late order's reason.
        late: Option<GossipReject>,
        /// The member's display name, from its verified certificate.
        name: String,
    },
    /// Trades announced by a party to each, with both signatures verified.
    Trades(Vec<(Signed<Trade>, Hash)>),
    /// A member's signed ledger tree head.
    Head(Box<Signed<TreeHead>>),
    /// One member's meter statements, of intervals that have ended: what each says.
    Statements(Vec<Stated>),
}

/// What a member's verified meter statement says, as the screen hands it on: the figures and
/// the digest (the signed statement is in its signer's ledger; a copy of each for every
/// receiver was most of the cost of statements in a 500-member street).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stated {
    /// The signer's key bytes (32 bytes; a `PublicKey` holds its decompressed point too, six
    /// times the size, in every statement of every frame every member keeps).
    pub member: [u8; 32],
    /// The interval.
    pub interval: IntervalId,
    /// The revision.
    pub revision: u32,
    /// Imported from the grid.
    pub imported: Wh,
    /// Exported to the grid.
    pub exported: Wh,
    /// Whether readings covered the whole interval.
    pub complete: bool,
    /// The energy its signer contracted, per counterparty and side.
    pub contracts: Arc<[Contracted]>,
    /// The signed statement's digest.
    pub digest: Hash,
}

impl Stated {
    /// What `statement` (with its `digest`) says.
    pub fn of(statement: &Signed<MeterStatement>, digest: Hash) -> Stated {
        Stated::with_contracts(statement, digest, Arc::from(statement.body().contracts.as_slice()))
    }

    /// What `statement` says, with its contracts already shared.
    pub fn with_contracts(statement: &Signed<MeterStatement>, digest: Hash, contracts: Arc<[Contracted]>) -> Stated {
        let b = statement.body();
        Stated {
            member: statement.signer().to_bytes(),
            interval: b.interval,
            revision: b.revision,
            imported: b.figures.imported,
            exported: b.figures.exported,
            complete: b.figures.complete,
            contracts,
            digest,
        }
    }
}

impl Screened {
    /// The topic it came on.
    pub fn topic(&self) -> Topic {
        match self {
            Screened::Orders { .. } => Topic::Orders,
            Screened::Trades(_) => Topic::Trades,
            Screened::Head(_) => Topic::Heads,
            Screened::Statements(_) => Topic::Statements,
        }
    }
}

/// Screened orders (each with its digest) and why the first late one was skipped, if one was.
pub type ScreenedOrders = (Vec<(Signed<Order>, Hash)>, Option<GossipReject>);

/// How many verified digests a node keeps when it shares no memo with other nodes (enough for
/// the copies of one message arriving on several paths, well under a megabyte).
const OWN_MEMO_CAPACITY: usize = 4096;

/// Screens gossip frames (orders, trades, tree heads) of one community, caching verified
/// certificates and signatures; see the module documentation.
#[derive(Debug)]
pub struct GossipValidator {
    community: Community,
    /// How far ahead of this clock a message may be dated (see [`skew_for_rate`]).
    skew_ms: u64,
    /// Per member, the last certificate whose signature verified.
    verified_certs: HashMap<PublicKey, Signed<MembershipCert>>,
    /// Signed messages whose signatures verified.
    memo: Arc<VerifiedMemo>,
}

impl GossipValidator {
    /// A validator for `community` with empty caches, for a clock running at real time.
    pub fn new(community: Community) -> GossipValidator {
        GossipValidator {
            community,
            skew_ms: MAX_CLOCK_SKEW_MS,
            verified_certs: HashMap::new(),
            memo: Arc::new(VerifiedMemo::with_capacity(OWN_MEMO_CAPACITY)),
        }
    }

    /// The same validator for a clock running `rate` times faster than real time.
    pub fn with_clock_rate(mut self, rate: u32) -> GossipValidator {
        self.skew_ms = skew_for_rate(rate);
        self
    }

    /// The same validator sharing verified signatures with the other nodes of the process
    /// through `memo` (see [`crate::memo`]).
    pub fn sharing(mut self, memo: Arc<VerifiedMemo>) -> GossipValidator {
        self.memo = memo;
        self
    }

    /// A validator for a screening worker: the same community, clock and memo, its own
    /// certificate cache.
    pub fn worker(&self) -> GossipValidator {
        GossipValidator {
            community: self.community.clone(),
            skew_ms: self.skew_ms,
            verified_certs: HashMap::new(),
            memo: self.memo.clone(),
        }
    }

    /// Screens one frame that arrived on `topic` at `now`.
    pub fn screen(&mut self, topic: Topic, data: &[u8], now: Timestamp) -> Result<Screened, GossipReject> {
        self.screen_decoded(topic, &decode_frame(topic, data)?, now)
    }

    /// Screens a frame decoded already ([`decode_frame`]; the nodes of one process may share
    /// the decoding of a frame they all receive): everything but the decoding.
    pub fn screen_decoded(
        &mut self,
        topic: Topic,
        frame: &DecodedFrame,
        now: Timestamp,
    ) -> Result<Screened, GossipReject> {
        self.check_cert_terms(&frame.cert, now)?;
        let member = frame.cert.body().member;
        match (topic, frame.messages.as_ref().map_err(Clone::clone)?) {
            (Topic::Orders, Messages::Orders(orders)) => {
                let (orders, late) = self.check_orders(&frame.cert, member, orders, now)?;
                Ok(Screened::Orders { orders, late, name: frame.cert.body().name.clone() })
            }
            (Topic::Trades, Messages::Trades(trades)) => self.check_trades(&frame.cert, trades).map(Screened::Trades),
            (Topic::Heads, Messages::Head(head, digest)) => {
                self.check_head(&frame.cert, head, *digest, now).map(|h| Screened::Head(Box::new(h)))
            }
            (Topic::Statements, Messages::Statements(statements)) => {
                self.check_statements(&frame.cert, statements, now).map(Screened::Statements)
            }
            _ => Err(GossipReject::Malformed(format!("a frame decoded for another topic than {}", topic.name()))),
        }
    }
    /// Verifies a message's signatures through the memo: `digest` is its digest.
    fn verify_signed<T: Message>(&self, signed: &Signed<T>, digest: Hash) -> Result<(), GossipReject> {
        self.memo.check(digest, || signed.verify().map_err(|_| GossipReject::BadSignature))
    }

    /// Verifies every message of a frame (with its digest); the first that does not verify
    /// refuses them all.
    fn verify_all<T: Message>(&self, messages: Vec<(Signed<T>, Hash)>) -> Result<Vec<(Signed<T>, Hash)>, GossipReject> {
        for (message, digest) in &messages {
            self.verify_signed(message, *digest)?;
        }
        Ok(messages)
    }

    /// The frame certificate's terms checked against the community at `now` (all but its
    /// signature: that comes last, see [`GossipValidator::verify_cert`]).
    fn check_cert_terms(&self, cert: &Signed<MembershipCert>, now: Timestamp) -> Result<(), GossipReject> {
        if cert.body().community != self.community.id {
            return Err(GossipReject::WrongCommunity);
        }
        if *cert.signer() != self.community.admin {
            return Err(GossipReject::NotAdmitted);
        }
        if !cert.body().is_valid_at(now) {
            return Err(GossipReject::CertificateNotValid);
        }
        Ok(())
    }
    /// Whether a certificate's signature verifies, checked once per certificate: the last
    /// verified certificate of each member is kept, and an identical one needs no check (a
    /// comparison, where hashing every frame's certificate was a cost of every delivery).
    fn cert_signature_ok(&mut self, cert: &Signed<MembershipCert>) -> bool {
        let member = cert.body().member;
        if self.verified_certs.get(&member) == Some(cert) {
            return true;
        }
        let ok = cert.verify().is_ok();
        if ok {
            self.verified_certs.insert(member, cert.clone());
        }
        ok
    }

    /// Checks the frame certificate's signature, once per certificate.
    fn verify_cert(&mut self, cert: &Signed<MembershipCert>) -> Result<(), GossipReject> {
        self.cert_signature_ok(cert).then_some(()).ok_or(GossipReject::BadCertificateSignature)
    }

    /// Checks a certificate presented outside gossip (with a trade request): like
    /// [`Community::check_cert`], verifying the signature once per certificate.
    pub fn check_cert(
        &mut self,
        cert: &Signed<MembershipCert>,
        member: &PublicKey,
        now: Timestamp,
    ) -> Result<(), CertError> {
        self.community.check_cert_terms(cert, member, now)?;
        self.cert_signature_ok(cert).then_some(()).ok_or(CertError::BadSignature)
    }

    /// Screens a frame from the orders topic (see [`GossipValidator::check_orders`]).
    pub fn screen_orders(&mut self, data: &[u8], now: Timestamp) -> Result<ScreenedOrders, GossipReject> {
        match self.screen(Topic::Orders, data, now)? {
            Screened::Orders { orders, late, .. } => Ok((orders, late)),
            _ => Err(GossipReject::Malformed("not an order frame".into())),
        }
    }

    /// Checks the orders of a frame. Every order must be signed by the certificate's member
    /// and keep the market rules (but replay: that needs the books). An order refused without
    /// penalty (late: [`Penalty::Ignore`]) is skipped; one refused with a penalty refuses the
    /// frame. A frame of late orders only is refused with the first one's reason, so it is
    /// neither forwarded nor penalised. Returns the orders on time, each with its digest, and
    /// the first late order's reason.
    fn check_orders(
        &mut self,
        cert: &Signed<MembershipCert>,
        member: PublicKey,
        orders: &[(Signed<Order>, Hash)],
        now: Timestamp,
    ) -> Result<ScreenedOrders, GossipReject> {
        if orders.iter().any(|(o, _)| *o.signer() != member) {
            return Err(GossipReject::NotMember);
        }
        let mut late = None;
        let mut on_time = Vec::with_capacity(orders.len());
        for (order, digest) in orders {
            match check_order_terms(&self.community, self.skew_ms, order, now).map_err(GossipReject::Rule) {
                Ok(()) => on_time.push((order.clone(), *digest)),
                Err(reject) if reject.penalty() == Penalty::Ignore => {
                    late.get_or_insert(reject);
                }
                Err(reject) => return Err(reject),
            }
        }
        if on_time.is_empty() {
            return Err(late.unwrap_or_else(|| GossipReject::Malformed("a frame without orders".into())));
        }
        self.verify_cert(cert)?;
        Ok((self.verify_all(on_time)?, late))
    }

    /// Screens a frame from the trades topic (see [`GossipValidator::check_trades`]).
    pub fn screen_trades(&mut self, data: &[u8], now: Timestamp) -> Result<Vec<(Signed<Trade>, Hash)>, GossipReject> {
        match self.screen(Topic::Trades, data, now)? {
            Screened::Trades(trades) => Ok(trades),
            _ => Err(GossipReject::Malformed("not a trade frame".into())),
        }
    }

    /// Screens a frame from the heads topic (see [`GossipValidator::check_head`]).
    pub fn screen_head(&mut self, data: &[u8], now: Timestamp) -> Result<Signed<TreeHead>, GossipReject> {
        match self.screen(Topic::Heads, data, now)? {
            Screened::Head(head) => Ok(*head),
            _ => Err(GossipReject::Malformed("not a head frame".into())),
        }
    }

    /// Screens a frame from the orders topic and inserts its orders into `books` (the two
    /// stages of a node, in one call).
    pub fn accept_orders(
        &mut self,
        books: &mut Books,
        data: &[u8],
        now: Timestamp,
    ) -> Result<Vec<(Signed<Order>, Inserted)>, GossipReject> {
        let (orders, late) = self.screen_orders(data, now)?;
        insert_screened(books, orders, late, now)
    }

    /// Checks a frame from the trades topic: 1 to 16 trades announced by a party to each of
    /// them, with both signatures, for this community, within the tariffs. One bad trade
    /// refuses the frame: an honest node announces only trades it agreed.
    fn check_trades(
        &mut self,
        cert: &Signed<MembershipCert>,
        trades: &[(Signed<Trade>, Hash)],
    ) -> Result<Vec<(Signed<Trade>, Hash)>, GossipReject> {
        let announcer = cert.body().member;
        for (trade, _) in trades {
            check_trade_terms(&self.community, trade, &announcer)?;
        }
        self.verify_cert(cert)?;
        // Both signatures: the maker's on the trade, the taker's on the request inside.
        self.verify_all(trades.to_vec())
    }

    /// Checks a frame from the heads topic: a member's signed ledger tree head.
    fn check_head(
        &mut self,
        cert: &Signed<MembershipCert>,
        head: &Signed<TreeHead>,
        digest: Hash,
        now: Timestamp,
    ) -> Result<Signed<TreeHead>, GossipReject> {
        if cert.body().member != *head.signer() {
            return Err(GossipReject::NotMember);
        }
        if head.body().time.0 > now.0.saturating_add(self.skew_ms) {
            return Err(GossipReject::Rule(OrderReject::FromTheFuture(head.body().time.0 - now.0)));
        }
        self.verify_cert(cert)?;
        self.verify_signed(head, digest)?;
        Ok(head.clone())
    }

    /// Checks a frame from the statements topic: 1 to 16 meter statements, each signed by
    /// the certificate's member, for this community, of an interval that has ended (give or
    /// take the clock skew) and no older than [`STATEMENT_MAX_AGE_MS`] (an older one is
    /// ignored without penalty: gossip can be slow), covering no more than the interval.
    fn check_statements(
        &mut self,
        cert: &Signed<MembershipCert>,
        statements: &[DecodedStatement],
        now: Timestamp,
    ) -> Result<Vec<Stated>, GossipReject> {
        let member = cert.body().member;
        for (statement, _, _) in statements {
            if *statement.signer() != member {
                return Err(GossipReject::NotMember);
            }
            check_statement_terms(&self.community, self.skew_ms, statement.body(), now)?;
        }
        self.verify_cert(cert)?;
        let mut stated = Vec::with_capacity(statements.len());
        for (statement, digest, contracts) in statements {
            self.verify_signed(statement, *digest)?;
            stated.push(Stated::with_contracts(statement, *digest, Arc::clone(contracts)));
        }
        Ok(stated)
    }
}

/// A gossip frame decoded from its bytes: size, framing, and each message's decoding and
/// digest, the part of screening that needs neither the community nor the time. The nodes
/// of one process (the simulator's) decode a frame they all receive once
/// ([`GossipValidator::screen_decoded`]).
#[derive(Debug)]
pub struct DecodedFrame {
    cert: Signed<MembershipCert>,
    /// The messages, or why they do not decode (reported after the certificate's checks, as
    /// a node screening the bytes itself would).
    messages: Result<Messages, GossipReject>,
}

#[derive(Debug)]
enum Messages {
    Orders(Vec<(Signed<Order>, Hash)>),
    Trades(Vec<(Signed<Trade>, Hash)>),
    Head(Box<Signed<TreeHead>>, Hash),
    /// With each statement's contracts, shared by every receiver of a decoded frame.
    Statements(Vec<DecodedStatement>),
}

/// A decoded statement, its digest, and its contracts (shared by every receiver).
type DecodedStatement = (Signed<MeterStatement>, Hash, Arc<[Contracted]>);

/// The largest frame accepted on `topic`.
pub fn max_frame(topic: Topic) -> usize {
    match topic {
        Topic::Orders => MAX_ORDER_FRAME,
        Topic::Trades => MAX_TRADE_FRAME,
        Topic::Heads => MAX_HEAD_FRAME,
        Topic::Statements => MAX_STATEMENT_FRAME,
    }
}

/// Decodes a frame that arrived on `topic` (see [`DecodedFrame`]).
pub fn decode_frame(topic: Topic, data: &[u8]) -> Result<DecodedFrame, GossipReject> {
    if data.len() > max_frame(topic) {
        return Err(GossipReject::Oversized(data.len()));
    }
    let frame = GossipFrame::from_bytes(data).map_err(|e| GossipReject::Malformed(e.to_string()))?;
    let messages = match topic {
        Topic::Orders => decode_all(&frame).map(Messages::Orders),
        Topic::Trades => decode_all(&frame).map(Messages::Trades),
        Topic::Statements => decode_all::<MeterStatement>(&frame).map(|all| {
            Messages::Statements(
                all.into_iter()
                    .map(|(s, d)| {
                        let contracts = Arc::from(s.body().contracts.as_slice());
                        (s, d, contracts)
                    })
                    .collect(),
            )
        }),
        Topic::Heads => match frame.messages.as_slice() {
            [message] => Signed::<TreeHead>::from_bytes_with_digest(message)
                .map(|(head, digest)| Messages::Head(Box::new(head), digest))
                .map_err(|e| GossipReject::Malformed(e.to_string())),
            _ => Err(GossipReject::Malformed("a batch on a topic of single messages".into())),
        },
    };
    Ok(DecodedFrame { cert: frame.cert, messages })
}

/// The frame's messages, decoded, each with its digest (of the bytes as they came: the
/// encoding is canonical, so nothing is encoded again to hash it).
fn decode_all<T: Message>(frame: &GossipFrame) -> Result<Vec<(Signed<T>, Hash)>, GossipReject> {
    frame
        .messages
        .iter()
        .map(|m| Signed::<T>::from_bytes_with_digest(m).map_err(|e| GossipReject::Malformed(e.to_string())))
        .collect()
}
/// Inserts screened orders into `books`, in the frame's order. A replay (the maker's newer
/// order for the interval came first) is skipped like a late order; a frame whose every order
/// was skipped is refused with the first reason, without penalty.
pub fn insert_screened(
    books: &mut Books,
    orders: Vec<(Signed<Order>, Hash)>,
    mut late: Option<GossipReject>,
    now: Timestamp,
) -> Result<Vec<(Signed<Order>, Inserted)>, GossipReject> {
    let mut inserted = Vec::with_capacity(orders.len());
    for (order, digest) in orders {
        match books.insert_with_id(&order, digest, now) {
            Ok(i) => inserted.push((order, i)),
            Err(reject) => {
                late.get_or_insert(GossipReject::Rule(reject));
            }
        }
    }
    match late {
        Some(reject) if inserted.is_empty() => Err(reject),
        _ => Ok(inserted),
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
    let in_force = community.terms_at(terms.interval);
    if terms.price < in_force.feed_in || terms.price > in_force.retail {
        return Err(GossipReject::TradeTerms(OrderReject::PriceOutOfRange {
            price: terms.price,
            feed_in: in_force.feed_in,
            retail: in_force.retail,
        }));
    }
    Ok(())
}

/// How long after its interval ended a meter statement is still taken from gossip, and kept:
/// six hours (settlement happens well within it; a correction made later is in its signer's
/// ledger for the audit, and settlements already made are not redone for it).
pub const STATEMENT_MAX_AGE_MS: u64 = 6 * 3_600_000;

/// The checks of a meter statement that need no signature: this community, an interval that
/// has ended (within `skew_ms`), not older than [`STATEMENT_MAX_AGE_MS`] (ignored), and no
/// more coverage than the interval has.
pub fn check_statement_terms(
    community: &Community,
    skew_ms: u64,
    statement: &MeterStatement,
    now: Timestamp,
) -> Result<(), GossipReject> {
    if statement.community != community.id {
        return Err(GossipReject::WrongCommunity);
    }
    let end = community.interval.start(statement.interval).0.saturating_add(community.interval.millis());
    if end > now.0.saturating_add(skew_ms) {
        return Err(GossipReject::Rule(OrderReject::FromTheFuture(end - now.0)));
    }
    if now.0.saturating_sub(end) > STATEMENT_MAX_AGE_MS {
        return Err(GossipReject::Rule(OrderReject::Expired));
    }
    if u64::from(statement.figures.covered_ms) > community.interval.millis() {
        return Err(GossipReject::Malformed(format!(
            "{} ms covered in an interval of {} ms",
            statement.figures.covered_ms,
            community.interval.millis()
        )));
    }
    Ok(())
}
