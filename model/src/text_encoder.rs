//! The text encoder: a caption in, one vector out (CLIP's text tower).
//!
//! ```text
//! tokens [B, T]                <|bos|> a red circle <|eos|> <|pad|> …
//!   → token_embedding          [B, T, C]
//!   → + position_embedding     [B, T, C]
//!   → blocks × depth (causal)  [B, T, C]
//!   → x[b, lengths[b] − 1]     [B, C]      the vector at each caption's <|eos|>
//!   → ln_final                 [B, C]
//! ```
//!
//! With a causal mask, position `t` has read tokens `0..=t` and nothing
//! after, so the `<|eos|>` position is the first one that has read the whole
//! caption, and it never sees the padding behind it: no key-padding mask is
//! needed (CLIP does the same). That vector stands for the caption.
//!
//! subtle: the final LayerNorm normalises each vector on its own, so applying
//! it to the `B` pooled vectors only gives exactly what CLIP's "normalise all
//! `B·T`, then pick" gives, for `1/T` of the work.

use attention::{Block, BlockCache, LayerNorm, LayerNormCache, Mask};
use embedding::{
    Embedding, EmbeddingCache, EmbeddingConfig, Layer, LearnedPositions, Params, prefixed,
};
use ndarray::{Array2, Array3, ArrayRef2, ArrayViewD, ArrayViewMutD, Axis, s};
use rand::Rng;

use crate::config::TextConfig;

// ANCHOR: text_encoder
/// CLIP's text tower: embeddings, causal blocks, the vector at `<|eos|>`.
#[derive(Debug, Clone, PartialEq)]
pub struct TextEncoder {
    /// `[V, C_text]`
    pub token_embedding: Embedding,
    /// `[T_max, C_text]`
    pub position_embedding: LearnedPositions,
    /// Causal pre-LN blocks.
    pub blocks: Vec<Block>,
    /// `[C_text]` twice, applied to the pooled vectors.
    pub ln_final: LayerNorm,
}

/// What [`TextEncoder::backward`] needs.
#[derive(Debug, Clone)]
pub struct TextEncoderCache {
    token_embedding: EmbeddingCache,
    blocks: Vec<BlockCache>,
    ln_final: LayerNormCache,
    eos: Vec<usize>,             // [B]: the pooled position of each caption
    dims: (usize, usize, usize), // (B, T, C)
}
// ANCHOR_END: text_encoder

impl TextConfig {
    /// A fresh text tower for `vocab` tokens and captions up to `max_len`:
    /// token embeddings from `N(0, 0.02²)` and positions from `N(0, 0.01²)`
    /// (CLIP's choices), blocks at [`attention::BlockConfig::init`].
    pub fn init(&self, vocab: usize, max_len: usize, rng: &mut impl Rng) -> TextEncoder {
        let token_embedding = EmbeddingConfig {
            vocab,
            dim: self.width,
            std: 0.02,
        }
        .init(rng);
        let position_embedding = LearnedPositions::init(max_len, self.width, 0.01, rng);
        let blocks = (0..self.depth).map(|_| self.block().init(rng)).collect();
        TextEncoder {
            token_embedding,
            position_embedding,
            blocks,
            ln_final: LayerNorm::new(self.width),
        }
    }
}

impl TextEncoder {
    /// Width `C_text`.
    pub fn width(&self) -> usize {
        self.token_embedding.dim()
    }

    // ANCHOR: text_forward
    /// Encodes `B` captions; caption `b` ends with `<|eos|>` at `lengths[b] − 1`.
    ///
    /// # Shapes
    /// - `tokens: [B, T]`, `lengths: [B]` → `pooled: [B, C_text]`
    ///
    /// # Panics
    /// If `lengths` does not have `B` entries in `1..=T`, a token is outside
    /// the vocabulary, or `T` exceeds the position table.
    #[track_caller]
    pub fn forward(
        &self,
        tokens: &ArrayRef2<u32>,
        lengths: &[usize],
    ) -> (Array2<f32>, TextEncoderCache) {
        let (batch, seq) = tokens.dim();
        check_lengths("text encoder", lengths, batch, seq);
        let (x, token_embedding) = self.token_embedding.forward(tokens); // [B, T, C]
        let (mut x, ()) = self.position_embedding.forward(&x); // + positions
        let mut blocks = Vec::with_capacity(self.blocks.len());
        for block in &self.blocks {
            let (out, cache) = block.forward_masked(&x, &Mask::Causal);
            blocks.push(cache);
            x = out;
        }
        let eos: Vec<usize> = lengths.iter().map(|&len| len - 1).collect();
        let mut pooled = Array3::zeros((batch, 1, self.width())); // [B, 1, C]
        for (b, &t) in eos.iter().enumerate() {
            pooled
                .slice_mut(s![b, 0, ..])
                .assign(&x.slice(s![b, t, ..]));
        }
        let (pooled, ln_final) = self.ln_final.forward(&pooled); // [B, 1, C]
        let pooled = pooled.remove_axis(Axis(1)); // [B, C]
        let cache = TextEncoderCache {
            token_embedding,
            blocks,
            ln_final,
            eos,
            dims: x.dim(),
        };
        (pooled, cache)
    }
    // ANCHOR_END: text_forward

