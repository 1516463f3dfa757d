//! Test helper: appends to a sled ledger forever, printing `ack <seq>` for every entry once
//! `append`/`append_batch` has returned (i.e. once the ledger says it is durable).
//! The durability test kills this process with SIGKILL at random moments.
//!
//! Usage: `ledger-writer <ledger-dir> <rng-seed>`

use std::io::Write;
use std::sync::Arc;

use anyhow::Context;
use peerwatt_core::{EntryKind, NodeKey, SystemClock};
use peerwatt_ledger::Ledger;
use peerwatt_tests::XorShift;

/// The writer's fixed key, so every round reopens the same node's ledger.
pub const WRITER_SEED: [u8; 32] = [77; 32];

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = args.next().context("usage: ledger-writer <ledger-dir> <rng-seed>")?;
    let seed: u64 = args.next().context("missing rng seed")?.parse().context("rng seed")?;
    let ledger = Ledger::open_dir(dir.as_ref(), NodeKey::from_seed(&WRITER_SEED), Arc::new(SystemClock))?;
    let mut rng = XorShift::new(seed);
    let mut out = std::io::stdout().lock();
    writeln!(out, "ready {}", ledger.len()?)?;
    out.flush()?;
    loop {
        let acked = match rng.below(4) {
            0 => {
                let n = 1 + rng.below(50) as usize;
                let batch = (0..n).map(|i| (EntryKind::TradeAgreed, payload(&mut rng, i))).collect();
                ledger.append_batch(batch)?.last().map(|a| a.seq)
            }
            1 if rng.below(8) == 0 => {
                ledger.sign_head()?;
                None
            }
            _ => Some(ledger.append(EntryKind::MeterStatement, payload(&mut rng, 0))?.seq),
        };
        if let Some(seq) = acked {
            writeln!(out, "ack {seq}")?;
            out.flush()?;
        }
    }
}

fn payload(rng: &mut XorShift, i: usize) -> Vec<u8> {
    let len = 16 + rng.below(400) as usize;
    (0..len).map(|j| (i + j) as u8 ^ rng.below(256) as u8).collect()
}
