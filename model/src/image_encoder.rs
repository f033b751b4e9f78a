//! The image encoder: a ViT or a CNN behind one interface.
//!
//! Either tower gives the two things the rest of the model reads:
//!
//! - `tokens: [B, N_img, C_img]`, a sequence of image vectors the caption
//!   decoder cross-attends to (the ViT's CLS token and patches, or the CNN's
//!   final feature map read row by row);
//! - `pooled: [B, C_img]`, one vector per image for the shared space (the
//!   ViT's CLS token, or the mean of the CNN's map).
//!
//! The parameter names are the tower's own (`patch_embed.proj.weight`,
//! `blocks.0.conv.weight`, …); the model puts `image.` in front.

use embedding::Params;
use ndarray::{Array2, Array3, ArrayRef2, ArrayRef3, ArrayRef4, ArrayViewD, ArrayViewMutD};
use rand::Rng;
use vision::{CnnCache, CnnEncoder, Vit, VitCache};

use crate::config::ImageConfig;

// ANCHOR: image_encoder
/// The image tower chosen by [`ImageConfig`].
#[allow(clippy::large_enum_variant)] // one per model: a few hundred bytes of headers do not matter
#[derive(Debug, Clone, PartialEq)]
pub enum ImageEncoder {
    /// A Vision Transformer; pooled = the CLS token.
    Vit(Vit),
    /// A convolutional network; pooled = the mean of the final map.
    Cnn(CnnEncoder),
}

/// What an [`ImageEncoder`] returns.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageOutput {
    /// `[B, N_img, C_img]`: what the decoder cross-attends to.
    pub tokens: Array3<f32>,
    /// `[B, C_img]`: one vector per image, for the shared space.
    pub pooled: Array2<f32>,
}

/// The tower's own cache.
#[allow(clippy::large_enum_variant)] // one per forward pass
#[derive(Debug, Clone)]
pub enum ImageEncoderCache {
    /// From [`Vit::forward`].
    Vit(VitCache),
    /// From [`CnnEncoder::forward`].
    Cnn(CnnCache),
}
// ANCHOR_END: image_encoder

impl ImageConfig {
    /// A fresh tower (each at its own crate's initialisation).
    pub fn init(&self, rng: &mut impl Rng) -> ImageEncoder {
        match self {
            ImageConfig::Vit(vit) => ImageEncoder::Vit(vit.init(rng)),
            ImageConfig::Cnn { cnn, .. } => ImageEncoder::Cnn(cnn.init(rng)),
        }
    }
}

impl ImageEncoder {
    /// Width `C_img` of the tokens and the pooled vector.
    pub fn width(&self) -> usize {
        match self {
            ImageEncoder::Vit(vit) => vit.dim(),
            ImageEncoder::Cnn(cnn) => cnn.dim(),
        }
    }

    // ANCHOR: image_forward
    /// # Shapes
    /// - `images: [B, C_in, H, W]` → `tokens: [B, N_img, C_img]`, `pooled: [B, C_img]`
    ///
    /// # Panics
    /// As the tower's own `forward` (wrong channel count, an image size the
    /// tower cannot read).
    #[track_caller]
    pub fn forward(&self, images: &ArrayRef4<f32>) -> (ImageOutput, ImageEncoderCache) {
        match self {
            ImageEncoder::Vit(vit) => {
                let (out, cache) = vit.forward(images);
                let out = ImageOutput {
                    tokens: out.tokens, // [B, N+1, C]: CLS, then the patches
                    pooled: out.cls,    // [B, C]
                };
                (out, ImageEncoderCache::Vit(cache))
            }
            ImageEncoder::Cnn(cnn) => {
                let (out, cache) = cnn.forward(images);
                let out = ImageOutput {
                    tokens: out.grid,   // [B, H'·W', C]
                    pooled: out.pooled, // [B, C]: the mean of the grid
                };
                (out, ImageEncoderCache::Cnn(cache))
            }
        }
    }
    // ANCHOR_END: image_forward

