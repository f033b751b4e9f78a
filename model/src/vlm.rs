//! The multimodal LLM: a decoder-only language model whose context holds
//! the picture (LLaVA's layout; PaliGemma's mask as an option).
//!
//! ```text
//! images [B, 3, H, W] ─ vision_tower ─ tokens [B, N_img, C_img] ─ multi_modal_projector ─ [B, N, C_lm] ─┐
//! tokens [B, T]  <|user|> <|image|> what colour … <|assistant|> red <|end|>                            │
//!   ─ token_embedding ─ [B, T, C_lm] ─ splice: the N image vectors replace <|image|> ─────────────────┴─ x [B, T + N − 1, C_lm]
//!   ─ language_model (causal, or prefix-LM over image + question) ─ logits [B, T + N − 1, V]
//! ```
//!
//! The language model does not know that some of its inputs came from a
//! picture: they are vectors in its context like the token vectors around
//! them, and it predicts the next token by reading them all. This is the
//! third way to join vision and language in this workspace, after the shared
//! space (CLIP) and cross-attention (the caption decoder), and the one
//! behind today's multimodal chat models.
//!
//! ## Splicing
//! Row `b` holds the placeholder `<|image|>` at one position `p[b]`. The
//! spliced sequence keeps text positions `t < p[b]` where they are, puts
//! image token `i` at `p[b] + i`, and moves text positions `t > p[b]` to
//! `t + N − 1`. Rows stay aligned at their start, and padding stays at the
//! end. The backward pass cuts the input gradient the same way: the image
//! positions' rows go to the projector, the others to the token table.
//!
//! ## Masks
//! - [`VlmMask::Causal`]: every position sees itself and what comes before
//!   (LLaVA).
//! - [`VlmMask::PrefixLm`]: the image and the first question (everything
//!   before the first `<|assistant|>`) see each other both ways, and the
//!   answers are causal (PaliGemma). A question word can then attend to the
//!   image tokens after it, and the image tokens to the question.
//!
//! ## Freezing
//! A training stage can freeze any of the three parts ([`Freeze`]). A frozen
//! part gets no parameter gradient and costs no parameter-gradient work: a
//! frozen vision tower runs forward only and keeps no cache; a frozen
//! projector or language model still passes the gradient down when
//! something below it trains, through its layers' `backward_input`.
//!
//! Parameter names follow Hugging Face's LLaVA: `vision_tower.*` (the
//! tower's own names), `multi_modal_projector.linear_1.weight`, …,
//! `language_model.token_embedding.weight`, `language_model.blocks.0.*`, ….

use std::ops::Range;

use attention::Mask;
use embedding::{EmbeddingCache, Params, prefixed};
use ndarray::{
    Array2, Array3, ArrayRef2, ArrayRef3, ArrayRef4, ArrayViewD, ArrayViewMutD, Axis, concatenate,
    s,
};
use rand::Rng;
use rayon::prelude::*;

use crate::chat::ChatTokens;
use crate::config::{ConfigError, ImageConfig};
use crate::image_encoder::{ImageEncoder, ImageEncoderCache};
use crate::lm::{LanguageModel, LmCache, LmConfig, LmState};
use crate::model::batch_slices;
use crate::projector::{
    ImageGrid, Projector, ProjectorCache, ProjectorConfig, ProjectorKind, TokenPool,
};

// ANCHOR: vlm_config
/// Which positions see which in the language model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VlmMask {
    /// Causal everywhere (LLaVA).
    Causal,
    /// Both ways over the image and the first question, causal over the
    /// answers (PaliGemma's prefix-LM).
    PrefixLm,
}

/// Everything that fixes the shapes of a [`Vlm`].
#[derive(Debug, Clone, PartialEq)]
pub struct VlmConfig {
    /// The vision tower (the same config as the CLIP model's image tower,
    /// so a CLIP run's tower loads into it).
    pub vision: ImageConfig,
    /// Which image tokens, pooled how, mapped by which projector.
    pub projector: ProjectorConfig,
    /// The language model; `lm.max_len` counts the image tokens too.
    pub lm: LmConfig,
    /// Causal or prefix-LM.
    pub mask: VlmMask,
    /// The chat format's special token IDs.
    pub tokens: ChatTokens,
}
// ANCHOR_END: vlm_config

impl VlmConfig {
    /// The teaching size: the tiny CNN tower (32×32 images, an 8×8 grid of
    /// width 64), an MLP projector over 2×2-averaged cells (16 image
    /// tokens), the tiny language model (width 64, 2 blocks), causal. The
    /// chat tokens are the vocabulary's last five, the order of
    /// [`VlmConfig::last_five`]; set `tokens` if yours differ.
    pub fn tiny(vocab: usize, max_len: usize) -> Self {
        VlmConfig {
            vision: ImageConfig::tiny_cnn(),
            projector: ProjectorConfig {
                kind: ProjectorKind::Mlp,
                pool: TokenPool::Average2,
                keep_cls: false,
            },
            lm: LmConfig::tiny(vocab, max_len),
            mask: VlmMask::Causal,
            tokens: Self::last_five(vocab),
        }
    }

