//! The whole model: two towers in a shared space, and a captioning decoder
//! that reads the image (CoCa's layout: Yu et al. 2022).
//!
//! ```text
//! images [B, 3, H, W] ─ image ─┬─ pooled [B, C_img] ─ image_projection ─ l2 ─ image_embeds [B, E]
//!                              └─ tokens [B, N_img, C_img] ─────────────┐
//! tokens [B, T] ──── text ─────── pooled [B, C_text] ─ text_projection ─ l2 ─ text_embeds [B, E]
//! tokens[:, ..T−1] ─ decoder (cross-attends to the image tokens) ─ logits [B, T−1, V]
//! logit_scale (a scalar) ─ exp ─ logit_scale
//! ```
//!
//! One forward pass returns everything both losses need: the two embeddings
//! for the contrastive loss (`exp(logit_scale) · image_embeds · text_embedsᵀ`),
//! and the logits for the captioning loss (targets `tokens[:, 1..]`). One
//! backward pass takes the gradients of those outputs and fills the gradient
//! of every parameter; the image tokens collect gradient from the decoder's
//! cross-attention *and* from the contrastive path through the pooled vector.

use embedding::{Layer, Linear, LinearCache, Params, prefixed};
use std::ops::Range;

use ndarray::{
    Array0, Array1, Array2, Array3, ArrayRef2, ArrayRef3, ArrayRef4, ArrayViewD, ArrayViewMutD,
    Axis, concatenate, s,
};
use rand::Rng;
use rayon::prelude::*;

use crate::config::{ConfigError, ModelConfig};
use crate::decoder::{Decoder, DecoderCache};
use crate::heads::{l2_normalize, l2_normalize_backward, projection};
use crate::image_encoder::{ImageEncoder, ImageEncoderCache};
use crate::text_encoder::{TextEncoder, TextEncoderCache, check_lengths};

// ANCHOR: model_struct
/// The model: image and text towers, their projections into the shared
/// space, the learnable logit scale, and the caption decoder.
///
/// Parameter names (`Params`): `image.*` (the tower's own names),
/// `text.token_embedding.weight`, `text.position_embedding.weight`,
/// `text.blocks.N.*`, `text.ln_final.*`, `image_projection.weight`,
/// `text_projection.weight`, `logit_scale`, `decoder.token_embedding.weight`,
/// `decoder.position_embedding.weight`, `decoder.blocks.N.*`,
/// `decoder.ln_final.*`, and `decoder.lm_head.weight` when not tied.
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    /// The image tower (ViT or CNN).
    pub image: ImageEncoder,
    /// The text tower.
    pub text: TextEncoder,
    /// `[E, C_img]`, no bias.
    pub image_projection: Linear,
    /// `[E, C_text]`, no bias.
    pub text_projection: Linear,
    /// `ln(1/τ)`, a scalar; the outputs carry `exp(logit_scale)`.
    pub logit_scale: Array0<f32>,
    /// The caption decoder.
    pub decoder: Decoder,
    config: ModelConfig,
}

/// What one forward pass returns.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelOutput {
    /// `[B, E]`, unit rows.
    pub image_embeds: Array2<f32>,
    /// `[B, E]`, unit rows.
    pub text_embeds: Array2<f32>,
    /// `exp(logit_scale)`: the factor on the cosine similarities (`1/τ`).
    pub logit_scale: f32,
    /// `[B, T − 1, V]`: position `t` scores `tokens[:, t + 1]`.
    pub logits: Array3<f32>,
}

/// The gradients of a loss with respect to each [`ModelOutput`] field.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelOutputGrads {
    /// `[B, E]`
    pub dimage_embeds: Array2<f32>,
    /// `[B, E]`
    pub dtext_embeds: Array2<f32>,
    /// dL/d`exp(logit_scale)`.
    pub dlogit_scale: f32,
    /// `[B, T − 1, V]`
    pub dlogits: Array3<f32>,
}

/// What [`Model::backward`] needs: one cache per slice of the batch
/// (see [`Model::forward`]).
#[derive(Debug, Clone)]
pub struct ModelCache {
    slices: Vec<(Range<usize>, SliceCache)>, // the rows b of each slice, and its cache
}

