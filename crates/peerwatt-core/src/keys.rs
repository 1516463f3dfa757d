//! Node keys: ed25519 signing keys, public keys, signatures, key files and public ids.
//!
//! One key per node signs everything the node says and is also its libp2p identity, so the
//! node's public id (its libp2p `PeerId`, `12D3KooW…`) names both the network peer and the
//! signer. Verification is always `verify_strict`, and weak (small-order) public keys are
//! refused when a key is decoded, so a signature can never be valid for more than one message
//! or made without a secret key.

use std::fmt;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use thiserror::Error;
use zeroize::Zeroizing;

use crate::encoding::{Decode, DecodeError, Encode, Reader, Writer};

/// First line of a key file; names the format so a future one can be told apart.
const KEY_FILE_HEADER: &str = "peerwatt-ed25519-secret-key-v1";

/// Prefix of a libp2p `PeerId` for an ed25519 key: identity multihash (0x00), length 36 (0x24),
/// then the protobuf `PublicKey { Type = Ed25519 (1), Data = 32 bytes }` (08 01 12 20).
const PEER_ID_PREFIX: [u8; 6] = [0x00, 0x24, 0x08, 0x01, 0x12, 0x20];

/// A key file problem.
#[derive(Debug, Error)]
pub enum KeyError {
    /// The key file could not be read or written.
    #[error("key file {path}: {source}")]
    Io {
        /// The key file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A key file exists where a new key was to be written.
    #[error("key file {0} already exists; refusing to overwrite a node key")]
    AlreadyExists(PathBuf),
    /// The key file can be read by other users.
    #[error("key file {path} is readable by group or others (mode {mode:04o}); run `chmod 600 {path}`")]
    TooOpen {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The operating system could not provide randomness for a new key.
    #[error("the operating system's random number generator failed: {0}")]
    Random(String),
    /// The key file's contents are not a peerwatt key.
    #[error("key file {path} is not a peerwatt key file: {why}")]
    Malformed {
        /// The key file.
        path: PathBuf,
        /// What is wrong.
        why: &'static str,
    },
}

/// A public id could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PublicIdError {
    /// Not base58.
    #[error("not a base58 peer id")]
    NotBase58,
    /// Base58, but not an ed25519 libp2p peer id.
    #[error("not an ed25519 peer id (expected 12D3KooW…)")]
    NotEd25519,
    /// An ed25519 id whose key is invalid or weak.
    #[error("the key inside the peer id is invalid or weak")]
    BadKey,
}

/// A signature did not verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("signature does not verify")]
pub struct BadSignature;

/// A node's secret signing key.
pub struct NodeKey {
    signing: SigningKey,
}

impl NodeKey {
    /// A new key from the operating system's random number generator.
    pub fn generate() -> Result<NodeKey, KeyError> {
        let mut seed = Zeroizing::new([0u8; 32]);
        getrandom::fill(seed.as_mut()).map_err(|e| KeyError::Random(e.to_string()))?;
        Ok(NodeKey::from_seed(&seed))
    }

    /// The key with this 32-byte secret seed (tests and test vectors use fixed seeds).
    pub fn from_seed(seed: &[u8; 32]) -> NodeKey {
        NodeKey { signing: SigningKey::from_bytes(seed) }
    }

    /// The matching public key.
    pub fn public(&self) -> PublicKey {
        PublicKey(self.signing.verifying_key())
    }

    /// Signs `message` under `domain` (see [`signing_input`]).
    pub fn sign(&self, domain: &str, message: &[u8]) -> Signature {
        Signature(self.signing.sign(&signing_input(domain, message)))
    }

    /// The raw 32-byte secret seed, for building a libp2p keypair from the same key.
    pub fn secret_seed(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.signing.to_bytes())
    }

