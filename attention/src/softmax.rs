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

// ANCHOR: softmax_row_fast
/// [`softmax_row`] in vector instructions, for the attention kernels: the
/// maximum and the sum with eight independent lanes ([`lane_max`],
/// [`lane_sum`]), the exponentials by [`exp_nonpositive`] (every `xᵢ − m` is
/// at most 0; a masked `−∞` gives 0). Within a few f32 roundings of
/// [`softmax_row`], which the tests check it against.
pub fn softmax_row_fast(row: &mut [f32]) {
    let max = lane_max(row);
    if max == f32::NEG_INFINITY {
        row.fill(0.0); // fully masked, as in softmax_row
        return;
    }
    for v in row.iter_mut() {
        *v = exp_nonpositive(*v - max); // a loop the compiler vectorises
    }
    let inv = 1.0 / lane_sum(row);
    for v in row.iter_mut() {
        *v *= inv;
    }
}
// ANCHOR_END: softmax_row_fast

// ANCHOR: lanes
/// `exp(x)` for `x ≤ 0`, branch-free so that a loop of it vectorises
/// (`f32::exp` is a library call per element).
///
/// `exp(x) = 2ⁿ·exp(r)` with `n = round(x·log₂e)` and `r = x − n·ln 2`,
/// `|r| ≤ ln 2 / 2`; `exp(r)` is a degree-7 Taylor polynomial (truncation
/// below `10⁻⁸`), and `2ⁿ` is written straight into the exponent bits.
/// Relative error within a few f32 roundings (tested below `10⁻⁶`); below
/// `x = −87` (where `eˣ < 1.7·10⁻³⁸`) it returns 0, and `exp(−∞) = 0`.
#[inline(always)]
pub fn exp_nonpositive(x: f32) -> f32 {
    const ROUND: f32 = 12_582_912.0; // 1.5·2²³: adding it rounds to an integer
    const LN2_HI: f32 = 0.693_145_75; // ln 2 split in two (Cody & Waite), so
    const LN2_LO: f32 = 1.428_606_8e-6; // that n·LN2_HI is exact
    let underflow = x < -87.0;
    let x = if underflow { -87.0 } else { x };
    let shifted = x * std::f32::consts::LOG2_E + ROUND;
    let n = shifted - ROUND; // round(x·log₂e), in −126..=0
    let r = (x - n * LN2_HI) - n * LN2_LO; // x − n·ln 2
    let poly = 1.0
        + r * (1.0
            + r * (1.0 / 2.0
                + r * (1.0 / 6.0
                    + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0 + r / 5040.0))))));
    let n = shifted.to_bits() as i32 - ROUND.to_bits() as i32; // the same n, as an integer
    let two_n = f32::from_bits(((n + 127) as u32) << 23); // 2ⁿ: biased exponent, zero mantissa
    if underflow { 0.0 } else { poly * two_n }
}

/// The maximum of a slice with eight independent lanes (vectorises; an empty
/// slice gives `−∞`).
pub fn lane_max(xs: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; 8];
    let chunks = xs.chunks_exact(8);
    let tail = chunks.remainder();
    for chunk in chunks {
        for (lane, &x) in lanes.iter_mut().zip(chunk) {
            *lane = if x > *lane { x } else { *lane };
        }
    }
    lanes
        .iter()
        .chain(tail)
        .copied()
        .fold(f32::NEG_INFINITY, f32::max)
}

/// The sum of a slice with eight independent lanes (vectorises).
pub fn lane_sum(xs: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 8];
    let chunks = xs.chunks_exact(8);
    let tail = chunks.remainder();
    for chunk in chunks {
        for (lane, &x) in lanes.iter_mut().zip(chunk) {
            *lane += x;
        }
    }
    lanes.iter().sum::<f32>() + tail.iter().sum::<f32>()
}
// ANCHOR_END: lanes

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
    use rand::Rng;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn softmax_by_hand() {
        // exp(0) = 1, exp(ln 3) = 3: probabilities 1/4 and 3/4
        let p = softmax(&array![[0.0f32, 3.0f32.ln()]]);
        assert!((p[[0, 0]] - 0.25).abs() < 1e-6 && (p[[0, 1]] - 0.75).abs() < 1e-6);
    }

    #[test]
    fn the_fast_row_softmax_matches_the_reference() {
        let mut rng = StdRng::seed_from_u64(3);
        for n in [1, 3, 8, 17, 65] {
            for visible in [0, 1, n / 2, n] {
                let mut row: Vec<f32> = (0..n).map(|_| rng.random_range(-30.0..30.0)).collect();
                row[visible..].fill(f32::NEG_INFINITY);
                let (mut want, mut got) = (row.clone(), row);
                softmax_row(&mut want);
                softmax_row_fast(&mut got);
                for (w, g) in want.iter().zip(&got) {
                    assert!((w - g).abs() <= 1e-6 * (1.0 + w.abs()), "n {n}: {w} vs {g}");
                }
                assert!(
                    got[visible..].iter().all(|&p| p == 0.0),
                    "masked weights are zero"
                );
            }
        }
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
    #[test]
    fn exp_nonpositive_matches_exp() {
        let mut worst = 0.0f64;
        for i in 0..=100_000 {
            let x = -87.0 * i as f32 / 100_000.0;
            let want = (x as f64).exp();
            let got = exp_nonpositive(x) as f64;
            worst = worst.max(((got - want) / want).abs());
        }
        assert!(worst < 1e-6, "worst relative error {worst:e}");
        assert_eq!(exp_nonpositive(0.0), 1.0);
        assert!(exp_nonpositive(-1000.0) < 1e-37);
    }

    #[test]
    fn lanes_match_plain_folds() {
        let xs: Vec<f32> = (0..21).map(|i| ((i * 7) % 11) as f32 - 5.0).collect();
        for n in [0, 1, 8, 13, 21] {
            let part = &xs[..n];
            let max = part.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            assert_eq!(lane_max(part), max);
            assert_eq!(lane_sum(part), part.iter().sum::<f32>()); // small integers: exact
        }
    }
}
