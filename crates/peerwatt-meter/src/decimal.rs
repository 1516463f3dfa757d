//! Exact decimal numbers from meter payloads, and the one rule that turns them into integers.
//!
//! Meters publish kWh with up to four decimals and watts as floats. peerwatt never computes
//! with binary floating point: a payload number is parsed from its decimal text into
//! `mantissa × 10^exponent`, multiplied exactly by the unit's scale (e.g. 1000 for kWh → Wh),
//! and rounded **once** to the nearest integer, halves away from zero
//! (`34507.4761 kWh` → `34,507,476 Wh`; `0.0005 kWh` → `1 Wh`; `-0.5 W` → `-1 W`).
//! JSON numbers are read through their shortest round-trip decimal text, which is the text
//! the device sent for any number of up to 15 significant digits.

use thiserror::Error;

/// A number that cannot become an integer of the unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum NumberError {
    /// Not a decimal number at all (text, empty, hex, …).
    #[error("not a number")]
    NotANumber,
    /// `NaN`, an infinity, or a word for no value (`None`, `unknown`, `unavailable`), as
    /// firmwares send for a failed sensor.
    #[error("NaN, infinite or no value")]
    NotFinite,
    /// A number, but too large for the unit.
    #[error("number out of range")]
    OutOfRange,
}

/// `mantissa × 10^exponent`, exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decimal {
    mantissa: i128,
    exponent: i32,
}

/// Most significant digits accepted (i128 holds 38).
const MAX_DIGITS: usize = 36;
/// Largest exponent magnitude accepted in the text.
const MAX_EXPONENT: i32 = 400;

impl Decimal {
    /// The integer `n`.
    pub const fn from_int(n: i64) -> Decimal {
        Decimal { mantissa: n as i128, exponent: 0 }
    }

    /// Parses `[+-]digits[.digits][(e|E)[+-]digits]`, with surrounding white space allowed.
    pub fn parse(text: &str) -> Result<Decimal, NumberError> {
        let t = text.trim();
        let bare = t.trim_start_matches(['+', '-']).to_ascii_lowercase();
        if matches!(bare.as_str(), "nan" | "inf" | "infinity" | "none" | "null" | "unknown" | "unavailable") {
            return Err(NumberError::NotFinite);
        }
        let (negative, t) = match t.as_bytes().first() {
            Some(b'-') => (true, &t[1..]),
            Some(b'+') => (false, &t[1..]),
            _ => (false, t),
        };
        let (number, exp_text) = match t.find(['e', 'E']) {
            Some(i) => (&t[..i], Some(&t[i + 1..])),
            None => (t, None),
        };
        let (int_part, frac_part) = match number.find('.') {
            Some(i) => (&number[..i], &number[i + 1..]),
            None => (number, ""),
        };
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(NumberError::NotANumber);
        }
        let digits = || int_part.bytes().chain(frac_part.bytes());
        if !digits().all(|b| b.is_ascii_digit()) {
            return Err(NumberError::NotANumber);
        }
        let significant = digits().skip_while(|b| *b == b'0').count();
        if significant > MAX_DIGITS {
            return Err(NumberError::OutOfRange);
        }
        let mut mantissa: i128 = 0;
        for b in digits() {
            mantissa = mantissa * 10 + i128::from(b - b'0');
        }
        let mut exponent = -(frac_part.len() as i32);
        if let Some(e) = exp_text {
            let e: i32 = match e.strip_prefix('+').unwrap_or(e) {
                s if !s.is_empty() && s.trim_start_matches('-').bytes().all(|b| b.is_ascii_digit()) && s.len() <= 6 => {
                    s.parse().map_err(|_| NumberError::NotANumber)?
                }
                _ => return Err(NumberError::NotANumber),
            };
            if e.abs() > MAX_EXPONENT {
                return Err(NumberError::OutOfRange); // no meter means 10^±400 of anything
            }
            exponent += e;
        }
        Ok(Decimal { mantissa: if negative { -mantissa } else { mantissa }, exponent }.normalised())
    }

    /// Strips trailing zeros from the mantissa, so products stay small.
    fn normalised(mut self) -> Decimal {
        if self.mantissa == 0 {
            return Decimal { mantissa: 0, exponent: 0 };
        }
        while self.mantissa % 10 == 0 {
            self.mantissa /= 10;
            self.exponent += 1;
        }
        self
    }

    /// `self × other`, exactly.
    pub fn checked_mul(self, other: Decimal) -> Result<Decimal, NumberError> {
        let mantissa = self.mantissa.checked_mul(other.mantissa).ok_or(NumberError::OutOfRange)?;
        Ok(Decimal { mantissa, exponent: self.exponent + other.exponent }.normalised())
    }

    /// `self + other`, exactly (a sum of per-phase values, rounded once afterwards).
    pub fn checked_add(self, other: Decimal) -> Result<Decimal, NumberError> {
        let exponent = self.exponent.min(other.exponent);
        let align = |d: Decimal| -> Result<i128, NumberError> {
            let shift = u32::try_from(d.exponent - exponent).map_err(|_| NumberError::OutOfRange)?;
            let factor = 10i128.checked_pow(shift).ok_or(NumberError::OutOfRange)?;
            d.mantissa.checked_mul(factor).ok_or(NumberError::OutOfRange)
        };
        let mantissa = align(self)?.checked_add(align(other)?).ok_or(NumberError::OutOfRange)?;
        Ok(Decimal { mantissa, exponent }.normalised())
    }

    /// Whether the value is zero.
    pub fn is_zero(self) -> bool {
        self.mantissa == 0
    }

    /// Whether the value is below zero.
    pub fn is_negative(self) -> bool {
        self.mantissa < 0
    }

    /// The nearest integer, halves rounded away from zero.
    pub fn round(self) -> Result<i64, NumberError> {
        let value = if self.exponent >= 0 {
            let factor = 10i128.checked_pow(self.exponent as u32).ok_or(NumberError::OutOfRange)?;
            self.mantissa.checked_mul(factor).ok_or(NumberError::OutOfRange)?
        } else {
            let Some(divisor) = 10i128.checked_pow(self.exponent.unsigned_abs()) else {
                return Ok(0); // |value| < 10^36 / 10^39: rounds to zero
            };
            let (q, r) = (self.mantissa / divisor, self.mantissa % divisor);
            if r.abs() * 2 >= divisor { q + self.mantissa.signum() } else { q }
        };
        i64::try_from(value).map_err(|_| NumberError::OutOfRange)
    }

    /// `round(self × scale)`: the module's single float-to-integer rule.
    pub fn scaled(self, scale: Decimal) -> Result<i64, NumberError> {
        self.checked_mul(scale)?.round()
    }
}

