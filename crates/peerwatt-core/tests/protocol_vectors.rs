//! Re-derives every test vector in `docs/protocol.md` byte for byte. The vectors are read
//! from the document itself, so the documentation cannot drift from the code.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test panics to fail

mod common;

use std::collections::BTreeMap;

use common::*;
use peerwatt_core::*;
use sha2::{Digest, Sha256};

/// Every fenced block of the form ```` ```hex NAME ```` or ```` ```text NAME ````, by name,
/// with white space removed.
fn document_vectors() -> BTreeMap<String, String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/protocol.md");
    let doc = std::fs::read_to_string(path).expect("docs/protocol.md");
    let mut out = BTreeMap::new();
    let mut lines = doc.lines();
    while let Some(line) = lines.next() {
        let Some(name) = line.strip_prefix("```hex ").or_else(|| line.strip_prefix("```text ")) else {
            continue;
        };
        let body: String =
            lines.by_ref().take_while(|l| !l.starts_with("```")).flat_map(|l| l.split_whitespace()).collect();
        assert!(out.insert(name.trim().to_owned(), body).is_none(), "vector {name} appears twice");
    }
    out
}

fn derived_vectors() -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (name, body, envelope) in all_vectors() {
        out.insert(format!("{name}.body"), hex::encode(body));
        out.insert(format!("{name}.envelope"), hex::encode(envelope));
    }
    out.insert("maker.public-key".into(), hex::encode(maker().public().to_bytes()));
    out.insert("taker.public-key".into(), hex::encode(taker().public().to_bytes()));
    out.insert("admin.public-key".into(), hex::encode(admin().public().to_bytes()));
    out.insert("maker.peer-id".into(), maker().public().peer_id());
    out.insert("community.id".into(), Community::derive_id(&admin().public(), "Sunny Street").0.to_hex());
    let frame = GossipFrame::single(Signed::sign(&admin(), membership_cert()), signed_offer().to_bytes());
    out.insert("gossip-frame".into(), hex::encode(frame.to_bytes()));
    // The maker's offers for two intervals, in one frame.
    let next = Signed::sign(&maker(), Order { interval: IntervalId(INTERVAL.0 + 1), seq: 8, ..offer() });
    let batch = GossipFrame {
        cert: Signed::sign(&admin(), membership_cert()),
        messages: vec![signed_offer().to_bytes(), next.to_bytes()],
    };
    out.insert("gossip-frame.batch".into(), hex::encode(batch.to_bytes()));
    let entry = Signed::sign(&maker(), ledger_entry()).to_bytes();
    let leaf: [u8; 32] = Sha256::new().chain_update([0u8]).chain_update(&entry).finalize().into();
    out.insert("ledger-entry.leaf-hash".into(), hex::encode(leaf));
    let trade = Signed::sign(&maker(), trade());
    out.insert("trade-call.query".into(), hex::encode(TradeCall::Query(vec![signed_request().digest()]).to_bytes()));
    let batch =
        TradeCall::Requests { cert: Signed::sign(&admin(), membership_cert()), requests: vec![signed_request()] };
    out.insert("trade-call.requests".into(), hex::encode(batch.to_bytes()));
    let answers = TradeReply::Answers(vec![Answer::Agreed(trade.clone()), Answer::Refused("insufficient".into())]);
    out.insert("trade-reply.answers".into(), hex::encode(answers.to_bytes()));
    out.insert("trade-reply.agreed".into(), hex::encode(TradeReply::Agreed(trade).to_bytes()));
    out.insert("trade-reply.refused".into(), hex::encode(TradeReply::Refused("insufficient".into()).to_bytes()));
    // `PRINT_VECTORS=1 cargo test -p peerwatt-core --test protocol_vectors -- --nocapture`
    // prints every vector, for updating the document after a deliberate format change.
    if std::env::var_os("PRINT_VECTORS").is_some() {
        for (k, v) in &out {
            eprintln!("{k} {v}");
        }
    }
    out
}

#[test]
fn every_documented_vector_is_rederived_byte_for_byte() {
    let doc = document_vectors();
    let derived = derived_vectors();
    for (name, want) in &derived {
        let got = doc.get(name).unwrap_or_else(|| panic!("docs/protocol.md lacks vector {name}"));
        assert_eq!(got, want, "vector {name} in docs/protocol.md differs from the code");
    }
    let orphans: Vec<_> = doc.keys().filter(|k| !derived.contains_key(*k)).collect();
    assert!(orphans.is_empty(), "docs/protocol.md has vectors no test checks: {orphans:?}");
    assert_eq!(doc.len(), 31);
}

#[test]
fn documented_envelopes_decode_and_verify() {
    let doc = document_vectors();
    let bytes = |name: &str| hex::decode(&doc[name]).unwrap();
    Signed::<Order>::from_bytes_verified(&bytes("offer.envelope")).unwrap();
    Signed::<Order>::from_bytes_verified(&bytes("bid.envelope")).unwrap();
    Signed::<TradeRequest>::from_bytes_verified(&bytes("trade-request.envelope")).unwrap();
    let trade = Signed::<Trade>::from_bytes_verified(&bytes("trade.envelope")).unwrap();
    assert_eq!(
        trade.body().request.body().order,
        Signed::<Order>::from_bytes(&bytes("offer.envelope")).unwrap().digest()
    );
    Signed::<MeterStatement>::from_bytes_verified(&bytes("meter-statement.envelope")).unwrap();
    let statement = Signed::<MeterStatement>::from_bytes(&bytes("meter-statement.envelope")).unwrap();
    let settlement = Signed::<Settlement>::from_bytes_verified(&bytes("settlement.envelope")).unwrap();
    assert_eq!(settlement.body().statement, statement.digest());
    assert_eq!(
        settlement.body().trades[0].trade,
        Signed::<Trade>::from_bytes(&bytes("trade.envelope")).unwrap().digest()
    );
    Signed::<TreeHead>::from_bytes_verified(&bytes("tree-head.envelope")).unwrap();
    let cert = Signed::<MembershipCert>::from_bytes_verified(&bytes("membership-cert.envelope")).unwrap();
    assert_eq!(cert.body().name, "Zoë's roof");
    let entry = Signed::<LedgerEntry>::from_bytes_verified(&bytes("ledger-entry.envelope")).unwrap();
    assert_eq!(entry.body().payload, bytes("trade.envelope"));
    assert_eq!(PublicKey::from_peer_id(&doc["maker.peer-id"]).unwrap(), maker().public());
    assert_eq!(
        TradeCall::from_bytes(&bytes("trade-call.query")).unwrap(),
        TradeCall::Query(vec![Signed::<TradeRequest>::from_bytes(&bytes("trade-request.envelope")).unwrap().digest()])
    );
    assert_eq!(TradeReply::from_bytes(&bytes("trade-reply.agreed")).unwrap(), TradeReply::Agreed(trade));
}

/// The price-curve example of `docs/protocol.md` ("Order"), on the documented offer.
#[test]
fn the_documented_offer_follows_its_price_curve() {
    let doc = document_vectors();
    let offer = Signed::<Order>::from_bytes(&hex::decode(&doc["offer.envelope"]).unwrap()).unwrap();
    let o = offer.body();
    assert_eq!(o.price_at(o.created_at), Price(150_000));
    assert_eq!(o.price_at(Timestamp(o.created_at.0 + 420_000)), Price(135_000));
    assert_eq!(o.price_at(o.expires_at), Price(120_000));
}
