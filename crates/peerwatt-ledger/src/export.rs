//! One self-contained export file per ledger, verifiable with nothing else.
//!
//! ```text
//! magic "PWLEDGER" | version u8 (= 1) | owner [32] | head_count u32 | entry_count u64
//! head_count  × ( len u32 | signed tree head )
//! entry_count × ( len u32 | signed ledger entry )
//! end marker "PWLEDEND"
//! ```
//!
//! Heads come first so a verifier can check each against the entries while streaming them.
//! A file cut short, padded or reframed is reported as such, never misread.

use std::io::{self, BufReader, BufWriter, Read, Write};

use peerwatt_core::{PublicKey, Signed, TreeHead, encoding::Encode, messages::MAX_ENTRY_PAYLOAD};
use thiserror::Error;

use crate::ledger::{LedgerError, LedgerReader};
use crate::store::Store;
use crate::verify::{LogVerifier, Problem, VerifyError, VerifyReport, Visit};

/// The first eight bytes of every export file.
pub const MAGIC: &[u8; 8] = b"PWLEDGER";
const END: &[u8; 8] = b"PWLEDEND";
const VERSION: u8 = 1;
/// Largest framed head or entry accepted: an entry envelope is its body plus 106 bytes.
const MAX_RECORD: u32 = (MAX_ENTRY_PAYLOAD + 64 + 256) as u32;

/// Exporting failed.
#[derive(Debug, Error)]
pub enum ExportError {
    /// Reading the ledger failed.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// Writing the file failed.
    #[error("writing the export: {0}")]
    Io(#[from] io::Error),
    /// The ledger has no owner yet (it was never opened by a node).
    #[error("the ledger has no owner yet; nothing to export")]
    NoOwner,
}

/// What an export contains.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExportSummary {
    /// Entries written.
    pub entries: u64,
    /// Signed tree heads written.
    pub heads: u64,
    /// Bytes written.
    pub bytes: u64,
}

/// Writes the first `len()` entries and every head that covers no more than them.
pub fn write_export<S: Store, W: Write>(ledger: &LedgerReader<S>, out: W) -> Result<ExportSummary, ExportError> {
    let size = ledger.len()?;
    write_export_upto(ledger, out, size)
}

/// Writes the first `size` entries (at most `len()`) and every head that covers no more than
/// them: a consistent copy of a ledger that is still being appended to (a running node's, up
/// to the head it just signed).
pub fn write_export_upto<S: Store, W: Write>(
    ledger: &LedgerReader<S>,
    out: W,
    size: u64,
) -> Result<ExportSummary, ExportError> {
    let owner = ledger.owner().ok_or(ExportError::NoOwner)?;
    let size = size.min(ledger.len()?);
    let heads: Vec<Signed<TreeHead>> = ledger.heads()?.into_iter().filter(|h| h.body().size <= size).collect();
    let mut out = CountingWriter { inner: BufWriter::new(out), bytes: 0 };
    out.write_all(MAGIC)?;
    out.write_all(&[VERSION])?;
    out.write_all(&owner.to_bytes())?;
    let head_count = u32::try_from(heads.len()).map_err(|_| io::Error::other("too many tree heads"))?;
    out.write_all(&head_count.to_be_bytes())?;
    out.write_all(&size.to_be_bytes())?;
    for head in &heads {
        write_record(&mut out, &head.to_bytes())?;
    }
    for seq in 0..size {
        write_record(&mut out, &ledger.entry_bytes(seq)?)?;
    }
    out.write_all(END)?;
    out.inner.flush()?;
    Ok(ExportSummary { entries: size, heads: u64::from(head_count), bytes: out.bytes })
}

fn write_record(out: &mut impl Write, bytes: &[u8]) -> io::Result<()> {
    let len = u32::try_from(bytes.len()).map_err(|_| io::Error::other("record too large"))?;
    out.write_all(&len.to_be_bytes())?;
    out.write_all(bytes)
}

struct CountingWriter<W: Write> {
    inner: W,
    bytes: u64,
}

impl<W: Write> Write for CountingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Verifies an export from the file alone: framing, every entry, every head.
pub fn verify_export<R: Read>(input: R) -> Result<VerifyReport, VerifyError> {
    verify_export_visiting(input, &mut ())
}

