//! A small, fast, deterministic hasher for the tokenizer's hash maps.
//!
//! std's default `SipHash` resists hash-flooding attacks but costs tens of
//! nanoseconds per key; training and encoding hash millions of short keys (pairs
//! of IDs, pre-token pieces), so we use the multiply-rotate hash that rustc
//! uses internally ("FxHash"): fold each 8-byte word into the state with
//! `h = (h.rotl(5) ^ word) * K`. It is not collision-resistant, which is fine
//! for maps whose keys come from our own corpus and vocabulary. It is also
//! deterministic (no random seed), so iteration order is reproducible.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// rustc's FxHash constant (an odd number with well-spread bits).
const K: u64 = 0x51_7c_c1_b7_27_22_0a_95;

/// FxHash: one rotate, xor and multiply per 8-byte word.
#[derive(Debug, Default, Clone, Copy)]
pub struct FxHasher {
    hash: u64,
}

impl FxHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(K);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(u64::from_le_bytes(c.try_into().unwrap())); // exactly 8 bytes
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            // the length keeps "a\0" and "a" apart
            self.add(u64::from_le_bytes(word) ^ ((rest.len() as u64) << 59));
        }
    }
    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(i as u64);
    }
    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.add(i as u64);
    }
    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }
    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }
    #[inline]
    fn finish(&self) -> u64 {
        self.hash
    }
}

/// A `HashMap` using [`FxHasher`].
pub type FxHashMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

/// Pack a pair of token IDs into one `u64` key, left ID in the high half, so
/// that comparing packed keys compares pairs lexicographically.
#[inline]
pub fn pack(left: u32, right: u32) -> u64 {
    ((left as u64) << 32) | right as u64
}

/// Inverse of [`pack`].
#[inline]
pub fn unpack(key: u64) -> (u32, u32) {
    ((key >> 32) as u32, key as u32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::Hash;

    fn hash_of<T: Hash + ?Sized>(x: &T) -> u64 {
        let mut h = FxHasher::default();
        x.hash(&mut h);
        h.finish()
    }

    #[test]
    fn deterministic_and_sensitive_to_every_byte() {
        assert_eq!(hash_of(b"hello".as_slice()), hash_of(b"hello".as_slice()));
        assert_ne!(hash_of(b"hello".as_slice()), hash_of(b"hellp".as_slice()));
        assert_ne!(hash_of(b"a\0".as_slice()), hash_of(b"a".as_slice()));
        let long = b"a sentence longer than eight bytes";
        let mut other = *long;
        other[20] ^= 1;
        assert_ne!(hash_of(long.as_slice()), hash_of(other.as_slice()));
    }

    #[test]
    fn pack_orders_pairs_lexicographically() {
        assert!(pack(1, 900) < pack(2, 0));
        assert!(pack(5, 3) < pack(5, 4));
        assert_eq!(unpack(pack(123, 456)), (123, 456));
        assert_eq!(unpack(pack(u32::MAX, 0)), (u32::MAX, 0));
    }

    #[test]
    fn works_as_a_map_hasher() {
        let mut m: FxHashMap<u64, u32> = FxHashMap::default();
        for i in 0..1000u32 {
            m.insert(pack(i, i + 1), i);
        }
        assert_eq!(m.len(), 1000);
        assert_eq!(m[&pack(500, 501)], 500);
    }
}
