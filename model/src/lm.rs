//! A decoder-only language model (GPT-2's layout): the part of a multimodal
//! LLM that reads the whole sequence, text and image tokens alike, and
//! predicts the next token.
//!
//! ```text
//! tokens [B, T]                 <|user|> what colour is it ? <|assistant|> red <|end|>
//!   → token_embedding           [B, T, C]     (a multimodal model splices image vectors in here)
//!   → + position_embedding      [B, T, C]
//!   → blocks × depth            [B, T, C]     masked self-attention (causal, or prefix-LM), MLP
//!   → ln_final                  [B, T, C]
//!   → head                      [B, T, V]     logits for the token after each position
//! ```
//!
//! Unlike the caption decoder, it has no cross-attention: whatever it should
//! know about a picture has to be *in its context*, as vectors among the
//! token vectors. So its core pass, [`LanguageModel::forward_embeds`], starts
//! from vectors, not IDs; [`LanguageModel::forward`] is the text-only model
//! (look the IDs up, then the core pass with a causal mask).
//!
//! A frozen language model (a training stage that teaches only the
//! projector) still has to pass the gradient down to its inputs, but
//! computes none of its own: [`LanguageModel::backward_embeds`] with `None`
//! for the gradients runs every layer's `backward_input`.
//!
//! For generation, [`LanguageModel::start`] makes an empty KV cache per block
//! and [`LanguageModel::step_embeds`] feeds new vectors through them: the same
//! logits as the whole forward pass on the prefix, without recomputing it.

use attention::{Block, BlockCache, BlockConfig, KvCache, LayerNorm, LayerNormCache, Mask};
use embedding::{
    Embedding, EmbeddingCache, EmbeddingConfig, Layer, LearnedPositions, Linear, LinearConfig,
    Params, prefixed,
};
use ndarray::{Array2, Array3, ArrayRef2, ArrayRef3, ArrayViewD, ArrayViewMutD, Axis, s};
use rand::Rng;

use crate::config::Head;
use crate::lm_head::{HeadCache, HeadGrads, head_backward, head_forward};

// ANCHOR: lm_config
/// The shape of a [`LanguageModel`].
#[derive(Debug, Clone, PartialEq)]
pub struct LmConfig {
    /// Vocabulary size `V`, special tokens included.
    pub vocab: usize,
    /// Longest sequence in positions, image tokens included (rows of the
    /// position table).
    pub max_len: usize,
    /// Width `C_lm` of the residual stream.
    pub width: usize,
    /// Number of blocks.
    pub depth: usize,
    /// Attention heads; must divide `width`.
    pub n_head: usize,
    /// Hidden width of each MLP; `4 · width` as in GPT-2.
    pub mlp_hidden: usize,
    /// Tied to the token embedding (GPT-2) or separate.
    pub head: Head,
}
// ANCHOR_END: lm_config

impl LmConfig {
    /// The teaching size: width 64, 2 blocks of 4 heads, MLP 256, a tied
    /// head (the caption decoder's shape, without cross-attention).
    pub fn tiny(vocab: usize, max_len: usize) -> Self {
        LmConfig {
            vocab,
            max_len,
            width: 64,
            depth: 2,
            n_head: 4,
            mlp_hidden: 256,
            head: Head::Tied,
        }
    }

    /// Small enough to check every gradient by finite differences.
    pub fn micro(vocab: usize, max_len: usize) -> Self {
        LmConfig {
            vocab,
            max_len,
            width: 8,
            depth: 2,
            n_head: 2,
            mlp_hidden: 16,
            head: Head::Tied,
        }
    }

    /// The block every layer is made from.
    pub fn block(&self) -> BlockConfig {
        BlockConfig {
            width: self.width,
            n_head: self.n_head,
            mlp_hidden: self.mlp_hidden,
        }
    }

    /// A fresh model: embeddings as in GPT-2 (`N(0, 0.02²)`, positions
    /// `N(0, 0.01²)`), blocks at [`BlockConfig::init`], a separate head at
    /// PyTorch's default Linear initialisation. Call
    /// [`crate::VlmConfig::validate`] or [`LmConfig::validate`] first: an
    /// impossible shape panics here.
    pub fn init(&self, rng: &mut impl Rng) -> LanguageModel {
        let token_embedding = EmbeddingConfig {
            vocab: self.vocab,
            dim: self.width,
            std: 0.02,
        }
        .init(rng);
        let position_embedding = LearnedPositions::init(self.max_len, self.width, 0.01, rng);
        let blocks = (0..self.depth).map(|_| self.block().init(rng)).collect();
        let lm_head = match self.head {
            Head::Tied => None,
            Head::Separate => Some(
                LinearConfig {
                    c_in: self.width,
                    c_out: self.vocab,
                    bias: false,
                }
                .init(rng),
            ),
        };
        LanguageModel {
            token_embedding,
            position_embedding,
            blocks,
            ln_final: LayerNorm::new(self.width),
            lm_head,
        }
    }
}

