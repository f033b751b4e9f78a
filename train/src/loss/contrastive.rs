//! The symmetric contrastive loss of CLIP (InfoNCE in both directions).
//!
// ANCHOR: contrastive_doc
//! ## The loss
//! A batch holds `B` matching pairs `(image_i, caption_i)`. With unit
//! embeddings `I, T: [B, E]` and the scale `s = exp(logit_scale) = 1/τ`, the
//! similarity logits are
//!
//! $$ z = s \, I T^\top \in \mathbb{R}^{B \times B}. $$
//!
//! Row `i` of `z` asks "which caption belongs to image `i`?" and column `j`
//! asks "which image belongs to caption `j`?"; the right answer is always the
//! diagonal. The loss is the mean of the two cross-entropies:
//!
//! $$ L = \tfrac12 \Big( \tfrac1B \sum_i -\log \operatorname{softmax}(z_{i,:})_i
//!      + \tfrac1B \sum_j -\log \operatorname{softmax}(z_{:,j})_j \Big). $$
//!
//! ## Its gradient
//! The gradient of a cross-entropy with respect to its logits is "softmax
//! minus one-hot". With `P = softmax` over rows and `Q = softmax` over columns
//! (both `[B, B]`),
//!
//! $$ \frac{\partial L}{\partial z} = \frac{1}{2B} \big( (P - \mathbb{1}) + (Q - \mathbb{1}) \big), $$
//!
//! and because `z = s·I Tᵀ` is bilinear,
//!
//! $$ \frac{\partial L}{\partial I} = s \, \frac{\partial L}{\partial z} T, \qquad
//!    \frac{\partial L}{\partial T} = s \, \Big(\frac{\partial L}{\partial z}\Big)^{\!\top} I, \qquad
//!    \frac{\partial L}{\partial s} = \sum_{ij} \frac{\partial L}{\partial z_{ij}} (I T^\top)_{ij}. $$
//!
//! The model stores `logit_scale = ln s`, so its gradient is `s · ∂L/∂s`
//! (the model's backward pass applies that last factor).
//!
//! ## Why the temperature matters, and what `ln B` means
//! The embeddings are unit vectors, so `I Tᵀ` holds cosines in `[−1, 1]`.
//! With `s = 1` the softmax over `B` candidates can never be confident: even
//! a perfect model (cosine 1 on the diagonal, −1 elsewhere) would keep a loss
//! near `ln B − 2`. The scale stretches the cosines into logits a softmax can
//! act on; CLIP starts at `s = 1/0.07 ≈ 14.3` and learns it, and open_clip
//! clamps it at 100 so the loss cannot sharpen without bound.
//!
//! If every logit in a row is equal, the softmax is uniform and each
//! cross-entropy is exactly `ln B` (for `B = 64`, `ln 64 ≈ 4.16`). A
//! contrastive loss stuck at `ln B` therefore means the model tells no pair
//! apart: the embeddings have collapsed to one point, or the scale is so
//! small that the cosines barely move the softmax. Watch the logit scale and
//! the spread of the cosines when it happens.
// ANCHOR_END: contrastive_doc

use ndarray::{Array2, ArrayRef2, Axis};

/// The contrastive loss and its gradients.
#[derive(Debug, Clone, PartialEq)]
pub struct ContrastiveLoss {
    /// `L`, the mean of the image→text and text→image cross-entropies.
    pub loss: f32,
    /// `[B, E]`: ∂L/∂`image_embeds`.
    pub dimage_embeds: Array2<f32>,
    /// `[B, E]`: ∂L/∂`text_embeds`.
    pub dtext_embeds: Array2<f32>,
    /// ∂L/∂`s`, the gradient with respect to the scale `s = exp(logit_scale)`
    /// (what [`model::ModelOutputGrads::dlogit_scale`] expects).
    pub dscale: f32,
}

// ANCHOR: contrastive_loss
/// The symmetric contrastive loss of `B` matching pairs: row `i` of
/// `image_embeds` belongs with row `i` of `text_embeds`.
///
/// `scale` is `s = exp(logit_scale)`, as [`model::ModelOutput::logit_scale`]
/// carries it.
///
/// # Shapes
/// - `image_embeds, text_embeds: [B, E]` → gradients `[B, E]`
///
/// # Panics
/// If the two shapes differ or `B = 0`.
#[track_caller]
pub fn contrastive_loss(
    image_embeds: &ArrayRef2<f32>,
    text_embeds: &ArrayRef2<f32>,
    scale: f32,
) -> ContrastiveLoss {
    assert!(
        image_embeds.dim() == text_embeds.dim() && image_embeds.nrows() > 0,
        "contrastive_loss: image_embeds are {:?}, text_embeds are {:?} (same [B, E], B > 0)",
        image_embeds.dim(),
        text_embeds.dim()
    );
    let b = image_embeds.nrows();

    let cosines = image_embeds.dot(&text_embeds.t()); // [B, B]: (I Tᵀ)_ij
    let logits = &cosines * scale; // z

    // image → text: softmax over each row; text → image: over each column
    let (rows, row_loss) = softmax_cross_entropy(&logits, Axis(1));
    let (cols, col_loss) = softmax_cross_entropy(&logits, Axis(0));
    let loss = 0.5 * (row_loss + col_loss);

    // ∂L/∂z = ((P − 1) + (Q − 1)) / 2B
    let mut dlogits = rows + &cols;
    for i in 0..b {
        dlogits[[i, i]] -= 2.0;
    }
    dlogits *= 0.5 / b as f32;

    // in the forward pass this was:
    //   z = s · I Tᵀ
    // so now we have:
    let dscale = (&dlogits * &cosines).sum();
    let dimage_embeds = dlogits.dot(text_embeds) * scale;
    let dtext_embeds = dlogits.t().dot(image_embeds) * scale;
    ContrastiveLoss {
        loss,
        dimage_embeds,
        dtext_embeds,
        dscale,
    }
}
// ANCHOR_END: contrastive_loss

