//! The Vision Transformer (ViT): an image read as a sentence of patches.
//!
//! ```text
//! images [B, C_in, H, W]
//!   → patch_embed      [B, N, C]      one token per P×P patch
//!   → prepend cls      [B, N+1, C]    a learned token that belongs to no patch
//!   → + pos_embed      [B, N+1, C]    learned positions: attention alone ignores order
//!   → blocks × depth   [B, N+1, C]    pre-LN transformer blocks, no mask
//!   → norm             [B, N+1, C]    final LayerNorm
//! tokens = all of it,  cls = tokens[:, 0]  [B, C]
//! ```
//!
//! The CLS token starts identical for every image; only attention fills it
//! with what the image holds, so after training its final value summarises
//! the image (BERT's trick, kept by ViT and CLIP).
//!
//! Parameter names follow timm's `VisionTransformer`: `patch_embed.proj.weight`,
//! `cls_token` (`[C]` here, `[1, 1, C]` there), `pos_embed.weight`
//! (`pos_embed`, `[1, N+1, C]` there), `blocks.0.ln_1.weight`, …, `norm.weight`.
//! Reference: Dosovitskiy et al. 2021, "An Image is Worth 16x16 Words".

use attention::{Block, BlockCache, BlockConfig, LayerNorm, LayerNormCache};
use embedding::{Layer, LearnedPositions, Params, init, prefixed};
use ndarray::{
    Array1, Array2, Array3, Array4, ArrayRef2, ArrayRef3, ArrayRef4, ArrayViewD, ArrayViewMutD,
    Axis, s,
};
use rand::Rng;

use crate::patch::{PatchEmbed, PatchEmbedCache, PatchEmbedConfig};

/// The shape of a [`Vit`].
#[derive(Debug, Clone, PartialEq)]
pub struct VitConfig {
    /// Image side in pixels (square images); a multiple of `patch`.
    pub image_size: usize,
    /// Image channels (3 for RGB).
    pub in_channels: usize,
    /// Patch side `P`.
    pub patch: usize,
    /// Number of transformer blocks.
    pub depth: usize,
    /// Width `C`, heads and MLP width of every block.
    pub block: BlockConfig,
}

impl Default for VitConfig {
    /// 32×32 RGB images in 8×8 patches (16 tokens + CLS), two blocks of
    /// width 64 with 4 heads: the CNN's size, for a fair comparison.
    fn default() -> Self {
        VitConfig {
            image_size: 32,
            in_channels: 3,
            patch: 8,
            depth: 2,
            block: BlockConfig::default(),
        }
    }
}

impl VitConfig {
    /// Patches per image, `N = (size/P)²`.
    pub fn num_patches(&self) -> usize {
        (self.image_size / self.patch).pow(2)
    }

    /// Fresh weights: the patch projection at PyTorch's convolution default,
    /// `cls_token` and `pos_embed` from `N(0, 0.02²)` (ViT's choice), the
    /// blocks from [`BlockConfig::init`], the final LayerNorm at `γ = 1, β = 0`.
    ///
    /// # Panics
    /// If `patch` does not divide `image_size`.
    #[track_caller]
    pub fn init(&self, rng: &mut impl Rng) -> Vit {
        assert!(
            self.patch > 0 && self.image_size.is_multiple_of(self.patch),
            "vit: patch {} must divide image size {}",
            self.patch,
            self.image_size
        );
        let dim = self.block.width;
        let patch_embed = PatchEmbedConfig {
            in_channels: self.in_channels,
            dim,
            patch: self.patch,
        }
        .init(rng);
        let cls_token = init::normal(dim, 0.02, rng);
        let pos_embed = LearnedPositions::init(self.num_patches() + 1, dim, 0.02, rng);
        let blocks = (0..self.depth).map(|_| self.block.init(rng)).collect();
        Vit {
            patch_embed,
            cls_token,
            pos_embed,
            blocks,
            norm: LayerNorm::new(dim),
        }
    }
}