// ANCHOR: lm_struct
/// A GPT-style decoder-only language model.
///
/// Parameter names: `token_embedding.weight`, `position_embedding.weight`,
/// `blocks.N.*` (the attention crate's names), `ln_final.*`, and
/// `lm_head.weight` when the head is not tied.
#[derive(Debug, Clone, PartialEq)]
pub struct LanguageModel {
    /// `Wte: [V, C_lm]`; also the output head when tied.
    pub token_embedding: Embedding,
    /// `[T_max, C_lm]`
    pub position_embedding: LearnedPositions,
    /// Masked self-attention and MLP, pre-LN.
    pub blocks: Vec<Block>,
    /// `[C_lm]` twice.
    pub ln_final: LayerNorm,
    /// `[V, C_lm]`, no bias; `None` when the head is tied to `token_embedding`.
    pub lm_head: Option<Linear>,
}

/// What [`LanguageModel::backward_embeds`] needs.
#[derive(Debug, Clone)]
pub struct LmCache {
    blocks: Vec<BlockCache>,
    ln_final: LayerNormCache,
    head: HeadCache,
}

/// What [`LanguageModel::backward`] needs: the lookup's and the core pass's.
#[derive(Debug, Clone)]
pub struct LmTextCache {
    token_embedding: EmbeddingCache,
    lm: LmCache,
}
// ANCHOR_END: lm_struct

impl LmCache {
    /// Blocks in this pass.
    pub fn depth(&self) -> usize {
        self.blocks.len()
    }

    /// The self-attention weights of block `i`: `[B, H, T, T]` (for figures).
    ///
    /// # Panics
    /// If `i` is not below [`LmCache::depth`].
    #[track_caller]
    pub fn attention_weights(&self, i: usize) -> &ndarray::Array4<f32> {
        self.blocks[i].attention_weights()
    }
}

impl LanguageModel {
    /// Width `C_lm`.
    pub fn width(&self) -> usize {
        self.token_embedding.dim()
    }

    /// Vocabulary size `V`.
    pub fn vocab(&self) -> usize {
        self.token_embedding.vocab()
    }

    /// The longest sequence the position table covers.
    pub fn max_len(&self) -> usize {
        self.position_embedding.max_len()
    }

    /// Tied or separate head.
    pub fn head(&self) -> Head {
        match self.lm_head {
            None => Head::Tied,
            Some(_) => Head::Separate,
        }
    }

    // ANCHOR: lm_forward
    /// The core pass, from input vectors to logits: positions, blocks,
    /// final LayerNorm, head. The vectors are token embeddings, or (in a
    /// multimodal model) token embeddings with image vectors spliced in.
    ///
    /// # Shapes
    /// - `x: [B, T, C_lm]` → `logits: [B, T, V]`
    ///
    /// # Panics
    /// If `x`'s width is not `C_lm`, `T` exceeds the position table, or a
    /// mask's lengths are not `B`.
    #[track_caller]
    pub fn forward_embeds(&self, x: &ArrayRef3<f32>, mask: &Mask) -> (Array3<f32>, LmCache) {
        let (mut x, ()) = self.position_embedding.forward(x); // + positions: [B, T, C]
        let mut blocks = Vec::with_capacity(self.blocks.len());
        for block in &self.blocks {
            let (out, cache) = block.forward_masked(&x, mask);
            blocks.push(cache);
            x = out;
        }
        let (h, ln_final) = self.ln_final.forward(&x); // [B, T, C]
        let (logits, head) = head_forward(&self.token_embedding, self.lm_head.as_ref(), h); // [B, T, V]
        let cache = LmCache {
            blocks,
            ln_final,
            head,
        };
        (logits, cache)
    }
    // ANCHOR_END: lm_forward

