//! The caption decoder: reads the image through cross-attention and
//! predicts the next token (CoCa's multimodal decoder).
//!
//! ```text
//! tokens [B, T]                <|bos|> a red circle …
//!   → token_embedding          [B, T, C]
//!   → + position_embedding     [B, T, C]
//!   → blocks × depth           [B, T, C]   causal self-attention,
//!                                          cross-attention to image tokens [B, N_img, C_img],
//!                                          MLP
//!   → ln_final                 [B, T, C]
//!   → head                     [B, T, V]   logits for the token after each position
//! ```
//!
//! The head is either a separate `lm_head: [V, C]` or **tied** to the token
//! embedding `Wte: [V, C]`: `logits = h · Wteᵀ`, the embedding table read
//! backwards (GPT-2, CoCa). A tied table is used twice in one pass, so its
//! gradient is the sum of both uses: the scatter-add of the embedding's
//! backward and `dlogitsᵀ · h` of the head's.
//!
//! For generation, [`Decoder::start`] computes each block's cross-attention
//! keys and values of the image once, and [`Decoder::step`] feeds new tokens
//! through the blocks' KV caches: the same logits as [`Decoder::logits`] on
//! the whole prefix, without recomputing it.

use attention::{CrossBlock, CrossBlockCache, KvCache, LayerNorm, LayerNormCache, Mask, MemoryKv};
use embedding::{
    Embedding, EmbeddingCache, EmbeddingConfig, Layer, LearnedPositions, Linear, LinearConfig,
    Params, prefixed,
};
use ndarray::{Array2, Array3, Array4, ArrayRef2, ArrayRef3, ArrayViewD, ArrayViewMutD, Axis, s};
use rand::Rng;

use crate::config::{DecoderConfig, Head};
use crate::lm_head::{HeadCache, HeadGrads, head_backward, head_forward};

// ANCHOR: decoder_struct
/// The caption decoder.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoder {
    /// `Wte: [V, C_dec]`; also the output head when tied.
    pub token_embedding: Embedding,
    /// `[T_max, C_dec]`
    pub position_embedding: LearnedPositions,
    /// Causal self-attention, cross-attention to the image, MLP.
    pub blocks: Vec<CrossBlock>,
    /// `[C_dec]` twice.
    pub ln_final: LayerNorm,
    /// `[V, C_dec]`, no bias; `None` when the head is tied to `token_embedding`.
    pub lm_head: Option<Linear>,
}

/// What [`Decoder::backward`] needs.
#[derive(Debug, Clone)]
pub struct DecoderCache {
    token_embedding: EmbeddingCache,
    blocks: Vec<CrossBlockCache>,
    ln_final: LayerNormCache,
    head: HeadCache,
    memory_dims: (usize, usize, usize), // (B, N_img, C_img)
}

// ANCHOR_END: decoder_struct

impl DecoderCache {
    /// Decoder blocks in this pass.
    pub fn depth(&self) -> usize {
        self.blocks.len()
    }

    /// The cross-attention weights of block `i`, caption positions over
    /// image tokens: `[B, H, T, N_img]` (for figures). Row `t` is what the
    /// decoder read while predicting token `t + 1`.
    ///
    /// # Panics
    /// If `i` is not below [`DecoderCache::depth`].
    #[track_caller]
    pub fn cross_attention_weights(&self, i: usize) -> &Array4<f32> {
        self.blocks[i].cross_attention_weights()
    }

    /// The causal self-attention weights of block `i`: `[B, H, T, T]`.
    ///
    /// # Panics
    /// If `i` is not below [`DecoderCache::depth`].
    #[track_caller]
    pub fn self_attention_weights(&self, i: usize) -> &Array4<f32> {
        self.blocks[i].attention_weights()
    }
}

