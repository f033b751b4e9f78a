//! The [`Tokenizer`]: a BPE vocabulary, a split rule and special tokens,
//! with training, encoding and decoding in one place.

use std::fmt;
use std::hash::BuildHasher;
use std::path::Path;
use std::sync::{Mutex, TryLockError};

use crate::bpe::Bpe;
use crate::decode::StreamDecoder;
use crate::error::TokenizerError;
use crate::hash::FastHashMap;
use crate::pretokenize::Split;
use crate::special::{AllowedSpecial, SpecialTokens};
use crate::train_fast::{WordCounts, train_fast};

// ANCHOR: piece_cache
/// Cached encodings of pieces seen before. Text repeats its words, so most
/// pieces of a long text are found here instead of being merged again.
///
/// Hostile text repeats nothing: a megabyte of distinct pieces would fill
/// the cache with entries never used again, and allocating and freeing them
/// would cost more than encoding. So a piece is only kept the *second* time
/// it is seen: `seen` remembers the hashes of pieces met once, in a small
/// table of fixed size (a slot per hash, a newer piece overwriting an
/// older one). Frequent words are admitted at once, one-off pieces never.
///
/// The memory is bounded whatever the text: pieces longer than
/// [`PieceCache::MAX_PIECE`] bytes are not kept, and when the entries would
/// use more than [`PieceCache::MAX_BYTES`] the cache is emptied and fills
/// again. The hashes are keyed ([`crate::hash`]), so no text can make the
/// lookups slow.
#[derive(Debug, Default)]
struct PieceCache {
    map: FastHashMap<Box<[u8]>, Box<[u32]>>,
    /// Memory the entries use, as estimated by [`PieceCache::cost`].
    bytes: usize,
    /// The top half of the hashes of pieces seen once, `[SEEN_SLOTS]`,
    /// allocated on first use.
    seen: Vec<u32>,
}

impl PieceCache {
    /// The memory the cache may use: 16 MiB, a few hundred thousand pieces.
    const MAX_BYTES: usize = 16 << 20;
    /// The longest piece kept, in bytes.
    const MAX_PIECE: usize = 256;
    /// Slots of the table of pieces seen once: 8192 (32 KiB, so it stays
    /// in the processor's fastest caches).
    const SEEN_SLOTS: usize = 1 << 13;

    /// The memory of one entry: the piece, its IDs, and about 64 bytes for
    /// the two boxes, their allocations and the table's slot.
    fn cost(piece: &[u8], ids: &[u32]) -> usize {
        piece.len() + 4 * ids.len() + 64
    }

    fn get(&self, piece: &[u8]) -> Option<&[u32]> {
        self.map.get(piece).map(|ids| &ids[..])
    }

    /// Keep `ids` as the encoding of `piece` if the piece was seen before.
    fn insert(&mut self, piece: &[u8], ids: &[u32]) {
        if piece.len() > Self::MAX_PIECE {
            return;
        }
        if self.seen.is_empty() {
            self.seen = vec![0; Self::SEEN_SLOTS];
        }
        let hash = self.map.hasher().hash_one(piece);
        let (slot, tag) = (hash as usize % Self::SEEN_SLOTS, (hash >> 32) as u32);
        if self.seen[slot] != tag {
            self.seen[slot] = tag; // the first time: remember it, no more
            return;
        }
        let cost = Self::cost(piece, ids);
        if self.bytes + cost > Self::MAX_BYTES {
            self.clear();
        }
        self.map.insert(piece.into(), ids.into());
        self.bytes += cost;
    }

    fn clear(&mut self) {
        self.map.clear();
        self.bytes = 0;
    }

    /// Forget everything, the pieces seen once included.
    fn forget(&mut self) {
        self.clear();
        self.seen.fill(0);
    }
}
// ANCHOR_END: piece_cache

/// A byte-level BPE tokenizer.
///
/// IDs `0..256` are bytes, `256..256 + merges` are merged tokens, and the
/// special tokens follow. See the crate documentation for a tour.
pub struct Tokenizer {
    split: Split,
    bpe: Bpe,
    specials: SpecialTokens,
    /// Shared by `&self` encodes; one lock per call, not per piece.
    cache: Mutex<PieceCache>,
}