/// The cache of one slice of the batch (`B` below is the slice's size).
#[derive(Debug, Clone)]
struct SliceCache {
    image: ImageEncoderCache,
    image_projection: LinearCache,
    image_embeds: Array2<f32>, // [B, E]: l2's output, reused by its backward
    image_norms: Array1<f32>,  // [B]
    text: TextEncoderCache,
    text_projection: LinearCache,
    text_embeds: Array2<f32>, // [B, E]
    text_norms: Array1<f32>,  // [B]
    decoder: DecoderCache,
    image_tokens_dim: (usize, usize, usize), // (B, N_img, C_img)
}
// ANCHOR_END: model_struct

// ANCHOR: batch_slices
/// The most slices [`Model::forward`] cuts a batch into. A constant, not the
/// thread count: the slices fix the order of every sum over the batch, so the
/// results do not depend on how many threads ran them. Four keep two cores
/// busy when one of them is shared, and leave each slice's matrix products
/// large enough to run at full speed.
pub const BATCH_SLICES: usize = 4;

/// The rows of each slice of a batch of `batch` examples: at most
/// [`BATCH_SLICES`] consecutive ranges whose sizes differ by at most one.
///
/// ```
/// assert_eq!(model::batch_slices(10), [0..2, 2..5, 5..7, 7..10]);
/// assert_eq!(model::batch_slices(2), [0..1, 1..2]);
/// ```
pub fn batch_slices(batch: usize) -> Vec<Range<usize>> {
    let n = BATCH_SLICES.min(batch).max(1);
    (0..n).map(|i| i * batch / n..(i + 1) * batch / n).collect()
}
// ANCHOR_END: batch_slices

impl ModelConfig {
    /// A fresh model of this shape.
    ///
    /// # Errors
    /// The [`ConfigError`] of [`ModelConfig::validate`] if the shape is impossible.
    pub fn init(&self, rng: &mut impl Rng) -> Result<Model, ConfigError> {
        self.validate()?;
        let image = self.image.init(rng);
        let text = self.text.init(self.vocab, self.max_len, rng);
        let image_projection = projection(self.image.width(), self.embed_dim, rng);
        let text_projection = projection(self.text.width, self.embed_dim, rng);
        let decoder = self
            .decoder
            .init(self.vocab, self.max_len, self.image.width(), rng);
        Ok(Model {
            image,
            text,
            image_projection,
            text_projection,
            logit_scale: Array0::from_elem((), self.logit_scale_init),
            decoder,
            config: self.clone(),
        })
    }
}

impl Model {
    /// The shape this model was built with.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// `exp(logit_scale)`, the inverse temperature `1/τ`.
    pub fn logit_scale_exp(&self) -> f32 {
        self.logit_scale[()].exp()
    }

    /// Keeps `logit_scale ≤ ln 100` (the config's maximum), as open_clip
    /// does after each optimiser step: a larger scale lets the contrastive
    /// loss sharpen without bound and destabilises training.
    pub fn clamp_logit_scale(&mut self) {
        let max = self.config.logit_scale_max;
        self.logit_scale.mapv_inplace(|s| s.min(max));
    }

    // ANCHOR: encode
    /// The image tokens (for the decoder) and the image embeddings.
    ///
    /// # Shapes
    /// - `images: [B, C_in, H, W]` → `image_tokens: [B, N_img, C_img]`, `image_embeds: [B, E]`
    ///
    /// # Panics
    /// If the images do not have the configured channels and size.
    #[track_caller]
    pub fn encode_images(&self, images: &ArrayRef4<f32>) -> (Array3<f32>, Array2<f32>) {
        let (out, _) = self.image.forward(images);
        let (projected, _) = self
            .image_projection
            .forward(&out.pooled.view().insert_axis(Axis(1))); // [B, 1, E]
        let (embeds, _) = l2_normalize(&projected.remove_axis(Axis(1)));
        (out.tokens, embeds)
    }

    /// The text embeddings of `B` captions `<|bos|> caption <|eos|> <|pad|>…`,
    /// each read at its `<|eos|>`, position `lengths[b] − 1`.
    ///
    /// # Shapes
    /// - `tokens: [B, T]`, `lengths: [B]` → `text_embeds: [B, E]`
    ///
    /// # Panics
    /// If `lengths` is not `B` values in `1..=T`, a token is outside the
    /// vocabulary, or `T > max_len`.
    #[track_caller]
    pub fn encode_texts(&self, tokens: &ArrayRef2<u32>, lengths: &[usize]) -> Array2<f32> {
        let (pooled, _) = self.text.forward(tokens, lengths);
        let (projected, _) = self
            .text_projection
            .forward(&pooled.view().insert_axis(Axis(1)));
        l2_normalize(&projected.remove_axis(Axis(1))).0
    }
    // ANCHOR_END: encode

