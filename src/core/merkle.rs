//! The log's Merkle tree, as RFC 6962 / RFC 9162 define it: SHA-256, leaf hash
//! `H(0x00 ‖ leaf)`, node hash `H(0x01 ‖ left ‖ right)`, empty tree `H("")`.
//!
//! The tree is never held whole. Every perfect subtree's hash is stored once, when
//! its last leaf arrives (node `(level, index)` covers leaves `index·2^level ..
//! (index+1)·2^level`); [`Frontier`] keeps only the right edge (at most 64 hashes) to
//! extend the tree and compute its root, and proofs read the O(log n) stored hashes
//! they need through [`Nodes`]. Memory stays flat however long the log grows.

use sha2::{Digest, Sha256};

pub type Hash = [u8; 32];

/// `H(0x00 ‖ leaf)`.
pub fn leaf_hash(leaf: &[u8]) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([0x00]);
    hasher.update(leaf);
    hasher.finalize().into()
}

/// `H(0x01 ‖ left ‖ right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([0x01]);
    hasher.update(left);
    hasher.update(right);
    hasher.finalize().into()
}

/// The root of the empty tree, `H("")`.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// A stored perfect subtree's hash, to be written when it becomes complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Node {
    pub level: u32,
    pub index: u64,
    pub hash: Hash,
}

/// Where node `(level, index)` sits in the order nodes are stored: every leaf's hash,
/// followed by the hashes of the subtrees it completes (the numbering of Go's
/// `golang.org/x/mod/sumdb/tlog`, `StoredHashIndex`). The nodes [`Frontier::push`]
/// returns therefore take consecutive numbers, and a table keyed by this number only
/// ever grows at its end.
pub fn stored_index(level: u32, index: u64) -> u64 {
    // Level L's nth node comes right after level L-1's node 2n+1; down to level 0,
    // whose nth leaf comes after the n + n/2 + n/4 + … nodes stored before it.
    let mut leaf = index;
    for _ in 0..level {
        leaf = 2 * leaf + 1;
    }
    let mut before = 0u64;
    while leaf > 0 {
        before += leaf;
        leaf >>= 1;
    }
    before + u64::from(level)
}

/// How many nodes a tree of `size` leaves has stored: one per perfect subtree.
pub fn stored_count(size: u64) -> u64 {
    2 * size - u64::from(size.count_ones())
}

/// The tree size whose stored nodes number `count`; `None` if no size has that many
/// (the stored nodes end partway through a leaf's).
pub fn size_of_stored(count: u64) -> Option<u64> {
    // stored_count grows with the size (by one at least per leaf), and is at least the size.
    let (mut low, mut high) = (0u64, count);
    while low < high {
        let middle = low + (high - low) / 2;
        if stored_count(middle) < count { low = middle + 1 } else { high = middle }
    }
    (stored_count(low) == count).then_some(low)
}

/// Where proofs read stored subtree hashes from (SQLite on the server, memory in tests).
pub trait Nodes {
    type Error;
    /// The hash of the perfect subtree `(level, index)`, which must be complete.
    fn node(&self, level: u32, index: u64) -> Result<Hash, Self::Error>;
}

/// The right edge of the tree: one perfect subtree per set bit of the size.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Frontier {
    size: u64,
    /// (level, hash), highest level first.
    peaks: Vec<(u32, Hash)>,
}

impl Frontier {
    pub fn new() -> Frontier {
        Frontier::default()
    }

