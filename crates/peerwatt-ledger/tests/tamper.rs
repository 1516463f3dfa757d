//! Every kind of tampering is caught by `verify`, with the right entry number, both in the
//! sled store and in an export file.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test panics to fail

use std::sync::Arc;

use peerwatt_core::{Encode, EntryKind, Hash, LedgerEntry, ManualClock, NodeKey, Signed, Timestamp};
use peerwatt_ledger::merkle::leaf_hash;
use peerwatt_ledger::{Ledger, LedgerReader, MemoryStore, Problem, SledStore, Store, verify_export, write_export};

const OWNER_SEED: [u8; 32] = [11; 32];

fn clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(Timestamp(1_717_243_650_000)))
}

/// A sled ledger of `n` entries with a signed head every 4 entries.
fn sled_ledger(dir: &std::path::Path, n: u64) -> Ledger<SledStore> {
    let ledger = Ledger::open_dir(dir, NodeKey::from_seed(&OWNER_SEED), clock()).unwrap();
    for i in 0..n {
        ledger.append(EntryKind::ConfigChange, format!("entry {i}").into_bytes()).unwrap();
        if i % 4 == 3 {
            ledger.sign_head().unwrap();
        }
    }
    ledger
}

fn reopen(dir: &std::path::Path) -> LedgerReader<SledStore> {
    LedgerReader::open_dir(dir).unwrap()
}

#[test]
fn an_untouched_ledger_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = sled_ledger(dir.path(), 10);
    let root = ledger.root();
    drop(ledger);
    let report = reopen(dir.path()).verify().unwrap();
    assert_eq!(report.entries, 10);
    assert_eq!(report.heads, 2);
    assert_eq!(report.root, root);
    assert_eq!(report.owner, NodeKey::from_seed(&OWNER_SEED).public());
}

#[test]
fn flipped_byte_is_a_bad_signature_at_that_entry() {
    let dir = tempfile::tempdir().unwrap();
    drop(sled_ledger(dir.path(), 10));
    let reader = reopen(dir.path());
    let mut bytes = reader.entry_bytes(6).unwrap();
    let last = bytes.len() - 70; // inside the payload, before the signature
    bytes[last] ^= 0x01;
    reader.store().tamper_entry(6, Some(bytes)).unwrap();
    let err = reader.verify().unwrap_err();
    assert_eq!(err.entry, Some(6));
    assert_eq!(err.problem, Problem::BadSignature);
    assert_eq!(err.to_string(), "entry 6: bad signature: the entry was altered after it was signed");
}

#[test]
fn a_genuine_signature_moved_to_another_entry_is_a_bad_signature() {
    // Entry 5 keeps its bytes but carries entry 4's (valid, owner-made) signature.
    let dir = tempfile::tempdir().unwrap();
    drop(sled_ledger(dir.path(), 8));
    let reader = reopen(dir.path());
    let donor = reader.entry(4).unwrap().signature().to_bytes();
    let mut bytes = reader.entry_bytes(5).unwrap();
    let n = bytes.len();
    bytes[n - 64..].copy_from_slice(&donor);
    reader.store().tamper_entry(5, Some(bytes)).unwrap();
    let err = reader.verify().unwrap_err();
    assert_eq!(err.entry, Some(5));
    assert_eq!(err.problem, Problem::BadSignature);
}

#[test]
fn flipped_byte_in_framing_is_malformed_at_that_entry() {
    let dir = tempfile::tempdir().unwrap();
    drop(sled_ledger(dir.path(), 5));
    let reader = reopen(dir.path());
    let mut bytes = reader.entry_bytes(3).unwrap();
    bytes[0] ^= 0xff; // the envelope version
    reader.store().tamper_entry(3, Some(bytes)).unwrap();
    let err = reader.verify().unwrap_err();
    assert_eq!(err.entry, Some(3));
    assert!(matches!(err.problem, Problem::Malformed(_)), "{err}");
}

#[test]
fn missing_entry_is_reported_where_the_gap_is() {
    let dir = tempfile::tempdir().unwrap();
    drop(sled_ledger(dir.path(), 10));
    let reader = reopen(dir.path());
    reader.store().tamper_entry(4, None).unwrap();
    let err = reader.verify().unwrap_err();
    assert_eq!(err.entry, Some(4));
    assert_eq!(err.problem, Problem::Missing { next_stored: Some(5) });
}