    // ANCHOR: forward
    /// One forward pass for a batch of `(image, caption)` pairs.
    ///
    /// `tokens[b]` is `<|bos|> caption <|eos|> <|pad|>…` and `lengths[b]`
    /// counts `<|bos|>` to `<|eos|>` inclusive. The text tower reads all of
    /// `tokens` (pooled at `<|eos|>`); the decoder reads `tokens[:, ..T−1]` and
    /// its logits at position `t` score `tokens[:, t + 1]` (the loss ignores
    /// padding targets).
    ///
    /// Every example is independent of the others until the loss, so the
    /// batch is cut into [`batch_slices`] that run on rayon's threads (data
    /// parallelism, as on several GPUs) and their outputs are stacked again.
    ///
    /// # Shapes
    /// - `images: [B, C_in, H, W]`, `tokens: [B, T]`, `lengths: [B]` →
    ///   `image_embeds, text_embeds: [B, E]`, `logits: [B, T − 1, V]`
    ///
    /// # Panics
    /// If the batch sizes disagree, `T < 2` or `T > max_len`, `lengths` is
    /// not `B` values in `1..=T`, or a token is outside the vocabulary.
    #[track_caller]
    pub fn forward(
        &self,
        images: &ArrayRef4<f32>,
        tokens: &ArrayRef2<u32>,
        lengths: &[usize],
    ) -> (ModelOutput, ModelCache) {
        let (batch, seq) = tokens.dim();
        assert!(
            images.dim().0 == batch && seq >= 2,
            "model: images are {:?}, tokens are {:?} (same B, and T ≥ 2 for <|bos|> and <|eos|>)",
            images.dim(),
            tokens.dim()
        );
        check_lengths("model", lengths, batch, seq);
        let slices: Vec<_> = batch_slices(batch)
            .into_par_iter()
            .map(|rows| {
                let (out, cache) = self.forward_slice(
                    &images.slice(s![rows.clone(), .., .., ..]),
                    &tokens.slice(s![rows.clone(), ..]),
                    &lengths[rows.clone()],
                );
                (out, (rows, cache))
            })
            .collect();
        let stack2 = |field: fn(&ModelOutput) -> &Array2<f32>| {
            let parts: Vec<_> = slices.iter().map(|(out, _)| field(out).view()).collect();
            concatenate(Axis(0), &parts).unwrap()
        };
        let logits: Vec<_> = slices.iter().map(|(out, _)| out.logits.view()).collect();
        let output = ModelOutput {
            image_embeds: stack2(|out| &out.image_embeds),
            text_embeds: stack2(|out| &out.text_embeds),
            logit_scale: self.logit_scale_exp(),
            logits: concatenate(Axis(0), &logits).unwrap(),
        };
        let slices = slices.into_iter().map(|(_, cache)| cache).collect();
        (output, ModelCache { slices })
    }

    /// [`Model::forward`] on one slice of the batch: the whole model, in order.
    fn forward_slice(
        &self,
        images: &ArrayRef4<f32>,
        tokens: &ArrayRef2<u32>,
        lengths: &[usize],
    ) -> (ModelOutput, SliceCache) {
        let seq = tokens.ncols();

        // the image tower, and its pooled vector into the shared space
        let (image_out, image) = self.image.forward(images); // tokens [B, N_img, C_img], pooled [B, C_img]
        let (projected, image_projection) = self
            .image_projection
            .forward(&image_out.pooled.view().insert_axis(Axis(1))); // [B, 1, E]
        let (image_embeds, image_norms) = l2_normalize(&projected.remove_axis(Axis(1))); // [B, E]

        // the text tower, pooled at <|eos|>, into the shared space
        let (pooled, text) = self.text.forward(tokens, lengths); // [B, C_text]
        let (projected, text_projection) = self
            .text_projection
            .forward(&pooled.view().insert_axis(Axis(1))); // [B, 1, E]
        let (text_embeds, text_norms) = l2_normalize(&projected.remove_axis(Axis(1))); // [B, E]

        // the decoder reads the caption up to the last token and the image tokens
        let (logits, decoder) = self
            .decoder
            .forward(&image_out.tokens, &tokens.slice(s![.., ..seq - 1])); // [B, T−1, V]

        let output = ModelOutput {
            image_embeds: image_embeds.clone(),
            text_embeds: text_embeds.clone(),
            logit_scale: self.logit_scale_exp(),
            logits,
        };
        let cache = SliceCache {
            image,
            image_projection,
            image_embeds,
            image_norms,
            text,
            text_projection,
            text_embeds,
            text_norms,
            decoder,
            image_tokens_dim: image_out.tokens.dim(),
        };
        (output, cache)
    }
    // ANCHOR_END: forward

