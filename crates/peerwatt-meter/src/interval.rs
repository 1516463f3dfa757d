//! Interval accounting: how much energy the grid meter imported and exported in each
//! settlement interval, and whether the data covered the whole interval.
//!
//! - **Counters** (preferred): the difference between two consecutive counter readings is
//!   spread over the time between them in proportion to each interval's share of that time,
//!   in whole Wh, so the shares always add up exactly to the difference. A reading at 12:14:50
//!   and one at 12:15:10 put half of the difference into each interval.
//! - **Power only** (sources without counters): each reading's power is held until the next
//!   reading and integrated exactly in W·ms; totals are rounded to Wh (halves up) per interval.
//! - An interval is **complete** when consecutive readings no more than `max_gap` apart
//!   covered all of it, for every channel the meter reports, without a counter reset. Counter
//!   energy across a longer gap is still booked (counters lose nothing), spread over the gap,
//!   but the intervals it touches are marked incomplete. Energy that would land in an
//!   interval already closed is booked into the oldest open one instead, so nothing is lost.
//! - Intervals close once every channel has a reading at or after their end, or when `max_gap`
//!   has passed since their end.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};

use peerwatt_core::{IntervalId, IntervalLength, Timestamp, Wh};
use serde::{Deserialize, Serialize};

use crate::reading::{Reading, Role};

/// Where an interval's energy figures come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// Differences of the meter's cumulative counters.
    Counters,
    /// The integral of power over time.
    Power,
}

/// One closed settlement interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntervalTotals {
    /// The interval.
    pub interval: IntervalId,
    /// When it started.
    pub start: Timestamp,
    /// Energy imported from the grid.
    pub imported: Wh,
    /// Energy exported to the grid.
    pub exported: Wh,
    /// Whether readings covered the whole interval (see the module documentation).
    pub complete: bool,
    /// Milliseconds covered by readings (of the least-covered channel).
    pub covered_ms: u64,
    /// Whether a counter reset fell into the interval.
    pub counter_reset: bool,
    /// Counters or power.
    pub source: Source,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Channel {
    Import = 0,
    Export = 1,
    Power = 2,
}

#[derive(Debug, Default, Clone)]
struct Acc {
    wh: [u64; 2],
    wms: [u128; 2],
    covered: [u64; 3],
    reset: bool,
}

#[derive(Debug, Clone, Copy)]
struct Point {
    t: u64,
    value: i64,
    epoch: u32,
}

/// Turns grid readings into per-interval totals.
#[derive(Debug)]
pub struct Accountant {
    length: IntervalLength,
    max_gap_ms: u64,
    points: [Option<Point>; 3],
    has_counters: bool,
    open: BTreeMap<u64, Acc>,
    next_to_close: Option<u64>,
}

impl Accountant {
    /// An accountant for intervals of `length`, treating readings more than `max_gap` apart as a gap.
    pub fn new(length: IntervalLength, max_gap: std::time::Duration) -> Accountant {
        Accountant {
            length,
            max_gap_ms: u64::try_from(max_gap.as_millis()).unwrap_or(u64::MAX),
            points: [None; 3],
            has_counters: false,
            open: BTreeMap::new(),
            next_to_close: None,
        }
    }

    /// Feeds a reading; only grid readings count.
    pub fn observe(&mut self, r: &Reading) {
        if r.role != Role::Grid {
            return;
        }
        self.next_to_close.get_or_insert(self.length.interval_at(r.time).0);
        if let Some(v) = r.import_total {
            self.counter(Channel::Import, r.time.0, v.0, r.counter_epoch);
        }
        if let Some(v) = r.export_total {
            self.counter(Channel::Export, r.time.0, v.0, r.counter_epoch);
        }
        if let Some(p) = r.grid_power {
            self.power(r.time.0, p.0);
        }
    }

    fn counter(&mut self, ch: Channel, t: u64, value: u64, epoch: u32) {
        self.has_counters = true;
        let value = i64::try_from(value).unwrap_or(i64::MAX);
        let Some(prev) = self.points[ch as usize].replace(Point { t, value, epoch }) else { return };
        let same_epoch = prev.epoch == epoch && value >= prev.value;
        if t <= prev.t {
            // Two readings in the same millisecond (or out of order) span no time, but the
            // counter still moved: book the difference at that instant so nothing is lost.
            self.points[ch as usize] = Some(Point { t: prev.t, value, epoch });
            if same_epoch {
                let delta = (value - prev.value) as u64;
                self.each_overlap(prev.t, prev.t + 1, |acc, _| acc.wh[ch as usize] += delta);
            }
            return;
        }
        if !same_epoch {
            self.each_overlap(prev.t, t, |acc, _| acc.reset = true);
            return;
        }
        let (delta, total, covered) =
            ((value - prev.value) as u128, u128::from(t - prev.t), t - prev.t <= self.max_gap_ms);
        let mut before = 0u128;
        self.each_overlap(prev.t, t, |acc, overlap| {
            let after = before + u128::from(overlap);
            // Cumulative shares: floor(delta × after / total) − floor(delta × before / total).
            let share = delta * after / total - delta * before / total;
            acc.wh[ch as usize] += share as u64;
            if covered {
                acc.covered[ch as usize] += overlap;
            }
            before = after;
        });
    }

