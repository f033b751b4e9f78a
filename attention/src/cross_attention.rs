//! Multi-head cross-attention: queries from one sequence, keys and values
//! from another (the *memory*).
//!
//! This is the bridge between modalities: in the caption decoder, text
//! tokens (`x`, `[B, T, C]`) ask questions, and image tokens (`memory`,
//! `[B, T_mem, C_mem]`) answer them.
//!
//! - forward: `q = x W_qᵀ + b_q`, `[k, v] = memory W_kvᵀ + b_kv`, split into
//!   heads, `y = attention(q, k, v, mask)`, merge, `out = y W_projᵀ + b_proj`;
//! - backward: as for self-attention, except that the gradients of `k` and
//!   `v` flow to `memory`, and the gradient of `q` to `x`: the backward pass
//!   returns both.
//!
//! `memory` may be wider or narrower than `x` (`C_mem ≠ C`): the `kv`
//! projection maps it into the decoder's width.

use embedding::{Layer, Linear, LinearCache, LinearConfig, Params, prefixed};
use ndarray::{Array3, Array4, ArrayRef3, ArrayViewD, ArrayViewMutD};
use rand::Rng;

use crate::attention::{attention_backward, attention_forward};
use crate::heads::{merge_heads, split_heads};
use crate::mask::Mask;

// ANCHOR: struct
/// Multi-head cross-attention from `x` to `memory`.
#[derive(Debug, Clone, PartialEq)]
pub struct CrossAttention {
    /// Query projection of `x`: `[C, C]`.
    pub q: Linear,
    /// Fused key/value projection of `memory`: `[2C, C_mem]`.
    pub kv: Linear,
    /// Output projection: `[C, C]`.
    pub proj: Linear,
    /// Number of heads `H`.
    pub n_head: usize,
}

/// What [`CrossAttention`]'s backward pass needs, and the attention weights.
#[derive(Debug, Clone)]
pub struct CrossAttentionCache {
    q_in: LinearCache,  // x: [B*T, C]
    kv_in: LinearCache, // memory: [B*T_mem, C_mem]
    q: Array4<f32>,     // [B, H, T, D]
    k: Array4<f32>,     // [B, H, T_mem, D]
    v: Array4<f32>,     // [B, H, T_mem, D]
    probs: Array4<f32>, // [B, H, T, T_mem]
    proj: LinearCache,  // merged heads: [B*T, C]
}
// ANCHOR_END: struct

impl CrossAttentionCache {
    /// The attention weights, queries over memory tokens: `[B, H, T, T_mem]`.
    pub fn weights(&self) -> &Array4<f32> {
        &self.probs
    }
}

/// The memory's keys and values, split into heads: computed once per
/// memory and reused at every step of incremental decoding.
#[derive(Debug, Clone)]
pub struct MemoryKv {
    /// `[B, H, T_mem, D]`
    pub k: Array4<f32>,
    /// `[B, H, T_mem, D]`
    pub v: Array4<f32>,
}

/// The sizes of a fresh [`CrossAttention`].
#[derive(Debug, Clone, PartialEq)]
pub struct CrossAttentionConfig {
    /// Width `C` of the queries' sequence.
    pub width: usize,
    /// Width `C_mem` of the memory.
    pub memory_width: usize,
    /// Number of heads `H` (`C = H·D`).
    pub n_head: usize,
}

impl CrossAttentionConfig {
    /// PyTorch's default Linear initialisation, with biases.
    ///
    /// # Panics
    /// If `width` is not divisible by `n_head`.
    #[track_caller]
    pub fn init(&self, rng: &mut impl Rng) -> CrossAttention {
        let c = self.width;
        let linear = |c_in, c_out, rng: &mut _| {
            LinearConfig {
                c_in,
                c_out,
                bias: true,
            }
            .init(rng)
        };
        let q = linear(c, c, rng);
        let kv = linear(self.memory_width, 2 * c, rng);
        let proj = linear(c, c, rng);
        CrossAttention::new(q, kv, proj, self.n_head)
    }
}

