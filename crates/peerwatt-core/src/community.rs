//! A community: who administers it, how its market runs, and who is a member.
//!
//! The community id is derived from the admin key and the name
//! (`SHA-256("peerwatt/v1/community" || 00 || admin key || name)`), so a community file whose
//! id was edited, or that names another admin, is refused instead of silently trusted.

use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;

use crate::envelope::Signed;
use crate::hash::Hash;
use crate::keys::NodeKey;
use crate::keys::PublicKey;
use crate::messages::{CommunityId, MembershipCert};
use crate::rules::{CommunityRules, Terms};
use crate::time::{IntervalId, IntervalLength, Timestamp};
use crate::units::Price;

/// A community's parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Community {
    /// Display name.
    pub name: String,
    /// Its id (derived from `admin` and `name`).
    pub id: CommunityId,
    /// The admin key that signs membership certificates.
    pub admin: PublicKey,
    /// Settlement interval length.
    pub interval: IntervalLength,
    /// Trading for an interval closes this long before it starts.
    pub gate_closure: Duration,
    /// Trading for an interval opens this many intervals ahead.
    pub horizon: u32,
    /// What the grid pays for exported energy: the lowest price anyone trades at.
    pub feed_in: Price,
    /// What the grid charges for imported energy: the highest price anyone trades at.
    pub retail: Price,
    /// Multiaddresses of nodes to connect to first.
    pub bootstrap: Vec<String>,
    /// How what the members' contracts missed is shared after each interval.
    pub sharing: Sharing,
    /// The admin-signed versions of these rules, oldest first; the fields above are the
    /// latest version's. Empty for a community built in code without them (tests): then
    /// every interval is under version 0, the fields above. A community file must have them.
    pub rules: Arc<[Signed<CommunityRules>]>,
}

/// How a community shares, after an interval, the export and import its members' contracts
/// did not cover (docs/settlement.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Sharing {
    /// Not at all: it is the grid's, at its tariffs.
    Off,
    /// Remaining export matched with remaining import in proportion to each member's
    /// remainder (the "dynamic allocation key" of Austrian and Walloon energy communities).
    #[default]
    ProRata,
    /// As `ProRata`, at this price instead of the midpoint of the tariffs.
    ProRataAt(Price),
}

impl Sharing {
    /// Whether energy is shared at all.
    pub fn is_on(self) -> bool {
        !matches!(self, Sharing::Off)
    }
}

/// Why a community's parameters are refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CommunityError {
    /// The id does not belong to this admin and name.
    #[error("the community id does not match the admin key and name (expected {expected})")]
    IdMismatch {
        /// The id derived from admin and name.
        expected: String,
    },
    /// Feed-in above retail leaves no room to trade.
    #[error("the feed-in tariff ({feed_in}) is above the retail tariff ({retail})")]
    TariffsInverted {
        /// Feed-in.
        feed_in: Price,
        /// Retail.
        retail: Price,
    },
    /// Gate closure must leave time to trade within an interval's horizon.
    #[error("gate closure ({0} s) must be shorter than the interval")]
    GateClosureTooLong(u64),
    /// At least the next interval must be tradable.
    #[error("the horizon must be at least 1 interval")]
    NoHorizon,
    /// The name is empty or too long.
    #[error("the community name must be 1 to 64 bytes")]
    BadName,
    /// Shared energy must be priced between the tariffs.
    #[error("the sharing price ({0}) is outside the feed-in and retail tariffs")]
    SharingPriceOutside(Price),
    /// The signed rules are not valid, or the parameters are not what the admin signed.
    #[error("the community's signed rules: {0}")]
    Rules(String),
}

