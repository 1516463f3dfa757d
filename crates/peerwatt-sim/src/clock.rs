//! The accelerated clock every simulated node runs on: `rate` simulated milliseconds pass per
//! real millisecond once it is started, and it stands still at its origin before that (while
//! the nodes connect).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use peerwatt_core::{Clock, Timestamp};

/// A shared clock running `rate` times faster than real time.
#[derive(Debug)]
pub struct AcceleratedClock {
    origin: Timestamp,
    rate: u32,
    started: OnceLock<Instant>,
    /// The time it stands still at once it gets there (`u64::MAX`: never).
    ceiling: AtomicU64,
}

impl AcceleratedClock {
    /// A clock standing at `origin` that will run at `rate` (at least 1).
    pub fn new(origin: Timestamp, rate: u32) -> AcceleratedClock {
        AcceleratedClock { origin, rate: rate.max(1), started: OnceLock::new(), ceiling: AtomicU64::new(u64::MAX) }
    }

    /// Makes the clock stand still once it shows `t` (the demo's street, served to browsers
    /// after its day, stays on that day).
    pub fn stand_at(&self, t: Timestamp) {
        self.ceiling.store(t.0, Ordering::Relaxed);
    }

    /// Starts the clock (a second call changes nothing).
    pub fn start(&self) {
        let _ = self.started.set(Instant::now());
    }

    /// The real instant at which the clock shows `t` (now, for times already passed or before
    /// the clock is started).
    pub fn instant_of(&self, t: Timestamp) -> Instant {
        let Some(start) = self.started.get() else { return Instant::now() };
        let ahead_ms = t.0.saturating_sub(self.origin.0) / u64::from(self.rate);
        *start + Duration::from_millis(ahead_ms)
    }
}

impl Clock for AcceleratedClock {
    fn now(&self) -> Timestamp {
        let elapsed = self.started.get().map_or(0, |s| u64::try_from(s.elapsed().as_millis()).unwrap_or(u64::MAX));
        let running = self.origin.0.saturating_add(elapsed.saturating_mul(u64::from(self.rate)));
        Timestamp(running.min(self.ceiling.load(Ordering::Relaxed)))
    }

    fn rate(&self) -> u32 {
        self.rate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_stands_still_at_its_ceiling() {
        let c = AcceleratedClock::new(Timestamp(1_000_000), 1_000);
        c.stand_at(Timestamp(1_010_000));
        c.start();
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(c.now(), Timestamp(1_010_000));
    }

    #[test]
    fn it_stands_until_started_then_runs_at_its_rate() {
        let c = AcceleratedClock::new(Timestamp(1_000_000), 1_000);
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(c.now(), Timestamp(1_000_000));
        c.start();
        std::thread::sleep(Duration::from_millis(50));
        let ran = c.now().0 - 1_000_000;
        assert!(ran >= 50_000, "{ran} ms of clock time after 50 ms");
        let at = c.instant_of(Timestamp(1_000_000 + 1_000_000));
        assert!(at > Instant::now(), "1,000 s of clock time is 1 s away");
        assert_eq!(c.rate(), 1_000);
    }
}
