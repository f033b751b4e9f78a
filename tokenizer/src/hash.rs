//! A fast, keyed hasher for the tokenizer's hash maps.
//!
//! std's default `SipHash` resists hash flooding but costs tens of
//! nanoseconds per key; training and encoding hash millions of short keys
//! (pairs of IDs, pre-token pieces). A plain multiply hash such as FxHash is
//! fast but dangerous here: `h = word × K` spreads each input bit only
//! *upwards*, and a hash map picks the bucket from the *low* bits. So the
//! low bits of the hash of an 8-byte piece depend only on its first bytes,
//! and the pieces `" zzqabcd"`, `" zzqwxyz"`, … all land in one bucket:
//! a megabyte of such text took seconds instead of milliseconds to encode.
//! The keys come from user text, so the hash must hold up against any.
//!
//! The fix has two parts, as in `foldhash`, the default hasher of the
//! `hashbrown` crate:
//! - **folded multiply**: multiply to the full 128-bit product and xor its
//!   two halves, `fold(a, b) = lo(a·b) ^ hi(a·b)`, so every input bit reaches
//!   every output bit, low bits included;
//! - **a random key**: each map starts its hash from a seed drawn from std's
//!   `RandomState` (random per process), so an attacker cannot prepare
//!   colliding keys in advance.
//!
//! It is not a cryptographic hash; it is as strong as the hash std's own
//! `HashMap` would use if it were not SipHash. Iteration order now differs
//! from run to run, so nothing the crate outputs may depend on it (training
//! sorts its ties; a test trains twice and compares).

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};

/// An odd constant with well-spread bits (the fractional part of π).
const MULTIPLIER: u64 = 0x243f_6a88_85a3_08d3;

// ANCHOR: fold
/// The 128-bit product of `a` and `b`, its high half xored onto its low half.
#[inline]
fn fold(a: u64, b: u64) -> u64 {
    let full = (a as u128) * (b as u128);
    (full as u64) ^ ((full >> 64) as u64)
}
// ANCHOR_END: fold

/// The hasher: one folded multiply per 8-byte word of the key.
#[derive(Debug, Clone, Copy)]
pub struct FoldHasher {
    hash: u64,
}

impl FoldHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.hash = fold(self.hash ^ word, MULTIPLIER);
    }
}

impl Hasher for FoldHasher {
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
        // one more round, so a one-word key is mixed twice
        fold(self.hash, MULTIPLIER ^ 0x9e37_79b9_7f4a_7c15)
    }
}

/// Builds [`FoldHasher`]s that all start from one random seed.
#[derive(Debug, Clone, Copy)]
pub struct RandomSeed {
    seed: u64,
}

impl RandomSeed {
    /// A fixed seed, for tests that need the same hashes every time.
    pub fn with_seed(seed: u64) -> Self {
        RandomSeed { seed }
    }
}

impl Default for RandomSeed {
    /// A seed drawn from std's `RandomState` (random keys per process,
    /// and a different state for every call).
    fn default() -> Self {
        RandomSeed {
            seed: RandomState::new().build_hasher().finish(),
        }
    }
}

impl BuildHasher for RandomSeed {
    type Hasher = FoldHasher;
    #[inline]
    fn build_hasher(&self) -> FoldHasher {
        FoldHasher { hash: self.seed }
    }
}

/// A `HashMap` using [`FoldHasher`] with a random seed.
pub type FastHashMap<K, V> = HashMap<K, V, RandomSeed>;

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

    fn hash_with<T: Hash + ?Sized>(seed: u64, x: &T) -> u64 {
        RandomSeed::with_seed(seed).hash_one(x)
    }

    #[test]
    fn deterministic_for_a_seed_and_sensitive_to_every_byte() {
        let h = |x: &[u8]| hash_with(7, x);
        assert_eq!(h(b"hello"), h(b"hello"));
        assert_ne!(h(b"hello"), h(b"hellp"));
        assert_ne!(h(b"a\0"), h(b"a"));
        let long = b"a sentence longer than eight bytes";
        let mut other = *long;
        other[20] ^= 1;
        assert_ne!(h(long), h(&other));
        // another seed, other hashes
        assert_ne!(
            hash_with(7, b"hello".as_slice()),
            hash_with(8, b"hello".as_slice())
        );
        assert_ne!(RandomSeed::default().seed, RandomSeed::default().seed);
    }

    /// The keys that defeated FxHash: 8-byte pieces sharing their first 4
    /// bytes. Their low 12 bits (the bucket of a 4096-bucket map) must be
    /// spread: no bucket may hold more than a few, as for random hashes.
    #[test]
    fn shared_prefixes_spread_over_the_low_bits() {
        let mut rng = crate::testing::Rng::new(1);
        for seed in [0, 1, 0xdead_beef] {
            let mut buckets = vec![0u32; 4096];
            for _ in 0..4096 {
                let mut key = *b" zzq    ";
                for b in &mut key[4..] {
                    *b = b'a' + rng.below(26) as u8;
                }
                buckets[(hash_with(seed, key.as_slice()) & 4095) as usize] += 1;
            }
            // 4096 keys in 4096 buckets: a random hash fills about 63 % of
            // them and puts at most about 8 in one
            let used = buckets.iter().filter(|&&n| n > 0).count();
            let max = *buckets.iter().max().unwrap();
            assert!(
                used > 2400 && max <= 10,
                "seed {seed}: {used} used, max {max}"
            );
        }
        // pairs sharing their right ID, the same trap for packed u64 keys
        let mut buckets = vec![0u32; 4096];
        for left in 0..4096 {
            buckets[(hash_with(3, &pack(left, 300)) & 4095) as usize] += 1;
        }
        assert!(*buckets.iter().max().unwrap() <= 10);
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
        let mut m: FastHashMap<u64, u32> = FastHashMap::default();
        for i in 0..1000u32 {
            m.insert(pack(i, i + 1), i);
        }
        assert_eq!(m.len(), 1000);
        assert_eq!(m[&pack(500, 501)], 500);
    }
}
