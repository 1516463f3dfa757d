//! Test helper: appends to a sled ledger forever, printing `ack <seq>` for every entry once
//! the ledger says it is durable. The durability test kills this process with SIGKILL at
//! random moments.
//!
//! Usage: `ledger-writer <ledger-dir> <rng-seed> [sync|pipelined]`
//!
//! - `sync` (the default): `append`/`append_batch`, acknowledged when they return.
//! - `pipelined`: the node's way ([`Ledger::append_unsynced`] on one thread, [`Ledger::sync`]
//!   in a loop on another); an entry is acknowledged once a sync that started after it was
//!   appended has returned. Entries appended after the last sync may be lost; the rest must
//!   be a valid log.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context;
use peerwatt_core::{EntryKind, NodeKey, SystemClock};
use peerwatt_ledger::{Ledger, SledStore};
use peerwatt_tests::XorShift;

/// The writer's fixed key, so every round reopens the same node's ledger.
pub const WRITER_SEED: [u8; 32] = [77; 32];

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = args.next().context("usage: ledger-writer <ledger-dir> <rng-seed> [sync|pipelined]")?;
    let seed: u64 = args.next().context("missing rng seed")?.parse().context("rng seed")?;
    let mode = args.next().unwrap_or_else(|| "sync".to_owned());
    let ledger = Ledger::open_dir(dir.as_ref(), NodeKey::from_seed(&WRITER_SEED), Arc::new(SystemClock))?;
    let rng = XorShift::new(seed);
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "ready {}", ledger.len()?)?;
        out.flush()?;
    }
    match mode.as_str() {
        "sync" => append_durably(&ledger, rng),
        "pipelined" => append_pipelined(Arc::new(ledger), rng),
        other => anyhow::bail!("unknown mode {other} (sync or pipelined)"),
    }
}

/// Each append returns once durable, and is acknowledged then.
fn append_durably(ledger: &Ledger<SledStore>, mut rng: XorShift) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
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

/// Appends run ahead of the disk; a second thread syncs in a loop and acknowledges what each
/// sync covered.
fn append_pipelined(ledger: Arc<Ledger<SledStore>>, mut rng: XorShift) -> anyhow::Result<()> {
    // The number of entries appended so far (the next sequence number).
    let appended = Arc::new(AtomicU64::new(ledger.len()?));
    let syncer = {
        let (ledger, appended) = (Arc::clone(&ledger), Arc::clone(&appended));
        std::thread::spawn(move || -> anyhow::Result<()> {
            let mut out = std::io::stdout().lock();
            let mut acked = 0;
            loop {
                let covered = appended.load(Ordering::Acquire);
                ledger.sync()?;
                if covered > acked {
                    acked = covered;
                    writeln!(out, "ack {}", covered - 1)?;
                    out.flush()?;
                }
            }
        })
    };
    while !syncer.is_finished() {
        if rng.below(64) == 0 {
            ledger.sign_head()?;
            continue;
        }
        let n = 1 + rng.below(20) as usize;
        let batch = (0..n).map(|i| (EntryKind::TradeAgreed, payload(&mut rng, i))).collect();
        if let Some(last) = ledger.append_unsynced(batch)?.last() {
            appended.store(last.seq + 1, Ordering::Release);
        }
    }
    syncer.join().map_err(|_| anyhow::anyhow!("the sync thread panicked"))?
}

fn payload(rng: &mut XorShift, i: usize) -> Vec<u8> {
    let len = 16 + rng.below(400) as usize;
    (0..len).map(|j| (i + j) as u8 ^ rng.below(256) as u8).collect()
}