/// The softmax of `logits` along `axis` (rows: `Axis(1)`, columns: `Axis(0)`)
/// and the mean cross-entropy with the diagonal as the targets.
fn softmax_cross_entropy(logits: &Array2<f32>, axis: Axis) -> (Array2<f32>, f32) {
    let mut probs = logits.clone();
    let mut total = 0.0f64;
    for (k, mut lane) in probs.lanes_mut(axis).into_iter().enumerate() {
        let max = lane.fold(f32::NEG_INFINITY, |m, &x| m.max(x));
        let target = lane[k];
        lane.mapv_inplace(|x| (x - max).exp());
        let sum = lane.sum();
        lane /= sum;
        // −log softmax(z)_k = log Σ exp(z − max) − (z_k − max)
        total += (sum as f64).ln() - (target - max) as f64;
    }
    (probs, (total / logits.nrows() as f64) as f32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use embedding::testing::GradCheck;
    use embedding::{Params, init};
    use ndarray::{Array0, ArrayViewD, ArrayViewMutD};
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    /// The loss's inputs as a `Params` state, so `GradCheck` perturbs them.
    #[derive(Debug, Clone)]
    struct Inputs {
        image: Array2<f32>,
        text: Array2<f32>,
        logit_scale: Array0<f32>, // ln s: the model's parameter
    }

    impl Params for Inputs {
        fn params(&self) -> Vec<(String, ArrayViewD<'_, f32>)> {
            vec![
                ("image".into(), self.image.view().into_dyn()),
                ("text".into(), self.text.view().into_dyn()),
                ("logit_scale".into(), self.logit_scale.view().into_dyn()),
            ]
        }
        fn params_mut(&mut self) -> Vec<(String, ArrayViewMutD<'_, f32>)> {
            vec![
                ("image".into(), self.image.view_mut().into_dyn()),
                ("text".into(), self.text.view_mut().into_dyn()),
                ("logit_scale".into(), self.logit_scale.view_mut().into_dyn()),
            ]
        }
    }

    fn inputs(b: usize, e: usize, seed: u64) -> Inputs {
        let mut rng = StdRng::seed_from_u64(seed);
        Inputs {
            image: init::normal((b, e), 0.5, &mut rng),
            text: init::normal((b, e), 0.5, &mut rng),
            logit_scale: Array0::from_elem((), 1.2),
        }
    }

    #[test]
    fn gradients_match_finite_differences() {
        let mut state = inputs(5, 4, 1);
        let out = contrastive_loss(&state.image, &state.text, state.logit_scale[()].exp());
        let analytic = Inputs {
            image: out.dimage_embeds.clone(),
            text: out.dtext_embeds.clone(),
            // the parameter is ln s: ∂L/∂ln s = s · ∂L/∂s
            logit_scale: Array0::from_elem((), out.dscale * state.logit_scale[()].exp()),
        };
        GradCheck::default()
            .run(&mut state, &analytic, |s| {
                contrastive_loss(&s.image, &s.text, s.logit_scale[()].exp()).loss as f64
            })
            .into_result()
            .unwrap();
    }

    #[test]
    fn equal_logits_give_ln_batch() {
        // every embedding the same: every row and column of z is constant
        let image = Array2::from_elem((8, 3), 0.5);
        let out = contrastive_loss(&image, &image, 14.0);
        assert!((out.loss - 8f32.ln()).abs() < 1e-5, "{}", out.loss);
    }

    #[test]
    fn perfect_separation_with_a_large_scale_gives_a_small_loss() {
        let eye = Array2::<f32>::eye(4);
        let sharp = contrastive_loss(&eye, &eye, 100.0).loss;
        let soft = contrastive_loss(&eye, &eye, 1.0).loss;
        assert!(sharp < 1e-6, "{sharp}");
        // with s = 1: −log(e / (e + 3)) in both directions
        let want = -(1f32.exp() / (1f32.exp() + 3.0)).ln();
        assert!((soft - want).abs() < 1e-5, "{soft} vs {want}");
    }

    #[test]
    fn swapping_the_towers_swaps_the_gradients() {
        let s = inputs(4, 3, 7);
        let a = contrastive_loss(&s.image, &s.text, 5.0);
        let b = contrastive_loss(&s.text, &s.image, 5.0);
        assert!((a.loss - b.loss).abs() < 1e-6);
        embedding::testing::assert_allclose("swap", &a.dimage_embeds, &b.dtext_embeds, 1e-5, 1e-6);
    }

    #[test]
    #[should_panic(expected = "contrastive_loss")]
    fn mismatched_shapes_panic() {
        contrastive_loss(&Array2::zeros((2, 3)), &Array2::zeros((3, 3)), 1.0);
    }
}
