//! LayerNorm: normalise each token's vector to zero mean and unit variance,
//! then scale and shift it with learned `γ` (`weight`) and `β` (`bias`).
//!
//! - forward: `y = (x − μ)·rstd ⊙ γ + β`, with `μ = mean(x)`, `σ² = mean((x − μ)²)`
//!   (biased, as PyTorch) and `rstd = 1/√(σ² + ε)`;
//! - backward: with `n = (x − μ)·rstd` and `dn = dout ⊙ γ`,
//!   `dx = rstd·(dn − mean(dn) − n·mean(dn ⊙ n))`, `dγ += Σ dout ⊙ n`, `dβ += Σ dout`.
//!
//! Cache vs recompute (llm.c): the cache keeps `x` and the two small `[B·T]`
//! statistics `μ` and `rstd`; the normalised `n` (`[B·T, C]`) is recomputed
//! in the backward pass.
//! Reference: Ba et al. 2016; <https://pytorch.org/docs/stable/generated/torch.nn.LayerNorm.html>

use embedding::{Layer, Params};
use ndarray::{Array1, Array2, Array3, ArrayRef3, ArrayView1, ArrayViewD, ArrayViewMutD};

// ANCHOR: struct
/// Layer normalisation over the last axis, with learned scale and shift.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerNorm {
    /// `γ`: `[C]`, starts at ones.
    pub weight: Array1<f32>,
    /// `β`: `[C]`, starts at zeros.
    pub bias: Array1<f32>,
    /// Added to the variance before the square root (PyTorch's default `1e-5`).
    pub eps: f32,
}

/// What [`LayerNorm`]'s backward pass needs.
#[derive(Debug, Clone)]
pub struct LayerNormCache {
    x: Array2<f32>,    // [B*T, C]
    mean: Array1<f32>, // [B*T]
    rstd: Array1<f32>, // [B*T]
}
// ANCHOR_END: struct

/// The size of a fresh [`LayerNorm`].
#[derive(Debug, Clone, PartialEq)]
pub struct LayerNormConfig {
    /// Width `C` of the normalised vectors.
    pub dim: usize,
    /// `ε` in `1/√(σ² + ε)`; PyTorch's default is `1e-5`.
    pub eps: f32,
}

impl Default for LayerNormConfig {
    fn default() -> Self {
        LayerNormConfig { dim: 64, eps: 1e-5 }
    }
}

impl LayerNormConfig {
    /// `γ = 1`, `β = 0`: the identity after normalisation, like PyTorch.
    pub fn init(&self) -> LayerNorm {
        LayerNorm {
            weight: Array1::ones(self.dim),
            bias: Array1::zeros(self.dim),
            eps: self.eps,
        }
    }
}

impl LayerNorm {
    /// A fresh LayerNorm of width `dim` with `ε = 1e-5`.
    pub fn new(dim: usize) -> Self {
        LayerNormConfig { dim, eps: 1e-5 }.init()
    }

    /// Width `C`.
    pub fn dim(&self) -> usize {
        self.weight.len()
    }
}

impl Layer for LayerNorm {
    type Cache = LayerNormCache;

