//! The canonical binary encoding of everything peerwatt signs or stores.
//!
//! Rules (documented byte for byte in `docs/protocol.md`):
//! - unsigned and signed integers: fixed width, big-endian, two's complement for signed;
//! - `bool`: one byte, `0x00` or `0x01`, anything else is an error;
//! - fixed-size byte arrays (keys, hashes, signatures): the raw bytes;
//! - variable byte strings and UTF-8 text: a `u32` length, then the bytes, each with a maximum;
//! - enumerations: one tag byte; unknown tags are errors;
//! - structures: their fields in declaration order, no padding, no field names.
//!
//! Decoding is strict: trailing bytes, unknown tags, over-long strings and invalid UTF-8 are
//! errors. Because every value therefore has exactly one encoding, `encode(decode(b)) == b`
//! for every accepted `b`, which is what makes signatures over encodings well defined.

use thiserror::Error;

/// Why bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    /// The input ended while `what` was being read.
    #[error("input ends inside {what}")]
    UnexpectedEnd {
        /// The field being read.
        what: &'static str,
    },
    /// Bytes were left over after a complete value.
    #[error("{0} unexpected bytes after the end of the value")]
    TrailingBytes(usize),
    /// A tag byte names no known variant.
    #[error("unknown {what} tag {tag:#04x}")]
    UnknownTag {
        /// The enumeration being read.
        what: &'static str,
        /// The tag found.
        tag: u8,
    },
    /// A length prefix exceeds the field's maximum.
    #[error("{what} is {len} bytes long, the maximum is {max}")]
    TooLong {
        /// The field being read.
        what: &'static str,
        /// The length found.
        len: u64,
        /// The largest length allowed.
        max: u64,
    },
    /// Text is not valid UTF-8.
    #[error("{0} is not valid UTF-8")]
    InvalidUtf8(&'static str),
    /// A value is well-formed bytes but not a valid value (e.g. a weak public key).
    #[error("invalid {what}: {why}")]
    Invalid {
        /// The field being read.
        what: &'static str,
        /// What is wrong with it.
        why: &'static str,
    },
    /// The format version is not one this build understands.
    #[error("unsupported {what} version {version}")]
    UnsupportedVersion {
        /// The structure being read.
        what: &'static str,
        /// The version found.
        version: u8,
    },
}

/// Appends canonical encodings to a byte buffer.
#[derive(Debug, Default)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    /// An empty writer.
    pub fn new() -> Writer {
        Writer::default()
    }

    /// An empty writer with room for `n` bytes.
    pub fn with_capacity(n: usize) -> Writer {
        Writer { buf: Vec::with_capacity(n) }
    }

    /// The bytes written so far.
    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    /// Writes one byte.
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.buf.push(v);
        self
    }

    /// Writes a `u16`, big-endian.
    pub fn u16(&mut self, v: u16) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }

    /// Writes a `u32`, big-endian.
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }

    /// Writes a `u64`, big-endian.
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }

    /// Writes an `i64`, big-endian two's complement.
    pub fn i64(&mut self, v: i64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }

    /// Writes a bool as `0x00` or `0x01`.
    pub fn bool(&mut self, v: bool) -> &mut Self {
        self.u8(u8::from(v))
    }

    /// Writes raw bytes with no length (for fixed-size arrays).
    pub fn raw(&mut self, v: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(v);
        self
    }

    /// Writes a `u32` length and the bytes. Lengths beyond `u32::MAX` cannot be produced by
    /// peerwatt's own types (every variable field has a far smaller maximum).
    pub fn bytes(&mut self, v: &[u8]) -> &mut Self {
        let len = u32::try_from(v.len()).unwrap_or(u32::MAX);
        self.u32(len);
        self.raw(v)
    }

    /// Writes a UTF-8 string as length-prefixed bytes.
    pub fn str(&mut self, v: &str) -> &mut Self {
        self.bytes(v.as_bytes())
    }

    /// Writes a value that knows how to encode itself.
    pub fn put<T: Encode + ?Sized>(&mut self, v: &T) -> &mut Self {
        v.encode(self);
        self
    }
}

