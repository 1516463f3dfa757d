//! The default trading strategy: it trades for the homeowner, within limits the homeowner sets.
//!
//! - **Forecast** (docs/market.md, "Sizing orders"): from the complete intervals at the same
//!   time of day over the last `days` days. The side is the median day's: surplus (+) if the
//!   median `exported − imported` is positive, deficit (−) if negative. A surplus is that
//!   median; a deficit is the lower quartile of the days' import (the 2nd lowest of 7), not
//!   their average: household load is spiky (a kettle, an oven), a spike that does not recur
//!   made a buyer contract energy it then did not import, and a contract only fixes the price
//!   of what is delivered (what contracts miss is shared after the interval). A new node,
//!   with less than a day of history, trades cautiously from its first complete hour: half
//!   the average of its last hour. No complete hour: no trading.
//! - **Price**: over the trading window (opens at the horizon, closes at gate closure) a seller
//!   starts at the retail tariff and descends linearly to its floor (the feed-in tariff, or
//!   its owner's minimum), and a buyer starts at feed-in and rises to its ceiling (retail, or
//!   its owner's maximum). With progress `p` in [0, 1]:
//!   `sell = retail − (retail − floor) × p`, `buy = feed_in + (ceiling − feed_in) × p`,
//!   in integers, rounded down. Without limits they meet halfway at the mid price; a cheaper
//!   seller or a keener buyer always posts the better price.
//! - **Bounds**: never sell more than the forecast surplus (minus a reserve), never buy more than
//!   the deficit, never trade outside [feed-in, retail], and never beyond the user's limits.

use peerwatt_core::{Community, IntervalId, Price, Side, Terms, Timestamp, Wh};

/// The homeowner's limits (`[market]` in node.toml).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UserLimits {
    /// Never sell below this price (the community's feed-in tariff if lower).
    pub min_sell_price: Option<Price>,
    /// Never buy above this price (the community's retail tariff if higher).
    pub max_buy_price: Option<Price>,
    /// Never trade more than this per interval.
    pub max_energy_per_interval: Option<Wh>,
    /// Keep this much of a forecast surplus unsold (forecasts err).
    pub reserve: Wh,
}

/// One past interval as the meter measured it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observed {
    /// The interval.
    pub interval: IntervalId,
    /// Imported from the grid.
    pub imported: Wh,
    /// Exported to the grid.
    pub exported: Wh,
    /// Whether the readings covered the whole interval.
    pub complete: bool,
}

/// How the forecaster looks at history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForecastMethod {
    /// The same time of day over the last `days` days (the default: household load and PV
    /// follow the day).
    SameTimeOfDay {
        /// How many days back.
        days: u64,
    },
    /// The last `intervals` complete intervals (persistence: for short intervals and tests).
    Recent {
        /// How many intervals back.
        intervals: u64,
    },
}

/// Forecasts surplus or deficit from history.
#[derive(Debug, Clone)]
pub struct Forecaster {
    per_day: u64,
    method: ForecastMethod,
    history: Vec<Observed>,
}

/// Observations kept per forecaster (30 days of 15-minute intervals).
const MAX_OBSERVED: usize = 30 * 96;

impl Forecaster {
    /// A forecaster over `history` for intervals of `community`, looking back `days` days.
    pub fn new(community: &Community, history: Vec<Observed>, days: u64) -> Forecaster {
        Forecaster::with_method(community, history, ForecastMethod::SameTimeOfDay { days })
    }

    /// A forecaster using `method`.
    pub fn with_method(community: &Community, history: Vec<Observed>, method: ForecastMethod) -> Forecaster {
        let mut f = Forecaster { per_day: 86_400 / community.interval.secs(), method, history: Vec::new() };
        for o in history {
            f.observe(o);
        }
        f
    }

    /// Adds a measured interval (a newer measurement of the same interval replaces the older).
    pub fn observe(&mut self, o: Observed) {
        self.history.retain(|h| h.interval != o.interval);
        self.history.push(o);
        self.history.sort_by_key(|h| h.interval);
        if self.history.len() > MAX_OBSERVED {
            let excess = self.history.len() - MAX_OBSERVED;
            self.history.drain(..excess);
        }
    }

