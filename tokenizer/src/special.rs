//! Special tokens: IDs that no text can produce by accident.
//!
//! A model needs markers that are not words: the beginning and end of a
//! sequence, padding, and, in a multimodal LLM, *where the image goes*.
//! The multimodal model (`model::Vlm`) reads `<|user|> <|image|> what
//! colour is it? <|assistant|> …`; it replaces the embedding of the
//! `<|image|>` placeholder by the image's projected vectors, so text and
//! image tokens flow through the same transformer. (The caption decoder
//! reads the image through cross-attention instead, and needs only `<|bos|>`,
//! `<|eos|>` and `<|pad|>`.)
//!
//! Special tokens get IDs after the merges. Their text, such as `<|bos|>`,
//! could also appear in ordinary input (a user pasting it, a web page about
//! tokenizers). Treating it as the real marker would let input forge control
//! tokens, so, as in tiktoken, [`crate::Tokenizer::encode`] takes an explicit
//! policy ([`AllowedSpecial`]): a special token in the text that is not
//! allowed is an error, and [`crate::Tokenizer::encode_ordinary`] encodes it
//! as plain text.

use crate::error::TokenizerError;
use crate::hash::FastHashMap;

/// Beginning of a sequence.
pub const BOS: &str = "<|bos|>";
/// End of a sequence.
pub const EOS: &str = "<|eos|>";
/// Padding to a common length in a batch.
pub const PAD: &str = "<|pad|>";
/// Where an image's vectors go in a multimodal conversation.
pub const IMAGE: &str = "<|image|>";

/// Which special tokens `encode` may turn into their IDs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllowedSpecial<'a> {
    /// None: any special token in the text is an error.
    Nothing,
    /// Every registered special token.
    All,
    /// Only these; the others are errors.
    Only(&'a [&'a str]),
}

impl AllowedSpecial<'_> {
    /// Is `token` allowed?
    pub fn allows(&self, token: &str) -> bool {
        match self {
            AllowedSpecial::Nothing => false,
            AllowedSpecial::All => true,
            AllowedSpecial::Only(list) => list.contains(&token),
        }
    }
}

/// The registered special tokens in ID order, and a quick way to find them
/// in text: a byte trie of the tokens, walked from each position where a
/// token could start. A walk stops at the first byte no token continues
/// with, so finding costs at most [`MAX_SPECIAL_BYTES`] steps per position
/// of the text, however many special tokens there are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecialTokens {
    tokens: Vec<String>,
    /// Token text → index, for `index_of` and duplicates.
    index: FastHashMap<String, usize>,
    /// `trie[0]` is the root; each node lists its children by byte (sorted)
    /// and the index of the token that ends there, if any.
    trie: Vec<TrieNode>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct TrieNode {
    children: Vec<(u8, u32)>,
    token: Option<usize>,
}

/// The longest special token, in bytes, as for ordinary tokens.
pub const MAX_SPECIAL_BYTES: usize = crate::bpe::MAX_TOKEN_BYTES;

impl Default for SpecialTokens {
    fn default() -> Self {
        SpecialTokens {
            tokens: Vec::new(),
            index: FastHashMap::default(),
            trie: vec![TrieNode::default()],
        }
    }
}

