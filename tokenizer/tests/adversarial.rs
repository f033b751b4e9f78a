//! Inputs built to make a tokenizer slow: distinct pieces whose hashes
//! collide under a weak hash, one piece as long as the text, a repeated
//! character, alternating emoji (see `tokenizer::testing::Adversarial`).
//!
//! Each is encoded at 300 KB with three vocabularies, and must round-trip
//! and equal the piece-by-piece encoding without the cache. Encoding them
//! takes milliseconds in linear time; the quadratic versions this crate
//! once had would take minutes here, so the test also guards the speed.
//! The benches (`bpe_encode/adversarial_*`) measure the scaling: the time
//! grows with the size, not with its square.

use tokenizer::testing::{Adversarial, english};
use tokenizer::{Split, Tokenizer};

fn encode_without_cache(tok: &Tokenizer, text: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for piece in tok.split().pieces(text) {
        tok.bpe().encode_piece(piece.as_bytes(), &mut out);
    }
    out
}

#[test]
fn adversarial_inputs_encode_exactly() {
    let english_vocab = Tokenizer::train(&english(200_000), 1024).unwrap();
    for kind in Adversarial::ALL {
        let text = kind.text(300_000);
        // a vocabulary learned from the attack itself merges the most
        let own = Tokenizer::train(&kind.text(20_000), 600);
        let own = match own {
            Ok(tok) => tok,
            Err(tokenizer::TokenizerError::VocabTooLarge { reached, .. }) => {
                Tokenizer::train(&kind.text(20_000), reached).unwrap()
            }
            Err(e) => panic!("{e}"),
        };
        for (name, tok) in [
            ("bytes only", &Tokenizer::bytes_only(Split::Gpt4)),
            ("english", &english_vocab),
            ("own", &own),
        ] {
            let ids = tok.encode_ordinary(&text);
            assert_eq!(tok.decode(&ids).unwrap(), text, "{} / {name}", kind.name());
            assert_eq!(
                ids,
                encode_without_cache(tok, &text),
                "{} / {name}",
                kind.name()
            );
            assert_eq!(
                tok.encode_ordinary(&text),
                ids,
                "{} / {name}: warm cache",
                kind.name()
            );
        }
    }
}
