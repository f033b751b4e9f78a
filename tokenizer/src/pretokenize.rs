//! The pre-tokeniser: cut text into pieces so that merges never cross a word
//! boundary.
//!
//! Without it, BPE would happily learn tokens such as `"e. T"` or `"g, a"`
//! that glue the end of one word to punctuation and the start of the next,
//! wasting vocabulary on accidents of the corpus. GPT-2 introduced a regular
//! expression for this split; GPT-4 (`cl100k_base`) refined it. tiktoken
//! 0.14 writes it as
//!
//! ```text
//! '(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s
//! ```
//!
//! We implement the same rules as a hand-written scanner, with no regex
//! engine: [`split`] looks at the character at the current position and tries
//! the rules below **in order**; the first that matches gives the next piece.
//!
//! 1. **Contraction**: an apostrophe `'` followed by `s`, `d`, `m`, `t`, `ll`,
//!    `ve` or `re`, in any case (`'s`, `'LL`, `'Re`; case-insensitive
//!    matching also lets the long s, `'ſ`, through).
//! 2. **Word**: a run of letters, optionally preceded by *one* character that
//!    is not a letter, a number, `\r` or `\n` (so `" hello"`, `"(hello"`,
//!    `"\thello"` are single pieces).
//! 3. **Number**: one to three numbers (`"2024"` → `"202"`, `"4"`).
//! 4. **Punctuation**: an optional single space, a run of characters that are
//!    neither whitespace, letters nor numbers, then any `\r`/`\n` that follow
//!    (`" ..."`, `"!\n"`).
//! 5. **Whitespace at the end**: a run of whitespace that reaches the end of
//!    the text is one piece, newlines and all.
//! 6. **Newlines**: a run of whitespace that contains `\r` or `\n`, up to and
//!    including its *last* newline (`"  \n\n"`; spaces after it stay for the
//!    next word).
//! 7. **Spaces before a word**: a run of whitespace minus its last character,
//!    which is left to start the next piece (`"   x"` → `"  "`, `" x"`).
//! 8. **Lone whitespace**: a single whitespace character.
//!
//! A *letter* is a character of general category `L` (Lu, Ll, Lt, Lm, Lo), a
//! *number* one of category `N` (Nd, Nl, No: `7`, `٣`, `²`, `½`, `Ⅻ`), and
//! *whitespace* one with the Unicode `White_Space` property (`\s`). Marks
//! (category `M`: the vowel signs of Indic scripts, Hebrew and Arabic
//! vowel points, combining accents) are none of these, so they count as
//! punctuation: `नमस्ते` is cut into `नमस`, `्त`, `े`, exactly as GPT-4 cuts it.
//! Rust's `char::is_alphabetic` would not do: it also covers most marks and
//! circled letters such as `ⓘ`, and follows the Unicode version of the
//! compiler. The categories come from a table generated from the Unicode
//! Character Database, version [`UNICODE_VERSION`] (`unicode_table.rs`,
//! written by `tools/tokenizer_unicode.py`): 16.0, the version of the
//! regular-expression engine inside tiktoken 0.14, so that a vocabulary
//! exported to tiktoken cuts every text as here. (Letters added in Unicode
//! 17.0 and later are punctuation to tiktoken, and so to us, until it moves
//! on.) The generator checks the table against tiktoken on every code
//! point, and a test checks the scanner against the regex, piece for piece,
//! on a multilingual corpus.
//!
//! The original cl100k pattern ended in `\s*[\r\n]|\s+(?!\S)|\s+` without
//! `\s++$`; the two differ only on whitespace that holds a newline and ends
//! the text (`"a\n  "`: `"\n  "` today, `"\n"` and `"  "` then). We follow
//! tiktoken as it is.

pub use crate::unicode_table::UNICODE_VERSION;
use crate::unicode_table::{BLOCK_SHIFT, BLOCKS, INDEX, MAX_CODE_POINT};

/// How text is cut into pieces before byte-pair merging.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Split {
    /// The GPT-4 rules above (the default).
    #[default]
    Gpt4,
    /// No split: the whole text is one piece, as in the plain BPE of the
    /// worked example. Merges may then cross word boundaries.
    None,
}

impl Split {
    /// The pieces of `text` under this rule; concatenated they give `text`.
    pub fn pieces(self, text: &str) -> Pieces<'_> {
        Pieces {
            text,
            pos: 0,
            whole: self == Split::None,
        }
    }

    /// The name written in vocabulary files.
    pub fn name(self) -> &'static str {
        match self {
            Split::Gpt4 => "gpt4",
            Split::None => "none",
        }
    }

    /// Inverse of [`Split::name`].
    pub fn from_name(name: &str) -> Option<Split> {
        match name {
            "gpt4" => Some(Split::Gpt4),
            "none" => Some(Split::None),
            _ => None,
        }
    }
}

