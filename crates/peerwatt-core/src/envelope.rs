//! Signed envelopes: a message, who signed it, and a domain-separated signature.
//!
//! Envelope encoding (see `docs/protocol.md`):
//!
//! ```text
//! version u8 (= 1) | kind u8 | signer [32] | body_len u32 | body | signature [64]
//! ```
//!
//! The signature is over `"peerwatt/v1/<kind>" || 0x00 || body`, made with the signer's key.
//! Decoding an envelope checks its shape only; [`Signed::verify`] checks the signature (and,
//! for a trade, the taker's signature inside it). Keep the two apart so a caller can decode
//! first, reject cheaply, and verify only what is worth verifying.

use std::fmt;

use thiserror::Error;

use crate::encoding::{Decode, DecodeError, Encode, Reader, Writer};
use crate::hash::Hash;
use crate::keys::{BadSignature, NodeKey, PublicKey, Signature};

/// The envelope format version this build writes and reads.
pub const ENVELOPE_VERSION: u8 = 1;

/// Every kind of signed message. The tag is the second byte of an envelope and fixes the
/// signing domain, so a signature for one kind never verifies as another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Kind {
    /// A sell order.
    Offer = 1,
    /// A buy order.
    Bid = 2,
    /// A taker's signed request to trade against a maker's order.
    TradeRequest = 3,
    /// A trade request countersigned by the maker: an agreed trade.
    Trade = 4,
    /// A node's metered import and export in one interval.
    MeterStatement = 5,
    /// A signed Merkle tree head of a node's ledger.
    TreeHead = 6,
    /// A community admin's certificate admitting a node.
    MembershipCert = 7,
    /// One entry of a node's ledger.
    LedgerEntry = 8,
    /// A node's settlement of one interval.
    Settlement = 9,
    /// A version of a community's rules, signed by its admin.
    CommunityRules = 10,
}

impl Kind {
    /// Every kind, in tag order.
    pub const ALL: [Kind; 10] = [
        Kind::Offer,
        Kind::Bid,
        Kind::TradeRequest,
        Kind::Trade,
        Kind::MeterStatement,
        Kind::TreeHead,
        Kind::MembershipCert,
        Kind::LedgerEntry,
        Kind::Settlement,
        Kind::CommunityRules,
    ];

    /// The signing domain, `peerwatt/v1/<kind>`.
    pub const fn domain(self) -> &'static str {
        match self {
            Kind::Offer => "peerwatt/v1/offer",
            Kind::Bid => "peerwatt/v1/bid",
            Kind::TradeRequest => "peerwatt/v1/trade-request",
            Kind::Trade => "peerwatt/v1/trade",
            Kind::MeterStatement => "peerwatt/v1/meter-statement",
            Kind::TreeHead => "peerwatt/v1/tree-head",
            Kind::MembershipCert => "peerwatt/v1/membership-cert",
            Kind::LedgerEntry => "peerwatt/v1/ledger-entry",
            Kind::Settlement => "peerwatt/v1/settlement",
            Kind::CommunityRules => "peerwatt/v1/community-rules",
        }
    }

    /// The kind with this tag byte.
    pub fn from_tag(tag: u8) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| *k as u8 == tag)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.domain().trim_start_matches("peerwatt/v1/"))
    }
}

/// A message body that can travel in a signed envelope.
pub trait Message: Encode + Decode {
    /// The largest encoded body accepted when decoding.
    const MAX_BODY: usize;

    /// The kind this body is signed as (fixed per type, except orders, whose side decides).
    fn kind(&self) -> Kind;

    /// Checks that must hold beyond the envelope's own signature, e.g. signatures nested in
    /// the body. The default has none.
    fn verify_nested(&self, _signer: &PublicKey) -> Result<(), EnvelopeError> {
        Ok(())
    }
}

/// A signed envelope did not verify.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EnvelopeError {
    /// The signature does not verify under the signer's key.
    #[error("bad {0} signature")]
    BadSignature(Kind),
    /// A nested object (e.g. the taker's request inside a trade) is wrong.
    #[error("{0}")]
    Nested(&'static str),
}

/// A message of type `T` with its signer and signature.
///
/// The encoded body is kept next to the decoded one, so verifying and re-encoding never
/// re-serialise (and, because the encoding is canonical, the two always agree).
#[derive(Clone, PartialEq, Eq)]
pub struct Signed<T> {
    body: T,
    body_bytes: Vec<u8>,
    signer: PublicKey,
    signature: Signature,
}

