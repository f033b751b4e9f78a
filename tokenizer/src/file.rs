//! Saving and loading: our own versioned text format, and tiktoken's rank
//! files.
//!
//! # The tokenizer file, version 1
//! Plain UTF-8 text, one item per line, readable and diffable:
//!
//! ```text
//! bpe-tokenizer 1      format name and version
//! split gpt4           the pre-tokeniser: gpt4 or none
//! merges 3             the number of merge lines that follow
//! 97 97                merge 0: left and right IDs, makes token 256
//! 97 98                merge 1, makes 257
//! 256 257              merge 2, makes 258
//! specials 2           the number of special-token lines that follow
//! <|bos|>              ID 259
//! <|eos|>              ID 260
//! ```
//!
//! A merge may only use tokens that exist before it, and may not repeat an
//! earlier pair; special tokens hold no whitespace. Nothing may follow the
//! last special token. Every problem is reported with its line number.
//!
//! # tiktoken's rank file
//! One line per ordinary token, `base64(bytes) rank`, where the rank is the
//! token's ID (`IHRoZQ== 300` is `" the"`). It holds no merges and no
//! special tokens (tiktoken passes those separately): the merges are
//! recovered on import. For a BPE vocabulary, token `T` made by merging
//! `L` and `R` is exactly what encoding `bytes(T)` with the merges before
//! `T` produces: `[L, R]`. So importing runs our own encoder on each token's
//! bytes, in rank order, and reads off the pair. We require what our
//! tokenizers satisfy: the 256 single bytes have ranks `0..256` in byte
//! order (true of files from rustbpe/nanochat, not of GPT-2's permuted
//! `r50k_base`), ranks are `0..n` with no gap, and no two tokens are equal.

use std::fmt::Write as _;
use std::path::Path;

use crate::base64;
use crate::bpe::{BYTE_TOKENS, Bpe};
use crate::error::TokenizerError;
use crate::pretokenize::Split;
use crate::special::SpecialTokens;
use crate::tokenizer::Tokenizer;

/// The first line of every tokenizer file.
pub const MAGIC: &str = "bpe-tokenizer";
/// The format version this crate writes and reads.
pub const VERSION: u32 = 1;

fn parse_error(line: usize, message: impl Into<String>) -> TokenizerError {
    TokenizerError::Parse {
        line,
        message: message.into(),
    }
}

/// Write `contents` beside `path`, then rename: a crash never leaves a
/// half-written file under the real name.
fn write_atomically(path: &Path, contents: &str) -> Result<(), TokenizerError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    std::fs::write(&tmp, contents)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

fn read_text(path: &Path) -> Result<String, TokenizerError> {
    String::from_utf8(std::fs::read(path)?).map_err(|_| TokenizerError::NotUtf8)
}

/// Lines with their 1-based numbers; a missing line is a "truncated" error.
struct Lines<'a> {
    inner: std::iter::Enumerate<std::str::Lines<'a>>,
    last: usize,
}

impl<'a> Lines<'a> {
    fn new(text: &'a str) -> Self {
        Lines {
            inner: text.lines().enumerate(),
            last: 0,
        }
    }

    /// The next line and its number, or an error naming what was expected.
    fn expect(&mut self, what: &str) -> Result<(usize, &'a str), TokenizerError> {
        match self.inner.next() {
            Some((i, line)) => {
                self.last = i + 1;
                Ok((i + 1, line))
            }
            None => Err(parse_error(
                self.last + 1,
                format!("file is truncated: expected {what}"),
            )),
        }
    }

    /// `keyword value` on the next line.
    fn header(&mut self, keyword: &str) -> Result<(usize, &'a str), TokenizerError> {
        let (n, line) = self.expect(&format!("\"{keyword} ...\""))?;
        match line.split_once(' ') {
            Some((k, value)) if k == keyword => Ok((n, value)),
            _ => Err(parse_error(
                n,
                format!("expected \"{keyword} ...\", found {line:?}"),
            )),
        }
    }
}

fn parse_count(line: usize, value: &str) -> Result<usize, TokenizerError> {
    value
        .parse()
        .map_err(|_| parse_error(line, format!("expected a count, found {value:?}")))
}