    // ANCHOR: backward
    /// Adds the gradient of every parameter into `grads` (a zeroed twin,
    /// [`Params::zeros_like`]), from the gradients of the outputs.
    ///
    /// The slices of the forward pass run backward in parallel too. Each
    /// collects its parameter gradients on its own (the first in `grads`, the
    /// others in zeroed twins), and the twins are added into `grads` in slice
    /// order: the same sums in the same order whatever the thread count, so a
    /// run is bit for bit the same on one thread or many.
    ///
    /// # Panics
    /// If a gradient's shape differs from its output's.
    #[track_caller]
    pub fn backward(&self, dout: &ModelOutputGrads, cache: &ModelCache, grads: &mut Model) {
        // in the forward pass this was:
        //   logit_scale_out = exp(logit_scale)
        // so now we have:
        grads.logit_scale[()] += dout.dlogit_scale * self.logit_scale_exp();

        let mut twins: Vec<Model> = cache.slices[1..]
            .iter()
            .map(|_| self.zeros_like())
            .collect();
        let mut targets: Vec<&mut Model> = std::iter::once(&mut *grads).chain(&mut twins).collect();
        targets
            .par_iter_mut()
            .zip(&cache.slices)
            .for_each(|(grads, (rows, cache))| {
                let rows = rows.clone();
                self.backward_slice(
                    &dout.dimage_embeds.slice(s![rows.clone(), ..]),
                    &dout.dtext_embeds.slice(s![rows.clone(), ..]),
                    &dout.dlogits.slice(s![rows, .., ..]),
                    cache,
                    grads,
                );
            });
        for twin in &twins {
            for ((_, mut sum), (_, part)) in grads.params_mut().into_iter().zip(twin.params()) {
                sum.zip_mut_with(&part, |sum, &part| *sum += part);
            }
        }
    }

    /// [`Model::backward`] on one slice of the batch, every part but the
    /// logit scale: `dimage_embeds, dtext_embeds: [B, E]`, `dlogits: [B, T − 1, V]`.
    fn backward_slice(
        &self,
        dimage_embeds: &ArrayRef2<f32>,
        dtext_embeds: &ArrayRef2<f32>,
        dlogits: &ArrayRef3<f32>,
        cache: &SliceCache,
        grads: &mut Model,
    ) {
        // image: embeds = l2(pooled Wᵀ)
        let dprojected =
            l2_normalize_backward(dimage_embeds, &cache.image_embeds, &cache.image_norms); // [B, E]
        let dimage_pooled = self.image_projection.backward(
            &dprojected.insert_axis(Axis(1)),
            &cache.image_projection,
            &mut grads.image_projection,
        ); // [B, 1, C_img]

        // text: embeds = l2(pooled Wᵀ)
        let dprojected = l2_normalize_backward(dtext_embeds, &cache.text_embeds, &cache.text_norms);
        let dtext_pooled = self.text_projection.backward(
            &dprojected.insert_axis(Axis(1)),
            &cache.text_projection,
            &mut grads.text_projection,
        ); // [B, 1, C_text]
        self.text.backward(
            &dtext_pooled.remove_axis(Axis(1)),
            &cache.text,
            &mut grads.text,
        );

        // the decoder, which also returns the gradient of the image tokens
        let dimage_tokens = self
            .decoder
            .backward(dlogits, &cache.decoder, &mut grads.decoder); // [B, N_img, C_img]
        assert_eq!(dimage_tokens.dim(), cache.image_tokens_dim);

        // the image tower gets both: the tokens' gradient and the pooled vector's
        self.image.backward(
            &dimage_tokens,
            &dimage_pooled.remove_axis(Axis(1)),
            &cache.image,
            &mut grads.image,
        );
    }
    // ANCHOR_END: backward
}

