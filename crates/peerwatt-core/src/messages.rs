//! The protocol's signed message types. Each travels in a [`Signed`] envelope; their byte
//! layouts are listed in `docs/protocol.md` with test vectors.

use crate::encoding::{Decode, DecodeError, Encode, Reader, Writer};
use crate::envelope::{EnvelopeError, Kind, Message, Signed};
use crate::hash::Hash;
use crate::keys::PublicKey;
use crate::time::{IntervalId, Timestamp};
use crate::units::{Money, Price, Wh};

/// Longest member display name, in bytes of UTF-8.
pub const MAX_NAME_LEN: usize = 64;
/// Longest grid zone name, in bytes of UTF-8.
pub const MAX_ZONE_LEN: usize = 32;
/// Largest ledger entry payload.
pub const MAX_ENTRY_PAYLOAD: usize = 64 * 1024;

/// Identifies a community (fixed when the community is created).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct CommunityId(pub Hash);

impl Encode for CommunityId {
    fn encode(&self, w: &mut Writer) {
        w.put(&self.0);
    }
}

impl Decode for CommunityId {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(CommunityId(r.get()?))
    }
}

/// Which way an order trades (ordered by tag: sell first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum Side {
    /// Selling surplus energy (an offer).
    Sell = 1,
    /// Buying energy (a bid).
    Buy = 2,
}

impl Side {
    /// The other side.
    pub fn opposite(self) -> Side {
        match self {
            Side::Sell => Side::Buy,
            Side::Buy => Side::Sell,
        }
    }
}

impl Encode for Side {
    fn encode(&self, w: &mut Writer) {
        w.u8(*self as u8);
    }
}

impl Decode for Side {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        match r.u8("side")? {
            1 => Ok(Side::Sell),
            2 => Ok(Side::Buy),
            tag => Err(DecodeError::UnknownTag { what: "side", tag }),
        }
    }
}

/// An order: an Offer (sell) or a Bid (buy) for energy in one interval. The maker is the
/// envelope's signer; its envelope kind is `offer` or `bid` according to `side`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    /// The community whose market this is.
    pub community: CommunityId,
    /// Sell (offer) or buy (bid).
    pub side: Side,
    /// The delivery interval.
    pub interval: IntervalId,
    /// How much energy, at most.
    pub energy: Wh,
    /// The order's price at `created_at`. From there the price moves in a straight line to
    /// `limit_price` at `expires_at` (see [`Order::price_at`]); equal to it: a fixed price.
    pub start_price: Price,
    /// The worst price the maker accepts: the price at `expires_at`.
    pub limit_price: Price,
    /// The maker's order sequence number; strictly increasing per maker (replay protection).
    pub seq: u64,
    /// When the maker created it.
    pub created_at: Timestamp,
    /// After this the order is void.
    pub expires_at: Timestamp,
    /// The version of the community's rules the maker made it under (0 for a community
    /// without signed rules): a node refuses an order made under other rules than those in
    /// force for its interval.
    pub rules: u32,
}

impl Encode for Order {
    fn encode(&self, w: &mut Writer) {
        w.put(&self.community)
            .put(&self.side)
            .put(&self.interval)
            .put(&self.energy)
            .put(&self.start_price)
            .put(&self.limit_price)
            .u64(self.seq)
            .put(&self.created_at)
            .put(&self.expires_at)
            .u32(self.rules);
    }
}

impl Decode for Order {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Order {
            community: r.get()?,
            side: r.get()?,
            interval: r.get()?,
            energy: r.get()?,
            start_price: r.get()?,
            limit_price: r.get()?,
            seq: r.u64("order seq")?,
            created_at: r.get()?,
            expires_at: r.get()?,
            rules: r.u32("rules version")?,
        })
    }
}