    // ANCHOR: lm_backward
    /// The core pass backward: adds the parameter gradients into `grads`
    /// and returns the gradient of the input vectors. With `grads = None`
    /// the model is frozen: every layer runs its `backward_input` and no
    /// parameter gradient is computed, but the input gradient is the same.
    ///
    /// # Shapes
    /// - `dlogits: [B, T, V]` → `dx: [B, T, C_lm]`
    ///
    /// # Panics
    /// If `dlogits` does not have the logits' shape.
    #[track_caller]
    pub fn backward_embeds(
        &self,
        dlogits: &ArrayRef3<f32>,
        cache: &LmCache,
        grads: Option<&mut LanguageModel>,
    ) -> Array3<f32> {
        let Some(grads) = grads else {
            // frozen: the same path, input gradients only
            let dh = head_backward(
                &self.token_embedding,
                self.lm_head.as_ref(),
                dlogits,
                &cache.head,
                None,
            );
            let mut dx = self.ln_final.backward_input(&dh, &cache.ln_final);
            for (block, block_cache) in self.blocks.iter().zip(&cache.blocks).rev() {
                dx = block.backward_input(&dx, block_cache);
            }
            return dx; // x + positions: dx passes straight through
        };
        let head_grads = HeadGrads {
            token_embedding: &mut grads.token_embedding,
            lm_head: grads.lm_head.as_mut(),
        };
        let dh = head_backward(
            &self.token_embedding,
            self.lm_head.as_ref(),
            dlogits,
            &cache.head,
            Some(head_grads),
        );
        let mut dx = self
            .ln_final
            .backward(&dh, &cache.ln_final, &mut grads.ln_final);
        for ((block, block_cache), block_grads) in self
            .blocks
            .iter()
            .zip(&cache.blocks)
            .zip(&mut grads.blocks)
            .rev()
        {
            dx = block.backward(&dx, block_cache, block_grads);
        }
        // x + positions: the table gets Σ_b dx, the input dx
        self.position_embedding
            .backward(&dx, &(), &mut grads.position_embedding)
    }
    // ANCHOR_END: lm_backward

    /// The text-only model: look the tokens up, then the core pass with a
    /// causal mask.
    ///
    /// # Shapes
    /// - `tokens: [B, T]` → `logits: [B, T, V]`; position `t` scores the token `t + 1`
    ///
    /// # Panics
    /// If a token is outside the vocabulary or `T` exceeds the position table.
    #[track_caller]
    pub fn forward(&self, tokens: &ArrayRef2<u32>) -> (Array3<f32>, LmTextCache) {
        let (x, token_embedding) = self.token_embedding.forward(tokens); // [B, T, C]
        let (logits, lm) = self.forward_embeds(&x, &Mask::Causal);
        (
            logits,
            LmTextCache {
                token_embedding,
                lm,
            },
        )
    }

    /// The text-only model's backward: every parameter gradient, the token
    /// table's from both of its uses when the head is tied.
    ///
    /// # Shapes
    /// - `dlogits: [B, T, V]`
    #[track_caller]
    pub fn backward(
        &self,
        dlogits: &ArrayRef3<f32>,
        cache: &LmTextCache,
        grads: &mut LanguageModel,
    ) {
        let dx = self.backward_embeds(dlogits, &cache.lm, Some(grads));
        self.token_embedding
            .backward(&dx, &cache.token_embedding, &mut grads.token_embedding);
    }

    /// Next-token logits at every position, without a cache (inference).
    ///
    /// # Shapes
    /// - `tokens: [B, T]` → `logits: [B, T, V]`
    #[track_caller]
    pub fn logits(&self, tokens: &ArrayRef2<u32>) -> Array3<f32> {
        self.forward(tokens).0
    }

    // ANCHOR: lm_step
    /// An empty KV cache per block, each with room for `max_len` positions.
    pub fn start(&self, batch: usize) -> LmState {
        LmState {
            caches: self
                .blocks
                .iter()
                .map(|block| block.kv_cache(batch, self.max_len()))
                .collect(),
        }
    }

    /// Feeds `T_new` more vectors per sequence under `mask` (over all cached
    /// and new positions, the new ones last) and returns the logits after the
    /// last of them.
    ///
    /// # Shapes
    /// - `x: [B, T_new, C_lm]` → `logits: [B, V]`
    ///
    /// # Panics
    /// If `T_new` is 0, the batch differs from the state's, or the sequence
    /// would grow past `max_len`.
    #[track_caller]
    pub fn step_embeds(&self, state: &mut LmState, x: &ArrayRef3<f32>, mask: &Mask) -> Array2<f32> {
        let (batch, t_new, _) = x.dim();
        let start = state.len();
        assert!(
            t_new > 0 && start + t_new <= self.max_len(),
            "language model step: {start} cached + {t_new} new positions, the model holds at most {}",
            self.max_len()
        );
        assert_eq!(
            batch,
            state.batch(),
            "language model step: x is {:?}, the state holds {} sequences",
            x.dim(),
            state.batch()
        );
        // positions start..start + T_new: the new vectors come after the cached ones
        let mut x = x.to_owned();
        x += &self
            .position_embedding
            .weight
            .slice(s![start..start + t_new, ..]);
        for (block, cache) in self.blocks.iter().zip(&mut state.caches) {
            x = block.forward_incremental_masked(&x, cache, mask);
        }
        let last = x.slice(s![.., t_new - 1..t_new, ..]); // [B, 1, C]: only the last is scored
        let (h, _) = self.ln_final.forward(&last);
        let (logits, _) = head_forward(&self.token_embedding, self.lm_head.as_ref(), h); // [B, 1, V]
        logits.remove_axis(Axis(1)) // [B, V]
    }