impl DecoderConfig {
    /// A fresh decoder for `vocab` tokens, captions up to `max_len`, reading
    /// image tokens of width `memory_width`. Embeddings as in GPT-2
    /// (`N(0, 0.02²)`, positions `N(0, 0.01²)`), blocks at
    /// [`attention::BlockConfig::init_cross`], a separate head at PyTorch's
    /// default Linear initialisation.
    pub fn init(
        &self,
        vocab: usize,
        max_len: usize,
        memory_width: usize,
        rng: &mut impl Rng,
    ) -> Decoder {
        let token_embedding = EmbeddingConfig {
            vocab,
            dim: self.width,
            std: 0.02,
        }
        .init(rng);
        let position_embedding = LearnedPositions::init(max_len, self.width, 0.01, rng);
        let blocks = (0..self.depth)
            .map(|_| self.block().init_cross(memory_width, rng))
            .collect();
        let lm_head = match self.head {
            Head::Tied => None,
            Head::Separate => Some(
                LinearConfig {
                    c_in: self.width,
                    c_out: vocab,
                    bias: false,
                }
                .init(rng),
            ),
        };
        Decoder {
            token_embedding,
            position_embedding,
            blocks,
            ln_final: LayerNorm::new(self.width),
            lm_head,
        }
    }
}

impl Decoder {
    /// Width `C_dec`.
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

    // ANCHOR: decoder_forward
    /// Next-token logits at every position.
    ///
    /// # Shapes
    /// - `image_tokens: [B, N_img, C_img]`, `tokens: [B, T]` → `logits: [B, T, V]`
    ///
    /// # Panics
    /// If the batch sizes or the image width disagree, a token is outside the
    /// vocabulary, or `T` exceeds the position table.
    #[track_caller]
    pub fn forward(
        &self,
        image_tokens: &ArrayRef3<f32>,
        tokens: &ArrayRef2<u32>,
    ) -> (Array3<f32>, DecoderCache) {
        let (x, token_embedding) = self.token_embedding.forward(tokens); // [B, T, C]
        let (mut x, ()) = self.position_embedding.forward(&x);
        let mut blocks = Vec::with_capacity(self.blocks.len());
        for block in &self.blocks {
            // causal over the caption, everything over the image
            let (out, cache) = block.forward(&x, image_tokens, &Mask::Causal, &Mask::None);
            blocks.push(cache);
            x = out;
        }
        let (h, ln_final) = self.ln_final.forward(&x); // [B, T, C]
        let (logits, head) = self.head_forward(h);
        let cache = DecoderCache {
            token_embedding,
            blocks,
            ln_final,
            head,
            memory_dims: image_tokens.dim(),
        };
        (logits, cache)
    }
    // ANCHOR_END: decoder_forward

    /// `h: [B, T, C]` → `logits: [B, T, V]`, through the tied table or `lm_head`.
    fn head_forward(&self, h: Array3<f32>) -> (Array3<f32>, HeadCache) {
        head_forward(&self.token_embedding, self.lm_head.as_ref(), h)
    }

    /// The head's backward: `dlogits: [B, T, V]` → `dh: [B, T, C]`.
    fn head_backward(
        &self,
        dlogits: &ArrayRef3<f32>,
        cache: &HeadCache,
        grads: &mut Decoder,
    ) -> Array3<f32> {
        let grads = HeadGrads {
            token_embedding: &mut grads.token_embedding,
            lm_head: grads.lm_head.as_mut(),
        };
        head_backward(
            &self.token_embedding,
            self.lm_head.as_ref(),
            dlogits,
            cache,
            Some(grads),
        )
    }

