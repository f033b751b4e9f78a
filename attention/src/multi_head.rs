//! Multi-head self-attention: a fused QKV projection, `H` independent
//! attention heads, and an output projection.
//!
//! - forward: `[q, k, v] = x W_qkvᵀ + b_qkv` (`[B, T, 3C]`), split into heads
//!   (`[B, H, T, D]`), `y = attention(q, k, v, mask)`, merge the heads
//!   (`[B, T, C]`), `out = y W_projᵀ + b_proj`;
//! - backward: the same steps in reverse, each one a call to the backward of
//!   its piece.
//!
//! Each head works in its own `D = C/H`-dimensional subspace, so different
//! heads can attend to different things at the same cost as one wide head.
//! Names follow GPT-2/nanoGPT: `qkv.weight` `[3C, C]`, `proj.weight` `[C, C]`.

use embedding::{Layer, Linear, LinearCache, LinearConfig, Params, prefixed};
use ndarray::{Array3, Array4, ArrayRef3, ArrayViewD, ArrayViewMutD};
use rand::Rng;

use crate::attention::{attention_backward, attention_forward};
use crate::heads::{merge_heads, split_heads};
use crate::mask::Mask;

// ANCHOR: struct
/// Multi-head self-attention over one sequence.
#[derive(Debug, Clone, PartialEq)]
pub struct MultiHeadAttention {
    /// The fused query/key/value projection: `[3C, C]`.
    pub qkv: Linear,
    /// The output projection: `[C, C]`.
    pub proj: Linear,
    /// Number of heads `H`; `C` must be divisible by it.
    pub n_head: usize,
}

/// What [`MultiHeadAttention`]'s backward pass needs, and the attention
/// weights for plotting ([`MultiHeadAttentionCache::weights`]).
#[derive(Debug, Clone)]
pub struct MultiHeadAttentionCache {
    qkv: LinearCache,   // x: [B*T, C]
    q: Array4<f32>,     // [B, H, T, D]
    k: Array4<f32>,     // [B, H, T, D]
    v: Array4<f32>,     // [B, H, T, D]
    probs: Array4<f32>, // [B, H, T, T]
    proj: LinearCache,  // merged heads: [B*T, C]
}
// ANCHOR_END: struct

impl MultiHeadAttentionCache {
    /// The attention weights of the forward pass: `[B, H, T_q, T_kv]`.
    pub fn weights(&self) -> &Array4<f32> {
        &self.probs
    }
}

/// The sizes of a fresh [`MultiHeadAttention`].
#[derive(Debug, Clone, PartialEq)]
pub struct MultiHeadAttentionConfig {
    /// Width `C` of the token vectors.
    pub width: usize,
    /// Number of heads `H` (`C = H·D`).
    pub n_head: usize,
}

impl MultiHeadAttentionConfig {
    /// PyTorch's default Linear initialisation, with biases (GPT-2, ViT).
    ///
    /// # Panics
    /// If `width` is not divisible by `n_head`.
    #[track_caller]
    pub fn init(&self, rng: &mut impl Rng) -> MultiHeadAttention {
        let c = self.width;
        let qkv = LinearConfig {
            c_in: c,
            c_out: 3 * c,
            bias: true,
        }
        .init(rng);
        let proj = LinearConfig {
            c_in: c,
            c_out: c,
            bias: true,
        }
        .init(rng);
        MultiHeadAttention::new(qkv, proj, self.n_head)
    }
}

impl MultiHeadAttention {
    /// A module from given projections.
    ///
    /// # Panics
    /// If `qkv` is not `[3C, C]`, `proj` not `[C, C]`, or `C` not divisible by `n_head`.
    #[track_caller]
    pub fn new(qkv: Linear, proj: Linear, n_head: usize) -> Self {
        let c = proj.c_out();
        assert!(
            qkv.weight.dim() == (3 * c, c) && proj.weight.dim() == (c, c),
            "multi-head attention: qkv is {:?}, proj is {:?}",
            qkv.weight.dim(),
            proj.weight.dim()
        );
        assert!(
            n_head > 0 && c.is_multiple_of(n_head),
            "multi-head attention: width {c} is not divisible by {n_head} heads"
        );
        MultiHeadAttention { qkv, proj, n_head }
    }

    /// Width `C`.
    pub fn width(&self) -> usize {
        self.proj.c_out()
    }

    /// Head dimension `D = C/H`.
    pub fn head_dim(&self) -> usize {
        self.width() / self.n_head
    }

    // ANCHOR: forward
    /// Self-attention of `x` with a mask.
    ///
    /// # Shapes
    /// - `x: [B, T, C]` → `out: [B, T, C]`; the cache holds the weights `[B, H, T, T]`.
    ///
    /// # Panics
    /// If `x`'s last axis is not `C`, or a padding mask does not have `B` lengths.
    #[track_caller]
    pub fn forward_masked(
        &self,
        x: &ArrayRef3<f32>,
        mask: &Mask,
    ) -> (Array3<f32>, MultiHeadAttentionCache) {
        let (qkv_out, qkv) = self.qkv.forward(x); // [B, T, 3C]
        let mut heads = split_heads(&qkv_out, 3, self.n_head).into_iter(); // 3 x [B, H, T, D]
        let (q, k, v) = (
            heads.next().unwrap(),
            heads.next().unwrap(),
            heads.next().unwrap(),
        ); // three parts by construction
        let (y, probs) = attention_forward(&q, &k, &v, mask); // [B, H, T, D], [B, H, T, T]
        let y = merge_heads(&[&y]); // [B, T, C]
        let (out, proj) = self.proj.forward(&y); // [B, T, C]
        let cache = MultiHeadAttentionCache {
            qkv,
            q,
            k,
            v,
            probs,
            proj,
        };
        (out, cache)
    }
    // ANCHOR_END: forward
}