impl Order {
    /// The order's price at `t`: `start_price` until `created_at`, then a straight line to
    /// `limit_price` at `expires_at`, and the limit after. Integer arithmetic, rounded toward
    /// the start price (in the maker's favour), so every node computes the same price.
    ///
    /// Why the order carries its curve: the default strategy moves its price along a line
    /// through the trading window anyway. With the line signed once, every member knows every
    /// order's price at every moment and sees a crossing the moment it happens, without a
    /// re-pricing message per step, which every member would have to receive, check and relay.
    pub fn price_at(&self, t: Timestamp) -> Price {
        if t <= self.created_at || self.start_price == self.limit_price {
            return self.start_price;
        }
        if t >= self.expires_at {
            return self.limit_price;
        }
        let span = u128::from(self.expires_at.0 - self.created_at.0);
        let elapsed = u128::from(t.0 - self.created_at.0);
        let (start, limit) = (self.start_price.0, self.limit_price.0);
        // |limit − start| × elapsed / span < |limit − start|, so the step fits in a u64.
        let step = u64::try_from(u128::from(start.abs_diff(limit)) * elapsed / span).unwrap_or(u64::MAX);
        Price(if limit < start { start.saturating_sub(step) } else { start.saturating_add(step) })
    }

    /// Whether the curve moves toward the maker's worst price (a seller's price falls, a
    /// buyer's rises) or stays: the only direction a maker may sign.
    pub fn curve_concedes(&self) -> bool {
        match self.side {
            Side::Sell => self.start_price >= self.limit_price,
            Side::Buy => self.start_price <= self.limit_price,
        }
    }
}

impl Message for Order {
    const MAX_BODY: usize = 256;
    fn kind(&self) -> Kind {
        match self.side {
            Side::Sell => Kind::Offer,
            Side::Buy => Kind::Bid,
        }
    }
}

/// A taker's request to trade against a maker's order, signed by the taker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TradeRequest {
    /// The community whose market this is.
    pub community: CommunityId,
    /// The digest of the maker's signed order envelope.
    pub order: Hash,
    /// The order's maker, who must countersign.
    pub maker: PublicKey,
    /// The maker's side; the taker is on the other.
    pub maker_side: Side,
    /// The delivery interval (as in the order).
    pub interval: IntervalId,
    /// How much energy the taker wants to trade.
    pub energy: Wh,
    /// The price: the maker's limit price.
    pub price: Price,
    /// The taker's request number; unique per taker, so a request is never executed twice.
    pub request_seq: u64,
    /// When the taker made the request.
    pub created_at: Timestamp,
}

impl Encode for TradeRequest {
    fn encode(&self, w: &mut Writer) {
        w.put(&self.community)
            .put(&self.order)
            .put(&self.maker)
            .put(&self.maker_side)
            .put(&self.interval)
            .put(&self.energy)
            .put(&self.price)
            .u64(self.request_seq)
            .put(&self.created_at);
    }
}

impl Decode for TradeRequest {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(TradeRequest {
            community: r.get()?,
            order: r.get()?,
            maker: r.get()?,
            maker_side: r.get()?,
            interval: r.get()?,
            energy: r.get()?,
            price: r.get()?,
            request_seq: r.u64("request seq")?,
            created_at: r.get()?,
        })
    }
}

impl Message for TradeRequest {
    const MAX_BODY: usize = 256;
    fn kind(&self) -> Kind {
        Kind::TradeRequest
    }
}

/// An agreed trade: the taker's signed request, countersigned by the maker (the envelope
/// signer). No trade exists without both signatures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trade {
    /// The taker's signed request; its terms are the trade's terms.
    pub request: Signed<TradeRequest>,
    /// When the maker accepted (and durably recorded) it.
    pub accepted_at: Timestamp,
}

impl Trade {
    /// The seller's key.
    pub fn seller(&self) -> &PublicKey {
        self.party(Side::Sell)
    }

    /// The buyer's key.
    pub fn buyer(&self) -> &PublicKey {
        self.party(Side::Buy)
    }

    fn party(&self, side: Side) -> &PublicKey {
        let terms = self.request.body();
        if terms.maker_side == side { &terms.maker } else { self.request.signer() }
    }
}

impl Encode for Trade {
    fn encode(&self, w: &mut Writer) {
        w.put(&self.request).put(&self.accepted_at);
    }
}

impl Decode for Trade {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Trade { request: r.get()?, accepted_at: r.get()? })
    }
}