/// Split `text` with the GPT-4 rules of this module's documentation.
///
/// ```
/// let pieces: Vec<&str> = tokenizer::split("Hello world's 12345!!\n").collect();
/// assert_eq!(pieces, ["Hello", " world", "'s", " ", "123", "45", "!!\n"]);
/// ```
pub fn split(text: &str) -> Pieces<'_> {
    Split::Gpt4.pieces(text)
}

/// Iterator over the pieces of a text, borrowing from it (no allocation).
#[derive(Debug, Clone)]
pub struct Pieces<'a> {
    text: &'a str,
    pos: usize,
    whole: bool,
}

impl<'a> Iterator for Pieces<'a> {
    type Item = &'a str;

    #[inline]
    fn next(&mut self) -> Option<&'a str> {
        if self.pos >= self.text.len() {
            return None;
        }
        let start = self.pos;
        let end = if self.whole {
            self.text.len()
        } else {
            piece_end(self.text.as_bytes(), start)
        };
        self.pos = end;
        // `piece_end` only stops on character boundaries
        Some(&self.text[start..end])
    }
}

/// The classes the rules distinguish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    /// `\p{L}`.
    Letter,
    /// `\p{N}`.
    Number,
    /// `\r` or `\n`.
    Newline,
    /// Whitespace other than `\r` and `\n`.
    Space,
    /// Everything else: punctuation, symbols, marks, emoji, control characters.
    Other,
}

/// Classes of the 128 ASCII characters, computed at compile time.
const ASCII: [Class; 128] = {
    let mut t = [Class::Other; 128];
    let mut i = 0;
    while i < 128 {
        let b = i as u8;
        t[i] = if b.is_ascii_alphabetic() {
            Class::Letter
        } else if b.is_ascii_digit() {
            Class::Number
        } else if b == b'\r' || b == b'\n' {
            Class::Newline
        } else if b == b' ' || (b >= 0x09 && b <= 0x0d) {
            // \t \n \v \f \r and space: the ASCII members of `\s`
            Class::Space
        } else {
            Class::Other
        };
        i += 1;
    }
    t
};

// ANCHOR: classify
/// The class of the character starting at byte `i`, and its length in bytes.
/// `None` at the end of the text.
#[inline(always)]
fn class_at(bytes: &[u8], i: usize) -> Option<(Class, usize)> {
    let &b = bytes.get(i)?;
    if b < 0x80 {
        Some((ASCII[b as usize], 1)) // fast path: one table lookup
    } else {
        Some(class_of_non_ascii(bytes, i))
    }
}

/// The slow path of [`class_at`], kept out of line so the ASCII path
/// inlines into the scanning loops.
#[inline(never)]
fn class_of_non_ascii(bytes: &[u8], i: usize) -> (Class, usize) {
    let (code, len) = decode_char(bytes, i);
    (unicode_class(code), len)
}

/// The class of a code point, from the generated two-level table: the top
/// bits pick one of the distinct blocks of 128 code points, the block holds
/// 2 bits per code point.
#[inline]
fn unicode_class(code: u32) -> Class {
    if code >= MAX_CODE_POINT {
        return Class::Other; // nothing above the table is a letter, number or space
    }
    let block = INDEX[(code >> BLOCK_SHIFT) as usize] as usize;
    let offset = code as usize & ((1 << BLOCK_SHIFT) - 1);
    match (BLOCKS[block][offset / 32] >> (2 * (offset % 32))) & 3 {
        0 => Class::Letter,
        1 => Class::Number,
        2 => Class::Space, // \r and \n are ASCII
        _ => Class::Other,
    }
}
// ANCHOR_END: classify

/// Is `c` a letter (`\p{L}`) for the split?
pub(crate) fn is_letter(c: char) -> bool {
    if c.is_ascii() {
        c.is_ascii_alphabetic()
    } else {
        unicode_class(c as u32) == Class::Letter
    }
}

/// Decode the (multi-byte) character starting at byte `i` of valid UTF-8:
/// its code point and its length in bytes.
#[inline]
fn decode_char(bytes: &[u8], i: usize) -> (u32, usize) {
    let b0 = bytes[i] as u32;
    let cont = |k: usize| (bytes[i + k] & 0x3f) as u32;
    if b0 < 0xe0 {
        (((b0 & 0x1f) << 6) | cont(1), 2)
    } else if b0 < 0xf0 {
        (((b0 & 0x0f) << 12) | (cont(1) << 6) | cont(2), 3)
    } else {
        (
            ((b0 & 0x07) << 18) | (cont(1) << 12) | (cont(2) << 6) | cont(3),
            4,
        )
    }
}