#[test]
fn reordered_entries_are_misplaced() {
    let dir = tempfile::tempdir().unwrap();
    drop(sled_ledger(dir.path(), 10));
    let reader = reopen(dir.path());
    let (a, b) = (reader.entry_bytes(2).unwrap(), reader.entry_bytes(3).unwrap());
    reader.store().tamper_entry(2, Some(b)).unwrap();
    reader.store().tamper_entry(3, Some(a)).unwrap();
    let err = reader.verify().unwrap_err();
    assert_eq!(err.entry, Some(2));
    assert_eq!(err.problem, Problem::Misplaced { found: 3 });
}

#[test]
fn entry_signed_by_another_key_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    drop(sled_ledger(dir.path(), 6));
    let reader = reopen(dir.path());
    let genuine = reader.entry(5).unwrap();
    let forger = NodeKey::from_seed(&[66; 32]);
    let forged = Signed::sign(&forger, genuine.body().clone());
    reader.store().tamper_entry(5, Some(forged.to_bytes())).unwrap();
    let err = reader.verify().unwrap_err();
    assert_eq!(err.entry, Some(5));
    assert!(
        matches!(err.problem, Problem::WrongSigner { ref found, .. } if *found == forger.public().to_string()),
        "{err}"
    );
}

#[test]
fn broken_chain_is_reported_even_when_the_owner_re_signs() {
    // The owner itself rewrites entry 7 with a wrong previous hash and signs it properly:
    // the signature is fine, the chain is not.
    let dir = tempfile::tempdir().unwrap();
    drop(sled_ledger(dir.path(), 10));
    let reader = reopen(dir.path());
    let mut entry: LedgerEntry = reader.entry(7).unwrap().body().clone();
    entry.prev = Hash([0xab; 32]);
    let resigned = Signed::sign(&NodeKey::from_seed(&OWNER_SEED), entry);
    reader.store().tamper_entry(7, Some(resigned.to_bytes())).unwrap();
    let err = reader.verify().unwrap_err();
    assert_eq!(err.entry, Some(7));
    assert!(matches!(err.problem, Problem::BrokenChain { found, .. } if found == Hash([0xab; 32])), "{err}");
}

/// The owner replaces entry 1 of a 6-entry ledger with different content, then re-signs and
/// re-chains every entry after it, as only the owner (holding the key) could.
fn rewrite_history_as_owner<S: Store>(reader: &LedgerReader<S>) {
    let key = NodeKey::from_seed(&OWNER_SEED);
    let mut prev = leaf_hash(&reader.entry_bytes(0).unwrap());
    for seq in 1..6 {
        let mut entry = reader.entry(seq).unwrap().body().clone();
        if seq == 1 {
            entry.payload = b"a different history".to_vec();
        }
        entry.prev = prev;
        let bytes = Signed::sign(&key, entry).to_bytes();
        prev = leaf_hash(&bytes);
        reader.store().tamper_entry(seq, Some(bytes)).unwrap();
    }
}

#[test]
fn owner_rewriting_history_consistently_is_caught_by_stored_nodes() {
    // Signatures and chain are fine after the rewrite; the stored Merkle nodes are not: entry 3
    // completes node (level 2, index 0), the lowest stored level, which covers entry 1.
    let dir = tempfile::tempdir().unwrap();
    drop(sled_ledger(dir.path(), 6));
    let reader = reopen(dir.path());
    rewrite_history_as_owner(&reader);
    let err = reader.verify().unwrap_err();
    assert_eq!(err.entry, Some(3));
    assert!(matches!(err.problem, Problem::NodeMismatch { level: 2, index: 0 }), "{err}");
}

#[test]
fn owner_rewriting_history_consistently_is_caught_by_its_own_signed_head() {
    // An export carries no Merkle nodes, but the head signed at size 4 gives the rewrite away.
    let ledger = Ledger::open(MemoryStore::new(), NodeKey::from_seed(&OWNER_SEED), clock()).unwrap();
    for i in 0..6 {
        ledger.append(EntryKind::ConfigChange, format!("entry {i}").into_bytes()).unwrap();
        if i == 3 {
            ledger.sign_head().unwrap();
        }
    }
    rewrite_history_as_owner(ledger.reader());
    let mut file = Vec::new();
    write_export(ledger.reader(), &mut file).unwrap();
    let err = verify_export(&file[..]).unwrap_err();
    assert!(matches!(err.problem, Problem::HeadMismatch { size: 4, .. }), "{err}");
}