impl Message for Trade {
    const MAX_BODY: usize = 512;
    fn kind(&self) -> Kind {
        Kind::Trade
    }
    fn verify_nested(&self, signer: &PublicKey) -> Result<(), EnvelopeError> {
        if *signer != self.request.body().maker {
            return Err(EnvelopeError::Nested("trade is not signed by the order's maker"));
        }
        if self.request.signer() == signer {
            return Err(EnvelopeError::Nested("maker and taker are the same node"));
        }
        self.request.verify()
    }
}

/// Longest meter payload format name in a meter statement, in bytes of UTF-8.
pub const MAX_FORMAT_LEN: usize = 32;

/// How a meter statement's energy was measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum MeterMethod {
    /// Differences of the meter's cumulative import and export counters (what a bill uses).
    Counters = 1,
    /// The integral of instantaneous power over time (meters without counters).
    Power = 2,
}

impl MeterMethod {
    /// A short lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            MeterMethod::Counters => "counters",
            MeterMethod::Power => "power",
        }
    }
}

impl Encode for MeterMethod {
    fn encode(&self, w: &mut Writer) {
        w.u8(*self as u8);
    }
}

impl Decode for MeterMethod {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        match r.u8("meter method")? {
            1 => Ok(MeterMethod::Counters),
            2 => Ok(MeterMethod::Power),
            tag => Err(DecodeError::UnknownTag { what: "meter method", tag }),
        }
    }
}

/// What a meter measured in one interval: the figures a meter statement states.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeterFigures {
    /// Energy imported from the grid during the interval.
    pub imported: Wh,
    /// Energy exported to the grid during the interval.
    pub exported: Wh,
    /// Milliseconds of the interval covered by readings (of the least-covered channel).
    pub covered_ms: u32,
    /// True if readings covered the whole interval.
    pub complete: bool,
    /// How the energy was measured.
    pub method: MeterMethod,
    /// The meter payload format the readings came in (e.g. `tasmota`; at most
    /// [`MAX_FORMAT_LEN`] bytes).
    pub format: String,
}

impl Encode for MeterFigures {
    fn encode(&self, w: &mut Writer) {
        w.put(&self.imported)
            .put(&self.exported)
            .u32(self.covered_ms)
            .bool(self.complete)
            .put(&self.method)
            .str(&self.format);
    }
}

impl Decode for MeterFigures {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(MeterFigures {
            imported: r.get()?,
            exported: r.get()?,
            covered_ms: r.u32("covered ms")?,
            complete: r.bool("complete")?,
            method: r.get()?,
            format: r.str(MAX_FORMAT_LEN, "meter format")?.to_owned(),
        })
    }
}

/// What a node's meter measured in one settlement interval, signed by the node. A node states
/// each interval once; a later correction is a new statement with a higher `revision`, which
/// supersedes the earlier ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeterStatement {
    /// The community.
    pub community: CommunityId,
    /// The interval measured.
    pub interval: IntervalId,
    /// 0 for the first statement of the interval; each correction counts up.
    pub revision: u32,
    /// What the meter measured.
    pub figures: MeterFigures,
    /// The energy this node contracted for the interval, per counterparty and side, in
    /// ascending order of counterparty key then side (at most [`MAX_CONTRACTS`]): what
    /// settlement delivers against the figures.
    pub contracts: Vec<Contracted>,
    /// When the statement was made.
    pub created_at: Timestamp,
}

/// Most counterparty entries one meter statement lists.
pub const MAX_CONTRACTS: usize = 40;

/// The energy a node contracted with one counterparty on one side in an interval (the sum of
/// their trades), as its meter statement lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Contracted {
    /// The counterparty's key bytes.
    pub counterparty: [u8; 32],
    /// The stating node's side: `Sell` if it sold to the counterparty.
    pub side: Side,
    /// The energy, more than 0.
    pub energy: Wh,
}

impl Encode for Contracted {
    fn encode(&self, w: &mut Writer) {
        w.raw(&self.counterparty).put(&self.side).put(&self.energy);
    }
}

impl Decode for Contracted {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Contracted { counterparty: r.array("counterparty")?, side: r.get()?, energy: r.get()? })
    }
}

