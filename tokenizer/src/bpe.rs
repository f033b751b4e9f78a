//! Byte-pair encoding: the vocabulary as a list of merges, and how a piece of
//! text becomes token IDs.
//!
//! Every token is either a byte (IDs `0..256`) or the merge of two earlier
//! tokens: merge `i` joins `(left, right)` into the new token `256 + i`, whose
//! bytes are `bytes(left) ++ bytes(right)`. The list of merges *is* the
//! vocabulary; everything else ([`Bpe::token_bytes`], the ID of a byte
//! string, the rank of a pair) is derived from it.
//!
//! Encoding repeats one step until nothing changes: among the adjacent pairs
//! of the current IDs, merge the one whose merge was learned *earliest* (its
//! rank; here simply the merged token's ID), taking the leftmost if it occurs
//! more than once. This replays, inside one piece, exactly what training did.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use crate::error::TokenizerError;
use crate::hash::{FxHashMap, pack};

/// Number of byte tokens: IDs `0..256` are the bytes themselves.
pub const BYTE_TOKENS: usize = 256;

/// Pieces longer than this many bytes are encoded with a heap (O(n log n))
/// instead of the repeated scan (O(n²)); real words are far shorter.
const LONG_PIECE: usize = 64;

/// The rank of a pair that never merges: larger than every real rank.
const NO_MERGE: u32 = u32::MAX;

// ANCHOR: count_pairs
/// Add the count of every adjacent pair in `ids` to `counts`.
///
/// Example: `[1, 2, 3, 1, 2]` → `{(1, 2): 2, (2, 3): 1, (3, 1): 1}`.
/// Overlapping pairs all count: `[7, 7, 7]` → `{(7, 7): 2}`.
pub fn count_pairs(ids: &[u32], counts: &mut HashMap<(u32, u32), usize>) {
    for w in ids.windows(2) {
        *counts.entry((w[0], w[1])).or_insert(0) += 1;
    }
}
// ANCHOR_END: count_pairs

// ANCHOR: merge
/// Replace every occurrence of `pair` in `ids` by `new_id`, left to right.
///
/// Example: `ids = [1, 2, 3, 1, 2]`, `pair = (1, 2)`, `new_id = 4` → `[4, 3, 4]`.
/// subtle: occurrences may overlap; the leftmost wins, so `[7, 7, 7]` with
/// `(7, 7) → 9` gives `[9, 7]`.
pub fn merge(ids: &[u32], pair: (u32, u32), new_id: u32) -> Vec<u32> {
    let mut out = Vec::with_capacity(ids.len());
    let mut i = 0;
    while i < ids.len() {
        if i + 1 < ids.len() && (ids[i], ids[i + 1]) == pair {
            out.push(new_id);
            i += 2;
        } else {
            out.push(ids[i]);
            i += 1;
        }
    }
    out
}
// ANCHOR_END: merge

/// A byte-level BPE vocabulary: the merges, and the tables derived from them.
#[derive(Debug, Clone, PartialEq)]
pub struct Bpe {
    /// `merges[i] = (left, right)` makes token `256 + i`.
    merges: Vec<(u32, u32)>,
    /// `pack(left, right)` → merged ID; the ID doubles as the merge's rank.
    ranks: FxHashMap<u64, u32>,
    /// ID → bytes, `[256 + merges.len()]`.
    vocab: Vec<Vec<u8>>,
    /// Bytes → ID (the first ID if two merges spell the same bytes).
    ids: FxHashMap<Vec<u8>, u32>,
}

impl Default for Bpe {
    fn default() -> Self {
        Self::new()
    }
}

impl Bpe {
    /// The vocabulary of the 256 bytes and no merges.
    pub fn new() -> Self {
        let vocab: Vec<Vec<u8>> = (0..=255u8).map(|b| vec![b]).collect();
        let ids = vocab.iter().cloned().zip(0u32..).collect();
        Bpe {
            merges: Vec::new(),
            ranks: FxHashMap::default(),
            vocab,
            ids,
        }
    }

    /// Build from a list of merges, checking each one.
    ///
    /// # Errors
    /// [`TokenizerError::InvalidMerge`] if a merge uses a token that does not
    /// exist yet or repeats an earlier pair.
    pub fn from_merges(merges: &[(u32, u32)]) -> Result<Self, TokenizerError> {
        let mut bpe = Bpe::new();
        for &pair in merges {
            bpe.push_merge(pair)?;
        }
        Ok(bpe)
    }

    /// Append one merge; returns the new token's ID.
    ///
    /// # Errors
    /// [`TokenizerError::InvalidMerge`] if `left` or `right` is not yet a
    /// token, or the pair was already merged.
    pub fn push_merge(&mut self, pair: (u32, u32)) -> Result<u32, TokenizerError> {
        let index = self.merges.len();
        let new_id = self.vocab.len() as u32;
        let invalid = |reason| TokenizerError::InvalidMerge {
            index,
            pair,
            reason,
        };
        if pair.0 >= new_id || pair.1 >= new_id {
            return Err(invalid("uses a token that does not exist yet"));
        }
        if self.ranks.contains_key(&pack(pair.0, pair.1)) {
            return Err(invalid("repeats an earlier merge"));
        }
        let mut bytes = self.vocab[pair.0 as usize].clone();
        bytes.extend_from_slice(&self.vocab[pair.1 as usize]);
        self.ids.entry(bytes.clone()).or_insert(new_id);
        self.vocab.push(bytes);
        self.ranks.insert(pack(pair.0, pair.1), new_id);
        self.merges.push(pair);
        Ok(new_id)
    }