impl Params for Model {
    fn params(&self) -> Vec<(String, ArrayViewD<'_, f32>)> {
        let mut list: Vec<_> = prefixed("image", self.image.params()).collect();
        list.extend(prefixed("text", self.text.params()));
        list.extend(prefixed("image_projection", self.image_projection.params()));
        list.extend(prefixed("text_projection", self.text_projection.params()));
        list.push((
            "logit_scale".to_string(),
            self.logit_scale.view().into_dyn(),
        ));
        list.extend(prefixed("decoder", self.decoder.params()));
        list
    }

    fn params_mut(&mut self) -> Vec<(String, ArrayViewMutD<'_, f32>)> {
        let mut list: Vec<_> = prefixed("image", self.image.params_mut()).collect();
        list.extend(prefixed("text", self.text.params_mut()));
        list.extend(prefixed(
            "image_projection",
            self.image_projection.params_mut(),
        ));
        list.extend(prefixed(
            "text_projection",
            self.text_projection.params_mut(),
        ));
        list.push((
            "logit_scale".to_string(),
            self.logit_scale.view_mut().into_dyn(),
        ));
        list.extend(prefixed("decoder", self.decoder.params_mut()));
        list
    }
}

impl ModelOutputGrads {
    /// Zero gradients shaped like `output` (fill in the ones a loss uses).
    pub fn zeros_like(output: &ModelOutput) -> Self {
        ModelOutputGrads {
            dimage_embeds: Array2::zeros(output.image_embeds.dim()),
            dtext_embeds: Array2::zeros(output.text_embeds.dim()),
            dlogit_scale: 0.0,
            dlogits: Array3::zeros(output.logits.dim()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Head, ImageConfig};
    use embedding::init;
    use embedding::testing::{GradCheck, fakeloss};
    use ndarray::{Array4, array};
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    const VOCAB: usize = 12; // bos 9, eos 10, pad 11

    fn micro(image: ImageConfig, head: Head, seed: u64) -> Model {
        let mut config = ModelConfig::micro(VOCAB);
        config.image = image;
        config.decoder.head = head;
        let mut rng = StdRng::seed_from_u64(seed);
        let mut model = config.init(&mut rng).unwrap();
        // tables at std 1, not 0.02: LayerNorm divides by the std of its
        // input, and at 0.02 a finite-difference step of 1e-2 is not small
        for table in [
            &mut model.text.token_embedding.weight,
            &mut model.text.position_embedding.weight,
            &mut model.decoder.token_embedding.weight,
            &mut model.decoder.position_embedding.weight,
        ] {
            *table = init::normal(table.dim(), 1.0, &mut rng);
        }
        match &mut model.image {
            ImageEncoder::Vit(vit) => {
                vit.cls_token = init::normal(vit.cls_token.dim(), 1.0, &mut rng);
                vit.pos_embed.weight = init::normal(vit.pos_embed.weight.dim(), 1.0, &mut rng);
            }
            ImageEncoder::Cnn(cnn) => {
                // positive biases keep every ReLU on its linear side (see smooth_cnn)
                for block in &mut cnn.blocks {
                    if let Some(bias) = &mut block.conv.bias {
                        bias.fill(3.0);
                    }
                }
            }
        }
        model
    }

    /// subtle: ReLU and max pooling have kinks, and a central difference
    /// whose ±h step crosses one (a pre-activation changing sign, a pooling
    /// window changing its winner) measures neither side's slope. With a
    /// whole model behind them, some crossing happens for almost every seed.
    /// So the gradient check's CNN pools by 1 (the identity) and its biases
    /// start at 3 (every ReLU active): the wiring of the CNN into the model
    /// is checked exactly, and pooling is left to the vision crate's tests.
    fn smooth_cnn() -> ImageConfig {
        ImageConfig::Cnn {
            cnn: vision::CnnConfig {
                in_channels: 3,
                channels: vec![4, 6],
                kernel: 3,
                pool: 1,
            },
            image_size: 4,
        }
    }

    fn batch(image_size: usize) -> (Array4<f32>, Array2<u32>, Vec<usize>) {
        let shape = (2, 3, image_size, image_size);
        let images = init::normal(shape, 1.0, &mut StdRng::seed_from_u64(100));
        let tokens = array![[9, 1, 2, 3, 10, 11], [9, 4, 10, 11, 11, 11]];
        (images, tokens, vec![5, 3])
    }

    fn output_grads(output: &ModelOutput, seed: u64) -> ModelOutputGrads {
        let mut rng = StdRng::seed_from_u64(seed);
        ModelOutputGrads {
            dimage_embeds: init::normal(output.image_embeds.dim(), 1.0, &mut rng),
            dtext_embeds: init::normal(output.text_embeds.dim(), 1.0, &mut rng),
            dlogit_scale: 0.3,
            dlogits: init::normal(output.logits.dim(), 1.0, &mut rng),
        }
    }

    /// `L = Σ out ⊙ dout` over all four outputs.
    fn fake(output: &ModelOutput, dout: &ModelOutputGrads) -> f64 {
        fakeloss(&output.image_embeds, &dout.dimage_embeds)
            + fakeloss(&output.text_embeds, &dout.dtext_embeds)
            + output.logit_scale as f64 * dout.dlogit_scale as f64
            + fakeloss(&output.logits, &dout.dlogits)
    }

    // ANCHOR: whole_model_gradcheck
    #[test]
    fn whole_model_gradcheck_both_encoders_both_heads() {
        for image in [ModelConfig::micro(VOCAB).image, smooth_cnn()] {
            for head in [Head::Tied, Head::Separate] {
                let mut model = micro(image.clone(), head, 1);
                let (images, tokens, lengths) = batch(image.image_size());
                let (output, cache) = model.forward(&images, &tokens, &lengths);
                let dout = output_grads(&output, 2);
                let mut grads = model.zeros_like();
                model.backward(&dout, &cache, &mut grads);
                // every tensor; at most 24 evenly spread elements of each
                let check = GradCheck {
                    max_per_tensor: 24,
                    ..crate::gradcheck()
                };
                let report = check
                    .run(&mut model, &grads, |m| {
                        fake(&m.forward(&images, &tokens, &lengths).0, &dout)
                    })
                    .into_result()
                    .unwrap_or_else(|r| panic!("{image:?} {head:?}: {r}"));
                assert!(report.checked > 500, "{}", report.checked);
            }
        }
    }
    // ANCHOR_END: whole_model_gradcheck

    /// Forward and backward of `model` on a batch of 7 (four uneven slices)
    /// inside a rayon pool of `threads` threads: the outputs and every gradient.
    fn run_on_threads(model: &Model, threads: usize) -> (ModelOutput, Model) {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let images = init::normal((7, 3, 8, 8), 1.0, &mut StdRng::seed_from_u64(7));
            let lengths: Vec<usize> = (0..7).map(|b| 2 + b % 5).collect();
            let tokens = Array2::from_shape_fn((7, 6), |(b, t)| match t {
                0 => 9,
                t if t + 1 == lengths[b] => 10,
                t if t >= lengths[b] => 11,
                t => ((b + t) % 9) as u32,
            });
            let (output, cache) = model.forward(&images, &tokens, &lengths);
            let mut grads = model.zeros_like();
            model.backward(&output_grads(&output, 8), &cache, &mut grads);
            (output, grads)
        })
    }

