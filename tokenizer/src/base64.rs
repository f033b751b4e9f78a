//! Base64 (RFC 4648, standard alphabet, `=` padding), just enough for
//! tiktoken's rank files, where each token's bytes are written in base64.
//!
//! Every 3 bytes (24 bits) become 4 characters of 6 bits each, from the
//! alphabet `A–Z a–z 0–9 + /`. A last group of 1 or 2 bytes is padded with
//! `==` or `=`.

use std::fmt;

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Why a string is not valid base64.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Base64Error {
    /// The length is not a multiple of 4.
    Length(usize),
    /// A character outside the alphabet, at this byte offset.
    Character(usize),
    /// `=` somewhere other than the last one or two places, or leftover bits
    /// that are not zero.
    Padding,
}

impl fmt::Display for Base64Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Base64Error::Length(n) => write!(f, "base64 length {n} is not a multiple of 4"),
            Base64Error::Character(i) => write!(f, "invalid base64 character at offset {i}"),
            Base64Error::Padding => write!(f, "invalid base64 padding"),
        }
    }
}

impl std::error::Error for Base64Error {}

/// Encode bytes as base64.
///
/// ```
/// assert_eq!(tokenizer::base64::encode(b"Man"), "TWFu");
/// assert_eq!(tokenizer::base64::encode(b"Ma"), "TWE=");
/// ```
pub fn encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32; // 24 bits
        for k in 0..4 {
            if k <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * k) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The 6-bit value of a base64 character.
fn value(c: u8) -> Option<u32> {
    match c {
        b'A'..=b'Z' => Some((c - b'A') as u32),
        b'a'..=b'z' => Some((c - b'a' + 26) as u32),
        b'0'..=b'9' => Some((c - b'0' + 52) as u32),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    }
}

/// Decode base64 into bytes.
///
/// # Errors
/// [`Base64Error`] for a bad length, character or padding.
pub fn decode(text: &str) -> Result<Vec<u8>, Base64Error> {
    let s = text.as_bytes();
    if !s.len().is_multiple_of(4) {
        return Err(Base64Error::Length(s.len()));
    }
    let mut out = Vec::with_capacity(s.len() / 4 * 3);
    for (g, group) in s.chunks(4).enumerate() {
        let last = (g + 1) * 4 == s.len();
        let pad = group.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 || (pad > 0 && !last) {
            return Err(Base64Error::Padding);
        }
        let mut n = 0u32;
        for (k, &c) in group[..4 - pad].iter().enumerate() {
            let v = value(c).ok_or(Base64Error::Character(g * 4 + k))?;
            n |= v << (18 - 6 * k);
        }
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        let keep = 3 - pad;
        // the bits below the kept bytes must be zero (canonical encoding)
        if bytes[keep..].iter().any(|&b| b != 0) {
            return Err(Base64Error::Padding);
        }
        out.extend_from_slice(&bytes[..keep]);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rfc4648_vectors() {
        let cases = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (plain, coded) in cases {
            assert_eq!(encode(plain.as_bytes()), coded);
            assert_eq!(decode(coded).unwrap(), plain.as_bytes());
        }
        assert_eq!(encode(&[0xfb, 0xff]), "+/8=");
        assert_eq!(decode("IGhlbGxv").unwrap(), b" hello");
    }

    #[test]
    fn rejects_bad_input() {
        assert_eq!(decode("Zm9"), Err(Base64Error::Length(3)));
        assert_eq!(decode("Zm9*"), Err(Base64Error::Character(3)));
        assert_eq!(decode("Zg==Zm9v"), Err(Base64Error::Padding));
        assert_eq!(decode("Z==="), Err(Base64Error::Padding));
        assert_eq!(decode("Zh=="), Err(Base64Error::Padding)); // leftover bits
        assert!(decode("Zm 9").is_err());
    }

    proptest! {
        #[test]
        fn round_trip(bytes in proptest::collection::vec(any::<u8>(), 0..50)) {
            let coded = encode(&bytes);
            prop_assert_eq!(coded.len(), bytes.len().div_ceil(3) * 4);
            prop_assert_eq!(decode(&coded).unwrap(), bytes);
        }
    }
}
