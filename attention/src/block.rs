//! The pre-LN transformer block, and its decoder twin with cross-attention.
//!
//! ```text
//! Block:       x = x + attn(ln_1(x))                      (self-attention, optional mask)
//!              x = x + mlp(ln_2(x))
//! CrossBlock:  x = x + attn(ln_1(x))                      (usually causal)
//!              x = x + cross_attn(ln_cross(x), memory)    (text reads the image)
//!              x = x + mlp(ln_2(x))
//! ```
//!
//! The residual stream `x` runs straight through the block; every sublayer
//! reads a normalised copy of it and *adds* its result back. In the backward
//! pass an addition copies the gradient to both branches, so `dx` is the sum
//! of the straight path and each sublayer's path.
//! Names follow GPT-2/nanoGPT (`ln_1`, `attn.qkv`, `attn.proj`, `ln_2`,
//! `mlp.fc`, `mlp.proj`) plus `ln_cross` and `cross_attn.{q, kv, proj}`.

use embedding::{Layer, Params, prefixed};
use ndarray::{Array3, Array4, ArrayRef3, ArrayViewD, ArrayViewMutD};
use rand::Rng;

use crate::cross_attention::{CrossAttention, CrossAttentionCache, CrossAttentionConfig};
use crate::layer_norm::{LayerNorm, LayerNormCache};
use crate::mask::Mask;
use crate::mlp::{Mlp, MlpCache, MlpConfig};
use crate::multi_head::{MultiHeadAttention, MultiHeadAttentionCache, MultiHeadAttentionConfig};

// ANCHOR: config
/// The sizes of a transformer block.
#[derive(Debug, Clone, PartialEq)]
pub struct BlockConfig {
    /// Width `C` of the residual stream.
    pub width: usize,
    /// Number of attention heads `H` (`C = H·D`).
    pub n_head: usize,
    /// Hidden width of the MLP; `4C` in GPT-2 and ViT.
    pub mlp_hidden: usize,
}

impl Default for BlockConfig {
    /// The tiny teaching size: `C = 64` trains in minutes on a laptop CPU;
    /// 4 heads of `D = 16`.
    fn default() -> Self {
        BlockConfig {
            width: 64,
            n_head: 4,
            mlp_hidden: 256,
        }
    }
}
// ANCHOR_END: config

impl BlockConfig {
    /// A self-attention block: LayerNorms at `γ = 1, β = 0`, Linears at
    /// PyTorch's default initialisation.
    ///
    /// # Panics
    /// If `width` is not divisible by `n_head`.
    #[track_caller]
    pub fn init(&self, rng: &mut impl Rng) -> Block {
        Block {
            ln_1: LayerNorm::new(self.width),
            attn: self.attention().init(rng),
            ln_2: LayerNorm::new(self.width),
            mlp: self.mlp().init(rng),
        }
    }

    /// A decoder block that also reads a `memory` sequence of width `memory_width`.
    ///
    /// # Panics
    /// If `width` is not divisible by `n_head`.
    #[track_caller]
    pub fn init_cross(&self, memory_width: usize, rng: &mut impl Rng) -> CrossBlock {
        let ln_1 = LayerNorm::new(self.width);
        let attn = self.attention().init(rng);
        let cross_attn = CrossAttentionConfig {
            width: self.width,
            memory_width,
            n_head: self.n_head,
        }
        .init(rng);
        CrossBlock {
            ln_1,
            attn,
            ln_cross: LayerNorm::new(self.width),
            cross_attn,
            ln_2: LayerNorm::new(self.width),
            mlp: self.mlp().init(rng),
        }
    }

    fn attention(&self) -> MultiHeadAttentionConfig {
        MultiHeadAttentionConfig {
            width: self.width,
            n_head: self.n_head,
        }
    }

    fn mlp(&self) -> MlpConfig {
        MlpConfig {
            width: self.width,
            hidden: self.mlp_hidden,
        }
    }
}

