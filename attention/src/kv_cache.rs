//! The KV cache: incremental decoding without recomputing the past.
//!
//! A causal decoder generating token `t` needs the keys and values of tokens
//! `0..=t`. Those of `0..t` do not change when `t` arrives (each depends only
//! on its own token and, in deeper layers, on earlier tokens), so they are
//! kept in a [`KvCache`] and each step computes `q, k, v` for the new tokens
//! only: `O(T)` work per step instead of re-running the whole prefix.
//!
//! Feeding tokens one at a time through `forward_incremental` gives the same
//! outputs as one causal forward over the whole sequence (tested below). The
//! new queries sit at the *end* of the cached keys, which is exactly how
//! [`Mask::Causal`] aligns `T_q < T_kv`.
//!
//! Incremental decoding is for inference: it keeps no backward caches. It
//! applies the causal mask only, with no key padding: every sequence of a
//! batch must have the same prompt length (captions all start from one start
//! token); the outputs of sequences that have already finished are ignored.

use ndarray::{Array3, Array4, ArrayRef3, ArrayRef4, ArrayView4, Axis, s};

use crate::attention::attention_forward;
use crate::block::{Block, CrossBlock};
use crate::cross_attention::MemoryKv;
use crate::heads::{merge_heads, split_heads};
use crate::mask::Mask;
use crate::multi_head::MultiHeadAttention;
use embedding::Layer;

// ANCHOR: kv_cache
/// The keys and values of every token seen so far, for one attention layer.
#[derive(Debug, Clone, PartialEq)]
pub struct KvCache {
    k: Array4<f32>, // [B, H, capacity, D]; the first `len` positions are filled
    v: Array4<f32>, // [B, H, capacity, D]
    len: usize,
}
// ANCHOR_END: kv_cache

impl KvCache {
    /// An empty cache with room for `capacity` tokens.
    pub fn new(batch: usize, n_head: usize, head_dim: usize, capacity: usize) -> Self {
        KvCache {
            k: Array4::zeros((batch, n_head, capacity, head_dim)),
            v: Array4::zeros((batch, n_head, capacity, head_dim)),
            len: 0,
        }
    }

    /// Tokens cached so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True before the first token.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The most tokens the cache can hold.
    pub fn capacity(&self) -> usize {
        self.k.dim().2
    }

    /// Forgets every token (keeps the memory) to decode a new batch.
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Appends the keys and values of `T_new` tokens.
    ///
    /// # Shapes
    /// - `k, v: [B, H, T_new, D]`
    ///
    /// # Panics
    /// If the shapes differ from the cache's, or the cache would overflow.
    #[track_caller]
    pub fn append(&mut self, k: &ArrayRef4<f32>, v: &ArrayRef4<f32>) {
        let (batch, n_head, capacity, head_dim) = self.k.dim();
        let (kb, kh, t_new, kd) = k.dim();
        assert!(
            (kb, kh, kd) == (batch, n_head, head_dim) && v.dim() == k.dim(),
            "kv cache: k is {:?}, v is {:?}, cache is {:?}",
            k.dim(),
            v.dim(),
            self.k.dim()
        );
        assert!(
            self.len + t_new <= capacity,
            "kv cache: {} cached + {t_new} new tokens exceed the capacity {capacity}",
            self.len
        );
        let range = s![.., .., self.len..self.len + t_new, ..];
        self.k.slice_mut(range).assign(k);
        self.v.slice_mut(range).assign(v);
        self.len += t_new;
    }

    /// The cached keys: `[B, H, len, D]`.
    pub fn keys(&self) -> ArrayView4<'_, f32> {
        self.k.slice(s![.., .., ..self.len, ..])
    }

    /// The cached values: `[B, H, len, D]`.
    pub fn values(&self) -> ArrayView4<'_, f32> {
        self.v.slice(s![.., .., ..self.len, ..])
    }

    /// A cache whose sequence `i` is this cache's sequence `rows[i]`, with the
    /// same capacity: rows may repeat or be dropped (beam search keeps its
    /// best hypotheses, a sampler drops finished ones).
    ///
    /// # Panics
    /// If a row index is out of range.
    #[track_caller]
    pub fn select(&self, rows: &[usize]) -> KvCache {
        let (_, n_head, capacity, head_dim) = self.k.dim();
        let mut fresh = KvCache::new(rows.len(), n_head, head_dim, capacity);
        fresh.append(
            &self.keys().select(Axis(0), rows),
            &self.values().select(Axis(0), rows),
        );
        fresh
    }
}