impl Tokenizer {
    // ANCHOR: to_text
    /// The tokenizer in the version-1 text format (see [`crate::file`]).
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        // writing to a String cannot fail
        writeln!(out, "{MAGIC} {VERSION}").unwrap();
        writeln!(out, "split {}", self.split().name()).unwrap();
        writeln!(out, "merges {}", self.bpe().merges().len()).unwrap();
        for (left, right) in self.bpe().merges() {
            writeln!(out, "{left} {right}").unwrap();
        }
        writeln!(out, "specials {}", self.special_tokens().len()).unwrap();
        for token in self.special_tokens() {
            writeln!(out, "{token}").unwrap();
        }
        out
    }
    // ANCHOR_END: to_text

    /// Parse the version-1 text format.
    ///
    /// # Errors
    /// [`TokenizerError::Parse`] naming the line: a wrong header or version,
    /// an unknown split, a malformed or impossible merge, a bad special
    /// token, a truncated file or trailing lines.
    pub fn from_text(text: &str) -> Result<Self, TokenizerError> {
        let mut lines = Lines::new(text);
        let (n, version) = lines.header(MAGIC)?;
        if version != VERSION.to_string() {
            return Err(parse_error(
                n,
                format!("unsupported version {version:?}, this reader knows {VERSION}"),
            ));
        }
        let (n, name) = lines.header("split")?;
        let split = Split::from_name(name)
            .ok_or_else(|| parse_error(n, format!("unknown split {name:?}")))?;
        let (n, count) = lines.header("merges")?;
        let n_merges = parse_count(n, count)?;
        let mut bpe = Bpe::new();
        for i in 0..n_merges {
            let (n, line) = lines.expect(&format!("merge {i} of {n_merges}"))?;
            let ids: Vec<u32> = line
                .split(' ')
                .map(str::parse)
                .collect::<Result<_, _>>()
                .map_err(|_| parse_error(n, format!("expected two token ids, found {line:?}")))?;
            let [left, right] = ids[..] else {
                return Err(parse_error(
                    n,
                    format!("expected two token ids, found {line:?}"),
                ));
            };
            bpe.push_merge((left, right))
                .map_err(|e| parse_error(n, e.to_string()))?;
        }
        let (n, count) = lines.header("specials")?;
        let n_specials = parse_count(n, count)?;
        let mut specials = SpecialTokens::default();
        for i in 0..n_specials {
            let (n, line) = lines.expect(&format!("special token {i} of {n_specials}"))?;
            specials
                .push(line)
                .map_err(|e| parse_error(n, e.to_string()))?;
        }
        if let Some((n, line)) = lines.inner.next() {
            return Err(parse_error(
                n + 1,
                format!("unexpected line after the last special token: {line:?}"),
            ));
        }
        Ok(Tokenizer::from_parts(bpe, split, specials))
    }

    /// Save in the text format, atomically (write beside, then rename).
    ///
    /// # Errors
    /// [`TokenizerError::Io`].
    pub fn save(&self, path: impl AsRef<Path>) -> Result<(), TokenizerError> {
        write_atomically(path.as_ref(), &self.to_text())
    }

    /// Load a file written by [`Tokenizer::save`].
    ///
    /// # Errors
    /// [`TokenizerError::Io`], [`TokenizerError::NotUtf8`], or the errors of
    /// [`Tokenizer::from_text`].
    pub fn load(path: impl AsRef<Path>) -> Result<Self, TokenizerError> {
        Self::from_text(&read_text(path.as_ref())?)
    }

    /// The ordinary tokens as a tiktoken rank file: `base64(bytes) id` per line.
    /// Special tokens are not included (tiktoken keeps them apart).
    pub fn to_tiktoken(&self) -> String {
        let mut out = String::new();
        for id in 0..self.bpe().len() as u32 {
            let bytes = self.bpe().token_bytes(id).unwrap(); // id < len
            writeln!(out, "{} {id}", base64::encode(bytes)).unwrap();
        }
        out
    }

    // ANCHOR: from_tiktoken
    /// Import a tiktoken rank file, recovering the merges (see [`crate::file`]).
    /// The tokenizer uses `split` and has no special tokens.
    ///
    /// # Errors
    /// [`TokenizerError::Parse`] naming the line: malformed lines or base64,
    /// ranks that are not `0..n`, single bytes out of byte order, duplicate
    /// tokens, or a token that is not the merge of two earlier ones.
    pub fn from_tiktoken(text: &str, split: Split) -> Result<Self, TokenizerError> {
        // (rank, bytes, line number), then sorted by rank
        let mut tokens: Vec<(usize, Vec<u8>, usize)> = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let n = i + 1;
            if line.is_empty() {
                continue;
            }
            let (coded, rank) = line
                .split_once(' ')
                .ok_or_else(|| parse_error(n, "expected \"<base64> <rank>\""))?;
            let bytes = base64::decode(coded).map_err(|e| parse_error(n, e.to_string()))?;
            let rank = rank
                .parse()
                .map_err(|_| parse_error(n, format!("expected a rank, found {rank:?}")))?;
            tokens.push((rank, bytes, n));
        }
        // ranks must be exactly 0..n: none too large, none twice
        let n_tokens = tokens.len();
        if let Some(&(rank, _, n)) = tokens.iter().find(|t| t.0 >= n_tokens) {
            return Err(parse_error(
                n,
                format!("rank {rank} is out of range: {n_tokens} tokens need ranks 0..{n_tokens}"),
            ));
        }
        tokens.sort_by_key(|t| t.0);
        if let Some(w) = tokens.windows(2).find(|w| w[0].0 == w[1].0) {
            return Err(parse_error(
                w[1].2,
                format!("rank {} appears twice", w[1].0),
            ));
        }
        let mut bpe = Bpe::new();
        for (rank, bytes, n) in tokens {
            if rank < BYTE_TOKENS {
                if bytes != [rank as u8] {
                    return Err(parse_error(
                        n,
                        format!("rank {rank} must be the single byte {rank}"),
                    ));
                }
                continue;
            }
            if bpe.token_id(&bytes).is_some() {
                return Err(parse_error(n, "duplicate token"));
            }
            // the merges so far split the token into exactly the two it merges
            let mut parts = Vec::new();
            bpe.encode_piece(&bytes, &mut parts);
            let [left, right] = parts[..] else {
                return Err(parse_error(
                    n,
                    format!(
                        "token of rank {rank} is not the merge of two earlier tokens ({} parts)",
                        parts.len()
                    ),
                ));
            };
            bpe.push_merge((left, right))
                .map_err(|e| parse_error(n, e.to_string()))?;
        }
        Ok(Tokenizer::new(bpe, split))
    }
    // ANCHOR_END: from_tiktoken

    /// Save the ordinary tokens as a tiktoken rank file, atomically.
    ///
    /// # Errors
    /// [`TokenizerError::Io`].
    pub fn save_tiktoken(&self, path: impl AsRef<Path>) -> Result<(), TokenizerError> {
        write_atomically(path.as_ref(), &self.to_tiktoken())
    }

    /// Load a tiktoken rank file (see [`Tokenizer::from_tiktoken`]).
    ///
    /// # Errors
    /// As [`Tokenizer::from_tiktoken`], plus I/O and UTF-8 errors.
    pub fn load_tiktoken(path: impl AsRef<Path>, split: Split) -> Result<Self, TokenizerError> {
        Self::from_tiktoken(&read_text(path.as_ref())?, split)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::special::{BOS, EOS};
    use proptest::prelude::*;

    fn example() -> Tokenizer {
        Tokenizer::train("aaabdaaabac", 259)
            .unwrap()
            .with_special_tokens(&[BOS, EOS])
            .unwrap()
    }

    #[test]
    fn text_format_is_the_documented_one() {
        let text = example().to_text();
        assert_eq!(
            text,
            "bpe-tokenizer 1\nsplit gpt4\nmerges 3\n97 97\n97 98\n256 257\nspecials 2\n<|bos|>\n<|eos|>\n"
        );
        assert_eq!(Tokenizer::from_text(&text).unwrap(), example());
    }

    #[test]
    fn save_and_load_a_file() {
        let path = std::env::temp_dir().join(format!("tokenizer-save-{}.txt", std::process::id()));
        example().save(&path).unwrap();
        let loaded = Tokenizer::load(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(loaded, example());
        assert!(matches!(
            Tokenizer::load("/no/such/dir/tok.txt"),
            Err(TokenizerError::Io(_))
        ));
    }

    /// Each corruption is reported at the right line with a useful message.
    #[test]
    fn corrupt_files_name_the_line() {
        let good = example().to_text();
        let cases: Vec<(String, usize, &str)> = vec![
            ("".into(), 1, "truncated"),
            (
                good.replace("bpe-tokenizer 1", "bpe-tokenizer 2"),
                1,
                "unsupported version",
            ),
            (
                good.replace("bpe-tokenizer", "gpt"),
                1,
                "expected \"bpe-tokenizer",
            ),
            (good.replace("split gpt4", "split gpt2"), 2, "unknown split"),
            (
                good.replace("merges 3", "merges three"),
                3,
                "expected a count",
            ),
            (good.replace("97 98", "97"), 5, "expected two token ids"),
            (good.replace("97 98", "97 x"), 5, "expected two token ids"),
            (
                good.replace("97 98", "97 98 99"),
                5,
                "expected two token ids",
            ),
            (good.replace("256 257", "256 300"), 6, "does not exist yet"),
            (good.replace("97 98", "97 97"), 5, "repeats"),
            (
                good.replace("merges 3", "merges 5"),
                7,
                "expected two token ids",
            ),
            (
                good.replace("specials 2\n<|bos|>\n<|eos|>\n", ""),
                7,
                "truncated",
            ),
            (good.replace("specials 2", "specials 3"), 10, "truncated"),
            (good.replace("<|eos|>", "<|bos|>"), 9, "already registered"),
            (good.replace("<|eos|>", "<| eos |>"), 9, "whitespace"),
            (good.clone() + "extra\n", 10, "unexpected line"),
            (
                good.lines().take(5).collect::<Vec<_>>().join("\n"),
                6,
                "truncated",
            ),
        ];
        for (text, line, needle) in cases {
            match Tokenizer::from_text(&text) {
                Err(TokenizerError::Parse { line: l, message }) => {
                    assert_eq!(l, line, "{message}");
                    assert!(message.contains(needle), "{message:?} lacks {needle:?}");
                }
                other => panic!("expected a parse error for {needle:?}, got {other:?}"),
            }
        }
    }

    #[test]
    fn tiktoken_round_trip() {
        let tok = Tokenizer::train("the cat sat on the mat with the hat, the end", 270).unwrap();
        let rank_file = tok.to_tiktoken();
        assert_eq!(rank_file.lines().count(), 270);
        assert_eq!(rank_file.lines().nth(32), Some("IA== 32")); // the space
        let back = Tokenizer::from_tiktoken(&rank_file, Split::Gpt4).unwrap();
        assert_eq!(back.bpe().merges(), tok.bpe().merges());
        // line order does not matter, only ranks
        let reversed: String = rank_file.lines().rev().map(|l| format!("{l}\n")).collect();
        assert_eq!(
            Tokenizer::from_tiktoken(&reversed, Split::Gpt4).unwrap(),
            back
        );
    }

    #[test]
    fn tiktoken_errors_name_the_line() {
        let good = example().to_tiktoken();
        let check = |text: String, line: usize, needle: &str| match Tokenizer::from_tiktoken(
            &text,
            Split::Gpt4,
        ) {
            Err(TokenizerError::Parse { line: l, message }) => {
                assert_eq!(l, line, "{message}");
                assert!(message.contains(needle), "{message:?} lacks {needle:?}");
            }
            other => panic!("expected a parse error for {needle:?}, got {other:?}"),
        };
        check(good.replace("YQ== 97", "YQ==97"), 98, "expected");
        check(good.replace("YQ== 97", "Y*== 97"), 98, "invalid base64");
        check(good.replace("YQ== 97", "YQ== x"), 98, "expected a rank");
        check(
            good.replace("YQ== 97", "YQ== 977"),
            98,
            "rank 977 is out of range",
        );
        check(
            good.replace("YQ== 97", "YQ== 96"),
            98,
            "rank 96 appears twice",
        );
        check(good.replace("YQ== 97", "Yg== 97"), 98, "single byte 97");
        // "aaab" (rank 258) replaced by "abcd", which the earlier merges
        // encode as [ab, c, d]: not one merge
        check(
            good.replace("YWFhYg== 258", "YWJjZA== 258"),
            259,
            "not the merge",
        );
        check(good.replace("YWFhYg== 258", "YWE= 258"), 259, "duplicate");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// save → load → the same encodings; tiktoken export → import → the same merges.
        #[test]
        fn save_load_keeps_encodings(
            corpus in "[a-e ,.😀]{1,80}",
            text in "[a-e ,.😀<|>bos]{0,40}",
            extra in 0usize..30,
        ) {
            let Ok(tok) = Tokenizer::train(&corpus, 256 + extra) else { return Ok(()) };
            let tok = tok.with_special_tokens(&[BOS]).unwrap();
            let loaded = Tokenizer::from_text(&tok.to_text()).unwrap();
            prop_assert_eq!(loaded.encode_ordinary(&text), tok.encode_ordinary(&text));
            prop_assert_eq!(
                loaded.encode(&text, crate::AllowedSpecial::All).unwrap(),
                tok.encode(&text, crate::AllowedSpecial::All).unwrap()
            );
            let imported = Tokenizer::from_tiktoken(&tok.to_tiktoken(), Split::Gpt4).unwrap();
            prop_assert_eq!(imported.bpe().merges(), tok.bpe().merges());
        }
    }
}