    /// Adds the parameter gradients into `grads`, from the gradients of both
    /// outputs (zeros for one the loss does not use).
    ///
    /// The pixels are data, not parameters: nothing reads their gradient, so
    /// the towers' `backward_params` skip computing it (as PyTorch does for
    /// an input that does not require a gradient).
    ///
    /// # Shapes
    /// - `dtokens: [B, N_img, C_img]`, `dpooled: [B, C_img]`
    ///
    /// # Panics
    /// If the gradients do not have the output's shapes, or `cache` and
    /// `grads` come from the other kind of tower.
    #[track_caller]
    pub fn backward(
        &self,
        dtokens: &ArrayRef3<f32>,
        dpooled: &ArrayRef2<f32>,
        cache: &ImageEncoderCache,
        grads: &mut ImageEncoder,
    ) {
        match (self, cache, grads) {
            (ImageEncoder::Vit(vit), ImageEncoderCache::Vit(cache), ImageEncoder::Vit(grads)) => {
                vit.backward_params(dtokens, dpooled, cache, grads);
            }
            (ImageEncoder::Cnn(cnn), ImageEncoderCache::Cnn(cache), ImageEncoder::Cnn(grads)) => {
                cnn.backward_params(dtokens, dpooled, cache, grads);
            }
            _ => panic!("image encoder backward: the cache or the grads are from another tower"),
        }
    }
}

impl Params for ImageEncoder {
    fn params(&self) -> Vec<(String, ArrayViewD<'_, f32>)> {
        match self {
            ImageEncoder::Vit(vit) => vit.params(),
            ImageEncoder::Cnn(cnn) => cnn.params(),
        }
    }

    fn params_mut(&mut self) -> Vec<(String, ArrayViewMutD<'_, f32>)> {
        match self {
            ImageEncoder::Vit(vit) => vit.params_mut(),
            ImageEncoder::Cnn(cnn) => cnn.params_mut(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ModelConfig;
    use ndarray::Array4;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn both_towers_give_tokens_and_a_pooled_vector() {
        for config in [ModelConfig::micro(12).image, ModelConfig::micro_cnn()] {
            let encoder = config.init(&mut StdRng::seed_from_u64(0));
            let images = Array4::from_shape_fn((2, 3, 8, 8), |(b, c, h, w)| {
                ((b * 7 + c * 5 + h * 3 + w) % 11) as f32 / 11.0
            });
            let (out, cache) = encoder.forward(&images);
            let width = config.width();
            assert_eq!(out.tokens.dim(), (2, config.num_tokens(), width));
            assert_eq!(out.pooled.dim(), (2, width));
            assert_eq!(encoder.width(), width);
            // backward runs and fills some gradient
            let mut grads = encoder.zeros_like();
            encoder.backward(&out.tokens, &out.pooled, &cache, &mut grads);
            assert!(
                grads
                    .params()
                    .iter()
                    .any(|(_, g)| g.iter().any(|&v| v != 0.0))
            );
        }
    }

    #[test]
    fn vit_pools_the_cls_token_and_cnn_the_mean() {
        let images = Array4::from_elem((1, 3, 8, 8), 0.5);
        let vit = ModelConfig::micro(12)
            .image
            .init(&mut StdRng::seed_from_u64(1));
        let (out, _) = vit.forward(&images);
        assert_eq!(out.pooled.row(0), out.tokens.slice(ndarray::s![0, 0, ..]));
        let cnn = ModelConfig::micro_cnn().init(&mut StdRng::seed_from_u64(1));
        let (out, _) = cnn.forward(&images);
        let mean = out.tokens.mean_axis(ndarray::Axis(1)).unwrap();
        embedding::testing::assert_allclose("mean", &out.pooled, &mean, 1e-6, 1e-6);
    }
}