    /// Keep only the first `n` merges: the vocabulary training would have
    /// produced with a target of `256 + n` (training is greedy, so a smaller
    /// vocabulary is a prefix of a larger one).
    pub fn truncated(&self, n: usize) -> Bpe {
        // a prefix of valid merges is valid
        Bpe::from_merges(&self.merges[..n.min(self.merges.len())]).unwrap()
    }

    /// The merges in the order they were learned.
    pub fn merges(&self) -> &[(u32, u32)] {
        &self.merges
    }

    /// Number of tokens: `256 + merges`.
    pub fn len(&self) -> usize {
        self.vocab.len()
    }

    /// Always false: the 256 bytes are always there.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The bytes of token `id`, or `None` if there is no such token.
    pub fn token_bytes(&self, id: u32) -> Option<&[u8]> {
        self.vocab.get(id as usize).map(Vec::as_slice)
    }

    /// The ID of the token spelling exactly `bytes`, if there is one.
    pub fn token_id(&self, bytes: &[u8]) -> Option<u32> {
        self.ids.get(bytes).copied()
    }

    /// The rank of the pair (the merged token's ID), or [`NO_MERGE`].
    #[inline]
    fn rank(&self, left: u32, right: u32) -> u32 {
        self.merged(left, right).unwrap_or(NO_MERGE)
    }

    /// The token that `left` and `right` merge into, if they ever do.
    #[inline]
    pub fn merged(&self, left: u32, right: u32) -> Option<u32> {
        self.ranks.get(&pack(left, right)).copied()
    }

    // ANCHOR: encode_piece
    /// Encode one pre-token piece, appending its IDs to `out`.
    ///
    /// Start from the bytes; repeatedly merge the adjacent pair with the
    /// lowest rank (the earliest-learned merge), the leftmost on ties.
    pub fn encode_piece(&self, piece: &[u8], out: &mut Vec<u32>) {
        if piece.len() > LONG_PIECE {
            return self.encode_long_piece(piece, out);
        }
        let mut n = piece.len(); // current number of tokens
        let mut ids = [0u32; LONG_PIECE]; // the tokens, [n]
        let mut ranks = [NO_MERGE; LONG_PIECE]; // ranks[i]: merge of ids[i], ids[i + 1], [n - 1]
        for (i, &b) in piece.iter().enumerate() {
            ids[i] = b as u32;
        }
        for i in 0..n.saturating_sub(1) {
            ranks[i] = self.rank(ids[i], ids[i + 1]);
        }
        while n >= 2 {
            // the pair merged earliest in training, leftmost on ties
            let mut i = 0;
            for j in 1..n - 1 {
                if ranks[j] < ranks[i] {
                    i = j;
                }
            }
            if ranks[i] == NO_MERGE {
                break;
            }
            // replace the pair by its token: ids[i] = merged, drop ids[i + 1]
            ids[i] = ranks[i];
            ids.copy_within(i + 2..n, i + 1);
            if i + 2 < n {
                ranks.copy_within(i + 2..n - 1, i + 1);
            }
            n -= 1;
            // only the two pairs touching the new token change
            if i + 1 < n {
                ranks[i] = self.rank(ids[i], ids[i + 1]);
            }
            if i > 0 {
                ranks[i - 1] = self.rank(ids[i - 1], ids[i]);
            }
        }
        out.extend_from_slice(&ids[..n]);
    }
    // ANCHOR_END: encode_piece