impl Encode for MeterStatement {
    fn encode(&self, w: &mut Writer) {
        w.put(&self.community).put(&self.interval).u32(self.revision).put(&self.figures);
        w.u8(u8::try_from(self.contracts.len()).unwrap_or(u8::MAX));
        for c in &self.contracts {
            w.put(c);
        }
        w.put(&self.created_at);
    }
}

impl Decode for MeterStatement {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let (community, interval, revision, figures) = (r.get()?, r.get()?, r.u32("revision")?, r.get()?);
        let count = usize::from(r.u8("contract count")?);
        if count > MAX_CONTRACTS {
            return Err(DecodeError::Invalid { what: "meter statement", why: "more than 40 contracts" });
        }
        let contracts: Vec<Contracted> = (0..count).map(|_| r.get()).collect::<Result<_, _>>()?;
        if contracts.iter().any(|c| c.energy.0 == 0) {
            return Err(DecodeError::Invalid { what: "meter statement", why: "a contract of 0 Wh" });
        }
        if contracts.windows(2).any(|w| (w[0].counterparty, w[0].side) >= (w[1].counterparty, w[1].side)) {
            return Err(DecodeError::Invalid {
                what: "meter statement",
                why: "contracts not in ascending order of counterparty and side",
            });
        }
        Ok(MeterStatement { community, interval, revision, figures, contracts, created_at: r.get()? })
    }
}

impl Message for MeterStatement {
    const MAX_BODY: usize = 1800;
    fn kind(&self) -> Kind {
        Kind::MeterStatement
    }
}

/// Most trades one settlement lists.
pub const MAX_SETTLED_TRADES: usize = 512;

/// One of a node's trades as its settlement delivered it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SettledTrade {
    /// The signed trade's digest.
    pub trade: Hash,
    /// The counterparty's key bytes.
    pub counterparty: [u8; 32],
    /// The settling node's side.
    pub side: Side,
    /// The energy contracted.
    pub energy: Wh,
    /// The trade price.
    pub price: Price,
    /// The energy delivered under it.
    pub delivered: Wh,
    /// What the buyer pays the seller for it: the delivered energy at the trade price.
    pub money: Money,
}

impl Encode for SettledTrade {
    fn encode(&self, w: &mut Writer) {
        w.put(&self.trade)
            .raw(&self.counterparty)
            .put(&self.side)
            .put(&self.energy)
            .put(&self.price)
            .put(&self.delivered)
            .put(&self.money);
    }
}

impl Decode for SettledTrade {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(SettledTrade {
            trade: r.get()?,
            counterparty: r.array("counterparty")?,
            side: r.get()?,
            energy: r.get()?,
            price: r.get()?,
            delivered: r.get()?,
            money: r.get()?,
        })
    }
}

/// A node's settlement of one interval, signed by the node and kept in its ledger: its
/// trades delivered against the members' signed meter statements, its share of what the
/// contracts missed, and the rest at the grid's tariffs (docs/settlement.md). A later
/// revision, made when statements arrived or changed, supersedes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settlement {
    /// The community.
    pub community: CommunityId,
    /// The interval settled.
    pub interval: IntervalId,
    /// 0 for the first settlement of the interval; each redo counts up.
    pub revision: u32,
    /// Whether every counterparty's statement was in (otherwise provisional).
    pub complete: bool,
    /// The digest of this node's own statement settled against.
    pub statement: Hash,
    /// How many members' statements the settlement read (this node's included).
    pub members: u32,
    /// The digest of those statements: SHA-256 over their digests in ascending order of
    /// member key.
    pub inputs: Hash,
    /// The node's own metered import.
    pub imported: Wh,
    /// The node's own metered export.
    pub exported: Wh,
    /// Every trade of the node in the interval (at most [`MAX_SETTLED_TRADES`]).
    pub trades: Vec<SettledTrade>,
    /// Imported energy the community's ex-post sharing allotted to this node.
    pub shared_import: Wh,
    /// Exported energy the sharing took from this node.
    pub shared_export: Wh,
    /// The price of shared energy.
    pub sharing_price: Price,
    /// Import left to the grid.
    pub grid_import: Wh,
    /// Export left to the grid.
    pub grid_export: Wh,
    /// The grid's retail tariff applied.
    pub retail: Price,
    /// The grid's feed-in tariff applied.
    pub feed_in: Price,
    /// What the interval costs the node in all (negative: it earned).
    pub cost: Money,
    /// What it would have cost with the grid alone.
    pub baseline: Money,
    /// When the settlement was made.
    pub created_at: Timestamp,
}