    /// Small enough to check every gradient by finite differences: 8×8
    /// images, a micro ViT (a 2×2 grid of width 12 and a CLS token), a
    /// linear projector over every cell, a 2-block language model of width 8.
    pub fn micro(vocab: usize, max_len: usize) -> Self {
        VlmConfig {
            vision: crate::ModelConfig::micro(vocab).image,
            projector: ProjectorConfig {
                kind: ProjectorKind::Mlp,
                pool: TokenPool::None,
                keep_cls: true,
            },
            lm: LmConfig::micro(vocab, max_len),
            mask: VlmMask::Causal,
            tokens: Self::last_five(vocab),
        }
    }

    /// `<|image|>`, `<|user|>`, `<|assistant|>`, `<|end|>`, `<|pad|>` as the
    /// vocabulary's last five IDs.
    pub fn last_five(vocab: usize) -> ChatTokens {
        let id = |back: usize| vocab.saturating_sub(back) as u32;
        ChatTokens {
            image: id(5),
            user: id(4),
            assistant: id(3),
            end: id(2),
            pad: id(1),
        }
    }

    /// Where the vision tower's tokens lie.
    pub fn grid(&self) -> ImageGrid {
        self.vision.grid()
    }

    /// Image tokens per picture in the language model's context.
    pub fn num_image_tokens(&self) -> usize {
        self.projector.num_tokens(&self.grid())
    }

    // ANCHOR: vlm_validate
    /// Checks that a model of this shape can be built and run.
    ///
    /// # Errors
    /// The first problem found, as a [`ConfigError`] naming the field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        use ConfigError::*;
        self.vision.validate()?;
        validate_lm(&self.lm)?;
        let grid = self.grid();
        let pooled = self.projector.pool != TokenPool::None;
        if pooled && !grid.side.is_multiple_of(2) {
            return Err(Projector {
                message: format!(
                    "projector.pool pools 2×2 blocks, but the image grid is {0}×{0}",
                    grid.side
                ),
            });
        }
        if self.projector.keep_cls && !grid.cls {
            return Err(Projector {
                message: "projector.keep_cls = true, but a CNN tower has no CLS token".into(),
            });
        }
        if self.projector.keep_cls && self.projector.pool == TokenPool::PixelShuffle2 {
            return Err(Projector {
                message: "projector.keep_cls = true with pixel shuffle: the CLS token is C_img \
                          wide, the shuffled tokens 4·C_img"
                    .into(),
            });
        }
        for (name, id) in self.tokens.named() {
            if id as usize >= self.lm.vocab {
                return Err(SpecialTokenOutOfRange {
                    name,
                    id,
                    vocab: self.lm.vocab,
                });
            }
        }
        let ids = self.tokens.named().map(|(_, id)| id);
        if (1..ids.len()).any(|i| ids[..i].contains(&ids[i])) {
            return Err(ChatTokensNotDistinct { ids: ids.to_vec() });
        }
        // the image, and room for <|user|> q <|assistant|> a <|end|> at least
        let needed = self.num_image_tokens() + 4;
        if self.lm.max_len < needed {
            return Err(LmTooShort {
                max_len: self.lm.max_len,
                image_tokens: self.num_image_tokens(),
            });
        }
        Ok(())
    }
    // ANCHOR_END: vlm_validate

    /// A fresh model of this shape.
    ///
    /// # Errors
    /// The [`ConfigError`] of [`VlmConfig::validate`] if the shape is impossible.
    pub fn init(&self, rng: &mut impl Rng) -> Result<Vlm, ConfigError> {
        self.validate()?;
        let vision_tower = self.vision.init(rng);
        let multi_modal_projector = self.projector.init(&self.grid(), self.lm.width, rng);
        let language_model = self.lm.init(rng);
        Ok(Vlm {
            vision_tower,
            multi_modal_projector,
            language_model,
            config: self.clone(),
        })
    }
}

/// Checks a language model's shape (the text-only model's too).
///
/// # Errors
/// The first problem, naming the `lm.*` field.
pub fn validate_lm(lm: &LmConfig) -> Result<(), ConfigError> {
    use ConfigError::*;
    for (field, value) in [
        ("lm.vocab", lm.vocab),
        ("lm.max_len", lm.max_len),
        ("lm.width", lm.width),
        ("lm.depth", lm.depth),
        ("lm.n_head", lm.n_head),
        ("lm.mlp_hidden", lm.mlp_hidden),
    ] {
        if value == 0 {
            return Err(Zero { field });
        }
    }
    if !lm.width.is_multiple_of(lm.n_head) {
        return Err(NotDivisible {
            field: "lm.width",
            value: lm.width,
            by_field: "lm.n_head",
            by: lm.n_head,
        });
    }
    Ok(())
}

// ANCHOR: freeze
/// Which parts a training stage leaves alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Freeze {
    /// The vision tower: forward only, no cache, no gradient.
    pub vision_tower: bool,
    /// The projector: no parameter gradient (it still passes the gradient
    /// down when the tower trains).
    pub projector: bool,
    /// The language model: no parameter gradient (it still passes the
    /// gradient down to the projector).
    pub language_model: bool,
}

impl Freeze {
    /// Nothing frozen: everything trains.
    pub const NONE: Freeze = Freeze {
        vision_tower: false,
        projector: false,
        language_model: false,
    };

    /// Whether the parameter `name` (a [`Vlm`] name such as
    /// `language_model.blocks.0.attn.qkv.weight`) belongs to a frozen part:
    /// what an optimiser asks to skip it.
    pub fn is_frozen(&self, name: &str) -> bool {
        let part = name.split('.').next().unwrap_or("");
        match part {
            "vision_tower" => self.vision_tower,
            "multi_modal_projector" => self.projector,
            "language_model" => self.language_model,
            _ => false,
        }
    }
}
// ANCHOR_END: freeze