    // ANCHOR: text_backward
    /// Adds the parameter gradients into `grads`. Token IDs have no gradient.
    ///
    /// # Shapes
    /// - `dpooled: [B, C_text]`
    ///
    /// # Panics
    /// If `dpooled` is not `[B, C_text]`.
    #[track_caller]
    pub fn backward(
        &self,
        dpooled: &ArrayRef2<f32>,
        cache: &TextEncoderCache,
        grads: &mut TextEncoder,
    ) {
        let (batch, seq, width) = cache.dims;
        assert_eq!(
            dpooled.dim(),
            (batch, width),
            "text encoder backward: dpooled is {:?}, the batch was {:?}",
            dpooled.dim(),
            cache.dims
        );
        let dpooled = dpooled.view().insert_axis(Axis(1)); // [B, 1, C]
        let dpooled = self
            .ln_final
            .backward(&dpooled, &cache.ln_final, &mut grads.ln_final);
        // in the forward pass this was:
        //   pooled[b] = x[b, eos[b]]
        // so only the <|eos|> positions receive a gradient:
        let mut dx = Array3::zeros((batch, seq, width)); // [B, T, C]
        for (b, &t) in cache.eos.iter().enumerate() {
            dx.slice_mut(s![b, t, ..])
                .assign(&dpooled.slice(s![b, 0, ..]));
        }
        for ((block, block_cache), block_grads) in self
            .blocks
            .iter()
            .zip(&cache.blocks)
            .zip(&mut grads.blocks)
            .rev()
        {
            dx = block.backward(&dx, block_cache, block_grads);
        }
        // x = token_embedding(tokens) + position_embedding: both get dx
        let dx = self
            .position_embedding
            .backward(&dx, &(), &mut grads.position_embedding);
        self.token_embedding
            .backward(&dx, &cache.token_embedding, &mut grads.token_embedding);
    }
    // ANCHOR_END: text_backward
}

/// Panics unless `lengths` has `batch` entries, each in `1..=seq`.
#[track_caller]
pub(crate) fn check_lengths(op: &str, lengths: &[usize], batch: usize, seq: usize) {
    assert!(
        lengths.len() == batch && lengths.iter().all(|&len| (1..=seq).contains(&len)),
        "{op}: lengths {lengths:?} must give {batch} values in 1..={seq} (tokens are [{batch}, {seq}])"
    );
}

impl Params for TextEncoder {
    fn params(&self) -> Vec<(String, ArrayViewD<'_, f32>)> {
        let mut list: Vec<_> = prefixed("token_embedding", self.token_embedding.params()).collect();
        list.extend(prefixed(
            "position_embedding",
            self.position_embedding.params(),
        ));
        list.extend(prefixed("blocks", self.blocks.params()));
        list.extend(prefixed("ln_final", self.ln_final.params()));
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
        list
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use embedding::init;
    use embedding::testing::fakeloss;
    use ndarray::array;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn micro(seed: u64) -> TextEncoder {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut text = TextConfig {
            width: 8,
            depth: 2,
            n_head: 2,
            mlp_hidden: 16,
        }
        .init(7, 5, &mut rng);
        // tables at std 1, not 0.02: LayerNorm divides by the std of its
        // input, and at 0.02 a finite-difference step of 1e-2 is not small
        text.token_embedding.weight = init::normal((7, 8), 1.0, &mut rng);
        text.position_embedding.weight = init::normal((5, 8), 1.0, &mut rng);
        text
    }

    #[test]
    fn names_follow_open_clip() {
        let names: Vec<String> = micro(0).params().into_iter().map(|(n, _)| n).collect();
        assert_eq!(
            &names[..3],
            [
                "token_embedding.weight",
                "position_embedding.weight",
                "blocks.0.ln_1.weight"
            ]
        );
        assert_eq!(
            &names[names.len() - 2..],
            ["ln_final.weight", "ln_final.bias"]
        );
    }

    #[test]
    fn padding_after_eos_changes_nothing() {
        let text = micro(1);
        let tokens = array![[4, 1, 2, 5, 6], [4, 3, 5, 6, 6]];
        let other_padding = array![[4, 1, 2, 5, 0], [4, 3, 5, 1, 2]];
        let (a, _) = text.forward(&tokens, &[4, 3]);
        let (b, _) = text.forward(&other_padding, &[4, 3]);
        assert_eq!(a, b);
        // but a token before eos does
        let (c, _) = text.forward(&array![[4, 2, 2, 5, 6], [4, 3, 5, 6, 6]], &[4, 3]);
        assert_ne!(a.row(0), c.row(0));
        assert_eq!(a.row(1), c.row(1));
    }

    #[test]
    fn gradcheck_every_parameter() {
        let mut text = micro(2);
        let tokens = array![[4, 1, 2, 5, 6], [4, 3, 3, 1, 5]];
        let lengths = [4, 5];
        let dpooled: Array2<f32> = init::normal((2, 8), 1.0, &mut StdRng::seed_from_u64(3));
        let (_, cache) = text.forward(&tokens, &lengths);
        let mut grads = text.zeros_like();
        text.backward(&dpooled, &cache, &mut grads);
        crate::gradcheck()
            .run(&mut text, &grads, |t| {
                fakeloss(&t.forward(&tokens, &lengths).0, &dpooled)
            })
            .into_result()
            .unwrap();
    }

    #[test]
    #[should_panic(expected = "text encoder: lengths [0, 5] must give 2 values in 1..=5")]
    fn a_zero_length_is_a_bug_named_with_the_shapes() {
        micro(0).forward(&array![[1, 2, 3, 4, 5], [1, 2, 3, 4, 5]], &[0, 5]);
    }
}