impl MultiHeadAttention {
    /// An empty [`KvCache`] sized for this layer.
    pub fn kv_cache(&self, batch: usize, capacity: usize) -> KvCache {
        KvCache::new(batch, self.n_head, self.head_dim(), capacity)
    }

    // ANCHOR: forward_incremental
    /// Causal self-attention of `T_new` new tokens against everything cached;
    /// their keys and values are appended to `cache` first.
    ///
    /// # Shapes
    /// - `x: [B, T_new, C]` → `out: [B, T_new, C]`
    ///
    /// # Panics
    /// If `x` does not match the layer or the cache, or the cache overflows.
    #[track_caller]
    pub fn forward_incremental(&self, x: &ArrayRef3<f32>, cache: &mut KvCache) -> Array3<f32> {
        self.forward_incremental_masked(x, cache, &Mask::Causal)
    }
    // ANCHOR_END: forward_incremental

    /// [`MultiHeadAttention::forward_incremental`] with another mask over the
    /// `len` cached and new keys, the new queries placed at the end: a prompt
    /// fed in one go under [`Mask::PrefixLm`] sees itself both ways.
    ///
    /// # Shapes
    /// - `x: [B, T_new, C]` → `out: [B, T_new, C]`
    ///
    /// # Panics
    /// As [`MultiHeadAttention::forward_incremental`], or if a mask's lengths
    /// are not `B`.
    #[track_caller]
    pub fn forward_incremental_masked(
        &self,
        x: &ArrayRef3<f32>,
        cache: &mut KvCache,
        mask: &Mask,
    ) -> Array3<f32> {
        let (qkv, _) = self.qkv.forward(x); // [B, T_new, 3C]
        let mut heads = split_heads(&qkv, 3, self.n_head).into_iter(); // 3 x [B, H, T_new, D]
        let (q, k, v) = (
            heads.next().unwrap(),
            heads.next().unwrap(),
            heads.next().unwrap(),
        ); // three parts by construction
        cache.append(&k, &v); // now [B, H, len, D]
        // the new queries are the last T_new of len positions: masks align them at the end
        let (y, _) = attention_forward(&q, &cache.keys(), &cache.values(), mask);
        self.proj.forward(&merge_heads(&[&y])).0 // [B, T_new, C]
    }
}

impl Block {
    /// An empty [`KvCache`] sized for this block.
    pub fn kv_cache(&self, batch: usize, capacity: usize) -> KvCache {
        self.attn.kv_cache(batch, capacity)
    }

    /// The causal block on `T_new` new tokens, reusing the cached past.
    ///
    /// # Shapes
    /// - `x: [B, T_new, C]` → `out: [B, T_new, C]`
    ///
    /// # Panics
    /// As [`MultiHeadAttention::forward_incremental`].
    #[track_caller]
    pub fn forward_incremental(&self, x: &ArrayRef3<f32>, cache: &mut KvCache) -> Array3<f32> {
        self.forward_incremental_masked(x, cache, &Mask::Causal)
    }

    /// The block on `T_new` new tokens under another self-attention mask
    /// (see [`MultiHeadAttention::forward_incremental_masked`]).
    ///
    /// # Shapes
    /// - `x: [B, T_new, C]` → `out: [B, T_new, C]`
    #[track_caller]
    pub fn forward_incremental_masked(
        &self,
        x: &ArrayRef3<f32>,
        cache: &mut KvCache,
        mask: &Mask,
    ) -> Array3<f32> {
        let x = self
            .attn
            .forward_incremental_masked(&self.ln_1.forward(x).0, cache, mask)
            + x;
        self.mlp.forward(&self.ln_2.forward(&x).0).0 + &x
    }
}

impl CrossBlock {
    /// An empty [`KvCache`] sized for this block's self-attention.
    pub fn kv_cache(&self, batch: usize, capacity: usize) -> KvCache {
        self.attn.kv_cache(batch, capacity)
    }

