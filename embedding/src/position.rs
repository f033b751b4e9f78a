//! Positional encodings: telling a set of vectors what order they came in.
//!
//! Attention treats its inputs as a set: shuffle the tokens and the outputs
//! shuffle the same way. Adding a different vector at each position breaks
//! that symmetry, so "dog bites man" and "man bites dog" differ.
//!
//! - [`LearnedPositions`] (GPT-2's `wpe`, CLIP, ViT): a trainable table
//!   `P: [T_max, C]`; `out[b, t] = x[b, t] + P[t]`, and backward
//!   `dP[t] += Σ_b dout[b, t]`, `dx = dout`.
//! - [`SinusoidalPositions`] (the original Transformer, Vaswani et al. 2017):
//!   a fixed table, `PE[t, 2i] = sin(t / 10000^(2i/C))`,
//!   `PE[t, 2i+1] = cos(t / 10000^(2i/C))`; no parameters, `dx = dout`.

use ndarray::{Array2, Array3, ArrayRef3, ArrayViewD, ArrayViewMutD, Axis, s};
use rand::Rng;

use crate::init;
use crate::layer::{Layer, Params};

/// A trainable position table added to the input.
#[derive(Debug, Clone, PartialEq)]
pub struct LearnedPositions {
    /// `[T_max, C]`: row `t` is added at position `t`.
    pub weight: Array2<f32>,
}

impl LearnedPositions {
    /// A table from a given `weight: [T_max, C]`.
    pub fn new(weight: Array2<f32>) -> Self {
        LearnedPositions { weight }
    }

    /// A fresh table `P ~ N(0, std²)` (GPT-2: 0.01; CLIP: 0.01; ViT: 0.02).
    pub fn init(max_len: usize, dim: usize, std: f32, rng: &mut impl Rng) -> Self {
        LearnedPositions::new(init::normal((max_len, dim), std, rng))
    }

    /// The longest sequence the table covers, `T_max`.
    pub fn max_len(&self) -> usize {
        self.weight.nrows()
    }
}

/// Checks `x: [B, T, C]` against a `[T_max, C]` table; returns `T`.
#[track_caller]
fn check_fits(op: &str, x_dim: (usize, usize, usize), table: &Array2<f32>) -> usize {
    let (_, seq, dim) = x_dim;
    assert!(
        seq <= table.nrows() && dim == table.ncols(),
        "{op}: x is {x_dim:?}, the position table is {:?} (T must be at most {} and C equal)",
        table.dim(),
        table.nrows()
    );
    seq
}

impl Layer for LearnedPositions {
    type Cache = ();

    // ANCHOR: learned_forward
    /// # Shapes
    /// - `x: [B, T, C]` → `out: [B, T, C]`, `T ≤ T_max`
    ///
    /// # Panics
    /// If `T > T_max` or the widths differ.
    #[track_caller]
    fn forward(&self, x: &ArrayRef3<f32>) -> (Array3<f32>, ()) {
        let seq = check_fits("learned positions", x.dim(), &self.weight);
        let out = x + &*self.weight.slice(s![..seq, ..]); // [B, T, C] + [T, C], broadcast over B
        (out, ())
    }
    // ANCHOR_END: learned_forward

    // ANCHOR: learned_backward
    #[track_caller]
    fn backward(&self, dout: &ArrayRef3<f32>, _: &(), grads: &mut Self) -> Array3<f32> {
        let seq = check_fits("learned positions backward", dout.dim(), &self.weight);
        // in the forward pass this was:
        //   out[b, t] = x[b, t] + P[t]
        // so now we have (P[t] was used once per batch row):
        let mut dpos = grads.weight.slice_mut(s![..seq, ..]); // [T, C]
        dpos += &dout.sum_axis(Axis(0));
        dout.to_owned() // dx = dout
    }
    // ANCHOR_END: learned_backward
}

impl Params for LearnedPositions {
    fn params(&self) -> Vec<(String, ArrayViewD<'_, f32>)> {
        vec![("weight".to_string(), self.weight.view().into_dyn())]
    }

    fn params_mut(&mut self) -> Vec<(String, ArrayViewMutD<'_, f32>)> {
        vec![("weight".to_string(), self.weight.view_mut().into_dyn())]
    }
}

// ANCHOR: sinusoidal_table
/// The fixed sinusoidal table `PE: [T_max, C]`.
///
/// Pair `i` of columns, `(2i, 2i+1)`, turns at the angular speed
/// `ω_i = 10000^(−2i/C)`: the first pair once per position, the last about
/// ten thousand times slower, so every position gets its own pattern, and
/// `PE[t + k]` is a fixed rotation of `PE[t]` for every `t`.
///
/// ```
/// let pe = embedding::sinusoidal_table(4, 4);
/// assert_eq!(pe.row(0).to_vec(), [0.0, 1.0, 0.0, 1.0]); // sin 0, cos 0, sin 0, cos 0
/// assert!((pe[[1, 0]] - 1f32.sin()).abs() < 1e-6);      // ω_0 = 1
/// assert!((pe[[1, 2]] - 0.01f32.sin()).abs() < 1e-6);   // ω_1 = 10000^(-2/4) = 0.01
/// ```
pub fn sinusoidal_table(max_len: usize, dim: usize) -> Array2<f32> {
    Array2::from_shape_fn((max_len, dim), |(t, c)| {
        let pair = (c / 2) as f64; // i
        let speed = 10000f64.powf(-2.0 * pair / dim as f64); // ω_i
        let angle = t as f64 * speed;
        (if c % 2 == 0 { angle.sin() } else { angle.cos() }) as f32
    })
}
// ANCHOR_END: sinusoidal_table

