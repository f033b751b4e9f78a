//! Attention masks: which keys each query may look at.
//!
//! Every mask this crate knows allows a *prefix* of the keys for each query
//! row: causal attention sees the keys up to its own position, key padding
//! sees the first `len[b]` keys of sequence `b`, and both together see the
//! shorter of the two prefixes. So a mask is summed up by one number per
//! row, [`Mask::visible_keys`], and the kernels never build a `[T_q, T_kv]`
//! boolean matrix: they set the scores past the prefix to `−∞` (the plain
//! kernel) or skip whole tiles of keys (the tiled one).
//!
//! subtle: causal masks align the *last* query with the *last* key, so query
//! `i` of `T_q` sits at position `T_kv − T_q + i`. With `T_q = T_kv` this is
//! the usual lower triangle (PyTorch's `is_causal=True`); with a KV cache
//! holding earlier tokens (`T_kv > T_q`) it is exactly "see everything up to
//! yourself". (PyTorch's `is_causal` aligns the *first* rows instead; the two
//! only differ when `T_q ≠ T_kv`.)
//!
//! The prefix-LM mask of PaliGemma (and of T5's "prefix LM" before it) fits
//! the same mould: the first `prefix[b]` positions (an image and the prompt)
//! see each other in both directions, and every later position is causal. So
//! query `i` sees the first `max(causal(i), prefix[b])` keys: still a prefix.
//!
//! A row that sees no key at all (key padding length 0, or a causal query
//! placed before the first key when `T_q > T_kv`) is *fully masked*: its
//! attention weights and its output are zeros, not NaN.

use ndarray::Array3;

// ANCHOR: mask
/// Which keys each query may attend to. Flags are an enum, not a `bool`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Mask {
    /// Every query sees every key (ViT, cross-attention to image tokens).
    #[default]
    None,
    /// Query `i` sees keys `0..=T_kv − T_q + i` (text decoders).
    Causal,
    /// Sequence `b` has `lengths[b]` real keys followed by padding.
    KeyPadding(Vec<usize>),
    /// Both: causal, and never past `lengths[b]`.
    CausalKeyPadding(Vec<usize>),
    /// Prefix-LM: the first `prefix[b]` positions of sequence `b` see one
    /// another both ways; later positions are causal (PaliGemma's image +
    /// prompt, then the answer).
    PrefixLm(Vec<usize>),
}
// ANCHOR_END: mask

impl Mask {
    // ANCHOR: visible_keys
    /// How many keys (a prefix `0..n`) query `i` of batch item `b` may see.
    ///
    /// # Panics
    /// If a padding mask has no length for batch item `b`.
    #[track_caller]
    pub fn visible_keys(&self, b: usize, i: usize, t_q: usize, t_kv: usize) -> usize {
        // query i sits at position t_kv - t_q + i; it sees keys up to and including it
        let causal = || (i + 1 + t_kv).saturating_sub(t_q).min(t_kv);
        let padded = |lengths: &[usize]| {
            let len = *lengths.get(b).unwrap_or_else(|| {
                panic!(
                    "mask: key padding has {} lengths, batch item {b} asked",
                    lengths.len()
                )
            });
            len.min(t_kv)
        };
        match self {
            Mask::None => t_kv,
            Mask::Causal => causal(),
            Mask::KeyPadding(lengths) => padded(lengths),
            Mask::CausalKeyPadding(lengths) => causal().min(padded(lengths)),
            // the prefix counts in key positions, so a query after a KV cache's
            // past (T_kv > T_q) still sees the whole prefix
            Mask::PrefixLm(prefix) => causal().max(padded(prefix)),
        }
    }
    // ANCHOR_END: visible_keys

    /// Checks a padding mask against the batch size.
    ///
    /// # Panics
    /// If the mask carries lengths and there are not `batch` of them.
    #[track_caller]
    pub fn check_batch(&self, batch: usize) {
        if let Mask::KeyPadding(lengths)
        | Mask::CausalKeyPadding(lengths)
        | Mask::PrefixLm(lengths) = self
        {
            assert_eq!(
                lengths.len(),
                batch,
                "mask: key padding has {} lengths, the batch has {batch} sequences",
                lengths.len()
            );
        }
    }

    /// The mask as booleans, `true` where query `i` may see key `j`: for
    /// plots and for comparing with a PyTorch `attn_mask`.
    ///
    /// # Shapes
    /// `→ [B, T_q, T_kv]`
    pub fn to_dense(&self, batch: usize, t_q: usize, t_kv: usize) -> Array3<bool> {
        Array3::from_shape_fn((batch, t_q, t_kv), |(b, i, j)| {
            j < self.visible_keys(b, i, t_q, t_kv)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn causal_is_the_lower_triangle() {
        let dense = Mask::Causal.to_dense(1, 3, 3);
        let want = array![
            [true, false, false],
            [true, true, false],
            [true, true, true]
        ];
        assert_eq!(dense.index_axis(ndarray::Axis(0), 0), want);
    }

    #[test]
    fn causal_aligns_the_last_query_with_the_last_key() {
        // one new query after 4 cached keys sees all 5
        assert_eq!(Mask::Causal.visible_keys(0, 0, 1, 5), 5);
        // more queries than keys: the first ones see nothing
        assert_eq!(Mask::Causal.visible_keys(0, 0, 3, 2), 0);
        assert_eq!(Mask::Causal.visible_keys(0, 2, 3, 2), 2);
    }

    #[test]
    fn padding_takes_the_shorter_prefix() {
        let mask = Mask::CausalKeyPadding(vec![2, 0]);
        assert_eq!(mask.visible_keys(0, 3, 4, 4), 2);
        assert_eq!(mask.visible_keys(0, 0, 4, 4), 1);
        assert_eq!(mask.visible_keys(1, 3, 4, 4), 0);
        assert_eq!(Mask::KeyPadding(vec![9]).visible_keys(0, 0, 2, 3), 3);
    }

    #[test]
    fn prefix_lm_is_a_square_then_the_triangle() {
        let dense = Mask::PrefixLm(vec![2]).to_dense(1, 4, 4);
        let want = array![
            [true, true, false, false],
            [true, true, false, false],
            [true, true, true, false],
            [true, true, true, true]
        ];
        assert_eq!(dense.index_axis(ndarray::Axis(0), 0), want);
        // a prefix of 0 or 1 is the causal mask; a prefix past the end sees everything
        assert_eq!(
            Mask::PrefixLm(vec![1]).to_dense(1, 4, 4),
            Mask::Causal.to_dense(1, 4, 4)
        );
        assert_eq!(
            Mask::PrefixLm(vec![9]).to_dense(1, 3, 3),
            Mask::None.to_dense(1, 3, 3)
        );
        // one new query after a cached past of 5 keys sees all 6
        assert_eq!(Mask::PrefixLm(vec![3]).visible_keys(0, 0, 1, 6), 6);
    }

    #[test]
    #[should_panic(expected = "mask: key padding has 1 lengths, the batch has 2 sequences")]
    fn padding_must_match_the_batch() {
        Mask::KeyPadding(vec![1]).check_batch(2);
    }
}