// ANCHOR: vlm_struct
/// The multimodal LLM: vision tower, projector, language model.
#[derive(Debug, Clone, PartialEq)]
pub struct Vlm {
    /// The image tower (ViT or CNN), usually from a CLIP run.
    pub vision_tower: ImageEncoder,
    /// Image tokens to language-model vectors.
    pub multi_modal_projector: Projector,
    /// The decoder-only language model, usually pretrained on text.
    pub language_model: LanguageModel,
    config: VlmConfig,
}

/// What [`Vlm::backward`] needs: one cache per slice of the batch, and
/// what was frozen in the forward pass.
#[derive(Debug, Clone)]
pub struct VlmCache {
    slices: Vec<(Range<usize>, SliceCache)>,
    freeze: Freeze,
}

/// The cache of one slice of the batch (`B` below is the slice's size).
#[derive(Debug, Clone)]
struct SliceCache {
    vision: Option<ImageEncoderCache>, // None when the tower is frozen
    tower_tokens_dim: (usize, usize, usize), // (B, N_img, C_img)
    projector: ProjectorCache,
    token_embedding: EmbeddingCache,
    image_at: Vec<usize>, // [B]: where <|image|> stood in each row
    language_model: LmCache,
}
// ANCHOR_END: vlm_struct

impl VlmCache {
    /// The language model's caches, one per slice of the batch, with the rows
    /// each covers (for the attention figures).
    pub fn language_model(&self) -> impl Iterator<Item = (Range<usize>, &LmCache)> {
        self.slices
            .iter()
            .map(|(rows, slice)| (rows.clone(), &slice.language_model))
    }
}

impl Vlm {
    /// The shape this model was built with.
    pub fn config(&self) -> &VlmConfig {
        &self.config
    }

    /// Image tokens per picture in the language model's context (`N`).
    pub fn num_image_tokens(&self) -> usize {
        self.config.num_image_tokens()
    }

    /// Where `<|image|>` stands in each row.
    ///
    /// # Panics
    /// If a row does not hold it exactly once.
    #[track_caller]
    pub fn image_positions(&self, tokens: &ArrayRef2<u32>) -> Vec<usize> {
        let image = self.config.tokens.image;
        tokens
            .rows()
            .into_iter()
            .enumerate()
            .map(|(b, row)| {
                let mut at = row
                    .iter()
                    .enumerate()
                    .filter(|(_, id)| **id == image)
                    .map(|(t, _)| t);
                match (at.next(), at.next()) {
                    (Some(t), None) => t,
                    _ => panic!("vlm: row {b} must hold <|image|> ({image}) exactly once"),
                }
            })
            .collect()
    }

    /// The attention mask of a batch, in spliced positions: causal, or
    /// prefix-LM with each row's prefix ending before its first
    /// `<|assistant|>` (the whole row when it has none: a prompt).
    pub fn mask(&self, tokens: &ArrayRef2<u32>) -> Mask {
        match self.config.mask {
            VlmMask::Causal => Mask::Causal,
            VlmMask::PrefixLm => {
                let extra = self.num_image_tokens() - 1; // the placeholder becomes N positions
                let assistant = self.config.tokens.assistant;
                let prefix = tokens
                    .rows()
                    .into_iter()
                    .map(|row| {
                        row.iter()
                            .position(|&id| id == assistant)
                            .unwrap_or(row.len())
                            + extra
                    })
                    .collect();
                Mask::PrefixLm(prefix)
            }
        }
    }

    // ANCHOR: targets
    /// The loss's targets and weights in spliced positions, from the text's:
    /// text token `t` of weight `w` (a [`crate::ChatExample`]'s) becomes the
    /// target of the position before it in the spliced sequence. Image
    /// positions and the last position predict nothing (weight 0).
    ///
    /// # Shapes
    /// - `tokens, weights: [B, T]` → `targets, weights: [B, T + N − 1]`
    ///
    /// # Panics
    /// As [`Vlm::image_positions`], or if the shapes differ.
    #[track_caller]
    pub fn targets(
        &self,
        tokens: &ArrayRef2<u32>,
        weights: &ArrayRef2<f32>,
    ) -> (Array2<u32>, Array2<f32>) {
        assert_eq!(
            tokens.dim(),
            weights.dim(),
            "vlm targets: tokens and weights differ in shape"
        );
        let (batch, seq) = tokens.dim();
        let n = self.num_image_tokens();
        let spliced = seq + n - 1;
        let mut targets = Array2::from_elem((batch, spliced), self.config.tokens.pad);
        let mut target_weights = Array2::zeros((batch, spliced));
        for (b, p) in self.image_positions(tokens).into_iter().enumerate() {
            for t in 1..seq {
                if t == p {
                    continue; // the image itself is not predicted
                }
                let at = if t < p { t } else { t + n - 1 }; // spliced position of token t
                targets[[b, at - 1]] = tokens[[b, t]];
                target_weights[[b, at - 1]] = weights[[b, t]];
            }
        }
        (targets, target_weights)
    }
    // ANCHOR_END: targets