    /// Expected `exported − imported` in `interval`, in Wh (positive: surplus), or `None`
    /// without any complete interval to go by: what the node contracts (module documentation).
    pub fn net_export(&self, interval: IntervalId) -> Option<i64> {
        match self.method {
            ForecastMethod::SameTimeOfDay { days } => {
                let same_time = self.same_time_of_day(interval, days);
                if same_time.is_empty() {
                    return self.first_hour(interval);
                }
                Some(cautious(&same_time))
            }
            ForecastMethod::Recent { intervals } => {
                let earlier = self.history.iter().rev().filter(|o| o.complete && o.interval < interval);
                let (sum, n) =
                    earlier.take(usize::try_from(intervals.max(1)).unwrap_or(usize::MAX)).fold((0i128, 0i128), add);
                // Integer mean, rounded toward zero (a forecast never claims more than was seen).
                (n > 0).then(|| i64::try_from(sum / n).unwrap_or(0))
            }
        }
    }

    /// While the forecaster cannot forecast at all: the complete intervals it has and how
    /// many it needs (an hour's, for a new node's first forecasts); `None` once it can.
    pub fn learning(&self) -> Option<(usize, usize)> {
        let need = match self.method {
            ForecastMethod::SameTimeOfDay { .. } => usize::try_from((self.per_day / 24).max(1)).unwrap_or(1),
            ForecastMethod::Recent { .. } => 1,
        };
        let have = self.history.iter().filter(|o| o.complete).count();
        (have < need).then_some((have, need))
    }

    /// The complete intervals at the same time of day on each of the last `days` days, found
    /// by binary search (the history is sorted and holds each interval once): every tick asks
    /// for every open interval, and a scan of a month of history each time showed in a large
    /// street's profile.
    fn same_time_of_day(&self, interval: IntervalId, days: u64) -> Vec<&Observed> {
        (1..=days.max(1))
            .map_while(|k| interval.0.checked_sub(k.saturating_mul(self.per_day)))
            .filter_map(|at| self.history.binary_search_by_key(&at, |o| o.interval.0).ok())
            .map(|i| &self.history[i])
            .filter(|o| o.complete)
            .collect()
    }

    /// A new node's forecast (less than a day of history, so no same time of day yet): half
    /// the mean of the last hour's complete intervals before `interval`, once there is a
    /// complete hour of them. Cautious: what it does not contract is shared after the
    /// interval anyway, and a day without trading was what a new node had before.
    fn first_hour(&self, interval: IntervalId) -> Option<i64> {
        let complete: Vec<&Observed> = self.history.iter().filter(|o| o.complete).collect();
        let (first, last) = (complete.first()?, complete.last()?);
        if last.interval.0 - first.interval.0 >= self.per_day {
            return None; // a day of history: the same time of day says it, or nothing does
        }
        let per_hour = usize::try_from((self.per_day / 24).max(1)).unwrap_or(1);
        let hour: Vec<&&Observed> = complete.iter().rev().filter(|o| o.interval < interval).take(per_hour).collect();
        if hour.len() < per_hour {
            return None;
        }
        let (sum, n) = hour.into_iter().fold((0i128, 0i128), |acc, o| add(acc, o));
        i64::try_from(sum / n / 2).ok()
    }
}

/// The contract the same time of day on earlier days supports: the median day's side; a
/// surplus is the median net export, a deficit the lower quartile of the import (rounded
/// down: the 2nd lowest of 7 days, the lowest of up to 4), at most the median day's deficit.
fn cautious(days: &[&Observed]) -> i64 {
    let mut nets: Vec<i64> = days.iter().map(|o| net_of(o)).collect();
    nets.sort_unstable();
    let median = nets[(nets.len() - 1) / 2]; // the lower median: rounded toward no surplus
    match median.cmp(&0) {
        std::cmp::Ordering::Greater => median,
        std::cmp::Ordering::Equal => 0,
        std::cmp::Ordering::Less => {
            let mut imports: Vec<u64> = days.iter().map(|o| o.imported.0).collect();
            imports.sort_unstable();
            let low = i64::try_from(imports[(imports.len() - 1) / 4]).unwrap_or(i64::MAX);
            -low.min(median.saturating_neg()) // and never more than the median day's deficit
        }
    }
}