impl Layer for MultiHeadAttention {
    type Cache = MultiHeadAttentionCache;

    /// Unmasked self-attention (a ViT's); see [`MultiHeadAttention::forward_masked`].
    ///
    /// # Shapes
    /// - `x: [B, T, C]` → `out: [B, T, C]`
    #[track_caller]
    fn forward(&self, x: &ArrayRef3<f32>) -> (Array3<f32>, MultiHeadAttentionCache) {
        self.forward_masked(x, &Mask::None)
    }

    // ANCHOR: backward
    /// Backward of either forward; the mask is already in the saved weights.
    ///
    /// # Shapes
    /// - `dout: [B, T, C]` → `dx: [B, T, C]`
    fn backward(
        &self,
        dout: &ArrayRef3<f32>,
        cache: &MultiHeadAttentionCache,
        grads: &mut MultiHeadAttention,
    ) -> Array3<f32> {
        let dy = self.proj.backward(dout, &cache.proj, &mut grads.proj); // [B, T, C]
        let dy = split_heads(&dy, 1, self.n_head).remove(0); // un-merge: [B, H, T, D]
        let d = attention_backward(&dy, &cache.q, &cache.k, &cache.v, &cache.probs);
        let dqkv = merge_heads(&[&d.dq, &d.dk, &d.dv]); // un-split: [B, T, 3C]
        self.qkv.backward(&dqkv, &cache.qkv, &mut grads.qkv) // [B, T, C]
    }
    // ANCHOR_END: backward
}

impl MultiHeadAttention {
    /// The input gradient alone, for a frozen layer: attention's backward
    /// with both Linears' `backward_input` (no `dW`, no `db`).
    ///
    /// # Shapes
    /// - `dout: [B, T, C]` → `dx: [B, T, C]`
    pub fn backward_input(
        &self,
        dout: &ArrayRef3<f32>,
        cache: &MultiHeadAttentionCache,
    ) -> Array3<f32> {
        let dy = self.proj.backward_input(dout); // [B, T, C]
        let dy = split_heads(&dy, 1, self.n_head).remove(0); // un-merge: [B, H, T, D]
        let d = attention_backward(&dy, &cache.q, &cache.k, &cache.v, &cache.probs);
        let dqkv = merge_heads(&[&d.dq, &d.dk, &d.dv]); // un-split: [B, T, 3C]
        self.qkv.backward_input(&dqkv) // [B, T, C]
    }
}

impl Params for MultiHeadAttention {
    fn params(&self) -> Vec<(String, ArrayViewD<'_, f32>)> {
        let mut list: Vec<_> = prefixed("qkv", self.qkv.params()).collect();
        list.extend(prefixed("proj", self.proj.params()));
        list
    }

    fn params_mut(&mut self) -> Vec<(String, ArrayViewMutD<'_, f32>)> {
        let mut list: Vec<_> = prefixed("qkv", self.qkv.params_mut()).collect();
        list.extend(prefixed("proj", self.proj.params_mut()));
        list
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use embedding::init;
    use embedding::testing::{WithInputs, fakeloss, gradcheck_layer};
    use ndarray::Ix3;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn tiny(seed: u64) -> (MultiHeadAttention, Array3<f32>) {
        let mut rng = StdRng::seed_from_u64(seed);
        let mha = MultiHeadAttentionConfig {
            width: 4,
            n_head: 2,
        }
        .init(&mut rng);
        let x = init::normal((2, 3, 4), 1.0, &mut rng);
        (mha, x)
    }

    #[test]
    fn multi_head_gradcheck() {
        let (mha, x) = tiny(0);
        gradcheck_layer(&crate::gradcheck(), &mha, &x, 1).unwrap();
    }

    #[test]
    fn multi_head_masked_gradcheck() {
        for (seed, mask) in [
            (2, Mask::Causal),
            (3, Mask::KeyPadding(vec![2, 1])),
            (4, Mask::CausalKeyPadding(vec![3, 0])),
        ] {
            let (mha, x) = tiny(seed);
            let (out, cache) = mha.forward_masked(&x, &mask);
            let dout: Array3<f32> = init::normal(out.dim(), 1.0, &mut StdRng::seed_from_u64(seed));
            let mut grads = mha.zeros_like();
            let dx = mha.backward(&dout, &cache, &mut grads);
            let analytic = WithInputs::new(grads, vec![("x", dx)]);
            let mut state = WithInputs::new(mha, vec![("x", x)]);
            crate::gradcheck()
                .run(&mut state, &analytic, |s| {
                    fakeloss(&s.module.forward_masked(&s.input::<Ix3>(0), &mask).0, &dout)
                })
                .into_result()
                .unwrap_or_else(|r| panic!("{mask:?}: {r}"));
        }
    }

    #[test]
    fn weights_are_returned_and_rows_sum_to_one() {
        let (mha, x) = tiny(5);
        let (_, cache) = mha.forward_masked(&x, &Mask::Causal);
        let w = cache.weights();
        assert_eq!(w.dim(), (2, 2, 3, 3));
        assert_eq!(w[[0, 0, 0, 1]], 0.0); // the future is hidden
        for row in w.lanes(ndarray::Axis(3)) {
            assert!((row.sum() - 1.0).abs() < 1e-5);
        }
    }

    #[test]
    fn names_follow_pytorch() {
        let (mha, _) = tiny(6);
        let names: Vec<String> = mha.params().into_iter().map(|(n, _)| n).collect();
        assert_eq!(
            names,
            ["qkv.weight", "qkv.bias", "proj.weight", "proj.bias"]
        );
    }
}
