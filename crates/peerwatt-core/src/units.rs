//! Integer units for energy, power, price and money.
//!
//! Nothing that is signed, stored, matched or settled is a float. Energy is whole watt-hours,
//! power whole watts, prices micro-currency per kWh and money micro-currency. Every operation
//! that can overflow is checked and reports [`UnitsError`].
//!
//! # Rounding rule for `energy × price`
//!
//! `money = energy_wh × price_per_kwh / 1000`, computed exactly in 128-bit integers and then
//! rounded **to the nearest micro-currency unit, halves rounded up** (away from zero; both
//! factors are never negative). Example: 1 Wh at 82,300 µ/kWh is 82.3 µ → 82 µ; 1 Wh at
//! 500 µ/kWh is 0.5 µ → 1 µ. Both parties of a trade compute the same value from the same
//! signed integers, so they can never disagree about what a trade costs.

use std::fmt;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// An arithmetic result that does not fit its unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum UnitsError {
    /// The result is larger than the unit can hold.
    #[error("{0} overflowed")]
    Overflow(&'static str),
    /// The result would be negative where the unit cannot be.
    #[error("{0} would become negative")]
    Negative(&'static str),
}

/// Energy in whole watt-hours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Wh(pub u64);

/// Power in whole watts; positive is import from the grid, negative is export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct W(pub i64);

/// A price in micro-currency per kWh (0.0823 EUR/kWh is `Price(82_300)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Price(pub u64);

/// An amount of money in micro-currency (1 EUR is `Money(1_000_000)`); may be negative.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Money(pub i64);

impl Wh {
    /// No energy.
    pub const ZERO: Wh = Wh(0);

    /// `self + other`, or an error on overflow.
    pub fn checked_add(self, other: Wh) -> Result<Wh, UnitsError> {
        self.0.checked_add(other.0).map(Wh).ok_or(UnitsError::Overflow("energy"))
    }

    /// `self - other`, or an error if `other` is larger.
    pub fn checked_sub(self, other: Wh) -> Result<Wh, UnitsError> {
        self.0.checked_sub(other.0).map(Wh).ok_or(UnitsError::Negative("energy"))
    }

    /// `self - other`, or zero if `other` is larger.
    pub fn saturating_sub(self, other: Wh) -> Wh {
        Wh(self.0.saturating_sub(other.0))
    }

    /// What this much energy costs at `price`, rounded by the module's rule.
    pub fn cost_at(self, price: Price) -> Result<Money, UnitsError> {
        let exact_milli = u128::from(self.0) * u128::from(price.0); // cannot overflow u128
        let rounded = (exact_milli + 500) / 1000;
        i64::try_from(rounded).map(Money).map_err(|_| UnitsError::Overflow("money"))
    }
}

impl W {
    /// Energy flowing at this power for `millis` milliseconds, in Wh, truncated toward zero.
    ///
    /// The sign is kept separately by the caller (import versus export); this returns the
    /// magnitude. Exact in 128-bit arithmetic.
    pub fn energy_over_millis(self, millis: u64) -> Result<Wh, UnitsError> {
        let milli_wh = u128::from(self.0.unsigned_abs()) * u128::from(millis) / 3_600_000;
        u64::try_from(milli_wh).map(Wh).map_err(|_| UnitsError::Overflow("energy"))
    }
}

impl Money {
    /// No money.
    pub const ZERO: Money = Money(0);

    /// `self + other`, or an error on overflow.
    pub fn checked_add(self, other: Money) -> Result<Money, UnitsError> {
        self.0.checked_add(other.0).map(Money).ok_or(UnitsError::Overflow("money"))
    }

    /// `self - other`, or an error on overflow.
    pub fn checked_sub(self, other: Money) -> Result<Money, UnitsError> {
        self.0.checked_sub(other.0).map(Money).ok_or(UnitsError::Overflow("money"))
    }

    /// The negated amount, or an error for `i64::MIN`.
    pub fn checked_neg(self) -> Result<Money, UnitsError> {
        self.0.checked_neg().map(Money).ok_or(UnitsError::Overflow("money"))
    }
}

impl fmt::Display for Wh {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} Wh", self.0)
    }
}

impl fmt::Display for W {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} W", self.0)
    }
}

impl fmt::Display for Price {
    /// Shown as currency units per kWh with six decimals, e.g. `0.082300/kWh`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:06}/kWh", self.0 / 1_000_000, self.0 % 1_000_000)
    }
}

impl fmt::Display for Money {
    /// Shown as currency units with six decimals, e.g. `-1.250000`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        write!(f, "{sign}{}.{:06}", abs / 1_000_000, abs % 1_000_000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cost_rounds_to_nearest_with_halves_up() {
        assert_eq!(Wh(1).cost_at(Price(82_300)), Ok(Money(82))); // 82.3
        assert_eq!(Wh(1).cost_at(Price(82_500)), Ok(Money(83))); // 82.5
        assert_eq!(Wh(1).cost_at(Price(82_499)), Ok(Money(82))); // 82.499
        assert_eq!(Wh(1).cost_at(Price(500)), Ok(Money(1))); // 0.5
        assert_eq!(Wh(1).cost_at(Price(499)), Ok(Money(0))); // 0.499
        assert_eq!(Wh(1_500).cost_at(Price(300_000)), Ok(Money(450_000))); // 1.5 kWh at 0.30
        assert_eq!(Wh(0).cost_at(Price(u64::MAX)), Ok(Money(0)));
    }

    #[test]
    fn cost_overflow_is_an_error_not_a_wrap() {
        assert_eq!(Wh(u64::MAX).cost_at(Price(u64::MAX)), Err(UnitsError::Overflow("money")));
        // At 1.000000/kWh a Wh costs 1,000 µ: the largest energy whose cost fits is i64::MAX / 1000.
        let wh = u64::try_from(i64::MAX).unwrap() / 1000;
        assert_eq!(Wh(wh).cost_at(Price(1_000_000)), Ok(Money(i64::try_from(wh * 1000).unwrap())));
        assert_eq!(Wh(wh + 1).cost_at(Price(1_000_000)), Err(UnitsError::Overflow("money")));
    }

    #[test]
    fn energy_arithmetic_is_checked() {
        assert_eq!(Wh(5).checked_sub(Wh(6)), Err(UnitsError::Negative("energy")));
        assert_eq!(Wh(u64::MAX).checked_add(Wh(1)), Err(UnitsError::Overflow("energy")));
        assert_eq!(Wh(5).saturating_sub(Wh(6)), Wh(0));
    }

    #[test]
    fn power_integrates_to_energy() {
        // 3.6 kW for one hour is 3,600 Wh; 1 kW export for 15 min is 250 Wh.
        assert_eq!(W(3_600).energy_over_millis(3_600_000), Ok(Wh(3_600)));
        assert_eq!(W(-1_000).energy_over_millis(900_000), Ok(Wh(250)));
        assert_eq!(W(1).energy_over_millis(3_599_999), Ok(Wh(0)));
    }

    #[test]
    fn display_is_human() {
        assert_eq!(Price(82_300).to_string(), "0.082300/kWh");
        assert_eq!(Money(-1_250_000).to_string(), "-1.250000");
        assert_eq!(Money(i64::MIN).to_string(), "-9223372036854.775808");
    }
}