/// The fixed sinusoidal table added to the input. It has no parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct SinusoidalPositions {
    /// `[T_max, C]`, from [`sinusoidal_table`].
    table: Array2<f32>,
}

impl SinusoidalPositions {
    /// Positions for sequences up to `max_len` of width `dim`.
    pub fn new(max_len: usize, dim: usize) -> Self {
        SinusoidalPositions {
            table: sinusoidal_table(max_len, dim),
        }
    }

    /// The table, `[T_max, C]`.
    pub fn table(&self) -> &Array2<f32> {
        &self.table
    }
}

impl Layer for SinusoidalPositions {
    type Cache = ();

    /// # Shapes
    /// - `x: [B, T, C]` → `out: [B, T, C]`, `T ≤ T_max`
    #[track_caller]
    fn forward(&self, x: &ArrayRef3<f32>) -> (Array3<f32>, ()) {
        let seq = check_fits("sinusoidal positions", x.dim(), &self.table);
        (x + &*self.table.slice(s![..seq, ..]), ())
    }

    #[track_caller]
    fn backward(&self, dout: &ArrayRef3<f32>, _: &(), _: &mut Self) -> Array3<f32> {
        check_fits("sinusoidal positions backward", dout.dim(), &self.table);
        dout.to_owned() // the table is a constant: dx = dout
    }
}

impl Params for SinusoidalPositions {
    fn params(&self) -> Vec<(String, ArrayViewD<'_, f32>)> {
        Vec::new()
    }

    fn params_mut(&mut self) -> Vec<(String, ArrayViewMutD<'_, f32>)> {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{GradCheck, gradcheck_layer};
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn learned_positions_gradcheck_with_shorter_sequence() {
        let mut rng = StdRng::seed_from_u64(0);
        let pos = LearnedPositions::init(5, 4, 1.0, &mut rng);
        let x = init::normal((2, 3, 4), 1.0, &mut rng); // T = 3 < T_max = 5
        let report = gradcheck_layer(&GradCheck::default(), &pos, &x, 1).unwrap();
        assert_eq!(report.checked, 2 * 3 * 4 + 5 * 4);
    }

    #[test]
    fn unused_positions_get_no_gradient() {
        let pos = LearnedPositions::new(Array2::zeros((5, 2)));
        let mut grads = pos.zeros_like();
        let dout = Array3::ones((3, 2, 2));
        pos.backward(&dout, &(), &mut grads);
        assert_eq!(grads.weight.row(0).to_vec(), [3.0, 3.0]); // summed over B = 3
        assert_eq!(grads.weight.slice(s![2.., ..]).sum(), 0.0);
    }

    #[test]
    fn sinusoidal_gradcheck_and_no_params() {
        let pe = SinusoidalPositions::new(4, 6);
        assert_eq!(pe.num_params(), 0);
        let x = init::normal((2, 4, 6), 1.0, &mut StdRng::seed_from_u64(1));
        gradcheck_layer(&GradCheck::default(), &pe, &x, 2).unwrap();
    }

    #[test]
    fn sinusoidal_rows_are_distinct_and_bounded() {
        let pe = sinusoidal_table(64, 32);
        assert!(pe.iter().all(|v| v.abs() <= 1.0));
        for a in 0..64 {
            for b in a + 1..64 {
                let dist: f32 = (&pe.row(a) - &pe.row(b)).mapv(|v| v * v).sum();
                assert!(dist > 1e-3, "positions {a} and {b} look alike");
            }
        }
    }

    #[test]
    fn sinusoidal_shift_is_a_rotation() {
        // (sin(ω(t+k)), cos(ω(t+k))) = R(ωk) · (sin ωt, cos ωt) for every t
        let pe = sinusoidal_table(20, 8);
        let k = 3;
        for i in 0..4 {
            let speed = 10000f32.powf(-2.0 * i as f32 / 8.0);
            let (s_k, c_k) = ((speed * k as f32).sin(), (speed * k as f32).cos());
            for t in 0..(20 - k) {
                let (s_t, c_t) = (pe[[t, 2 * i]], pe[[t, 2 * i + 1]]);
                assert!((pe[[t + k, 2 * i]] - (s_t * c_k + c_t * s_k)).abs() < 1e-5);
                assert!((pe[[t + k, 2 * i + 1]] - (c_t * c_k - s_t * s_k)).abs() < 1e-5);
            }
        }
    }

    #[test]
    #[should_panic(
        expected = "learned positions: x is (1, 6, 4), the position table is (5, 4) (T must be at most 5 and C equal)"
    )]
    fn too_long_is_named() {
        let pos = LearnedPositions::new(Array2::zeros((5, 4)));
        let _ = pos.forward(&Array3::zeros((1, 6, 4)));
    }
}