    /// The decoder block on `T_new` new tokens: causal self-attention over
    /// the cached past, cross-attention to precomputed memory keys and values
    /// ([`crate::CrossAttention::memory_kv`], computed once per memory).
    ///
    /// # Shapes
    /// - `x: [B, T_new, C]`, `memory.k, memory.v: [B, H, T_mem, D]` → `out: [B, T_new, C]`
    ///
    /// # Panics
    /// As [`MultiHeadAttention::forward_incremental`].
    #[track_caller]
    pub fn forward_incremental(
        &self,
        x: &ArrayRef3<f32>,
        memory: &MemoryKv,
        cache: &mut KvCache,
    ) -> Array3<f32> {
        let x = self
            .attn
            .forward_incremental(&self.ln_1.forward(x).0, cache)
            + x;
        let h = self.ln_cross.forward(&x).0;
        let x = self
            .cross_attn
            .forward_with_memory_kv(&h, memory, &Mask::None)
            + &x;
        self.mlp.forward(&self.ln_2.forward(&x).0).0 + &x
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::BlockConfig;
    use embedding::init;
    use embedding::testing::assert_allclose;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    const TINY: BlockConfig = BlockConfig {
        width: 8,
        n_head: 2,
        mlp_hidden: 16,
    };

    #[test]
    fn one_token_at_a_time_equals_the_causal_forward() {
        let mut rng = StdRng::seed_from_u64(0);
        let block = TINY.init(&mut rng);
        let x: Array3<f32> = init::normal((2, 5, 8), 1.0, &mut rng);
        let (want, _) = block.forward_masked(&x, &Mask::Causal);
        let mut cache = block.kv_cache(2, 5);
        for t in 0..5 {
            let got = block.forward_incremental(&x.slice(s![.., t..t + 1, ..]), &mut cache);
            let want_t = want.slice(s![.., t..t + 1, ..]);
            assert_allclose(&format!("token {t}"), &got, &want_t, 1e-5, 1e-5);
        }
        assert_eq!(cache.len(), 5);
    }

    #[test]
    fn cross_block_incremental_equals_full_forward() {
        let mut rng = StdRng::seed_from_u64(1);
        let block = TINY.init_cross(6, &mut rng);
        let x: Array3<f32> = init::normal((2, 4, 8), 1.0, &mut rng);
        let memory: Array3<f32> = init::normal((2, 3, 6), 1.0, &mut rng);
        let (want, _) = block.forward(&x, &memory, &Mask::Causal, &Mask::None);
        let memory_kv = block.cross_attn.memory_kv(&memory);
        let mut cache = block.kv_cache(2, 4);
        // a prompt of two tokens, then one at a time
        let got = block.forward_incremental(&x.slice(s![.., ..2, ..]), &memory_kv, &mut cache);
        assert_allclose("prompt", &got, &want.slice(s![.., ..2, ..]), 1e-5, 1e-5);
        for t in 2..4 {
            let got =
                block.forward_incremental(&x.slice(s![.., t..t + 1, ..]), &memory_kv, &mut cache);
            assert_allclose(
                &format!("token {t}"),
                &got,
                &want.slice(s![.., t..t + 1, ..]),
                1e-5,
                1e-5,
            );
        }
    }

    #[test]
    fn a_prefix_lm_prompt_then_one_token_at_a_time_equals_the_full_forward() {
        let mut rng = StdRng::seed_from_u64(2);
        let block = TINY.init(&mut rng);
        let x: Array3<f32> = init::normal((2, 6, 8), 1.0, &mut rng);
        // the first 3 (row 0) or 2 (row 1) positions see each other both ways
        let mask = Mask::PrefixLm(vec![3, 2]);
        let (want, _) = block.forward_masked(&x, &mask);
        let mut cache = block.kv_cache(2, 6);
        // the prompt: the first 3 positions in one go, under the same mask
        let got = block.forward_incremental_masked(&x.slice(s![.., ..3, ..]), &mut cache, &mask);
        assert_allclose("prompt", &got, &want.slice(s![.., ..3, ..]), 1e-5, 1e-5);
        for t in 3..6 {
            let got = block.forward_incremental(&x.slice(s![.., t..t + 1, ..]), &mut cache);
            let want_t = want.slice(s![.., t..t + 1, ..]);
            assert_allclose(&format!("token {t}"), &got, &want_t, 1e-5, 1e-5);
        }
    }

    #[test]
    #[should_panic(expected = "kv cache: 2 cached + 1 new tokens exceed the capacity 2")]
    fn overflow_names_the_sizes() {
        let mut cache = KvCache::new(1, 1, 2, 2);
        let kv = Array4::<f32>::zeros((1, 1, 1, 2));
        for _ in 0..3 {
            cache.append(&kv, &kv);
        }
    }
}
