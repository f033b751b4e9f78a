//! Training, the plain way: recount every pair for every merge.
//!
//! This is the teaching version (minbpe's `train`): cut the corpus into
//! pre-token pieces, turn each piece into its bytes, then repeat
//! `vocab_size - 256` times: count all adjacent pairs in all pieces, pick the
//! most frequent, give it the next ID and replace it everywhere. It costs
//! O(merges × corpus), which is fine for a page of text and hopeless for
//! megabytes; [`crate::train_fast()`] computes exactly the same merges quickly.
//!
//! **Tie-break.** Two pairs often have the same count. We take the pair with
//! the highest count and, among equal counts, the *smallest* pair, comparing
//! the left ID and then the right ID. Both trainers use this rule, so their
//! merges are identical, not merely equally good.
//!
//! **Length limit.** A pair whose token would be longer than
//! [`MAX_TOKEN_BYTES`] is never merged (see [`crate::bpe`]): a corpus with a
//! long line of dashes learns tokens of up to 1024 dashes, not the whole line.
//!
//! # The worked example: `aaabdaaabac`, 3 merges
//! The bytes are `a a a b d a a a b a c` (`a` = 97, `b` = 98, `c` = 99,
//! `d` = 100); the GPT-4 split leaves the word whole.
//! 1. Pair counts: `(a,a)` 4 (overlaps count), `(a,b)` 2, every other pair 1.
//!    Merge `(97, 97)` → **256** (`aa`). The IDs become `256 a b d 256 a b a c`.
//! 2. Counts: `(256,a)` 2 and `(a,b)` 2 tie; `(97, 98)` is the smaller pair.
//!    Merge `(97, 98)` → **257** (`ab`): `256 257 d 256 257 a c`.
//! 3. `(256, 257)` occurs twice, every other pair once. Merge it → **258**
//!    (`aaab`): `258 d 258 a c`.
//!
//! So the text encodes to `[258, 100, 258, 97, 99]`: 11 bytes in 5 tokens.

use std::cmp::Reverse;
use std::collections::HashMap;

use crate::bpe::{BYTE_TOKENS, MAX_TOKEN_BYTES, count_pairs, merge};
use crate::error::TokenizerError;
use crate::pretokenize::Split;

/// One learned merge: the pair and how often it occurred when it was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Merge {
    /// `(left, right)` token IDs.
    pub pair: (u32, u32),
    /// Occurrences of the pair in the corpus at the moment it was merged.
    pub count: u64,
}

/// Check a requested vocabulary size; returns the number of merges to learn.
pub(crate) fn merges_for(vocab_size: usize) -> Result<usize, TokenizerError> {
    // subtle: a huge size is not rejected here; training stops with
    // `VocabTooLarge` when the corpus runs out of pairs (each merge needs a
    // pair to remove, so IDs overflow `u32` only past 4 GB of text)
    vocab_size
        .checked_sub(BYTE_TOKENS)
        .ok_or(TokenizerError::VocabTooSmall {
            requested: vocab_size,
        })
}

