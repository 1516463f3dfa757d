//! Ledger benchmarks: `cargo bench -p peerwatt-ledger` (add `-- --quick` for a short run).
//!
//! Prints one line per measurement; `docs/benchmarks.md` records the results. A custom harness
//! because the targets are throughputs and latency percentiles, not per-call means.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test panics to fail

use std::sync::Arc;
use std::time::{Duration, Instant};

use peerwatt_core::{EntryKind, ManualClock, NodeKey, Timestamp};
use peerwatt_ledger::{Ledger, MemoryStore, Store, merkle, verify_export, write_export};

/// A payload the size of a typical trade entry (a signed trade is about 330 bytes).
fn payload(i: u64) -> Vec<u8> {
    let mut p = vec![0u8; 330];
    p[..8].copy_from_slice(&i.to_be_bytes());
    p
}

fn clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(Timestamp(1_717_243_650_000)))
}

fn fill<S: Store>(ledger: &Ledger<S>, n: u64) {
    let mut i = 0;
    while i < n {
        let batch: Vec<_> = (i..(i + 1000).min(n)).map(|j| (EntryKind::TradeAgreed, payload(j))).collect();
        i += batch.len() as u64;
        ledger.append_batch(batch).expect("append");
    }
}

fn per_sec(n: u64, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Why peerwatt does not batch-verify (docs/decisions/0014-no-batch-signature-verification.md): batching is fast, but
/// only equivalent to `verify_strict` if every R is also checked to be torsion-free, and that
/// check alone costs about as much as a strict verification.
fn compare_batch_verification(n: u64) {
    use ed25519_dalek::{Signer, SigningKey, verify_batch};
    let sk = SigningKey::from_bytes(&[9; 32]);
    let msgs: Vec<Vec<u8>> = (0..n).map(|i| [i.to_be_bytes().as_slice(), &[7u8; 442]].concat()).collect();
    let sigs: Vec<ed25519_dalek::Signature> = msgs.iter().map(|m| sk.sign(m)).collect();
    let keys = vec![sk.verifying_key(); 64];
    let t = Instant::now();
    for (m, s) in msgs.chunks(64).zip(sigs.chunks(64)) {
        let m: Vec<&[u8]> = m.iter().map(Vec::as_slice).collect();
        verify_batch(&m, s, &keys[..m.len()]).expect("valid batch");
    }
    println!("  (not used) verify_batch of 64:     {:>10.0} /s", per_sec(n, t.elapsed()));
    let t = Instant::now();
    let torsion_free = sigs
        .iter()
        .filter(|s| {
            let r = curve25519_dalek::edwards::CompressedEdwardsY(*s.r_bytes()).decompress().expect("point");
            r.is_torsion_free()
        })
        .count();
    assert_eq!(torsion_free as u64, n);
    println!("  (not used) R torsion check alone:  {:>10.0} /s", per_sec(n, t.elapsed()));
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let n: u64 = if quick { 10_000 } else { 100_000 };
    println!("peerwatt-ledger benchmarks ({} entries of {} bytes payload)", n, payload(0).len());

    // The bound: one strict ed25519 verification per entry.
    let key = NodeKey::from_seed(&[1; 32]);
    let msg = vec![7u8; 450];
    let sig = key.sign("peerwatt/v1/ledger-entry", &msg);
    let pk = key.public();
    let reps = n / 2;
    let t = Instant::now();
    for _ in 0..reps {
        pk.verify("peerwatt/v1/ledger-entry", &msg, &sig).expect("valid");
    }
    let bound = per_sec(reps, t.elapsed());
    println!("ed25519 verify_strict alone:         {bound:>10.0} /s  (the upper bound for verify)");
    compare_batch_verification(reps);

    // append_batch into sled, 1,000 entries per batch (one flush each).
    let dir = tempfile::tempdir().expect("tempdir");
    let ledger = Ledger::open_dir(dir.path(), NodeKey::from_seed(&[2; 32]), clock()).expect("open");
    let t = Instant::now();
    fill(&ledger, n);
    let d = t.elapsed();
    println!("append_batch (sled, 1000/batch):     {:>10.0} entries/s", per_sec(n, d));
    ledger.sign_head().expect("head");

    // verify: the whole sled log, one core.
    let t = Instant::now();
    let report = ledger.verify().expect("verify");
    let d = t.elapsed();
    assert_eq!(report.entries, n);
    println!(
        "verify (sled store, incl. nodes):    {:>10.0} entries/s  ({:.0}% of the ed25519 bound)",
        per_sec(n, d),
        100.0 * per_sec(n, d) / bound
    );

    // verify an export file.
    let mut file = Vec::new();
    write_export(ledger.reader(), &mut file).expect("export");
    let t = Instant::now();
    verify_export(&file[..]).expect("verify export");
    let d = t.elapsed();
    println!(
        "verify (export file, {:>4} MB):       {:>10.0} entries/s  ({:.0}% of the ed25519 bound)",
        file.len() / 1_000_000,
        per_sec(n, d),
        100.0 * per_sec(n, d) / bound
    );

    // Inclusion proofs against the sled store.
    let head = ledger.latest_head().expect("heads").expect("a head");
    let size = head.body().size;
    let proofs = if quick { 2_000 } else { 20_000 };
    let seqs: Vec<u64> = (0..proofs).map(|i| (i * 7_919) % size).collect();
    let t = Instant::now();
    let paths: Vec<_> = seqs.iter().map(|&s| ledger.inclusion_path(s, size).expect("path")).collect();
    println!(
        "inclusion proof generation (sled):   {:>10.0} proofs/s (path length {})",
        per_sec(proofs, t.elapsed()),
        paths[0].len()
    );
    let leaves: Vec<_> = seqs.iter().map(|&s| merkle::leaf_hash(&ledger.entry_bytes(s).expect("entry"))).collect();
    let t = Instant::now();
    for ((s, path), leaf) in seqs.iter().zip(&paths).zip(&leaves) {
        merkle::verify_inclusion(*s, size, &leaf.0, path, &head.body().root.0).expect("valid proof");
    }
    println!("inclusion proof verification:        {:>10.0} proofs/s", per_sec(proofs, t.elapsed()));
    drop(ledger);

    // Single appends, each flushed before it returns.
    let dir = tempfile::tempdir().expect("tempdir");
    let ledger = Ledger::open_dir(dir.path(), NodeKey::from_seed(&[3; 32]), clock()).expect("open");
    let count = if quick { 300 } else { 2_000 };
    let mut lat = Vec::with_capacity(count);
    for i in 0..count as u64 {
        let t = Instant::now();
        ledger.append(EntryKind::TradeAgreed, payload(i)).expect("append");
        lat.push(t.elapsed());
    }
    lat.sort();
    println!(
        "append (sled, flushed, one by one):  p50 {:?}  p99 {:?}  max {:?}  ({:.0} entries/s)",
        percentile(&lat, 0.50),
        percentile(&lat, 0.99),
        lat[lat.len() - 1],
        per_sec(count as u64, lat.iter().sum())
    );

    // For comparison: the same appends into memory (signing + hashing only).
    let mem = Ledger::open(MemoryStore::new(), NodeKey::from_seed(&[4; 32]), clock()).expect("open");
    let t = Instant::now();
    fill(&mem, n);
    println!("append_batch (memory, 1000/batch):   {:>10.0} entries/s", per_sec(n, t.elapsed()));
}
