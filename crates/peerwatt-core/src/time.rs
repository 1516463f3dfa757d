//! Time: millisecond timestamps, UTC-aligned settlement intervals, and the [`Clock`] trait.
//!
//! Components never read the wall clock directly; they are handed a [`Clock`]. Nodes run on
//! [`SystemClock`], tests on [`ManualClock`], the simulator on its accelerated clock.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Milliseconds since the Unix epoch, UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(pub u64);

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm); `None`
/// for a date before 1970 or a day that the month does not have.
pub fn days_from_civil(y: u64, m: u64, d: u64) -> Option<u64> {
    let leap = y.is_multiple_of(4) && (!y.is_multiple_of(100) || y.is_multiple_of(400));
    let month_days = [31, if leap { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    if y < 1970 || !(1..=12).contains(&m) || d == 0 || d > month_days[usize::try_from(m - 1).ok()?] {
        return None;
    }
    let y = if m <= 2 { y - 1 } else { y };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some(era * 146_097 + doe - 719_468)
}

impl Timestamp {
    /// Midnight UTC at the start of `date` (`YYYY-MM-DD`), or `None` if it is not one.
    pub fn parse_date(date: &str) -> Option<Timestamp> {
        let parts: Vec<&str> = date.split('-').collect();
        let [y, m, d] = parts[..] else { return None };
        if y.len() != 4 || m.len() != 2 || d.len() != 2 {
            return None;
        }
        let days = days_from_civil(y.parse().ok()?, m.parse().ok()?, d.parse().ok()?)?;
        Some(Timestamp(days * 86_400_000))
    }

    /// A moment in UTC: `YYYY-MM-DD` (midnight), or `YYYY-MM-DDTHH:MM[:SS[.fff]]` followed by
    /// `Z` or `+00:00` (RFC 3339 in UTC); `None` if it is not one.
    pub fn parse_utc(text: &str) -> Option<Timestamp> {
        let Some((date, time)) = text.split_once('T') else { return Timestamp::parse_date(text) };
        let time = time.strip_suffix('Z').or_else(|| time.strip_suffix("+00:00"))?;
        let (hms, millis) = match time.split_once('.') {
            Some((hms, frac)) if (1..=3).contains(&frac.len()) && frac.bytes().all(|b| b.is_ascii_digit()) => {
                (hms, frac.parse::<u64>().ok()? * 10u64.pow(3 - frac.len() as u32))
            }
            Some(_) => return None,
            None => (time, 0),
        };
        let two = |t: &str| (t.len() == 2).then(|| t.parse::<u64>().ok()).flatten();
        let (h, m, sec) = match hms.split(':').collect::<Vec<_>>()[..] {
            [h, m] => (two(h)?, two(m)?, 0),
            [h, m, s] => (two(h)?, two(m)?, two(s)?),
            _ => return None,
        };
        if h > 23 || m > 59 || sec > 59 {
            return None;
        }
        Some(Timestamp(Timestamp::parse_date(date)?.0 + ((h * 60 + m) * 60 + sec) * 1000 + millis))
    }

    /// The timestamp `secs` whole seconds after the epoch.
    pub const fn from_secs(secs: u64) -> Timestamp {
        Timestamp(secs.saturating_mul(1000))
    }

    /// Whole seconds since the epoch (truncated).
    pub const fn as_secs(self) -> u64 {
        self.0 / 1000
    }

    /// This timestamp moved forward by `d`, saturating at the end of time.
    pub fn saturating_add(self, d: Duration) -> Timestamp {
        let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        Timestamp(self.0.saturating_add(ms))
    }

    /// How long after `earlier` this is, or zero if it is not later.
    pub fn saturating_since(self, earlier: Timestamp) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }
}

impl fmt::Display for Timestamp {
    /// RFC 3339 in UTC with milliseconds, e.g. `2024-06-01T12:00:00.000Z`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0 / 1000;
        let (y, mo, d) = civil_from_days(secs / 86_400);
        let rem = secs % 86_400;
        write!(
            f,
            "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
            rem / 3600,
            rem % 3600 / 60,
            rem % 60,
            self.0 % 1000
        )
    }
}

/// Converts days since 1970-01-01 to a (year, month, day) civil date (Howard Hinnant's algorithm).
pub fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

/// Why an interval length was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum IntervalError {
    /// The length is zero or does not divide a UTC day into whole intervals.
    #[error("interval length {0} s does not divide a day (86400 s) into whole intervals")]
    NotADivisorOfADay(u64),
}

/// The length of a community's settlement intervals. Always divides a UTC day, so intervals
/// start at the same wall-clock times every day (00:00, 00:15, … for the default 15 minutes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IntervalLength {
    secs: u64,
}

impl IntervalLength {
    /// The EU standard since 2025: 15 minutes.
    pub const DEFAULT: IntervalLength = IntervalLength { secs: 900 };

    /// An interval length of `secs` seconds; it must divide 86,400.
    pub fn from_secs(secs: u64) -> Result<IntervalLength, IntervalError> {
        if secs == 0 || 86_400 % secs != 0 {
            return Err(IntervalError::NotADivisorOfADay(secs));
        }
        Ok(IntervalLength { secs })
    }

    /// The length in seconds.
    pub fn secs(self) -> u64 {
        self.secs
    }

    /// The length in milliseconds.
    pub fn millis(self) -> u64 {
        self.secs * 1000
    }

    /// The interval that contains `t`.
    pub fn interval_at(self, t: Timestamp) -> IntervalId {
        IntervalId(t.0 / self.millis())
    }

    /// When interval `id` starts (inclusive).
    pub fn start(self, id: IntervalId) -> Timestamp {
        Timestamp(id.0.saturating_mul(self.millis()))
    }