    /// [`LanguageModel::step_embeds`] on token IDs, causal.
    ///
    /// # Shapes
    /// - `tokens: [B, T_new]` → `logits: [B, V]`
    #[track_caller]
    pub fn step(&self, state: &mut LmState, tokens: &ArrayRef2<u32>) -> Array2<f32> {
        let (x, _) = self.token_embedding.forward(tokens); // [B, T_new, C]
        self.step_embeds(state, &x, &Mask::Causal)
    }
    // ANCHOR_END: lm_step
}

/// The state of incremental decoding: a KV cache per block.
#[derive(Debug, Clone)]
pub struct LmState {
    caches: Vec<KvCache>, // per block: k, v [B, H, len, D]
}

impl LmState {
    /// Positions fed so far.
    pub fn len(&self) -> usize {
        self.caches.first().map_or(0, KvCache::len)
    }

    /// True before the first step.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sequences in the batch.
    pub fn batch(&self) -> usize {
        self.caches.first().map_or(0, |c| c.keys().dim().0)
    }

    /// A state whose row `i` is this state's row `rows[i]` (beam search).
    ///
    /// # Panics
    /// If a row index is out of range.
    #[track_caller]
    pub fn select(&self, rows: &[usize]) -> LmState {
        LmState {
            caches: self.caches.iter().map(|c| c.select(rows)).collect(),
        }
    }
}

impl Params for LanguageModel {
    fn params(&self) -> Vec<(String, ArrayViewD<'_, f32>)> {
        let mut list: Vec<_> = prefixed("token_embedding", self.token_embedding.params()).collect();
        list.extend(prefixed(
            "position_embedding",
            self.position_embedding.params(),
        ));
        list.extend(prefixed("blocks", self.blocks.params()));
        list.extend(prefixed("ln_final", self.ln_final.params()));
        if let Some(lm_head) = &self.lm_head {
            list.extend(prefixed("lm_head", lm_head.params()));
        }
        list
    }