impl Encode for Settlement {
    fn encode(&self, w: &mut Writer) {
        w.put(&self.community).put(&self.interval).u32(self.revision).bool(self.complete);
        w.put(&self.statement).u32(self.members).put(&self.inputs).put(&self.imported).put(&self.exported);
        w.u16(u16::try_from(self.trades.len()).unwrap_or(u16::MAX));
        for t in &self.trades {
            w.put(t);
        }
        w.put(&self.shared_import).put(&self.shared_export).put(&self.sharing_price);
        w.put(&self.grid_import).put(&self.grid_export).put(&self.retail).put(&self.feed_in);
        w.put(&self.cost).put(&self.baseline).put(&self.created_at);
    }
}

impl Decode for Settlement {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let (community, interval, revision, complete) = (r.get()?, r.get()?, r.u32("revision")?, r.bool("complete")?);
        let (statement, members, inputs) = (r.get()?, r.u32("members")?, r.get()?);
        let (imported, exported) = (r.get()?, r.get()?);
        let count = usize::from(r.u16("trade count")?);
        if count > MAX_SETTLED_TRADES {
            return Err(DecodeError::Invalid { what: "settlement", why: "more than 512 trades" });
        }
        let trades = (0..count).map(|_| r.get()).collect::<Result<_, _>>()?;
        Ok(Settlement {
            community,
            interval,
            revision,
            complete,
            statement,
            members,
            inputs,
            imported,
            exported,
            trades,
            shared_import: r.get()?,
            shared_export: r.get()?,
            sharing_price: r.get()?,
            grid_import: r.get()?,
            grid_export: r.get()?,
            retail: r.get()?,
            feed_in: r.get()?,
            cost: r.get()?,
            baseline: r.get()?,
            created_at: r.get()?,
        })
    }
}

impl Message for Settlement {
    const MAX_BODY: usize = 256 + MAX_SETTLED_TRADES * 97;
    fn kind(&self) -> Kind {
        Kind::Settlement
    }
}

/// A signed head of a node's ledger Merkle tree: "my log had `size` entries with this root".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TreeHead {
    /// Number of entries covered.
    pub size: u64,
    /// RFC 9162 Merkle tree hash of those entries.
    pub root: Hash,
    /// When the head was signed.
    pub time: Timestamp,
}

impl Encode for TreeHead {
    fn encode(&self, w: &mut Writer) {
        w.u64(self.size).put(&self.root).put(&self.time);
    }
}

impl Decode for TreeHead {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(TreeHead { size: r.u64("tree size")?, root: r.get()?, time: r.get()? })
    }
}

impl Message for TreeHead {
    const MAX_BODY: usize = 64;
    fn kind(&self) -> Kind {
        Kind::TreeHead
    }
}

/// A community admin's certificate that a node is a member, signed by the admin key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MembershipCert {
    /// The community.
    pub community: CommunityId,
    /// The admitted node's key.
    pub member: PublicKey,
    /// A display name (at most [`MAX_NAME_LEN`] bytes).
    pub name: String,
    /// The member's grid zone (at most [`MAX_ZONE_LEN`] bytes).
    pub zone: String,
    /// Valid from this time (inclusive).
    pub valid_from: Timestamp,
    /// Valid until this time (exclusive).
    pub valid_until: Timestamp,
}

impl MembershipCert {
    /// Whether the certificate is in force at `t`.
    pub fn is_valid_at(&self, t: Timestamp) -> bool {
        self.valid_from <= t && t < self.valid_until
    }
}

impl Encode for MembershipCert {
    fn encode(&self, w: &mut Writer) {
        w.put(&self.community)
            .put(&self.member)
            .str(&self.name)
            .str(&self.zone)
            .put(&self.valid_from)
            .put(&self.valid_until);
    }
}