    // ANCHOR: decoder_backward
    /// Adds the parameter gradients into `grads` and returns the gradient of
    /// the image tokens (every block's cross-attention read them, so their
    /// gradients add up).
    ///
    /// # Shapes
    /// - `dlogits: [B, T, V]` → `dimage_tokens: [B, N_img, C_img]`
    ///
    /// # Panics
    /// If `dlogits` does not have the logits' shape.
    #[track_caller]
    pub fn backward(
        &self,
        dlogits: &ArrayRef3<f32>,
        cache: &DecoderCache,
        grads: &mut Decoder,
    ) -> Array3<f32> {
        let dh = self.head_backward(dlogits, &cache.head, grads);
        let mut dx = self
            .ln_final
            .backward(&dh, &cache.ln_final, &mut grads.ln_final);
        let mut dimage_tokens = Array3::zeros(cache.memory_dims); // [B, N_img, C_img]
        for ((block, block_cache), block_grads) in self
            .blocks
            .iter()
            .zip(&cache.blocks)
            .zip(&mut grads.blocks)
            .rev()
        {
            let (dx_block, dmemory) = block.backward(&dx, block_cache, block_grads);
            dimage_tokens += &dmemory;
            dx = dx_block;
        }
        // x = token_embedding(tokens) + position_embedding
        let dx = self
            .position_embedding
            .backward(&dx, &(), &mut grads.position_embedding);
        self.token_embedding
            .backward(&dx, &cache.token_embedding, &mut grads.token_embedding);
        dimage_tokens
    }
    // ANCHOR_END: decoder_backward

    /// Next-token logits at every position, without a cache (inference).
    ///
    /// # Shapes
    /// - `image_tokens: [B, N_img, C_img]`, `tokens: [B, T]` → `logits: [B, T, V]`
    #[track_caller]
    pub fn logits(&self, image_tokens: &ArrayRef3<f32>, tokens: &ArrayRef2<u32>) -> Array3<f32> {
        self.forward(image_tokens, tokens).0
    }

    // ANCHOR: decoder_step
    /// Prepares incremental decoding for a batch of images: each block's
    /// cross-attention keys and values of the image tokens (computed once),
    /// and an empty KV cache per block with room for `max_len` tokens.
    ///
    /// # Shapes
    /// - `image_tokens: [B, N_img, C_img]`
    pub fn start(&self, image_tokens: &ArrayRef3<f32>) -> DecoderState {
        let batch = image_tokens.dim().0;
        DecoderState {
            memory: self
                .blocks
                .iter()
                .map(|block| block.cross_attn.memory_kv(image_tokens))
                .collect(),
            caches: self
                .blocks
                .iter()
                .map(|block| block.kv_cache(batch, self.max_len()))
                .collect(),
        }
    }

    /// Feeds `T_new` more tokens per sequence and returns the logits after
    /// the last of them: row `b` scores the token that follows
    /// `tokens[b, T_new − 1]`.
    ///
    /// # Shapes
    /// - `tokens: [B, T_new]` → `logits: [B, V]`
    ///
    /// # Panics
    /// If `T_new` is 0, the batch differs from [`Decoder::start`]'s, or the
    /// sequence would grow past `max_len`.
    #[track_caller]
    pub fn step(&self, state: &mut DecoderState, tokens: &ArrayRef2<u32>) -> Array2<f32> {
        let (batch, t_new) = tokens.dim();
        let start = state.len();
        assert!(
            t_new > 0 && start + t_new <= self.max_len(),
            "decoder step: {start} cached + {t_new} new tokens, the decoder holds at most {}",
            self.max_len()
        );
        assert_eq!(
            batch,
            state.batch(),
            "decoder step: tokens are {:?}, the state holds {} sequences",
            tokens.dim(),
            state.batch()
        );
        let (mut x, _) = self.token_embedding.forward(tokens); // [B, T_new, C]
        // positions start..start + T_new: the new tokens come after the cached ones
        x += &self
            .position_embedding
            .weight
            .slice(s![start..start + t_new, ..]);
        for ((block, memory), cache) in self.blocks.iter().zip(&state.memory).zip(&mut state.caches)
        {
            x = block.forward_incremental(&x, memory, cache);
        }
        let last = x.slice(s![.., t_new - 1..t_new, ..]); // [B, 1, C]: only the last is scored
        let (h, _) = self.ln_final.forward(&last);
        let (logits, _) = self.head_forward(h); // [B, 1, V]
        logits.remove_axis(Axis(1)) // [B, V]
    }
    // ANCHOR_END: decoder_step
}

