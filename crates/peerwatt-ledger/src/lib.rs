//! peerwatt's tamper-evident ledger.
//!
//! Each node keeps an append-only log of entries it signs. Every entry names the hash of the
//! one before it (a hash chain) and is a leaf of an RFC 9162 Merkle tree, whose signed tree
//! heads the node publishes. Anyone holding two heads can demand a consistency proof; anyone
//! holding an entry can check an inclusion proof; an export file verifies on its own.
//!
//! - [`merkle`]: pure RFC 9162 tree hashing, proofs and proof verification;
//! - [`store`]: the storage trait with sled and in-memory implementations;
//! - [`ledger`]: appending (durable, with group commit), heads, proofs;
//! - [`verify`]: the pure entry-by-entry verifier;
//! - [`export`]: the self-contained export file.

pub mod export;
pub mod ledger;
pub mod merkle;
pub mod proof_file;
pub mod store;
pub mod verify;

pub use export::{ExportError, ExportSummary, verify_export, verify_export_visiting, write_export, write_export_upto};
pub use ledger::{Appended, InclusionProof, InclusionProofError, Ledger, LedgerError, LedgerReader};
pub use store::{MemoryStore, SledStore, Store, StoreError};
pub use verify::{Checked, LogVerifier, Problem, VerifyError, VerifyReport, Visit};