/// One observation's `exported − imported`.
fn net_of(o: &Observed) -> i64 {
    i64::try_from(i128::from(o.exported.0) - i128::from(o.imported.0)).unwrap_or(0)
}

/// Adds one observation's net export to a (sum, count) pair.
fn add((sum, n): (i128, i128), o: &Observed) -> (i128, i128) {
    (sum + i128::from(o.exported.0) - i128::from(o.imported.0), n + 1)
}

/// What the strategy wants in one interval right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Intent {
    /// Sell or buy.
    pub side: Side,
    /// How much more energy to trade (after what is already traded or requested).
    pub energy: Wh,
    /// The price now, on the curve below: the start of a new order's signed curve.
    pub price: Price,
    /// The end of the curve at gate closure: the party's floor (seller) or ceiling (buyer),
    /// the worst price it accepts. An order signs both, and every member computes the price
    /// in between (see [`peerwatt_core::Order::price_at`]).
    pub limit: Price,
}

/// The worst price the party on `side` accepts: a seller's floor (its owner's minimum, else
/// the feed-in tariff), a buyer's ceiling (its owner's maximum, else retail), clamped into
/// [feed-in, retail]. The price curves end there.
pub fn limit_price(terms: &Terms, limits: &UserLimits, side: Side) -> Price {
    let (lo, hi) = (terms.feed_in.0, terms.retail.0);
    Price(match side {
        Side::Sell => limits.min_sell_price.map_or(lo, |p| p.0.clamp(lo, hi)),
        Side::Buy => limits.max_buy_price.map_or(hi, |p| p.0.clamp(lo, hi)),
    })
}

/// The price on `side` for `interval` at `now`, by the curves above, within the user's limits.
/// `None` when trading for the interval is not open.
pub fn price_at(
    community: &Community,
    limits: &UserLimits,
    side: Side,
    interval: IntervalId,
    now: Timestamp,
) -> Option<Price> {
    if !community.is_open(interval, now) {
        return None;
    }
    let (opens, closes) = community.trading_window(interval);
    let span = u128::from(closes.0 - opens.0).max(1);
    let done = u128::from(now.0 - opens.0);
    let terms = community.terms_at(interval);
    let (lo, hi) = (terms.feed_in.0, terms.retail.0);
    // Each curve runs from the other tariff to this party's own limit, so a party with a
    // lower cost (or a higher value) always posts the better price: buyers take the cheapest
    // sellers first, and the market clears close to the efficient allocation.
    let limit = limit_price(&terms, limits, side).0;
    let price = match side {
        Side::Sell => hi - along(hi - limit, done, span),
        Side::Buy => lo + along(limit - lo, done, span),
    };
    Some(Price(price))
}

/// `distance × done / span`, rounded down (`done ≤ span`).
fn along(distance: u64, done: u128, span: u128) -> u64 {
    u64::try_from(u128::from(distance) * done.min(span) / span).unwrap_or(distance)
}

/// What to trade in `interval` at `now`, given the forecast and what is already traded or
/// requested there (`committed`, on the forecast's side).
pub fn intent(
    community: &Community,
    limits: &UserLimits,
    forecaster: &Forecaster,
    interval: IntervalId,
    committed: Wh,
    now: Timestamp,
) -> Option<Intent> {
    let net = forecaster.net_export(interval)?;
    let (side, want) = if net > 0 {
        (Side::Sell, Wh(net.unsigned_abs()).saturating_sub(limits.reserve))
    } else {
        (Side::Buy, Wh(net.unsigned_abs()))
    };
    let cap = limits.max_energy_per_interval.map_or(want, |m| want.min(m));
    let energy = cap.saturating_sub(committed);
    if energy == Wh::ZERO {
        return None;
    }
    let price = price_at(community, limits, side, interval, now)?;
    Some(Intent { side, energy, price, limit: limit_price(&community.terms_at(interval), limits, side) })
}
