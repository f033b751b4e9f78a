//! The layer contract every crate in the workspace follows.
//!
//! There is no autograd tape. Each layer is written twice, by hand:
//!
//! - `forward(&self, x)` returns the output **and a cache**: exactly what the
//!   backward pass will need, named, so the reader sees what is saved and why;
//! - `backward(&self, dout, &cache, &mut grads)` *adds* (`+=`) the parameter
//!   gradients into `grads`, a twin of the layer with the same shapes, and
//!   returns the gradient with respect to the input.
//!
//! The twin follows llm.c's `ParameterTensors params, grads;`: gradients have
//! the same type as the parameters, so one walk over names serves both.
//! Because `forward` takes `&self`, a layer holds no hidden state and can be
//! used twice in one pass (tied weights); because `backward` accumulates, the
//! gradients of both uses simply add up.
//!
//! [`Params`] names every trainable tensor the way PyTorch's `state_dict`
//! does (`blocks.0.attn.qkv.weight`). That one walk serves the optimiser,
//! zeroing, gradient checks and checkpoints.

use ndarray::{Array3, ArrayRef3, ArrayViewD, ArrayViewMutD};

// ANCHOR: layer_trait
/// A layer with a hand-written backward pass over `[B, T, C]` activations.
///
/// Layers whose inputs are not one `[B, T, C]` tensor (token IDs, images,
/// two sequences) keep the same contract with inherent `forward` and
/// `backward` methods.
pub trait Layer {
    /// What `forward` keeps for `backward` (the input, `mean`/`rstd`, softmax `probs`, …).
    type Cache;

    /// `x: [B, T, C_in]` → `(out: [B, T, C_out], cache)`.
    fn forward(&self, x: &ArrayRef3<f32>) -> (Array3<f32>, Self::Cache);

    /// `dout: [B, T, C_out]` → `dx: [B, T, C_in]`.
    ///
    /// Parameter gradients are *added* into `grads`, a twin of `self` that the
    /// caller zeroed (see [`Params::zeros_like`]).
    fn backward(&self, dout: &ArrayRef3<f32>, cache: &Self::Cache, grads: &mut Self)
    -> Array3<f32>;
}
// ANCHOR_END: layer_trait

// ANCHOR: params_trait
/// Named, flat access to every trainable tensor of a module.
///
/// Both methods list the same names in the same order. Names and layouts
/// follow PyTorch's `state_dict` (`weight` of a Linear is `[C_out, C_in]`),
/// so a checkpoint maps one to one onto a PyTorch mirror of the model.
pub trait Params {
    /// `(name, tensor)` for every parameter, in a fixed order.
    fn params(&self) -> Vec<(String, ArrayViewD<'_, f32>)>;

    /// The same list, writable: the optimiser and gradient checks use it.
    fn params_mut(&mut self) -> Vec<(String, ArrayViewMutD<'_, f32>)>;

    /// A copy of `self` with every parameter set to zero: the gradient twin.
    fn zeros_like(&self) -> Self
    where
        Self: Clone,
    {
        let mut twin = self.clone();
        twin.zero();
        twin
    }

    /// Sets every parameter to zero (on a gradient twin: "zero_grad").
    fn zero(&mut self) {
        for (_, mut tensor) in self.params_mut() {
            tensor.fill(0.0);
        }
    }

    /// The number of scalar parameters.
    fn num_params(&self) -> usize {
        self.params().iter().map(|(_, tensor)| tensor.len()).sum()
    }
}
// ANCHOR_END: params_trait

/// Puts `prefix.` in front of every name: how containers name their children.
///
/// ```
/// use embedding::{Linear, Params, prefixed};
/// let head = Linear::new(ndarray::Array2::zeros((2, 3)), None);
/// let names: Vec<String> = prefixed("head", head.params()).map(|(n, _)| n).collect();
/// assert_eq!(names, ["head.weight"]);
/// ```
pub fn prefixed<'a, T: 'a>(
    prefix: &'a str,
    children: Vec<(String, T)>,
) -> impl Iterator<Item = (String, T)> + 'a {
    children
        .into_iter()
        .map(move |(name, tensor)| (format!("{prefix}.{name}"), tensor))
}

/// A list of layers names its items by position, as PyTorch's `ModuleList`
/// does: `0.weight`, `1.weight`, …
impl<T: Params> Params for Vec<T> {
    fn params(&self) -> Vec<(String, ArrayViewD<'_, f32>)> {
        let mut all = Vec::new();
        for (i, item) in self.iter().enumerate() {
            all.extend(prefixed(&i.to_string(), item.params()));
        }
        all
    }

    fn params_mut(&mut self) -> Vec<(String, ArrayViewMutD<'_, f32>)> {
        let mut all = Vec::new();
        for (i, item) in self.iter_mut().enumerate() {
            all.extend(prefixed(&i.to_string(), item.params_mut()));
        }
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Linear;
    use ndarray::{Array1, Array2};

    fn two_layers() -> Vec<Linear> {
        vec![
            Linear::new(Array2::ones((2, 3)), Some(Array1::ones(2))),
            Linear::new(Array2::ones((4, 2)), None),
        ]
    }

    #[test]
    fn vec_names_items_by_position() {
        let layers = two_layers();
        let names: Vec<String> = layers.params().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["0.weight", "0.bias", "1.weight"]);
        assert_eq!(layers.num_params(), 6 + 2 + 8);
    }

    #[test]
    fn zeros_like_keeps_shapes_and_zeroes_values() {
        let layers = two_layers();
        let twin = layers.zeros_like();
        for ((name, p), (twin_name, g)) in layers.params().iter().zip(twin.params()) {
            assert_eq!(name, &twin_name);
            assert_eq!(p.shape(), g.shape());
            assert!(g.iter().all(|&v| v == 0.0));
        }
    }
}