// ANCHOR: vit_struct
/// A Vision Transformer encoder.
#[derive(Debug, Clone, PartialEq)]
pub struct Vit {
    /// `proj.weight: [C, C_in, P, P]`, `proj.bias: [C]`.
    pub patch_embed: PatchEmbed,
    /// `[C]`: the extra token whose final value summarises the image.
    pub cls_token: Array1<f32>,
    /// `[N + 1, C]`: position 0 is the CLS token's.
    pub pos_embed: LearnedPositions,
    /// The transformer blocks, unmasked: every token sees every token.
    pub blocks: Vec<Block>,
    /// The final LayerNorm.
    pub norm: LayerNorm,
}

/// What the ViT returns.
#[derive(Debug, Clone, PartialEq)]
pub struct VitOutput {
    /// `[B, N + 1, C]`: the CLS token, then the patches, row by row.
    pub tokens: Array3<f32>,
    /// `[B, C]`: `tokens[:, 0]`, the CLS token.
    pub cls: Array2<f32>,
}

/// What `Vit::backward` needs: the child caches.
#[derive(Debug, Clone)]
pub struct VitCache {
    patch_embed: PatchEmbedCache,
    blocks: Vec<BlockCache>,
    norm: LayerNormCache,
}

impl VitCache {
    /// The attention weights of block `i`, `[B, H, N+1, N+1]` (for figures).
    pub fn attention_weights(&self, i: usize) -> &Array4<f32> {
        self.blocks[i].attention_weights()
    }
}
// ANCHOR_END: vit_struct

impl Vit {
    /// Token width `C`.
    pub fn dim(&self) -> usize {
        self.cls_token.len()
    }

    // ANCHOR: vit_forward
    /// # Shapes
    /// - `images: [B, C_in, H, W]` → `tokens: [B, N + 1, C]`, `cls: [B, C]`
    ///
    /// # Panics
    /// If the images have the wrong channel count, `P` does not divide their
    /// size, or they have more patches than `pos_embed` has rows.
    #[track_caller]
    pub fn forward(&self, images: &ArrayRef4<f32>) -> (VitOutput, VitCache) {
        let (patches, patch_cache) = self.patch_embed.forward(images); // [B, N, C]
        let (batch, n, dim) = patches.dim();
        let mut x = Array3::zeros((batch, n + 1, dim)); // [B, N+1, C]
        x.slice_mut(s![.., 0, ..]).assign(&self.cls_token); // broadcast [C] over B
        x.slice_mut(s![.., 1.., ..]).assign(&patches);
        let (mut x, ()) = self.pos_embed.forward(&x);
        let mut block_caches = Vec::with_capacity(self.blocks.len());
        for block in &self.blocks {
            let (out, cache) = block.forward(&x); // unmasked self-attention
            block_caches.push(cache);
            x = out;
        }
        let (tokens, norm_cache) = self.norm.forward(&x); // [B, N+1, C]
        let cls = tokens.slice(s![.., 0, ..]).to_owned(); // [B, C]
        let cache = VitCache {
            patch_embed: patch_cache,
            blocks: block_caches,
            norm: norm_cache,
        };
        (VitOutput { tokens, cls }, cache)
    }
    // ANCHOR_END: vit_forward

    // ANCHOR: vit_backward
    /// # Shapes
    /// - `dtokens: [B, N + 1, C]`, `dcls: [B, C]` → `dimages: [B, C_in, H, W]`
    ///
    /// Pass zeros for an output the loss does not use.
    ///
    /// # Panics
    /// If the gradients do not have the output's shapes.
    #[track_caller]
    pub fn backward(
        &self,
        dtokens: &ArrayRef3<f32>,
        dcls: &ArrayRef2<f32>,
        cache: &VitCache,
        grads: &mut Vit,
    ) -> Array4<f32> {
        let dx = self.backward_to_patches(dtokens, dcls, cache, grads); // [B, N + 1, C]
        let dpatches = dx.slice(s![.., 1.., ..]); // [B, N, C]
        self.patch_embed
            .backward(&dpatches, &cache.patch_embed, &mut grads.patch_embed)
    }

    /// [`Vit::backward`] without the gradient of the pixels, which a model
    /// trained on fixed images never reads: the patch embedding computes its
    /// parameters' gradients only.
    ///
    /// # Panics
    /// As [`Vit::backward`].
    #[track_caller]
    pub fn backward_params(
        &self,
        dtokens: &ArrayRef3<f32>,
        dcls: &ArrayRef2<f32>,
        cache: &VitCache,
        grads: &mut Vit,
    ) {
        let dx = self.backward_to_patches(dtokens, dcls, cache, grads);
        let dpatches = dx.slice(s![.., 1.., ..]);
        self.patch_embed
            .backward_params(&dpatches, &cache.patch_embed, &mut grads.patch_embed);
    }