    /// Writes the key to a new file with mode 0600. Refuses to overwrite an existing file.
    pub fn save(&self, path: &Path) -> Result<(), KeyError> {
        let io = |source| KeyError::Io { path: path.to_owned(), source };
        let mut file =
            fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).map_err(|e| match e.kind() {
                std::io::ErrorKind::AlreadyExists => KeyError::AlreadyExists(path.to_owned()),
                _ => io(e),
            })?;
        let hex = Zeroizing::new(hex_encode(self.signing.as_bytes()));
        let text = Zeroizing::new(format!("{KEY_FILE_HEADER}\n{}\n", hex.as_str()));
        file.write_all(text.as_bytes()).map_err(io)?;
        file.sync_all().map_err(io)
    }

    /// Reads a key file, refusing one that group or others can read.
    pub fn load(path: &Path) -> Result<NodeKey, KeyError> {
        let io = |source| KeyError::Io { path: path.to_owned(), source };
        let mode = fs::metadata(path).map_err(io)?.permissions().mode();
        if mode & 0o077 != 0 {
            return Err(KeyError::TooOpen { path: path.to_owned(), mode: mode & 0o7777 });
        }
        let text = Zeroizing::new(fs::read_to_string(path).map_err(io)?);
        let malformed = |why| KeyError::Malformed { path: path.to_owned(), why };
        let mut lines = text.lines();
        if lines.next() != Some(KEY_FILE_HEADER) {
            return Err(malformed("the first line is not the peerwatt key header"));
        }
        let hex = lines.next().ok_or_else(|| malformed("the secret key line is missing"))?;
        let seed =
            Zeroizing::new(hex_decode_32(hex.trim()).ok_or_else(|| malformed("the secret key is not 64 hex digits"))?);
        if lines.any(|l| !l.trim().is_empty()) {
            return Err(malformed("unexpected text after the secret key"));
        }
        Ok(NodeKey::from_seed(&seed))
    }
}

impl fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeKey({})", self.public())
    }
}

/// The bytes actually signed: the domain, a zero byte, then the message.
///
/// Domains are ASCII strings of the form `peerwatt/v1/<kind>` and never contain a zero byte,
/// so no signature made for one kind of message can be replayed as another.
pub fn signing_input(domain: &str, message: &[u8]) -> Vec<u8> {
    let mut input = Vec::with_capacity(domain.len() + 1 + message.len());
    input.extend_from_slice(domain.as_bytes());
    input.push(0);
    input.extend_from_slice(message);
    input
}

/// A node's (or community admin's) ed25519 public key. Never a weak key.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey(VerifyingKey);

impl PublicKey {
    /// The key with these bytes; refuses encodings that are not points and small-order (weak) keys.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<PublicKey, BadKey> {
        if let Some(key) = known_keys::get(bytes) {
            return Ok(PublicKey(key));
        }
        let key = VerifyingKey::from_bytes(bytes).map_err(|_| BadKey::NotAPoint)?;
        if key.is_weak() {
            return Err(BadKey::Weak);
        }
        known_keys::put(bytes, key);
        Ok(PublicKey(key))
    }

    /// The 32 key bytes.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// Checks `signature` over `message` under `domain`, strictly.
    pub fn verify(&self, domain: &str, message: &[u8], signature: &Signature) -> Result<(), BadSignature> {
        self.0.verify_strict(&signing_input(domain, message), &signature.0).map_err(|_| BadSignature)
    }

    /// The libp2p `PeerId` of this key in its usual base58 text form (`12D3KooW…`).
    pub fn peer_id(&self) -> String {
        let mut raw = Vec::with_capacity(38);
        raw.extend_from_slice(&PEER_ID_PREFIX);
        raw.extend_from_slice(self.0.as_bytes());
        bs58::encode(raw).into_string()
    }

    /// Parses a public id as printed by [`PublicKey::peer_id`].
    pub fn from_peer_id(text: &str) -> Result<PublicKey, PublicIdError> {
        let raw = bs58::decode(text.trim()).into_vec().map_err(|_| PublicIdError::NotBase58)?;
        let key = raw
            .strip_prefix(&PEER_ID_PREFIX[..])
            .and_then(|k| <[u8; 32]>::try_from(k).ok())
            .ok_or(PublicIdError::NotEd25519)?;
        PublicKey::from_bytes(&key).map_err(|_| PublicIdError::BadKey)
    }
}