/// End of the run of characters whose class passes `keep`, from byte `i`.
#[inline(always)]
fn run_end(bytes: &[u8], mut i: usize, keep: impl Fn(Class) -> bool) -> usize {
    while let Some((c, len)) = class_at(bytes, i) {
        if !keep(c) {
            break;
        }
        i += len;
    }
    i
}

// ANCHOR: piece_end
/// Byte offset where the piece starting at `start` ends (rules 1–8).
fn piece_end(bytes: &[u8], start: usize) -> usize {
    let (c0, len0) = class_at(bytes, start).expect("start is inside the text");
    let next = start + len0;
    let c1 = class_at(bytes, next).map(|(c, _)| c);

    // 1. contractions: 's 'd 'm 't 'll 've 're, any case
    if bytes[start] == b'\''
        && let Some(len) = contraction_len(&bytes[next..])
    {
        return next + len;
    }
    // 2. letters, with at most one leading non-letter, non-number, non-newline
    if c0 == Class::Letter {
        return run_end(bytes, next, |c| c == Class::Letter);
    }
    if matches!(c0, Class::Space | Class::Other) && c1 == Some(Class::Letter) {
        return run_end(bytes, next, |c| c == Class::Letter);
    }
    // 3. one to three numbers
    if c0 == Class::Number {
        let mut end = next;
        for _ in 0..2 {
            match class_at(bytes, end) {
                Some((Class::Number, len)) => end += len,
                _ => break,
            }
        }
        return end;
    }
    // 4. punctuation run, with an optional leading space and trailing newlines
    let punct_from = if bytes[start] == b' ' && c1 == Some(Class::Other) {
        Some(next)
    } else if c0 == Class::Other {
        Some(start)
    } else {
        None
    };
    if let Some(from) = punct_from {
        let end = run_end(bytes, from, |c| c == Class::Other);
        return run_end(bytes, end, |c| c == Class::Newline);
    }
    // only whitespace is left: find its run and the last newline in it
    let mut end = start;
    let mut last_newline = None;
    let mut last_char = start;
    while let Some((c, len)) = class_at(bytes, end) {
        match c {
            Class::Newline => last_newline = Some(end + len),
            Class::Space => {}
            _ => break,
        }
        last_char = end;
        end += len;
    }
    // 5. whitespace that ends the text
    if end == bytes.len() {
        return end;
    }
    // 6. whitespace up to and including its last newline
    if let Some(after_newline) = last_newline {
        return after_newline;
    }
    // 7. the run, minus its last char (a word follows); 8. a lone whitespace
    if last_char == start { end } else { last_char }
}
// ANCHOR_END: piece_end