impl Decode for MembershipCert {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(MembershipCert {
            community: r.get()?,
            member: r.get()?,
            name: r.str(MAX_NAME_LEN, "member name")?.to_owned(),
            zone: r.str(MAX_ZONE_LEN, "grid zone")?.to_owned(),
            valid_from: r.get()?,
            valid_until: r.get()?,
        })
    }
}

impl Message for MembershipCert {
    const MAX_BODY: usize = 256;
    fn kind(&self) -> Kind {
        Kind::MembershipCert
    }
}

/// What a ledger entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum EntryKind {
    /// The node published an order (payload: the signed order).
    OrderPublished = 1,
    /// A trade was agreed (payload: the signed trade).
    TradeAgreed = 2,
    /// The node's meter statement for an interval (payload: the signed statement).
    MeterStatement = 3,
    /// A settlement record.
    Settlement = 4,
    /// A tree head of another node that this node witnessed (payload: the signed head).
    WitnessedHead = 5,
    /// A configuration change of this node (payload: a description).
    ConfigChange = 6,
}

impl EntryKind {
    /// Every entry kind, in tag order.
    pub const ALL: [EntryKind; 6] = [
        EntryKind::OrderPublished,
        EntryKind::TradeAgreed,
        EntryKind::MeterStatement,
        EntryKind::Settlement,
        EntryKind::WitnessedHead,
        EntryKind::ConfigChange,
    ];

    /// A short lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            EntryKind::OrderPublished => "order-published",
            EntryKind::TradeAgreed => "trade-agreed",
            EntryKind::MeterStatement => "meter-statement",
            EntryKind::Settlement => "settlement",
            EntryKind::WitnessedHead => "witnessed-head",
            EntryKind::ConfigChange => "config-change",
        }
    }
}

impl Encode for EntryKind {
    fn encode(&self, w: &mut Writer) {
        w.u8(*self as u8);
    }
}

impl Decode for EntryKind {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let tag = r.u8("entry kind")?;
        EntryKind::ALL.into_iter().find(|k| *k as u8 == tag).ok_or(DecodeError::UnknownTag { what: "entry kind", tag })
    }
}

/// One entry of a node's append-only ledger, signed by the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerEntry {
    /// Position in the log, from 0.
    pub seq: u64,
    /// Hash of the previous entry (its Merkle leaf hash); zero for the first.
    pub prev: Hash,
    /// When it was appended.
    pub time: Timestamp,
    /// What it records.
    pub kind: EntryKind,
    /// The recorded bytes (usually a signed message).
    pub payload: Vec<u8>,
}

impl Encode for LedgerEntry {
    fn encode(&self, w: &mut Writer) {
        w.u64(self.seq).put(&self.prev).put(&self.time).put(&self.kind).bytes(&self.payload);
    }
}

impl Decode for LedgerEntry {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(LedgerEntry {
            seq: r.u64("entry seq")?,
            prev: r.get()?,
            time: r.get()?,
            kind: r.get()?,
            payload: r.bytes(MAX_ENTRY_PAYLOAD, "entry payload")?.to_vec(),
        })
    }
}

impl Message for LedgerEntry {
    const MAX_BODY: usize = MAX_ENTRY_PAYLOAD + 64;
    fn kind(&self) -> Kind {
        Kind::LedgerEntry
    }
}

/// The version byte of a [`GossipFrame`] with one message.
pub const GOSSIP_FRAME_VERSION: u8 = 1;
/// The version byte of a [`GossipFrame`] with several messages (a batch).
pub const GOSSIP_BATCH_VERSION: u8 = 2;
/// Largest signed message a gossip frame carries.
pub const MAX_GOSSIP_MESSAGE: usize = 2048;
/// Most messages one gossip frame carries.
pub const MAX_FRAME_MESSAGES: usize = 16;

/// What travels on a gossip topic: the sender's membership certificate and its signed
/// messages (orders on the orders topic, a trade on the trades topic, …). Carrying the
/// certificate makes every message checkable on arrival, with no race against a separate
/// certificate announcement. A node sends all its orders of one moment in one frame: every
/// frame costs each member of the community a receipt and a relay, whatever it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GossipFrame {
    /// The sender's certificate, signed by the community admin.
    pub cert: Signed<MembershipCert>,
    /// The signed messages (their envelope encodings), 1 to [`MAX_FRAME_MESSAGES`].
    pub messages: Vec<Vec<u8>>,
}