/// Keys decoded before. Decoding a key decompresses a curve point (a square root, about as
/// costly as a third of a signature check), and every decoded message carries two to five
/// keys, while a community has a few hundred. Only valid, non-weak keys are kept; the cache
/// is emptied when full, so hostile input cannot grow it without bound.
mod known_keys {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};

    use ed25519_dalek::VerifyingKey;

    const CAPACITY: usize = 4096;

    fn cache() -> std::sync::MutexGuard<'static, HashMap<[u8; 32], VerifyingKey>> {
        static CACHE: OnceLock<Mutex<HashMap<[u8; 32], VerifyingKey>>> = OnceLock::new();
        // A panic elsewhere while holding the lock cannot leave a wrong entry: inserts are whole.
        CACHE.get_or_init(Mutex::default).lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(super) fn get(bytes: &[u8; 32]) -> Option<VerifyingKey> {
        cache().get(bytes).copied()
    }

    pub(super) fn put(bytes: &[u8; 32], key: VerifyingKey) {
        let mut cache = cache();
        if cache.len() >= CAPACITY {
            cache.clear();
        }
        cache.insert(*bytes, key);
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.peer_id())
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.peer_id())
    }
}

/// Why 32 bytes are not an acceptable public key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum BadKey {
    /// The bytes do not encode a curve point.
    #[error("not a valid ed25519 point")]
    NotAPoint,
    /// The point has small order: signatures under it prove nothing.
    #[error("weak (small-order) ed25519 key")]
    Weak,
}

impl Encode for PublicKey {
    fn encode(&self, w: &mut Writer) {
        w.raw(self.0.as_bytes());
    }
}

impl Decode for PublicKey {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let bytes = r.array::<32>("public key")?;
        PublicKey::from_bytes(&bytes).map_err(|e| DecodeError::Invalid {
            what: "public key",
            why: match e {
                BadKey::NotAPoint => "not a valid ed25519 point",
                BadKey::Weak => "weak (small-order) key",
            },
        })
    }
}

/// An ed25519 signature (64 bytes).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Signature(ed25519_dalek::Signature);

impl Signature {
    /// The signature with these bytes (validity is checked when it is verified).
    pub fn from_bytes(bytes: &[u8; 64]) -> Signature {
        Signature(ed25519_dalek::Signature::from_bytes(bytes))
    }

    /// The 64 signature bytes.
    pub fn to_bytes(&self) -> [u8; 64] {
        self.0.to_bytes()
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({})", hex_encode(&self.to_bytes()))
    }
}

impl Encode for Signature {
    fn encode(&self, w: &mut Writer) {
        w.raw(&self.to_bytes());
    }
}

impl Decode for Signature {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Signature::from_bytes(&r.array::<64>("signature")?))
    }
}

/// Lower-case hex of `bytes`.
pub fn hex_encode(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    s
}

