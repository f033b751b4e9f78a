//! # tokenizer: from text to IDs
//!
//! A byte-level BPE tokenizer written from scratch, small enough to read and
//! fast enough to use:
//!
//! - **bytes first**: IDs `0..256` are the bytes, so no text is ever unknown;
//!   every other token is a merge of two earlier ones ([`Bpe`]);
//! - **pre-tokenisation** ([`split`]): a hand-written scanner with GPT-4's
//!   rules, so merges never cross word boundaries;
//! - **training**: the plain [`train_reference()`] recounts every pair for every
//!   merge; [`train_fast()`] (deduplicated pieces, incremental pair counts, a
//!   lazy max-heap) learns the *same* merges, with the same tie-break, in a
//!   fraction of a second per megabyte;
//! - **encoding** by merge rank inside each piece, with a cache of pieces
//!   already seen ([`Tokenizer::encode_ordinary`]); **special tokens** with
//!   an explicit policy ([`Tokenizer::encode`], [`AllowedSpecial`]);
//! - **decoding**: exact bytes, a lossy string, and a [`StreamDecoder`] that
//!   holds back half a character until the next token completes it;
//! - **files**: a versioned text format ([`Tokenizer::save`],
//!   [`Tokenizer::load`]) and tiktoken's rank files
//!   ([`Tokenizer::to_tiktoken`], [`Tokenizer::from_tiktoken`]).
//!
//! Bad input (an unknown ID, a corrupt file, an impossible vocabulary size,
//! an empty corpus) returns a [`TokenizerError`]; it never panics.
//!
//! ## Glossary
//! `V` vocabulary size (bytes + merges + special tokens), `T` sequence length
//! in tokens. A *piece* is one pre-token (a word with its leading space, a
//! number, a punctuation run); a *rank* is a merge's position in the order
//! learned, which is also the ID of the token it makes minus 256.
//!
//! ## References
//! - Sennrich et al. 2016, "Neural Machine Translation of Rare Words with
//!   Subword Units": BPE for NLP.
//! - Radford et al. 2019 (GPT-2): byte-level BPE and the pre-tokeniser regex.
//! - karpathy/minbpe: the teaching structure and the `aaabdaaabac` example.
//! - openai/tiktoken: rank-based encoding, special-token policy, rank files.
//!
//! ## Example: what the `model` and `train` crates do
//! ```
//! use tokenizer::{AllowedSpecial, Tokenizer, BOS, EOS, IMAGE, PAD};
//!
//! let captions = ["a big red circle in the top left", "a small blue square in the middle"];
//! // train to 280 ordinary tokens (256 bytes + 24 merges), then add special tokens
//! let tok = Tokenizer::train_lines(captions, 280)?.with_special_tokens(&[BOS, EOS, PAD, IMAGE])?;
//! assert_eq!(tok.vocab_size(), 284); // rows of the embedding table
//! let (bos, eos, image) = (tok.special_id(BOS).unwrap(), tok.special_id(EOS).unwrap(), tok.special_id(IMAGE).unwrap());
//!
//! // special tokens become their IDs only when allowed
//! let ids = tok.encode("<|bos|><|image|>a big red circle<|eos|>", AllowedSpecial::All)?;
//! assert_eq!((ids[0], ids[1], *ids.last().unwrap()), (bos, image, eos));
//! assert!(ids.len() - 3 < "a big red circle".len()); // fewer tokens than bytes
//! assert!(tok.encode("<|eos|>", AllowedSpecial::Nothing).is_err());
//!
//! // decoding gives the text back; unknown IDs are errors
//! assert_eq!(tok.decode(&ids[2..ids.len() - 1])?, "a big red circle");
//! assert!(tok.decode(&[9999]).is_err());
//!
//! // save and load
//! let path = std::env::temp_dir().join("tokenizer-doctest.txt");
//! tok.save(&path)?;
//! assert_eq!(Tokenizer::load(&path)?, tok);
//! # std::fs::remove_file(&path)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

//!
//! A tiny corpus (a caption grammar) may not support the vocabulary asked
//! for; the error says how far it got, so a caller can settle for that:
//! ```
//! use tokenizer::{Tokenizer, TokenizerError};
//! let captions = ["a red circle", "a blue square"];
//! let tok = match Tokenizer::train_lines(captions, 1000) {
//!     Err(TokenizerError::VocabTooLarge { reached, .. }) => Tokenizer::train_lines(captions, reached)?,
//!     other => other?,
//! };
//! // no pair is left: every piece of the corpus is one token ("a", " red", " circle")
//! assert_eq!(tok.encode_ordinary("a red circle").len(), 3);
//! # Ok::<(), TokenizerError>(())
//! ```

pub mod base64;
pub mod bpe;
pub mod decode;
pub mod error;
pub mod file;
pub mod hash;
pub mod pretokenize;
pub mod special;
mod tokenizer; // private: `tokenizer::tokenizer` would clash with glob imports
pub mod train;
pub mod train_fast;
pub mod vocab;

pub use bpe::{BYTE_TOKENS, Bpe, count_pairs, merge};
pub use decode::StreamDecoder;
pub use error::TokenizerError;
pub use pretokenize::{Pieces, Split, split};
pub use special::{AllowedSpecial, BOS, EOS, IMAGE, PAD, SpecialTokens};
pub use tokenizer::Tokenizer;
pub use train::{Merge, train_reference};
pub use train_fast::{WordCounts, train_fast};
pub use vocab::{merge_listing, render_token};
