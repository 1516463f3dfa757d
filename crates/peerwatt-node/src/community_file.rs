//! The files of a community: `community.toml` (parameters, written by `community init`) and
//! membership certificates (written by `community admit`).

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use peerwatt_core::{
    Community, CommunityRules, Decode, Encode, Hash, IntervalLength, MembershipCert, Price, PublicKey, Sharing, Signed,
    messages::CommunityId,
};
use serde::Deserialize;

use crate::config::FileError;

/// `community.toml` as written on disk.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CommunityFile {
    community: CommunityToml,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CommunityToml {
    name: String,
    id: String,
    admin: String,
    #[serde(default)]
    interval_minutes: Option<u64>,
    /// Seconds instead of minutes (for tests and demos with short intervals).
    #[serde(default)]
    interval_secs: Option<u64>,
    gate_closure_secs: u64,
    horizon_intervals: u32,
    feed_in_tariff: u64,
    retail_tariff: u64,
    #[serde(default)]
    bootstrap: Vec<String>,
    /// `pro-rata` (the default) or `off`.
    #[serde(default)]
    sharing: Option<String>,
    /// The price of shared energy; the midpoint of the tariffs if absent.
    #[serde(default)]
    sharing_price: Option<u64>,
    /// Every version of the rules, signed by the admin, oldest first (hex envelopes).
    #[serde(default)]
    signed_rules: Vec<String>,
}

/// Reads and checks a community file (the id must match the admin key and name).
pub fn load_community(path: &Path) -> Result<Community, FileError> {
    let text = std::fs::read_to_string(path).map_err(|source| FileError::Read { path: path.to_owned(), source })?;
    let file: CommunityFile = toml::from_str(&text).map_err(|source| FileError::Parse {
        path: path.to_owned(),
        what: "community file",
        source: Box::new(source),
    })?;
    let invalid = |why: String| FileError::Invalid { path: path.to_owned(), why };
    let c = file.community;
    let id_bytes: [u8; 32] = hex::decode(&c.id)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| invalid("the community id is not 64 hex digits".into()))?;
    let interval_secs = match (c.interval_minutes, c.interval_secs) {
        (Some(m), None) => m.saturating_mul(60),
        (None, Some(s)) => s,
        _ => return Err(invalid("give exactly one of interval_minutes and interval_secs".into())),
    };
    let community = Community {
        admin: PublicKey::from_peer_id(&c.admin).map_err(|e| invalid(format!("the admin key: {e}")))?,
        name: c.name,
        id: CommunityId(Hash(id_bytes)),
        interval: IntervalLength::from_secs(interval_secs).map_err(|e| invalid(e.to_string()))?,
        gate_closure: Duration::from_secs(c.gate_closure_secs),
        horizon: c.horizon_intervals,
        feed_in: Price(c.feed_in_tariff),
        retail: Price(c.retail_tariff),
        bootstrap: c.bootstrap,
        sharing: match (c.sharing.as_deref(), c.sharing_price) {
            (None | Some("pro-rata"), None) => Sharing::ProRata,
            (None | Some("pro-rata"), Some(price)) => Sharing::ProRataAt(Price(price)),
            (Some("off"), None) => Sharing::Off,
            (Some("off"), Some(_)) => return Err(invalid("a sharing price is given but sharing is off".into())),
            (Some(other), _) => return Err(invalid(format!("sharing is \"pro-rata\" or \"off\", not {other:?}"))),
        },
        rules: signed_rules(&c.signed_rules).map_err(invalid)?,
    };
    if community.rules.is_empty() {
        return Err(invalid(
            "it has no signed rules (signed_rules): the admin's signature must cover the parameters; \
             ask your admin for the community.toml of `peerwatt community init`"
                .into(),
        ));
    }
    community.check().map_err(|e| {
        invalid(format!(
            "not a valid community: {e}; the file was edited: ask your admin for the current community.toml"
        ))
    })?;
    Ok(community)
}

/// The signed versions of a file, decoded (their signatures are checked with the community).
fn signed_rules(hex_rules: &[String]) -> Result<std::sync::Arc<[Signed<CommunityRules>]>, String> {
    hex_rules
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let bytes = hex::decode(h.trim()).map_err(|e| format!("signed rules {}: not hex: {e}", i + 1))?;
            Signed::<CommunityRules>::from_bytes(&bytes).map_err(|e| format!("signed rules {}: {e}", i + 1))
        })
        .collect()
}