// ANCHOR: decoder_state
/// The state of incremental decoding for a batch: per block, the image's
/// cross-attention keys and values and the self-attention KV cache.
#[derive(Debug, Clone)]
pub struct DecoderState {
    memory: Vec<MemoryKv>, // per block: k, v [B, H, N_img, D]
    caches: Vec<KvCache>,  // per block: k, v [B, H, len, D]
}
// ANCHOR_END: decoder_state

impl DecoderState {
    /// Tokens fed so far.
    pub fn len(&self) -> usize {
        self.caches.first().map_or(0, KvCache::len)
    }

    /// True before the first step.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sequences in the batch.
    pub fn batch(&self) -> usize {
        self.memory.first().map_or(0, |m| m.k.dim().0)
    }

    /// A state whose row `i` is this state's row `rows[i]`: rows may repeat
    /// or be dropped (beam search keeps the best hypotheses, a sampler drops
    /// finished ones).
    ///
    /// # Panics
    /// If a row index is out of range.
    #[track_caller]
    pub fn select(&self, rows: &[usize]) -> DecoderState {
        let memory = self
            .memory
            .iter()
            .map(|m| MemoryKv {
                k: m.k.select(Axis(0), rows),
                v: m.v.select(Axis(0), rows),
            })
            .collect();
        let caches = self.caches.iter().map(|c| c.select(rows)).collect();
        DecoderState { memory, caches }
    }
}

impl Params for Decoder {
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

    fn micro(head: Head, seed: u64) -> Decoder {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut decoder = DecoderConfig {
            width: 8,
            depth: 2,
            n_head: 2,
            mlp_hidden: 16,
            head,
        }
        .init(VOCAB, 6, 6, &mut rng);
        // tables at std 1, not 0.02: LayerNorm divides by the std of its
        // input, and at 0.02 a finite-difference step of 1e-2 is not small
        decoder.token_embedding.weight = init::normal((VOCAB, 8), 1.0, &mut rng);
        decoder.position_embedding.weight = init::normal((6, 8), 1.0, &mut rng);
        decoder
    }