impl Clone for Tokenizer {
    fn clone(&self) -> Self {
        Tokenizer::new(self.bpe.clone(), self.split).with_specials(self.specials.clone())
    }
}

impl PartialEq for Tokenizer {
    fn eq(&self, other: &Self) -> bool {
        self.split == other.split && self.bpe == other.bpe && self.specials == other.specials
    }
}

impl fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tokenizer")
            .field("split", &self.split)
            .field("merges", &self.bpe.merges().len())
            .field("specials", &self.specials.tokens())
            .field("vocab_size", &self.vocab_size())
            .finish()
    }
}

impl Tokenizer {
    /// A tokenizer from a vocabulary and a split rule, with no special tokens.
    pub fn new(bpe: Bpe, split: Split) -> Self {
        Tokenizer {
            split,
            bpe,
            specials: SpecialTokens::default(),
            cache: Mutex::new(PieceCache::default()),
        }
    }

    fn with_specials(mut self, specials: SpecialTokens) -> Self {
        self.specials = specials;
        self
    }

    /// The 256 byte tokens only: every byte is one token.
    pub fn bytes_only(split: Split) -> Self {
        Tokenizer::new(Bpe::new(), split)
    }

    /// Train on one text with the fast trainer and the GPT-4 split.
    /// `vocab_size` counts the bytes and merges; special tokens come on top.
    ///
    /// # Errors
    /// See [`crate::train_fast()`].
    pub fn train(text: &str, vocab_size: usize) -> Result<Self, TokenizerError> {
        Self::train_words(&WordCounts::from_texts([text], Split::Gpt4), vocab_size)
    }

