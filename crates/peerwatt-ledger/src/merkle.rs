//! RFC 9162 (Certificate Transparency v2) Merkle trees over SHA-256. Pure: no I/O.
//!
//! - leaf hash `H(0x00 || leaf)`, node hash `H(0x01 || left || right)`;
//! - a tree of `n` leaves splits at `k`, the largest power of two below `n`;
//! - inclusion proofs (RFC 9162 §2.1.3) and consistency proofs (§2.1.4), both generated from
//!   any [`SubtreeSource`] and verified with nothing but the proof, the sizes and the roots.
//!
//! Verification takes hashes as byte slices, exactly as they arrive on the wire, so that a
//! proof element or root of the wrong length is simply a proof that fails (this is also how
//! the independent transparency-dev test vectors state their cases).

use peerwatt_core::Hash;
use sha2::{Digest, Sha256};
use thiserror::Error;

/// Why a proof was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ProofError {
    /// The leaf index is not inside the tree.
    #[error("leaf index {index} is not below tree size {size}")]
    IndexOutOfRange {
        /// The leaf index.
        index: u64,
        /// The tree size.
        size: u64,
    },
    /// The sizes cannot have a consistency proof (the first is empty or larger).
    #[error("no consistency proof exists from size {size1} to size {size2}")]
    BadSizes {
        /// The older size.
        size1: u64,
        /// The newer size.
        size2: u64,
    },
    /// The proof has the wrong number of hashes for these sizes.
    #[error("proof has the wrong number of hashes")]
    WrongLength,
    /// A hash in the proof, or the leaf hash, is not 32 bytes.
    #[error("a hash is not 32 bytes")]
    BadHashLength,
    /// The proof leads to a different root.
    #[error("proof does not lead to the expected root")]
    RootMismatch,
}

/// `H(0x00 || leaf)`.
pub fn leaf_hash(leaf: &[u8]) -> Hash {
    Hash::of_parts(&[&[0x00], leaf])
}

/// `H(0x01 || left || right)`.
pub fn node_hash(left: &[u8], right: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0x01]);
    h.update(left);
    h.update(right);
    Hash(h.finalize().into())
}

/// The Merkle tree hash of the empty tree: `SHA-256("")`.
pub fn empty_root() -> Hash {
    Hash::of(b"")
}

/// The largest power of two strictly below `n` (for `n >= 2`).
fn split_point(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1 << (63 - (n - 1).leading_zeros())
}

/// Where complete, aligned subtree hashes come from (a store, or memory).
///
/// A subtree at `level` and `index` covers leaves `[index << level, (index + 1) << level)`.
pub trait SubtreeSource {
    /// The error reading a node.
    type Error;
    /// The hash of the complete subtree at (`level`, `index`).
    fn subtree(&self, level: u8, index: u64) -> Result<Hash, Self::Error>;
}

/// The Merkle tree hash of leaves `[start, start + len)`, built from complete subtrees.
pub fn range_hash<S: SubtreeSource>(src: &S, start: u64, len: u64) -> Result<Hash, S::Error> {
    if len == 0 {
        return Ok(empty_root());
    }
    if len.is_power_of_two() && start.is_multiple_of(len) {
        return src.subtree(len.trailing_zeros() as u8, start / len);
    }
    let k = split_point(len);
    let left = range_hash(src, start, k)?;
    let right = range_hash(src, start + k, len - k)?;
    Ok(node_hash(&left.0, &right.0))
}

/// The inclusion proof of leaf `index` in the tree of the first `size` leaves (RFC 9162 PATH).
pub fn inclusion_proof<S: SubtreeSource>(
    src: &S,
    index: u64,
    size: u64,
) -> Result<Result<Vec<Hash>, ProofError>, S::Error> {
    if index >= size {
        return Ok(Err(ProofError::IndexOutOfRange { index, size }));
    }
    let mut proof = Vec::new();
    path(src, index, 0, size, &mut proof)?;
    Ok(Ok(proof))
}

/// PATH(m, D[start : start + n]), appending leaf-to-root.
fn path<S: SubtreeSource>(src: &S, m: u64, start: u64, n: u64, out: &mut Vec<Hash>) -> Result<(), S::Error> {
    if n <= 1 {
        return Ok(());
    }
    let k = split_point(n);
    if m < k {
        path(src, m, start, k, out)?;
        out.push(range_hash(src, start + k, n - k)?);
    } else {
        path(src, m - k, start + k, n - k, out)?;
        out.push(range_hash(src, start, k)?);
    }
    Ok(())
}

/// The consistency proof between the trees of the first `size1` and `size2` leaves
/// (RFC 9162 PROOF). Empty when the sizes are equal.
pub fn consistency_proof<S: SubtreeSource>(
    src: &S,
    size1: u64,
    size2: u64,
) -> Result<Result<Vec<Hash>, ProofError>, S::Error> {
    if size1 == 0 || size1 > size2 {
        return Ok(Err(ProofError::BadSizes { size1, size2 }));
    }
    let mut proof = Vec::new();
    if size1 < size2 {
        subproof(src, size1, 0, size2, true, &mut proof)?;
    }
    Ok(Ok(proof))
}