    // ANCHOR: forward
    /// # Shapes
    /// - `x: [B, T, C]` → `out: [B, T, C]`
    ///
    /// # Panics
    /// If `x`'s last axis is not `C`.
    #[track_caller]
    fn forward(&self, x: &ArrayRef3<f32>) -> (Array3<f32>, LayerNormCache) {
        let (batch, seq, dim) = x.dim();
        assert_eq!(
            dim,
            self.dim(),
            "layer norm: x is {:?}, weight is [{}]",
            x.dim(),
            self.dim()
        );
        // [B*T, C], owned for the cache and row-major, so every row is a plain slice
        let x = x
            .as_standard_layout()
            .into_owned()
            .into_shape_with_order((batch * seq, dim))
            .unwrap();
        let mut out = Array2::<f32>::zeros((batch * seq, dim));
        let mut mean = Array1::<f32>::zeros(batch * seq);
        let mut rstd = Array1::<f32>::zeros(batch * seq);
        // slices, not ndarray element iterators: the inner loops then compile to
        // straight SIMD code (views only; no copy when γ, β are contiguous)
        let (weight, bias) = (
            self.weight.as_standard_layout(),
            self.bias.as_standard_layout(),
        );
        let (weight, bias) = (weight.as_slice().unwrap(), bias.as_slice().unwrap());
        let rows = x.as_slice().unwrap().chunks_exact(dim);
        let out_rows = out.as_slice_mut().unwrap().chunks_exact_mut(dim);
        for (row, (x_bt, out_bt)) in rows.zip(out_rows).enumerate() {
            let m = ArrayView1::from(x_bt).sum() / dim as f32; // μ (ndarray's pairwise sum)
            let var = x_bt.iter().fold(0.0, |acc, &v| acc + (v - m) * (v - m)) / dim as f32; // σ², biased
            let s = 1.0 / (var + self.eps).sqrt(); // rstd
            for (((o, &v), &w), &b) in out_bt.iter_mut().zip(x_bt).zip(weight).zip(bias) {
                *o = (v - m) * s * w + b; // y = n ⊙ γ + β
            }
            mean[row] = m;
            rstd[row] = s;
        }
        let out = out.into_shape_with_order((batch, seq, dim)).unwrap(); // contiguous by construction
        (out, LayerNormCache { x, mean, rstd })
    }
    // ANCHOR_END: forward

    /// # Shapes
    /// - `dout: [B, T, C]` → `dx: [B, T, C]`
    #[track_caller]
    fn backward(
        &self,
        dout: &ArrayRef3<f32>,
        cache: &LayerNormCache,
        grads: &mut LayerNorm,
    ) -> Array3<f32> {
        self.backward_into(dout, cache, Some(grads))
    }
}

impl LayerNorm {
    /// The input gradient alone, for a frozen LayerNorm: `dx` as
    /// [`Layer::backward`] computes it, without the work of `dγ` and `dβ`.
    ///
    /// # Shapes
    /// - `dout: [B, T, C]` → `dx: [B, T, C]`
    #[track_caller]
    pub fn backward_input(&self, dout: &ArrayRef3<f32>, cache: &LayerNormCache) -> Array3<f32> {
        self.backward_into(dout, cache, None)
    }