    // ANCHOR: vlm_forward
    /// One forward pass: logits at every position of the spliced sequence.
    ///
    /// The batch is cut into [`batch_slices`] that run on rayon's threads, as
    /// [`crate::Model::forward`] does; the results do not depend on the
    /// thread count.
    ///
    /// # Shapes
    /// - `images: [B, C_in, H, W]`, `tokens: [B, T]` (one `<|image|>` per row)
    ///   → `logits: [B, T + N − 1, V]`
    ///
    /// # Panics
    /// If the batch sizes differ, a row lacks `<|image|>` or holds it twice,
    /// a token is outside the vocabulary, or `T + N − 1 > lm.max_len`.
    #[track_caller]
    pub fn forward(
        &self,
        images: &ArrayRef4<f32>,
        tokens: &ArrayRef2<u32>,
        freeze: Freeze,
    ) -> (Array3<f32>, VlmCache) {
        let batch = tokens.nrows();
        assert_eq!(
            images.dim().0,
            batch,
            "vlm: images are {:?}, tokens are {:?}",
            images.dim(),
            tokens.dim()
        );
        let slices: Vec<_> = batch_slices(batch)
            .into_par_iter()
            .map(|rows| {
                let (logits, cache) = self.forward_slice(
                    &images.slice(s![rows.clone(), .., .., ..]),
                    &tokens.slice(s![rows.clone(), ..]),
                    freeze,
                );
                (logits, (rows, cache))
            })
            .collect();
        let logits: Vec<_> = slices.iter().map(|(logits, _)| logits.view()).collect();
        let logits = concatenate(Axis(0), &logits).unwrap(); // same T and V in every slice
        let slices = slices.into_iter().map(|(_, cache)| cache).collect();
        (logits, VlmCache { slices, freeze })
    }

    /// [`Vlm::forward`] on one slice of the batch.
    fn forward_slice(
        &self,
        images: &ArrayRef4<f32>,
        tokens: &ArrayRef2<u32>,
        freeze: Freeze,
    ) -> (Array3<f32>, SliceCache) {
        // the picture: tower tokens, then the projector into the LM's width
        let (tower, vision) = self.vision_tower.forward(images); // [B, N_img, C_img]
        let vision = (!freeze.vision_tower).then_some(vision); // a frozen tower keeps no cache
        let (image_x, projector) = self.multi_modal_projector.forward(
            &tower.tokens,
            &self.config.grid(),
            &self.config.projector,
        ); // [B, N, C_lm]

        // the text: token vectors, with the picture spliced in at <|image|>
        let image_at = self.image_positions(tokens);
        let lm = &self.language_model;
        let (text_x, token_embedding) = lm.token_embedding.forward(tokens); // [B, T, C_lm]
        let x = splice(&text_x, &image_x, &image_at); // [B, T + N − 1, C_lm]

        // the language model reads it all
        let (logits, language_model) = lm.forward_embeds(&x, &self.mask(tokens)); // [B, T + N − 1, V]
        let cache = SliceCache {
            vision,
            tower_tokens_dim: tower.tokens.dim(),
            projector,
            token_embedding,
            image_at,
            language_model,
        };
        (logits, cache)
    }
    // ANCHOR_END: vlm_forward

    // ANCHOR: vlm_backward
    /// Adds the gradient of every trainable parameter into `grads` (a zeroed
    /// twin), from the gradient of the logits. Frozen parts (as the forward
    /// pass was told) get nothing and cost nothing beyond what passing the
    /// gradient down needs.
    ///
    /// # Panics
    /// If `dlogits` is not the logits' shape.
    #[track_caller]
    pub fn backward(&self, dlogits: &ArrayRef3<f32>, cache: &VlmCache, grads: &mut Vlm) {
        // slices run in parallel, each into its own twin (the first into
        // `grads`), added in slice order: the same sums on any thread count
        let mut twins: Vec<Vlm> = cache.slices[1..]
            .iter()
            .map(|_| self.zeros_like())
            .collect();
        let mut targets: Vec<&mut Vlm> = std::iter::once(&mut *grads).chain(&mut twins).collect();
        targets
            .par_iter_mut()
            .zip(&cache.slices)
            .for_each(|(grads, (rows, slice))| {
                self.backward_slice(
                    &dlogits.slice(s![rows.clone(), .., ..]),
                    slice,
                    cache.freeze,
                    grads,
                );
            });
        for twin in &twins {
            let pairs = grads.params_mut().into_iter().zip(twin.params());
            for ((name, mut sum), (_, part)) in pairs {
                if !cache.freeze.is_frozen(&name) {
                    sum.zip_mut_with(&part, |sum, &part| *sum += part);
                }
            }
        }
    }