// ANCHOR: block_struct
/// A pre-LN transformer block: `x + attn(ln_1(x))`, then `x + mlp(ln_2(x))`.
#[derive(Debug, Clone, PartialEq)]
pub struct Block {
    /// `[C]` twice
    pub ln_1: LayerNorm,
    /// `qkv: [3C, C]`, `proj: [C, C]`
    pub attn: MultiHeadAttention,
    /// `[C]` twice
    pub ln_2: LayerNorm,
    /// `fc: [hidden, C]`, `proj: [C, hidden]`
    pub mlp: Mlp,
}

/// What [`Block`]'s backward pass needs: one cache per sublayer.
#[derive(Debug, Clone)]
pub struct BlockCache {
    ln_1: LayerNormCache,
    attn: MultiHeadAttentionCache,
    ln_2: LayerNormCache,
    mlp: MlpCache,
}
// ANCHOR_END: block_struct

impl BlockCache {
    /// The self-attention weights: `[B, H, T, T]`.
    pub fn attention_weights(&self) -> &Array4<f32> {
        self.attn.weights()
    }
}

impl Block {
    // ANCHOR: block_forward
    /// The block with a self-attention mask (causal for text).
    ///
    /// # Shapes
    /// - `x: [B, T, C]` → `out: [B, T, C]`
    ///
    /// # Panics
    /// If `x`'s last axis is not `C`, or a padding mask does not have `B` lengths.
    #[track_caller]
    pub fn forward_masked(&self, x: &ArrayRef3<f32>, mask: &Mask) -> (Array3<f32>, BlockCache) {
        let (h, ln_1) = self.ln_1.forward(x); // [B, T, C]
        let (h, attn) = self.attn.forward_masked(&h, mask); // [B, T, C]
        let x = h + x; // residual: x + attn(ln_1(x))
        let (h, ln_2) = self.ln_2.forward(&x);
        let (h, mlp) = self.mlp.forward(&h);
        let out = h + &x; // residual: x + mlp(ln_2(x))
        (
            out,
            BlockCache {
                ln_1,
                attn,
                ln_2,
                mlp,
            },
        )
    }
    // ANCHOR_END: block_forward
}

impl Layer for Block {
    type Cache = BlockCache;

    /// The block without a mask (a ViT's); see [`Block::forward_masked`].
    ///
    /// # Shapes
    /// - `x: [B, T, C]` → `out: [B, T, C]`
    #[track_caller]
    fn forward(&self, x: &ArrayRef3<f32>) -> (Array3<f32>, BlockCache) {
        self.forward_masked(x, &Mask::None)
    }

    // ANCHOR: block_backward
    /// # Shapes
    /// - `dout: [B, T, C]` → `dx: [B, T, C]`
    fn backward(
        &self,
        dout: &ArrayRef3<f32>,
        cache: &BlockCache,
        grads: &mut Block,
    ) -> Array3<f32> {
        // in the forward pass this was:
        //   out = x1 + mlp(ln_2(x1))
        // so the gradient reaches x1 straight, and through the MLP branch:
        let dln_2 = self.mlp.backward(dout, &cache.mlp, &mut grads.mlp);
        let dresid_2 = self.ln_2.backward(&dln_2, &cache.ln_2, &mut grads.ln_2);
        let dx1 = dresid_2 + dout;
        // in the forward pass this was:
        //   x1 = x + attn(ln_1(x))
        // so now we have:
        let dln_1 = self.attn.backward(&dx1, &cache.attn, &mut grads.attn);
        let dresid_1 = self.ln_1.backward(&dln_1, &cache.ln_1, &mut grads.ln_1);
        dresid_1 + &dx1
    }
    // ANCHOR_END: block_backward
}

impl Block {
    // ANCHOR: block_backward_input
    /// The input gradient alone, for a frozen block: the same path as
    /// [`Layer::backward`], every sublayer's `backward_input`, and no
    /// parameter gradient computed anywhere (a frozen language model still
    /// passes the gradient down to what feeds it).
    ///
    /// # Shapes
    /// - `dout: [B, T, C]` → `dx: [B, T, C]`
    pub fn backward_input(&self, dout: &ArrayRef3<f32>, cache: &BlockCache) -> Array3<f32> {
        let dln_2 = self.mlp.backward_input(dout, &cache.mlp);
        let dx1 = self.ln_2.backward_input(&dln_2, &cache.ln_2) + dout;
        let dln_1 = self.attn.backward_input(&dx1, &cache.attn);
        self.ln_1.backward_input(&dln_1, &cache.ln_1) + &dx1
    }
    // ANCHOR_END: block_backward_input
}

