//! Training, the fast way: the same merges as [`crate::train_reference()`],
//! without recounting the corpus for every merge.
//!
//! Three observations make it fast:
//! 1. **Deduplicate.** A corpus of ten million bytes has about two million
//!    pre-token pieces but only a few tens of thousands of *distinct* ones.
//!    [`WordCounts`] keeps each distinct piece once with its count; a pair in
//!    a piece that occurs `n` times counts `n` times.
//! 2. **Update where the pair is, nothing else.** All distinct pieces sit
//!    one after another in one array of symbols, each piece a doubly linked
//!    list. An index `pair → positions where it occurs` finds every
//!    occurrence of the merged pair `(a, b)`; at each, `a` takes the new ID,
//!    `b` leaves the list, and only the pairs around it change: `(p, a)` and
//!    `(b, q)` lose the piece's count, `(p, new)` and `(new, q)` gain it.
//!    So the cost of a merge depends on how often the pair occurs, not on
//!    how long the pieces that hold it are: a word of 10,000 letters costs
//!    no more per merge than ten words of 1,000.
//! 3. **A priority queue with lazy deletion.** A max-heap holds
//!    `(count, pair)` entries, ordered by count and then by the *smaller*
//!    pair, exactly the reference trainer's tie-break. Counts change after
//!    every merge, but only in one direction: a pair that does not involve
//!    the new token can only lose occurrences, and pairs with the new token
//!    are new. So when an entry is popped, its stored count is an upper bound
//!    of the true one: if they agree it is the true maximum; if not, we push
//!    it back with the true count and pop again. No entry is ever searched
//!    for or removed.
//!
//! The position index is lazy too: a merge adds the positions of the pairs
//! it creates, and never removes the positions of the pairs it destroys.
//! Each position is checked when its pair comes up (is the pair still
//! there?); every merge adds at most two positions, so the stale ones cost
//! no more than the real ones.
//!
//! Overlapping occurrences need care: in `a a a`, the pair `(a, a)` occurs
//! twice, and the reference merges the leftmost first (`[aa, a]`). For a
//! pair `(x, x)` the positions are sorted before merging; for `(x, y)` with
//! `x ≠ y` occurrences cannot overlap and the order does not matter.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::path::Path;

use crate::bpe::{BYTE_TOKENS, MAX_TOKEN_BYTES};
use crate::error::TokenizerError;
use crate::hash::{FastHashMap, pack, unpack};
use crate::pretokenize::Split;
use crate::train::{Merge, merges_for};

/// The distinct pre-token pieces of a corpus with their counts.
///
/// ```
/// use tokenizer::{Split, WordCounts};
/// let mut words = WordCounts::new(Split::Gpt4);
/// words.add_text("the cat and the hat");
/// assert_eq!(words.count(" the"), 1);
/// assert_eq!(words.count("the"), 1);
/// assert_eq!(words.len(), 5); // "the" " cat" " and" " the" " hat"
/// assert_eq!(words.total(), 5);
/// ```
#[derive(Debug, Clone, Default)]
pub struct WordCounts {
    split: Split,
    counts: FastHashMap<String, u64>,
}

impl WordCounts {
    /// An empty count, cutting texts with `split`.
    pub fn new(split: Split) -> Self {
        WordCounts {
            split,
            counts: FastHashMap::default(),
        }
    }

    /// Count the pieces of the texts (each text split on its own).
    pub fn from_texts<I, S>(texts: I, split: Split) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut words = WordCounts::new(split);
        for text in texts {
            words.add_text(text.as_ref());
        }
        words
    }

    // ANCHOR: add_text
    /// Count the pieces of one text.
    pub fn add_text(&mut self, text: &str) {
        for piece in self.split.pieces(text) {
            // look up by &str; allocate a String only for a new piece
            match self.counts.get_mut(piece) {
                Some(n) => *n += 1,
                None => {
                    self.counts.insert(piece.to_owned(), 1);
                }
            }
        }
    }
    // ANCHOR_END: add_text

    /// Count the pieces of a UTF-8 text file, read whole.
    ///
    /// # Errors
    /// [`TokenizerError::File`] naming the file, around an I/O error or a
    /// [`TokenizerError::Parse`] error naming the first line that is not
    /// UTF-8.
    pub fn add_file(&mut self, path: impl AsRef<Path>) -> Result<(), TokenizerError> {
        let text = crate::file::read_text(path.as_ref(), u64::MAX)?;
        self.add_text(&text);
        Ok(())
    }

    /// How often `piece` occurred.
    pub fn count(&self, piece: &str) -> u64 {
        self.counts.get(piece).copied().unwrap_or(0)
    }

    /// Number of distinct pieces.
    pub fn len(&self) -> usize {
        self.counts.len()
    }

    /// True if nothing was counted.
    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    /// Number of pieces counted, with repetitions.
    pub fn total(&self) -> u64 {
        self.counts.values().sum()
    }

    /// The rule the texts were split with.
    pub fn split(&self) -> Split {
        self.split
    }
}