    /// Train on an iterator of lines (captions, paragraphs); each is split
    /// on its own, so no token spans two lines.
    ///
    /// # Errors
    /// See [`crate::train_fast()`].
    pub fn train_lines<I, S>(lines: I, vocab_size: usize) -> Result<Self, TokenizerError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Self::train_words(&WordCounts::from_texts(lines, Split::Gpt4), vocab_size)
    }

    /// Train on a UTF-8 text file.
    ///
    /// # Errors
    /// I/O errors, [`TokenizerError::NotUtf8`], and those of [`crate::train_fast()`].
    pub fn train_file(path: impl AsRef<Path>, vocab_size: usize) -> Result<Self, TokenizerError> {
        let mut words = WordCounts::new(Split::Gpt4);
        words.add_file(path)?;
        Self::train_words(&words, vocab_size)
    }

    /// Train on pieces already counted (any split rule).
    ///
    /// # Errors
    /// See [`crate::train_fast()`].
    pub fn train_words(words: &WordCounts, vocab_size: usize) -> Result<Self, TokenizerError> {
        let merges: Vec<(u32, u32)> = train_fast(words, vocab_size)?
            .iter()
            .map(|m| m.pair)
            .collect();
        let bpe = Bpe::from_merges(&merges)?;
        Ok(Tokenizer::new(bpe, words.split()))
    }

    /// Register a special token; returns its ID.
    ///
    /// # Errors
    /// [`TokenizerError::InvalidSpecial`] (empty, whitespace, duplicate).
    pub fn add_special_token(&mut self, token: &str) -> Result<u32, TokenizerError> {
        let index = self.specials.push(token)?;
        Ok((self.bpe.len() + index) as u32)
    }

    /// Register several special tokens, in order.
    ///
    /// # Errors
    /// As [`Tokenizer::add_special_token`].
    pub fn with_special_tokens(mut self, tokens: &[&str]) -> Result<Self, TokenizerError> {
        for t in tokens {
            self.add_special_token(t)?;
        }
        Ok(self)
    }

    /// The ID of a registered special token.
    pub fn special_id(&self, token: &str) -> Option<u32> {
        self.specials
            .index_of(token)
            .map(|i| (self.bpe.len() + i) as u32)
    }

    /// The special tokens in ID order.
    pub fn special_tokens(&self) -> &[String] {
        self.specials.tokens()
    }

    /// Number of IDs: bytes, merges and special tokens. An embedding table
    /// for this tokenizer has this many rows.
    pub fn vocab_size(&self) -> usize {
        self.bpe.len() + self.specials.len()
    }

    /// The BPE vocabulary (bytes and merges).
    pub fn bpe(&self) -> &Bpe {
        &self.bpe
    }

    /// The pre-tokenisation rule.
    pub fn split(&self) -> Split {
        self.split
    }

    /// The bytes of any ID (a special token's are its text).
    pub fn id_to_bytes(&self, id: u32) -> Option<&[u8]> {
        let id = id as usize;
        if id < self.bpe.len() {
            self.bpe.token_bytes(id as u32)
        } else {
            self.specials
                .tokens()
                .get(id - self.bpe.len())
                .map(|s| s.as_bytes())
        }
    }

    /// The ID of the ordinary token spelling exactly `bytes`.
    pub fn token_id(&self, bytes: &[u8]) -> Option<u32> {
        self.bpe.token_id(bytes)
    }

    /// One line per merge: `[th][e] -> [the] 300`.
    pub fn merge_listing(&self) -> Vec<String> {
        crate::vocab::merge_listing(&self.bpe)
    }

    /// Forget the cached piece encodings.
    pub fn clear_cache(&self) {
        self.lock_cache().forget();
    }

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, PieceCache> {
        // a panic elsewhere cannot leave the cache inconsistent: use it anyway
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    // ANCHOR: encode_ordinary
    /// Encode text, treating special-token text as ordinary text.
    pub fn encode_ordinary(&self, text: &str) -> Vec<u32> {
        let mut out = Vec::with_capacity(text.len() / 3);
        self.with_cache(|cache| self.encode_chunk(text, cache, &mut out));
        out
    }

    /// Encode bytes that need not be UTF-8: the valid stretches are split and
    /// merged as text, every invalid byte is its own token.
    pub fn encode_bytes(&self, bytes: &[u8]) -> Vec<u32> {
        let mut out = Vec::with_capacity(bytes.len() / 3);
        self.with_cache(|cache| {
            for chunk in bytes.utf8_chunks() {
                self.encode_chunk(chunk.valid(), cache, &mut out);
                out.extend(chunk.invalid().iter().map(|&b| b as u32));
            }
        });
        out
    }

    /// Split `text` into pieces and encode each, using and filling the cache.
    fn encode_chunk(&self, text: &str, cache: &mut PieceCache, out: &mut Vec<u32>) {
        for piece in self.split.pieces(text) {
            let bytes = piece.as_bytes();
            if let [byte] = bytes {
                out.push(*byte as u32); // a single byte is its own token
            } else if let Some(ids) = cache.get(bytes) {
                out.extend_from_slice(ids);
            } else {
                let start = out.len();
                self.bpe.encode_piece(bytes, out);
                cache.insert(bytes, &out[start..]);
            }
        }
    }
    // ANCHOR_END: encode_ordinary

    /// Run `f` with the shared cache, or with a fresh one if another thread
    /// holds it (encoding never waits for another encode).
    fn with_cache<R>(&self, f: impl FnOnce(&mut PieceCache) -> R) -> R {
        match self.cache.try_lock() {
            Ok(mut guard) => f(&mut guard),
            Err(TryLockError::Poisoned(e)) => f(&mut e.into_inner()),
            Err(TryLockError::WouldBlock) => f(&mut PieceCache::default()),
        }
    }

    // ANCHOR: encode
    /// Encode text in which special tokens may appear, under a policy.
    ///
    /// Special tokens in `allowed` become their IDs; the text between them
    /// is encoded ordinarily.
    ///
    /// # Errors
    /// [`TokenizerError::DisallowedSpecial`] if the text contains a registered
    /// special token that `allowed` does not allow (use
    /// [`Tokenizer::encode_ordinary`] to encode such text as plain text).
    pub fn encode(&self, text: &str, allowed: AllowedSpecial) -> Result<Vec<u32>, TokenizerError> {
        let mut out = Vec::with_capacity(text.len() / 3);
        self.with_cache(|cache| {
            let mut pos = 0;
            while let Some((start, index)) = self.specials.find(text, pos) {
                let token = &self.specials.tokens()[index];
                if !allowed.allows(token) {
                    return Err(TokenizerError::DisallowedSpecial {
                        token: token.clone(),
                        offset: start,
                    });
                }
                self.encode_chunk(&text[pos..start], cache, &mut out);
                out.push((self.bpe.len() + index) as u32);
                pos = start + token.len();
            }
            self.encode_chunk(&text[pos..], cache, &mut out);
            Ok(())
        })?;
        Ok(out)
    }
    // ANCHOR_END: encode

    /// The exact bytes of a sequence of IDs.
    ///
    /// # Errors
    /// [`TokenizerError::UnknownId`] for an ID outside the vocabulary.
    pub fn decode_bytes(&self, ids: &[u32]) -> Result<Vec<u8>, TokenizerError> {
        let mut out = Vec::with_capacity(ids.len() * 4);
        for &id in ids {
            let bytes = self.id_to_bytes(id).ok_or(TokenizerError::UnknownId {
                id,
                vocab_size: self.vocab_size(),
            })?;
            out.extend_from_slice(bytes);
        }
        Ok(out)
    }

    /// Decode to a string; invalid UTF-8 becomes U+FFFD.
    ///
    /// # Errors
    /// [`TokenizerError::UnknownId`] for an ID outside the vocabulary.
    pub fn decode(&self, ids: &[u32]) -> Result<String, TokenizerError> {
        let bytes = self.decode_bytes(ids)?;
        Ok(match String::from_utf8(bytes) {
            Ok(s) => s,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        })
    }

    /// A decoder for IDs arriving one at a time (generation).
    pub fn stream_decoder(&self) -> StreamDecoder<'_> {
        StreamDecoder::new(self)
    }

    pub(crate) fn from_parts(bpe: Bpe, split: Split, specials: SpecialTokens) -> Self {
        Tokenizer::new(bpe, split).with_specials(specials)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bpe::{count_pairs, merge};
    use crate::pretokenize::split;
    use crate::special::{BOS, EOS, IMAGE, PAD};
    use proptest::prelude::*;
    use std::sync::OnceLock;

    const TEXT: &str = "the cat sat on the mat. the dog ate the hat! \
        Les élèves étudient; 日本語のテキスト. emoji 😀🎉 and numbers 12345 \n\n \
        we'll see what they've done, isn't it?";

    /// A small tokenizer trained once for all tests.
    fn trained() -> &'static Tokenizer {
        static TOK: OnceLock<Tokenizer> = OnceLock::new();
        TOK.get_or_init(|| {
            Tokenizer::train(&TEXT.repeat(3), 330)
                .unwrap()
                .with_special_tokens(&[BOS, EOS, PAD, IMAGE])
                .unwrap()
        })
    }

    #[test]
    fn worked_example_encodes_to_five_tokens() {
        let tok = Tokenizer::train("aaabdaaabac", 259).unwrap();
        assert_eq!(tok.encode_ordinary("aaabdaaabac"), [258, 100, 258, 97, 99]);
        assert_eq!(
            tok.merge_listing(),
            [
                "[a][a] -> [aa] 256",
                "[a][b] -> [ab] 257",
                "[aa][ab] -> [aaab] 258"
            ]
        );
    }

    #[test]
    fn ids_are_bytes_then_merges_then_specials() {
        let tok = trained();
        assert_eq!(tok.vocab_size(), 330 + 4);
        assert_eq!(tok.special_id(BOS), Some(330));
        assert_eq!(tok.special_id(IMAGE), Some(333));
        assert_eq!(tok.special_id("<|nope|>"), None);
        assert_eq!(tok.id_to_bytes(97), Some(b"a".as_slice()));
        assert_eq!(tok.id_to_bytes(331), Some(EOS.as_bytes()));
        assert_eq!(tok.id_to_bytes(334), None);
        let the = tok.token_id(b" the").expect("' the' is frequent");
        assert!(the >= 256);
    }

    #[test]
    fn special_policy() {
        let tok = trained();
        let text = "<|bos|><|image|> the cat<|eos|>";
        let ids = tok.encode(text, AllowedSpecial::All).unwrap();
        assert_eq!(ids[0], 330);
        assert_eq!(ids[1], 333);
        assert_eq!(*ids.last().unwrap(), 331);
        assert_eq!(tok.decode(&ids).unwrap(), text);
        // only some allowed: the first disallowed one is reported with its offset
        let e = tok
            .encode(text, AllowedSpecial::Only(&[BOS, IMAGE]))
            .unwrap_err();
        assert!(
            matches!(&e, TokenizerError::DisallowedSpecial { token, offset: 24 } if token == EOS),
            "{e}"
        );
        let e = tok.encode(text, AllowedSpecial::Nothing).unwrap_err();
        assert!(matches!(
            e,
            TokenizerError::DisallowedSpecial { offset: 0, .. }
        ));
        // ordinary encoding treats it as text: no special IDs, same round trip
        let plain = tok.encode_ordinary(text);
        assert!(plain.iter().all(|&id| id < 330));
        assert_eq!(tok.decode(&plain).unwrap(), text);
        // text without specials: encode == encode_ordinary
        assert_eq!(
            tok.encode("the cat", AllowedSpecial::Nothing).unwrap(),
            tok.encode_ordinary("the cat")
        );
    }

    #[test]
    fn decode_errors_on_unknown_ids() {
        let tok = trained();
        let e = tok.decode(&[97, 5000]).unwrap_err();
        assert!(matches!(
            e,
            TokenizerError::UnknownId {
                id: 5000,
                vocab_size: 334
            }
        ));
        assert!(tok.decode_bytes(&[334]).is_err());
    }

    #[test]
    fn lossy_decode_marks_broken_characters() {
        let tok = trained();
        let ids: Vec<u32> = "é".bytes().map(u32::from).collect();
        assert_eq!(tok.decode(&ids[..1]).unwrap(), "\u{FFFD}");
        assert_eq!(tok.decode_bytes(&ids[..1]).unwrap(), [0xC3]);
    }

    #[test]
    fn cache_does_not_change_results() {
        let tok = trained();
        tok.clear_cache();
        let cold = tok.encode_ordinary(TEXT);
        let warm = tok.encode_ordinary(TEXT);
        assert_eq!(cold, warm);
        // a clone starts with an empty cache and encodes the same
        assert_eq!(tok.clone().encode_ordinary(TEXT), cold);
        assert_eq!(tok.clone(), *tok);
    }

    #[test]
    fn cache_memory_stays_bounded() {
        let mut cache = PieceCache::default();
        let mut cleared = false;
        // entries of 200 bytes and 50 IDs cost 464 bytes: 40,000 pass 16 MiB
        let mut piece = [b'x'; 200];
        let ids = [7u32; 50];
        for i in 0..40_000 {
            piece[..8].copy_from_slice(format!("{i:08}").as_bytes());
            cache.insert(&piece, &ids);
            assert_eq!(cache.get(&piece), None, "kept the second time only");
            cache.insert(&piece, &ids);
            assert_eq!(cache.get(&piece), Some(&ids[..]));
            assert!(cache.bytes <= PieceCache::MAX_BYTES);
            cleared |= cache.map.len() < i + 1;
        }
        assert!(cleared, "40,000 entries of 464 bytes exceed 16 MiB");
        // long pieces are not kept
        cache.insert(&[b'a'; 300], &[1]);
        cache.insert(&[b'a'; 300], &[1]);
        assert_eq!(cache.get(&[b'a'; 300]), None);
        // 200,000 pieces seen once leave the cache (almost) empty
        cache.forget();
        for i in 0..200_000u64 {
            cache.insert(&i.to_le_bytes(), &[1]);
        }
        assert!(cache.map.len() < 100, "{}", cache.map.len());
    }

    #[test]
    fn training_shrinks_the_text() {
        let tok = trained();
        let ids = tok.encode_ordinary(TEXT);
        assert!(
            ids.len() * 2 < TEXT.len(),
            "{} ids for {} bytes",
            ids.len(),
            TEXT.len()
        );
    }

    #[test]
    fn train_lines_and_file() {
        let lines = ["a red circle", "a blue square", "a red square"];
        let tok = Tokenizer::train_lines(lines, 260).unwrap();
        assert_eq!(tok.vocab_size(), 260);
        let path = std::env::temp_dir().join(format!("tokenizer-lines-{}.txt", std::process::id()));
        std::fs::write(&path, lines.join("\n")).unwrap();
        let from_file = Tokenizer::train_file(&path, 260).unwrap();
        std::fs::remove_file(&path).unwrap();
        // the newlines add pieces, but the first merges are the same
        assert_eq!(from_file.bpe().merges()[..2], tok.bpe().merges()[..2]);
        assert!(matches!(
            Tokenizer::train_lines(Vec::<String>::new(), 300),
            Err(TokenizerError::EmptyCorpus)
        ));
    }

    proptest! {
        #[test]
        fn decode_encode_round_trip(text in "\\PC{0,60}") {
            let tok = trained();
            prop_assert_eq!(tok.decode(&tok.encode_ordinary(&text)).unwrap(), text.clone());
            let ids = tok.encode(&text, AllowedSpecial::All).unwrap();
            prop_assert_eq!(tok.decode(&ids).unwrap(), text);
        }

        #[test]
        fn round_trip_on_words_the_vocabulary_knows(
            words in proptest::collection::vec("the|cat|sat|😀|élèves| |\n|'ll|123", 0..20)
        ) {
            let text = words.concat();
            let tok = trained();
            let ids = tok.encode_ordinary(&text);
            prop_assert!(ids.len() <= text.len());
            prop_assert_eq!(tok.decode(&ids).unwrap(), text);
        }

        #[test]
        fn decode_bytes_of_encode_bytes_is_identity(bytes in proptest::collection::vec(any::<u8>(), 0..60)) {
            let tok = trained();
            let ids = tok.encode_bytes(&bytes);
            prop_assert_eq!(tok.decode_bytes(&ids).unwrap(), bytes.clone());
            // valid UTF-8 encodes exactly as text does
            if let Ok(text) = std::str::from_utf8(&bytes) {
                prop_assert_eq!(ids, tok.encode_ordinary(text));
            }
        }

        /// Encoding equals the naive replay of the merges: for each piece, find
        /// the present pair learned earliest and merge all its occurrences.
        #[test]
        fn encode_equals_naive_merge_replay(text in "[a-z ,.'😀é]{0,40}") {
            let tok = trained();
            let mut naive = Vec::new();
            for piece in split(&text) {
                let mut ids: Vec<u32> = piece.bytes().map(u32::from).collect();
                loop {
                    let mut counts = std::collections::HashMap::new();
                    count_pairs(&ids, &mut counts);
                    let best = counts
                        .keys()
                        .filter_map(|&(l, r)| tok.bpe().merged(l, r).map(|id| ((l, r), id)))
                        .min_by_key(|&(_, id)| id);
                    let Some((pair, id)) = best else { break };
                    ids = merge(&ids, pair, id);
                }
                naive.extend(ids);
            }
            prop_assert_eq!(tok.encode_ordinary(&text), naive);
        }

        /// Streaming decode of a trained encoding equals one-shot decode.
        #[test]
        fn stream_decode_of_encodings(text in "[a-z😀é ]{0,30}") {
            let tok = trained();
            let ids = tok.encode_ordinary(&text);
            let mut stream = tok.stream_decoder();
            let mut shown = String::new();
            for &id in &ids {
                shown.push_str(&stream.push(id).unwrap());
            }
            shown.push_str(&stream.finish());
            prop_assert_eq!(shown, text);
        }
    }
}