    /// [`Vlm::backward`] on one slice of the batch: `dlogits: [B, T', V]`.
    fn backward_slice(
        &self,
        dlogits: &ArrayRef3<f32>,
        cache: &SliceCache,
        freeze: Freeze,
        grads: &mut Vlm,
    ) {
        let below_lm_trains = !freeze.projector || !freeze.vision_tower;
        if freeze.language_model && !below_lm_trains {
            return; // nothing trains
        }
        // the language model: its own gradients unless frozen, and dx of its inputs
        let lm = &self.language_model;
        let lm_grads = (!freeze.language_model).then_some(&mut grads.language_model);
        let dx = lm.backward_embeds(dlogits, &cache.language_model, lm_grads); // [B, T', C_lm]

        // un-splice: the text positions' rows to the token table, the image's to the projector
        let n = self.num_image_tokens();
        let (dtext, dimage) = unsplice(&dx, &cache.image_at, n); // [B, T, C_lm], [B, N, C_lm]
        if !freeze.language_model {
            lm.token_embedding.backward(
                &dtext,
                &cache.token_embedding,
                &mut grads.language_model.token_embedding,
            );
        }
        if !below_lm_trains {
            return;
        }

        // the projector, and the tower if it trains
        let projector_grads = (!freeze.projector).then_some(&mut grads.multi_modal_projector);
        let dtower = self.multi_modal_projector.backward(
            &dimage,
            &cache.projector,
            projector_grads,
            !freeze.vision_tower,
        );
        if let (Some(dtower), Some(vision)) = (dtower, &cache.vision) {
            assert_eq!(dtower.dim(), cache.tower_tokens_dim);
            let (batch, _, width) = cache.tower_tokens_dim;
            let dpooled = Array2::zeros((batch, width)); // the pooled vector is not used here
            self.vision_tower
                .backward(&dtower, &dpooled, vision, &mut grads.vision_tower);
        }
    }
    // ANCHOR_END: vlm_backward

    // ANCHOR: vlm_generate
    /// Reads the picture and a prompt (`<|user|> … <|image|> …`, and any
    /// earlier turns) in one pass and returns the state to continue from,
    /// with the logits after the prompt's last token. Under
    /// [`VlmMask::PrefixLm`] the prompt is the prefix: it sees itself both
    /// ways, exactly as in training.
    ///
    /// # Shapes
    /// - `images: [B, C_in, H, W]`, `tokens: [B, T]` → logits `[B, V]`
    ///
    /// # Panics
    /// As [`Vlm::forward`]; every row must have the same length (no padding).
    #[track_caller]
    pub fn prefill(
        &self,
        images: &ArrayRef4<f32>,
        tokens: &ArrayRef2<u32>,
    ) -> (VlmState, Array2<f32>) {
        let (tower, _) = self.vision_tower.forward(images); // [B, N_img, C_img]
        let (image_x, _) = self.multi_modal_projector.forward(
            &tower.tokens,
            &self.config.grid(),
            &self.config.projector,
        ); // [B, N, C_lm]
        let (text_x, _) = self.language_model.token_embedding.forward(tokens);
        let x = splice(&text_x, &image_x, &self.image_positions(tokens)); // [B, T + N − 1, C_lm]
        let mut state = VlmState {
            language_model: self.language_model.start(tokens.nrows()),
        };
        let logits =
            self.language_model
                .step_embeds(&mut state.language_model, &x, &self.mask(tokens));
        (state, logits)
    }

    /// Feeds more text after the cached prefix (an answer token, the next
    /// question), causally, and returns the logits after its last token.
    ///
    /// # Shapes
    /// - `tokens: [B, T_new]` → logits `[B, V]`
    ///
    /// # Panics
    /// If the text holds `<|image|>` (one picture per conversation), or the
    /// sequence would outgrow `lm.max_len`.
    #[track_caller]
    pub fn extend(&self, state: &mut VlmState, tokens: &ArrayRef2<u32>) -> Array2<f32> {
        let image = self.config.tokens.image;
        assert!(
            tokens.iter().all(|&id| id != image),
            "vlm extend: <|image|> may only stand in the first question"
        );
        self.language_model.step(&mut state.language_model, tokens)
    }
    // ANCHOR_END: vlm_generate
}

/// Where a conversation stands: the language model's KV caches over the
/// picture and every token so far.
#[derive(Debug, Clone)]
pub struct VlmState {
    language_model: LmState,
}

impl VlmState {
    /// Positions cached so far (image tokens included).
    pub fn len(&self) -> usize {
        self.language_model.len()
    }

    /// True before the prompt.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A state of the rows `rows` (beam search).
    pub fn select(&self, rows: &[usize]) -> VlmState {
        VlmState {
            language_model: self.language_model.select(rows),
        }
    }
}

// ANCHOR: splice
/// The text's vectors with the picture's spliced in at `image_at[b]`.
///
/// # Shapes
/// - `text: [B, T, C]`, `image: [B, N, C]` → `[B, T + N − 1, C]`
pub fn splice(text: &ArrayRef3<f32>, image: &ArrayRef3<f32>, image_at: &[usize]) -> Array3<f32> {
    let (batch, seq, width) = text.dim();
    let n = image.dim().1;
    assert!(
        image.dim().0 == batch && image.dim().2 == width && image_at.len() == batch,
        "splice: text is {:?}, image is {:?}, {} positions",
        text.dim(),
        image.dim(),
        image_at.len()
    );
    let mut x = Array3::zeros((batch, seq + n - 1, width));
    for (b, &p) in image_at.iter().enumerate() {
        x.slice_mut(s![b, ..p, ..])
            .assign(&text.slice(s![b, ..p, ..])); // text before
        x.slice_mut(s![b, p..p + n, ..])
            .assign(&image.slice(s![b, .., ..])); // the picture
        x.slice_mut(s![b, p + n.., ..])
            .assign(&text.slice(s![b, p + 1.., ..])); // text after
    }
    x
}