impl Params for Block {
    fn params(&self) -> Vec<(String, ArrayViewD<'_, f32>)> {
        let mut list: Vec<_> = prefixed("ln_1", self.ln_1.params()).collect();
        list.extend(prefixed("attn", self.attn.params()));
        list.extend(prefixed("ln_2", self.ln_2.params()));
        list.extend(prefixed("mlp", self.mlp.params()));
        list
    }

    fn params_mut(&mut self) -> Vec<(String, ArrayViewMutD<'_, f32>)> {
        let mut list: Vec<_> = prefixed("ln_1", self.ln_1.params_mut()).collect();
        list.extend(prefixed("attn", self.attn.params_mut()));
        list.extend(prefixed("ln_2", self.ln_2.params_mut()));
        list.extend(prefixed("mlp", self.mlp.params_mut()));
        list
    }
}

// ANCHOR: cross_block_struct
/// A decoder block: masked self-attention, cross-attention to `memory`, MLP.
#[derive(Debug, Clone, PartialEq)]
pub struct CrossBlock {
    /// `[C]` twice
    pub ln_1: LayerNorm,
    /// `qkv: [3C, C]`, `proj: [C, C]`
    pub attn: MultiHeadAttention,
    /// `[C]` twice
    pub ln_cross: LayerNorm,
    /// `q: [C, C]`, `kv: [2C, C_mem]`, `proj: [C, C]`
    pub cross_attn: CrossAttention,
    /// `[C]` twice
    pub ln_2: LayerNorm,
    /// `fc: [hidden, C]`, `proj: [C, hidden]`
    pub mlp: Mlp,
}

/// What [`CrossBlock`]'s backward pass needs: one cache per sublayer.
#[derive(Debug, Clone)]
pub struct CrossBlockCache {
    ln_1: LayerNormCache,
    attn: MultiHeadAttentionCache,
    ln_cross: LayerNormCache,
    cross_attn: CrossAttentionCache,
    ln_2: LayerNormCache,
    mlp: MlpCache,
}
// ANCHOR_END: cross_block_struct

impl CrossBlockCache {
    /// The self-attention weights: `[B, H, T, T]`.
    pub fn attention_weights(&self) -> &Array4<f32> {
        self.attn.weights()
    }

    /// The cross-attention weights, text tokens over memory tokens: `[B, H, T, T_mem]`.
    pub fn cross_attention_weights(&self) -> &Array4<f32> {
        self.cross_attn.weights()
    }
}

impl CrossBlock {
    // ANCHOR: cross_block_forward
    /// # Shapes
    /// - `x: [B, T, C]`, `memory: [B, T_mem, C_mem]` → `out: [B, T, C]`
    ///
    /// `mask` applies to the self-attention (causal for a caption decoder);
    /// `memory_mask` to the cross-attention (`Mask::None`, or key padding
    /// when memories have different lengths).
    ///
    /// # Panics
    /// If the widths or batch sizes disagree, or a padding mask does not have `B` lengths.
    #[track_caller]
    pub fn forward(
        &self,
        x: &ArrayRef3<f32>,
        memory: &ArrayRef3<f32>,
        mask: &Mask,
        memory_mask: &Mask,
    ) -> (Array3<f32>, CrossBlockCache) {
        let (h, ln_1) = self.ln_1.forward(x);
        let (h, attn) = self.attn.forward_masked(&h, mask);
        let x = h + x; // x1 = x + attn(ln_1(x))
        let (h, ln_cross) = self.ln_cross.forward(&x);
        let (h, cross_attn) = self.cross_attn.forward(&h, memory, memory_mask);
        let x = h + &x; // x2 = x1 + cross_attn(ln_cross(x1), memory)
        let (h, ln_2) = self.ln_2.forward(&x);
        let (h, mlp) = self.mlp.forward(&h);
        let out = h + &x; // out = x2 + mlp(ln_2(x2))
        let cache = CrossBlockCache {
            ln_1,
            attn,
            ln_cross,
            cross_attn,
            ln_2,
            mlp,
        };
        (out, cache)
    }
    // ANCHOR_END: cross_block_forward