impl GossipFrame {
    /// A frame with one message.
    pub fn single(cert: Signed<MembershipCert>, message: Vec<u8>) -> GossipFrame {
        GossipFrame { cert, messages: vec![message] }
    }
}

impl Encode for GossipFrame {
    /// One message: version 1 (the original format). Several (at most [`MAX_FRAME_MESSAGES`],
    /// which the sender keeps to): version 2 with a count.
    fn encode(&self, w: &mut Writer) {
        match self.messages.as_slice() {
            [one] => {
                w.u8(GOSSIP_FRAME_VERSION).put(&self.cert).bytes(one);
            }
            many => {
                w.u8(GOSSIP_BATCH_VERSION).put(&self.cert).u8(many.len() as u8);
                for m in many {
                    w.bytes(m);
                }
            }
        }
    }
}

impl Decode for GossipFrame {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let version = r.u8("gossip frame version")?;
        let message = |r: &mut Reader<'_>| r.bytes(MAX_GOSSIP_MESSAGE, "gossip message").map(<[u8]>::to_vec);
        match version {
            GOSSIP_FRAME_VERSION => Ok(GossipFrame { cert: r.get()?, messages: vec![message(r)?] }),
            GOSSIP_BATCH_VERSION => {
                let cert = r.get()?;
                let count = usize::from(r.u8("gossip frame message count")?);
                // One message has exactly one encoding (version 1): a frame's id is its hash.
                if !(2..=MAX_FRAME_MESSAGES).contains(&count) {
                    return Err(DecodeError::Invalid { what: "gossip frame", why: "a batch carries 2 to 16 messages" });
                }
                let messages = (0..count).map(|_| message(r)).collect::<Result<_, _>>()?;
                Ok(GossipFrame { cert, messages })
            }
            version => Err(DecodeError::UnsupportedVersion { what: "gossip frame", version }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(start: u64, limit: u64) -> Order {
        Order {
            community: CommunityId(Hash([1; 32])),
            side: Side::Sell,
            interval: IntervalId(10),
            energy: Wh(100),
            start_price: Price(start),
            limit_price: Price(limit),
            seq: 1,
            created_at: Timestamp(1_000),
            expires_at: Timestamp(4_000),
            rules: 0,
        }
    }

    #[test]
    fn an_order_price_follows_its_signed_line_rounded_toward_the_start() {
        let o = offer(300_000, 80_000);
        assert_eq!(o.price_at(Timestamp(0)), Price(300_000), "before it was made: the start");
        assert_eq!(o.price_at(Timestamp(1_000)), Price(300_000));
        // A third of the way: 300,000 − 220,000 / 3 = 226,666.67, rounded up (toward the start).
        assert_eq!(o.price_at(Timestamp(2_000)), Price(226_667));
        assert_eq!(o.price_at(Timestamp(2_500)), Price(190_000), "halfway");
        assert_eq!(o.price_at(Timestamp(4_000)), Price(80_000), "at expiry: the limit");
        assert_eq!(o.price_at(Timestamp(9_000)), Price(80_000));
        let bid = Order { side: Side::Buy, start_price: Price(80_000), limit_price: Price(300_000), ..o.clone() };
        // A buyer's price rises; rounded down (toward the start).
        assert_eq!(bid.price_at(Timestamp(2_000)), Price(153_333));
        let fixed = offer(120_000, 120_000);
        assert_eq!(fixed.price_at(Timestamp(2_000)), Price(120_000));
    }

    #[test]
    fn only_a_curve_that_concedes_is_valid() {
        assert!(offer(300_000, 80_000).curve_concedes());
        assert!(offer(80_000, 80_000).curve_concedes());
        assert!(!offer(80_000, 300_000).curve_concedes(), "a seller whose price rises toward its limit");
        let bid = Order { side: Side::Buy, ..offer(300_000, 80_000) };
        assert!(!bid.curve_concedes(), "a buyer whose price falls toward its limit");
    }
}
