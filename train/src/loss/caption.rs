//! The captioning loss: next-token cross-entropy with teacher forcing.
//!
// ANCHOR: caption_doc
//! ## The loss
//! The decoder reads `tokens[:, ..T−1]` (the true caption, not its own
//! guesses: *teacher forcing*) and its logits at position `t` score the next
//! token `tokens[:, t + 1]`. Only real targets count: position `t` of row
//! `b` is scored when `t + 1 < lengths[b]` (up to and including `<|eos|>`),
//! never on `<|pad|>`. With `N` such positions,
//!
//! $$ L = \frac1N \sum_{(b,t)\ \text{real}} -\log \operatorname{softmax}(z_{b,t,:})_{y_{b,t}}, $$
//!
//! the mean over real tokens, as PyTorch's `F.cross_entropy(...,
//! ignore_index=pad)` computes it. (A mean per caption and then over
//! captions would weigh the tokens of short captions more.)
//!
//! ## Its gradient
//! $$ \frac{\partial L}{\partial z_{b,t,:}} = \frac1N \big( \operatorname{softmax}(z_{b,t,:}) - \text{onehot}(y_{b,t}) \big) $$
//! on real positions, and zero on padding.
// ANCHOR_END: caption_doc

use ndarray::{Array3, ArrayRef2, ArrayRef3};

/// The captioning loss and its gradient.
#[derive(Debug, Clone, PartialEq)]
pub struct CaptionLoss {
    /// `L`, the mean cross-entropy over real target tokens.
    pub loss: f32,
    /// `[B, T − 1, V]`: ∂L/∂`logits`, zero on padding positions.
    pub dlogits: Array3<f32>,
    /// `N`, the number of real target tokens the mean is over.
    pub tokens: usize,
}

// ANCHOR: caption_loss
/// Next-token cross-entropy of the decoder's `logits` against
/// `tokens[:, 1..]`, ignoring targets at or after `lengths[b]`.
///
/// # Shapes
/// - `logits: [B, T − 1, V]`, `tokens: [B, T]`, `lengths: [B]` → `dlogits: [B, T − 1, V]`
///
/// # Panics
/// If the shapes disagree, a length is outside `2..=T`, or a target token
/// is `≥ V`.
#[track_caller]
pub fn caption_loss(
    logits: &ArrayRef3<f32>,
    tokens: &ArrayRef2<u32>,
    lengths: &[usize],
) -> CaptionLoss {
    let (b, t1, v) = logits.dim();
    let (tb, t) = tokens.dim();
    assert!(
        tb == b && t == t1 + 1 && lengths.len() == b,
        "caption_loss: logits are {:?}, tokens are {:?}, {} lengths (want [B, T − 1, V], [B, T], B)",
        logits.dim(),
        tokens.dim(),
        lengths.len()
    );
    assert!(
        lengths.iter().all(|&len| (2..=t).contains(&len)),
        "caption_loss: lengths {lengths:?} must lie in 2..={t} (<|bos|> and <|eos|> at least)"
    );
    let n: usize = lengths.iter().map(|len| len - 1).sum();
    let inv_n = 1.0 / n as f32;

    let mut dlogits = Array3::<f32>::zeros((b, t1, v));
    let mut total = 0.0f64;
    for (row, &len) in lengths.iter().enumerate() {
        for pos in 0..len - 1 {
            let target = tokens[[row, pos + 1]] as usize;
            assert!(
                target < v,
                "caption_loss: target token {target} at [{row}, {}] is outside the vocabulary of {v}",
                pos + 1
            );
            let z = logits.slice(ndarray::s![row, pos, ..]);
            let mut d = dlogits.slice_mut(ndarray::s![row, pos, ..]);
            let max = z.fold(f32::NEG_INFINITY, |m, &x| m.max(x));
            d.zip_mut_with(&z, |d, &z| *d = (z - max).exp());
            let sum = d.sum();
            // −log softmax(z)_y = log Σ exp(z − max) − (z_y − max)
            total += (sum as f64).ln() - (z[target] - max) as f64;
            // ∂L/∂z = (softmax(z) − onehot(y)) / N
            let scale = inv_n / sum;
            d.mapv_inplace(|e| e * scale);
            d[target] -= inv_n;
        }
    }
    CaptionLoss {
        loss: (total / n as f64) as f32,
        dlogits,
        tokens: n,
    }
}
// ANCHOR_END: caption_loss

#[cfg(test)]
mod tests {
    use super::*;
    use embedding::testing::{GradCheck, WithInputs};
    use embedding::{Params, init};
    use ndarray::{Array2, ArrayViewD, ArrayViewMutD, Ix3, array};
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    /// Nothing to learn: `WithInputs` needs a module, the loss has none.
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

    // two captions of lengths 5 and 3 in T = 5, vocabulary 6 (pad = 5)
    fn tokens() -> (Array2<u32>, Vec<usize>) {
        (array![[3, 0, 1, 2, 4], [3, 2, 4, 5, 5]], vec![5, 3])
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let (tokens, lengths) = tokens();
        let logits = init::normal((2, 4, 6), 1.0, &mut StdRng::seed_from_u64(3));
        let out = caption_loss(&logits, &tokens, &lengths);
        let mut state = WithInputs::new(NoParams, vec![("logits", logits)]);
        let analytic = WithInputs::new(NoParams, vec![("logits", out.dlogits.clone())]);
        GradCheck::default()
            .run(&mut state, &analytic, |s| {
                caption_loss(&s.input::<Ix3>(0), &tokens, &lengths).loss as f64
            })
            .into_result()
            .unwrap();
    }

    #[test]
    fn padding_is_ignored() {
        let (tokens, lengths) = tokens();
        let mut logits = init::normal((2, 4, 6), 1.0, &mut StdRng::seed_from_u64(4));
        let before = caption_loss(&logits, &tokens, &lengths);
        assert_eq!(before.tokens, 4 + 2);
        // row 1 scores real targets at positions 0 and 1 only
        logits.slice_mut(ndarray::s![1, 2.., ..]).fill(1e3);
        let after = caption_loss(&logits, &tokens, &lengths);
        assert_eq!(before.loss, after.loss);
        assert!(
            after
                .dlogits
                .slice(ndarray::s![1, 2.., ..])
                .iter()
                .all(|&d| d == 0.0)
        );
    }

    #[test]
    fn uniform_logits_give_ln_vocab() {
        let (tokens, lengths) = tokens();
        let out = caption_loss(&Array3::zeros((2, 4, 6)), &tokens, &lengths);
        assert!((out.loss - 6f32.ln()).abs() < 1e-6);
        // each real position's gradient sums to zero (softmax minus one-hot)
        for row in out.dlogits.rows() {
            assert!(row.sum().abs() < 1e-6);
        }
    }

    #[test]
    #[should_panic(expected = "caption_loss")]
    fn a_length_past_the_row_panics() {
        let (tokens, _) = tokens();
        caption_loss(&Array3::zeros((2, 4, 6)), &tokens, &[6, 2]);
    }
}
