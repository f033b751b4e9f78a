//! `Linear`: `y = x Wᵀ + b`, the workhorse of every model in this workspace.
//!
//! - forward: `out = x Wᵀ + b`, with `x: [B·T, C_in]`, `W: [C_out, C_in]`, `b: [C_out]`;
//! - backward: `dW += doutᵀ x`, `db += Σ_rows dout`, `dx = dout W`.
//!
//! The weight is stored `[C_out, C_in]`, PyTorch's `nn.Linear` layout, so a
//! PyTorch checkpoint loads without transposes.
//! Reference: <https://pytorch.org/docs/stable/generated/torch.nn.Linear.html>

use crate::{gemm, matmul};
use ndarray::{Array1, Array2, Array3, ArrayRef3, ArrayViewD, ArrayViewMutD, Axis};
use rand::Rng;

use crate::init;
use crate::layer::{Layer, Params};

// ANCHOR: linear_struct
/// A fully connected layer `y = x Wᵀ + b`.
#[derive(Debug, Clone, PartialEq)]
pub struct Linear {
    /// `[C_out, C_in]`
    pub weight: Array2<f32>,
    /// `[C_out]`, or `None` for a layer without bias (CLIP's projections).
    pub bias: Option<Array1<f32>>,
}

/// What `Linear::backward` needs: the input, flattened to rows.
#[derive(Debug, Clone)]
pub struct LinearCache {
    x: Array2<f32>, // [B*T, C_in]
}
// ANCHOR_END: linear_struct

/// The sizes of a fresh [`Linear`].
#[derive(Debug, Clone, PartialEq)]
pub struct LinearConfig {
    /// Input features `C_in`.
    pub c_in: usize,
    /// Output features `C_out`.
    pub c_out: usize,
    /// Whether the layer adds a bias (true for most layers; false for CLIP's projections).
    pub bias: bool,
}

impl LinearConfig {
    /// PyTorch's default initialisation: `W, b ~ U(-k, k)` with `k = 1/√C_in`.
    pub fn init(&self, rng: &mut impl Rng) -> Linear {
        let bound = init::torch_default_bound(self.c_in);
        let weight = init::uniform((self.c_out, self.c_in), bound, rng);
        let bias = self.bias.then(|| init::uniform(self.c_out, bound, rng));
        Linear::new(weight, bias)
    }
}

impl Linear {
    /// A layer from given tensors: `weight: [C_out, C_in]`, `bias: [C_out]`.
    ///
    /// # Panics
    /// If the bias length is not `C_out`.
    #[track_caller]
    pub fn new(weight: Array2<f32>, bias: Option<Array1<f32>>) -> Self {
        if let Some(b) = &bias {
            assert_eq!(
                b.len(),
                weight.nrows(),
                "linear: bias is [{}], weight is {:?}",
                b.len(),
                weight.dim()
            );
        }
        Linear { weight, bias }
    }

    /// Input features `C_in`.
    pub fn c_in(&self) -> usize {
        self.weight.ncols()
    }

    /// Output features `C_out`.
    pub fn c_out(&self) -> usize {
        self.weight.nrows()
    }

    // ANCHOR: forward_naive
    /// The forward pass as three plain loops: the algorithmic reference that
    /// [`Layer::forward`] must equal (llm.c keeps `matmul_forward_naive` for
    /// the same reason). It computes the same sums in the same order of `i`,
    /// but touches memory one element at a time; `cargo bench -p embedding`
    /// shows what the blocked, vectorised product [`crate::matmul`] gains.
    ///
    /// # Shapes
    /// - `x: [B, T, C_in]` → `out: [B, T, C_out]`
    #[track_caller]
    pub fn forward_naive(&self, x: &ArrayRef3<f32>) -> Array3<f32> {
        let (batch, seq, c_in) = x.dim();
        assert_eq!(
            c_in,
            self.c_in(),
            "linear: x is {:?}, weight is {:?}",
            x.dim(),
            self.weight.dim()
        );
        let mut out = Array3::zeros((batch, seq, self.c_out()));
        for b in 0..batch {
            for t in 0..seq {
                for o in 0..self.c_out() {
                    let mut sum = self.bias.as_ref().map_or(0.0, |bias| bias[o]);
                    for i in 0..c_in {
                        sum += x[[b, t, i]] * self.weight[[o, i]];
                    }
                    out[[b, t, o]] = sum;
                }
            }
        }
        out
    }
    // ANCHOR_END: forward_naive