    fn power(&mut self, t: u64, watts: i64) {
        let Some(prev) = self.points[Channel::Power as usize].replace(Point { t, value: watts, epoch: 0 }) else {
            return;
        };
        if self.has_counters || t <= prev.t || t - prev.t > self.max_gap_ms {
            return;
        }
        let dir = if prev.value >= 0 { 0 } else { 1 };
        let w = u128::from(prev.value.unsigned_abs());
        self.each_overlap(prev.t, t, |acc, overlap| {
            acc.wms[dir] += w * u128::from(overlap);
            acc.covered[Channel::Power as usize] += overlap;
        });
    }

    /// Calls `f(acc, overlap_ms)` for each interval overlapping `[t0, t1)`, in time order;
    /// intervals already closed are redirected to the oldest open one.
    fn each_overlap(&mut self, t0: u64, t1: u64, mut f: impl FnMut(&mut Acc, u64)) {
        let len = self.length.millis();
        let mut start = t0;
        while start < t1 {
            let id = start / len;
            let end = ((id + 1) * len).min(t1);
            let target = self.next_to_close.map_or(id, |n| id.max(n));
            f(self.open.entry(target).or_default(), end - start);
            start = end;
        }
    }

    fn channels(&self) -> Vec<Channel> {
        let candidates: &[Channel] =
            if self.has_counters { &[Channel::Import, Channel::Export] } else { &[Channel::Power] };
        candidates.iter().copied().filter(|c| self.points[*c as usize].is_some()).collect()
    }

    /// Closes every interval that can no longer change, oldest first.
    pub fn close(&mut self, now: Timestamp) -> Vec<IntervalTotals> {
        let Some(mut next) = self.next_to_close else { return Vec::new() };
        let len = self.length.millis();
        let data_bound =
            self.channels().iter().filter_map(|c| self.points[*c as usize]).map(|p| p.t / len).min().unwrap_or(0);
        let time_bound = now.0.saturating_sub(self.max_gap_ms) / len;
        let bound = data_bound.max(time_bound);
        let mut out = Vec::new();
        while next < bound {
            out.push(self.totals(next));
            next += 1;
        }
        self.next_to_close = Some(next);
        out
    }

    /// The totals so far of the interval holding the newest reading (not closed, may grow).
    pub fn running(&self) -> Option<IntervalTotals> {
        let latest = self.channels().iter().filter_map(|c| self.points[*c as usize]).map(|p| p.t).max()?;
        let id = latest / self.length.millis();
        Some(self.summarise(id, self.open.get(&id).cloned().unwrap_or_default()))
    }

    fn totals(&mut self, id: u64) -> IntervalTotals {
        let acc = self.open.remove(&id).unwrap_or_default();
        self.summarise(id, acc)
    }

    fn summarise(&self, id: u64, acc: Acc) -> IntervalTotals {
        let len = self.length.millis();
        let channels = self.channels();
        let covered_ms = channels.iter().map(|c| acc.covered[*c as usize]).min().unwrap_or(0);
        let (imported, exported, source) = if self.has_counters {
            (acc.wh[0], acc.wh[1], Source::Counters)
        } else {
            let wh = |wms: u128| u64::try_from((wms + 1_800_000) / 3_600_000).unwrap_or(u64::MAX);
            (wh(acc.wms[0]), wh(acc.wms[1]), Source::Power)
        };
        IntervalTotals {
            interval: IntervalId(id),
            start: self.length.start(IntervalId(id)),
            imported: Wh(imported),
            exported: Wh(exported),
            complete: !channels.is_empty() && covered_ms >= len && !acc.reset,
            covered_ms,
            counter_reset: acc.reset,
            source,
        }
    }
}

