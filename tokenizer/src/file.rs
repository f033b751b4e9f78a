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
//! earlier pair; special tokens hold no whitespace. Only blank lines may
//! follow the last special token. Every problem is reported with its file
//! and line and what was expected there.
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
//! Blank lines are skipped, as tiktoken skips them.
//!
//! A rank file does not say how many tokens it holds, so one cut short at a
//! line boundary is still a valid, smaller vocabulary; tiktoken guards
//! against that with an explicit vocabulary size, and so does
//! [`Tokenizer::load_tiktoken_expecting`].
//!
//! # Limits
//! Both readers accept a UTF-8 byte-order mark and `\r\n` line ends. A file
//! may hold at most [`MAX_FILE_BYTES`]; it is read through a limit, so even
//! an endless stream is refused. The vocabulary it describes obeys the
//! limits of [`crate::bpe`] (tokens of at most 1024 bytes, 64 MiB in all),
//! so loading uses memory linear in the file's size, and at most a few
//! hundred megabytes.

use std::fmt::Write as _;
use std::io::Read;
use std::path::Path;

use crate::base64;
use crate::bpe::{BYTE_TOKENS, Bpe, MAX_TOKEN_BYTES};
use crate::error::TokenizerError;
use crate::pretokenize::Split;
use crate::special::SpecialTokens;
use crate::tokenizer::Tokenizer;

/// The first line of every tokenizer file.
pub const MAGIC: &str = "bpe-tokenizer";
/// The format version this crate writes and reads.
pub const VERSION: u32 = 1;
/// The largest tokenizer or rank file this crate reads: 256 MiB (a rank
/// file of 200,000 tokens is about 4 MB).
pub const MAX_FILE_BYTES: u64 = 256 << 20;

fn parse_error(line: usize, message: impl Into<String>) -> TokenizerError {
    TokenizerError::Parse {
        line,
        message: message.into(),
    }
}

/// A line as an error message shows it: quoted, and cut after 60 characters.
fn shown(line: &str) -> String {
    match line.char_indices().nth(60) {
        Some((cut, _)) => format!("{:?}…", &line[..cut]),
        None => format!("{line:?}"),
    }
}

/// Write `contents` beside `path`, then rename: a crash never leaves a
/// half-written file under the real name.
fn write_atomically(path: &Path, contents: &str) -> Result<(), TokenizerError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let result = std::fs::write(&tmp, contents).and_then(|()| std::fs::rename(&tmp, path));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp); // best effort: the error below matters
    }
    result.map_err(|e| TokenizerError::from(e).in_file(path))
}

/// Read a UTF-8 file of at most `limit` bytes. Errors name the file; bytes
/// that are not UTF-8 are reported with their line.
pub(crate) fn read_text(path: &Path, limit: u64) -> Result<String, TokenizerError> {
    let in_file = |e: TokenizerError| e.in_file(path);
    let file = std::fs::File::open(path).map_err(|e| in_file(e.into()))?;
    let mut bytes = Vec::new();
    file.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| in_file(e.into()))?;
    if bytes.len() as u64 > limit {
        return Err(in_file(TokenizerError::FileTooLarge { limit }));
    }
    String::from_utf8(bytes).map_err(|e| {
        let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let line_start = valid.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        in_file(parse_error(
            valid.iter().filter(|&&b| b == b'\n').count() + 1,
            format!(
                "not valid UTF-8 (byte {} of the line)",
                valid.len() - line_start + 1
            ),
        ))
    })
}

