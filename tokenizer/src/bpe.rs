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
//!
//! # Limits
//! Every token's bytes are kept in memory, and a merges file only names
//! pairs: 20,000 merges of "the previous token and `a`" describe tokens of
//! up to 20,000 bytes, 200 MB in all, and 40 merges that each double the
//! previous token describe a terabyte. So a vocabulary obeys two limits,
//! checked by [`Bpe::push_merge`] (and so by every loader), and respected by
//! both trainers, which never learn a pair that would break them:
//! - a token holds at most [`MAX_TOKEN_BYTES`] bytes;
//! - all tokens together hold at most [`MAX_VOCAB_BYTES`] bytes.
//!
//! The memory a vocabulary uses is then at most a few kilobytes per merge
//! line of its file, and never more than a few hundred megabytes.

use std::collections::HashMap;

use crate::error::TokenizerError;
use crate::hash::{FastHashMap, pack};

/// Number of byte tokens: IDs `0..256` are the bytes themselves.
pub const BYTE_TOKENS: usize = 256;

/// The longest token, in bytes: a line of 1024 dashes may be one token, not
/// a longer one.
pub const MAX_TOKEN_BYTES: usize = 1024;

/// The most bytes the tokens of one vocabulary may hold together (64 MiB;
/// 100,000 tokens of ten bytes hold 1 MB).
pub const MAX_VOCAB_BYTES: usize = 64 << 20;

/// Pieces longer than this many bytes are encoded in linear time with a
/// linked list and a radix heap, instead of the repeated scan (O(n²), but
/// fastest for short pieces); most words are shorter.
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
    ranks: FastHashMap<u64, u32>,
    /// ID → bytes, `[256 + merges.len()]`.
    vocab: Vec<Vec<u8>>,
    /// Bytes → ID (the first ID if two merges spell the same bytes).
    ids: FastHashMap<Vec<u8>, u32>,
    /// Bytes held by all tokens together, at most [`MAX_VOCAB_BYTES`].
    total_bytes: usize,
    /// Bit `256 a + b`: do bytes `a b` occur, in that order, inside some
    /// token? If not, no token can span them (see [`Bpe::encode_piece`]).
    /// `[2^16 bits]`.
    joins: Vec<u64>,
    /// Bit `hash(a, b, c)`: set for every three bytes `a b c` that occur
    /// inside some token, and perhaps for a few others (a filter: several
    /// triples share a bit). `[2^18 bits]`.
    triples: Vec<u64>,
}

/// Bits of [`Bpe`]'s `triples` filter: 2^18 (32 KiB).
const TRIPLE_BITS: u32 = 18;

/// The bit of `a b c` in the `triples` filter.
#[inline]
fn triple_bit(a: u8, b: u8, c: u8) -> usize {
    let key = (a as u64) << 16 | (b as u64) << 8 | c as u64;
    (key.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - TRIPLE_BITS)) as usize
}

/// Bit `bit` of a bitmap.
#[inline]
fn has(bits: &[u64], bit: usize) -> bool {
    bits[bit / 64] >> (bit % 64) & 1 == 1
}