/// The backward of [`splice`]: the gradient of the spliced vectors cut
/// back into the text's (zero at the placeholder) and the picture's.
///
/// # Shapes
/// - `dx: [B, T + N − 1, C]` → `dtext: [B, T, C]`, `dimage: [B, N, C]`
pub fn unsplice(dx: &ArrayRef3<f32>, image_at: &[usize], n: usize) -> (Array3<f32>, Array3<f32>) {
    let (batch, spliced, width) = dx.dim();
    let seq = spliced + 1 - n;
    let mut dtext = Array3::zeros((batch, seq, width));
    let mut dimage = Array3::zeros((batch, n, width));
    for (b, &p) in image_at.iter().enumerate() {
        dtext
            .slice_mut(s![b, ..p, ..])
            .assign(&dx.slice(s![b, ..p, ..]));
        dimage
            .slice_mut(s![b, .., ..])
            .assign(&dx.slice(s![b, p..p + n, ..]));
        dtext
            .slice_mut(s![b, p + 1.., ..])
            .assign(&dx.slice(s![b, p + n.., ..]));
    }
    (dtext, dimage)
}
// ANCHOR_END: splice

impl Params for Vlm {
    fn params(&self) -> Vec<(String, ArrayViewD<'_, f32>)> {
        let mut list: Vec<_> = prefixed("vision_tower", self.vision_tower.params()).collect();
        list.extend(prefixed(
            "multi_modal_projector",
            self.multi_modal_projector.params(),
        ));
        list.extend(prefixed("language_model", self.language_model.params()));
        list
    }

