//! Signed envelopes: round trips, canonical bytes, and every way a bad envelope is refused.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test panics to fail

mod common;

use common::*;
use peerwatt_core::envelope::ENVELOPE_VERSION;
use peerwatt_core::messages::{GOSSIP_BATCH_VERSION, GOSSIP_FRAME_VERSION, MAX_FRAME_MESSAGES};
use peerwatt_core::*;

#[test]
fn every_message_round_trips_byte_for_byte_and_verifies() {
    fn check<T: Message + PartialEq + std::fmt::Debug + Clone>(key: &NodeKey, body: T) {
        let signed = Signed::sign(key, body.clone());
        let bytes = signed.to_bytes();
        let back = Signed::<T>::from_bytes_verified(&bytes).unwrap();
        assert_eq!(back.body(), &body);
        assert_eq!(back.to_bytes(), bytes, "canonical: re-encoding gives the same bytes");
        assert_eq!(back.signer(), &key.public());
        assert_eq!(back.digest(), Hash::of(&bytes));
        let (decoded, digest) = Signed::<T>::from_bytes_with_digest(&bytes).unwrap();
        assert_eq!((decoded, digest), (back.clone(), back.digest()), "the digest of the bytes as they came");
    }
    check(&maker(), offer());
    check(&taker(), bid());
    check(&taker(), trade_request());
    check(&maker(), trade());
    check(&maker(), meter_statement());
    check(&maker(), tree_head());
    check(&admin(), membership_cert());
    check(&maker(), ledger_entry());
}

#[test]
fn any_flipped_bit_is_refused() {
    let bytes = signed_offer().to_bytes();
    for i in 0..bytes.len() {
        for bit in [0x01u8, 0x80] {
            let mut b = bytes.clone();
            b[i] ^= bit;
            assert!(Signed::<Order>::from_bytes_verified(&b).is_err(), "byte {i} bit {bit:#x}");
        }
    }
}

#[test]
fn signature_is_domain_separated_by_kind() {
    // An offer's signature must not verify as a bid with the same bytes: flip the side byte
    // (offer → bid) and the envelope kind accordingly.
    let mut bytes = signed_offer().to_bytes();
    bytes[1] = Kind::Bid as u8;
    let side_at = 1 + 1 + 32 + 4 + 32; // version, kind, signer, body length, community
    bytes[side_at] = Side::Buy as u8;
    let decoded = Signed::<Order>::from_bytes(&bytes).unwrap();
    assert_eq!(decoded.body().side, Side::Buy);
    assert_eq!(decoded.verify(), Err(EnvelopeError::BadSignature(Kind::Bid)));
}

#[test]
fn envelope_shape_errors_are_named() {
    let good = signed_offer().to_bytes();
    let mut b = good.clone();
    b[0] = 2;
    assert_eq!(Signed::<Order>::from_bytes(&b), Err(DecodeError::UnsupportedVersion { what: "envelope", version: 2 }));
    let mut b = good.clone();
    b[1] = 0x7f;
    assert_eq!(Signed::<Order>::from_bytes(&b), Err(DecodeError::UnknownTag { what: "envelope kind", tag: 0x7f }));
    let mut b = good.clone();
    b[1] = Kind::Bid as u8; // kind says bid, body says sell
    assert!(matches!(Signed::<Order>::from_bytes(&b), Err(DecodeError::Invalid { what: "envelope kind", .. })));
    let mut b = good.clone();
    b.push(0);
    assert_eq!(Signed::<Order>::from_bytes(&b), Err(DecodeError::TrailingBytes(1)));
    assert!(matches!(Signed::<Order>::from_bytes(&good[..good.len() - 1]), Err(DecodeError::UnexpectedEnd { .. })));
    // A body longer than the kind allows is refused before it is read.
    let mut b = good[..34].to_vec();
    b.extend_from_slice(&10_000u32.to_be_bytes());
    b.extend_from_slice(&[0; 10_000]);
    assert!(matches!(Signed::<Order>::from_bytes(&b), Err(DecodeError::TooLong { what: "envelope body", .. })));
    // Another type's envelope is not an order.
    assert!(Signed::<Order>::from_bytes(&Signed::sign(&maker(), tree_head()).to_bytes()).is_err());
    assert_eq!(good[0], ENVELOPE_VERSION);
}