impl CrossAttention {
    /// A module from given projections.
    ///
    /// # Panics
    /// If `q` is not `[C, C]`, `kv` not `[2C, _]`, `proj` not `[C, C]`, or `C`
    /// is not divisible by `n_head`.
    #[track_caller]
    pub fn new(q: Linear, kv: Linear, proj: Linear, n_head: usize) -> Self {
        let c = proj.c_out();
        assert!(
            q.weight.dim() == (c, c) && kv.c_out() == 2 * c && proj.weight.dim() == (c, c),
            "cross-attention: q is {:?}, kv is {:?}, proj is {:?}",
            q.weight.dim(),
            kv.weight.dim(),
            proj.weight.dim()
        );
        assert!(
            n_head > 0 && c.is_multiple_of(n_head),
            "cross-attention: width {c} is not divisible by {n_head} heads"
        );
        CrossAttention {
            q,
            kv,
            proj,
            n_head,
        }
    }

    /// Width `C`.
    pub fn width(&self) -> usize {
        self.proj.c_out()
    }

    /// The memory's keys and values for incremental decoding.
    ///
    /// # Shapes
    /// - `memory: [B, T_mem, C_mem]` → `k, v: [B, H, T_mem, D]`
    #[track_caller]
    pub fn memory_kv(&self, memory: &ArrayRef3<f32>) -> MemoryKv {
        let (kv, _) = self.kv.forward(memory); // [B, T_mem, 2C]
        let mut heads = split_heads(&kv, 2, self.n_head).into_iter();
        let (k, v) = (heads.next().unwrap(), heads.next().unwrap()); // two parts by construction
        MemoryKv { k, v }
    }

    /// Inference-only forward from precomputed memory keys and values.
    ///
    /// # Shapes
    /// - `x: [B, T, C]`, `memory.k, memory.v: [B, H, T_mem, D]` → `out: [B, T, C]`
    #[track_caller]
    pub fn forward_with_memory_kv(
        &self,
        x: &ArrayRef3<f32>,
        memory: &MemoryKv,
        mask: &Mask,
    ) -> Array3<f32> {
        let (q, _) = self.q.forward(x); // [B, T, C]
        let q = split_heads(&q, 1, self.n_head).remove(0); // [B, H, T, D]
        let (y, _) = attention_forward(&q, &memory.k, &memory.v, mask);
        self.proj.forward(&merge_heads(&[&y])).0
    }

    // ANCHOR: forward
    /// # Shapes
    /// - `x: [B, T, C]`, `memory: [B, T_mem, C_mem]` → `out: [B, T, C]`;
    ///   the cache holds the weights `[B, H, T, T_mem]`.
    ///
    /// # Panics
    /// If the widths or batch sizes disagree, or a padding mask does not have `B` lengths.
    #[track_caller]
    pub fn forward(
        &self,
        x: &ArrayRef3<f32>,
        memory: &ArrayRef3<f32>,
        mask: &Mask,
    ) -> (Array3<f32>, CrossAttentionCache) {
        let (q, q_in) = self.q.forward(x); // [B, T, C]
        let (kv, kv_in) = self.kv.forward(memory); // [B, T_mem, 2C]
        let q = split_heads(&q, 1, self.n_head).remove(0); // [B, H, T, D]
        let mut heads = split_heads(&kv, 2, self.n_head).into_iter(); // 2 x [B, H, T_mem, D]
        let (k, v) = (heads.next().unwrap(), heads.next().unwrap()); // two parts by construction
        let (y, probs) = attention_forward(&q, &k, &v, mask); // [B, H, T, D], [B, H, T, T_mem]
        let y = merge_heads(&[&y]); // [B, T, C]
        let (out, proj) = self.proj.forward(&y); // [B, T, C]
        let cache = CrossAttentionCache {
            q_in,
            kv_in,
            q,
            k,
            v,
            probs,
            proj,
        };
        (out, cache)
    }
    // ANCHOR_END: forward