    // ANCHOR: backward_input
    /// The input gradient alone, for a frozen layer: `dx = dout W`, without
    /// `dW` and `db` (PyTorch skips them the same way for parameters that do
    /// not require a gradient). A third of the backward pass's multiply-adds.
    ///
    /// # Shapes
    /// - `dout: [B, T, C_out]` → `dx: [B, T, C_in]`
    ///
    /// # Panics
    /// If `dout`'s last axis is not `C_out`.
    #[track_caller]
    pub fn backward_input(&self, dout: &ArrayRef3<f32>) -> Array3<f32> {
        let (batch, seq, c_out) = dout.dim();
        assert_eq!(
            c_out,
            self.c_out(),
            "linear backward: dout is {:?}, weight is {:?}",
            dout.dim(),
            self.weight.dim()
        );
        let dout = dout.to_shape((batch * seq, c_out)).unwrap(); // [B*T, C_out], a view when contiguous
        let dx = matmul(&dout, &self.weight); // [B*T, C_out] x [C_out, C_in] -> [B*T, C_in]
        dx.into_shape_with_order((batch, seq, self.c_in())).unwrap() // contiguous by construction
    }
    // ANCHOR_END: backward_input

    /// The parameter gradients alone, for a first layer whose input needs no
    /// gradient (its producer is frozen, or it is data): `dW += doutᵀ x`,
    /// `db += Σ_rows dout`, without the `dx = dout W` product.
    ///
    /// # Shapes
    /// - `dout: [B, T, C_out]`
    ///
    /// # Panics
    /// If `dout`'s last axis is not `C_out` or its rows are not the cached input's.
    #[track_caller]
    pub fn backward_params(&self, dout: &ArrayRef3<f32>, cache: &LinearCache, grads: &mut Linear) {
        let (batch, seq, c_out) = dout.dim();
        assert!(
            c_out == self.c_out() && batch * seq == cache.x.nrows(),
            "linear backward: dout is {:?}, weight is {:?}, the input had {} rows",
            dout.dim(),
            self.weight.dim(),
            cache.x.nrows()
        );
        let dout = dout.to_shape((batch * seq, c_out)).unwrap(); // [B*T, C_out], a view when contiguous
        gemm(1.0, &dout.t(), &cache.x, 1.0, &mut grads.weight); // dW += doutᵀ x: [C_out, C_in]
        if let Some(dbias) = &mut grads.bias {
            *dbias += &dout.sum_axis(Axis(0)); // db += Σ_rows dout: [C_out]
        }
    }
}

impl Layer for Linear {
    type Cache = LinearCache;

    // ANCHOR: forward
    /// # Shapes
    /// - `x: [B, T, C_in]` → `out: [B, T, C_out]`
    ///
    /// # Panics
    /// If `x`'s last axis is not `C_in`.
    #[track_caller]
    fn forward(&self, x: &ArrayRef3<f32>) -> (Array3<f32>, LinearCache) {
        let (batch, seq, c_in) = x.dim();
        assert_eq!(
            c_in,
            self.c_in(),
            "linear: x is {:?}, weight is {:?}",
            x.dim(),
            self.weight.dim()
        );
        // a copy: the cache must own its rows, and a non-contiguous x needs one anyway
        let x = x.to_shape((batch * seq, c_in)).unwrap().into_owned(); // [B*T, C_in]
        let mut out = matmul(&x, &self.weight.t()); // [B*T, C_in] x [C_in, C_out] -> [B*T, C_out]
        if let Some(bias) = &self.bias {
            out += bias; // broadcast [C_out] over rows
        }
        let out = out
            .into_shape_with_order((batch, seq, self.c_out()))
            .unwrap(); // contiguous by construction
        (out, LinearCache { x })
    }
    // ANCHOR_END: forward

    // ANCHOR: backward
    /// # Shapes
    /// - `dout: [B, T, C_out]` → `dx: [B, T, C_in]`
    #[track_caller]
    fn backward(
        &self,
        dout: &ArrayRef3<f32>,
        cache: &LinearCache,
        grads: &mut Linear,
    ) -> Array3<f32> {
        let (batch, seq, c_out) = dout.dim();
        assert_eq!(
            c_out,
            self.c_out(),
            "linear backward: dout is {:?}, weight is {:?}",
            dout.dim(),
            self.weight.dim()
        );
        let dout = dout.to_shape((batch * seq, c_out)).unwrap(); // [B*T, C_out], a view when contiguous
        // in the forward pass this was:
        //   out = x Wᵀ + b
        // so now we have:
        gemm(1.0, &dout.t(), &cache.x, 1.0, &mut grads.weight); // dW += doutᵀ x: [C_out, C_in]
        if let Some(dbias) = &mut grads.bias {
            *dbias += &dout.sum_axis(Axis(0)); // db += Σ_rows dout: [C_out]
        }
        let dx = matmul(&dout, &self.weight); // [B*T, C_out] x [C_out, C_in] -> [B*T, C_in]
        dx.into_shape_with_order((batch, seq, self.c_in())).unwrap() // contiguous by construction
    }
    // ANCHOR_END: backward
}

impl Params for Linear {
    fn params(&self) -> Vec<(String, ArrayViewD<'_, f32>)> {
        let mut list = vec![("weight".to_string(), self.weight.view().into_dyn())];
        if let Some(bias) = &self.bias {
            list.push(("bias".to_string(), bias.view().into_dyn()));
        }
        list
    }