    /// When interval `id` ends (exclusive): the start of the next one.
    pub fn end(self, id: IntervalId) -> Timestamp {
        Timestamp(id.0.saturating_add(1).saturating_mul(self.millis()))
    }
}

impl Default for IntervalLength {
    fn default() -> Self {
        IntervalLength::DEFAULT
    }
}

/// A settlement interval: its index counted from the Unix epoch in units of the community's
/// [`IntervalLength`]. Interval `n` covers `[n × length, (n + 1) × length)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct IntervalId(pub u64);

impl IntervalId {
    /// The interval after this one.
    pub fn next(self) -> IntervalId {
        IntervalId(self.0.saturating_add(1))
    }
}

impl fmt::Display for IntervalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// A source of the current time. Everything that needs "now" takes one of these.
pub trait Clock: Send + Sync + fmt::Debug {
    /// The current time.
    fn now(&self) -> Timestamp;

    /// How many milliseconds of this clock pass per real millisecond: 1, except for the
    /// simulator's accelerated clock. Timeouts on real things (network round trips) are real
    /// time; a component comparing them with this clock's times scales them by the rate.
    fn rate(&self) -> u32 {
        1
    }
}

/// The operating system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        // A clock before 1970 is a broken machine; treat it as the epoch rather than panic.
        let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        Timestamp(u64::try_from(since.as_millis()).unwrap_or(u64::MAX))
    }
}

/// A clock that only moves when told to. Clones share the same time.
#[derive(Debug, Clone, Default)]
pub struct ManualClock {
    now_ms: Arc<AtomicU64>,
}

impl ManualClock {
    /// A clock standing at `t`.
    pub fn new(t: Timestamp) -> ManualClock {
        ManualClock { now_ms: Arc::new(AtomicU64::new(t.0)) }
    }

    /// Moves the clock forward by `d`.
    pub fn advance(&self, d: Duration) {
        let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        self.now_ms.fetch_add(ms, Ordering::SeqCst);
    }

    /// Sets the clock to `t` (which may be earlier: tests of clock skew need that).
    pub fn set(&self, t: Timestamp) {
        self.now_ms.store(t.0, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.now_ms.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2024-06-01T12:07:30Z
    const NOON_ISH: Timestamp = Timestamp(1_717_243_650_000);

    #[test]
    fn intervals_are_utc_aligned() {
        let len = IntervalLength::DEFAULT;
        let id = len.interval_at(NOON_ISH);
        assert_eq!(len.start(id).to_string(), "2024-06-01T12:00:00.000Z");
        assert_eq!(len.end(id).to_string(), "2024-06-01T12:15:00.000Z");
        assert_eq!(len.interval_at(len.end(id)), id.next());
        assert_eq!(len.interval_at(Timestamp(len.end(id).0 - 1)), id);
        // 96 intervals a day, and a day starts an interval.
        let day_start = Timestamp::from_secs(1_717_200_000);
        assert_eq!(len.start(len.interval_at(day_start)), day_start);
        assert_eq!(len.interval_at(day_start).0 % 96, 0);
    }

    #[test]
    fn utc_moments_parse_exactly_and_anything_else_is_refused() {
        let t = |s: &str| Timestamp::parse_utc(s).map(|t| t.to_string());
        assert_eq!(t("2024-06-01").as_deref(), Some("2024-06-01T00:00:00.000Z"));
        assert_eq!(t("2024-06-01T12:07Z").as_deref(), Some("2024-06-01T12:07:00.000Z"));
        assert_eq!(t("2024-06-01T12:07:30Z"), Some(NOON_ISH.to_string()));
        assert_eq!(t("2024-06-01T12:07:30.5+00:00").as_deref(), Some("2024-06-01T12:07:30.500Z"));
        for bad in [
            "2024-06-01T12:07",
            "2024-06-01T12:07:30+02:00",
            "2024-06-01T24:00Z",
            "2024-06-31T00:00Z",
            "2024-06-01T1:07Z",
            "2024-06-01T12:07:30.1234Z",
            "",
        ] {
            assert_eq!(Timestamp::parse_utc(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn other_lengths_and_bad_lengths() {
        let five = IntervalLength::from_secs(300).unwrap();
        assert_eq!(five.start(five.interval_at(NOON_ISH)).to_string(), "2024-06-01T12:05:00.000Z");
        let ten_s = IntervalLength::from_secs(10).unwrap();
        assert_eq!(ten_s.millis(), 10_000);
        assert_eq!(IntervalLength::from_secs(0), Err(IntervalError::NotADivisorOfADay(0)));
        assert_eq!(IntervalLength::from_secs(7), Err(IntervalError::NotADivisorOfADay(7)));
        assert_eq!(IntervalLength::from_secs(86_400).map(|l| l.secs()), Ok(86_400));
    }

    #[test]
    fn manual_clock_moves_only_when_told_and_clones_share_time() {
        let c = ManualClock::new(NOON_ISH);
        let c2 = c.clone();
        assert_eq!(c.now(), NOON_ISH);
        c.advance(Duration::from_secs(90));
        assert_eq!(c2.now(), Timestamp(NOON_ISH.0 + 90_000));
        c2.set(Timestamp(5));
        assert_eq!(c.now(), Timestamp(5));
    }

    #[test]
    fn system_clock_is_after_2024() {
        assert!(SystemClock.now() > NOON_ISH);
    }

    #[test]
    fn timestamps_format_as_rfc3339() {
        assert_eq!(Timestamp(0).to_string(), "1970-01-01T00:00:00.000Z");
        assert_eq!(Timestamp(951_782_400_123).to_string(), "2000-02-29T00:00:00.123Z");
    }
}