/// The text of `community.toml`, with comments.
pub fn community_toml(c: &Community) -> String {
    let bootstrap =
        c.bootstrap.iter().map(|b| toml::Value::String(b.clone()).to_string()).collect::<Vec<_>>().join(", ");
    format!(
        r#"# peerwatt community, created by `peerwatt community init`. Give this file to every member.
# The id is derived from the admin key and the name: a file with an edited id, name or admin
# is refused by every node.

[community]
name = {name}
id = "{id}"
# The admin's public key: it signs membership certificates (`peerwatt community admit`).
admin = "{admin}"
# Settlement interval length; it must divide a day.
{interval}
# Trading for an interval closes this many seconds before it starts …
gate_closure_secs = {gate}
# … and opens this many intervals ahead.
horizon_intervals = {horizon}
# Tariffs in micro-currency per kWh (82000 = 0.082000 per kWh). Nobody trades below the
# feed-in tariff (what the grid pays for export) or above the retail tariff (what it charges).
feed_in_tariff = {feed_in}   # {feed_in_text}
retail_tariff = {retail}   # {retail_text}
# Multiaddresses of nodes to connect to first, e.g. "/ip4/192.0.2.10/tcp/4001/p2p/12D3KooW…".
bootstrap = [{bootstrap}]
# After each interval, what contracts missed is shared: the members' remaining export goes
# to their remaining import pro rata ("pro-rata"), or to the grid ("off"). See
# docs/settlement.md.
sharing = "{sharing}"
{sharing_price}# The admin's signature over every parameter above, one per version of the rules, oldest
# first (`peerwatt community rules` adds one, in force from a later interval). A file whose
# parameters differ from the latest signed version is refused by every node.
signed_rules = [
{signed_rules}]
"#,
        name = toml::Value::String(c.name.clone()),
        id = c.id.0.to_hex(),
        admin = c.admin,
        interval = if c.interval.secs().is_multiple_of(60) {
            format!("interval_minutes = {}", c.interval.secs() / 60)
        } else {
            format!("interval_secs = {}", c.interval.secs())
        },
        gate = c.gate_closure.as_secs(),
        horizon = c.horizon,
        feed_in = c.feed_in.0,
        feed_in_text = c.feed_in,
        retail = c.retail.0,
        retail_text = c.retail,
        sharing = if c.sharing.is_on() { "pro-rata" } else { "off" },
        signed_rules = c.rules.iter().map(|r| format!("  \"{}\",\n", hex::encode(r.to_bytes()))).collect::<String>(),
        sharing_price = match c.sharing {
            Sharing::ProRataAt(p) => format!("sharing_price = {}   # {p}\n", p.0),
            Sharing::Off | Sharing::ProRata => {
                format!(
                    "# Shared energy is priced at the midpoint of the tariffs ({}) unless sharing_price is set.\n",
                    c.sharing_price()
                )
            }
        },
    )
}

const CERT_HEADER: &str = "# peerwatt membership certificate";

/// The text of a certificate file: comments describing it, then the signed certificate in hex.
pub fn certificate_text(cert: &Signed<MembershipCert>, community: &Community) -> String {
    let c = cert.body();
    let mut text = String::new();
    let _ = writeln!(text, "{CERT_HEADER}");
    let _ = writeln!(text, "# community: {} ({})", community.name, community.id.0.to_hex());
    let _ = writeln!(text, "# member:    {} \"{}\", zone {}", c.member, c.name, c.zone);
    let _ = writeln!(text, "# valid:     {} until {}", c.valid_from, c.valid_until);
    let _ = writeln!(text, "# signed by the community admin {}", cert.signer());
    let _ = writeln!(text, "{}", hex::encode(cert.to_bytes()));
    text
}

/// Reads a certificate file (comment lines are ignored; the signature is not checked here).
pub fn load_certificate(path: &Path) -> Result<Signed<MembershipCert>, FileError> {
    let text = std::fs::read_to_string(path).map_err(|source| FileError::Read { path: path.to_owned(), source })?;
    let invalid = |why: String| FileError::Invalid { path: path.to_owned(), why };
    let hex_text: String =
        text.lines().filter(|l| !l.trim_start().starts_with('#')).flat_map(|l| l.split_whitespace()).collect();
    if hex_text.is_empty() {
        return Err(invalid("holds no certificate".into()));
    }
    let bytes = hex::decode(&hex_text).map_err(|_| invalid("is not a certificate (bad hex)".into()))?;
    Signed::<MembershipCert>::from_bytes(&bytes).map_err(|e| invalid(format!("is not a membership certificate: {e}")))
}
