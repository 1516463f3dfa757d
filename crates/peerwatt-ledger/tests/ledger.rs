//! Appending, reopening, proofs and group commit on the real sled store.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test panics to fail

use std::sync::Arc;
use std::time::Duration;

use peerwatt_core::{EntryKind, ManualClock, NodeKey, Timestamp};
use peerwatt_ledger::merkle::{leaf_hash, verify_consistency};
use peerwatt_ledger::{InclusionProofError, Ledger, LedgerError, LedgerReader, MemoryStore};

fn key() -> NodeKey {
    NodeKey::from_seed(&[5; 32])
}

#[test]
fn entries_survive_reopen_and_the_chain_continues() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(Timestamp(1_000_000)));
    let ledger = Ledger::open_dir(dir.path(), key(), clock.clone()).unwrap();
    let first = ledger.append_batch((0..5).map(|i| (EntryKind::ConfigChange, vec![i])).collect()).unwrap();
    assert_eq!(first.iter().map(|a| a.seq).collect::<Vec<_>>(), vec![0, 1, 2, 3, 4]);
    let root5 = ledger.root();
    drop(ledger);

    clock.advance(Duration::from_secs(60));
    let ledger = Ledger::open_dir(dir.path(), key(), clock.clone()).unwrap();
    assert_eq!(ledger.len().unwrap(), 5);
    assert_eq!(ledger.root(), root5, "the Merkle frontier is rebuilt from stored nodes");
    let next = ledger.append(EntryKind::TradeAgreed, b"trade".to_vec()).unwrap();
    assert_eq!(next.seq, 5);
    let e = ledger.entry(5).unwrap();
    assert_eq!(e.body().prev, first[4].hash);
    assert_eq!(e.body().time, Timestamp(1_060_000));
    assert_eq!(e.body().kind, EntryKind::TradeAgreed);
    assert_eq!(ledger.verify().unwrap().entries, 6);
}

#[test]
fn entry_times_never_go_backwards() {
    let clock = Arc::new(ManualClock::new(Timestamp(5_000)));
    let ledger = Ledger::open(MemoryStore::new(), key(), clock.clone()).unwrap();
    ledger.append(EntryKind::ConfigChange, vec![]).unwrap();
    clock.set(Timestamp(1_000));
    ledger.append(EntryKind::ConfigChange, vec![]).unwrap();
    assert_eq!(ledger.entry(1).unwrap().body().time, Timestamp(5_000));
}

#[test]
fn another_nodes_key_cannot_open_the_ledger() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(Timestamp(0)));
    drop(Ledger::open_dir(dir.path(), key(), clock.clone()).unwrap());
    let err = Ledger::open_dir(dir.path(), NodeKey::from_seed(&[6; 32]), clock).unwrap_err();
    assert!(matches!(err, LedgerError::WrongOwner { .. }), "{err}");
}

#[test]
fn a_second_process_cannot_open_a_ledger_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(Timestamp(0)));
    let _held = Ledger::open_dir(dir.path(), key(), clock).unwrap();
    // sled takes an exclusive file lock per process; within one process a second open of the
    // same path is refused the same way.
    let err = LedgerReader::open_dir(dir.path()).unwrap_err();
    assert!(err.to_string().contains("in use") || err.to_string().contains("lock"), "{err}");
}

#[test]
fn oversized_payload_is_refused_and_nothing_is_written() {
    let ledger = Ledger::open(MemoryStore::new(), key(), Arc::new(ManualClock::default())).unwrap();
    let err = ledger
        .append_batch(vec![(EntryKind::ConfigChange, vec![1]), (EntryKind::ConfigChange, vec![0; 70_000])])
        .unwrap_err();
    assert!(matches!(err, LedgerError::PayloadTooLarge { len: 70_000, .. }));
    assert_eq!(ledger.len().unwrap(), 0);
}

#[test]
fn inclusion_and_consistency_proofs_check_out() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open_dir(dir.path(), key(), Arc::new(ManualClock::default())).unwrap();
    ledger.append_batch((0..13u8).map(|i| (EntryKind::MeterStatement, vec![i; 10])).collect()).unwrap();
    assert!(ledger.prove_inclusion(3).unwrap().is_none(), "no signed head yet");
    let head13 = ledger.sign_head().unwrap();
    ledger.append_batch((0..20u8).map(|i| (EntryKind::MeterStatement, vec![i; 3])).collect()).unwrap();
    let head33 = ledger.sign_head().unwrap();

    for seq in [0, 3, 12] {
        let proof = ledger.prove_inclusion(seq).unwrap().unwrap();
        assert_eq!(proof.head, head13, "the oldest head covering the entry is used");
        assert_eq!(proof.verify().unwrap().body().seq, seq);
    }
    let proof = ledger.prove_inclusion(20).unwrap().unwrap();
    assert_eq!(proof.head.body().size, 33);
    proof.verify().unwrap();

    // A proof for one entry does not prove another.
    let mut wrong = proof.clone();
    wrong.entry = ledger.entry_bytes(21).unwrap();
    assert!(matches!(wrong.verify(), Err(InclusionProofError::SeqMismatch { .. })));
    let mut wrong = proof.clone();
    wrong.seq = 21;
    wrong.entry = ledger.entry_bytes(21).unwrap();
    assert!(matches!(wrong.verify(), Err(InclusionProofError::Path(_))));

    let path = ledger.consistency_path(13, 33).unwrap();
    let (h1, h2) = (head13.body(), head33.body());
    verify_consistency(h1.size, h2.size, &path, &h1.root.0, &h2.root.0).unwrap();
    assert_eq!(ledger.root_at(33).unwrap(), h2.root);
    assert_eq!(ledger.root_at(1).unwrap(), leaf_hash(&ledger.entry_bytes(0).unwrap()));
    assert!(matches!(ledger.root_at(34), Err(LedgerError::OutOfRange { .. })));
}
