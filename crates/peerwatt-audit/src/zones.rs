//! Zone limits (`--limits`): the energy a grid zone's members trade in one interval, against
//! the limit its operator sets (a feeder or transformer the trades must not overload).
//!
//! ```toml
//! [[zone]]
//! name = "feeder-north"
//! limit_wh = 3000
//! members = ["12D3KooW…", "12D3KooW…"]
//! ```
//!
//! A zone's traded energy in an interval is the energy of every distinct trade with at least
//! one party in the zone (a trade between two members counts once).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use peerwatt_core::{IntervalId, PublicKey};
use serde::{Deserialize, Serialize};

use crate::Audited;
use crate::exception::{Check, Exception};

/// The limits file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// The zones.
    #[serde(rename = "zone", default)]
    pub zones: Vec<Zone>,
}

/// One zone.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Zone {
    /// Its name.
    pub name: String,
    /// Most energy its members may trade in one interval, Wh.
    pub limit_wh: u64,
    /// Its members' peer ids.
    pub members: Vec<String>,
}

/// A limits file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum LimitsError {
    /// Not valid TOML of the expected shape.
    #[error("the limits file is not valid: {0}")]
    Parse(#[from] toml::de::Error),
    /// A member is not a peer id.
    #[error("zone {zone}: {member:?} is not a peer id: {why}")]
    BadMember {
        /// The zone.
        zone: String,
        /// The text given.
        member: String,
        /// Why.
        why: String,
    },
    /// Two zones share a name.
    #[error("two zones are named {0:?}")]
    DuplicateZone(String),
}

impl Limits {
    /// Parses a limits file's text.
    pub fn parse(text: &str) -> Result<Limits, LimitsError> {
        let limits: Limits = toml::from_str(text)?;
        let mut names = BTreeSet::new();
        for zone in &limits.zones {
            if !names.insert(&zone.name) {
                return Err(LimitsError::DuplicateZone(zone.name.clone()));
            }
            for member in &zone.members {
                PublicKey::from_peer_id(member).map_err(|e| LimitsError::BadMember {
                    zone: zone.name.clone(),
                    member: member.clone(),
                    why: e.to_string(),
                })?;
            }
        }
        Ok(limits)
    }
}

/// One row of `zones.csv`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ZoneRow {
    /// The zone.
    pub zone: String,
    /// The interval.
    pub interval: u64,
    /// Energy traded, Wh.
    pub traded_wh: u64,
    /// The limit, Wh.
    pub limit_wh: u64,
}

/// Every zone's traded energy per interval in which it traded; a row over its limit is an
/// exception.
pub fn check(audited: &Audited<'_>, limits: &Limits, exceptions: &mut Vec<Exception>) -> Vec<ZoneRow> {
    let mut zones_of: HashMap<[u8; 32], Vec<usize>> = HashMap::new();
    for (z, zone) in limits.zones.iter().enumerate() {
        for member in &zone.members {
            if let Ok(key) = PublicKey::from_peer_id(member) {
                zones_of.entry(key.to_bytes()).or_default().push(z);
            }
        }
    }
    let mut traded: BTreeMap<(usize, IntervalId), u64> = BTreeMap::new();
    let mut counted = BTreeSet::new();
    for facts in audited.ledgers.values() {
        for t in facts.trades.iter().filter(|t| counted.insert(t.request)) {
            let mut zones: Vec<usize> =
                [t.seller, t.buyer].iter().flat_map(|p| zones_of.get(p).into_iter().flatten()).copied().collect();
            zones.sort_unstable();
            zones.dedup();
            for z in zones {
                let sum = traded.entry((z, t.interval)).or_default();
                *sum = sum.saturating_add(t.energy.0);
            }
        }
    }
    let mut rows = Vec::with_capacity(traded.len());
    for ((z, interval), wh) in traded {
        let zone = &limits.zones[z];
        if wh > zone.limit_wh {
            exceptions.push(
                Exception::new(
                    Check::ZoneOverLimit,
                    format!("at most {} Wh traded in zone {}", zone.limit_wh, zone.name),
                    format!("{wh} Wh traded"),
                )
                .interval(interval),
            );
        }
        rows.push(ZoneRow { zone: zone.name.clone(), interval: interval.0, traded_wh: wh, limit_wh: zone.limit_wh });
    }
    rows
}
