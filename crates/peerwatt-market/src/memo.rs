//! A memo of verified signatures that the nodes of one process share.
//!
//! A node checks the signature of every gossiped message, once (duplicates are dropped by the
//! network before validation). On its own machine that is all. The simulator runs hundreds
//! of nodes in one process, and there every message would be checked once per node: work
//! that grows with the square of the community and measures the co-location, not the
//! protocol. With a memo each signed message is checked once per process, with the same
//! `verify_strict`, and the other nodes find its digest here.
//!
//! The key is the SHA-256 digest of the whole signed envelope (kind, signer, message and
//! signature), so a hit means these exact bytes verified before. Only successful checks are
//! remembered. The memo is bounded: two generations of at most `capacity` digests each; when
//! the newer one is full, the older one is dropped.

use std::collections::HashSet;
use std::sync::Mutex;

use peerwatt_core::Hash;

/// Digests of signed messages whose signatures verified (see the module documentation).
#[derive(Debug)]
pub struct VerifiedMemo {
    capacity: usize,
    generations: Mutex<Generations>,
}

#[derive(Debug, Default)]
struct Generations {
    newer: HashSet<Hash>,
    older: HashSet<Hash>,
}

impl Default for VerifiedMemo {
    fn default() -> VerifiedMemo {
        VerifiedMemo::with_capacity(1 << 20)
    }
}

impl VerifiedMemo {
    /// A memo that keeps at least the last `capacity` digests.
    pub fn with_capacity(capacity: usize) -> VerifiedMemo {
        VerifiedMemo { capacity: capacity.max(1), generations: Mutex::new(Generations::default()) }
    }

    /// Whether `digest` verified before.
    pub fn contains(&self, digest: &Hash) -> bool {
        let g = self.generations.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        g.newer.contains(digest) || g.older.contains(digest)
    }

    /// Remembers that `digest` verified.
    pub fn insert(&self, digest: Hash) {
        let mut g = self.generations.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if g.newer.len() >= self.capacity {
            g.older = std::mem::take(&mut g.newer);
        }
        g.newer.insert(digest);
    }

    /// Checks a signature through the memo: `verify` runs only for a digest not seen verified.
    pub fn check<E>(&self, digest: Hash, verify: impl FnOnce() -> Result<(), E>) -> Result<(), E> {
        if self.contains(&digest) {
            return Ok(());
        }
        verify()?;
        self.insert(digest);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_successful_checks_are_remembered() {
        let memo = VerifiedMemo::default();
        let (a, b) = (Hash::of(b"a"), Hash::of(b"b"));
        assert_eq!(memo.check(a, || Err("bad")), Err("bad"));
        assert!(!memo.contains(&a), "a failed check is not remembered");
        assert_eq!(memo.check(b, || Ok::<(), &str>(())), Ok(()));
        // Found: the check is not run again.
        assert_eq!(memo.check(b, || Err("must not run")), Ok(()));
    }

    #[test]
    fn the_memo_is_bounded_to_two_generations() {
        let memo = VerifiedMemo::with_capacity(2);
        let d: Vec<Hash> = (0u8..5).map(|i| Hash::of(&[i])).collect();
        for h in &d {
            memo.insert(*h);
        }
        // newer = {4}, older = {2, 3}: 0 and 1 are gone.
        assert!(!memo.contains(&d[0]) && !memo.contains(&d[1]));
        assert!(d[2..].iter().all(|h| memo.contains(h)));
    }
}
