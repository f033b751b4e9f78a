//! Seeded initialisation: where every weight's first value comes from.
//!
//! Every function takes the random generator explicitly, so the same seed
//! always gives the same model (within one version of `rand`; the lockfile
//! pins it).
//!
//! | function | distribution | used for |
//! | --- | --- | --- |
//! | [`uniform`] | `U(-a, a)` | PyTorch's default for `nn.Linear`, `nn.Conv2d` ([`torch_default_bound`]) |
//! | [`normal`] | `N(0, σ²)` | token embeddings, GPT-2's `σ = 0.02` |
//! | [`xavier_uniform`] | `U(-a, a)`, `a = √(6 / (fan_in + fan_out))` | layers followed by tanh/linear units |
//! | [`kaiming_normal`] | `N(0, 2 / fan_in)` | layers followed by ReLU (the CNN) |
//!
//! References: Glorot & Bengio 2010; He et al. 2015;
//! <https://pytorch.org/docs/stable/nn.init.html>.

use ndarray::{Array, Dimension, ShapeBuilder};
use ndarray_rand::RandomExt;
use ndarray_rand::rand_distr::{Normal, Uniform};
use rand::Rng;

/// `U(-bound, bound)` in any shape.
///
/// # Panics
/// If `bound` is not finite and positive.
#[track_caller]
pub fn uniform<Sh, D>(shape: Sh, bound: f32, rng: &mut impl Rng) -> Array<f32, D>
where
    Sh: ShapeBuilder<Dim = D>,
    D: Dimension,
{
    assert!(
        bound.is_finite() && bound > 0.0,
        "init::uniform: bound must be finite and positive, got {bound}"
    );
    let dist = Uniform::new_inclusive(-bound, bound).unwrap(); // bound checked above
    Array::random_using(shape, dist, rng)
}

/// `N(0, std²)` in any shape.
///
/// # Panics
/// If `std` is not finite and non-negative.
#[track_caller]
pub fn normal<Sh, D>(shape: Sh, std: f32, rng: &mut impl Rng) -> Array<f32, D>
where
    Sh: ShapeBuilder<Dim = D>,
    D: Dimension,
{
    assert!(
        std.is_finite() && std >= 0.0,
        "init::normal: std must be finite and non-negative, got {std}"
    );
    let dist = Normal::new(0.0, std).unwrap(); // std checked above
    Array::random_using(shape, dist, rng)
}

/// PyTorch's default bound for `nn.Linear` and `nn.Conv2d`: `1/√fan_in`.
///
/// (PyTorch writes it as `kaiming_uniform_(a=√5)`, which works out to this.)
/// `fan_in` is `C_in` for a Linear and `C_in·k_h·k_w` for a convolution.
pub fn torch_default_bound(fan_in: usize) -> f32 {
    1.0 / (fan_in.max(1) as f32).sqrt()
}

/// Glorot/Xavier uniform: `U(-a, a)` with `a = √(6 / (fan_in + fan_out))`.
pub fn xavier_uniform<Sh, D>(
    shape: Sh,
    fan_in: usize,
    fan_out: usize,
    rng: &mut impl Rng,
) -> Array<f32, D>
where
    Sh: ShapeBuilder<Dim = D>,
    D: Dimension,
{
    let bound = (6.0 / (fan_in + fan_out).max(1) as f32).sqrt();
    uniform(shape, bound, rng)
}

/// He/Kaiming normal for ReLU layers: `N(0, 2 / fan_in)`.
pub fn kaiming_normal<Sh, D>(shape: Sh, fan_in: usize, rng: &mut impl Rng) -> Array<f32, D>
where
    Sh: ShapeBuilder<Dim = D>,
    D: Dimension,
{
    normal(shape, (2.0 / fan_in.max(1) as f32).sqrt(), rng)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array2, Array4};
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn mean_and_std(values: &[f32]) -> (f32, f32) {
        let n = values.len() as f32;
        let mean = values.iter().sum::<f32>() / n;
        let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / n;
        (mean, var.sqrt())
    }

    #[test]
    fn same_seed_same_weights() {
        let a: Array2<f32> = normal((4, 4), 1.0, &mut StdRng::seed_from_u64(7));
        let b: Array2<f32> = normal((4, 4), 1.0, &mut StdRng::seed_from_u64(7));
        let c: Array2<f32> = normal((4, 4), 1.0, &mut StdRng::seed_from_u64(8));
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn normal_has_the_asked_std() {
        let w: Array2<f32> = normal((200, 200), 0.02, &mut StdRng::seed_from_u64(0));
        let (mean, std) = mean_and_std(w.as_slice().unwrap());
        assert!(mean.abs() < 1e-3, "mean {mean}");
        assert!((std - 0.02).abs() < 1e-3, "std {std}");
    }

    #[test]
    fn xavier_and_kaiming_scale_with_fan() {
        let mut rng = StdRng::seed_from_u64(1);
        let x: Array2<f32> = xavier_uniform((100, 300), 300, 100, &mut rng);
        let bound = (6.0f32 / 400.0).sqrt();
        assert!(x.iter().all(|v| v.abs() <= bound));
        // a uniform on [-a, a] has std a/√3
        let (_, std) = mean_and_std(x.as_slice().unwrap());
        assert!(
            (std - bound / 3f32.sqrt()).abs() < 0.01 * bound,
            "std {std}"
        );

        let k: Array4<f32> = kaiming_normal((64, 16, 3, 3), 16 * 9, &mut rng);
        let (_, std) = mean_and_std(k.as_slice().unwrap());
        let want = (2.0f32 / 144.0).sqrt();
        assert!((std - want).abs() < 0.03 * want, "std {std}, want {want}");
    }

    #[test]
    #[should_panic(expected = "init::normal: std must be finite and non-negative, got -1")]
    fn negative_std_is_named() {
        let _: Array2<f32> = normal((2, 2), -1.0, &mut StdRng::seed_from_u64(0));
    }
}