/// Marks the end of a piece in [`Symbols::next`] and [`Symbols::prev`], and
/// a symbol merged away in [`Symbols::ids`].
const NONE: u32 = u32::MAX;

/// The distinct pieces, one after another, each a doubly linked list.
struct Symbols {
    /// The token at each position, `NONE` once merged into its left neighbour.
    ids: Vec<u32>,
    /// The next position of the same piece, or `NONE`.
    next: Vec<u32>,
    /// The previous position of the same piece, or `NONE`.
    prev: Vec<u32>,
    /// How often the piece holding each position occurs in the corpus.
    weight: Vec<i64>,
}

impl Symbols {
    /// The pieces of two bytes or more (a single byte has no pair).
    fn new(words: &WordCounts) -> Result<Self, TokenizerError> {
        let total: usize = words
            .counts
            .keys()
            .map(|p| p.len())
            .filter(|&n| n >= 2)
            .sum();
        if total >= NONE as usize {
            return Err(TokenizerError::CorpusTooLarge { bytes: total });
        }
        let mut s = Symbols {
            ids: Vec::with_capacity(total),
            next: Vec::with_capacity(total),
            prev: Vec::with_capacity(total),
            weight: Vec::with_capacity(total),
        };
        for (piece, &n) in &words.counts {
            if piece.len() < 2 {
                continue;
            }
            let start = s.ids.len() as u32;
            let end = start + piece.len() as u32;
            for (i, b) in (start..).zip(piece.bytes()) {
                s.ids.push(b as u32);
                s.prev.push(if i == start { NONE } else { i - 1 });
                s.next.push(if i + 1 == end { NONE } else { i + 1 });
                s.weight.push(n as i64);
            }
        }
        Ok(s)
    }
}