/// The names of the fields in which `mine` (these parameters) differs from `signed`, with
/// both values.
fn differing_fields(mine: &CommunityRules, signed: &CommunityRules) -> String {
    let pairs = [
        ("interval", mine.interval_secs.to_string(), signed.interval_secs.to_string()),
        ("gate closure", mine.gate_closure_secs.to_string(), signed.gate_closure_secs.to_string()),
        ("horizon", mine.horizon.to_string(), signed.horizon.to_string()),
        ("feed-in tariff", mine.feed_in.0.to_string(), signed.feed_in.0.to_string()),
        ("retail tariff", mine.retail.0.to_string(), signed.retail.0.to_string()),
        ("sharing", format!("{:?}", mine.sharing), format!("{:?}", signed.sharing)),
        ("bootstrap", mine.bootstrap.join(" "), signed.bootstrap.join(" ")),
    ];
    pairs
        .iter()
        .filter(|(_, a, b)| a != b)
        .map(|(name, a, b)| format!("{name} {a} here, {b} signed"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Why a membership certificate is refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CertError {
    /// Not signed by this community's admin.
    #[error("the certificate is signed by {0}, not by the community's admin")]
    WrongAdmin(String),
    /// The signature does not verify.
    #[error("the certificate's signature does not verify")]
    BadSignature,
    /// For another community.
    #[error("the certificate is for another community")]
    WrongCommunity,
    /// For another node.
    #[error("the certificate admits {0}, not this node")]
    WrongMember(String),
    /// Not valid at this time.
    #[error("the certificate is valid from {from} until {until}, not at {now}")]
    NotValidNow {
        /// Valid from.
        from: Timestamp,
        /// Valid until.
        until: Timestamp,
        /// The time checked.
        now: Timestamp,
    },
}

impl Community {
    /// The id of the community named `name` administered by `admin`.
    pub fn derive_id(admin: &PublicKey, name: &str) -> CommunityId {
        CommunityId(Hash::of_parts(&[b"peerwatt/v1/community\0", &admin.to_bytes(), name.as_bytes()]))
    }

    /// Checks the parameters, including that the id belongs to the admin and name.
    pub fn check(&self) -> Result<(), CommunityError> {
        if self.name.is_empty() || self.name.len() > 64 {
            return Err(CommunityError::BadName);
        }
        let expected = Community::derive_id(&self.admin, &self.name);
        if expected != self.id {
            return Err(CommunityError::IdMismatch { expected: expected.0.to_hex() });
        }
        if self.feed_in > self.retail {
            return Err(CommunityError::TariffsInverted { feed_in: self.feed_in, retail: self.retail });
        }
        if self.gate_closure.as_secs() >= self.interval.secs() {
            return Err(CommunityError::GateClosureTooLong(self.gate_closure.as_secs()));
        }
        if self.horizon == 0 {
            return Err(CommunityError::NoHorizon);
        }
        if let Sharing::ProRataAt(price) = self.sharing
            && !(self.feed_in..=self.retail).contains(&price)
        {
            return Err(CommunityError::SharingPriceOutside(price));
        }
        self.check_rules()?;
        Ok(())
    }

    /// The price of energy shared ex post under the latest rules: the community's own, or the
    /// midpoint of the feed-in and retail tariffs (rounded down).
    pub fn sharing_price(&self) -> Price {
        self.latest_terms().sharing_price()
    }

    /// The terms of the latest version (the fields of this value).
    pub fn latest_terms(&self) -> Terms {
        let version = self.rules.last().map_or(0, |r| r.body().version);
        Terms { version, feed_in: self.feed_in, retail: self.retail, sharing: self.sharing }
    }

    /// The terms in force for `interval`: those of the latest version that takes effect at or
    /// before it. Every node and the auditor apply these to the interval's orders, trades
    /// and settlement.
    pub fn terms_at(&self, interval: IntervalId) -> Terms {
        match self.rules.iter().rev().find(|r| r.body().effective_from <= interval) {
            Some(r) => {
                let b = r.body();
                Terms { version: b.version, feed_in: b.feed_in, retail: b.retail, sharing: b.sharing }
            }
            None => self.latest_terms(),
        }
    }

    /// The rules `version` would sign for these parameters, from `effective_from`.
    pub fn rules_body(&self, version: u32, effective_from: IntervalId, now: Timestamp) -> CommunityRules {
        CommunityRules {
            community: self.id,
            version,
            effective_from,
            interval_secs: u32::try_from(self.interval.secs()).unwrap_or(u32::MAX),
            gate_closure_secs: u32::try_from(self.gate_closure.as_secs()).unwrap_or(u32::MAX),
            horizon: self.horizon,
            feed_in: self.feed_in,
            retail: self.retail,
            sharing: self.sharing,
            bootstrap: self.bootstrap.clone(),
            created_at: now,
        }
    }

    /// These parameters signed by `admin` as the next version of the rules, in force from
    /// `effective_from` (version 1 from the start, whatever is given). The caller checks the
    /// result.
    pub fn signed_by(mut self, admin: &NodeKey, effective_from: IntervalId, now: Timestamp) -> Community {
        let version = self.rules.last().map_or(1, |r| r.body().version.saturating_add(1));
        let from = if version == 1 { IntervalId(0) } else { effective_from };
        let signed = Signed::sign(admin, self.rules_body(version, from, now));
        let mut rules = self.rules.to_vec();
        rules.push(signed);
        self.rules = rules.into();
        self
    }

    /// Checks the signed versions: each signed by the admin for this community, numbered
    /// 1, 2, …, taking effect in order (version 1 from the start), with the interval, gate
    /// closure and horizon of the first; and the parameters are the latest version's.
    fn check_rules(&self) -> Result<(), CommunityError> {
        let bad = |why: String| Err(CommunityError::Rules(why));
        let mut previous: Option<&CommunityRules> = None;
        for (i, signed) in self.rules.iter().enumerate() {
            let r = signed.body();
            let n = i as u64 + 1;
            if *signed.signer() != self.admin || signed.verify().is_err() {
                return bad(format!("version {} is not signed by the community's admin", r.version));
            }
            if r.community != self.id {
                return bad(format!("version {} is for another community", r.version));
            }
            if u64::from(r.version) != n {
                return bad(format!("version {} is where version {n} should be", r.version));
            }
            match previous {
                None if r.effective_from != IntervalId(0) => {
                    return bad("version 1 must be in force from the start".into());
                }
                Some(p) if r.effective_from <= p.effective_from => {
                    return bad(format!("version {} takes effect no later than version {}", r.version, p.version));
                }
                Some(p)
                    if (r.interval_secs, r.gate_closure_secs, r.horizon)
                        != (p.interval_secs, p.gate_closure_secs, p.horizon) =>
                {
                    return bad(format!(
                        "version {} changes the interval, gate closure or horizon: that needs a new community",
                        r.version
                    ));
                }
                _ => {}
            }
            previous = Some(r);
        }
        if let Some(last) = previous {
            let mine = self.rules_body(last.version, last.effective_from, last.created_at);
            if mine != *last {
                return bad(format!(
                    "the parameters are not those the admin signed in version {}: {}",
                    last.version,
                    differing_fields(&mine, last)
                ));
            }
        }
        Ok(())
    }

    /// Checks that `cert` is this community's, signed by its admin, for `member`, valid at `now`.
    pub fn check_cert(
        &self,
        cert: &Signed<MembershipCert>,
        member: &PublicKey,
        now: Timestamp,
    ) -> Result<(), CertError> {
        self.check_cert_terms(cert, member, now)?;
        cert.verify().map_err(|_| CertError::BadSignature)
    }

    /// Everything [`Community::check_cert`] checks except the signature (for a caller that
    /// verified this very certificate before).
    pub fn check_cert_terms(
        &self,
        cert: &Signed<MembershipCert>,
        member: &PublicKey,
        now: Timestamp,
    ) -> Result<(), CertError> {
        if *cert.signer() != self.admin {
            return Err(CertError::WrongAdmin(cert.signer().to_string()));
        }
        let c = cert.body();
        if c.community != self.id {
            return Err(CertError::WrongCommunity);
        }
        if c.member != *member {
            return Err(CertError::WrongMember(c.member.to_string()));
        }
        if !c.is_valid_at(now) {
            return Err(CertError::NotValidNow { from: c.valid_from, until: c.valid_until, now });
        }
        Ok(())
    }

    /// When trading for `interval` opens (inclusive) and closes (exclusive): it opens
    /// `horizon` intervals before the interval starts and closes at gate closure.
    pub fn trading_window(&self, interval: IntervalId) -> (Timestamp, Timestamp) {
        let start = self.interval.start(interval);
        let opens = Timestamp(start.0.saturating_sub(u64::from(self.horizon) * self.interval.millis()));
        let closes = Timestamp(start.0.saturating_sub(self.gate_closure.as_millis() as u64));
        (opens, closes)
    }

    /// Whether orders and trades for `interval` are accepted at `now`.
    pub fn is_open(&self, interval: IntervalId, now: Timestamp) -> bool {
        let (opens, closes) = self.trading_window(interval);
        opens <= now && now < closes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::NodeKey;

    fn community() -> (NodeKey, Community) {
        let admin = NodeKey::from_seed(&[3; 32]);
        let c = Community {
            name: "Sunny Street".into(),
            id: Community::derive_id(&admin.public(), "Sunny Street"),
            admin: admin.public(),
            interval: IntervalLength::DEFAULT,
            gate_closure: Duration::from_secs(60),
            horizon: 4,
            feed_in: Price(82_000),
            retail: Price(300_000),
            bootstrap: vec![],
            sharing: Sharing::default(),
            rules: Default::default(),
        };
        (admin, c)
    }

    #[test]
    fn parameters_are_checked() {
        let (_, c) = community();
        assert_eq!(c.check(), Ok(()));
        assert!(matches!(
            Community { name: "Other".into(), ..c.clone() }.check(),
            Err(CommunityError::IdMismatch { .. })
        ));
        assert!(matches!(
            Community { feed_in: Price(400_000), ..c.clone() }.check(),
            Err(CommunityError::TariffsInverted { .. })
        ));
        assert_eq!(
            Community { gate_closure: Duration::from_secs(900), ..c.clone() }.check(),
            Err(CommunityError::GateClosureTooLong(900))
        );
        assert_eq!(Community { horizon: 0, ..c }.check(), Err(CommunityError::NoHorizon));
    }

    #[test]
    fn signed_rules_cover_every_parameter_and_versions_apply_from_their_interval() {
        let (admin, c) = community();
        assert_eq!(c.terms_at(IntervalId(5)).version, 0, "unsigned: version 0");
        let v1 = c.clone().signed_by(&admin, IntervalId(77), Timestamp(1));
        assert_eq!(v1.check(), Ok(()));
        assert_eq!(v1.rules[0].body().effective_from, IntervalId(0), "version 1 is in force from the start");
        // An edited parameter no longer matches what the admin signed.
        let edited = Community { retail: Price(350_000), ..v1.clone() };
        let Err(CommunityError::Rules(why)) = edited.check() else { panic!("refused") };
        assert!(why.contains("retail tariff 350000 here, 300000 signed"), "{why}");
        // Version 2 from interval 100: the terms switch there, the parameters are the latest.
        let v2 = Community { retail: Price(320_000), sharing: Sharing::Off, ..v1.clone() }.signed_by(
            &admin,
            IntervalId(100),
            Timestamp(2),
        );
        assert_eq!(v2.check(), Ok(()));
        assert_eq!(v2.terms_at(IntervalId(99)), Terms { version: 1, retail: Price(300_000), ..v1.latest_terms() });
        let later = v2.terms_at(IntervalId(100));
        assert_eq!((later.version, later.retail, later.sharing), (2, Price(320_000), Sharing::Off));
        // Signed by someone else, or changing the interval: refused.
        let stranger = NodeKey::from_seed(&[9; 32]);
        let forged =
            Community { retail: Price(310_000), ..v1.clone() }.signed_by(&stranger, IntervalId(100), Timestamp(2));
        assert!(
            matches!(forged.check(), Err(CommunityError::Rules(w)) if w.contains("not signed by the community's admin"))
        );
        let shorter = Community { interval: IntervalLength::from_secs(300).unwrap(), ..v1 }.signed_by(
            &admin,
            IntervalId(100),
            Timestamp(2),
        );
        assert!(matches!(shorter.check(), Err(CommunityError::Rules(w)) if w.contains("needs a new community")));
    }

    #[test]
    fn certificates_are_checked() {
        let (admin, c) = community();
        let member = NodeKey::from_seed(&[4; 32]).public();
        let cert = |signer: &NodeKey, community: CommunityId, member: PublicKey| {
            Signed::sign(
                signer,
                MembershipCert {
                    community,
                    member,
                    name: "Ann".into(),
                    zone: "feeder-7".into(),
                    valid_from: Timestamp(1_000),
                    valid_until: Timestamp(2_000),
                },
            )
        };
        let good = cert(&admin, c.id, member);
        assert_eq!(c.check_cert(&good, &member, Timestamp(1_500)), Ok(()));
        assert!(matches!(c.check_cert(&good, &member, Timestamp(2_000)), Err(CertError::NotValidNow { .. })));
        let other = NodeKey::from_seed(&[5; 32]);
        assert!(matches!(c.check_cert(&good, &other.public(), Timestamp(1_500)), Err(CertError::WrongMember(_))));
        assert!(matches!(
            c.check_cert(&cert(&other, c.id, member), &member, Timestamp(1_500)),
            Err(CertError::WrongAdmin(_))
        ));
        assert_eq!(
            c.check_cert(&cert(&admin, CommunityId::default(), member), &member, Timestamp(1_500)),
            Err(CertError::WrongCommunity)
        );
        let forged = good.clone().with_signature_for_tests(crate::keys::Signature::from_bytes(&[1; 64]));
        assert_eq!(c.check_cert(&forged, &member, Timestamp(1_500)), Err(CertError::BadSignature));
    }

    #[test]
    fn trading_opens_at_the_horizon_and_closes_at_gate_closure() {
        let (_, c) = community();
        let i = IntervalId(1_908_048); // starts 2024-06-01T12:00:00Z
        let start = c.interval.start(i);
        let (opens, closes) = c.trading_window(i);
        assert_eq!(start.0 - opens.0, 4 * 900_000);
        assert_eq!(start.0 - closes.0, 60_000);
        assert!(!c.is_open(i, Timestamp(opens.0 - 1)));
        assert!(c.is_open(i, opens));
        assert!(c.is_open(i, Timestamp(closes.0 - 1)));
        assert!(!c.is_open(i, closes));
    }
}