    fn params_mut(&mut self) -> Vec<(String, ArrayViewMutD<'_, f32>)> {
        let mut list = vec![("weight".to_string(), self.weight.view_mut().into_dyn())];
        if let Some(bias) = &mut self.bias {
            list.push(("bias".to_string(), bias.view_mut().into_dyn()));
        }
        list
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{GradCheck, assert_allclose, gradcheck_layer};
    use ndarray::{array, s};
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn linear_forward_by_hand() {
        // W = [[1, 2], [3, 4], [5, 6]], b = [1, 0, -1], x = [1, 1]
        let layer = Linear::new(
            array![[1., 2.], [3., 4.], [5., 6.]],
            Some(array![1., 0., -1.]),
        );
        let x = array![[[1., 1.]]];
        let (out, _) = layer.forward(&x);
        assert_eq!(out, array![[[4., 7., 10.]]]);
    }

    #[test]
    fn backward_input_is_backward_without_the_parameter_gradients() {
        let mut rng = StdRng::seed_from_u64(5);
        let layer = LinearConfig {
            c_in: 4,
            c_out: 3,
            bias: true,
        }
        .init(&mut rng);
        let x: Array3<f32> = init::normal((2, 3, 4), 1.0, &mut rng);
        let dout: Array3<f32> = init::normal((2, 3, 3), 1.0, &mut rng);
        let (_, cache) = layer.forward(&x);
        let mut grads = layer.zeros_like();
        let dx = layer.backward(&dout, &cache, &mut grads);
        assert_eq!(layer.backward_input(&dout), dx);
        let mut params_only = layer.zeros_like();
        layer.backward_params(&dout, &cache, &mut params_only);
        assert_eq!(params_only, grads);
    }

    #[test]
    fn linear_gradcheck() {
        let mut rng = StdRng::seed_from_u64(0);
        let layer = LinearConfig {
            c_in: 4,
            c_out: 5,
            bias: true,
        }
        .init(&mut rng);
        let x = init::normal((2, 3, 4), 1.0, &mut rng);
        gradcheck_layer(&GradCheck::default(), &layer, &x, 1).unwrap();
    }

    #[test]
    fn linear_without_bias_gradcheck() {
        let mut rng = StdRng::seed_from_u64(1);
        let layer = LinearConfig {
            c_in: 3,
            c_out: 2,
            bias: false,
        }
        .init(&mut rng);
        assert_eq!(layer.params().len(), 1);
        let x = init::normal((2, 2, 3), 1.0, &mut rng);
        gradcheck_layer(&GradCheck::default(), &layer, &x, 2).unwrap();
    }

    #[test]
    fn linear_accepts_non_contiguous_input() {
        let mut rng = StdRng::seed_from_u64(2);
        let layer = LinearConfig {
            c_in: 4,
            c_out: 3,
            bias: true,
        }
        .init(&mut rng);
        let wide: Array3<f32> = init::normal((2, 3, 8), 1.0, &mut rng);
        let strided = wide.slice(s![.., .., ..;2]); // [2, 3, 4], stride 2 on the last axis
        let (out_view, _) = layer.forward(&strided);
        let (out_owned, _) = layer.forward(&strided.to_owned());
        assert_eq!(out_view, out_owned);
    }

    #[test]
    fn linear_init_bound_is_torch_default() {
        let mut rng = StdRng::seed_from_u64(3);
        let layer = LinearConfig {
            c_in: 16,
            c_out: 32,
            bias: true,
        }
        .init(&mut rng);
        let bound = 0.25; // 1/√16
        assert!(layer.weight.iter().all(|w| w.abs() <= bound));
        assert!(layer.weight.iter().any(|w| w.abs() > 0.9 * bound));
        let mean = layer.weight.mean().unwrap();
        assert!(mean.abs() < 0.03, "mean {mean}");
    }

    #[test]
    fn linear_on_rows_equals_matrix_product() {
        let mut rng = StdRng::seed_from_u64(4);
        let layer = LinearConfig {
            c_in: 5,
            c_out: 2,
            bias: false,
        }
        .init(&mut rng);
        let x: Array3<f32> = init::normal((1, 4, 5), 1.0, &mut rng);
        let (out, _) = layer.forward(&x);
        let want = x.index_axis(Axis(0), 0).dot(&layer.weight.t());
        let got = out.index_axis(Axis(0), 0);
        assert_allclose("out", &got, &want, 1e-6, 1e-6);
    }

    #[test]
    fn naive_forward_equals_forward() {
        let mut rng = StdRng::seed_from_u64(5);
        let layer = LinearConfig {
            c_in: 7,
            c_out: 5,
            bias: true,
        }
        .init(&mut rng);
        let x: Array3<f32> = init::normal((2, 3, 7), 1.0, &mut rng);
        assert_allclose(
            "out",
            &layer.forward_naive(&x),
            &layer.forward(&x).0,
            1e-5,
            1e-6,
        );
    }

    #[test]
    #[should_panic(expected = "linear: x is (1, 1, 3), weight is (2, 2)")]
    fn linear_names_both_shapes_on_mismatch() {
        let layer = Linear::new(Array2::zeros((2, 2)), None);
        let _ = layer.forward(&Array3::zeros((1, 1, 3)));
    }
}