// ANCHOR: train_fast
/// Learn `vocab_size - 256` merges from counted pieces. The result equals
/// [`crate::train_reference()`] on the same texts, merge for merge.
///
/// # Errors
/// As [`crate::train_reference()`]: vocabulary below 256, an empty corpus, or a
/// corpus that runs out of pairs; and [`TokenizerError::CorpusTooLarge`] if
/// the distinct pieces hold 4 GiB or more.
pub fn train_fast(words: &WordCounts, vocab_size: usize) -> Result<Vec<Merge>, TokenizerError> {
    let n_merges = merges_for(vocab_size)?;
    if words.total() == 0 {
        return Err(TokenizerError::EmptyCorpus);
    }
    let mut sym = Symbols::new(words)?;
    // the length of every token in bytes, to respect MAX_TOKEN_BYTES
    let mut token_len: Vec<usize> = vec![1; BYTE_TOKENS];
    // pair counts, and the (left) positions where each pair occurs
    let mut counts: FastHashMap<u64, i64> = FastHashMap::default();
    let mut positions: FastHashMap<u64, Vec<u32>> = FastHashMap::default();
    for i in 0..sym.ids.len() {
        let j = sym.next[i];
        if j != NONE {
            let key = pack(sym.ids[i], sym.ids[j as usize]);
            *counts.entry(key).or_insert(0) += sym.weight[i];
            positions.entry(key).or_default().push(i as u32);
        }
    }
    // max-heap on (count, smallest pair): Reverse makes smaller keys greater
    let mut heap: BinaryHeap<(i64, Reverse<u64>)> =
        counts.iter().map(|(&key, &n)| (n, Reverse(key))).collect();

    let mut merges = Vec::with_capacity(n_merges.min(1 << 20));
    let mut new_pairs: Vec<u64> = Vec::new();
    while merges.len() < n_merges {
        let Some((stored, Reverse(key))) = heap.pop() else {
            return Err(TokenizerError::VocabTooLarge {
                requested: vocab_size,
                reached: BYTE_TOKENS + merges.len(),
            });
        };
        // lazy deletion: the stored count may be stale (it is never too low)
        let current = counts.get(&key).copied().unwrap_or(0);
        if current != stored {
            if current > 0 {
                heap.push((current, Reverse(key)));
            }
            continue;
        }
        let (a, b) = unpack(key);
        if token_len[a as usize] + token_len[b as usize] > MAX_TOKEN_BYTES {
            continue; // a token this long is never learned (see crate::bpe)
        }
        let new_id = (BYTE_TOKENS + merges.len()) as u32;
        token_len.push(token_len[a as usize] + token_len[b as usize]);
        merges.push(Merge {
            pair: (a, b),
            count: current as u64,
        });
        let mut at = positions.remove(&key).unwrap_or_default();
        if a == b {
            at.sort_unstable(); // overlapping occurrences merge from the left
        }
        new_pairs.clear();
        let mut change = |key: u64, delta: i64| {
            *counts.entry(key).or_insert(0) += delta;
        };
        for i in at {
            let iu = i as usize;
            let j = sym.next[iu];
            // stale: merged away, or the pair here is no longer (a, b)
            if sym.ids[iu] != a || j == NONE || sym.ids[j as usize] != b {
                continue;
            }
            let (p, q) = (sym.prev[iu], sym.next[j as usize]);
            let w = sym.weight[iu];
            // the pairs around the occurrence lose it ...
            change(key, -w);
            if p != NONE {
                change(pack(sym.ids[p as usize], a), -w);
            }
            if q != NONE {
                change(pack(b, sym.ids[q as usize]), -w);
            }
            // ... a becomes the new token, b leaves the list ...
            sym.ids[iu] = new_id;
            sym.ids[j as usize] = NONE;
            sym.next[iu] = q;
            if q != NONE {
                sym.prev[q as usize] = i;
            }
            // ... and the pairs with the new token gain it
            if p != NONE {
                let k = pack(sym.ids[p as usize], new_id);
                change(k, w);
                positions.entry(k).or_default().push(p);
                new_pairs.push(k);
            }
            if q != NONE {
                let k = pack(new_id, sym.ids[q as usize]);
                change(k, w);
                positions.entry(k).or_default().push(i);
                new_pairs.push(k);
            }
        }
        debug_assert_eq!(counts.get(&key), Some(&0));
        counts.remove(&key);
        // pairs with the new token enter the heap once, with their full count
        new_pairs.sort_unstable();
        new_pairs.dedup();
        for &k in &new_pairs {
            let n = counts[&k];
            if n > 0 {
                heap.push((n, Reverse(k)));
            }
        }
    }
    Ok(merges)
}
// ANCHOR_END: train_fast

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::train_reference;
    use proptest::prelude::*;

    #[test]
    fn worked_example_matches_the_reference() {
        let words = WordCounts::from_texts(["aaabdaaabac"], Split::Gpt4);
        let fast = train_fast(&words, 259).unwrap();
        let reference = train_reference(["aaabdaaabac"], 259, Split::Gpt4).unwrap();
        assert_eq!(fast, reference);
    }

    #[test]
    fn fast_equals_reference_on_real_text() {
        let text = "The borrow checker doesn't let two mutable references live at once. \
            It's strict, but we'll see why: data races can't happen!\n\n\
            Les élèves étudient la mémoire; 日本語のテキストも少し。 नमस्ते दुनिया 🎉🎉\n\
            fn main() { let x = 12345; println!(\"{x}\"); }   \n\
            Numbers: 3.14159, 2024-11-30, 1000000 and the end.";
        let lines: Vec<&str> = std::iter::repeat_n(text, 3).collect();
        let words = WordCounts::from_texts(&lines, Split::Gpt4);
        let fast = train_fast(&words, 400).unwrap();
        let reference = train_reference(&lines, 400, Split::Gpt4).unwrap();
        assert_eq!(fast.len(), 144);
        assert_eq!(fast, reference);
    }

    /// Long pieces and long runs: the position index and the run order of
    /// `(x, x)` pairs, and the length limit, which both trainers respect.
    #[test]
    fn fast_equals_reference_on_long_pieces() {
        let run = "-".repeat(3000);
        let lines = [
            run.as_str(),
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab",
            &crate::testing::long_words(3, 700),
            run.as_str(),
        ];
        let words = WordCounts::from_texts(lines, Split::Gpt4);
        let fast = train_fast(&words, 700).unwrap();
        let reference = train_reference(lines, 700, Split::Gpt4).unwrap();
        assert_eq!(fast, reference);
        // the dashes double up to 1024 and stop there
        let bpe =
            crate::Bpe::from_merges(&fast.iter().map(|m| m.pair).collect::<Vec<_>>()).unwrap();
        let longest = (0..bpe.len() as u32)
            .map(|id| bpe.token_bytes(id).unwrap().len())
            .max();
        assert_eq!(longest, Some(MAX_TOKEN_BYTES));
    }

    /// The maps' iteration order changes from run to run (their hashes are
    /// keyed); the merges must not.
    #[test]
    fn training_does_not_depend_on_hash_order() {
        let text = crate::testing::multilingual(60_000);
        let first = train_fast(&WordCounts::from_texts([&text], Split::Gpt4), 600).unwrap();
        for _ in 0..3 {
            let again = train_fast(&WordCounts::from_texts([&text], Split::Gpt4), 600).unwrap();
            assert_eq!(again, first);
        }
    }

    #[test]
    fn errors_match_the_reference() {
        let words = WordCounts::from_texts(["abc"], Split::Gpt4);
        assert!(matches!(
            train_fast(&words, 300),
            Err(TokenizerError::VocabTooLarge {
                requested: 300,
                reached: 258
            })
        ));
        assert!(matches!(
            train_fast(&words, usize::MAX),
            Err(TokenizerError::VocabTooLarge { reached: 258, .. })
        ));
        assert!(matches!(
            train_fast(&words, 3),
            Err(TokenizerError::VocabTooSmall { .. })
        ));
        let empty = WordCounts::from_texts([""], Split::Gpt4);
        assert!(matches!(
            train_fast(&empty, 300),
            Err(TokenizerError::EmptyCorpus)
        ));
        // single-byte pieces only: a corpus, but no pairs
        let words = WordCounts::from_texts(["a b c"], Split::Gpt4);
        assert!(matches!(
            train_fast(&words, 257),
            Ok(ref m) if m.len() == 1 // " b" or " c": both count 1, (32, 98) is smaller
        ));
    }

    #[test]
    fn add_file_reports_missing_files_and_bad_utf8() {
        let mut words = WordCounts::new(Split::Gpt4);
        let e = words.add_file("/no/such/file.txt").unwrap_err();
        assert!(e.to_string().starts_with("/no/such/file.txt: "), "{e}");
        let path = std::env::temp_dir().join(format!("tokenizer-bad-{}.txt", std::process::id()));
        std::fs::write(&path, [b'a', b'\n', b'a', 0xff, b'b']).unwrap();
        let e = words.add_file(&path).unwrap_err();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(
            e.to_string(),
            format!(
                "{}: line 2: not valid UTF-8 (byte 2 of the line)",
                path.display()
            )
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]
        /// The fast trainer learns exactly the reference trainer's merges
        /// (pairs and counts), or fails the same way.
        #[test]
        fn fast_equals_reference(
            lines in proptest::collection::vec("[abc ,.'\n]{0,24}|[a-zé😀 ]{0,8}|(a{1,12}|b{1,3}| |aab){1,6}", 1..6),
            extra in 0usize..40,
        ) {
            let vocab = 256 + extra;
            let words = WordCounts::from_texts(&lines, Split::Gpt4);
            let fast = train_fast(&words, vocab);
            let reference = train_reference(&lines, vocab, Split::Gpt4);
            match (fast, reference) {
                (Ok(f), Ok(r)) => prop_assert_eq!(f, r),
                (Err(f), Err(r)) => prop_assert_eq!(f.to_string(), r.to_string()),
                (f, r) => prop_assert!(false, "fast {:?} vs reference {:?}", f, r),
            }
        }
    }
}
