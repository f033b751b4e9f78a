//! The output head of a language model: final hidden states to vocabulary
//! logits, through the token embedding read backwards (tied) or a separate
//! `lm_head`.
//!
//! - tied: `logits = h · Wteᵀ` (GPT-2, CoCa); backward `dWte += dlogitsᵀ h`,
//!   `dh = dlogits · Wte`;
//! - separate: a Linear `[V, C]` without bias.
//!
//! Both the caption decoder and the decoder-only language model end in one,
//! so it lives here once. A tied table is used twice in one pass (the lookup
//! at the bottom, the head at the top), so its gradient is the sum of both
//! uses: the head adds its share into the same twin the lookup adds into.

use embedding::{Embedding, Layer, Linear, LinearCache, gemm, matmul};
use ndarray::{Array2, Array3, ArrayRef3};

/// What the head's backward pass needs.
#[derive(Debug, Clone)]
pub(crate) enum HeadCache {
    Tied { h: Array2<f32> }, // [B*T, C]: ln_final's output, what the tied head multiplied
    Separate(LinearCache),
}

/// The gradient twins a head writes into: the token table (tied) and
/// `lm_head` (separate). `None` for a frozen model: `dh` only.
pub(crate) struct HeadGrads<'a> {
    pub token_embedding: &'a mut Embedding,
    pub lm_head: Option<&'a mut Linear>,
}

// ANCHOR: tied_head
/// `h: [B, T, C]` → `logits: [B, T, V]`, through the tied table or `lm_head`.
pub(crate) fn head_forward(
    token_embedding: &Embedding,
    lm_head: Option<&Linear>,
    h: Array3<f32>,
) -> (Array3<f32>, HeadCache) {
    let (batch, seq, width) = h.dim();
    match lm_head {
        None => {
            let h = h.into_shape_with_order((batch * seq, width)).unwrap(); // [B*T, C], contiguous by construction
            let wte = &token_embedding.weight; // [V, C]
            let logits = matmul(&h, &wte.t()); // [B*T, C] x [C, V] -> [B*T, V]
            let logits = logits
                .into_shape_with_order((batch, seq, token_embedding.vocab()))
                .unwrap(); // contiguous by construction
            (logits, HeadCache::Tied { h })
        }
        Some(lm_head) => {
            let (logits, cache) = lm_head.forward(&h);
            (logits, HeadCache::Separate(cache))
        }
    }
}

/// The head's backward: `dlogits: [B, T, V]` → `dh: [B, T, C]`, adding the
/// parameter gradients into `grads` unless the model is frozen (`None`).
///
/// # Panics
/// If the cache or the grads have the other kind of head.
pub(crate) fn head_backward(
    token_embedding: &Embedding,
    lm_head: Option<&Linear>,
    dlogits: &ArrayRef3<f32>,
    cache: &HeadCache,
    grads: Option<HeadGrads<'_>>,
) -> Array3<f32> {
    let (batch, seq, vocab) = dlogits.dim();
    match (cache, lm_head) {
        (HeadCache::Tied { h }, None) => {
            let dlogits = dlogits.to_shape((batch * seq, vocab)).unwrap(); // [B*T, V]
            let wte = &token_embedding.weight; // [V, C]
            // in the forward pass this was:
            //   logits = h Wteᵀ
            // so now we have, added to what the embedding's own use contributes:
            if let Some(grads) = grads {
                let dwte = &mut grads.token_embedding.weight;
                gemm(1.0, &dlogits.t(), h, 1.0, dwte); // dWte += dlogitsᵀ h: [V, C]
            }
            let dh = matmul(&dlogits, wte); // [B*T, V] x [V, C] -> [B*T, C]
            dh.into_shape_with_order((batch, seq, token_embedding.dim()))
                .unwrap() // contiguous by construction
        }
        (HeadCache::Separate(cache), Some(lm_head)) => match grads.map(|g| g.lm_head) {
            Some(Some(grads)) => lm_head.backward(dlogits, cache, grads),
            Some(None) => panic!("head backward: the grads have no lm_head"),
            None => lm_head.backward_input(dlogits), // frozen: dh = dlogits W
        },
        _ => panic!("head backward: the cache has the other kind of head"),
    }
}
// ANCHOR_END: tied_head