/// The last closed intervals, kept for the forecaster and persisted so a restart keeps them.
///
/// The file holds one interval per line (JSON lines), appended as intervals close: closing an
/// interval costs one short append, not a rewrite of the week. When the file holds twice the
/// capacity it is rewritten with the newest `capacity` (to a temporary file, then renamed:
/// never half-written). A file in the older format (one JSON array) is still read.
#[derive(Debug)]
pub struct History {
    path: Option<PathBuf>,
    capacity: usize,
    items: VecDeque<IntervalTotals>,
    /// Intervals in the file (`None`: its format is the old one, or unknown: rewrite it).
    in_file: Option<usize>,
}

impl History {
    /// An empty history of at most `capacity` intervals, not persisted.
    pub fn in_memory(capacity: usize) -> History {
        History { path: None, capacity, items: VecDeque::new(), in_file: Some(0) }
    }

    /// The history persisted at `path`. A missing file is an empty history; an unreadable one
    /// is moved aside to `<path>.corrupt` (and logged) rather than lost or trusted. A last line
    /// cut short (a crash in the middle of an append) is dropped.
    pub fn open(path: &Path, capacity: usize) -> History {
        let mut h = History { path: Some(path.to_owned()), capacity, items: VecDeque::new(), in_file: Some(0) };
        match std::fs::read(path) {
            Ok(bytes) => match parse_history(&bytes) {
                Ok((items, in_file)) => {
                    h.items = items.into_iter().collect();
                    h.in_file = in_file;
                }
                Err(e) => {
                    let aside = path.with_extension("json.corrupt");
                    tracing::warn!(path = %path.display(), error = %e, "meter history unreadable; moved to {}", aside.display());
                    let _ = std::fs::rename(path, aside);
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot read meter history; starting empty");
                h.in_file = None;
            }
        }
        h.trim();
        h
    }

    fn trim(&mut self) {
        while self.items.len() > self.capacity {
            self.items.pop_front();
        }
    }

    /// Adds closed intervals and saves them (appended; the file is compacted when it holds
    /// twice the capacity).
    pub fn extend(&mut self, closed: &[IntervalTotals]) -> std::io::Result<()> {
        if closed.is_empty() {
            return Ok(());
        }
        self.items.extend(closed.iter().copied());
        self.trim();
        let Some(path) = &self.path else { return Ok(()) };
        match self.in_file {
            Some(n) if n + closed.len() <= self.capacity.saturating_mul(2) => {
                let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
                std::io::Write::write_all(&mut file, &history_lines(closed.iter())?)?;
                self.in_file = Some(n + closed.len());
            }
            _ => {
                let tmp = path.with_extension("json.tmp");
                std::fs::write(&tmp, history_lines(self.items.iter())?)?;
                std::fs::rename(&tmp, path)?;
                self.in_file = Some(self.items.len());
            }
        }
        Ok(())
    }

    /// The intervals persisted at `path`, read only (a reader beside the node, such as its HTTP
    /// interface, must not move a damaged file aside under it): none if the file is missing.
    pub fn read(path: &Path) -> std::io::Result<Vec<IntervalTotals>> {
        match std::fs::read(path) {
            Ok(bytes) => parse_history(&bytes)
                .map(|(items, _)| items)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    /// The intervals kept, oldest first.
    pub fn items(&self) -> impl Iterator<Item = &IntervalTotals> {
        self.items.iter()
    }
}

/// Intervals as JSON lines.
fn history_lines<'a>(items: impl Iterator<Item = &'a IntervalTotals>) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    for item in items {
        serde_json::to_writer(&mut out, item).map_err(std::io::Error::other)?;
        out.push(b'\n');
    }
    Ok(out)
}

/// The intervals of a history file and how many the file holds (`None`: the old format, or a
/// torn last line; the next save rewrites it).
fn parse_history(bytes: &[u8]) -> Result<(Vec<IntervalTotals>, Option<usize>), serde_json::Error> {
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
        return Ok((serde_json::from_slice(bytes)?, None));
    }
    let mut items = Vec::new();
    let mut torn = false;
    let mut lines = bytes.split(|&b| b == b'\n').filter(|l| !l.iter().all(u8::is_ascii_whitespace)).peekable();
    let torn_tail_possible = !bytes.ends_with(b"\n");
    while let Some(line) = lines.next() {
        match serde_json::from_slice(line) {
            Ok(item) => items.push(item),
            Err(e) if lines.peek().is_none() && torn_tail_possible && !items.is_empty() => {
                tracing::warn!(error = %e, "the meter history's last line is cut short; dropped");
                torn = true;
            }
            Err(e) => return Err(e),
        }
    }
    // A torn line stays in the file until the next save rewrites it.
    let in_file = (!torn).then_some(items.len());
    Ok((items, in_file))
}