impl<T: Message> Signed<T> {
    /// Signs `body` with `key`.
    pub fn sign(key: &NodeKey, body: T) -> Signed<T> {
        let body_bytes = body.to_bytes();
        let signature = key.sign(body.kind().domain(), &body_bytes);
        Signed { body, body_bytes, signer: key.public(), signature }
    }

    /// Checks the signature (strictly) and any nested signatures.
    pub fn verify(&self) -> Result<(), EnvelopeError> {
        self.verify_own_signature()?;
        self.body.verify_nested(&self.signer)
    }

    /// Checks this envelope's signature only, not nested ones: for a caller that holds the
    /// nested objects byte for byte and verified them before (a taker and its own request).
    pub fn verify_own_signature(&self) -> Result<(), EnvelopeError> {
        let kind = self.body.kind();
        self.signer
            .verify(kind.domain(), &self.body_bytes, &self.signature)
            .map_err(|BadSignature| EnvelopeError::BadSignature(kind))
    }

    /// The message.
    pub fn body(&self) -> &T {
        &self.body
    }

    /// The canonical encoding of the message (what was signed, after the domain).
    pub fn body_bytes(&self) -> &[u8] {
        &self.body_bytes
    }

    /// Who signed it.
    pub fn signer(&self) -> &PublicKey {
        &self.signer
    }

    /// The signature.
    pub fn signature(&self) -> &Signature {
        &self.signature
    }

    /// SHA-256 of the whole envelope: the message's id (an order id, a trade id, …).
    pub fn digest(&self) -> Hash {
        Hash::of(&self.to_bytes())
    }

    /// Decodes `bytes` and gives its digest without encoding it again: the encoding is
    /// canonical, so the accepted bytes are the envelope's only encoding (what
    /// [`Signed::digest`] would hash).
    pub fn from_bytes_with_digest(bytes: &[u8]) -> Result<(Signed<T>, Hash), DecodeError> {
        Ok((Signed::<T>::from_bytes(bytes)?, Hash::of(bytes)))
    }

    /// Decodes and verifies in one step.
    pub fn from_bytes_verified(bytes: &[u8]) -> Result<Signed<T>, VerifiedDecodeError> {
        let signed = Signed::<T>::from_bytes(bytes)?;
        signed.verify()?;
        Ok(signed)
    }

    /// Replaces the signature; only for tests that need a forged or corrupted envelope.
    #[doc(hidden)]
    pub fn with_signature_for_tests(mut self, signature: Signature) -> Signed<T> {
        self.signature = signature;
        self
    }
}

/// Bytes were not a valid signed message.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum VerifiedDecodeError {
    /// Not a well-formed envelope of the expected type.
    #[error("malformed: {0}")]
    Decode(#[from] DecodeError),
    /// Well-formed, but the signature does not verify.
    #[error(transparent)]
    Signature(#[from] EnvelopeError),
}

impl<T: Message> Encode for Signed<T> {
    fn encode(&self, w: &mut Writer) {
        w.u8(ENVELOPE_VERSION)
            .u8(self.body.kind() as u8)
            .put(&self.signer)
            .bytes(&self.body_bytes)
            .put(&self.signature);
    }
}

impl<T: Message> Decode for Signed<T> {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let version = r.u8("envelope version")?;
        if version != ENVELOPE_VERSION {
            return Err(DecodeError::UnsupportedVersion { what: "envelope", version });
        }
        let tag = r.u8("envelope kind")?;
        let kind = Kind::from_tag(tag).ok_or(DecodeError::UnknownTag { what: "envelope kind", tag })?;
        let signer = r.get::<PublicKey>()?;
        let body_bytes = r.bytes(T::MAX_BODY, "envelope body")?.to_vec();
        let signature = r.get::<Signature>()?;
        let body = T::from_bytes(&body_bytes)?;
        if body.kind() != kind {
            return Err(DecodeError::Invalid { what: "envelope kind", why: "does not match the body" });
        }
        Ok(Signed { body, body_bytes, signer, signature })
    }
}

impl<T: fmt::Debug> fmt::Debug for Signed<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signed").field("signer", &self.signer).field("body", &self.body).finish()
    }
}