#[test]
fn cut_off_end_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    drop(sled_ledger(dir.path(), 10));
    let reader = reopen(dir.path());
    reader.store().tamper_entry(9, None).unwrap();
    reader.store().tamper_entry(8, None).unwrap();
    let err = reader.verify().unwrap_err();
    assert_eq!(err.entry, Some(8));
    assert_eq!(err.problem, Problem::SizeMismatch { recorded: 10, found: 8 });

    // Cutting the recorded size too still leaves the signed head at 8 entries... which is now
    // covered, so cut below it: the head covering 8 entries then proves the loss.
    reader.store().tamper_entry(7, None).unwrap();
    reader.store().tamper_size(7).unwrap();
    let err = reader.verify().unwrap_err();
    assert_eq!(err.problem, Problem::HeadBeyondLog { size: 8, len: 7 });
}

fn export_of(n: u64) -> Vec<u8> {
    let ledger = Ledger::open(MemoryStore::new(), NodeKey::from_seed(&OWNER_SEED), clock()).unwrap();
    for i in 0..n {
        ledger.append(EntryKind::ConfigChange, format!("entry {i}").into_bytes()).unwrap();
    }
    ledger.sign_head().unwrap();
    let mut file = Vec::new();
    let summary = write_export(ledger.reader(), &mut file).unwrap();
    assert_eq!(summary.entries, n);
    assert_eq!(summary.bytes, file.len() as u64);
    file
}

/// Byte offset of entry `seq`'s record in an export with one head.
fn entry_offset(file: &[u8], seq: u64) -> usize {
    let mut at = 8 + 1 + 32 + 4 + 8;
    let record_len = |at: usize| u32::from_be_bytes(file[at..at + 4].try_into().unwrap()) as usize;
    at += 4 + record_len(at); // the head
    for _ in 0..seq {
        at += 4 + record_len(at);
    }
    at
}

#[test]
fn export_verifies_from_the_file_alone() {
    let file = export_of(20);
    let report = verify_export(&file[..]).unwrap();
    assert_eq!((report.entries, report.heads), (20, 1));
}

#[test]
fn export_flipped_byte_is_caught_at_its_entry() {
    let mut file = export_of(20);
    let at = entry_offset(&file, 13) + 4 + 60;
    file[at] ^= 0x20;
    let err = verify_export(&file[..]).unwrap_err();
    assert_eq!(err.entry, Some(13), "{err}");
}

#[test]
fn truncated_export_is_caught_wherever_it_is_cut() {
    let file = export_of(20);
    let inside_entry_5 = entry_offset(&file, 5) + 10;
    let err = verify_export(&file[..inside_entry_5]).unwrap_err();
    assert_eq!(err.entry, Some(5));
    assert_eq!(err.problem, Problem::ExportTruncated { what: "entries", declared: 20, found: 5 });
    assert!(err.to_string().contains("truncated"));

    let before_end_marker = file.len() - 8;
    let err = verify_export(&file[..before_end_marker]).unwrap_err();
    assert!(matches!(err.problem, Problem::BadExport(ref why) if why.contains("cut off")), "{err}");

    for cut in [0, 5, 20, 50] {
        assert!(verify_export(&file[..cut]).is_err(), "cut at {cut}");
    }
}

#[test]
fn export_with_removed_entry_and_fixed_up_count_is_caught_by_the_head() {
    // Drop the last entry and lower the declared count: framing is consistent again, but the
    // signed head covering 20 entries is not.
    let file = export_of(20);
    let mut cut = file[..entry_offset(&file, 19)].to_vec();
    cut.extend_from_slice(b"PWLEDEND");
    cut[45..53].copy_from_slice(&19u64.to_be_bytes());
    let err = verify_export(&cut[..]).unwrap_err();
    assert_eq!(err.problem, Problem::HeadBeyondLog { size: 20, len: 19 });
}

#[test]
fn export_rejects_garbage_and_padding() {
    let mut file = export_of(3);
    file.push(0);
    assert!(matches!(verify_export(&file[..]).unwrap_err().problem, Problem::BadExport(_)));
    assert!(matches!(verify_export(&b"not an export at all"[..]).unwrap_err().problem, Problem::BadExport(_)));
    let mut huge = export_of(1);
    let at = entry_offset(&huge, 0);
    huge[at..at + 4].copy_from_slice(&u32::MAX.to_be_bytes());
    assert!(matches!(verify_export(&huge[..]).unwrap_err().problem, Problem::BadExport(ref w) if w.contains("claims")));
}
