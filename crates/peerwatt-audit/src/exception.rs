//! What an audit can find: one place for every check's name and what its exceptions carry
//! (as `GossipReject` is for gossip refusals).

use serde::Serialize;

/// A check whose failure is an exception.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Check {
    /// A ledger does not verify (signatures, hash chain, its own signed heads, framing).
    LedgerInvalid,
    /// A verified entry records something it must not: a message that does not decode or
    /// verify, signed by someone else, or a trade the ledger's owner is not party to.
    EntryInvalid,
    /// Two ledgers of one node that are not one history.
    LedgerForked,
    /// A trade is in one party's ledger but not in the other's.
    TradeOneSided,
    /// The two parties hold different bytes for one trade.
    TradeDiffers,
    /// Two different statements of one node, interval and revision.
    StatementEquivocation,
    /// A settlement does not recompute from the signed statements and trades.
    SettlementMismatch,
    /// A settlement recomputes from the statements its node had read, but later statements
    /// change it and it was never redone.
    SettlementStale,
    /// The two parties settle one trade differently.
    SettlementDisagrees,
    /// A settlement delivers or shares more energy than its node's statement says was metered.
    BeyondMetered,
    /// A trade is settled more than once.
    DeliveredTwice,
    /// A trade its node should have settled by now is in no settlement.
    TradeUnsettled,
    /// Two signed tree heads of one node that cannot both be true.
    EquivocatingHeads,
    /// A node's ledger ends before a tree head it signed.
    LedgerCutShort,
    /// A statement disagrees with the official meter data beyond the tolerance.
    StatementOffMeterData,
    /// A zone traded more in an interval than its limit.
    ZoneOverLimit,
    /// A message of another community.
    WrongCommunity,
}

impl Check {
    /// Every check, in report order.
    pub const ALL: [Check; 17] = [
        Check::LedgerInvalid,
        Check::EntryInvalid,
        Check::LedgerForked,
        Check::TradeOneSided,
        Check::TradeDiffers,
        Check::StatementEquivocation,
        Check::SettlementMismatch,
        Check::SettlementStale,
        Check::SettlementDisagrees,
        Check::BeyondMetered,
        Check::DeliveredTwice,
        Check::TradeUnsettled,
        Check::EquivocatingHeads,
        Check::LedgerCutShort,
        Check::StatementOffMeterData,
        Check::ZoneOverLimit,
        Check::WrongCommunity,
    ];

    /// Its name in reports (`exceptions.csv`, `audit.json`).
    pub fn name(self) -> &'static str {
        match self {
            Check::LedgerInvalid => "ledger-invalid",
            Check::EntryInvalid => "entry-invalid",
            Check::LedgerForked => "ledger-forked",
            Check::TradeOneSided => "trade-one-sided",
            Check::TradeDiffers => "trade-differs",
            Check::StatementEquivocation => "statement-equivocation",
            Check::SettlementMismatch => "settlement-mismatch",
            Check::SettlementStale => "settlement-stale",
            Check::SettlementDisagrees => "settlement-disagrees",
            Check::BeyondMetered => "beyond-metered",
            Check::DeliveredTwice => "delivered-twice",
            Check::TradeUnsettled => "trade-unsettled",
            Check::EquivocatingHeads => "equivocating-heads",
            Check::LedgerCutShort => "ledger-cut-short",
            Check::StatementOffMeterData => "statement-off-meter-data",
            Check::ZoneOverLimit => "zone-over-limit",
            Check::WrongCommunity => "wrong-community",
        }
    }
}

/// A piece of evidence: what it is and its bytes (a signed message, hex) or a place.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Evidence {
    /// What it is, e.g. "signed tree head witnessed in the ledger of 12D3KooW…".
    pub what: String,
    /// The signed bytes, hex (empty when the evidence is a place in a ledger).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub hex: String,
}

/// One exception: a check that failed, where, and what was expected and observed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Exception {
    /// The check.
    pub check: Check,
    /// The node concerned (peer id), if one.
    pub node: Option<String>,
    /// The interval concerned, if one.
    pub interval: Option<u64>,
    /// The trade concerned (digest, hex), if one.
    pub trade: Option<String>,
    /// What the check expected.
    pub expected: String,
    /// What it found.
    pub observed: String,
    /// The evidence.
    pub evidence: Vec<Evidence>,
}

impl Exception {
    /// An exception of `check` with nothing located yet.
    pub fn new(check: Check, expected: impl Into<String>, observed: impl Into<String>) -> Exception {
        Exception {
            check,
            node: None,
            interval: None,
            trade: None,
            expected: expected.into(),
            observed: observed.into(),
            evidence: Vec::new(),
        }
    }

    /// Located at `node`.
    pub fn node(mut self, node: impl ToString) -> Exception {
        self.node = Some(node.to_string());
        self
    }

    /// Located at `interval`.
    pub fn interval(mut self, interval: peerwatt_core::IntervalId) -> Exception {
        self.interval = Some(interval.0);
        self
    }

    /// About `trade`.
    pub fn trade(mut self, trade: &peerwatt_core::Hash) -> Exception {
        self.trade = Some(trade.to_hex());
        self
    }

    /// With a piece of evidence.
    pub fn evidence(mut self, what: impl Into<String>, bytes: &[u8]) -> Exception {
        self.evidence.push(Evidence { what: what.into(), hex: peerwatt_core::keys::hex_encode(bytes) });
        self
    }
}