#[test]
fn a_weak_signer_key_is_refused_at_decoding() {
    let mut b = signed_offer().to_bytes();
    b[2..34].copy_from_slice(&[0; 32]); // all-zero: a small-order point
    assert!(matches!(Signed::<Order>::from_bytes(&b), Err(DecodeError::Invalid { what: "public key", .. })));
}

#[test]
fn trade_needs_both_signatures_from_the_right_nodes() {
    let good = Signed::sign(&maker(), trade());
    good.verify().unwrap();
    assert_eq!(good.body().seller(), &maker().public());
    assert_eq!(good.body().buyer(), &taker().public());

    // Countersigned by someone who is not the order's maker.
    let stranger = NodeKey::from_seed(&[9; 32]);
    assert_eq!(
        Signed::sign(&stranger, trade()).verify(),
        Err(EnvelopeError::Nested("trade is not signed by the order's maker"))
    );

    // The taker's request signature is broken inside an otherwise well-signed trade.
    let forged_request = signed_request().with_signature_for_tests(Signature::from_bytes(&[7; 64]));
    let bad = Signed::sign(&maker(), Trade { request: forged_request, ..trade() });
    assert_eq!(bad.verify(), Err(EnvelopeError::BadSignature(Kind::TradeRequest)));

    // A maker trading with itself.
    let self_request = Signed::sign(&maker(), trade_request());
    let selfish = Signed::sign(&maker(), Trade { request: self_request, ..trade() });
    assert_eq!(selfish.verify(), Err(EnvelopeError::Nested("maker and taker are the same node")));
}

#[test]
fn membership_cert_validity_window() {
    let cert = membership_cert();
    assert!(!cert.is_valid_at(Timestamp(T0.0 - 1)));
    assert!(cert.is_valid_at(T0));
    assert!(!cert.is_valid_at(cert.valid_until));
    let long_name = MembershipCert { name: "x".repeat(65), ..membership_cert() };
    let bytes = Signed::sign(&admin(), long_name).to_bytes();
    assert_eq!(
        Signed::<MembershipCert>::from_bytes(&bytes),
        Err(DecodeError::TooLong { what: "member name", len: 65, max: 64 })
    );
}

/// Prints the vectors for `docs/protocol.md`: `PEERWATT_PRINT_VECTORS=1 cargo test -p peerwatt-core --test envelope -- --nocapture print_vectors`.
#[test]
fn print_vectors() {
    if std::env::var_os("PEERWATT_PRINT_VECTORS").is_none() {
        return;
    }
    for (name, body, envelope) in all_vectors() {
        println!("== {name}\nbody {}\nenvelope {}", hex::encode(body), hex::encode(envelope));
    }
    println!("maker peer id {}", maker().public());
    println!("maker public key {}", hex::encode(maker().public().to_bytes()));
    println!("taker public key {}", hex::encode(taker().public().to_bytes()));
    println!("admin public key {}", hex::encode(admin().public().to_bytes()));
}

/// A gossip frame of one message has one encoding (version 1); a batch (version 2) carries 2
/// to 16 messages and round-trips; a count outside that range is refused.
#[test]
fn gossip_frames_carry_one_message_or_a_batch_of_two_to_sixteen() {
    let cert = Signed::sign(&admin(), membership_cert());
    let single = GossipFrame::single(cert.clone(), signed_offer().to_bytes());
    let bytes = single.to_bytes();
    assert_eq!(bytes[0], GOSSIP_FRAME_VERSION);
    assert_eq!(GossipFrame::from_bytes(&bytes).unwrap(), single);

    let orders: Vec<Vec<u8>> = (0..MAX_FRAME_MESSAGES).map(|_| signed_offer().to_bytes()).collect();
    let batch = GossipFrame { cert: cert.clone(), messages: orders.clone() };
    let bytes = batch.to_bytes();
    assert_eq!(bytes[0], GOSSIP_BATCH_VERSION);
    assert_eq!(GossipFrame::from_bytes(&bytes).unwrap(), batch);

    for count in [0u8, 1, MAX_FRAME_MESSAGES as u8 + 1] {
        let mut forged = vec![GOSSIP_BATCH_VERSION];
        forged.extend(cert.to_bytes());
        forged.push(count);
        for m in orders.iter().cycle().take(usize::from(count)) {
            forged.extend((m.len() as u32).to_be_bytes());
            forged.extend(m);
        }
        assert!(GossipFrame::from_bytes(&forged).is_err(), "a batch of {count} must be refused");
    }
}
