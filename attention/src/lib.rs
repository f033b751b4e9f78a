//! # attention: letting vectors talk
//!
//! Everything a transformer block is made of, each piece with a forward pass
//! and a hand-written backward pass:
//!
//! - [`softmax()`] / [`softmax_backward`]: numerically stable, over the last axis;
//!   a row of only `−∞` gives zeros, not NaN.
//! - [`Mask`]: `None`, `Causal`, `KeyPadding(lengths)`, `CausalKeyPadding(lengths)`;
//!   every mask lets each query see a prefix of the keys ([`Mask::visible_keys`]).
//!   **Fully masked rows give zero weights and zero output, never NaN.**
//! - [`attention_forward`] / [`attention_backward`]: the plain scaled
//!   dot-product attention `softmax(Q Kᵀ/√D + mask) V`, which materialises the
//!   `[T_q, T_kv]` scores (the teaching reference), and
//!   [`tiled_attention_forward`]: the online-softmax (FlashAttention) kernel
//!   that never does, tested equal to the plain one.
//! - [`MultiHeadAttention`] (`qkv: [3C, C]`, `proj: [C, C]`) and
//!   [`CrossAttention`] (`q: [C, C]`, `kv: [2C, C_mem]`, `proj: [C, C]`);
//!   their caches return the attention weights for plotting.
//! - [`LayerNorm`] (`weight`, `bias`), exact-erf [`gelu`] (PyTorch's default
//!   `nn.GELU()`), [`Mlp`] (`fc`, `proj`).
//! - [`Block`] (pre-LN: `x + attn(ln_1(x))`, `x + mlp(ln_2(x))`) and
//!   [`CrossBlock`] (adds `x + cross_attn(ln_cross(x), memory)` between them),
//!   both from a [`BlockConfig`] `{ width, n_head, mlp_hidden }`.
//! - [`KvCache`]: incremental decoding, one token at a time, equal to the
//!   full causal forward.
//!
//! ## Public API at a glance
//! ```text
//! LayerNorm::new(dim) | LayerNormConfig { dim, eps }.init()     : Layer + Params + Clone
//! BlockConfig { width, n_head, mlp_hidden }.init(&mut rng) -> Block   : Layer + Params + Clone
//!   Block::forward_masked(&self, x: [B,T,C], &Mask) -> (out, BlockCache)
//!   Layer::forward(x) = forward_masked(x, &Mask::None); Layer::backward(dout, &cache, &mut grads) -> dx
//!   BlockCache::attention_weights() -> &Array4 [B,H,T,T]
//! BlockConfig::init_cross(memory_width, &mut rng) -> CrossBlock        : Params + Clone
//!   CrossBlock::forward(&self, x, memory, mask, memory_mask) -> (out, CrossBlockCache)
//!   CrossBlock::backward(&self, dout, &cache, &mut grads) -> (dx, dmemory)
//! MultiHeadAttentionConfig { width, n_head }.init(rng); forward_masked(x, &Mask); Layer
//! CrossAttentionConfig { width, memory_width, n_head }.init(rng);
//!   forward(x, memory, &Mask) -> (out, cache); backward(..) -> (dx, dmemory);
//!   memory_kv(memory) -> MemoryKv; forward_with_memory_kv(x, &MemoryKv, &Mask)
//! attention_forward(q, k, v, &Mask) -> (out, probs)      q: [B,H,T_q,D], k, v: [B,H,T_kv,D]
//! attention_backward(dout, q, k, v, probs) -> AttentionGrads { dq, dk, dv }
//! tiled_attention_forward(q, k, v, &Mask, Tile { q, kv }) -> out
//! KvCache::new(batch, n_head, head_dim, capacity) | block.kv_cache(batch, capacity)
//!   Block::forward_incremental(&self, x_new: [B,T_new,C], &mut KvCache) -> [B,T_new,C]
//!   CrossBlock::forward_incremental(&self, x_new, &MemoryKv, &mut KvCache) -> [B,T_new,C]
//!   MultiHeadAttention::forward_incremental(&self, x_new, &mut KvCache)
//! ```
//!
//! Parameter names follow PyTorch (GPT-2/nanoGPT): `ln_1.weight`,
//! `attn.qkv.weight` `[3C, C]`, `attn.proj.weight`, `ln_cross.*`,
//! `cross_attn.q.weight` `[C, C]`, `cross_attn.kv.weight` `[2C, C_mem]`,
//! `cross_attn.proj.weight`, `ln_2.*`, `mlp.fc.weight` `[hidden, C]`,
//! `mlp.proj.weight` `[C, hidden]`.
//!
//! ```
//! use attention::{BlockConfig, Mask};
//! use embedding::Params;
//! use rand::SeedableRng;
//!
//! let mut rng = rand::rngs::StdRng::seed_from_u64(0);
//! let block = BlockConfig { width: 8, n_head: 2, mlp_hidden: 32 }.init(&mut rng);
//! let x = ndarray::Array3::<f32>::ones((2, 5, 8)); // [B, T, C]
//! let (out, cache) = block.forward_masked(&x, &Mask::Causal);
//! assert_eq!(out.dim(), (2, 5, 8));
//! let weights = cache.attention_weights(); // [B, H, T, T]
//! assert_eq!(weights.dim(), (2, 2, 5, 5));
//! assert_eq!(weights[[0, 0, 0, 1]], 0.0); // token 0 never sees token 1
//! assert_eq!(weights[[0, 0, 0, 0]], 1.0); // so it attends only to itself
//! // ln_1, ln_2: 2·(C + C); qkv: 3C·C + 3C; proj: C·C + C; fc: 32·C + 32; proj: C·32 + C
//! assert_eq!(block.num_params(), 32 + (192 + 24) + (64 + 8) + (256 + 32) + (256 + 8));
//! ```
//!
//! ## Shapes
//! `B` batch, `T` sequence length (tokens or patches), `C` width of the
//! residual stream, `H` heads, `D = C/H` head dimension, `T_q`/`T_kv` query
//! and key lengths, `T_mem`/`C_mem` length and width of a cross-attention
//! memory, `hidden` the MLP's width. Activations `[B, T, C]`, per-head
//! tensors `[B, H, T, D]`, attention weights `[B, H, T_q, T_kv]`.
//!
//! ## References
//! - Vaswani et al. 2017, "Attention Is All You Need".
//! - Ba et al. 2016, "Layer Normalization"; Xiong et al. 2020, "On Layer
//!   Normalization in the Transformer Architecture" (pre-LN).
//! - Hendrycks & Gimpel 2016, "Gaussian Error Linear Units".
//! - Dao et al. 2022, "FlashAttention"; Milakov & Gimelshein 2018, "Online
//!   normalizer calculation for softmax".
//! - llm.c `train_gpt2.c` (attention and layernorm forward/backward), nanoGPT `model.py`.