    /// The frontier of a tree of `size` leaves, read from its stored nodes.
    pub fn load<N: Nodes>(nodes: &N, size: u64) -> Result<Frontier, N::Error> {
        let mut peaks = Vec::new();
        let mut start = 0u64;
        for level in (0..64u32).rev() {
            if size & (1u64 << level) != 0 {
                peaks.push((level, nodes.node(level, start >> level)?));
                start += 1u64 << level;
            }
        }
        Ok(Frontier { size, peaks })
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Adds a leaf; returns the nodes that became complete (the leaf's own first).
    pub fn push(&mut self, leaf_hash: Hash) -> Vec<Node> {
        let mut completed = vec![Node { level: 0, index: self.size, hash: leaf_hash }];
        let mut level = 0u32;
        let mut hash = leaf_hash;
        let mut index = self.size;
        while let Some(&(peak_level, peak_hash)) = self.peaks.last() {
            if peak_level != level {
                break;
            }
            self.peaks.pop();
            hash = node_hash(&peak_hash, &hash);
            level += 1;
            index >>= 1;
            completed.push(Node { level, index, hash });
        }
        self.peaks.push((level, hash));
        self.size += 1;
        completed
    }

    /// The root hash of the tree as it stands.
    pub fn root(&self) -> Hash {
        let mut peaks = self.peaks.iter().rev();
        let Some(&(_, mut root)) = peaks.next() else {
            return empty_root();
        };
        for (_, peak) in peaks {
            root = node_hash(peak, &root);
        }
        root
    }
}

/// Why a proof cannot be given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError<E> {
    #[error("the proof's sizes are out of range: {0}")]
    OutOfRange(&'static str),
    #[error("reading a stored hash failed")]
    Nodes(E),
}

/// The root of the tree of the first `size` leaves.
pub fn root_at<N: Nodes>(nodes: &N, size: u64) -> Result<Hash, N::Error> {
    if size == 0 {
        return Ok(empty_root());
    }
    range_hash(nodes, 0, size)
}

/// RFC 9162 §2.1.3.1: the inclusion proof of leaf `index` in the tree of `size` leaves.
pub fn inclusion_proof<N: Nodes>(nodes: &N, index: u64, size: u64) -> Result<Vec<Hash>, ProofError<N::Error>> {
    if index >= size {
        return Err(ProofError::OutOfRange("the leaf index must be below the tree size"));
    }
    let mut proof = Vec::new();
    path(nodes, index, 0, size, &mut proof).map_err(ProofError::Nodes)?;
    Ok(proof)
}

/// RFC 9162 §2.1.4.1: the consistency proof between the trees of `first` and
/// `second` leaves, `0 < first ≤ second`.
pub fn consistency_proof<N: Nodes>(nodes: &N, first: u64, second: u64) -> Result<Vec<Hash>, ProofError<N::Error>> {
    if first == 0 || first > second {
        return Err(ProofError::OutOfRange("the sizes must satisfy 0 < from <= to"));
    }
    let mut proof = Vec::new();
    subproof(nodes, first, 0, second, true, &mut proof).map_err(ProofError::Nodes)?;
    Ok(proof)
}

/// RFC 9162 §2.1.3.2: does `proof` show `leaf_hash` at `index` in the tree `root` of `size`?
pub fn verify_inclusion(leaf_hash: &Hash, index: u64, size: u64, proof: &[Hash], root: &Hash) -> bool {
    if index >= size {
        return false;
    }
    let (mut fn_, mut sn) = (index, size - 1);
    let mut r = *leaf_hash;
    for p in proof {
        if sn == 0 {
            return false;
        }
        if fn_ & 1 == 1 || fn_ == sn {
            r = node_hash(p, &r);
            while fn_ & 1 == 0 && fn_ != 0 {
                fn_ >>= 1;
                sn >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    sn == 0 && r == *root
}

/// RFC 9162 §2.1.4.2: does `proof` show the tree `first_root` of `first` leaves to be
/// a prefix of the tree `second_root` of `second` leaves?
pub fn verify_consistency(first: u64, second: u64, first_root: &Hash, second_root: &Hash, proof: &[Hash]) -> bool {
    if first == 0 || first > second {
        return false;
    }
    if first == second {
        return proof.is_empty() && first_root == second_root;
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if first.is_power_of_two() {
        path.push(*first_root);
    }
    path.extend_from_slice(proof);
    let Some((first_value, rest)) = path.split_first() else {
        return false;
    };
    let (mut fn_, mut sn) = (first - 1, second - 1);
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    let (mut fr, mut sr) = (*first_value, *first_value);
    for c in rest {
        if sn == 0 {
            return false;
        }
        if fn_ & 1 == 1 || fn_ == sn {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while fn_ & 1 == 0 && fn_ != 0 {
                fn_ >>= 1;
                sn >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    fr == *first_root && sr == *second_root && sn == 0
}

/// The largest power of two strictly below `n` (n ≥ 2).
fn split_point(n: u64) -> u64 {
    assert!(n >= 2);
    1u64 << (63 - (n - 1).leading_zeros())
}

/// MTH of leaves `start .. start + n`, as the RFC's recursion meets them: `start` is
/// a multiple of the largest power of two not above `n`, so every left part is a
/// stored perfect subtree.
fn range_hash<N: Nodes>(nodes: &N, start: u64, n: u64) -> Result<Hash, N::Error> {
    assert!(n >= 1);
    if n.is_power_of_two() {
        assert_eq!(start % n, 0, "a perfect subtree is aligned");
        return nodes.node(n.trailing_zeros(), start >> n.trailing_zeros());
    }
    let k = split_point(n);
    let left = range_hash(nodes, start, k)?;
    let right = range_hash(nodes, start + k, n - k)?;
    Ok(node_hash(&left, &right))
}

fn path<N: Nodes>(nodes: &N, m: u64, start: u64, n: u64, proof: &mut Vec<Hash>) -> Result<(), N::Error> {
    if n == 1 {
        return Ok(());
    }
    let k = split_point(n);
    if m < k {
        path(nodes, m, start, k, proof)?;
        proof.push(range_hash(nodes, start + k, n - k)?);
    } else {
        path(nodes, m - k, start + k, n - k, proof)?;
        proof.push(range_hash(nodes, start, k)?);
    }
    Ok(())
}

fn subproof<N: Nodes>(
    nodes: &N,
    m: u64,
    start: u64,
    n: u64,
    whole: bool,
    proof: &mut Vec<Hash>,
) -> Result<(), N::Error> {
    if m == n {
        if !whole {
            proof.push(range_hash(nodes, start, n)?);
        }
        return Ok(());
    }
    let k = split_point(n);
    if m <= k {
        subproof(nodes, m, start, k, whole, proof)?;
        proof.push(range_hash(nodes, start + k, n - k)?);
    } else {
        subproof(nodes, m - k, start + k, n - k, false, proof)?;
        proof.push(range_hash(nodes, start, k)?);
    }
    Ok(())
}

/// Stored nodes in memory: for tests, and for the auditor's own tree.
#[derive(Debug, Clone, Default)]
pub struct MemoryNodes {
    levels: Vec<Vec<Hash>>,
}

impl MemoryNodes {
    pub fn insert(&mut self, node: Node) {
        let level = node.level as usize;
        if self.levels.len() <= level {
            self.levels.resize(level + 1, Vec::new());
        }
        assert_eq!(self.levels[level].len() as u64, node.index, "nodes arrive in order");
        self.levels[level].push(node.hash);
    }
}

impl Nodes for MemoryNodes {
    type Error = ();
    fn node(&self, level: u32, index: u64) -> Result<Hash, ()> {
        self.levels.get(level as usize).and_then(|hashes| hashes.get(index as usize)).copied().ok_or(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pushed_nodes_are_numbered_in_the_order_they_are_stored() {
        let mut frontier = Frontier::new();
        let mut next = 0u64;
        for leaf in 0..5000u64 {
            for node in frontier.push(leaf_hash(&leaf.to_be_bytes())) {
                assert_eq!(stored_index(node.level, node.index), next, "node ({}, {})", node.level, node.index);
                next += 1;
            }
            assert_eq!(stored_count(frontier.size()), next);
            assert_eq!(size_of_stored(next), Some(frontier.size()));
        }
        // Counts that end partway through a leaf's nodes have no size.
        assert_eq!(size_of_stored(2), None);
        assert_eq!(size_of_stored(5), None);
        assert_eq!(size_of_stored(0), Some(0));
        // tlog's own examples: leaf 3 and the subtrees it completes are stored at 4, 5, 6.
        assert_eq!((stored_index(0, 3), stored_index(1, 1), stored_index(2, 0)), (4, 5, 6));
        // Far out, the numbering still lines up with the count.
        let size = 1u64 << 40;
        assert_eq!(stored_index(40, 0), stored_count(size) - 1);
        assert_eq!(size_of_stored(stored_count(size)), Some(size));
    }

    fn hex(text: &str) -> Vec<u8> {
        (0..text.len()).step_by(2).map(|at| u8::from_str_radix(&text[at..at + 2], 16).unwrap()).collect()
    }

    fn hash(text: &str) -> Hash {
        hex(text).try_into().unwrap()
    }

    fn hashes(text: &str) -> Vec<Hash> {
        if text == "-" { Vec::new() } else { text.split(',').map(hash).collect() }
    }

    /// A tree of the published eight leaves, built by the frontier.
    fn published_tree() -> (Vec<Vec<u8>>, MemoryNodes, Vec<Hash>) {
        let leaves: Vec<Vec<u8>> = include_str!("../../tests/data/rfc6962/leaves.txt")
            .lines()
            .filter(|line| !line.trim().is_empty())
            .map(|line| if line.trim() == "-" { Vec::new() } else { hex(line.trim()) })
            .collect();
        let mut nodes = MemoryNodes::default();
        let mut frontier = Frontier::new();
        let mut roots = vec![frontier.root()];
        for leaf in &leaves {
            for node in frontier.push(leaf_hash(leaf)) {
                nodes.insert(node);
            }
            roots.push(frontier.root());
        }
        (leaves, nodes, roots)
    }

    #[test]
    fn published_roots() {
        let (_, nodes, roots) = published_tree();
        let mut checked = 0;
        for line in include_str!("../../tests/data/rfc6962/roots.txt").lines().filter(|l| !l.trim().is_empty()) {
            let (size, expected) = line.split_once(' ').unwrap();
            let size: u64 = size.parse().unwrap();
            assert_eq!(roots[size as usize], hash(expected.trim()), "root of size {size} (frontier)");
            assert_eq!(root_at(&nodes, size).unwrap(), hash(expected.trim()), "root of size {size} (stored nodes)");
            checked += 1;
        }
        assert!(checked >= 8);
        assert_eq!(empty_root(), hash("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));
    }

    #[test]
    fn published_inclusion_proofs() {
        let (leaves, nodes, roots) = published_tree();
        let mut checked = 0;
        for line in include_str!("../../tests/data/rfc6962/inclusion.txt").lines().filter(|l| !l.trim().is_empty()) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (index, size, expected) =
                (fields[0].parse::<u64>().unwrap(), fields[1].parse::<u64>().unwrap(), hashes(fields[2]));
            assert_eq!(inclusion_proof(&nodes, index, size).unwrap(), expected, "inclusion {index} in {size}");
            let leaf = leaf_hash(&leaves[index as usize]);
            assert!(verify_inclusion(&leaf, index, size, &expected, &roots[size as usize]));
            assert!(!verify_inclusion(&leaf, index, size, &expected, &roots[size as usize - 1]) || size == 1);
            if let Some(first) = expected.first() {
                let mut broken = expected.clone();
                broken[0] = node_hash(first, first);
                assert!(!verify_inclusion(&leaf, index, size, &broken, &roots[size as usize]));
            }
            checked += 1;
        }
        assert!(checked >= 5, "{checked} inclusion proofs");
    }

    #[test]
    fn published_consistency_proofs() {
        let (_, nodes, roots) = published_tree();
        let mut checked = 0;
        for line in include_str!("../../tests/data/rfc6962/consistency.txt").lines().filter(|l| !l.trim().is_empty()) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (first, second, expected) =
                (fields[0].parse::<u64>().unwrap(), fields[1].parse::<u64>().unwrap(), hashes(fields[2]));
            assert_eq!(consistency_proof(&nodes, first, second).unwrap(), expected, "consistency {first} to {second}");
            let (first_root, second_root) = (roots[first as usize], roots[second as usize]);
            assert!(verify_consistency(first, second, &first_root, &second_root, &expected));
            assert!(!verify_consistency(first, second, &second_root, &first_root, &expected) || first == second);
            checked += 1;
        }
        assert!(checked >= 4, "{checked} consistency proofs");
    }

    /// Every proof between every pair of sizes up to 70 verifies, and stops verifying
    /// when any hash of it changes.
    #[test]
    fn all_proofs_of_small_trees_verify() {
        let mut nodes = MemoryNodes::default();
        let mut frontier = Frontier::new();
        let mut roots = vec![frontier.root()];
        let mut leaves = Vec::new();
        for leaf in 0u32..70 {
            let leaf = leaf_hash(&leaf.to_be_bytes());
            leaves.push(leaf);
            for node in frontier.push(leaf) {
                nodes.insert(node);
            }
            roots.push(frontier.root());
            assert_eq!(Frontier::load(&nodes, frontier.size()).unwrap(), frontier);
        }
        for size in 1..=70u64 {
            for index in 0..size {
                let proof = inclusion_proof(&nodes, index, size).unwrap();
                assert!(verify_inclusion(&leaves[index as usize], index, size, &proof, &roots[size as usize]));
                for at in 0..proof.len() {
                    let mut broken = proof.clone();
                    broken[at][0] ^= 1;
                    assert!(!verify_inclusion(&leaves[index as usize], index, size, &broken, &roots[size as usize]));
                }
            }
            for first in 1..=size {
                let proof = consistency_proof(&nodes, first, size).unwrap();
                assert!(verify_consistency(first, size, &roots[first as usize], &roots[size as usize], &proof));
                for at in 0..proof.len() {
                    let mut broken = proof.clone();
                    broken[at][31] ^= 1;
                    assert!(!verify_consistency(first, size, &roots[first as usize], &roots[size as usize], &broken));
                }
            }
        }
        assert!(matches!(inclusion_proof(&nodes, 5, 5), Err(ProofError::OutOfRange(_))));
        assert!(matches!(consistency_proof(&nodes, 0, 5), Err(ProofError::OutOfRange(_))));
        assert!(matches!(consistency_proof(&nodes, 6, 5), Err(ProofError::OutOfRange(_))));
    }
}