    fn image_tokens(seed: u64) -> Array3<f32> {
        init::normal((2, 3, 6), 1.0, &mut StdRng::seed_from_u64(seed)) // [B, N_img, C_img]
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
            let decoder = micro(head, 0);
            assert_eq!(decoder.head(), head);
            let names: Vec<String> = decoder.params().into_iter().map(|(n, _)| n).collect();
            assert_eq!(names[0], "token_embedding.weight");
            assert_eq!(names[2], "blocks.0.ln_1.weight");
            assert!(names.contains(&"blocks.1.cross_attn.kv.weight".to_string()));
            assert_eq!(names.last().unwrap(), last);
            let logits = decoder.logits(&image_tokens(1), &tokens());
            assert_eq!(logits.dim(), (2, 5, VOCAB));
        }
    }

    #[test]
    fn gradcheck_both_heads_including_the_image_tokens() {
        for head in [Head::Tied, Head::Separate] {
            let decoder = micro(head, 2);
            let memory = image_tokens(3);
            let dlogits: Array3<f32> =
                init::normal((2, 5, VOCAB), 1.0, &mut StdRng::seed_from_u64(4));
            let (_, cache) = decoder.forward(&memory, &tokens());
            let mut grads = decoder.zeros_like();
            let dmemory = decoder.backward(&dlogits, &cache, &mut grads);
            let mut state = WithInputs::new(decoder, vec![("image_tokens", memory)]);
            let analytic = WithInputs::new(grads, vec![("image_tokens", dmemory)]);
            // at most 40 evenly spread elements of each tensor: the big
            // tables would otherwise dominate the test's time
            let check = GradCheck {
                max_per_tensor: 40,
                ..crate::gradcheck()
            };
            check
                .run(&mut state, &analytic, |s| {
                    let logits = s.module.logits(&s.input::<Ix3>(0), &tokens());
                    fakeloss(&logits, &dlogits)
                })
                .into_result()
                .unwrap();
        }
    }

    // ANCHOR: tied_test
    #[test]
    fn the_tied_table_gets_the_sum_of_both_uses() {
        let decoder = micro(Head::Tied, 5);
        let memory = image_tokens(6);
        let dlogits: Array3<f32> = init::normal((2, 5, VOCAB), 1.0, &mut StdRng::seed_from_u64(7));
        let (_, cache) = decoder.forward(&memory, &tokens());
        let mut tied = decoder.zeros_like();
        decoder.backward(&dlogits, &cache, &mut tied);

        // the same weights, untied: a separate head holding a copy of the table
        let mut untied = decoder.clone();
        untied.lm_head = Some(Linear::new(decoder.token_embedding.weight.clone(), None));
        let (logits, cache) = untied.forward(&memory, &tokens());
        assert_allclose(
            "logits",
            &logits,
            &decoder.logits(&memory, &tokens()),
            1e-6,
            1e-6,
        );
        let mut grads = untied.zeros_like();
        untied.backward(&dlogits, &cache, &mut grads);
        let as_head = &grads.lm_head.as_ref().unwrap().weight;
        let as_embedding = &grads.token_embedding.weight;
        assert!(as_head.iter().any(|&g| g != 0.0) && as_embedding.iter().any(|&g| g != 0.0));
        let sum = as_head + as_embedding;
        assert_allclose("dWte", &tied.token_embedding.weight, &sum, 1e-5, 1e-6);
    }
    // ANCHOR_END: tied_test

    // ANCHOR: incremental_test
    #[test]
    fn incremental_steps_equal_the_uncached_decoder() {
        for head in [Head::Tied, Head::Separate] {
            let decoder = micro(head, 8);
            let memory = image_tokens(9);
            let tokens = tokens();
            let want = decoder.logits(&memory, &tokens); // [B, T, V]
            let mut state = decoder.start(&memory);
            // a prompt of two tokens, then one at a time
            let got = decoder.step(&mut state, &tokens.slice(s![.., ..2]));
            assert_allclose("prompt", &got, &want.slice(s![.., 1, ..]), 1e-5, 1e-5);
            for t in 2..5 {
                let got = decoder.step(&mut state, &tokens.slice(s![.., t..t + 1]));
                assert_allclose(
                    &format!("step {t}"),
                    &got,
                    &want.slice(s![.., t, ..]),
                    1e-5,
                    1e-5,
                );
            }
            assert_eq!(state.len(), 5);
        }
    }
    // ANCHOR_END: incremental_test

    #[test]
    fn selecting_rows_reorders_the_whole_state() {
        let decoder = micro(Head::Tied, 10);
        let memory = image_tokens(11);
        let tokens = tokens();
        let mut state = decoder.start(&memory);
        decoder.step(&mut state, &tokens.slice(s![.., ..3]));
        // swap and duplicate rows: [1, 0, 1]
        let mut picked = state.select(&[1, 0, 1]);
        assert_eq!((picked.batch(), picked.len()), (3, 3));
        let next = array![[5], [2], [5]];
        let got = decoder.step(&mut picked, &next);
        let mut reference = decoder.start(&memory.select(Axis(0), &[1, 0, 1]));
        decoder.step(
            &mut reference,
            &tokens.select(Axis(0), &[1, 0, 1]).slice(s![.., ..3]),
        );
        let want = decoder.step(&mut reference, &next);
        assert_allclose("selected", &got, &want, 1e-6, 1e-6);
    }

    #[test]
    #[should_panic(expected = "decoder step: 5 cached + 2 new tokens, the decoder holds at most 6")]
    fn stepping_past_max_len_is_a_bug_named_with_the_sizes() {
        let decoder = micro(Head::Tied, 0);
        let mut state = decoder.start(&image_tokens(0));
        decoder.step(&mut state, &tokens());
        decoder.step(&mut state, &array![[1, 1], [1, 1]]);
    }
}