/// [`verify_export`], handing `visit` every head and entry it checked.
pub fn verify_export_visiting<R: Read>(input: R, visit: &mut impl Visit) -> Result<VerifyReport, VerifyError> {
    let mut r = BufReader::new(input);
    let bad = |why: &str| VerifyError::log(Problem::BadExport(why.to_owned()));
    let mut magic = [0u8; 8];
    read_exact_or(&mut r, &mut magic).map_err(|_| bad("the file is too short to be an export"))?;
    if &magic != MAGIC {
        return Err(bad("it does not start with PWLEDGER"));
    }
    let mut header = [0u8; 1 + 32 + 4 + 8];
    read_exact_or(&mut r, &mut header).map_err(|_| bad("the header is cut off"))?;
    if header[0] != VERSION {
        return Err(bad(&format!("unsupported export version {}", header[0])));
    }
    let owner_bytes: [u8; 32] = header[1..33].try_into().map_err(|_| bad("header"))?;
    let owner = PublicKey::from_bytes(&owner_bytes).map_err(|e| bad(&format!("the owner key is invalid: {e}")))?;
    let head_count = u32::from_be_bytes(header[33..37].try_into().map_err(|_| bad("header"))?);
    let entry_count = u64::from_be_bytes(header[37..45].try_into().map_err(|_| bad("header"))?);

    let mut verifier = LogVerifier::new(owner);
    let mut buf = Vec::new();
    for i in 0..head_count {
        let truncated = || {
            VerifyError::log(Problem::ExportTruncated {
                what: "tree heads",
                declared: u64::from(head_count),
                found: u64::from(i),
            })
        };
        read_record(&mut r, &mut buf).map_err(|e| e.into_verify_error(truncated))?;
        let size = head_size(&buf).ok_or_else(|| bad("a tree head record is too short"))?;
        visit.head(&verifier.add_head(size, &buf)?);
    }
    for seq in 0..entry_count {
        let truncated =
            || VerifyError::at(seq, Problem::ExportTruncated { what: "entries", declared: entry_count, found: seq });
        read_record(&mut r, &mut buf).map_err(|e| e.into_verify_error(truncated))?;
        let checked = verifier.push(seq, &buf, |_| Ok(()))?;
        visit.entry(&checked.entry, checked.leaf);
    }
    let mut end = [0u8; 8];
    read_exact_or(&mut r, &mut end).map_err(|_| bad("the end marker is missing: the file was cut off"))?;
    if &end != END {
        return Err(bad("the end marker is wrong: the counts in the header do not match the records"));
    }
    let mut extra = [0u8; 1];
    if r.read(&mut extra).map_err(|e| bad(&e.to_string()))? != 0 {
        return Err(bad("there are bytes after the end marker"));
    }
    verifier.finish(None)
}

/// The tree size inside an encoded signed tree head: the first 8 bytes of its body, which
/// starts after version, kind, signer and body length (1 + 1 + 32 + 4 bytes).
fn head_size(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.get(38..46)?.try_into().ok()?))
}

enum RecordError {
    Truncated,
    TooLarge(u32),
    Io(io::Error),
}

impl RecordError {
    fn into_verify_error(self, truncated: impl Fn() -> VerifyError) -> VerifyError {
        match self {
            RecordError::Truncated => truncated(),
            RecordError::TooLarge(len) => VerifyError::log(Problem::BadExport(format!(
                "a record claims {len} bytes; the maximum is {MAX_RECORD}"
            ))),
            RecordError::Io(e) => VerifyError::log(Problem::Store(e.to_string())),
        }
    }
}

fn read_exact_or(r: &mut impl Read, buf: &mut [u8]) -> Result<(), RecordError> {
    r.read_exact(buf).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => RecordError::Truncated,
        _ => RecordError::Io(e),
    })
}

fn read_record(r: &mut impl Read, buf: &mut Vec<u8>) -> Result<(), RecordError> {
    let mut len = [0u8; 4];
    read_exact_or(r, &mut len)?;
    let len = u32::from_be_bytes(len);
    if len > MAX_RECORD {
        return Err(RecordError::TooLarge(len));
    }
    buf.resize(len as usize, 0);
    read_exact_or(r, buf)
}