    // ANCHOR: backward
    /// Returns `(dx, dmemory)`; parameter gradients are added into `grads`.
    ///
    /// # Shapes
    /// - `dout: [B, T, C]` → `dx: [B, T, C]`, `dmemory: [B, T_mem, C_mem]`
    pub fn backward(
        &self,
        dout: &ArrayRef3<f32>,
        cache: &CrossAttentionCache,
        grads: &mut CrossAttention,
    ) -> (Array3<f32>, Array3<f32>) {
        let dy = self.proj.backward(dout, &cache.proj, &mut grads.proj); // [B, T, C]
        let dy = split_heads(&dy, 1, self.n_head).remove(0); // [B, H, T, D]
        let d = attention_backward(&dy, &cache.q, &cache.k, &cache.v, &cache.probs);
        let dq = merge_heads(&[&d.dq]); // [B, T, C]
        let dkv = merge_heads(&[&d.dk, &d.dv]); // [B, T_mem, 2C]
        let dx = self.q.backward(&dq, &cache.q_in, &mut grads.q); // the queries came from x
        let dmemory = self.kv.backward(&dkv, &cache.kv_in, &mut grads.kv); // keys, values from memory
        (dx, dmemory)
    }
    // ANCHOR_END: backward
}

impl Params for CrossAttention {
    fn params(&self) -> Vec<(String, ArrayViewD<'_, f32>)> {
        let mut list: Vec<_> = prefixed("q", self.q.params()).collect();
        list.extend(prefixed("kv", self.kv.params()));
        list.extend(prefixed("proj", self.proj.params()));
        list
    }

    fn params_mut(&mut self) -> Vec<(String, ArrayViewMutD<'_, f32>)> {
        let mut list: Vec<_> = prefixed("q", self.q.params_mut()).collect();
        list.extend(prefixed("kv", self.kv.params_mut()));
        list.extend(prefixed("proj", self.proj.params_mut()));
        list
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use embedding::init;
    use embedding::testing::{WithInputs, assert_allclose, fakeloss};
    use ndarray::Ix3;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn cross_attention_gradcheck_x_memory_and_params() {
        for (seed, mask) in [(0, Mask::None), (1, Mask::KeyPadding(vec![2, 5]))] {
            let mut rng = StdRng::seed_from_u64(seed);
            let cross = CrossAttentionConfig {
                width: 4,
                memory_width: 6,
                n_head: 2,
            }
            .init(&mut rng);
            let x: Array3<f32> = init::normal((2, 3, 4), 1.0, &mut rng);
            let memory: Array3<f32> = init::normal((2, 5, 6), 1.0, &mut rng);
            let (out, cache) = cross.forward(&x, &memory, &mask);
            let dout: Array3<f32> = init::normal(out.dim(), 1.0, &mut rng);
            let mut grads = cross.zeros_like();
            let (dx, dmemory) = cross.backward(&dout, &cache, &mut grads);
            let analytic = WithInputs::new(grads, vec![("x", dx), ("memory", dmemory)]);
            let mut state = WithInputs::new(cross, vec![("x", x), ("memory", memory)]);
            crate::gradcheck()
                .run(&mut state, &analytic, |s| {
                    let (x, m) = (s.input::<Ix3>(0), s.input::<Ix3>(1));
                    fakeloss(&s.module.forward(&x, &m, &mask).0, &dout)
                })
                .into_result()
                .unwrap_or_else(|r| panic!("{mask:?}: {r}"));
        }
    }

    #[test]
    fn precomputed_memory_kv_gives_the_same_output() {
        let mut rng = StdRng::seed_from_u64(2);
        let cross = CrossAttentionConfig {
            width: 8,
            memory_width: 4,
            n_head: 2,
        }
        .init(&mut rng);
        let x: Array3<f32> = init::normal((2, 3, 8), 1.0, &mut rng);
        let memory: Array3<f32> = init::normal((2, 7, 4), 1.0, &mut rng);
        let (want, cache) = cross.forward(&x, &memory, &Mask::None);
        assert_eq!(cache.weights().dim(), (2, 2, 3, 7));
        let got = cross.forward_with_memory_kv(&x, &cross.memory_kv(&memory), &Mask::None);
        assert_allclose("out", &got, &want, 1e-6, 1e-6);
    }
}