/// 32 bytes from exactly 64 hex digits, or `None`.
fn hex_decode_32(text: &str) -> Option<[u8; 32]> {
    let digits = text.as_bytes();
    if digits.len() != 64 {
        return None;
    }
    let nibble = |c: u8| char::from(c).to_digit(16).and_then(|d| u8::try_from(d).ok());
    let mut out = [0u8; 32];
    for (i, pair) in digits.chunks_exact(2).enumerate() {
        out[i] = nibble(pair[0])? << 4 | nibble(pair[1])?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_and_verify_with_domain_separation() {
        let key = NodeKey::from_seed(&[7; 32]);
        let sig = key.sign("peerwatt/v1/offer", b"hello");
        assert_eq!(key.public().verify("peerwatt/v1/offer", b"hello", &sig), Ok(()));
        assert_eq!(key.public().verify("peerwatt/v1/bid", b"hello", &sig), Err(BadSignature));
        assert_eq!(key.public().verify("peerwatt/v1/offer", b"hellO", &sig), Err(BadSignature));
        let other = NodeKey::from_seed(&[8; 32]).public();
        assert_eq!(other.verify("peerwatt/v1/offer", b"hello", &sig), Err(BadSignature));
    }

    #[test]
    fn weak_and_invalid_keys_are_refused() {
        // The identity point (small order) encodes as 01 00 … 00.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert_eq!(PublicKey::from_bytes(&identity), Err(BadKey::Weak));
        // All-zero is a small-order point too.
        assert_eq!(PublicKey::from_bytes(&[0; 32]), Err(BadKey::Weak));
        // A y coordinate with no matching x is not a point.
        let mut not_a_point = [0u8; 32];
        not_a_point[0] = 2;
        assert_eq!(PublicKey::from_bytes(&not_a_point), Err(BadKey::NotAPoint));
        assert!(matches!(PublicKey::from_bytes(&[0; 32]).map_err(|_| ()), Err(())));
        assert!(matches!(PublicKey::from_bytes(&identity).map(|_| ()), Err(BadKey::Weak)));
        assert!(matches!(
            PublicKey::decode(&mut Reader::new(&identity)),
            Err(DecodeError::Invalid { what: "public key", .. })
        ));
    }

    #[test]
    fn non_canonical_signature_scalar_is_rejected() {
        let key = NodeKey::from_seed(&[9; 32]);
        let sig = key.sign("d", b"m").to_bytes();
        // Adding the group order L to s gives the same point equation but a non-canonical
        // scalar; verify_strict must reject it (malleability).
        const L: [u8; 32] = [
            0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14, 0, 0, 0, 0,
            0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
        ];
        let mut s_plus_l = sig;
        let mut carry = 0u16;
        for i in 0..32 {
            let v = u16::from(s_plus_l[32 + i]) + u16::from(L[i]) + carry;
            s_plus_l[32 + i] = (v & 0xff) as u8;
            carry = v >> 8;
        }
        assert_eq!(key.public().verify("d", b"m", &Signature::from_bytes(&s_plus_l)), Err(BadSignature));
    }

    #[test]
    fn peer_id_matches_libp2p() {
        for seed in [[1u8; 32], [42; 32], [255; 32]] {
            let key = NodeKey::from_seed(&seed);
            let mut secret = seed;
            let libp2p = libp2p_identity::Keypair::ed25519_from_bytes(&mut secret).unwrap();
            let expected = libp2p.public().to_peer_id().to_string();
            assert_eq!(key.public().peer_id(), expected);
            assert!(expected.starts_with("12D3KooW"));
            assert_eq!(PublicKey::from_peer_id(&expected), Ok(key.public()));
        }
        assert_eq!(PublicKey::from_peer_id("0OIl"), Err(PublicIdError::NotBase58));
        assert_eq!(
            PublicKey::from_peer_id("QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N"),
            Err(PublicIdError::NotEd25519)
        );
    }

    #[test]
    fn key_files_are_private_and_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.key");
        let key = NodeKey::generate().unwrap();
        key.save(&path).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(NodeKey::load(&path).unwrap().public(), key.public());
        assert!(matches!(NodeKey::generate().unwrap().save(&path), Err(KeyError::AlreadyExists(_))));
        assert_eq!(NodeKey::load(&path).unwrap().public(), key.public(), "the original key survives");

        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let err = NodeKey::load(&path).unwrap_err();
        assert!(matches!(err, KeyError::TooOpen { mode: 0o644, .. }), "{err}");
        assert!(err.to_string().contains("chmod 600"));
    }

    #[test]
    fn malformed_key_files_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in [
            ("empty", ""),
            ("header-only", "peerwatt-ed25519-secret-key-v1\n"),
            ("short", "peerwatt-ed25519-secret-key-v1\nabcd\n"),
            ("not-hex", &format!("peerwatt-ed25519-secret-key-v1\n{}\n", "zz".repeat(32))),
            ("trailing", &format!("peerwatt-ed25519-secret-key-v1\n{}\nmore\n", "ab".repeat(32))),
        ] {
            let path = dir.path().join(name);
            fs::write(&path, text).unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
            assert!(matches!(NodeKey::load(&path), Err(KeyError::Malformed { .. })), "{name}");
        }
        assert!(matches!(NodeKey::load(&dir.path().join("missing")), Err(KeyError::Io { .. })));
    }
}