impl std::str::FromStr for Decimal {
    type Err = NumberError;
    fn from_str(s: &str) -> Result<Decimal, NumberError> {
        Decimal::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kwh_to_wh(s: &str) -> Result<i64, NumberError> {
        Decimal::parse(s)?.scaled(Decimal::from_int(1000))
    }

    #[test]
    fn sums_are_exact_and_rounded_once() {
        let d = |t: &str| Decimal::parse(t).unwrap();
        let sum = d("-136.495").checked_add(d("0.000")).unwrap().checked_add(d("-78.478")).unwrap();
        assert_eq!(sum.round(), Ok(-215), "-214.973, where rounding each first would give -214");
        assert_eq!(d("4392.588").checked_add(d("2795.954")).unwrap().scaled(Decimal::from_int(1000)), Ok(7_188_542));
        assert_eq!(d("1e30").checked_add(d("1e-30")), Err(NumberError::OutOfRange));
    }

    #[test]
    fn kilowatt_hours_become_exact_watt_hours() {
        assert_eq!(kwh_to_wh("34507.4761"), Ok(34_507_476));
        assert_eq!(kwh_to_wh("14737.1422"), Ok(14_737_142));
        assert_eq!(kwh_to_wh("196.708"), Ok(196_708));
        assert_eq!(kwh_to_wh("0.0005"), Ok(1), "half rounds away from zero");
        assert_eq!(kwh_to_wh("0.00049"), Ok(0));
        assert_eq!(kwh_to_wh("1.5e3"), Ok(1_500_000));
        assert_eq!(kwh_to_wh("  12  "), Ok(12_000));
        // 0.1 + 0.2 style binary float error cannot happen: 0.3 kWh is exactly 300 Wh.
        assert_eq!(kwh_to_wh("0.3"), Ok(300));
    }

    #[test]
    fn watts_round_half_away_from_zero() {
        let w = |s: &str| Decimal::parse(s).and_then(Decimal::round);
        assert_eq!(w("-894"), Ok(-894));
        assert_eq!(w("-0.5"), Ok(-1));
        assert_eq!(w("0.5"), Ok(1));
        assert_eq!(w("-0.49"), Ok(0));
        assert_eq!(w("512.3"), Ok(512));
        assert_eq!(w("-0"), Ok(0));
        assert_eq!(w("1e-30"), Ok(0));
    }

    #[test]
    fn garbage_is_not_a_number_and_huge_is_out_of_range() {
        for bad in ["nan", "NaN", "-nan", "inf", "-inf", "Infinity", "+INF", "None", "unknown", "unavailable"] {
            assert_eq!(Decimal::parse(bad), Err(NumberError::NotFinite), "{bad:?}");
        }
        for bad in ["", "abc", "1.2.3", "--1", "1e", "e5", ".", "0x10", "1,5", "12 34"] {
            assert_eq!(Decimal::parse(bad), Err(NumberError::NotANumber), "{bad:?}");
        }
        assert_eq!(Decimal::parse("1e999"), Err(NumberError::OutOfRange));
        assert_eq!(Decimal::parse(&"9".repeat(40)), Err(NumberError::OutOfRange));
        assert_eq!(kwh_to_wh("1e20"), Err(NumberError::OutOfRange));
        assert_eq!(Decimal::parse("1e-999"), Err(NumberError::OutOfRange));
    }
}