    fn params_mut(&mut self) -> Vec<(String, ArrayViewMutD<'_, f32>)> {
        let mut list: Vec<_> =
            prefixed("token_embedding", self.token_embedding.params_mut()).collect();
        list.extend(prefixed(
            "position_embedding",
            self.position_embedding.params_mut(),
        ));
        list.extend(prefixed("blocks", self.blocks.params_mut()));
        list.extend(prefixed("ln_final", self.ln_final.params_mut()));
        if let Some(lm_head) = &mut self.lm_head {
            list.extend(prefixed("lm_head", lm_head.params_mut()));
        }
        list
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use embedding::init;
    use embedding::testing::{GradCheck, WithInputs, assert_allclose, fakeloss};
    use ndarray::{Ix3, array};
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    const VOCAB: usize = 9;

    pub(crate) fn micro(head: Head, seed: u64) -> LanguageModel {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut lm = LmConfig {
            head,
            ..LmConfig::micro(VOCAB, 7)
        }
        .init(&mut rng);
        // tables at std 1, not 0.02: LayerNorm divides by the std of its
        // input, and at 0.02 a finite-difference step of 1e-2 is not small
        lm.token_embedding.weight = init::normal((VOCAB, 8), 1.0, &mut rng);
        lm.position_embedding.weight = init::normal((7, 8), 1.0, &mut rng);
        lm
    }

    fn tokens() -> Array2<u32> {
        array![[6, 1, 2, 3, 7], [6, 4, 4, 7, 8]]
    }

    #[test]
    fn names_and_shapes_of_both_heads() {
        for (head, last) in [
            (Head::Tied, "ln_final.bias"),
            (Head::Separate, "lm_head.weight"),
        ] {
            let lm = micro(head, 0);
            assert_eq!(lm.head(), head);
            let names: Vec<String> = lm.params().into_iter().map(|(n, _)| n).collect();
            assert_eq!(
                names[..3],
                [
                    "token_embedding.weight",
                    "position_embedding.weight",
                    "blocks.0.ln_1.weight"
                ]
            );
            assert_eq!(names.last().unwrap(), last);
            assert_eq!(lm.logits(&tokens()).dim(), (2, 5, VOCAB));
        }
    }

    #[test]
    fn text_only_gradcheck_both_heads() {
        for head in [Head::Tied, Head::Separate] {
            let mut lm = micro(head, 2);
            let dlogits: Array3<f32> =
                init::normal((2, 5, VOCAB), 1.0, &mut StdRng::seed_from_u64(4));
            let (_, cache) = lm.forward(&tokens());
            let mut grads = lm.zeros_like();
            lm.backward(&dlogits, &cache, &mut grads);
            let check = GradCheck {
                max_per_tensor: 40,
                ..crate::gradcheck()
            };
            check
                .run(&mut lm, &grads, |m| {
                    fakeloss(&m.logits(&tokens()), &dlogits)
                })
                .into_result()
                .unwrap_or_else(|r| panic!("{head:?}: {r}"));
        }
    }

    // ANCHOR: frozen_lm_test
    #[test]
    fn frozen_or_not_the_input_gradient_is_right() {
        for head in [Head::Tied, Head::Separate] {
            for mask in [Mask::Causal, Mask::PrefixLm(vec![3, 2])] {
                let lm = micro(head, 5);
                let x: Array3<f32> = init::normal((2, 5, 8), 1.0, &mut StdRng::seed_from_u64(6));
                let dlogits: Array3<f32> =
                    init::normal((2, 5, VOCAB), 1.0, &mut StdRng::seed_from_u64(7));
                let (_, cache) = lm.forward_embeds(&x, &mask);
                let mut grads = lm.zeros_like();
                let dx = lm.backward_embeds(&dlogits, &cache, Some(&mut grads));
                // frozen: the same input gradient, bit for bit
                assert_eq!(lm.backward_embeds(&dlogits, &cache, None), dx);
                // and the input gradient is the finite-difference one
                let mut state = WithInputs::new(lm, vec![("x", x)]);
                let analytic = WithInputs::new(grads, vec![("x", dx)]);
                GradCheck {
                    max_per_tensor: 40,
                    ..crate::gradcheck()
                }
                .run(&mut state, &analytic, |s| {
                    fakeloss(
                        &s.module.forward_embeds(&s.input::<Ix3>(0), &mask).0,
                        &dlogits,
                    )
                })
                .into_result()
                .unwrap_or_else(|r| panic!("{head:?} {mask:?}: {r}"));
            }
        }
    }
    // ANCHOR_END: frozen_lm_test

    #[test]
    fn incremental_steps_equal_the_uncached_model() {
        for head in [Head::Tied, Head::Separate] {
            let lm = micro(head, 8);
            let tokens = tokens();
            let want = lm.logits(&tokens); // [B, T, V]
            let mut state = lm.start(2);
            // a prompt of two tokens, then one at a time
            let got = lm.step(&mut state, &tokens.slice(s![.., ..2]));
            assert_allclose("prompt", &got, &want.slice(s![.., 1, ..]), 1e-5, 1e-5);
            for t in 2..5 {
                let got = lm.step(&mut state, &tokens.slice(s![.., t..t + 1]));
                assert_allclose(
                    &format!("step {t}"),
                    &got,
                    &want.slice(s![.., t, ..]),
                    1e-5,
                    1e-5,
                );
            }
            assert_eq!(state.len(), 5);
            // and a selected state continues its rows
            let mut picked = state.select(&[1, 1]);
            let mut fresh = lm.start(2);
            lm.step(&mut fresh, &tokens.select(Axis(0), &[1, 1]));
            let next = array![[3], [3]];
            assert_allclose(
                "selected",
                &lm.step(&mut picked, &next),
                &lm.step(&mut fresh, &next),
                1e-6,
                1e-6,
            );
        }
    }

    #[test]
    #[should_panic(
        expected = "language model step: 5 cached + 3 new positions, the model holds at most 7"
    )]
    fn stepping_past_max_len_is_a_bug_named_with_the_sizes() {
        let lm = micro(Head::Tied, 0);
        let mut state = lm.start(2);
        lm.step(&mut state, &tokens());
        lm.step(&mut state, &array![[1, 1, 1], [1, 1, 1]]);
    }
}