    /// The same merges as [`Bpe::encode_piece`] in O(n log n) for long pieces
    /// (a line of 10 000 dashes): a doubly linked list of the current tokens
    /// and a min-heap of `(rank, position)` candidates. Entries made stale by
    /// an earlier merge are skipped when popped ("lazy deletion").
    fn encode_long_piece(&self, piece: &[u8], out: &mut Vec<u32>) {
        const NONE: usize = usize::MAX;
        let n = piece.len();
        let mut ids: Vec<u32> = piece.iter().map(|&b| b as u32).collect(); // [n]
        let mut alive = vec![true; n];
        let mut next: Vec<usize> = (1..=n).map(|j| if j < n { j } else { NONE }).collect();
        let mut prev: Vec<usize> = (0..n).map(|i| i.wrapping_sub(1)).collect(); // 0 → NONE
        let mut heap = BinaryHeap::new(); // Reverse((rank, position of the left token))
        for i in 0..n - 1 {
            if let Some(id) = self.merged(ids[i], ids[i + 1]) {
                heap.push(Reverse((id, i)));
            }
        }
        while let Some(Reverse((id, i))) = heap.pop() {
            let j = next[i];
            // stale: the left token was merged away, or its pair changed
            if !alive[i] || j == NONE || self.merged(ids[i], ids[j]) != Some(id) {
                continue;
            }
            ids[i] = id;
            alive[j] = false;
            next[i] = next[j];
            if next[j] != NONE {
                prev[next[j]] = i;
            }
            if prev[i] != NONE
                && let Some(left) = self.merged(ids[prev[i]], id)
            {
                heap.push(Reverse((left, prev[i])));
            }
            if next[i] != NONE
                && let Some(right) = self.merged(id, ids[next[i]])
            {
                heap.push(Reverse((right, i)));
            }
        }
        out.extend((0..n).filter(|&i| alive[i]).map(|i| ids[i]));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn count_pairs_counts_overlaps() {
        let mut c = HashMap::new();
        count_pairs(&[1, 2, 3, 1, 2], &mut c);
        assert_eq!(c.len(), 3);
        assert_eq!(c[&(1, 2)], 2);
        let mut c = HashMap::new();
        count_pairs(&[7, 7, 7], &mut c);
        assert_eq!(c[&(7, 7)], 2);
        let mut c = HashMap::new();
        count_pairs(&[5], &mut c);
        assert!(c.is_empty());
    }

    #[test]
    fn merge_replaces_left_to_right() {
        assert_eq!(merge(&[1, 2, 3, 1, 2], (1, 2), 4), [4, 3, 4]);
        assert_eq!(merge(&[7, 7, 7], (7, 7), 9), [9, 7]);
        assert_eq!(merge(&[7, 7, 7, 7], (7, 7), 9), [9, 9]);
        assert_eq!(merge(&[], (7, 7), 9), Vec::<u32>::new());
    }

    #[test]
    fn merges_build_tokens_from_earlier_ones() {
        let bpe = Bpe::from_merges(&[(97, 97), (97, 98), (256, 257)]).unwrap();
        assert_eq!(bpe.len(), 259);
        assert_eq!(bpe.token_bytes(258), Some(b"aaab".as_slice()));
        assert_eq!(bpe.token_id(b"ab"), Some(257));
        assert_eq!(bpe.token_id(b"x"), Some(120));
        assert_eq!(bpe.token_id(b"xy"), None);
        assert_eq!(bpe.token_bytes(259), None);
        assert_eq!(bpe.merged(256, 257), Some(258));
        assert_eq!(bpe.truncated(1).len(), 257);
    }

    #[test]
    fn invalid_merges_are_errors() {
        let e = Bpe::from_merges(&[(97, 256)]).unwrap_err();
        assert!(
            matches!(e, TokenizerError::InvalidMerge { index: 0, .. }),
            "{e}"
        );
        let e = Bpe::from_merges(&[(97, 97), (1, 2), (97, 97)]).unwrap_err();
        assert!(e.to_string().contains("merge 2"), "{e}");
        assert!(e.to_string().contains("repeats"), "{e}");
    }

    #[test]
    fn encode_piece_follows_ranks_not_length() {
        // (b,c) was learned before (a,b): "abc" → [a, bc]
        let bpe = Bpe::from_merges(&[(98, 99), (97, 98)]).unwrap();
        let mut out = vec![];
        bpe.encode_piece(b"abc", &mut out);
        assert_eq!(out, [97, 256]);
        // appends after what is already there
        bpe.encode_piece(b"ab", &mut out);
        assert_eq!(out, [97, 256, 257]);
    }

    #[test]
    fn encode_long_piece_handles_runs() {
        // "aa" = 256, "aaaa" = 257
        let bpe = Bpe::from_merges(&[(97, 97), (256, 256)]).unwrap();
        let mut out = vec![];
        bpe.encode_piece(&[b'a'; 101], &mut out);
        assert_eq!(out.len(), 25 + 1);
        assert!(out[..25].iter().all(|&id| id == 257));
        assert_eq!(out[25], 97);
    }

    proptest! {
        /// The heap version merges exactly like the scan version.
        #[test]
        fn long_and_short_encoders_agree(
            piece in proptest::collection::vec(97u8..100, 0..60),
            merges in proptest::collection::vec((0u32..8, 0u32..8), 0..20),
        ) {
            let mut bpe = Bpe::new();
            for (l, r) in merges {
                // map small numbers onto existing tokens: bytes a..c, then merges
                let pick = |x: u32, len: usize| if x < 3 { 97 + x } else { (256 + x as usize - 3).min(len - 1) as u32 };
                let len = bpe.len();
                let _ = bpe.push_merge((pick(l, len), pick(r, len)));
            }
            let mut short = vec![];
            bpe.encode_piece(&piece, &mut short);
            let mut long = vec![];
            if !piece.is_empty() {
                bpe.encode_long_piece(&piece, &mut long);
            }
            prop_assert_eq!(&short, &long);
            let bytes: Vec<u8> = short.iter().flat_map(|&id| bpe.token_bytes(id).unwrap().to_vec()).collect();
            prop_assert_eq!(bytes, piece);
        }
    }
}