/// Set bit `bit` of a bitmap.
#[inline]
fn set(bits: &mut [u64], bit: usize) {
    bits[bit / 64] |= 1 << (bit % 64);
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
            ranks: FastHashMap::default(),
            vocab,
            ids,
            total_bytes: BYTE_TOKENS,
            joins: vec![0; 256 * 256 / 64],
            triples: vec![0; (1 << TRIPLE_BITS) / 64],
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
    /// token, the pair was already merged, or the new token would break one
    /// of the limits ([`MAX_TOKEN_BYTES`], [`MAX_VOCAB_BYTES`]).
    pub fn push_merge(&mut self, pair: (u32, u32)) -> Result<u32, TokenizerError> {
        let index = self.merges.len();
        let new_id = self.vocab.len() as u32;
        let invalid = |reason: String| TokenizerError::InvalidMerge {
            index,
            pair,
            reason,
        };
        if pair.0 >= new_id || pair.1 >= new_id {
            return Err(invalid(format!(
                "uses a token that does not exist yet (the tokens so far are 0..{new_id})"
            )));
        }
        if self.ranks.contains_key(&pack(pair.0, pair.1)) {
            return Err(invalid("repeats an earlier merge".into()));
        }
        let len = self.merged_len(pair.0, pair.1);
        if len > MAX_TOKEN_BYTES {
            return Err(invalid(format!(
                "makes a token of {len} bytes, more than the limit of {MAX_TOKEN_BYTES}"
            )));
        }
        if self.total_bytes + len > MAX_VOCAB_BYTES {
            return Err(invalid(format!(
                "the tokens would hold more than {MAX_VOCAB_BYTES} bytes together, the limit"
            )));
        }
        let mut bytes = Vec::with_capacity(len);
        bytes.extend_from_slice(&self.vocab[pair.0 as usize]);
        bytes.extend_from_slice(&self.vocab[pair.1 as usize]);
        self.ids.entry(bytes.clone()).or_insert(new_id);
        self.vocab.push(bytes);
        self.ranks.insert(pack(pair.0, pair.1), new_id);
        self.merges.push(pair);
        self.total_bytes += len;
        // what the new token holds that neither part held: the bytes where
        // left ends and right starts, and the triples across that point
        let (l, r) = (&self.vocab[pair.0 as usize], &self.vocab[pair.1 as usize]);
        let (a, b) = (l[l.len() - 1], r[0]); // tokens are not empty
        set(&mut self.joins, 256 * a as usize + b as usize);
        if l.len() >= 2 {
            set(&mut self.triples, triple_bit(l[l.len() - 2], a, b));
        }
        if r.len() >= 2 {
            set(&mut self.triples, triple_bit(a, b, r[1]));
        }
        Ok(new_id)
    }

    /// The length in bytes of the token that merging `left` and `right`
    /// would make (both must exist).
    pub fn merged_len(&self, left: u32, right: u32) -> usize {
        self.vocab[left as usize].len() + self.vocab[right as usize].len()
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

    /// Can a token span the point between `piece[k - 1]` and `piece[k]`?
    ///
    /// A token that does is either the two bytes `a b` there, or longer and
    /// holding three bytes across the point: the byte before `a` with `a b`,
    /// or `a b` with the byte after. So the point is safe to cut if `a b`
    /// occur in no token, or if `a b` is no token and neither triple occurs
    /// in one. The filters may say "maybe" for a triple no token holds;
    /// then we do not cut, which is never wrong.
    #[inline]
    fn can_span(&self, piece: &[u8], k: usize) -> bool {
        let (a, b) = (piece[k - 1], piece[k]);
        if !has(&self.joins, 256 * a as usize + b as usize) {
            return false;
        }
        if self.merged(a as u32, b as u32).is_some() {
            return true;
        }
        (k >= 2 && has(&self.triples, triple_bit(piece[k - 2], a, b)))
            || (k + 1 < piece.len() && has(&self.triples, triple_bit(a, b, piece[k + 1])))
    }

    // ANCHOR: encode_piece
    /// Encode one pre-token piece, appending its IDs to `out`.
    ///
    /// Start from the bytes; repeatedly merge the adjacent pair with the
    /// lowest rank (the earliest-learned merge), the leftmost on ties.
    ///
    /// A long piece is first cut where no token can cross ([`Bpe`] keeps
    /// which bytes, and which triples of bytes, occur inside its tokens).
    /// Every token made while encoding is in the vocabulary, so none spans
    /// such a cut, and the parts encode on their own to exactly the same
    /// tokens. A megabyte of random letters falls apart into short parts
    /// this way, each merged in the processor's fastest caches; what stays
    /// long (a run of one letter) goes to the linear-time version.
    pub fn encode_piece(&self, piece: &[u8], out: &mut Vec<u32>) {
        if piece.len() <= LONG_PIECE {
            return self.encode_short_piece(piece, out);
        }
        let mut start = 0;
        for k in 1..piece.len() {
            if !self.can_span(piece, k) {
                self.encode_part(&piece[start..k], out);
                start = k;
            }
        }
        self.encode_part(&piece[start..], out);
    }
    // ANCHOR_END: encode_piece

    /// A part of a piece, by the method that suits its length.
    fn encode_part(&self, part: &[u8], out: &mut Vec<u32>) {
        if part.len() <= LONG_PIECE {
            self.encode_short_piece(part, out);
        } else {
            self.encode_long_piece(part, out);
        }
    }

    // ANCHOR: encode_short_piece
    /// [`Bpe::encode_piece`] for a piece of at most 64 bytes, by the rule as
    /// stated: find the pair with the lowest rank, merge it, repeat.
    fn encode_short_piece(&self, piece: &[u8], out: &mut Vec<u32>) {
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
    // ANCHOR_END: encode_short_piece

    // ANCHOR: encode_long_piece
    /// The same merges as [`Bpe::encode_piece`], in time linear in the
    /// length of the piece (a line of 10,000 dashes, a megabyte without a
    /// space).
    ///
    /// The current tokens form a doubly linked list over the byte positions.
    /// Every adjacent pair that can merge *waits* under its rank, as the
    /// position of its left token. Ranks are processed in increasing order,
    /// each once: merging a pair of rank `r` makes the token `r`, and any
    /// pair that contains token `r` was learned after it, so it has a larger
    /// rank. The ranks waiting never go below the one being merged, which is
    /// what a *radix heap* ([`RankQueue`]) needs to give them in order in
    /// constant time per entry.
    ///
    /// Within one rank the order matters only where occurrences overlap,
    /// which needs `left == right`: in a run `x x x x x`, the leftmost-first
    /// rule gives `(xx)(xx)x`. So a pair `(x, x)` walks back to the start of
    /// its run and merges the whole run from the left; the run's other
    /// entries then find their pair gone. Each position is visited a
    /// constant number of times: linear time.
    ///
    /// subtle: a run then needs only its first pair in the queue, which
    /// keeps the queue small for a megabyte of one letter (or of `aa`
    /// tokens, and so on). Until the run's rank comes, merges of lower rank
    /// can only take an `x` from either end of the run: an `x` inside has
    /// `x` on both sides, and `(x, x)` is the run's own rank. Taking from the
    /// right end leaves the first pair in place; a merge that takes the
    /// first `x` queues the run's new first pair.
    fn encode_long_piece(&self, piece: &[u8], out: &mut Vec<u32>) {
        const NONE: u32 = u32::MAX; // no neighbour; also the ID of a merged-away token
        if piece.is_empty() {
            return;
        }
        if piece.len() >= NONE as usize {
            // subtle: positions are u32, so a piece of 4 GiB or more is
            // encoded in parts; no text of that size is one word
            for part in piece.chunks(NONE as usize - 1) {
                self.encode_long_piece(part, out);
            }
            return;
        }
        let n = piece.len() as u32;
        // the current tokens as a doubly linked list over the positions
        let mut nodes: Vec<Node> = (0..n)
            .map(|i| Node {
                id: piece[i as usize] as u32,
                prev: i.wrapping_sub(1), // 0 → NONE
                next: if i + 1 < n { i + 1 } else { NONE },
            })
            .collect(); // [n]
        let node = |i: u32| i as usize;
        let mut queue = RankQueue::default();
        let mut positions = Vec::new();
        for i in 0..n - 1 {
            let id = |k: u32| nodes[node(k)].id;
            // subtle: a run x x x … needs only its first pair in the queue
            // (see below), and a megabyte of one letter is a run
            if i >= 1 && id(i - 1) == id(i) && id(i + 1) == id(i) {
                continue;
            }
            if let Some(rank) = self.merged(id(i), id(i + 1)) {
                queue.wait(rank, i);
            }
        }
        while let Some(rank) = queue.pop(&mut positions) {
            let (left, right) = self.merges[rank as usize - BYTE_TOKENS];
            // is the pair at i still (left, right)? (not if an earlier merge took a part)
            let holds = |nodes: &[Node], i: u32| {
                let a = nodes[node(i)];
                a.id == left && a.next != NONE && nodes[node(a.next)].id == right
            };
            for &start in &positions {
                if !holds(&nodes, start) {
                    continue; // stale
                }
                let mut i = start;
                if left == right {
                    while nodes[node(i)].prev != NONE && nodes[node(nodes[node(i)].prev)].id == left
                    {
                        i = nodes[node(i)].prev; // back to the start of the run
                    }
                }
                let mut made = 0; // tokens made so far in this run
                loop {
                    // merge i with the token after it, which leaves the list
                    let j = nodes[node(i)].next;
                    let eaten = nodes[node(j)].id;
                    let after = nodes[node(j)].next;
                    nodes[node(j)].id = NONE;
                    nodes[node(i)].id = rank;
                    nodes[node(i)].next = after;
                    if after != NONE {
                        nodes[node(after)].prev = i;
                    }
                    made += 1;
                    // in a run of (x, x), the next pair merges too
                    let more = left == right && after != NONE && holds(&nodes, after);
                    // the two pairs that now contain the new token; in a run,
                    // (new, new) waits only for the first pair of new tokens,
                    // and (new, x) not at all (the next merge ends it)
                    let before = nodes[node(i)].prev;
                    if before != NONE
                        && made <= 2
                        && let Some(r) = self.merged(nodes[node(before)].id, rank)
                    {
                        queue.wait(r, before);
                    }
                    if after != NONE
                        && !more
                        && let Some(r) = self.merged(rank, nodes[node(after)].id)
                    {
                        queue.wait(r, i);
                    }
                    // if `eaten` began a run x x x …, the run now starts at
                    // `after`: queue its first pair again (see above)
                    if after != NONE
                        && nodes[node(after)].id == eaten
                        && nodes[node(after)].next != NONE
                        && nodes[node(nodes[node(after)].next)].id == eaten
                        && let Some(r) = self.merged(eaten, eaten)
                        && r > rank
                    {
                        queue.wait(r, after);
                    }
                    if !more {
                        break;
                    }
                    i = after;
                }
            }
        }
        // position 0 always survives: merges keep their left position
        let mut i = 0;
        while i != NONE {
            out.push(nodes[node(i)].id);
            i = nodes[node(i)].next;
        }
    }
    // ANCHOR_END: encode_long_piece
}

/// One position of a long piece: its current token (`NONE` once merged
/// into its left neighbour) and its neighbours in the list. The three sit
/// together in memory, so following a link costs one cache miss, not three.
#[derive(Clone, Copy)]
struct Node {
    id: u32,
    prev: u32,
    next: u32,
}

// ANCHOR: rank_queue
/// The pairs waiting to merge in a long piece, as `(rank, position)`: a
/// *radix heap*, a priority queue for keys that never go below the last one
/// taken out.
///
/// Bucket `b > 0` holds the ranks whose highest bit that differs from
/// `last` (the rank taken last) is bit `b - 1`; bucket 0 holds `last`
/// itself. Every rank in a bucket is smaller than every rank in a higher
/// one, so the smallest waiting rank is in the lowest non-empty bucket.
/// Taking it out makes it the new `last`, and the bucket's entries move to
/// lower buckets, by their new highest differing bit. An entry only ever
/// moves down, at most 32 times, so each costs constant time: the queue is
/// linear where a binary heap would cost `log n` per entry.
struct RankQueue {
    last: u32,
    buckets: [Vec<(u32, u32)>; 33],
}

impl Default for RankQueue {
    fn default() -> Self {
        RankQueue {
            last: 0,
            buckets: std::array::from_fn(|_| Vec::new()),
        }
    }
}

impl RankQueue {
    fn bucket(&self, rank: u32) -> usize {
        32 - (rank ^ self.last).leading_zeros() as usize
    }

    /// The pair at `position` merges at `rank`, which is above the last
    /// rank taken out.
    fn wait(&mut self, rank: u32, position: u32) {
        debug_assert!(rank > self.last || self.last == 0);
        let b = self.bucket(rank);
        self.buckets[b].push((rank, position));
    }

    /// The smallest waiting rank, with all its positions (into `out`).
    fn pop(&mut self, out: &mut Vec<u32>) -> Option<u32> {
        if self.buckets[0].is_empty() {
            let b = (1..33).find(|&b| !self.buckets[b].is_empty())?;
            let mut moving = std::mem::take(&mut self.buckets[b]);
            self.last = moving.iter().map(|e| e.0).min()?; // not empty
            for &entry in &moving {
                let lower = self.bucket(entry.0); // below b: they share bit b - 1 now
                self.buckets[lower].push(entry);
            }
            moving.clear();
            self.buckets[b] = moving; // keep the allocation
        }
        out.clear();
        out.extend(self.buckets[0].drain(..).map(|e| e.1));
        Some(self.last)
    }
}
// ANCHOR_END: rank_queue

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

    /// Encoding as the rule states it: merge every occurrence of the present
    /// pair learned earliest (left to right), until no pair merges.
    fn naive_encode(bpe: &Bpe, piece: &[u8]) -> Vec<u32> {
        let mut ids: Vec<u32> = piece.iter().map(|&b| b as u32).collect();
        loop {
            let best = ids
                .windows(2)
                .filter_map(|w| bpe.merged(w[0], w[1]).map(|id| ((w[0], w[1]), id)))
                .min_by_key(|&(_, id)| id);
            let Some((pair, id)) = best else { break };
            ids = merge(&ids, pair, id);
        }
        ids
    }

    #[test]
    fn long_pieces_merge_runs_from_the_left() {
        // "aa" = 256, "aaa" = 257 (aa + a), "aaaa" = 258 (aa + aa)
        let bpe = Bpe::from_merges(&[(97, 97), (256, 97), (256, 256)]).unwrap();
        let mut long = vec![];
        bpe.encode_long_piece(&[b'a'; 65], &mut long);
        // 32 aa and an a; the last aa takes the a; 31 aa pair up from the left
        let mut want = vec![258; 15];
        want.extend([256, 257]);
        assert_eq!(long, want);
        for n in [66, 67, 68, 200, 1001] {
            let mut long = vec![];
            bpe.encode_long_piece(&vec![b'a'; n], &mut long);
            assert_eq!(long, naive_encode(&bpe, &vec![b'a'; n]), "{n} a's");
        }
    }

    /// With a real vocabulary, random letters and emoji are cut in many
    /// places, and the parts encode to exactly what the whole does.
    #[test]
    fn cutting_long_pieces_changes_nothing() {
        let text = crate::testing::english(100_000);
        let merges = crate::train_fast(
            &crate::WordCounts::from_texts([&text], crate::Split::Gpt4),
            1024,
        )
        .unwrap();
        let bpe = Bpe::from_merges(&merges.iter().map(|m| m.pair).collect::<Vec<_>>()).unwrap();
        for kind in crate::testing::Adversarial::ALL {
            let piece = kind.text(3000);
            let piece = piece.trim_start().as_bytes();
            let cuts = (1..piece.len())
                .filter(|&k| !bpe.can_span(piece, k))
                .count();
            let (mut cut, mut whole) = (vec![], vec![]);
            bpe.encode_piece(piece, &mut cut);
            bpe.encode_long_piece(piece, &mut whole);
            assert_eq!(cut, whole, "{}: {cuts} cuts", kind.name());
            assert_eq!(cut, naive_encode(&bpe, piece), "{}", kind.name());
            if kind == crate::testing::Adversarial::LongPiece {
                assert!(cuts > 100, "random letters: only {cuts} cuts");
            }
        }
    }

    #[test]
    fn limits_are_errors() {
        // each merge doubles the token: 2, 4, ..., 1024 bytes, then 2048
        let mut bpe = Bpe::new();
        bpe.push_merge((97, 97)).unwrap();
        for id in 256..265 {
            bpe.push_merge((id, id)).unwrap();
        }
        assert_eq!(bpe.token_bytes(265).unwrap().len(), MAX_TOKEN_BYTES);
        let e = bpe.push_merge((265, 265)).unwrap_err();
        assert!(e.to_string().contains("2048 bytes"), "{e}");
        assert_eq!(bpe.len(), 266);
        // the previous token and a letter, over and over: stops at 1024 bytes
        let mut bpe = Bpe::new();
        let mut last = 97;
        let e = loop {
            match bpe.push_merge((last, 97)) {
                Ok(id) => last = id,
                Err(e) => break e,
            }
        };
        assert_eq!(bpe.len(), 256 + MAX_TOKEN_BYTES - 1, "{e}");
        let e = bpe.push_merge((5, 300_000)).unwrap_err();
        assert!(e.to_string().contains("does not exist yet"), "{e}");
    }

    proptest! {
        /// The linear version merges exactly like the scan version.
        #[test]
        fn long_and_short_encoders_agree(
            piece in proptest::collection::vec(prop_oneof![2 => 97u8..100, 1 => Just(97u8)], 0..=64),
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
            bpe.encode_long_piece(&piece, &mut long);
            prop_assert_eq!(&short, &long);
            let bytes: Vec<u8> = short.iter().flat_map(|&id| bpe.token_bytes(id).unwrap().to_vec()).collect();
            prop_assert_eq!(bytes, piece);
        }

        /// On long pieces the cut and the linear version equal the naive
        /// replay: merge every occurrence of the present pair learned
        /// earliest, repeatedly.
        #[test]
        fn long_encoder_equals_naive_replay(
            piece in proptest::collection::vec(prop_oneof![2 => 97u8..100, 1 => Just(97u8)], 65..400),
            merges in proptest::collection::vec((0u32..12, 0u32..12), 0..30),
        ) {
            let mut bpe = Bpe::new();
            for (l, r) in merges {
                let pick = |x: u32, len: usize| if x < 3 { 97 + x } else { (256 + x as usize - 3).min(len - 1) as u32 };
                let len = bpe.len();
                let _ = bpe.push_merge((pick(l, len), pick(r, len)));
            }
            let ids = naive_encode(&bpe, &piece);
            // cut where no token can cross, then each part
            let mut cut = vec![];
            bpe.encode_piece(&piece, &mut cut);
            prop_assert_eq!(&cut, &ids);
            // the linear version on the whole piece
            let mut long = vec![];
            bpe.encode_long_piece(&piece, &mut long);
            prop_assert_eq!(long, ids);
        }

        /// Long runs, eaten from both ends by merges of lower rank before
        /// their own rank comes: the queue holds only a run's first pair.
        #[test]
        fn runs_merge_like_the_naive_replay(
            piece in "(a{1,60}|b{1,4}|c{1,2}){1,12}",
            merges in proptest::collection::vec((0u32..10, 0u32..10), 0..24),
        ) {
            let mut bpe = Bpe::new();
            for (l, r) in merges {
                // mostly a; then merges, so (aa, aa), (b, aa), (ba, a) … appear
                let pick = |x: u32, len: usize| match x {
                    0..=3 => 97,
                    4 => 98,
                    5 => 99,
                    _ => (256 + x as usize - 6).min(len - 1) as u32,
                };
                let len = bpe.len();
                let _ = bpe.push_merge((pick(l, len), pick(r, len)));
            }
            let mut long = vec![];
            bpe.encode_long_piece(piece.as_bytes(), &mut long);
            prop_assert_eq!(long, naive_encode(&bpe, piece.as_bytes()));
        }
    }
}
