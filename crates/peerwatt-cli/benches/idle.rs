//! An idle node with ten peers (`cargo bench -p peerwatt-cli --bench idle`): eleven real
//! `peerwatt run` processes on loopback, each with its meter connected and reading (a fake
//! Tasmota every 500 ms) and nothing to trade (every household's power is 0 W). Once one node
//! has its ten peers, its resident memory (VmRSS, sampled every 10 s, the largest kept) and its
//! CPU time (utime + stime of /proc/<pid>/stat) are read over five minutes
//! (`PEERWATT_IDLE_SECS` shortens it). Issue 20's target: ≤ 25 MB and ≤ 0.5 % of one core.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark panics to fail

use std::time::{Duration, Instant};

use peerwatt_testkit::households::Neighbourhood;

/// CPU ticks (1/100 s) the process used so far.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // The fields after the command name (which may hold spaces) start after the last ')'.
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

fn main() {
    let secs: u64 = std::env::var("PEERWATT_IDLE_SECS").ok().and_then(|v| v.parse().ok()).unwrap_or(300);
    let mut street = Neighbourhood::new(env!("CARGO_BIN_EXE_peerwatt"), &[0; 11]);
    street.start_meters();
    street.start_all();
    let watched = &street.households[1];
    watched.wait_for_status("ten peers", Duration::from_secs(180), |s| s.peers.len() >= 10);
    let pid = watched.pid().unwrap();
    let (ticks0, started) = (cpu_ticks(pid), Instant::now());
    let mut peak = peerwatt_testkit::rss_kb_of(pid);
    while started.elapsed() < Duration::from_secs(secs) {
        std::thread::sleep(Duration::from_secs(10).min(Duration::from_secs(secs)));
        peak = peak.max(peerwatt_testkit::rss_kb_of(pid));
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = (cpu_ticks(pid) - ticks0) as f64 / 100.0;
    let peers = watched.status().peers.len();
    println!(
        "idle node with {peers} peers over {elapsed:.0} s: resident memory at most {peak} kB ({:.1} MB), CPU {cpu:.2} s = {:.2} % of one core",
        peak as f64 / 1024.0,
        cpu / elapsed * 100.0
    );
    street.stop_all();
}
