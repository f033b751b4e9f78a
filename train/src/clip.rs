//! Gradient clipping by global norm.
//!
// ANCHOR: clip_doc
//! One unlucky batch can produce a gradient many times larger than usual
//! (a near-zero softmax probability on a target, a logit scale at its
//! limit). Clipping by the *global* norm, the 2-norm of all parameter
//! gradients as one long vector, rescales the whole gradient when that norm
//! exceeds `max_norm`: the direction of the step is kept, only its length
//! is capped. (Clipping each element separately would change the
//! direction.) AdamW divides by a running RMS of the gradients, so clipping
//! matters less for it than for SGD, but a spike still corrupts the moments
//! for many steps; CLIP-style training clips at 1.0.
// ANCHOR_END: clip_doc

use embedding::Params;

// ANCHOR: clip_grad_norm
/// Scales every gradient in `grads` by `max_norm / (norm + 1e-6)` when their
/// global 2-norm exceeds `max_norm`, as PyTorch's `clip_grad_norm_` does, and
/// returns the norm *before* clipping (NaN or ∞ if a gradient is not finite;
/// nothing is scaled then).
pub fn clip_grad_norm(grads: &mut impl Params, max_norm: f32) -> f32 {
    let norm = global_norm(grads);
    if norm.is_finite() && norm > max_norm {
        let factor = max_norm / (norm + 1e-6);
        for (_, mut g) in grads.params_mut() {
            g.mapv_inplace(|x| x * factor);
        }
    }
    norm
}

/// The 2-norm of all of `grads`' tensors as one vector (summed in f64).
pub fn global_norm(grads: &impl Params) -> f32 {
    let sum: f64 = grads
        .params()
        .iter()
        .map(|(_, g)| g.iter().map(|&x| (x as f64) * (x as f64)).sum::<f64>())
        .sum();
    sum.sqrt() as f32
}
// ANCHOR_END: clip_grad_norm

#[cfg(test)]
mod tests {
    use super::*;
    use embedding::Linear;
    use ndarray::{Array1, array};

    fn grads() -> Linear {
        // norm sqrt(9 + 16 + 0 + 144) = 13
        Linear::new(
            array![[3.0, 4.0], [0.0, 0.0]],
            Some(Array1::from(vec![12.0, 0.0])),
        )
    }

    #[test]
    fn large_gradients_are_scaled_to_max_norm() {
        let mut g = grads();
        let norm = clip_grad_norm(&mut g, 1.0);
        assert!((norm - 13.0).abs() < 1e-5);
        assert!((global_norm(&g) - 1.0).abs() < 1e-5);
        // the direction is kept
        assert!((g.weight[[0, 1]] / g.weight[[0, 0]] - 4.0 / 3.0).abs() < 1e-6);
    }

    #[test]
    fn small_gradients_are_left_alone() {
        let mut g = grads();
        assert!((clip_grad_norm(&mut g, 20.0) - 13.0).abs() < 1e-5);
        assert_eq!(g, grads());
    }

    #[test]
    fn a_nan_is_reported_not_spread() {
        let mut g = grads();
        g.weight[[1, 1]] = f32::NAN;
        assert!(clip_grad_norm(&mut g, 1.0).is_nan());
        assert_eq!(g.weight[[0, 0]], 3.0);
    }
}