    // ANCHOR: cross_block_backward
    /// Returns `(dx, dmemory)`; parameter gradients are added into `grads`.
    ///
    /// # Shapes
    /// - `dout: [B, T, C]` → `dx: [B, T, C]`, `dmemory: [B, T_mem, C_mem]`
    pub fn backward(
        &self,
        dout: &ArrayRef3<f32>,
        cache: &CrossBlockCache,
        grads: &mut CrossBlock,
    ) -> (Array3<f32>, Array3<f32>) {
        // out = x2 + mlp(ln_2(x2))
        let dln_2 = self.mlp.backward(dout, &cache.mlp, &mut grads.mlp);
        let dx2 = self.ln_2.backward(&dln_2, &cache.ln_2, &mut grads.ln_2) + dout;
        // x2 = x1 + cross_attn(ln_cross(x1), memory)
        let (dln_cross, dmemory) =
            self.cross_attn
                .backward(&dx2, &cache.cross_attn, &mut grads.cross_attn);
        let dx1 = self
            .ln_cross
            .backward(&dln_cross, &cache.ln_cross, &mut grads.ln_cross)
            + &dx2;
        // x1 = x + attn(ln_1(x))
        let dln_1 = self.attn.backward(&dx1, &cache.attn, &mut grads.attn);
        let dx = self.ln_1.backward(&dln_1, &cache.ln_1, &mut grads.ln_1) + &dx1;
        (dx, dmemory)
    }
    // ANCHOR_END: cross_block_backward
}

impl Params for CrossBlock {
    fn params(&self) -> Vec<(String, ArrayViewD<'_, f32>)> {
        let mut list: Vec<_> = prefixed("ln_1", self.ln_1.params()).collect();
        list.extend(prefixed("attn", self.attn.params()));
        list.extend(prefixed("ln_cross", self.ln_cross.params()));
        list.extend(prefixed("cross_attn", self.cross_attn.params()));
        list.extend(prefixed("ln_2", self.ln_2.params()));
        list.extend(prefixed("mlp", self.mlp.params()));
        list
    }

