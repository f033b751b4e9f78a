//! Decoding pitfalls: token boundaries are not character boundaries.
//!
//! A byte-level token can hold half of a UTF-8 character: `é` is two bytes,
//! an emoji four, and BPE may put them in different tokens. So the bytes of a
//! *single* token need not be valid UTF-8, and neither need those of a
//! truncated sequence (a model stopped mid-emoji). Three decoders cover this:
//!
//! - exact bytes ([`crate::Tokenizer::decode_bytes`]): always right, not a string;
//! - a lossy string ([`crate::Tokenizer::decode`]): every invalid or
//!   unfinished sequence becomes U+FFFD `�`, as `String::from_utf8_lossy` does;
//! - [`StreamDecoder`], for text generated one token at a time: it prints
//!   whatever is complete and *holds back* the bytes of an unfinished
//!   character until the next token completes it, so an emoji split across
//!   two tokens comes out whole instead of as `��`.

use crate::error::TokenizerError;
use crate::tokenizer::Tokenizer;

/// Decode a token stream incrementally. The concatenation of everything
/// [`StreamDecoder::push`] returns, followed by [`StreamDecoder::finish`],
/// equals the one-shot lossy [`Tokenizer::decode`] of all the IDs, however
/// they were split.
///
/// ```
/// use tokenizer::{Split, Tokenizer};
/// let tok = Tokenizer::bytes_only(Split::Gpt4);
/// let mut stream = tok.stream_decoder();
/// let mut shown = String::new();
/// for byte in "a😀".bytes() {
///     let piece = stream.push(byte as u32)?; // one byte per token
///     shown.push_str(&piece);
/// }
/// assert_eq!(shown, "a😀"); // the emoji appears whole, after its 4th byte
/// assert_eq!(stream.finish(), "");
/// # Ok::<(), tokenizer::TokenizerError>(())
/// ```
#[derive(Debug)]
pub struct StreamDecoder<'a> {
    tokenizer: &'a Tokenizer,
    /// Bytes of an unfinished UTF-8 character, at most 3.
    pending: Vec<u8>,
}

impl<'a> StreamDecoder<'a> {
    /// A decoder with nothing pending.
    pub fn new(tokenizer: &'a Tokenizer) -> Self {
        StreamDecoder {
            tokenizer,
            pending: Vec::new(),
        }
    }

    // ANCHOR: push
    /// Add one token; returns the text that is now complete (possibly empty).
    ///
    /// # Errors
    /// [`TokenizerError::UnknownId`] if `id` is not in the vocabulary; the
    /// decoder is unchanged.
    pub fn push(&mut self, id: u32) -> Result<String, TokenizerError> {
        let bytes = self
            .tokenizer
            .id_to_bytes(id)
            .ok_or(TokenizerError::UnknownId {
                id,
                vocab_size: self.tokenizer.vocab_size(),
            })?;
        self.pending.extend_from_slice(bytes);
        let mut out = String::new();
        let mut rest: &[u8] = &self.pending;
        loop {
            match std::str::from_utf8(rest) {
                Ok(s) => {
                    out.push_str(s);
                    rest = &[];
                    break;
                }
                Err(e) => {
                    let (valid, after) = rest.split_at(e.valid_up_to());
                    out.push_str(std::str::from_utf8(valid).unwrap()); // checked valid
                    match e.error_len() {
                        // a broken sequence: one U+FFFD, like from_utf8_lossy
                        Some(len) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            rest = &after[len..];
                        }
                        // an unfinished character at the end: wait for more
                        None => {
                            rest = after;
                            break;
                        }
                    }
                }
            }
        }
        self.pending = rest.to_vec();
        Ok(out)
    }
    // ANCHOR_END: push

    /// End of the stream: an unfinished character left over becomes U+FFFD.
    pub fn finish(&mut self) -> String {
        let out = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        out
    }

    /// Bytes held back, waiting for the rest of their character.
    pub fn pending(&self) -> &[u8] {
        &self.pending
    }
}

#[cfg(test)]
mod tests {
    use crate::pretokenize::Split;
    use crate::tokenizer::Tokenizer;
    use proptest::prelude::*;

    fn stream_all(tok: &Tokenizer, ids: &[u32]) -> Vec<String> {
        let mut s = tok.stream_decoder();
        let mut parts: Vec<String> = ids.iter().map(|&id| s.push(id).unwrap()).collect();
        parts.push(s.finish());
        parts
    }

    #[test]
    fn holds_back_an_unfinished_character() {
        let tok = Tokenizer::bytes_only(Split::Gpt4);
        let ids: Vec<u32> = "é!".bytes().map(u32::from).collect();
        assert_eq!(stream_all(&tok, &ids), ["", "é", "!", ""]);
    }

    #[test]
    fn broken_sequences_become_replacement_characters() {
        let tok = Tokenizer::bytes_only(Split::Gpt4);
        // 0xE2 0x82 starts a 3-byte character, but 'a' interrupts it
        assert_eq!(
            stream_all(&tok, &[0xE2, 0x82, 0x61]),
            ["", "", "\u{FFFD}a", ""]
        );
        // a lone continuation byte
        assert_eq!(stream_all(&tok, &[0x80]), ["\u{FFFD}", ""]);
        // an unfinished character at the very end
        assert_eq!(
            stream_all(&tok, &[0x61, 0xF0, 0x9F]),
            ["a", "", "", "\u{FFFD}"]
        );
    }

    #[test]
    fn unknown_ids_are_errors_and_leave_the_state_alone() {
        let tok = Tokenizer::bytes_only(Split::Gpt4);
        let mut s = tok.stream_decoder();
        s.push(0xC3).unwrap();
        assert!(s.push(1000).is_err());
        assert_eq!(s.pending(), [0xC3]);
        assert_eq!(s.push(0xA9).unwrap(), "é");
    }

    proptest! {
        /// Streaming equals one-shot lossy decoding, for any bytes and any split.
        #[test]
        fn stream_equals_one_shot(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            let tok = Tokenizer::bytes_only(Split::Gpt4);
            let ids: Vec<u32> = bytes.iter().map(|&b| b as u32).collect();
            let streamed: String = stream_all(&tok, &ids).concat();
            prop_assert_eq!(streamed, tok.decode(&ids).unwrap());
        }
    }
}