/// Reads canonical encodings from a byte slice.
#[derive(Debug)]
pub struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A reader over `bytes`.
    pub fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { rest: bytes }
    }

    /// How many bytes are left.
    pub fn remaining(&self) -> usize {
        self.rest.len()
    }

    /// Fails unless every byte has been read.
    pub fn finish(&self) -> Result<(), DecodeError> {
        match self.rest.len() {
            0 => Ok(()),
            n => Err(DecodeError::TrailingBytes(n)),
        }
    }

    /// Reads exactly `n` bytes.
    pub fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        if self.rest.len() < n {
            return Err(DecodeError::UnexpectedEnd { what });
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    /// Reads a fixed-size array.
    pub fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }

    /// Reads one byte.
    pub fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        Ok(self.array::<1>(what)?[0])
    }

    /// Reads a big-endian `u16`.
    pub fn u16(&mut self, what: &'static str) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array(what)?))
    }

    /// Reads a big-endian `u32`.
    pub fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array(what)?))
    }

    /// Reads a big-endian `u64`.
    pub fn u64(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array(what)?))
    }

    /// Reads a big-endian `i64`.
    pub fn i64(&mut self, what: &'static str) -> Result<i64, DecodeError> {
        Ok(i64::from_be_bytes(self.array(what)?))
    }

    /// Reads a bool; only `0x00` and `0x01` are accepted.
    pub fn bool(&mut self, what: &'static str) -> Result<bool, DecodeError> {
        match self.u8(what)? {
            0 => Ok(false),
            1 => Ok(true),
            tag => Err(DecodeError::UnknownTag { what, tag }),
        }
    }

    /// Reads a length-prefixed byte string of at most `max` bytes.
    pub fn bytes(&mut self, max: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        let len = self.u32(what)?;
        if len as usize > max {
            return Err(DecodeError::TooLong { what, len: u64::from(len), max: max as u64 });
        }
        self.take(len as usize, what)
    }

    /// Reads a length-prefixed UTF-8 string of at most `max` bytes.
    pub fn str(&mut self, max: usize, what: &'static str) -> Result<&'a str, DecodeError> {
        let b = self.bytes(max, what)?;
        std::str::from_utf8(b).map_err(|_| DecodeError::InvalidUtf8(what))
    }

    /// Reads a value that knows how to decode itself.
    pub fn get<T: Decode>(&mut self) -> Result<T, DecodeError> {
        T::decode(self)
    }
}

/// A type with a canonical encoding.
pub trait Encode {
    /// Appends the canonical encoding of `self`.
    fn encode(&self, w: &mut Writer);

    /// The canonical encoding of `self` as a new buffer.
    fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer::new();
        self.encode(&mut w);
        w.into_bytes()
    }
}

/// A type that can be decoded strictly from its canonical encoding.
pub trait Decode: Sized {
    /// Reads one value, leaving the reader after it.
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError>;

    /// Decodes a value that must use all of `bytes`.
    fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let v = Self::decode(&mut r)?;
        r.finish()?;
        Ok(v)
    }
}

/// Implements `Encode`/`Decode` for a newtype over a fixed-width integer.
macro_rules! int_newtype_codec {
    ($ty:ty, $prim:ident, $what:literal) => {
        impl Encode for $ty {
            fn encode(&self, w: &mut Writer) {
                w.$prim(self.0);
            }
        }
        impl Decode for $ty {
            fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
                Ok(Self(r.$prim($what)?))
            }
        }
    };
}

int_newtype_codec!(crate::units::Wh, u64, "energy");
int_newtype_codec!(crate::units::W, i64, "power");
int_newtype_codec!(crate::units::Price, u64, "price");
int_newtype_codec!(crate::units::Money, i64, "money");
int_newtype_codec!(crate::time::Timestamp, u64, "timestamp");
int_newtype_codec!(crate::time::IntervalId, u64, "interval");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_are_big_endian_fixed_width() {
        let mut w = Writer::new();
        w.u8(1).u16(0x0203).u32(0x0405_0607).u64(8).i64(-1).bool(true);
        assert_eq!(hex::encode(w.into_bytes()), "010203040506070000000000000008ffffffffffffffff01");
    }

    #[test]
    fn strict_decoding_rejects_what_it_must() {
        assert_eq!(Reader::new(&[2]).bool("flag"), Err(DecodeError::UnknownTag { what: "flag", tag: 2 }));
        assert_eq!(Reader::new(&[0, 0]).u32("n"), Err(DecodeError::UnexpectedEnd { what: "n" }));
        let long = [0, 0, 0, 5, b'a', b'b', b'c', b'd', b'e'];
        assert_eq!(Reader::new(&long).bytes(4, "name"), Err(DecodeError::TooLong { what: "name", len: 5, max: 4 }));
        assert_eq!(Reader::new(&[0, 0, 0, 1, 0xff]).str(8, "name"), Err(DecodeError::InvalidUtf8("name")));
        // A huge declared length must fail cleanly, not allocate.
        assert_eq!(
            Reader::new(&[0xff, 0xff, 0xff, 0xff]).bytes(usize::MAX, "blob"),
            Err(DecodeError::UnexpectedEnd { what: "blob" })
        );
        assert_eq!(crate::units::Wh::from_bytes(&[0; 9]), Err(DecodeError::TrailingBytes(1)));
    }

    #[test]
    fn strings_round_trip() {
        let mut w = Writer::new();
        w.str("Zoë");
        let b = w.into_bytes();
        assert_eq!(hex::encode(&b), "000000045a6fc3ab");
        assert_eq!(Reader::new(&b).str(16, "s"), Ok("Zoë"));
    }
}