    fn params_mut(&mut self) -> Vec<(String, ArrayViewMutD<'_, f32>)> {
        let mut list: Vec<_> = prefixed("ln_1", self.ln_1.params_mut()).collect();
        list.extend(prefixed("attn", self.attn.params_mut()));
        list.extend(prefixed("ln_cross", self.ln_cross.params_mut()));
        list.extend(prefixed("cross_attn", self.cross_attn.params_mut()));
        list.extend(prefixed("ln_2", self.ln_2.params_mut()));
        list.extend(prefixed("mlp", self.mlp.params_mut()));
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

    const TINY: BlockConfig = BlockConfig {
        width: 4,
        n_head: 2,
        mlp_hidden: 8,
    };

    /// LayerNorm parameters away from 1 and 0, so their gradients are really tested.
    fn jitter<P: Params>(module: &mut P, rng: &mut StdRng) {
        for (name, mut p) in module.params_mut() {
            if name.starts_with("ln") {
                let noise: ndarray::ArrayD<f32> = init::normal(p.raw_dim(), 0.3, rng);
                p += &noise;
            }
        }
    }

    #[test]
    fn backward_input_is_backward_without_the_parameter_gradients() {
        let mut rng = StdRng::seed_from_u64(11);
        let block = BlockConfig {
            width: 8,
            n_head: 2,
            mlp_hidden: 16,
        }
        .init(&mut rng);
        let x: Array3<f32> = init::normal((2, 5, 8), 1.0, &mut rng);
        let dout: Array3<f32> = init::normal((2, 5, 8), 1.0, &mut rng);
        for mask in [Mask::Causal, Mask::PrefixLm(vec![3, 1])] {
            let (_, cache) = block.forward_masked(&x, &mask);
            let mut grads = block.zeros_like();
            let dx = block.backward(&dout, &cache, &mut grads);
            assert_eq!(block.backward_input(&dout, &cache), dx, "{mask:?}");
        }
    }

    #[test]
    fn block_gradcheck() {
        let mut rng = StdRng::seed_from_u64(0);
        let mut block = TINY.init(&mut rng);
        jitter(&mut block, &mut rng);
        let x = init::normal((2, 3, 4), 1.0, &mut rng);
        gradcheck_layer(&crate::gradcheck(), &block, &x, 1).unwrap();
    }

    #[test]
    fn block_causal_gradcheck() {
        let mut rng = StdRng::seed_from_u64(1);
        let block = TINY.init(&mut rng);
        let x: Array3<f32> = init::normal((2, 3, 4), 1.0, &mut rng);
        let mask = Mask::CausalKeyPadding(vec![3, 2]);
        let (out, cache) = block.forward_masked(&x, &mask);
        let dout: Array3<f32> = init::normal(out.dim(), 1.0, &mut rng);
        let mut grads = block.zeros_like();
        let dx = block.backward(&dout, &cache, &mut grads);
        let analytic = WithInputs::new(grads, vec![("x", dx)]);
        let mut state = WithInputs::new(block, vec![("x", x)]);
        crate::gradcheck()
            .run(&mut state, &analytic, |s| {
                fakeloss(&s.module.forward_masked(&s.input::<Ix3>(0), &mask).0, &dout)
            })
            .into_result()
            .unwrap();
    }

    #[test]
    fn cross_block_gradcheck() {
        let mut rng = StdRng::seed_from_u64(2);
        let mut block = TINY.init_cross(6, &mut rng);
        jitter(&mut block, &mut rng);
        let x: Array3<f32> = init::normal((2, 3, 4), 1.0, &mut rng);
        let memory: Array3<f32> = init::normal((2, 5, 6), 1.0, &mut rng);
        let (mask, memory_mask) = (Mask::Causal, Mask::KeyPadding(vec![5, 3]));
        let (out, cache) = block.forward(&x, &memory, &mask, &memory_mask);
        let dout: Array3<f32> = init::normal(out.dim(), 1.0, &mut rng);
        let mut grads = block.zeros_like();
        let (dx, dmemory) = block.backward(&dout, &cache, &mut grads);
        let analytic = WithInputs::new(grads, vec![("x", dx), ("memory", dmemory)]);
        let mut state = WithInputs::new(block, vec![("x", x), ("memory", memory)]);
        crate::gradcheck()
            .run(&mut state, &analytic, |s| {
                let (x, m) = (s.input::<Ix3>(0), s.input::<Ix3>(1));
                fakeloss(&s.module.forward(&x, &m, &mask, &memory_mask).0, &dout)
            })
            .into_result()
            .unwrap();
    }

    #[test]
    fn block_accepts_a_strided_input() {
        let mut rng = StdRng::seed_from_u64(4);
        let block = TINY.init(&mut rng);
        let wide: Array3<f32> = init::normal((2, 6, 4), 1.0, &mut rng);
        let strided = wide.slice(ndarray::s![.., ..;2, ..]); // [2, 3, 4], every other token
        let (got, _) = block.forward_masked(&strided, &Mask::Causal);
        let (want, _) = block.forward_masked(&strided.to_owned(), &Mask::Causal);
        assert_eq!(got, want);
    }

    #[test]
    fn names_follow_pytorch() {
        let mut rng = StdRng::seed_from_u64(3);
        let block = TINY.init_cross(6, &mut rng);
        let names: Vec<String> = block.params().into_iter().map(|(n, _)| n).collect();
        assert_eq!(
            names,
            [
                "ln_1.weight",
                "ln_1.bias",
                "attn.qkv.weight",
                "attn.qkv.bias",
                "attn.proj.weight",
                "attn.proj.bias",
                "ln_cross.weight",
                "ln_cross.bias",
                "cross_attn.q.weight",
                "cross_attn.q.bias",
                "cross_attn.kv.weight",
                "cross_attn.kv.bias",
                "cross_attn.proj.weight",
                "cross_attn.proj.bias",
                "ln_2.weight",
                "ln_2.bias",
                "mlp.fc.weight",
                "mlp.fc.bias",
                "mlp.proj.weight",
                "mlp.proj.bias",
            ]
        );
        assert_eq!(block.cross_attn.kv.weight.dim(), (8, 6));
    }
}