/// The text without a leading UTF-8 byte-order mark.
fn without_bom(text: &str) -> &str {
    text.strip_prefix('\u{feff}').unwrap_or(text)
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

    /// The next line and its number, or an error naming what was expected
    /// (`what` is only called then).
    fn expect(
        &mut self,
        what: impl FnOnce() -> String,
    ) -> Result<(usize, &'a str), TokenizerError> {
        match self.inner.next() {
            Some((i, line)) => {
                self.last = i + 1;
                Ok((i + 1, line))
            }
            None => Err(parse_error(
                self.last + 1,
                format!("the file ends early: expected {}", what()),
            )),
        }
    }

    /// `keyword value` on the next line.
    fn header(&mut self, keyword: &str) -> Result<(usize, &'a str), TokenizerError> {
        let (n, line) = self.expect(|| format!("\"{keyword} ...\""))?;
        match line.split_once(' ') {
            Some((k, value)) if k == keyword => Ok((n, value)),
            _ => Err(parse_error(
                n,
                format!("expected \"{keyword} ...\", found {}", shown(line)),
            )),
        }
    }
}

fn parse_count(line: usize, value: &str) -> Result<usize, TokenizerError> {
    value.parse().map_err(|_| {
        parse_error(
            line,
            format!("expected a count (a whole number), found {}", shown(value)),
        )
    })
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
        let mut lines = Lines::new(without_bom(text));
        let (n, version) = lines.header(MAGIC)?;
        if version != VERSION.to_string() {
            return Err(parse_error(
                n,
                format!(
                    "unsupported version {}, this reader knows {VERSION}",
                    shown(version)
                ),
            ));
        }
        let (n, name) = lines.header("split")?;
        let split = Split::from_name(name).ok_or_else(|| {
            parse_error(
                n,
                format!("unknown split {}, expected gpt4 or none", shown(name)),
            )
        })?;
        let (n, count) = lines.header("merges")?;
        let n_merges = parse_count(n, count)?;
        let mut bpe = Bpe::new();
        for i in 0..n_merges {
            let (n, line) = lines.expect(|| format!("merge {i} of {n_merges}"))?;
            let bad = || {
                parse_error(
                    n,
                    format!(
                        "expected two token ids \"<left> <right>\" (merge {i} of {n_merges}), found {}",
                        shown(line)
                    ),
                )
            };
            let (left, right) = line.split_once(' ').ok_or_else(bad)?;
            let (left, right) = (
                left.parse().map_err(|_| bad())?,
                right.parse().map_err(|_| bad())?,
            );
            bpe.push_merge((left, right))
                .map_err(|e| parse_error(n, e.to_string()))?;
        }
        let (n, count) = lines.header("specials")?;
        let n_specials = parse_count(n, count)?;
        let mut specials = SpecialTokens::default();
        for i in 0..n_specials {
            let (n, line) = lines.expect(|| format!("special token {i} of {n_specials}"))?;
            specials
                .push(line)
                .map_err(|e| parse_error(n, e.to_string()))?;
        }
        // trailing blank lines are fine, anything else is not
        if let Some((n, line)) = lines.inner.find(|(_, line)| !line.trim().is_empty()) {
            return Err(parse_error(
                n + 1,
                format!(
                    "unexpected line after the last special token: {}",
                    shown(line)
                ),
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
    /// [`TokenizerError::File`] naming the file, around an I/O error, a file
    /// larger than [`MAX_FILE_BYTES`], bytes that are not UTF-8, or the
    /// errors of [`Tokenizer::from_text`].
    pub fn load(path: impl AsRef<Path>) -> Result<Self, TokenizerError> {
        let path = path.as_ref();
        Self::from_text(&read_text(path, MAX_FILE_BYTES)?).map_err(|e| e.in_file(path))
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

    /// Import a tiktoken rank file, recovering the merges (see [`crate::file`]).
    /// The tokenizer uses `split` and has no special tokens.
    ///
    /// # Errors
    /// [`TokenizerError::Parse`] naming the line: malformed lines or base64,
    /// ranks that are not `0..n`, single bytes out of byte order, duplicate
    /// tokens, or a token that is not the merge of two earlier ones.
    pub fn from_tiktoken(text: &str, split: Split) -> Result<Self, TokenizerError> {
        Ok(parse_tiktoken(text, split)?.0)
    }

    /// Save the ordinary tokens as a tiktoken rank file, atomically.
    ///
    /// # Errors
    /// [`TokenizerError::Io`].
    pub fn save_tiktoken(&self, path: impl AsRef<Path>) -> Result<(), TokenizerError> {
        write_atomically(path.as_ref(), &self.to_tiktoken())
    }

    /// Load a tiktoken rank file (see [`Tokenizer::from_tiktoken`]). The
    /// file does not say how many tokens it should hold: check
    /// [`Tokenizer::vocab_size`], or use
    /// [`Tokenizer::load_tiktoken_expecting`].
    ///
    /// # Errors
    /// [`TokenizerError::File`] naming the file, around the errors of
    /// [`Tokenizer::from_tiktoken`], I/O and UTF-8 errors, or a file larger
    /// than [`MAX_FILE_BYTES`].
    pub fn load_tiktoken(path: impl AsRef<Path>, split: Split) -> Result<Self, TokenizerError> {
        let path = path.as_ref();
        Self::from_tiktoken(&read_text(path, MAX_FILE_BYTES)?, split).map_err(|e| e.in_file(path))
    }

    /// Load a tiktoken rank file that must hold exactly `n_tokens` tokens
    /// (tiktoken's `explicit_n_vocab`), so a file cut short is an error.
    ///
    /// # Errors
    /// As [`Tokenizer::load_tiktoken`], and a file with another number of
    /// tokens.
    pub fn load_tiktoken_expecting(
        path: impl AsRef<Path>,
        split: Split,
        n_tokens: usize,
    ) -> Result<Self, TokenizerError> {
        let path = path.as_ref();
        let text = read_text(path, MAX_FILE_BYTES)?;
        let (tok, last_line) = parse_tiktoken(&text, split).map_err(|e| e.in_file(path))?;
        if tok.vocab_size() != n_tokens {
            let message = if tok.vocab_size() < n_tokens {
                format!(
                    "the file ends after {} tokens, expected {n_tokens} (is it cut short?)",
                    tok.vocab_size()
                )
            } else {
                format!(
                    "the file holds {} tokens, expected {n_tokens}",
                    tok.vocab_size()
                )
            };
            return Err(parse_error(last_line + 1, message).in_file(path));
        }
        Ok(tok)
    }
}

// ANCHOR: parse_tiktoken
/// [`Tokenizer::from_tiktoken`], also returning the number of the file's
/// last line.
fn parse_tiktoken(text: &str, split: Split) -> Result<(Tokenizer, usize), TokenizerError> {
    let mut tokens: Vec<(u32, Vec<u8>, usize)> = Vec::new();
    let mut last_line = 0;
    for (i, line) in without_bom(text).lines().enumerate() {
        let n = i + 1;
        last_line = n;
        let mut fields = line.split_ascii_whitespace();
        let (coded, rank) = match (fields.next(), fields.next(), fields.next()) {
            (None, ..) => continue, // a blank line
            (Some(coded), Some(rank), None) => (coded, rank),
            _ => {
                return Err(parse_error(
                    n,
                    format!("expected \"<base64 token> <rank>\", found {}", shown(line)),
                ));
            }
        };
        let bytes = base64::decode(coded).map_err(|e| parse_error(n, e.to_string()))?;
        if bytes.len() > MAX_TOKEN_BYTES {
            return Err(parse_error(
                n,
                format!(
                    "the token is {} bytes long, more than the limit of {MAX_TOKEN_BYTES}",
                    bytes.len()
                ),
            ));
        }
        let rank = rank.parse().map_err(|_| {
            parse_error(
                n,
                format!(
                    "expected a rank (a whole number below 2^32), found {}",
                    shown(rank)
                ),
            )
        })?;
        tokens.push((rank, bytes, n));
    }
    if tokens.len() < BYTE_TOKENS {
        return Err(parse_error(
            last_line.max(1),
            format!(
                "the file holds {} tokens, but a byte-level vocabulary needs at least the 256 single bytes, ranks 0 to 255",
                tokens.len()
            ),
        ));
    }
    // ranks must be exactly 0..n: none twice, none missing
    tokens.sort_by_key(|t| (t.0, t.2));
    for (expected, w) in tokens.windows(2).enumerate() {
        let ((a, _, line_a), (b, _, line_b)) = (&w[0], &w[1]);
        if expected == 0 && *a != 0 {
            return Err(parse_error(
                *line_a,
                format!("rank 0 is missing: the lowest rank is {a}, on this line"),
            ));
        }
        if a == b {
            return Err(parse_error(
                *line_b,
                format!("rank {b} appears twice (also on line {line_a})"),
            ));
        }
        if *b != a + 1 {
            return Err(parse_error(
                *line_b,
                format!(
                    "rank {} is missing: ranks must run from 0 without gaps, and the next one, {b}, is on this line",
                    a + 1
                ),
            ));
        }
    }
    let mut bpe = Bpe::new();
    for (rank, bytes, n) in tokens {
        let rank = rank as usize;
        if rank < BYTE_TOKENS {
            if bytes != [rank as u8] {
                return Err(parse_error(
                    n,
                    format!("rank {rank} must be the single byte {rank}"),
                ));
            }
            continue;
        }
        if let Some(id) = bpe.token_id(&bytes) {
            return Err(parse_error(
                n,
                format!("the token of rank {rank} repeats the token of rank {id}"),
            ));
        }
        // the merges so far split the token into exactly the two it merges
        let mut parts = Vec::new();
        bpe.encode_piece(&bytes, &mut parts);
        let [left, right] = parts[..] else {
            return Err(parse_error(
                n,
                format!(
                    "the token of rank {rank} is not the merge of two earlier tokens (the earlier merges cut it into {} parts)",
                    parts.len()
                ),
            ));
        };
        bpe.push_merge((left, right))
            .map_err(|e| parse_error(n, e.to_string()))?;
    }
    Ok((Tokenizer::new(bpe, split), last_line))
}
// ANCHOR_END: parse_tiktoken

#[cfg(test)]
mod tests {
    use super::*;
    use crate::special::{BOS, EOS};
    use proptest::prelude::*;
    use std::path::PathBuf;

    fn example() -> Tokenizer {
        Tokenizer::train("aaabdaaabac", 259)
            .unwrap()
            .with_special_tokens(&[BOS, EOS])
            .unwrap()
    }

    /// A path in the temporary directory, unique to this process and `name`.
    fn temp(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("tokenizer-{}-{name}", std::process::id()))
    }

    /// The line and message of a parse error, however it is wrapped.
    fn parse_error_of(e: &TokenizerError) -> (usize, String) {
        match e {
            TokenizerError::Parse { line, message } => (*line, message.clone()),
            TokenizerError::File { error, .. } => parse_error_of(error),
            other => panic!("expected a parse error, got {other:?}"),
        }
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
        let path = temp("save.txt");
        example().save(&path).unwrap();
        let loaded = Tokenizer::load(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(loaded, example());
    }

    /// I/O errors, parse errors and bad UTF-8 all name the file.
    #[test]
    fn load_errors_name_the_file() {
        let e = Tokenizer::load("/no/such/dir/tok.txt").unwrap_err();
        assert!(
            matches!(&e, TokenizerError::File { path, error }
                if path == Path::new("/no/such/dir/tok.txt") && matches!(**error, TokenizerError::Io(_))),
            "{e:?}"
        );
        assert!(e.to_string().starts_with("/no/such/dir/tok.txt: "), "{e}");
        let e = example().save("/no/such/dir/tok.txt").unwrap_err();
        assert!(e.to_string().starts_with("/no/such/dir/tok.txt: "), "{e}");

        let path = temp("bad-merge.txt");
        std::fs::write(&path, example().to_text().replace("97 98", "97 x")).unwrap();
        let e = Tokenizer::load(&path).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "{}: line 5: expected two token ids \"<left> <right>\" (merge 1 of 3), found \"97 x\"",
                path.display()
            )
        );
        // bytes that are not UTF-8: the line and the byte in it
        std::fs::write(&path, b"bpe-tokenizer 1\nsplit gp\xfft4\n").unwrap();
        let e = Tokenizer::load(&path).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "{}: line 2: not valid UTF-8 (byte 9 of the line)",
                path.display()
            )
        );
        let e = Tokenizer::load_tiktoken(&path, Split::Gpt4).unwrap_err();
        assert!(e.to_string().contains("line 2: not valid UTF-8"), "{e}");
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn files_are_read_through_a_limit() {
        let path = temp("big.txt");
        std::fs::write(&path, "x".repeat(1000)).unwrap();
        let e = read_text(&path, 999).unwrap_err();
        std::fs::remove_file(&path).unwrap();
        assert!(
            matches!(&e, TokenizerError::File { error, .. } if matches!(**error, TokenizerError::FileTooLarge { limit: 999 })),
            "{e:?}"
        );
        // an endless stream is cut at the limit, not read into memory
        if Path::new("/dev/zero").exists() {
            let e = Tokenizer::load("/dev/zero").unwrap_err();
            assert!(e.to_string().contains("256 MiB"), "{e}");
        }
    }

    /// Each corruption is reported at the right line with a useful message.
    #[test]
    fn corrupt_files_name_the_line() {
        let good = example().to_text();
        let cases: Vec<(String, usize, &str)> = vec![
            ("".into(), 1, "ends early: expected \"bpe-tokenizer ...\""),
            (
                good.replace("bpe-tokenizer 1", "bpe-tokenizer 2"),
                1,
                "unsupported version \"2\"",
            ),
            (
                good.replace("bpe-tokenizer", "gpt"),
                1,
                "expected \"bpe-tokenizer ...\", found \"gpt 1\"",
            ),
            (
                good.replace("split gpt4", "split gpt2"),
                2,
                "unknown split \"gpt2\", expected gpt4 or none",
            ),
            (
                good.replace("merges 3", "merges three"),
                3,
                "expected a count (a whole number), found \"three\"",
            ),
            (good.replace("97 98", "97"), 5, "expected two token ids"),
            (good.replace("97 98", "97 x"), 5, "expected two token ids"),
            (
                good.replace("97 98", "97 98 99"),
                5,
                "expected two token ids",
            ),
            (good.replace("97 98", "97 -98"), 5, "expected two token ids"),
            (
                good.replace("256 257", "256 300"),
                6,
                "does not exist yet (the tokens so far are 0..258)",
            ),
            (good.replace("97 98", "97 97"), 5, "repeats"),
            (
                good.replace("merges 3", "merges 5"),
                7,
                "expected two token ids \"<left> <right>\" (merge 3 of 5), found \"specials 2\"",
            ),
            (
                good.replace("specials 2\n<|bos|>\n<|eos|>\n", ""),
                7,
                "ends early: expected \"specials ...\"",
            ),
            (
                good.replace("specials 2", "specials 3"),
                10,
                "ends early: expected special token 2 of 3",
            ),
            (good.replace("<|eos|>", "<|bos|>"), 9, "already registered"),
            (good.replace("<|eos|>", "<| eos |>"), 9, "whitespace"),
            (good.clone() + "extra\n", 10, "unexpected line"),
            (good.clone() + "\n\nextra\n", 12, "unexpected line"),
            (
                good.lines().take(5).collect::<Vec<_>>().join("\n"),
                6,
                "ends early: expected merge 2 of 3",
            ),
        ];
        for (text, line, needle) in cases {
            let (l, message) = parse_error_of(&Tokenizer::from_text(&text).unwrap_err());
            assert_eq!(l, line, "{message}");
            assert!(message.contains(needle), "{message:?} lacks {needle:?}");
        }
    }

    /// What editors and other systems add to a file is not an error.
    #[test]
    fn bom_crlf_and_trailing_blank_lines_are_accepted() {
        let good = example().to_text();
        for text in [
            format!("\u{feff}{good}"),
            good.replace('\n', "\r\n"),
            format!("{good}\n\n  \n"),
        ] {
            assert_eq!(Tokenizer::from_text(&text).unwrap(), example(), "{text:?}");
        }
        let ranks = example().to_tiktoken();
        let want = Tokenizer::from_tiktoken(&ranks, Split::Gpt4).unwrap();
        for text in [
            format!("\u{feff}{ranks}"),
            ranks.replace('\n', "\r\n"),
            format!("{ranks}\n\n"),
            format!("\n{ranks}"),
            ranks.replace(' ', "\t"),
        ] {
            assert_eq!(Tokenizer::from_tiktoken(&text, Split::Gpt4).unwrap(), want);
        }
    }

    /// Files that describe absurd vocabularies are errors, found quickly and
    /// with little memory: merge i joins the previous token and `a`, so token
    /// k would be k bytes long (60,000 merges: 1.8 GB of tokens), or each
    /// merge doubles the previous token (40 merges: a terabyte).
    #[test]
    fn quadratic_and_exponential_merge_files_are_errors() {
        let mut quadratic = String::from("bpe-tokenizer 1\nsplit gpt4\nmerges 60000\n97 97\n");
        for i in 1..60_000 {
            writeln!(quadratic, "{} 97", 255 + i).unwrap();
        }
        quadratic.push_str("specials 0\n");
        assert!(quadratic.len() < 600_000);
        let (line, message) = parse_error_of(&Tokenizer::from_text(&quadratic).unwrap_err());
        // merge 1022 makes a token of 1025 bytes; it is on line 4 + 1022
        assert_eq!(line, 4 + 1023, "{message}");
        assert!(
            message.contains("1025 bytes, more than the limit of 1024"),
            "{message}"
        );

        let mut doubling = String::from("bpe-tokenizer 1\nsplit gpt4\nmerges 40\n97 97\n");
        for i in 0..39 {
            writeln!(doubling, "{} {}", 256 + i, 256 + i).unwrap();
        }
        doubling.push_str("specials 0\n");
        let (line, message) = parse_error_of(&Tokenizer::from_text(&doubling).unwrap_err());
        assert_eq!(line, 4 + 10, "{message}");
        assert!(message.contains("2048 bytes"), "{message}");

        // the same vocabularies as rank files hold every token's bytes, so
        // the file is as large as the memory; the limit still applies
        let long = crate::base64::encode(&[b'a'; 1025]);
        let mut ranks = Tokenizer::bytes_only(Split::Gpt4).to_tiktoken();
        writeln!(ranks, "{long} 256").unwrap();
        let (line, message) =
            parse_error_of(&Tokenizer::from_tiktoken(&ranks, Split::Gpt4).unwrap_err());
        assert_eq!(line, 257);
        assert!(message.contains("1025 bytes long"), "{message}");
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
        let check = |text: String, line: usize, needle: &str| {
            let (l, message) =
                parse_error_of(&Tokenizer::from_tiktoken(&text, Split::Gpt4).unwrap_err());
            assert_eq!(l, line, "{message}");
            assert!(message.contains(needle), "{message:?} lacks {needle:?}");
        };
        check(
            good.replace("YQ== 97", "YQ==97"),
            98,
            "expected \"<base64 token> <rank>\", found \"YQ==97\"",
        );
        check(
            good.replace("YQ== 97", "YQ== 97 x"),
            98,
            "expected \"<base64 token> <rank>\"",
        );
        check(good.replace("YQ== 97", "Y*== 97"), 98, "invalid base64");
        check(
            good.replace("YQ== 97", "YQ== x"),
            98,
            "expected a rank (a whole number below 2^32), found \"x\"",
        );
        check(
            good.replace("YQ== 97", "YQ== 99999999999"),
            98,
            "expected a rank",
        );
        // a gap: the missing rank is named, at the line of the next one
        check(
            good.replace("YQ== 97", "YQ== 977"),
            99,
            "rank 97 is missing: ranks must run from 0 without gaps, and the next one, 98, is on this line",
        );
        check(
            good.replace("YQ== 97", "YQ== 96"),
            98,
            "rank 96 appears twice (also on line 97)",
        );
        check(
            good.replace("AA== 0\n", ""),
            1,
            "rank 0 is missing: the lowest rank is 1",
        );
        let first_100: String = good.lines().take(100).map(|l| format!("{l}\n")).collect();
        check(
            first_100,
            100,
            "holds 100 tokens, but a byte-level vocabulary needs at least the 256 single bytes",
        );
        check(good.replace("YQ== 97", "Yg== 97"), 98, "single byte 97");
        // "aaab" (rank 258) replaced by "abcd", which the earlier merges
        // encode as [ab, c, d]: not one merge
        check(
            good.replace("YWFhYg== 258", "YWJjZA== 258"),
            259,
            "not the merge of two earlier tokens (the earlier merges cut it into 3 parts)",
        );
        check(
            good.replace("YWFhYg== 258", "YWE= 258"),
            259,
            "the token of rank 258 repeats the token of rank 256",
        );
        check(String::new(), 1, "holds 0 tokens");
        check("\n\n".into(), 2, "holds 0 tokens");
    }

    /// A gap far from the end is reported where it is, not as a rank out of
    /// range at the end of the file.
    #[test]
    fn a_gap_at_rank_300_names_rank_300() {
        let tok = Tokenizer::train(&crate::testing::english(20_000), 400).unwrap();
        let ranks: String = tok
            .to_tiktoken()
            .lines()
            .filter(|l| !l.ends_with(" 300"))
            .map(|l| format!("{l}\n"))
            .collect();
        let (line, message) =
            parse_error_of(&Tokenizer::from_tiktoken(&ranks, Split::Gpt4).unwrap_err());
        assert_eq!(line, 301, "{message}");
        assert!(message.starts_with("rank 300 is missing"), "{message}");
    }

    #[test]
    fn a_rank_file_cut_short_is_found_with_the_expected_size() {
        let tok = Tokenizer::train(&crate::testing::english(20_000), 400).unwrap();
        let path = temp("cut.tiktoken");
        let cut: String = tok
            .to_tiktoken()
            .lines()
            .take(350)
            .map(|l| format!("{l}\n"))
            .collect();
        std::fs::write(&path, &cut).unwrap();
        // on its own it is a valid vocabulary of 350 tokens
        assert_eq!(
            Tokenizer::load_tiktoken(&path, Split::Gpt4)
                .unwrap()
                .vocab_size(),
            350
        );
        let e = Tokenizer::load_tiktoken_expecting(&path, Split::Gpt4, 400).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "{}: line 351: the file ends after 350 tokens, expected 400 (is it cut short?)",
                path.display()
            )
        );
        assert!(Tokenizer::load_tiktoken_expecting(&path, Split::Gpt4, 350).is_ok());
        std::fs::remove_file(&path).unwrap();
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

        /// Any bytes at all: an error or a tokenizer, never a panic.
        #[test]
        fn any_bytes_load_or_fail_cleanly(
            lines in proptest::collection::vec("[0-9 a-z<|>=A-Z+/]{0,12}", 0..12),
            header in 0usize..3,
        ) {
            let prefix = ["", "bpe-tokenizer 1\nsplit gpt4\n", "bpe-tokenizer 1\nsplit gpt4\nmerges 2\n"][header];
            let text = format!("{prefix}{}", lines.join("\n"));
            let _ = Tokenizer::from_text(&text);
            let _ = Tokenizer::from_tiktoken(&text, Split::Gpt4);
        }
    }
}