    fn params_mut(&mut self) -> Vec<(String, ArrayViewMutD<'_, f32>)> {
        let mut list: Vec<_> = prefixed("vision_tower", self.vision_tower.params_mut()).collect();
        list.extend(prefixed(
            "multi_modal_projector",
            self.multi_modal_projector.params_mut(),
        ));
        list.extend(prefixed("language_model", self.language_model.params_mut()));
        list
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::chat::answer_loss;
    use embedding::init;
    use embedding::testing::{GradCheck, WithInputs, fakeloss};
    use ndarray::{Array4, Ix3, array};
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    pub(crate) const VOCAB: usize = 16; // image 11, user 12, assistant 13, end 14, pad 15

    /// The micro model with its tables at std 1 (LayerNorm divides by the
    /// std of its input; at 0.02 a finite-difference step is not small).
    pub(crate) fn micro(config: &VlmConfig, seed: u64) -> Vlm {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut vlm = config.init(&mut rng).unwrap();
        let lm = &mut vlm.language_model;
        lm.token_embedding.weight = init::normal(lm.token_embedding.weight.dim(), 1.0, &mut rng);
        lm.position_embedding.weight =
            init::normal(lm.position_embedding.weight.dim(), 1.0, &mut rng);
        match &mut vlm.vision_tower {
            ImageEncoder::Vit(vit) => {
                vit.cls_token = init::normal(vit.cls_token.dim(), 1.0, &mut rng);
                vit.pos_embed.weight = init::normal(vit.pos_embed.weight.dim(), 1.0, &mut rng);
            }
            ImageEncoder::Cnn(cnn) => {
                // positive biases keep every ReLU on its linear side (see model.rs's smooth_cnn)
                for block in &mut cnn.blocks {
                    if let Some(bias) = &mut block.conv.bias {
                        bias.fill(3.0);
                    }
                }
            }
        }
        vlm
    }

    /// A smooth CNN (pool 1: no max-pooling kinks) with a 4×4 grid, pixel-shuffled.
    pub(crate) fn smooth_cnn_config(max_len: usize) -> VlmConfig {
        VlmConfig {
            vision: ImageConfig::Cnn {
                cnn: vision::CnnConfig {
                    in_channels: 3,
                    channels: vec![4, 6],
                    kernel: 3,
                    pool: 1,
                },
                image_size: 4,
            },
            projector: ProjectorConfig {
                kind: ProjectorKind::Linear,
                pool: TokenPool::PixelShuffle2,
                keep_cls: false,
            },
            ..VlmConfig::micro(VOCAB, max_len)
        }
    }

    /// Two rows: the image in a different place in each, and row 1 padded.
    pub(crate) fn batch(image_size: usize) -> (Array4<f32>, Array2<u32>, Array2<f32>) {
        let images = init::normal(
            (2, 3, image_size, image_size),
            1.0,
            &mut StdRng::seed_from_u64(100),
        );
        let tokens = array![
            [12, 3, 11, 4, 13, 5, 6, 14], // <|user|> a <|image|> b <|assistant|> c d <|end|>
            [12, 11, 2, 13, 7, 14, 15, 15]  // <|user|> <|image|> e <|assistant|> f <|end|> pad pad
        ];
        let weights = array![
            [0.0f32, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0],
            [0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0]
        ];
        (images, tokens, weights)
    }

    /// A module whose parameters are the VLM's trainable ones only, so the
    /// gradient check compares exactly what the backward pass promises.
    #[derive(Debug, Clone)]
    struct Trainable {
        vlm: Vlm,
        freeze: Freeze,
    }
    impl Params for Trainable {
        fn params(&self) -> Vec<(String, ArrayViewD<'_, f32>)> {
            let freeze = self.freeze;
            self.vlm
                .params()
                .into_iter()
                .filter(|(n, _)| !freeze.is_frozen(n))
                .collect()
        }
        fn params_mut(&mut self) -> Vec<(String, ArrayViewMutD<'_, f32>)> {
            let freeze = self.freeze;
            self.vlm
                .params_mut()
                .into_iter()
                .filter(|(n, _)| !freeze.is_frozen(n))
                .collect()
        }
    }

    fn every_freeze() -> Vec<Freeze> {
        (0..8)
            .map(|bits| Freeze {
                vision_tower: bits & 1 != 0,
                projector: bits & 2 != 0,
                language_model: bits & 4 != 0,
            })
            .collect()
    }

    // ANCHOR: vlm_gradcheck
    /// The whole model under both masks, with every part frozen or not, for
    /// a ViT (CLS kept, every cell) and a CNN (pixel shuffle): every
    /// trainable parameter's gradient against finite differences, and every
    /// frozen one exactly zero.
    #[test]
    fn whole_vlm_gradcheck_both_masks_every_freeze() {
        let configs = [VlmConfig::micro(VOCAB, 16), smooth_cnn_config(16)];
        for config in configs {
            for mask in [VlmMask::Causal, VlmMask::PrefixLm] {
                let config = VlmConfig {
                    mask,
                    ..config.clone()
                };
                let vlm = micro(&config, 1);
                let (images, tokens, _) = batch(config.vision.image_size());
                let (logits, _) = vlm.forward(&images, &tokens, Freeze::NONE);
                // dout on the last four positions of each row, as an answer loss would
                // have it (fewer terms in L also keep its f32 rounding noise low)
                let mut dlogits: Array3<f32> =
                    init::normal(logits.dim(), 1.0, &mut StdRng::seed_from_u64(2));
                let seq = dlogits.dim().1;
                dlogits.slice_mut(s![.., ..seq - 4, ..]).fill(0.0);
                for freeze in every_freeze() {
                    let (_, cache) = vlm.forward(&images, &tokens, freeze);
                    let mut grads = vlm.zeros_like();
                    vlm.backward(&dlogits, &cache, &mut grads);
                    for (name, g) in grads.params() {
                        if freeze.is_frozen(&name) {
                            assert!(
                                g.iter().all(|&v| v == 0.0),
                                "{name} is frozen but has a gradient"
                            );
                        }
                    }
                    let mut state = Trainable {
                        vlm: vlm.clone(),
                        freeze,
                    };
                    let analytic = Trainable { vlm: grads, freeze };
                    let check = GradCheck {
                        max_per_tensor: 6,
                        ..crate::gradcheck()
                    };
                    check
                        .run(&mut state, &analytic, |s| {
                            fakeloss(&s.vlm.forward(&images, &tokens, Freeze::NONE).0, &dlogits)
                        })
                        .into_result()
                        .unwrap_or_else(|r| panic!("{mask:?} {freeze:?} {:?}: {r}", config.vision));
                }
            }
        }
    }
    // ANCHOR_END: vlm_gradcheck

    #[test]
    fn the_answer_loss_through_the_whole_model() {
        let config = VlmConfig {
            mask: VlmMask::PrefixLm,
            ..VlmConfig::micro(VOCAB, 16)
        };
        let mut vlm = micro(&config, 3);
        let (images, tokens, weights) = batch(8);
        let (targets, target_weights) = vlm.targets(&tokens, &weights);
        let (logits, cache) = vlm.forward(&images, &tokens, Freeze::NONE);
        let loss = answer_loss(&logits, &targets, &target_weights);
        assert_eq!(loss.weight, 5.0); // c d <|end|> and f <|end|>
        let mut grads = vlm.zeros_like();
        vlm.backward(&loss.dlogits, &cache, &mut grads);
        GradCheck {
            max_per_tensor: 6,
            ..crate::gradcheck()
        }
        .run(&mut vlm, &grads, |m| {
            let (logits, _) = m.forward(&images, &tokens, Freeze::NONE);
            answer_loss(&logits, &targets, &target_weights).loss as f64
        })
        .into_result()
        .unwrap();
    }

    #[test]
    fn targets_skip_the_image_and_follow_the_text() {
        let vlm = micro(&VlmConfig::micro(VOCAB, 16), 0); // N = 5 image tokens
        let (_, tokens, weights) = batch(8);
        let (targets, w) = vlm.targets(&tokens, &weights);
        assert_eq!(targets.dim(), (2, 12));
        // row 0: <|user|> a [5 image] b <|assistant|> c d <|end|>; position t predicts t + 1
        assert_eq!(
            targets.row(0).to_vec(),
            [3, 15, 15, 15, 15, 15, 4, 13, 5, 6, 14, 15]
        );
        assert_eq!(
            w.row(0).to_vec(),
            [0., 0., 0., 0., 0., 0., 0., 0., 1., 1., 1., 0.]
        );
        // the <|assistant|> position predicts the first answer token
        assert_eq!((targets[[0, 8]], w[[0, 8]]), (5, 1.0));
    }

    #[test]
    fn splice_gradcheck_and_round_trip() {
        let text: Array3<f32> = init::normal((2, 4, 3), 1.0, &mut StdRng::seed_from_u64(4));
        let image: Array3<f32> = init::normal((2, 2, 3), 1.0, &mut StdRng::seed_from_u64(5));
        let at = [1, 3];
        let x = splice(&text, &image, &at);
        assert_eq!(x.dim(), (2, 5, 3));
        assert_eq!(x.slice(s![0, 1..3, ..]), image.slice(s![0, .., ..]));
        assert_eq!(x.slice(s![1, 4, ..]), image.slice(s![1, 1, ..]));
        assert_eq!(x.slice(s![0, 3.., ..]), text.slice(s![0, 2.., ..]));
        let dx: Array3<f32> = init::normal(x.dim(), 1.0, &mut StdRng::seed_from_u64(6));
        let (dtext, dimage) = unsplice(&dx, &at, 2);
        assert!(dtext.slice(s![0, 1, ..]).iter().all(|&d| d == 0.0)); // the placeholder
        #[derive(Debug, Clone)]
        struct NoParams;
        impl Params for NoParams {
            fn params(&self) -> Vec<(String, ArrayViewD<'_, f32>)> {
                Vec::new()
            }
            fn params_mut(&mut self) -> Vec<(String, ArrayViewMutD<'_, f32>)> {
                Vec::new()
            }
        }
        let mut state = WithInputs::new(NoParams, vec![("text", text), ("image", image)]);
        let analytic = WithInputs::new(NoParams, vec![("text", dtext), ("image", dimage)]);
        GradCheck::default()
            .run(&mut state, &analytic, |s| {
                fakeloss(&splice(&s.input::<Ix3>(0), &s.input::<Ix3>(1), &at), &dx)
            })
            .into_result()
            .unwrap();
    }

    #[test]
    fn results_are_bit_for_bit_the_same_on_any_thread_count() {
        let vlm = micro(
            &VlmConfig {
                mask: VlmMask::PrefixLm,
                ..VlmConfig::micro(VOCAB, 16)
            },
            6,
        );
        let images = init::normal((7, 3, 8, 8), 1.0, &mut StdRng::seed_from_u64(7));
        let tokens = Array2::from_shape_fn((7, 6), |(b, t)| match t {
            0 => 12,
            1 => 11,
            t if t == 2 + b % 3 => 13,
            t => ((b + t) % 9) as u32,
        });
        let run = |threads| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                let (logits, cache) = vlm.forward(&images, &tokens, Freeze::NONE);
                let dlogits = init::normal(logits.dim(), 1.0, &mut StdRng::seed_from_u64(8));
                let mut grads = vlm.zeros_like();
                vlm.backward(&dlogits, &cache, &mut grads);
                (logits, grads)
            })
        };
        let (logits, grads) = run(1);
        for threads in [2, 3] {
            let (other_logits, other_grads) = run(threads);
            assert_eq!(other_logits, logits);
            assert_eq!(other_grads, grads);
        }
    }

    #[test]
    fn names_are_llavas() {
        let vlm = micro(&VlmConfig::micro(VOCAB, 16), 0);
        let names: Vec<String> = vlm.params().into_iter().map(|(n, _)| n).collect();
        for expected in [
            "vision_tower.patch_embed.proj.weight",
            "vision_tower.cls_token",
            "multi_modal_projector.linear_1.weight",
            "multi_modal_projector.linear_2.bias",
            "language_model.token_embedding.weight",
            "language_model.position_embedding.weight",
            "language_model.blocks.1.attn.qkv.weight",
            "language_model.ln_final.bias",
        ] {
            assert!(
                names.iter().any(|n| n == expected),
                "{expected} missing from {names:?}"
            );
        }
        assert!(
            Freeze {
                language_model: true,
                ..Freeze::NONE
            }
            .is_frozen("language_model.ln_final.bias")
        );
        assert!(
            !Freeze {
                language_model: true,
                ..Freeze::NONE
            }
            .is_frozen("multi_modal_projector.linear_1.weight")
        );
    }

    #[test]
    fn impossible_configs_name_the_field() {
        let cases: Vec<(VlmConfig, &str)> = vec![
            (
                VlmConfig {
                    projector: ProjectorConfig {
                        pool: TokenPool::Average2,
                        ..VlmConfig::micro(VOCAB, 16).projector
                    },
                    vision: ImageConfig::Cnn {
                        cnn: vision::CnnConfig {
                            in_channels: 3,
                            channels: vec![4],
                            kernel: 3,
                            pool: 2,
                        },
                        image_size: 6,
                    },
                    ..VlmConfig::micro(VOCAB, 16)
                },
                "projector.pool pools 2×2 blocks, but the image grid is 3×3",
            ),
            (
                VlmConfig {
                    vision: ModelConfigForTests::micro_cnn(),
                    ..VlmConfig::micro(VOCAB, 16)
                },
                "projector.keep_cls = true, but a CNN tower has no CLS token",
            ),
            (
                VlmConfig::micro(VOCAB, 8),
                "lm.max_len = 8 cannot hold 5 image tokens and a turn (needs at least 9)",
            ),
            (
                VlmConfig {
                    tokens: ChatTokens {
                        pad: 11,
                        ..VlmConfig::last_five(VOCAB)
                    },
                    ..VlmConfig::micro(VOCAB, 16)
                },
                "the chat tokens (image, user, assistant, end, pad) must differ, got [11, 12, 13, 14, 11]",
            ),
            (
                VlmConfig {
                    lm: LmConfig {
                        n_head: 3,
                        ..LmConfig::micro(VOCAB, 16)
                    },
                    ..VlmConfig::micro(VOCAB, 16)
                },
                "lm.width = 8 is not divisible by lm.n_head = 3",
            ),
        ];
        for (config, message) in cases {
            assert_eq!(config.validate().unwrap_err().to_string(), message);
        }
        VlmConfig::tiny(300, 64).validate().unwrap();
        assert_eq!(VlmConfig::tiny(300, 64).num_image_tokens(), 16);
    }
    use crate::ModelConfig as ModelConfigForTests;
}