// ANCHOR: train_reference
/// Learn `vocab_size - 256` merges from `texts`, recounting all pairs for
/// every merge. Each text is split on its own (pieces never span two texts).
///
/// # Errors
/// - [`TokenizerError::VocabTooSmall`] if `vocab_size < 256`;
/// - [`TokenizerError::EmptyCorpus`] if the texts hold no bytes;
/// - [`TokenizerError::VocabTooLarge`] if no pair is left before the
///   vocabulary is full.
pub fn train_reference<I, S>(
    texts: I,
    vocab_size: usize,
    split: Split,
) -> Result<Vec<Merge>, TokenizerError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let n_merges = merges_for(vocab_size)?;
    // every pre-token piece as a list of byte IDs
    let mut pieces: Vec<Vec<u32>> = Vec::new();
    for text in texts {
        for piece in split.pieces(text.as_ref()) {
            pieces.push(piece.bytes().map(u32::from).collect());
        }
    }
    if pieces.is_empty() {
        return Err(TokenizerError::EmptyCorpus);
    }
    let mut merges = Vec::new();
    let mut token_len = vec![1; BYTE_TOKENS]; // bytes per token
    for i in 0..n_merges {
        // count up every adjacent pair in every piece
        let mut counts = HashMap::new();
        for ids in &pieces {
            count_pairs(ids, &mut counts);
        }
        // the most frequent pair; on a tie, the smallest (left, right)
        let best = counts
            .into_iter()
            .filter(|&((l, r), _)| token_len[l as usize] + token_len[r as usize] <= MAX_TOKEN_BYTES)
            .max_by_key(|&(pair, count)| (count, Reverse(pair)));
        let Some((pair, count)) = best else {
            return Err(TokenizerError::VocabTooLarge {
                requested: vocab_size,
                reached: BYTE_TOKENS + i,
            });
        };
        // mint a new token with the next free ID and replace the pair everywhere
        let new_id = (BYTE_TOKENS + i) as u32;
        token_len.push(token_len[pair.0 as usize] + token_len[pair.1 as usize]);
        for ids in &mut pieces {
            *ids = merge(ids, pair, new_id);
        }
        merges.push(Merge {
            pair,
            count: count as u64,
        });
    }
    Ok(merges)
}
// ANCHOR_END: train_reference

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worked_example_aaabdaaabac() {
        let merges = train_reference(["aaabdaaabac"], 259, Split::Gpt4).unwrap();
        let pairs: Vec<(u32, u32)> = merges.iter().map(|m| m.pair).collect();
        assert_eq!(pairs, [(97, 97), (97, 98), (256, 257)]);
        let counts: Vec<u64> = merges.iter().map(|m| m.count).collect();
        assert_eq!(counts, [4, 2, 2]);
    }

    #[test]
    fn ties_go_to_the_smallest_pair() {
        // "ab" and "cd" both occur twice; (97, 98) < (99, 100)
        let merges = train_reference(["cd", "ab", "cd", "ab"], 258, Split::Gpt4).unwrap();
        assert_eq!(merges[0].pair, (97, 98));
        assert_eq!(merges[1].pair, (99, 100));
    }

    #[test]
    fn pieces_keep_merges_inside_words() {
        // without a split, "a!" (3 times) would glue a word to its punctuation
        let text = "a! a! a!";
        let none = train_reference([text], 257, Split::None).unwrap();
        assert_eq!(none[0].pair, (97, 33));
        // with it, the pieces are "a" "!" " a" "!" " a" "!": " a" wins
        let split = train_reference([text], 257, Split::Gpt4).unwrap();
        assert_eq!(split[0].pair, (32, 97));
    }

    #[test]
    fn bad_sizes_and_empty_corpora_are_errors() {
        assert!(matches!(
            train_reference(["abc"], 100, Split::Gpt4),
            Err(TokenizerError::VocabTooSmall { requested: 100 })
        ));
        assert!(matches!(
            train_reference(Vec::<String>::new(), 300, Split::Gpt4),
            Err(TokenizerError::EmptyCorpus)
        ));
        assert!(matches!(
            train_reference(["", ""], 300, Split::Gpt4),
            Err(TokenizerError::EmptyCorpus)
        ));
        // "abc" supports two merges: ab, then abc
        let e = train_reference(["abc"], 300, Split::Gpt4).unwrap_err();
        assert!(matches!(
            e,
            TokenizerError::VocabTooLarge {
                requested: 300,
                reached: 258
            }
        ));
        assert_eq!(train_reference(["abc"], 256, Split::Gpt4).unwrap(), []);
        // an absurd size is the same error, not an allocation failure
        let e = train_reference(["abc"], usize::MAX, Split::Gpt4).unwrap_err();
        assert!(matches!(
            e,
            TokenizerError::VocabTooLarge { reached: 258, .. }
        ));
    }
}