    #[test]
    fn results_are_bit_for_bit_the_same_on_any_thread_count() {
        assert_eq!(batch_slices(7), [0..1, 1..3, 3..5, 5..7]);
        for image in [ModelConfig::micro(VOCAB).image, ModelConfig::micro_cnn()] {
            let model = micro(image, Head::Tied, 6);
            let (output, grads) = run_on_threads(&model, 1);
            for threads in [2, 3] {
                let (other_output, other_grads) = run_on_threads(&model, threads);
                assert_eq!(other_output, output, "{threads} threads");
                let bits = |m: &Model| -> Vec<u32> {
                    m.params()
                        .iter()
                        .flat_map(|(_, t)| t.iter().map(|x| x.to_bits()).collect::<Vec<_>>())
                        .collect()
                };
                assert_eq!(bits(&other_grads), bits(&grads), "{threads} threads");
            }
        }
    }

    #[test]
    fn every_parameter_receives_a_gradient() {
        for head in [Head::Tied, Head::Separate] {
            let model = micro(ModelConfig::micro(VOCAB).image, head, 3);
            let (images, tokens, lengths) = batch(8);
            let (output, cache) = model.forward(&images, &tokens, &lengths);
            let mut grads = model.zeros_like();
            model.backward(&output_grads(&output, 4), &cache, &mut grads);
            for (name, g) in grads.params() {
                assert!(g.iter().any(|&v| v != 0.0), "{name} has no gradient");
            }
        }
    }