/// SUBPROOF(m, D[start : start + n], b).
fn subproof<S: SubtreeSource>(
    src: &S,
    m: u64,
    start: u64,
    n: u64,
    complete: bool,
    out: &mut Vec<Hash>,
) -> Result<(), S::Error> {
    if m == n {
        if !complete {
            out.push(range_hash(src, start, n)?);
        }
        return Ok(());
    }
    let k = split_point(n);
    if m <= k {
        subproof(src, m, start, k, complete, out)?;
        out.push(range_hash(src, start + k, n - k)?);
    } else {
        subproof(src, m - k, start + k, n - k, false, out)?;
        out.push(range_hash(src, start, k)?);
    }
    Ok(())
}

fn as_hash(bytes: &[u8]) -> Result<&[u8; 32], ProofError> {
    bytes.try_into().map_err(|_| ProofError::BadHashLength)
}

/// Checks that `leaf_hash` is leaf `index` of the tree of `size` leaves with root `root`
/// (RFC 9162 §2.1.3.2).
pub fn verify_inclusion<P: AsRef<[u8]>>(
    index: u64,
    size: u64,
    leaf_hash: &[u8],
    proof: &[P],
    root: &[u8],
) -> Result<(), ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let mut r = Hash(*as_hash(leaf_hash)?);
    let (mut f_n, mut s_n) = (index, size - 1);
    for p in proof {
        let p = as_hash(p.as_ref())?;
        if s_n == 0 {
            return Err(ProofError::WrongLength);
        }
        if f_n & 1 == 1 || f_n == s_n {
            r = node_hash(p, &r.0);
            if f_n & 1 == 0 {
                while f_n & 1 == 0 && f_n != 0 {
                    f_n >>= 1;
                    s_n >>= 1;
                }
            }
        } else {
            r = node_hash(&r.0, p);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    if s_n != 0 {
        return Err(ProofError::WrongLength);
    }
    if r.0.as_slice() != root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// Checks that the tree of `size2` leaves with root `root2` extends the tree of `size1`
/// leaves with root `root1` (RFC 9162 §2.1.4.2). A proof from the empty tree proves
/// nothing and is refused.
pub fn verify_consistency<P: AsRef<[u8]>>(
    size1: u64,
    size2: u64,
    proof: &[P],
    root1: &[u8],
    root2: &[u8],
) -> Result<(), ProofError> {
    if size1 == 0 || size1 > size2 {
        return Err(ProofError::BadSizes { size1, size2 });
    }
    if size1 == size2 {
        if !proof.is_empty() {
            return Err(ProofError::WrongLength);
        }
        return if root1 == root2 { Ok(()) } else { Err(ProofError::RootMismatch) };
    }
    let mut path: Vec<&[u8; 32]> = Vec::with_capacity(proof.len() + 1);
    if size1.is_power_of_two() {
        // The old root is itself a node of the new tree; the proof leaves it out.
        path.push(as_hash(root1)?);
    }
    for p in proof {
        path.push(as_hash(p.as_ref())?);
    }
    let Some((first, rest)) = path.split_first() else {
        return Err(ProofError::WrongLength);
    };
    let (mut f_n, mut s_n) = (size1 - 1, size2 - 1);
    while f_n & 1 == 1 {
        f_n >>= 1;
        s_n >>= 1;
    }
    let (mut fr, mut sr) = (Hash(**first), Hash(**first));
    for c in rest {
        if s_n == 0 {
            return Err(ProofError::WrongLength);
        }
        if f_n & 1 == 1 || f_n == s_n {
            fr = node_hash(*c, &fr.0);
            sr = node_hash(*c, &sr.0);
            if f_n & 1 == 0 {
                while f_n & 1 == 0 && f_n != 0 {
                    f_n >>= 1;
                    s_n >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr.0, *c);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    if s_n != 0 {
        return Err(ProofError::WrongLength);
    }
    if fr.0.as_slice() != root1 || sr.0.as_slice() != root2 {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// The right edge of a growing tree: the roots of its complete subtrees, largest first.
/// Appending a leaf and computing the current root are O(log n) with no storage reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    /// (level, hash) of each complete subtree along the right edge, levels strictly decreasing.
    nodes: Vec<(u8, Hash)>,
}

/// A subtree completed by [`Frontier::push`]: its position and hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompletedNode {
    /// Height above the leaves (0 = a leaf).
    pub level: u8,
    /// Position among the nodes of that level.
    pub index: u64,
    /// Its hash.
    pub hash: Hash,
}

impl Frontier {
    /// The frontier of the empty tree.
    pub fn new() -> Frontier {
        Frontier::default()
    }

    /// Rebuilds the frontier of a tree of `size` leaves from its complete subtrees.
    pub fn from_source<S: SubtreeSource>(src: &S, size: u64) -> Result<Frontier, S::Error> {
        let mut nodes = Vec::new();
        let mut start = 0;
        for level in (0..64u8).rev() {
            let width = 1u64 << level;
            if size & width != 0 {
                nodes.push((level, src.subtree(level, start >> level)?));
                start += width;
            }
        }
        Ok(Frontier { size, nodes })
    }

    /// The number of leaves.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends a leaf hash; calls `completed` for the leaf and every subtree it completes.
    pub fn push(&mut self, leaf: Hash, mut completed: impl FnMut(CompletedNode)) {
        completed(CompletedNode { level: 0, index: self.size, hash: leaf });
        let mut carry = (0u8, leaf);
        let mut index = self.size;
        while let Some(&(level, left)) = self.nodes.last() {
            if level != carry.0 {
                break;
            }
            self.nodes.pop();
            index >>= 1;
            carry = (level + 1, node_hash(&left.0, &carry.1.0));
            completed(CompletedNode { level: carry.0, index, hash: carry.1 });
        }
        self.nodes.push(carry);
        self.size += 1;
    }

    /// The Merkle tree hash of all leaves so far.
    pub fn root(&self) -> Hash {
        let mut iter = self.nodes.iter().rev();
        let Some(&(_, mut acc)) = iter.next() else {
            return empty_root();
        };
        for (_, left) in iter {
            acc = node_hash(&left.0, &acc.0);
        }
        acc
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::convert::Infallible;

    /// Every complete subtree of a tree, kept in memory.
    #[derive(Default)]
    struct Nodes(HashMap<(u8, u64), Hash>);

    impl SubtreeSource for Nodes {
        type Error = Infallible;
        fn subtree(&self, level: u8, index: u64) -> Result<Hash, Infallible> {
            Ok(self.0[&(level, index)])
        }
    }

    /// The RFC's recursive definition, straight from the text, to check the fast paths against.
    fn reference_root(leaves: &[Vec<u8>]) -> Hash {
        match leaves.len() {
            0 => empty_root(),
            1 => leaf_hash(&leaves[0]),
            n => {
                let k = split_point(n as u64) as usize;
                node_hash(&reference_root(&leaves[..k]).0, &reference_root(&leaves[k..]).0)
            }
        }
    }

    fn build(n: u64) -> (Vec<Vec<u8>>, Nodes, Vec<Hash>) {
        let mut nodes = Nodes::default();
        let mut frontier = Frontier::new();
        let mut leaves = Vec::new();
        let mut roots = vec![empty_root()];
        for i in 0..n {
            let leaf = format!("leaf {i}").into_bytes();
            frontier.push(leaf_hash(&leaf), |c| {
                nodes.0.insert((c.level, c.index), c.hash);
            });
            leaves.push(leaf);
            roots.push(frontier.root());
        }
        (leaves, nodes, roots)
    }

    #[test]
    fn frontier_and_range_hash_match_the_rfc_definition() {
        let (leaves, nodes, roots) = build(70);
        for size in 0..=70usize {
            let want = reference_root(&leaves[..size]);
            assert_eq!(roots[size], want, "size {size}");
            assert_eq!(range_hash(&nodes, 0, size as u64).unwrap(), want, "size {size}");
            assert_eq!(Frontier::from_source(&nodes, size as u64).unwrap().root(), want);
        }
    }

    #[test]
    fn every_generated_proof_verifies_and_mutations_fail() {
        let (leaves, nodes, roots) = build(40);
        for size in 1..=40u64 {
            let root = roots[size as usize];
            for index in 0..size {
                let proof = inclusion_proof(&nodes, index, size).unwrap().unwrap();
                let leaf = leaf_hash(&leaves[index as usize]);
                assert_eq!(verify_inclusion(index, size, &leaf.0, &proof, &root.0), Ok(()));
                if size > 1 {
                    assert!(verify_inclusion((index + 1) % size, size, &leaf.0, &proof, &root.0).is_err());
                    let mut bad = proof.clone();
                    bad[0].0[0] ^= 1;
                    assert!(verify_inclusion(index, size, &leaf.0, &bad, &root.0).is_err());
                }
            }
            for size1 in 1..=size {
                let proof = consistency_proof(&nodes, size1, size).unwrap().unwrap();
                let r1 = roots[size1 as usize];
                assert_eq!(verify_consistency(size1, size, &proof, &r1.0, &root.0), Ok(()), "{size1}->{size}");
                if size1 < size {
                    assert!(verify_consistency(size1, size, &proof, &root.0, &root.0).is_err());
                    let mut short = proof.clone();
                    short.pop();
                    assert!(verify_consistency(size1, size, &short, &r1.0, &root.0).is_err());
                }
            }
        }
    }

    #[test]
    fn proofs_for_impossible_positions_are_refused() {
        let (_, nodes, _) = build(4);
        assert_eq!(inclusion_proof(&nodes, 4, 4).unwrap(), Err(ProofError::IndexOutOfRange { index: 4, size: 4 }));
        assert_eq!(consistency_proof(&nodes, 0, 4).unwrap(), Err(ProofError::BadSizes { size1: 0, size2: 4 }));
        assert_eq!(consistency_proof(&nodes, 3, 2).unwrap(), Err(ProofError::BadSizes { size1: 3, size2: 2 }));
    }
}
