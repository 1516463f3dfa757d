//! Durability: a writer process is killed with SIGKILL at random moments; every entry it
//! was told is durable must be there afterwards, and the ledger must verify.
//!
//! SIGKILL ends the process without any chance to clean up, so this exercises sled's
//! recovery and peerwatt's "acknowledge only after flush" rule. (Power loss additionally
//! depends on the disk honouring fsync, which a test on one machine cannot cut.)

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test panics to fail

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use peerwatt_ledger::LedgerReader;
use peerwatt_tests::XorShift;

const ROUNDS: usize = 8;

#[test]
fn every_acknowledged_entry_survives_sigkill() {
    kill_writer_at_random_moments("sync");
}

/// The node's pipelined commit: appends run ahead of the disk and a flush on another thread
/// covers them. SIGKILL then loses whatever sled had not written, and what survives must
/// still be a gap-free, verifying log holding everything a finished flush covered.
#[test]
fn every_synced_entry_survives_sigkill_when_appends_run_ahead_of_the_flush() {
    kill_writer_at_random_moments("pipelined");
}

fn kill_writer_at_random_moments(mode: &str) {
    let seed = XorShift::seed_from_time();
    println!("rng seed {seed} (set PEERWATT_TEST_SEED to repeat)");
    let seed = std::env::var("PEERWATT_TEST_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(seed);
    let mut rng = XorShift::new(seed);
    let dir = tempfile::tempdir().unwrap();
    let ledger_dir = dir.path().join("ledger");
    let mut acked = BTreeSet::new();
    let mut killed_mid_run = 0;

    for round in 0..ROUNDS {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ledger-writer"))
            .arg(&ledger_dir)
            .arg(rng.next_u64().to_string())
            .arg(mode)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });

        // Wait until the writer has opened the ledger, then let it run for a random while.
        let ready = rx.recv_timeout(Duration::from_secs(30)).expect("writer did not start");
        let size_at_start: u64 = ready.strip_prefix("ready ").unwrap().parse().unwrap();
        assert!(size_at_start > *acked.last().unwrap_or(&0) || acked.is_empty(), "round {round}: ledger shrank");
        let run_for = Duration::from_millis(30 + rng.below(400));
        let until = Instant::now() + run_for;
        let mut acks_this_round = 0;
        while let Some(left) = until.checked_duration_since(Instant::now()) {
            match rx.recv_timeout(left) {
                Ok(line) => {
                    acked.insert(line.strip_prefix("ack ").unwrap().parse::<u64>().unwrap());
                    acks_this_round += 1;
                }
                Err(mpsc::RecvTimeoutError::Timeout) => break,
                Err(mpsc::RecvTimeoutError::Disconnected) => panic!("round {round}: the writer died on its own"),
            }
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        // Acks already in the pipe were printed before the kill: they count too.
        reader.join().unwrap();
        for line in rx.try_iter() {
            acked.insert(line.strip_prefix("ack ").unwrap().parse::<u64>().unwrap());
            acks_this_round += 1;
        }
        killed_mid_run += usize::from(acks_this_round > 0);

        let ledger = LedgerReader::open_dir(&ledger_dir).unwrap();
        let len = ledger.len().unwrap();
        let report = ledger.verify().unwrap_or_else(|e| panic!("round {round}: ledger does not verify: {e}"));
        assert_eq!(report.entries, len);
        let highest = *acked.last().unwrap_or(&0);
        assert!(len > highest, "round {round}: acknowledged entry {highest} lost (ledger has {len})");
        for &seq in &acked {
            ledger.entry_bytes(seq).unwrap_or_else(|e| panic!("round {round}: acknowledged entry {seq}: {e}"));
        }
        println!(
            "{mode} round {round}: ran {run_for:?}, {acks_this_round} acks, ledger has {len} entries, all {} acked present",
            acked.len()
        );
    }
    assert!(killed_mid_run >= ROUNDS / 2, "the writer must be killed while writing in most rounds");
}