pub mod attention;
pub mod block;
pub mod cross_attention;
pub mod heads;
pub mod kv_cache;
pub mod layer_norm;
pub mod mask;
pub mod mlp;
pub mod multi_head;
pub mod softmax;
pub mod tiled;

pub use attention::{AttentionGrads, attention_backward, attention_forward};
pub use block::{Block, BlockCache, BlockConfig, CrossBlock, CrossBlockCache};
pub use cross_attention::{CrossAttention, CrossAttentionCache, CrossAttentionConfig, MemoryKv};
pub use heads::{merge_heads, split_heads};
pub use kv_cache::KvCache;
pub use layer_norm::{LayerNorm, LayerNormCache, LayerNormConfig};
pub use mask::Mask;
pub use mlp::{
    Gelu, GeluCache, Mlp, MlpCache, MlpConfig, erf, gelu, gelu_backward, gelu_forward, gelu_grad,
};
pub use multi_head::{MultiHeadAttention, MultiHeadAttentionCache, MultiHeadAttentionConfig};
pub use softmax::{
    exp_nonpositive, lane_max, lane_sum, softmax, softmax_backward, softmax_row,
    softmax_row_backward, softmax_row_fast,
};
pub use tiled::{Tile, tiled_attention_forward};

/// The gradient-check settings of this crate's tests.
///
/// The default step `h = 1e-3` suits one Linear; attention mixes many f32
/// products through `exp`, so the loss carries rounding noise near `1e-6`,
/// which a step of `1e-3` turns into `~5e-4` of noise in the slope (a key
/// bias, whose true gradient is exactly zero, showed `1.2e-4`). A step of
/// `1e-2` divides that noise by ten while the truncation error of the
/// central difference (`~h²`) stays near `1e-5` for these smooth functions.
#[cfg(test)]
pub(crate) fn gradcheck() -> embedding::testing::GradCheck {
    embedding::testing::GradCheck {
        step: 1e-2,
        ..Default::default()
    }
}
