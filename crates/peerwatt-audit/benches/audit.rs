//! The audit benchmark: a synthetic street of M members' ledgers over H hours, exported to
//! files, then audited from those files in a fresh process (so the peak memory is the
//! audit's, not the generator's).
//!
//! `cargo bench -p peerwatt-audit --bench audit -- 1000 36` (the defaults: 1,000 ledgers,
//! 36 hours, about 1,017 entries each, 1.02 million in all). The street is written once to
//! `target/audit-street-M-H/` and reused. Prints entries, wall time and peak memory; results
//! and the command are in `docs/benchmarks.md`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark panics to fail

use std::path::{Path, PathBuf};
use std::time::Instant;

use peerwatt_audit::street::{Plan, Spec, community, write_exports};
use peerwatt_audit::{Input, Options, audit};

fn street_dir(members: usize, hours: u64) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"), PathBuf::from);
    target.join(format!("audit-street-{members}-{hours}"))
}

fn generate(dir: &Path, members: usize, hours: u64) {
    if dir.join("complete").exists() {
        println!("street: reusing {}", dir.display());
        return;
    }
    let started = Instant::now();
    let plan = Plan::new(Spec { members, intervals: hours * 4, witnesses: 8 });
    let ledgers = plan.build();
    write_exports(&ledgers, dir).unwrap();
    std::fs::write(dir.join("complete"), b"").unwrap();
    println!(
        "street: {members} ledgers over {hours} h written to {} in {:.1} s",
        dir.display(),
        started.elapsed().as_secs_f64()
    );
}

fn audit_only(dir: &Path) {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "pwl"))
        .collect();
    files.sort();
    let inputs: Vec<Input> = files.into_iter().map(Input::Export).collect();
    let started = Instant::now();
    let report = audit(&inputs, &Options::new(community())).unwrap();
    let elapsed = started.elapsed();
    print!("{}", report.human());
    println!(
        "audit: {} ledgers, {} entries, {} settlements recomputed, {} exceptions in {:.1} s; peak memory {} MB",
        report.summary.ledgers_verified,
        report.summary.entries,
        report.summary.settlements.recomputed,
        report.exceptions.len(),
        elapsed.as_secs_f64(),
        peerwatt_testkit::peak_rss_kb() / 1024
    );
    assert!(report.is_clean(), "the synthetic street audits clean");
}

fn main() {
    if let Some(dir) = std::env::var_os("PEERWATT_AUDIT_ONLY") {
        audit_only(Path::new(&dir));
        return;
    }
    let args: Vec<u64> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let members = usize::try_from(args.first().copied().unwrap_or(1_000)).unwrap();
    let hours = args.get(1).copied().unwrap_or(36);
    let dir = street_dir(members, hours);
    generate(&dir, members, hours);
    let status =
        std::process::Command::new(std::env::current_exe().unwrap()).env("PEERWATT_AUDIT_ONLY", &dir).status().unwrap();
    assert!(status.success(), "the audit run failed");
}
