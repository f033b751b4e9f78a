//! Numerically stable softmax over the last axis, forward and backward.
//!
//! - forward: `pᵢ = exp(xᵢ − m) / Σⱼ exp(xⱼ − m)` with `m = maxⱼ xⱼ`. Subtracting
//!   the maximum changes nothing mathematically (it cancels between numerator
//!   and denominator) but keeps every `exp` at most 1, so nothing overflows.
//! - backward: the Jacobian is `∂pᵢ/∂xⱼ = pᵢ(δᵢⱼ − pⱼ)`, so
//!   `dxᵢ = pᵢ (dpᵢ − Σⱼ pⱼ dpⱼ)`: one dot product per row, never the `[N, N]` matrix.
//!
//! subtle: a row whose every entry is `−∞` (a fully masked attention row) has
//! no maximum to subtract; it becomes all zeros instead of `0/0 = NaN`.

use ndarray::{Array, ArrayRef, Axis, Dimension};

// ANCHOR: softmax_row
/// Softmax of one row, in place. A row of only `−∞` becomes zeros.
pub fn softmax_row(row: &mut [f32]) {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if max == f32::NEG_INFINITY {
        row.fill(0.0); // fully masked: no key to attend to, output zeros, not NaN
        return;
    }
    let mut sum = 0.0f32;
    for v in row.iter_mut() {
        *v = (*v - max).exp(); // ≤ 1, never overflows
        sum += *v;
    }
    let inv = 1.0 / sum; // sum ≥ 1: the maximum contributes exp(0)
    for v in row.iter_mut() {
        *v *= inv;
    }
}
// ANCHOR_END: softmax_row

// ANCHOR: softmax_row_backward
/// Backward of [`softmax_row`]: `dx = p ⊙ (dp − ⟨p, dp⟩)`, *added* into `dx`.
///
/// # Panics
/// If the three rows differ in length.
#[track_caller]
pub fn softmax_row_backward(probs: &[f32], dprobs: &[f32], dx: &mut [f32]) {
    assert!(
        probs.len() == dprobs.len() && probs.len() == dx.len(),
        "softmax backward: probs is [{}], dprobs is [{}], dx is [{}]",
        probs.len(),
        dprobs.len(),
        dx.len()
    );
    // in the forward pass this was:
    //   p_i = exp(x_i - m) / Σ_j exp(x_j - m)
    // whose Jacobian is ∂p_i/∂x_j = p_i (δ_ij − p_j), so now we have:
    let dot: f32 = probs.iter().zip(dprobs).map(|(p, dp)| p * dp).sum(); // ⟨p, dp⟩
    for ((dx_i, &p_i), &dp_i) in dx.iter_mut().zip(probs).zip(dprobs) {
        *dx_i += p_i * (dp_i - dot);
    }
}
// ANCHOR_END: softmax_row_backward

/// Softmax over the last axis of any array.
///
/// # Shapes
/// - `x: [..., N]` → `probs: [..., N]`, every row summing to one (or all zeros
///   for a row of only `−∞`).
pub fn softmax<D: Dimension>(x: &ArrayRef<f32, D>) -> Array<f32, D> {
    let mut probs = x.as_standard_layout().into_owned(); // rows contiguous by construction
    let last = Axis(probs.ndim().saturating_sub(1));
    for mut row in probs.lanes_mut(last) {
        softmax_row(row.as_slice_mut().unwrap()); // standard layout: lanes of the last axis are contiguous
    }
    probs
}

/// Backward of [`softmax`]: `dx = p ⊙ (dp − Σ p ⊙ dp)` row by row.
///
/// # Shapes
/// - `probs, dprobs: [..., N]` → `dx: [..., N]`
///
/// # Panics
/// If the shapes differ.
#[track_caller]
pub fn softmax_backward<D: Dimension>(
    probs: &ArrayRef<f32, D>,
    dprobs: &ArrayRef<f32, D>,
) -> Array<f32, D> {
    assert_eq!(
        probs.shape(),
        dprobs.shape(),
        "softmax backward: probs is {:?}, dprobs is {:?}",
        probs.shape(),
        dprobs.shape()
    );
    let probs = probs.as_standard_layout();
    let dprobs = dprobs.as_standard_layout();
    let mut dx = Array::zeros(probs.raw_dim());
    let last = Axis(dx.ndim().saturating_sub(1));
    for ((p, dp), mut d) in probs
        .lanes(last)
        .into_iter()
        .zip(dprobs.lanes(last))
        .zip(dx.lanes_mut(last))
    {
        // all three are in standard layout, so every row is a contiguous slice
        softmax_row_backward(
            p.as_slice().unwrap(),
            dp.as_slice().unwrap(),
            d.as_slice_mut().unwrap(),
        );
    }
    dx
}

#[cfg(test)]
mod tests {
    use super::*;
    use embedding::testing::{WithInputs, fakeloss};
    use embedding::{Linear, init};
    use ndarray::{Array2, Array3, Ix3, array};
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn softmax_by_hand() {
        // exp(0) = 1, exp(ln 3) = 3: probabilities 1/4 and 3/4
        let p = softmax(&array![[0.0f32, 3.0f32.ln()]]);
        assert!((p[[0, 0]] - 0.25).abs() < 1e-6 && (p[[0, 1]] - 0.75).abs() < 1e-6);
    }

    #[test]
    fn softmax_survives_huge_logits() {
        let p = softmax(&array![1000.0f32, 1000.0, -1000.0]);
        assert_eq!(p, array![0.5, 0.5, 0.0]);
    }

    #[test]
    fn fully_masked_row_is_zeros_not_nan() {
        let inf = f32::NEG_INFINITY;
        let p = softmax(&array![[inf, inf], [0.0, inf]]);
        assert_eq!(p, array![[0.0, 0.0], [1.0, 0.0]]);
    }

    #[test]
    fn softmax_gradcheck() {
        let mut rng = StdRng::seed_from_u64(0);
        let x: Array3<f32> = init::normal((2, 3, 5), 1.0, &mut rng);
        let dout: Array3<f32> = init::normal((2, 3, 5), 1.0, &mut rng);
        let probs = softmax(&x);
        let dx = softmax_backward(&probs, &dout);
        // no parameters: an empty Vec<Linear> stands in for the module
        let analytic = WithInputs::new(Vec::<Linear>::new(), vec![("x", dx)]);
        let mut state = WithInputs::new(Vec::<Linear>::new(), vec![("x", x)]);
        crate::gradcheck()
            .run(&mut state, &analytic, |s| {
                fakeloss(&softmax(&s.input::<Ix3>(0)), &dout)
            })
            .into_result()
            .unwrap();
    }

    #[test]
    fn softmax_backward_of_masked_entries_is_zero() {
        let inf = f32::NEG_INFINITY;
        let probs = softmax(&array![[0.5f32, inf, 1.0]]);
        let dx = softmax_backward(&probs, &Array2::ones((1, 3)));
        assert_eq!(dx[[0, 1]], 0.0);
    }
}
