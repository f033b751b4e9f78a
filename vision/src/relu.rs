//! ReLU, `out = max(0, x)`: the non-linearity between convolutions.
//!
//! - forward: `out = max(0, x)`;
//! - backward: `dx = dout ⊙ [x > 0]` (the gradient at exactly 0 is taken as 0, as in PyTorch).
//!
//! Without it a stack of convolutions would collapse into one convolution.
//! Reference: <https://pytorch.org/docs/stable/generated/torch.nn.ReLU.html>

use ndarray::{Array, ArrayRef, Dimension, Zip};

/// The rectified linear unit. It has no parameters, so its backward pass
/// takes no gradient twin.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Relu;

/// What `Relu::backward` needs: the input (its sign says where the unit was on).
#[derive(Debug, Clone)]
pub struct ReluCache<D: Dimension> {
    x: Array<f32, D>,
}

impl Relu {
    // ANCHOR: relu
    /// # Shapes
    /// - `x: [any]` → `out`: the same shape
    pub fn forward<D: Dimension>(&self, x: &ArrayRef<f32, D>) -> (Array<f32, D>, ReluCache<D>) {
        let out = x.mapv(|v| v.max(0.0));
        (out, ReluCache { x: x.to_owned() })
    }

    /// # Shapes
    /// - `dout`: the output's shape → `dx`: the same shape
    ///
    /// # Panics
    /// If `dout` and the cached output differ in shape.
    #[track_caller]
    pub fn backward<D: Dimension>(
        &self,
        dout: &ArrayRef<f32, D>,
        cache: &ReluCache<D>,
    ) -> Array<f32, D> {
        assert_eq!(
            dout.shape(),
            cache.x.shape(),
            "relu backward: dout is {:?}, x is {:?}",
            dout.shape(),
            cache.x.shape()
        );
        // in the forward pass this was:
        //   out = max(0, x)
        // so the gradient passes where the unit was on, and stops where it was off:
        Zip::from(dout)
            .and(&cache.x)
            .map_collect(|&d, &x| if x > 0.0 { d } else { 0.0 })
    }
    // ANCHOR_END: relu

    /// [`Relu::forward`] for an input the caller no longer needs: it moves
    /// into the cache instead of being copied there.
    ///
    /// # Shapes
    /// - `x: [any]` → `out`: the same shape
    pub fn forward_owned<D: Dimension>(&self, x: Array<f32, D>) -> (Array<f32, D>, ReluCache<D>) {
        let out = x.mapv(|v| v.max(0.0));
        (out, ReluCache { x })
    }

    /// [`Relu::backward`] written over `dout` itself, which saves allocating
    /// (and page-faulting in) a map the size of the input.
    ///
    /// # Shapes
    /// - `dout`: the output's shape → `dx`: the same shape (the same buffer)
    ///
    /// # Panics
    /// If `dout` and the cached output differ in shape.
    #[track_caller]
    pub fn backward_in_place<D: Dimension>(
        &self,
        mut dout: Array<f32, D>,
        cache: &ReluCache<D>,
    ) -> Array<f32, D> {
        assert_eq!(
            dout.shape(),
            cache.x.shape(),
            "relu backward: dout is {:?}, x is {:?}",
            dout.shape(),
            cache.x.shape()
        );
        Zip::from(&mut dout)
            .and(&cache.x)
            .for_each(|d, &x| *d = if x > 0.0 { *d } else { 0.0 });
        dout
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn relu_by_hand() {
        let x = array![[-1.0, 0.0, 2.0]];
        let (out, cache) = Relu.forward(&x);
        assert_eq!(out, array![[0.0, 0.0, 2.0]]);
        let dx = Relu.backward(&array![[5.0, 6.0, 7.0]], &cache);
        assert_eq!(dx, array![[0.0, 0.0, 7.0]]);
    }

    #[test]
    fn owned_and_in_place_agree_with_the_plain_passes() {
        let x = array![[-1.5f32, 0.0, 2.0], [f32::NAN, 3.0, -0.0]];
        let dout = array![[1.0f32, 2.0, 3.0], [4.0, 5.0, 6.0]];
        let (out, cache) = Relu.forward(&x);
        let (out_owned, cache_owned) = Relu.forward_owned(x.clone());
        assert_eq!(out.mapv(f32::to_bits), out_owned.mapv(f32::to_bits)); // NaN == NaN as bits
        let dx = Relu.backward(&dout, &cache);
        assert_eq!(Relu.backward_in_place(dout, &cache_owned), dx);
        assert_eq!(dx, array![[0.0, 0.0, 3.0], [0.0, 5.0, 0.0]]);
    }

    #[test]
    fn relu_finite_differences_away_from_zero() {
        let x = array![-0.7f32, -0.2, 0.3, 1.4];
        let (_, cache) = Relu.forward(&x);
        let dx = Relu.backward(&array![1.0f32, 1.0, 1.0, 1.0], &cache);
        let h = 1e-3;
        for i in 0..x.len() {
            let numeric = ((x[i] + h).max(0.0) - (x[i] - h).max(0.0)) / (2.0 * h);
            assert!(
                (dx[i] - numeric).abs() < 1e-4,
                "{i}: {} vs {numeric}",
                dx[i]
            );
        }
    }
}
