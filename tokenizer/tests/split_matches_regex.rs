//! The scanner against the real cl100k regex, piece for piece, on the
//! multilingual sample (`tests/data/multilingual.txt`). The regex's pieces
//! were written by `tools/tokenizer_compare.py fixture` (Python's `regex`
//! module with tiktoken's pattern), so this test needs no Python.

use tokenizer::split;
use tokenizer::testing::MULTILINGUAL;

/// The byte lengths of the regex's pieces, from the fixture.
fn regex_lengths() -> Vec<usize> {
    include_str!("data/multilingual.pieces")
        .lines()
        .filter(|l| !l.starts_with('#'))
        .flat_map(|l| l.split_whitespace())
        .map(|n| n.parse().expect("the fixture holds numbers"))
        .collect()
}

#[test]
fn split_matches_the_regex() {
    let theirs = regex_lengths();
    assert_eq!(
        theirs.iter().sum::<usize>(),
        MULTILINGUAL.len(),
        "the fixture is for another version of multilingual.txt: run tools/tokenizer_compare.py fixture"
    );
    let ours: Vec<usize> = split(MULTILINGUAL).map(str::len).collect();
    // report the first difference with its surroundings
    let mut pos = 0;
    for (i, (&a, &b)) in ours.iter().zip(&theirs).enumerate() {
        if a != b {
            let line = MULTILINGUAL[..pos].matches('\n').count() + 1;
            let ours_piece = &MULTILINGUAL.as_bytes()[pos..pos + a];
            let theirs_piece = &MULTILINGUAL.as_bytes()[pos..pos + b];
            panic!(
                "piece {i} (line {line}, byte {pos}): ours {:?}, the regex's {:?}",
                String::from_utf8_lossy(ours_piece),
                String::from_utf8_lossy(theirs_piece)
            );
        }
        pos += a;
    }
    assert_eq!(ours.len(), theirs.len());
}

/// The sample holds what it claims: text that std's `Alphabetic` (the
/// scanner's old notion of a letter) splits differently, so the test above
/// would catch a return to it.
#[test]
fn the_sample_is_hard() {
    for needle in [
        "שָׁלוֹם",
        "मराठी",
        "مَرْحَبًا",
        "ⓘ",
        "👨‍👩‍👧‍👦",
        "\r\n",
        "'ſ",
        "\u{85}",
        "\u{3000}",
    ] {
        assert!(MULTILINGUAL.contains(needle), "{needle:?}");
    }
    assert!(MULTILINGUAL.contains("e\u{301}"));
    assert!(MULTILINGUAL.len() > 20_000);
}