    /// The backward pass down to the tokens after the patch embedding: their
    /// gradient `[B, N + 1, C]` (CLS first; the CLS token's own gradient is
    /// already added into `grads`).
    #[track_caller]
    fn backward_to_patches(
        &self,
        dtokens: &ArrayRef3<f32>,
        dcls: &ArrayRef2<f32>,
        cache: &VitCache,
        grads: &mut Vit,
    ) -> Array3<f32> {
        let (batch, _, dim) = dtokens.dim();
        assert_eq!(
            dcls.dim(),
            (batch, dim),
            "vit backward: dtokens is {:?}, dcls is {:?}",
            dtokens.dim(),
            dcls.dim()
        );
        // in the forward pass this was:
        //   cls = tokens[:, 0]
        // so token 0 collects both gradients:
        let mut dx = dtokens.to_owned(); // [B, N+1, C]
        dx.slice_mut(s![.., 0, ..]).scaled_add(1.0, dcls);
        let mut dx = self.norm.backward(&dx, &cache.norm, &mut grads.norm);
        for ((block, block_cache), block_grads) in self
            .blocks
            .iter()
            .zip(&cache.blocks)
            .zip(&mut grads.blocks)
            .rev()
        {
            dx = block.backward(&dx, block_cache, block_grads);
        }
        let dx = self.pos_embed.backward(&dx, &(), &mut grads.pos_embed);
        // in the forward pass this was:
        //   x[:, 0] = cls_token (the same vector for every image)
        // so its gradient is summed over the batch:
        grads.cls_token += &dx.slice(s![.., 0, ..]).sum_axis(Axis(0));
        dx
    }
    // ANCHOR_END: vit_backward
}

impl Params for Vit {
    fn params(&self) -> Vec<(String, ArrayViewD<'_, f32>)> {
        let mut list: Vec<_> = prefixed("patch_embed", self.patch_embed.params()).collect();
        list.push(("cls_token".to_string(), self.cls_token.view().into_dyn()));
        list.extend(prefixed("pos_embed", self.pos_embed.params()));
        list.extend(prefixed("blocks", self.blocks.params()));
        list.extend(prefixed("norm", self.norm.params()));
        list
    }

