//! Text for tests, benchmarks and the book: deterministic generators, so
//! every checkout measures the same bytes without downloading anything.
//!
//! - [`english`]: pseudo-English prose with a skewed word distribution;
//! - [`MULTILINGUAL`]: a hand-assembled sample of the world's scripts
//!   (`tests/data/multilingual.txt`: every major script, pointed Hebrew and
//!   Arabic, Indic vowel signs, decomposed Greek and Vietnamese, emoji ZWJ
//!   and skin-tone sequences, flags and keycaps, combining marks, numbers of
//!   every kind, code, URLs, control characters, CRLF and lone CR, code
//!   points assigned in recent Unicode versions);
//! - [`multilingual`]: any amount of text recombined from that sample, with
//!   10,000-character words and NUL bytes mixed in;
//! - [`Adversarial`]: inputs built to make a tokenizer slow: pieces whose
//!   hashes collide under a weak hash, one enormous piece, a repeated
//!   character, alternating emoji;
//! - [`long_words`]: a few very long words, the hard case for training.
//!
//! `tools/tokenizer_compare.py` runs tiktoken and Hugging Face `tokenizers`
//! on the same text (the `side_by_side` example writes it to files).

/// The multilingual sample, about 30 KB; its sections start with `## `.
pub const MULTILINGUAL: &str = include_str!("../tests/data/multilingual.txt");

/// A small deterministic generator (xorshift64*): good enough for text, and
/// the same on every platform.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed (any value; 0 is replaced).
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    /// The next 31 random bits.
    pub fn next_bits(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_bits() % n as u64) as usize
    }

    /// An index in `0..n` that favours small ones (the square of a uniform
    /// number), so some words are far more frequent than others.
    pub fn skewed(&mut self, n: usize) -> usize {
        let u = self.below(1000) as f64 / 1000.0;
        ((u * u * n as f64) as usize).min(n - 1)
    }
}

/// A deterministic pseudo-English corpus of about `bytes` bytes: common
/// words drawn with a skewed distribution, made-up words, punctuation,
/// numbers, contractions, some accented words and emoji, one paragraph per
/// line.
pub fn english(bytes: usize) -> String {
    const WORDS: &[&str] = &[
        "the",
        "of",
        "and",
        "to",
        "a",
        "in",
        "is",
        "that",
        "for",
        "it",
        "as",
        "with",
        "be",
        "on",
        "not",
        "this",
        "by",
        "are",
        "or",
        "from",
        "at",
        "which",
        "an",
        "value",
        "function",
        "type",
        "returns",
        "string",
        "error",
        "file",
        "the",
        "memory",
        "thread",
        "option",
        "trait",
        "method",
        "reference",
        "example",
        "compiler",
        "program",
        "variable",
        "data",
        "vector",
        "iterator",
        "closure",
        "lifetime",
        "borrow",
        "module",
        "crate",
        "test",
        "buffer",
        "stream",
        "event",
        "callback",
        "process",
        "command",
        "branch",
        "commit",
        "café",
        "naïve",
        "Größe",
        "данные",
        "数据",
        "🦀",
        "🎉",
        "it's",
        "don't",
        "we'll",
    ];
    // rarer made-up words from syllables, so the vocabulary has room to grow
    const SYLLABLES: &[&str] = &[
        "ka", "ro", "mi", "sen", "tal", "po", "ver", "lin", "dus", "ex", "qua", "bri", "on", "zel",
        "mu", "ta", "gor", "fi", "nep", "ash",
    ];
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut text = String::with_capacity(bytes + 100);
    while text.len() < bytes {
        let sentences = 1 + rng.below(5);
        for _ in 0..sentences {
            let words = 3 + rng.below(12);
            for w in 0..words {
                let made_up;
                let word = if rng.below(5) == 0 {
                    let n = 2 + rng.below(3);
                    made_up = (0..n)
                        .map(|_| SYLLABLES[rng.below(SYLLABLES.len())])
                        .collect::<String>();
                    &made_up
                } else {
                    WORDS[rng.skewed(WORDS.len())]
                };
                if w == 0 {
                    let mut c = word.chars();
                    let first = c.next().unwrap().to_uppercase(); // words are not empty
                    text.extend(first);
                    text.push_str(c.as_str());
                } else {
                    text.push(' ');
                    text.push_str(word);
                }
                match rng.below(40) {
                    0 => text.push(','),
                    1 => text.push_str(&format!(" {}", rng.below(100_000))),
                    2 => text.push_str(" ("),
                    3 => text.push(')'),
                    _ => {}
                }
            }
            text.push_str(if rng.below(6) == 0 { "? " } else { ". " });
        }
        text.push('\n');
    }
    text
}

/// The sections of [`MULTILINGUAL`]: a name and the words of its lines
/// (split on the ASCII space only, so other whitespace stays inside words).
fn sections() -> Vec<(&'static str, Vec<&'static str>)> {
    let mut out: Vec<(&str, Vec<&str>)> = Vec::new();
    for line in MULTILINGUAL.split('\n') {
        if let Some(name) = line.strip_prefix("## ") {
            out.push((name, Vec::new()));
        } else if let Some((_, words)) = out.last_mut() {
            words.extend(line.split(' ').filter(|w| !w.is_empty()));
        }
    }
    out.retain(|(_, words)| !words.is_empty());
    out
}