/// Length of the contraction suffix after an apostrophe, if `rest` starts
/// with one: `s d m t ll ve re`, case-insensitive. Unicode's simple case
/// folding, which the regex uses, maps only one more character onto these
/// letters: the long s `ſ` (U+017F, bytes C5 BF), which folds to `s`.
fn contraction_len(rest: &[u8]) -> Option<usize> {
    let lower = |i: usize| rest.get(i).map(|b| b.to_ascii_lowercase());
    match lower(0)? {
        b's' | b'd' | b'm' | b't' => Some(1),
        b'l' if lower(1) == Some(b'l') => Some(2),
        b'v' | b'r' if lower(1) == Some(b'e') => Some(2),
        0xc5 if rest.get(1) == Some(&0xbf) => Some(2), // ſ
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pieces(text: &str) -> Vec<&str> {
        split(text).collect()
    }

    #[test]
    fn rule1_contractions_any_case() {
        assert_eq!(pieces("it's"), ["it", "'s"]);
        assert_eq!(pieces("we'LL"), ["we", "'LL"]);
        assert_eq!(pieces("they'Re"), ["they", "'Re"]);
        assert_eq!(pieces("I'd've"), ["I", "'d", "'ve"]);
        assert_eq!(pieces("don't"), ["don", "'t"]);
        assert_eq!(pieces("I'm"), ["I", "'m"]);
        // the long s folds to s
        assert_eq!(pieces("it'ſ"), ["it", "'ſ"]);
        // the rule does not look past the suffix, like the regex
        assert_eq!(pieces("'sup"), ["'s", "up"]);
        // not a contraction: the apostrophe leads the word (rule 2)
        assert_eq!(pieces("'hello"), ["'hello"]);
        assert_eq!(pieces("'x'"), ["'x", "'"]);
        // a curly apostrophe is punctuation
        assert_eq!(pieces("it’s"), ["it", "’s"]);
    }

    #[test]
    fn rule2_words_take_one_leading_non_letter() {
        assert_eq!(pieces("hello world"), ["hello", " world"]);
        assert_eq!(pieces("(hello"), ["(hello"]);
        assert_eq!(pieces("\thello"), ["\thello"]);
        assert_eq!(pieces("  hello"), [" ", " hello"]);
        // a newline never leads a word
        assert_eq!(pieces("\nhello"), ["\n", "hello"]);
        // unicode letters
        assert_eq!(pieces("naïve café"), ["naïve", " café"]);
        assert_eq!(pieces("Привет мир"), ["Привет", " мир"]);
        assert_eq!(pieces("日本語"), ["日本語"]);
        // numbers end a word
        assert_eq!(pieces("abc123def"), ["abc", "123", "def"]);
    }

    /// Marks (category M) are not letters: words in scripts that write
    /// vowels as marks are cut at every mark, exactly as the regex cuts them.
    #[test]
    fn rule2_marks_are_not_letters() {
        assert_eq!(pieces("नमस्ते"), ["नमस", "्त", "े"]);
        assert_eq!(pieces("שָׁלוֹם"), ["ש", "ָׁ", "לו", "ֹם"]);
        assert_eq!(pieces("مَرْحَبًا"), ["م", "َر", "ْح", "َب", "ًا"]);
        // a decomposed é is e + U+0301; precomposed é is one letter
        assert_eq!(pieces("cafe\u{301}s"), ["cafe", "\u{301}s"]);
        assert_eq!(pieces("cafés"), ["cafés"]);
        // circled letters are symbols (So), not letters
        assert_eq!(pieces("ⓘ info"), ["ⓘ", " info"]);
    }

    #[test]
    fn rule3_numbers_in_runs_of_at_most_three() {
        assert_eq!(pieces("1234567"), ["123", "456", "7"]);
        assert_eq!(pieces("42"), ["42"]);
        // a space before numbers is its own piece (rule 8)
        assert_eq!(pieces("in 2024"), ["in", " ", "202", "4"]);
        // non-ASCII numbers count too: Arabic-Indic, superscripts, fractions, Roman
        assert_eq!(pieces("١٢٣٤"), ["١٢٣", "٤"]);
        assert_eq!(pieces("x²"), ["x", "²"]);
        assert_eq!(pieces("½Ⅻ³⁄₄"), ["½Ⅻ³", "⁄", "₄"]);
    }

    #[test]
    fn rule4_punctuation_runs() {
        assert_eq!(pieces("hi!!!"), ["hi", "!!!"]);
        assert_eq!(pieces("a ... b"), ["a", " ...", " b"]);
        assert_eq!(pieces("end.\n\nNext"), ["end", ".\n\n", "Next"]);
        assert_eq!(pieces("x = y"), ["x", " =", " y"]);
        // only a plain space may lead punctuation; a tab stands alone
        assert_eq!(pieces("\t!"), ["\t", "!"]);
        // emoji are "other": they form punctuation-like runs
        assert_eq!(pieces("ok 👍👍"), ["ok", " 👍👍"]);
        // one punctuation char may lead a word (rule 2), a run may not
        assert_eq!(pieces(".hi"), [".hi"]);
        assert_eq!(pieces("..hi"), ["..", "hi"]);
        // control characters are "other" too
        assert_eq!(pieces("a\u{1b}[0m"), ["a", "\u{1b}[", "0", "m"]);
    }

    #[test]
    fn rule5_whitespace_at_the_end_is_one_piece() {
        assert_eq!(pieces("a   "), ["a", "   "]);
        assert_eq!(pieces("a\n  "), ["a", "\n  "]);
        assert_eq!(pieces("a \r\n\t"), ["a", " \r\n\t"]);
        assert_eq!(pieces("\n"), ["\n"]);
    }

    #[test]
    fn rule6_newlines_end_at_the_last_newline() {
        assert_eq!(pieces("a\n\nb"), ["a", "\n\n", "b"]);
        assert_eq!(pieces("a  \n  b"), ["a", "  \n", " ", " b"]);
        assert_eq!(pieces("a\r\nb"), ["a", "\r\n", "b"]);
        // a lone CR is a newline too
        assert_eq!(pieces("a\rb"), ["a", "\r", "b"]);
    }

    #[test]
    fn rule7_spaces_leave_one_for_the_next_word() {
        assert_eq!(pieces("a    b"), ["a", "   ", " b"]);
        // unicode whitespace behaves like a space
        assert_eq!(pieces("a\u{3000}\u{3000}b"), ["a", "\u{3000}", "\u{3000}b"]);
        // NEL (U+0085) is whitespace, not a newline
        assert_eq!(pieces("a\u{85}\u{85}b"), ["a", "\u{85}", "\u{85}b"]);
        // a zero-width space is not whitespace (category Cf)
        assert_eq!(pieces("a\u{200b}b"), ["a", "\u{200b}b"]);
    }

    #[test]
    fn rule8_lone_whitespace() {
        assert_eq!(pieces(" 1"), [" ", "1"]);
        assert_eq!(pieces("a \t!"), ["a", " ", "\t", "!"]);
    }

    #[test]
    fn classes_follow_the_unicode_table() {
        let class = |c: char| unicode_class(c as u32);
        assert_eq!(class('é'), Class::Letter);
        assert_eq!(class('ß'), Class::Letter);
        assert_eq!(class('ǅ'), Class::Letter); // Lt
        assert_eq!(class('ʰ'), Class::Letter); // Lm
        assert_eq!(class('中'), Class::Letter); // Lo
        assert_eq!(class('\u{301}'), Class::Other); // Mn
        assert_eq!(class('\u{93f}'), Class::Other); // Mc: Devanagari vowel sign i
        assert_eq!(class('ⓘ'), Class::Other); // So, though Alphabetic
        assert_eq!(class('٣'), Class::Number); // Nd
        assert_eq!(class('Ⅻ'), Class::Number); // Nl
        assert_eq!(class('½'), Class::Number); // No
        assert_eq!(class('\u{a0}'), Class::Space);
        assert_eq!(class('\u{2029}'), Class::Space);
        assert_eq!(class('\u{feff}'), Class::Other);
        assert_eq!(class('😀'), Class::Other);
        assert_eq!(class('\u{10ffff}'), Class::Other);
        assert_eq!(class('\u{30000}'), Class::Letter); // CJK extension G
        assert_eq!(UNICODE_VERSION, (16, 0, 0)); // tiktoken 0.14's
    }

    /// The table agrees with std where both follow Unicode's definitions:
    /// whitespace is exactly `char::is_whitespace`, every number is
    /// `char::is_numeric` and every letter `char::is_alphabetic`. std may
    /// follow a newer Unicode version than the table's 16.0: what it counts
    /// as a number and the table does not must be new, so "other" here, and
    /// few.
    #[test]
    fn table_agrees_with_std() {
        let mut newer = 0;
        for c in (0..=0x10ffff).filter_map(char::from_u32) {
            if c.is_ascii() {
                continue;
            }
            let class = unicode_class(c as u32);
            assert_eq!(class == Class::Space, c.is_whitespace(), "{c:?}");
            match class {
                Class::Letter => assert!(c.is_alphabetic(), "{c:?}"),
                Class::Number => assert!(c.is_numeric(), "{c:?}"),
                _ if c.is_numeric() => {
                    assert_eq!(class, Class::Other, "{c:?}");
                    newer += 1;
                }
                _ => {}
            }
        }
        assert!(newer < 500, "{newer} numbers unknown to the table");
    }

    #[test]
    fn split_none_keeps_the_whole_text() {
        let v: Vec<&str> = Split::None.pieces("a b, c").collect();
        assert_eq!(v, ["a b, c"]);
        assert_eq!(Split::None.pieces("").count(), 0);
        assert_eq!(split("").count(), 0);
    }

    #[test]
    fn names_round_trip() {
        for s in [Split::Gpt4, Split::None] {
            assert_eq!(Split::from_name(s.name()), Some(s));
        }
        assert_eq!(Split::from_name("gpt2"), None);
    }

    proptest! {
        #[test]
        fn pieces_concatenate_to_the_text(text in "\\PC*") {
            let joined: String = split(&text).collect();
            prop_assert_eq!(joined, text.clone());
            prop_assert!(split(&text).all(|p| !p.is_empty()));
        }

        #[test]
        fn pieces_never_mix_letters_and_numbers(text in "[a-z0-9 ,.'\n]{0,40}") {
            for p in split(&text) {
                let letters = p.chars().any(|c| c.is_alphabetic());
                let digits = p.chars().any(|c| c.is_numeric());
                prop_assert!(!(letters && digits), "piece {:?}", p);
                prop_assert!(p.chars().filter(|c| c.is_numeric()).count() <= 3);
            }
        }
    }
}
