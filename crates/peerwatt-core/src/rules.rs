//! A community's rules under its admin's signature (docs/protocol.md, "Community rules").
//!
//! Every parameter that matching, settlement and sharing depend on is in a
//! [`CommunityRules`] the admin signs: the interval, gate closure and horizon, the tariffs
//! (which bound every price), the sharing rule and its price, and the bootstrap addresses. A
//! change is a new version, signed again, that takes effect from a given interval; every
//! node and the auditor apply to each interval the version in force for it
//! ([`crate::Community::terms_at`]), and a node refuses an order made under another version.
//! A community file edited by hand no longer matches what the admin signed and is refused.

use crate::community::Sharing;
use crate::encoding::{Decode, DecodeError, Encode, Reader, Writer};
use crate::envelope::{Kind, Message};
use crate::messages::CommunityId;
use crate::time::{IntervalId, Timestamp};
use crate::units::Price;

/// Most bootstrap addresses one version lists.
pub const MAX_BOOTSTRAP: usize = 16;
/// Longest bootstrap address, bytes.
pub const MAX_ADDRESS_LEN: usize = 256;

/// One version of a community's rules, signed by its admin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommunityRules {
    /// The community.
    pub community: CommunityId,
    /// 1 for the first version; each change counts up.
    pub version: u32,
    /// The first interval the version applies to (0 for version 1).
    pub effective_from: IntervalId,
    /// Settlement interval length, seconds (the same in every version).
    pub interval_secs: u32,
    /// Trading for an interval closes this many seconds before it starts.
    pub gate_closure_secs: u32,
    /// Trading opens this many intervals ahead.
    pub horizon: u32,
    /// What the grid pays for export: the lowest price anyone trades at.
    pub feed_in: Price,
    /// What the grid charges for import: the highest price anyone trades at.
    pub retail: Price,
    /// How what contracts missed is shared.
    pub sharing: Sharing,
    /// Multiaddresses of nodes to connect to first.
    pub bootstrap: Vec<String>,
    /// When the admin signed it.
    pub created_at: Timestamp,
}

impl Encode for CommunityRules {
    fn encode(&self, w: &mut Writer) {
        w.put(&self.community).u32(self.version).put(&self.effective_from);
        w.u32(self.interval_secs).u32(self.gate_closure_secs).u32(self.horizon);
        w.put(&self.feed_in).put(&self.retail);
        let (tag, price) = match self.sharing {
            Sharing::Off => (0, 0),
            Sharing::ProRata => (1, 0),
            Sharing::ProRataAt(p) => (2, p.0),
        };
        w.u8(tag).u64(price);
        w.u8(u8::try_from(self.bootstrap.len()).unwrap_or(u8::MAX));
        for address in &self.bootstrap {
            w.str(address);
        }
        w.put(&self.created_at);
    }
}

impl Decode for CommunityRules {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let (community, version, effective_from) = (r.get()?, r.u32("rules version")?, r.get()?);
        let (interval_secs, gate_closure_secs, horizon) =
            (r.u32("interval seconds")?, r.u32("gate closure seconds")?, r.u32("horizon")?);
        let (feed_in, retail) = (r.get()?, r.get()?);
        let sharing = match (r.u8("sharing rule")?, r.u64("sharing price")?) {
            (0, 0) => Sharing::Off,
            (1, 0) => Sharing::ProRata,
            (2, price) => Sharing::ProRataAt(Price(price)),
            _ => return Err(DecodeError::Invalid { what: "community rules", why: "an unknown sharing rule" }),
        };
        let count = usize::from(r.u8("bootstrap count")?);
        if count > MAX_BOOTSTRAP {
            return Err(DecodeError::Invalid { what: "community rules", why: "more than 16 bootstrap addresses" });
        }
        let bootstrap = (0..count)
            .map(|_| r.str(MAX_ADDRESS_LEN, "bootstrap address").map(str::to_owned))
            .collect::<Result<_, _>>()?;
        Ok(CommunityRules {
            community,
            version,
            effective_from,
            interval_secs,
            gate_closure_secs,
            horizon,
            feed_in,
            retail,
            sharing,
            bootstrap,
            created_at: r.get()?,
        })
    }
}

impl Message for CommunityRules {
    const MAX_BODY: usize = 4_400;
    fn kind(&self) -> Kind {
        Kind::CommunityRules
    }
}

/// The terms in force for an interval: the version and what prices and settlement follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Terms {
    /// The rules version (0: a community without signed rules, as tests build them).
    pub version: u32,
    /// The feed-in tariff: the lowest price.
    pub feed_in: Price,
    /// The retail tariff: the highest price.
    pub retail: Price,
    /// The sharing rule.
    pub sharing: Sharing,
}

impl Terms {
    /// The price of energy shared ex post: the rule's own, or the midpoint of the tariffs
    /// (rounded down).
    pub fn sharing_price(&self) -> Price {
        match self.sharing {
            Sharing::ProRataAt(price) => price,
            Sharing::Off | Sharing::ProRata => {
                Price(self.feed_in.0 + (self.retail.0 - self.feed_in.0.min(self.retail.0)) / 2)
            }
        }
    }
}