    // ANCHOR: backward
    /// [`Layer::backward`], and with `grads = None` the input gradient alone.
    #[track_caller]
    fn backward_into(
        &self,
        dout: &ArrayRef3<f32>,
        cache: &LayerNormCache,
        grads: Option<&mut LayerNorm>,
    ) -> Array3<f32> {
        let (batch, seq, dim) = dout.dim();
        assert_eq!(
            (batch * seq, dim),
            cache.x.dim(),
            "layer norm backward: dout is {:?}, cached x is {:?}",
            dout.dim(),
            cache.x.dim()
        );
        let dout = dout.as_standard_layout(); // [B, T, C], a view when already row-major
        let mut dx = Array2::<f32>::zeros((batch * seq, dim));
        let mut norm = vec![0.0f32; dim]; // n, recomputed per row
        let mut dnorm = vec![0.0f32; dim]; // dn = dout ⊙ γ
        // summed over rows here, then added to grads once (so backward twice is
        // exactly 2×); none for a frozen layer
        let mut param_sums = grads
            .is_some()
            .then(|| (vec![0.0f32; dim], vec![0.0f32; dim])); // (dγ, dβ)
        // rows as slices zipped together, not `a[i]` indexing: no bounds checks, and
        // the loops vectorise (the arithmetic is the same, term by term)
        let weight = self.weight.as_standard_layout();
        let weight = weight.as_slice().unwrap();
        let x_rows = cache.x.as_slice().unwrap().chunks_exact(dim); // row-major by construction
        let dout_rows = dout.as_slice().unwrap().chunks_exact(dim);
        let dx_rows = dx.as_slice_mut().unwrap().chunks_exact_mut(dim);
        for (row, ((x_bt, dout_bt), dx_bt)) in x_rows.zip(dout_rows).zip(dx_rows).enumerate() {
            let (m, s) = (cache.mean[row], cache.rstd[row]);
            let (mut dnorm_mean, mut dnorm_norm_mean) = (0.0f32, 0.0f32);
            for ((((n, dn), &x), &d), &w) in norm
                .iter_mut()
                .zip(dnorm.iter_mut())
                .zip(x_bt)
                .zip(dout_bt)
                .zip(weight)
            {
                *n = (x - m) * s; // recomputed: n = (x − μ)·rstd
                *dn = d * w;
                dnorm_mean += *dn;
                dnorm_norm_mean += *dn * *n;
            }
            dnorm_mean /= dim as f32;
            dnorm_norm_mean /= dim as f32;
            if let Some((dweight, dbias)) = &mut param_sums {
                // in the forward pass this was:
                //   out = n ⊙ γ + β
                // so now we have:
                for (((dw_i, db_i), &n), &d) in dweight
                    .iter_mut()
                    .zip(dbias.iter_mut())
                    .zip(&norm)
                    .zip(dout_bt)
                {
                    *db_i += d;
                    *dw_i += n * d;
                }
            }
            for ((&n, &dn), dx_i) in norm.iter().zip(&dnorm).zip(dx_bt.iter_mut()) {
                // and through n = (x − μ)·rstd, three terms:
                let mut dval = 0.0f32;
                dval += dn; // term 1: the direct path
                dval -= dnorm_mean; // term 2: through μ
                dval -= n * dnorm_norm_mean; // term 3: through rstd
                dval *= s; // final scale
                *dx_i += dval;
            }
        }
        if let (Some(grads), Some((dweight, dbias))) = (grads, param_sums) {
            grads.weight += &Array1::from(dweight);
            grads.bias += &Array1::from(dbias);
        }
        dx.into_shape_with_order((batch, seq, dim)).unwrap() // contiguous by construction
    }
    // ANCHOR_END: backward
}

impl Params for LayerNorm {
    fn params(&self) -> Vec<(String, ArrayViewD<'_, f32>)> {
        vec![
            ("weight".to_string(), self.weight.view().into_dyn()),
            ("bias".to_string(), self.bias.view().into_dyn()),
        ]
    }

    fn params_mut(&mut self) -> Vec<(String, ArrayViewMutD<'_, f32>)> {
        vec![
            ("weight".to_string(), self.weight.view_mut().into_dyn()),
            ("bias".to_string(), self.bias.view_mut().into_dyn()),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use embedding::init;
    use embedding::testing::gradcheck_layer;
    use ndarray::{Axis, array};
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn layer_norm_by_hand() {
        // x = [1, 2, 3]: μ = 2, σ² = 2/3, so n = [-1.2247, 0, 1.2247]
        let ln = LayerNorm::new(3);
        let (out, _) = ln.forward(&array![[[1.0f32, 2.0, 3.0]]]);
        let want = 1.0 / (2.0f32 / 3.0 + 1e-5).sqrt();
        assert!((out[[0, 0, 0]] + want).abs() < 1e-5, "{out}");
        assert!(out[[0, 0, 1]].abs() < 1e-6);
        assert!((out[[0, 0, 2]] - want).abs() < 1e-5);
    }

    #[test]
    fn layer_norm_gradcheck() {
        let mut rng = StdRng::seed_from_u64(0);
        let mut ln = LayerNorm::new(4);
        ln.weight = init::normal(4, 1.0, &mut rng);
        ln.bias = init::normal(4, 1.0, &mut rng);
        let x = init::normal((2, 3, 4), 1.0, &mut rng);
        gradcheck_layer(&crate::gradcheck(), &ln, &x, 1).unwrap();
    }

    #[test]
    fn layer_norm_rows_have_zero_mean() {
        let mut rng = StdRng::seed_from_u64(1);
        let x: Array3<f32> = init::normal((2, 3, 8), 3.0, &mut rng) + 5.0;
        let (out, _) = LayerNorm::new(8).forward(&x);
        assert!(
            out.mean_axis(Axis(2))
                .unwrap()
                .iter()
                .all(|m| m.abs() < 1e-5)
        );
    }
}