/// A deterministic multilingual corpus of about `bytes` bytes: the whole
/// [`MULTILINGUAL`] sample once, then paragraphs of words drawn (skewed)
/// from one of its sections at a time (not the section of long words, whose
/// "words" are runs of hundreds of characters), ended by `\n`, `\r\n`, a
/// lone `\r` or a blank line; every 300 KB a word of 10,000 letters of one
/// script, and now and then a NUL byte.
pub fn multilingual(bytes: usize) -> String {
    let mut sections = sections();
    sections.retain(|(name, _)| !name.starts_with("Long words"));
    let mut rng = Rng::new(0x6d75_6c74_696c_696e);
    let mut text = String::with_capacity(bytes + 20_000);
    text.push_str(&MULTILINGUAL[..MULTILINGUAL.len().min(bytes)]);
    let mut next_long = 300_000;
    while text.len() < bytes {
        let (_, words) = &sections[rng.below(sections.len())];
        let n = 5 + rng.below(30);
        for i in 0..n {
            if i > 0 {
                text.push(' ');
            }
            text.push_str(words[rng.skewed(words.len())]);
        }
        if rng.below(50) == 0 {
            text.push('\0');
        }
        text.push_str(["\n", "\n", "\n", "\r\n", "\n\n", "\r", " \n"][rng.below(7)]);
        if text.len() >= next_long {
            next_long += 300_000;
            // the letters of one section's words, repeated to 10,000 characters
            let letters: Vec<char> = words
                .iter()
                .flat_map(|w| w.chars())
                .filter(|&c| crate::pretokenize::is_letter(c))
                .collect();
            if !letters.is_empty() {
                text.extend((0..10_000).map(|_| letters[rng.below(letters.len())]));
                text.push('\n');
            }
        }
    }
    text
}

/// Inputs that make a careless tokenizer slow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Adversarial {
    /// `" zzq"` and four random letters, over and over: distinct 8-byte
    /// pieces that share their first half. A hash that only multiplies
    /// (FxHash without a final mix) gives them all the same low bits, so a
    /// hash map puts them in one bucket.
    CollidingPrefixes,
    /// One word of random letters, as long as the whole text.
    LongPiece,
    /// One letter repeated: a single piece, `aaaa…`, whose merges overlap.
    RepeatedChar,
    /// Two emoji alternating: one run of punctuation-class characters.
    AlternatingEmoji,
}

impl Adversarial {
    /// Every kind, in the order of the benches.
    pub const ALL: [Adversarial; 4] = [
        Adversarial::CollidingPrefixes,
        Adversarial::LongPiece,
        Adversarial::RepeatedChar,
        Adversarial::AlternatingEmoji,
    ];

    /// A short name for bench ids and file names.
    pub fn name(self) -> &'static str {
        match self {
            Adversarial::CollidingPrefixes => "colliding_prefixes",
            Adversarial::LongPiece => "long_piece",
            Adversarial::RepeatedChar => "repeated_char",
            Adversarial::AlternatingEmoji => "alternating_emoji",
        }
    }

    /// About `bytes` bytes of this input (never more).
    pub fn text(self, bytes: usize) -> String {
        let mut rng = Rng::new(0x6164_7665_7273_6172);
        let mut letter = || (b'a' + rng.below(26) as u8) as char;
        let mut text = String::with_capacity(bytes);
        match self {
            Adversarial::CollidingPrefixes => {
                while text.len() + 8 <= bytes {
                    text.push_str(" zzq");
                    for _ in 0..4 {
                        text.push(letter());
                    }
                }
            }
            Adversarial::LongPiece => text.extend((0..bytes).map(|_| letter())),
            Adversarial::RepeatedChar => text.extend(std::iter::repeat_n('a', bytes)),
            Adversarial::AlternatingEmoji => {
                while text.len() + 8 <= bytes {
                    text.push_str("😀😃");
                }
            }
        }
        text
    }
}

/// `count` words of `len` random letters each, separated by spaces: few
/// pieces, all of them long. The letters come from several scripts
/// (Latin, Cyrillic, Greek), so the text has about 1.7 bytes per letter.
pub fn long_words(count: usize, len: usize) -> String {
    let alphabet: Vec<char> =
        "abcdefghijklmnopqrstuvwxyzабвгдежзийклмнопрстуфхцчшщыэюяαβγδεζηθικλμνξοπρστυφχψω"
            .chars()
            .collect();
    let mut rng = Rng::new(0x6c6f_6e67);
    let mut text = String::new();
    for w in 0..count {
        if w > 0 {
            text.push(' ');
        }
        text.extend((0..len).map(|_| alphabet[rng.below(alphabet.len())]));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generators_are_deterministic_and_sized() {
        assert_eq!(english(5000), english(5000));
        assert!(english(5000).len() >= 5000);
        let m = multilingual(400_000);
        assert_eq!(m, multilingual(400_000));
        assert!(m.starts_with(MULTILINGUAL));
        assert!(m.contains('\0') && m.contains("\r\n"));
        // one word of 10,000 letters after the first 300 KB
        assert!(crate::split(&m).any(|p| p.chars().count() >= 10_000));
        for kind in Adversarial::ALL {
            let t = kind.text(1000);
            assert!(
                t.len() <= 1000 && t.len() > 990,
                "{}: {}",
                kind.name(),
                t.len()
            );
        }
        assert_eq!(crate::split(&Adversarial::LongPiece.text(5000)).count(), 1);
        assert_eq!(
            crate::split(&Adversarial::AlternatingEmoji.text(5000)).count(),
            1
        );
        let words = long_words(3, 100);
        assert_eq!(crate::split(&words).count(), 3);
        assert_eq!(words.chars().count(), 302);
    }

    #[test]
    fn every_section_of_the_sample_has_words() {
        let s = sections();
        assert!(s.len() >= 25, "{} sections", s.len());
        assert!(s.iter().any(|(name, _)| name.starts_with("Devanagari")));
    }
}
