//! A small seeded random number generator (SplitMix64): the simulation's variety must be
//! reproducible from `--seed` on every platform and every version of every dependency, so it
//! is written out here rather than borrowed.

/// SplitMix64 (Steele, Lea and Flood, 2014).
#[derive(Debug, Clone)]
pub struct Rng {
    state: u64,
}

impl Rng {
    /// A generator for `seed`, and a distinct stream per `stream` (e.g. a household number).
    pub fn new(seed: u64, stream: u64) -> Rng {
        let mut r = Rng { state: seed ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03) };
        r.next_u64();
        r
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A whole number in `lo..=hi` (nearly uniform: the bias is below 2⁻³²).
    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        if hi <= lo {
            return lo;
        }
        let span = u128::from(hi.abs_diff(lo)) + 1;
        let pick = (u128::from(self.next_u64()) * span) >> 64;
        lo.saturating_add(i64::try_from(pick).unwrap_or(0))
    }

    /// True with probability `pct` percent.
    pub fn chance(&mut self, pct: u32) -> bool {
        self.range(0, 99) < i64::from(pct)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_numbers_and_ranges_hold() {
        let (mut a, mut b, mut c) = (Rng::new(7, 1), Rng::new(7, 1), Rng::new(7, 2));
        let xs: Vec<u64> = (0..5).map(|_| a.next_u64()).collect();
        assert_eq!(xs, (0..5).map(|_| b.next_u64()).collect::<Vec<_>>());
        assert_ne!(xs, (0..5).map(|_| c.next_u64()).collect::<Vec<_>>());
        let mut seen = [false; 7];
        for _ in 0..1_000 {
            let v = a.range(-3, 3);
            assert!((-3..=3).contains(&v));
            seen[usize::try_from(v + 3).unwrap_or(0)] = true;
        }
        assert!(seen.iter().all(|s| *s), "every value of the range turns up");
        assert_eq!(a.range(5, 5), 5);
    }
}
