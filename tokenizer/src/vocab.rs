//! Making the vocabulary visible: tokens as readable text, and the list of
//! merges in the form `[th][e] -> [the] 300`.

use crate::bpe::Bpe;

// ANCHOR: render_token
/// A token's bytes as readable text: printable characters as they are,
/// control characters escaped (`\n`, `\t`, `\u{7f}`), and bytes that are not
/// valid UTF-8 on their own (half of a character) as `\xE2`.
///
/// ```
/// use tokenizer::render_token;
/// assert_eq!(render_token(b" the"), " the");
/// assert_eq!(render_token(b"\n\n"), "\\n\\n");
/// assert_eq!(render_token(&[0xE2, 0x82]), "\\xE2\\x82"); // the start of "€"
/// ```
pub fn render_token(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c.is_control() {
                out.extend(c.escape_default());
            } else {
                out.push(c);
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02X}"));
        }
    }
    out
}
// ANCHOR_END: render_token

/// One line per merge, in the order learned: `[th][e] -> [the] 300`.
pub fn merge_listing(bpe: &Bpe) -> Vec<String> {
    let show = |id: u32| render_token(bpe.token_bytes(id).unwrap_or_default());
    bpe.merges()
        .iter()
        .zip(crate::bpe::BYTE_TOKENS as u32..)
        .map(|(&(l, r), id)| format!("[{}][{}] -> [{}] {id}", show(l), show(r), show(id)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_controls_and_partial_characters() {
        assert_eq!(render_token("é😀".as_bytes()), "é😀");
        assert_eq!(render_token(b"\t\x7f"), "\\t\\u{7f}");
        assert_eq!(render_token(&[0xF0, 0x9F]), "\\xF0\\x9F");
        assert_eq!(render_token(b""), "");
    }

    #[test]
    fn lists_merges_in_order() {
        let bpe = Bpe::from_merges(&[(116, 104), (256, 101)]).unwrap();
        assert_eq!(
            merge_listing(&bpe),
            ["[t][h] -> [th] 256", "[th][e] -> [the] 257"]
        );
    }
}