    fn params_mut(&mut self) -> Vec<(String, ArrayViewMutD<'_, f32>)> {
        let mut list: Vec<_> = prefixed("patch_embed", self.patch_embed.params_mut()).collect();
        list.push((
            "cls_token".to_string(),
            self.cls_token.view_mut().into_dyn(),
        ));
        list.extend(prefixed("pos_embed", self.pos_embed.params_mut()));
        list.extend(prefixed("blocks", self.blocks.params_mut()));
        list.extend(prefixed("norm", self.norm.params_mut()));
        list
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use embedding::testing::{GradCheck, WithInputs, assert_allclose, fakeloss};
    use ndarray::Ix4;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn tiny(seed: u64) -> Vit {
        VitConfig {
            image_size: 4,
            in_channels: 2,
            patch: 2,
            depth: 2,
            block: BlockConfig {
                width: 8,
                n_head: 2,
                mlp_hidden: 16,
            },
        }
        .init(&mut StdRng::seed_from_u64(seed))
    }

    #[test]
    fn default_config_shapes_and_names() {
        let vit = VitConfig::default().init(&mut StdRng::seed_from_u64(0));
        let images = Array4::zeros((2, 3, 32, 32));
        let (out, cache) = vit.forward(&images);
        assert_eq!(out.tokens.dim(), (2, 17, 64));
        assert_eq!(out.cls.dim(), (2, 64));
        assert_eq!(cache.attention_weights(1).dim(), (2, 4, 17, 17));
        let names: Vec<String> = vit.params().into_iter().map(|(n, _)| n).collect();
        assert_eq!(
            &names[..4],
            [
                "patch_embed.proj.weight",
                "patch_embed.proj.bias",
                "cls_token",
                "pos_embed.weight"
            ]
        );
        assert_eq!(names[4], "blocks.0.ln_1.weight");
        assert_eq!(&names[names.len() - 2..], ["norm.weight", "norm.bias"]);
    }

    #[test]
    fn cls_is_token_zero_and_differs_between_images() {
        let vit = tiny(1);
        let images: Array4<f32> = init::normal((2, 2, 4, 4), 1.0, &mut StdRng::seed_from_u64(2));
        let (out, _) = vit.forward(&images);
        assert_eq!(out.cls, out.tokens.slice(s![.., 0, ..]));
        // the CLS token enters equal for both images; attention makes it differ
        let gap = (&out.cls.row(0) - &out.cls.row(1)).mapv(f32::abs).sum();
        assert!(gap > 1e-3, "cls outputs are equal: {gap}");
    }

    #[test]
    fn backward_params_gives_the_same_parameter_gradients() {
        let vit = tiny(7);
        let images: Array4<f32> = init::normal((2, 2, 4, 4), 1.0, &mut StdRng::seed_from_u64(8));
        let (out, cache) = vit.forward(&images);
        let mut rng = StdRng::seed_from_u64(9);
        let dtokens: Array3<f32> = init::normal(out.tokens.dim(), 1.0, &mut rng);
        let dcls: Array2<f32> = init::normal(out.cls.dim(), 1.0, &mut rng);
        let (mut full, mut params) = (vit.zeros_like(), vit.zeros_like());
        vit.backward(&dtokens, &dcls, &cache, &mut full);
        vit.backward_params(&dtokens, &dcls, &cache, &mut params);
        assert_eq!(params, full);
    }

    #[test]
    fn vit_gradcheck() {
        let mut vit = tiny(3);
        // subtle: at init, token 0 is cls_token + pos_embed[0], both ~N(0, 0.02²),
        // so ln_1 sees a vector with a tiny variance and is sharply curved
        // there: a step of 1e-2 is no longer small. Unit-scale values keep
        // the check about the backward pass, not about the step.
        let mut rng = StdRng::seed_from_u64(30);
        vit.cls_token = init::normal(vit.dim(), 1.0, &mut rng);
        vit.pos_embed.weight = init::normal(vit.pos_embed.weight.dim(), 1.0, &mut rng);
        let images: Array4<f32> = init::normal((2, 2, 4, 4), 1.0, &mut StdRng::seed_from_u64(4));
        let (out, cache) = vit.forward(&images);
        let mut rng = StdRng::seed_from_u64(5);
        let dtokens: Array3<f32> = init::normal(out.tokens.dim(), 1.0, &mut rng);
        let dcls: Array2<f32> = init::normal(out.cls.dim(), 1.0, &mut rng);
        let mut grads = vit.zeros_like();
        let dx = vit.backward(&dtokens, &dcls, &cache, &mut grads);

        // backward accumulates: a second call doubles every parameter gradient
        let mut twice = grads.clone();
        vit.backward(&dtokens, &dcls, &cache, &mut twice);
        for ((name, g2), (_, g1)) in twice.params().iter().zip(grads.params()) {
            assert_allclose(name, g2, &(&g1 * 2.0), 1e-6, 0.0);
        }

        let analytic = WithInputs::new(grads, vec![("images", dx)]);
        let mut state = WithInputs::new(vit, vec![("images", images)]);
        // smooth everywhere (LayerNorm, softmax, GELU), but deep in f32: a
        // step of 1e-2 lifts the slope above the loss's rounding noise while
        // the central difference's truncation error (~h²) stays near 1e-5
        let check = GradCheck {
            step: 1e-2,
            ..GradCheck::default()
        };
        check
            .run(&mut state, &analytic, |s| {
                let (out, _) = s.module.forward(&s.input::<Ix4>(0));
                fakeloss(&out.tokens, &dtokens) + fakeloss(&out.cls, &dcls)
            })
            .into_result()
            .unwrap();
    }

    #[test]
    #[should_panic(expected = "learned positions")]
    fn larger_images_than_configured_panic() {
        let _ = tiny(0).forward(&Array4::zeros((1, 2, 6, 6))); // 9 patches, table holds 4 + 1
    }
}