    #[test]
    fn names_are_the_agreed_ones() {
        let model = micro(ModelConfig::micro(VOCAB).image, Head::Separate, 0);
        let names: Vec<String> = model.params().into_iter().map(|(n, _)| n).collect();
        for expected in [
            "image.patch_embed.proj.weight",
            "image.cls_token",
            "text.token_embedding.weight",
            "text.position_embedding.weight",
            "text.blocks.0.attn.qkv.weight",
            "text.ln_final.weight",
            "image_projection.weight",
            "text_projection.weight",
            "logit_scale",
            "decoder.token_embedding.weight",
            "decoder.position_embedding.weight",
            "decoder.blocks.0.cross_attn.kv.weight",
            "decoder.ln_final.bias",
            "decoder.lm_head.weight",
        ] {
            assert!(names.iter().any(|n| n == expected), "{expected} missing");
        }
        let tied = micro(ModelConfig::micro(VOCAB).image, Head::Tied, 0);
        assert!(
            !tied
                .params()
                .iter()
                .any(|(n, _)| n == "decoder.lm_head.weight")
        );
        assert_eq!(
            model.num_params(),
            tied.num_params() + VOCAB * model.decoder.width()
        );
    }

    #[test]
    fn forward_agrees_with_the_inference_entry_points() {
        let model = micro(ModelConfig::micro_cnn(), Head::Tied, 5);
        let (images, tokens, lengths) = batch(8);
        let (output, _) = model.forward(&images, &tokens, &lengths);
        let (image_tokens, image_embeds) = model.encode_images(&images);
        assert_eq!(image_embeds, output.image_embeds);
        assert_eq!(model.encode_texts(&tokens, &lengths), output.text_embeds);
        let logits = model
            .decoder
            .logits(&image_tokens, &tokens.slice(s![.., ..5]));
        assert_eq!(logits, output.logits);
        for row in output
            .image_embeds
            .rows()
            .into_iter()
            .chain(output.text_embeds.rows())
        {
            assert!((row.dot(&row) - 1.0).abs() < 1e-5);
        }
        assert!((output.logit_scale - 1.0 / 0.07).abs() < 1e-3);
    }

    #[test]
    fn logit_scale_is_clamped_at_ln_100() {
        let mut model = micro(ModelConfig::micro(VOCAB).image, Head::Tied, 0);
        model.logit_scale[()] = 7.0;
        model.clamp_logit_scale();
        assert!((model.logit_scale_exp() - 100.0).abs() < 1e-3);
        model.logit_scale[()] = 1.0;
        model.clamp_logit_scale();
        assert_eq!(model.logit_scale[()], 1.0);
    }

    #[test]
    fn save_then_load_gives_identical_outputs() {
        let model = micro(ModelConfig::micro(VOCAB).image, Head::Separate, 6);
        let path =
            std::env::temp_dir().join(format!("model-core-{}.safetensors", std::process::id()));
        crate::save_weights(&path, &model, &Default::default()).unwrap();
        let mut loaded = micro(ModelConfig::micro(VOCAB).image, Head::Separate, 7);
        assert_ne!(loaded, model);
        crate::load_weights(&path, &mut loaded).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(loaded, model);
        let (images, tokens, lengths) = batch(8);
        assert_eq!(
            loaded.forward(&images, &tokens, &lengths).0,
            model.forward(&images, &tokens, &lengths).0
        );
    }

    #[test]
    fn an_impossible_config_is_an_error_not_a_panic() {
        let mut config = ModelConfig::micro(VOCAB);
        config.decoder.n_head = 3;
        let err = config.init(&mut StdRng::seed_from_u64(0)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "decoder.width = 10 is not divisible by decoder.n_head = 3"
        );
    }

    #[test]
    fn tiny_config_shapes() {
        let model = ModelConfig::tiny(300)
            .init(&mut StdRng::seed_from_u64(0))
            .unwrap();
        let images = Array4::zeros((2, 3, 32, 32));
        let tokens = Array2::from_elem((2, 16), 5u32);
        let (output, _) = model.forward(&images, &tokens, &[16, 4]);
        assert_eq!(output.image_embeds.dim(), (2, 64));
        assert_eq!(output.logits.dim(), (2, 15, 300));
    }
}