impl SpecialTokens {
    /// Register `token`; returns its index (its ID is the ordinary vocabulary
    /// size plus this index).
    ///
    /// # Errors
    /// [`TokenizerError::InvalidSpecial`] if it is empty, longer than
    /// [`MAX_SPECIAL_BYTES`], contains whitespace or control characters
    /// (vocabulary files keep one token per line), or is already registered.
    pub fn push(&mut self, token: &str) -> Result<usize, TokenizerError> {
        let invalid = |reason| TokenizerError::InvalidSpecial {
            token: token.chars().take(60).collect(),
            reason,
        };
        if token.is_empty() {
            return Err(invalid("it is empty"));
        }
        if token.len() > MAX_SPECIAL_BYTES {
            return Err(invalid("it is longer than 1024 bytes, the limit"));
        }
        if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid("it contains whitespace or a control character"));
        }
        if self.index.contains_key(token) {
            return Err(invalid("it is already registered"));
        }
        let k = self.tokens.len();
        let mut node = 0;
        for &b in token.as_bytes() {
            node = match self.trie[node].children.binary_search_by_key(&b, |c| c.0) {
                Ok(at) => self.trie[node].children[at].1 as usize,
                Err(at) => {
                    let child = self.trie.len();
                    self.trie.push(TrieNode::default());
                    self.trie[node].children.insert(at, (b, child as u32));
                    child
                }
            };
        }
        self.trie[node].token = Some(k);
        self.index.insert(token.to_owned(), k);
        self.tokens.push(token.to_owned());
        Ok(k)
    }

    /// The tokens in ID order.
    pub fn tokens(&self) -> &[String] {
        &self.tokens
    }

    /// Number of special tokens.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// True if none is registered.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Index of `token`, if registered.
    pub fn index_of(&self, token: &str) -> Option<usize> {
        self.index.get(token).copied()
    }

    // ANCHOR: find
    /// The first special token in `text` at or after byte `from`: its byte
    /// offset and index. At one offset the longest token wins.
    pub fn find(&self, text: &str, from: usize) -> Option<(usize, usize)> {
        if self.tokens.is_empty() {
            return None;
        }
        let bytes = text.as_bytes();
        let root = &self.trie[0];
        for i in from..bytes.len() {
            if root
                .children
                .binary_search_by_key(&bytes[i], |c| c.0)
                .is_err()
            {
                continue; // most bytes can start no special token
            }
            // walk the trie along the text; remember the last token passed
            let (mut node, mut longest) = (0, None);
            for &b in &bytes[i..] {
                let children = &self.trie[node].children;
                match children.binary_search_by_key(&b, |c| c.0) {
                    Ok(at) => node = children[at].1 as usize,
                    Err(_) => break,
                }
                if let Some(k) = self.trie[node].token {
                    longest = Some(k);
                }
            }
            if let Some(k) = longest {
                return Some((i, k));
            }
        }
        None
    }
    // ANCHOR_END: find
}

#[cfg(test)]
mod tests {
    use super::*;

    fn specials(tokens: &[&str]) -> SpecialTokens {
        let mut s = SpecialTokens::default();
        for t in tokens {
            s.push(t).unwrap();
        }
        s
    }

    #[test]
    fn find_returns_the_leftmost_then_longest() {
        let s = specials(&[BOS, EOS, "<|e", IMAGE]);
        assert_eq!(s.find("a <|eos|> <|bos|>", 0), Some((2, 1)));
        assert_eq!(s.find("a <|eos|> <|bos|>", 3), Some((10, 0)));
        assert_eq!(s.find("<|ex", 0), Some((0, 2)));
        assert_eq!(s.find("plain < text |>", 0), None);
        assert_eq!(s.find("", 0), None);
        assert_eq!(specials(&[]).find("<|bos|>", 0), None);
    }

    #[test]
    fn find_works_after_multibyte_text() {
        let s = specials(&["★"]);
        assert_eq!(s.find("日本★", 0), Some((6, 0)));
    }

    #[test]
    fn many_tokens_register_and_find_quickly() {
        // a file may hold many: registering and finding must not be quadratic
        let mut s = SpecialTokens::default();
        for i in 0..20_000 {
            assert_eq!(s.push(&format!("<|reserved_{i}|>")).unwrap(), i);
        }
        assert_eq!(s.index_of("<|reserved_19999|>"), Some(19_999));
        let text = "<|reserved_1".repeat(2000) + "<|reserved_12345|>";
        // "<|reserved_1" alone is no token: only the last one matches
        assert_eq!(s.find(&text, 0), Some((2000 * 12, 12_345)));
        let long = "x".repeat(MAX_SPECIAL_BYTES + 1);
        assert!(s.push(&long).unwrap_err().to_string().contains("longer"));
    }

    #[test]
    fn invalid_tokens_are_rejected() {
        let mut s = specials(&[BOS]);
        for bad in ["", "<| bos |>", "a\nb", BOS] {
            let e = s.push(bad).unwrap_err();
            assert!(
                matches!(e, TokenizerError::InvalidSpecial { .. }),
                "{bad:?}"
            );
        }
        assert_eq!(s.len(), 1);
        assert_eq!(s.push(PAD).unwrap(), 1);
        assert_eq!(s.index_of(PAD), Some(1));
    }

    #[test]
    fn policy() {
        assert!(!AllowedSpecial::Nothing.allows(BOS));
        assert!(AllowedSpecial::All.allows(BOS));
        let only = AllowedSpecial::Only(&[BOS, EOS]);
        assert!(only.allows(EOS));
        assert!(!only.allows(PAD));
    }
}
