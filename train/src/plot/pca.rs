//! Principal component analysis by hand: the covariance matrix of the
//! centred rows, and its leading eigenvectors by power iteration with
//! deflation.
//!
//! ```text
//! X: [N, E] → mean μ: [E], Σ = (X − μ)ᵀ(X − μ) / N: [E, E]
//! repeat k times: v ← Σv / ‖Σv‖ until it stops turning  (the top eigenvector)
//!                 λ = vᵀΣv;  Σ ← Σ − λ v vᵀ              (remove it, find the next)
//! projection: (X − μ) Vᵀ: [N, k]
//! ```
//!
//! Power iteration converges to the eigenvector of the largest eigenvalue
//! at the rate `λ₂/λ₁` per step; for the handful of components a figure
//! needs, on a covariance of a few dozen dimensions, that is plenty.

use ndarray::{Array1, Array2, ArrayRef2, Axis};

/// The leading principal components of a set of rows.
#[derive(Debug, Clone, PartialEq)]
pub struct Pca {
    /// `[E]`: the mean row, subtracted before projecting.
    pub mean: Array1<f32>,
    /// `[k, E]`: unit directions, largest variance first. The sign of each
    /// is fixed so that its largest-magnitude entry is positive.
    pub components: Array2<f32>,
    /// `[k]`: the variance of the data along each component (its eigenvalue).
    pub variances: Vec<f32>,
    /// The total variance (trace of the covariance), for "explained" fractions.
    pub total_variance: f32,
}

// ANCHOR: pca
/// The first `k` principal components of the rows of `x`.
///
/// # Shapes
/// - `x: [N, E]` → `components: [k, E]`
///
/// # Panics
/// If `x` has no rows, or `k` exceeds `E`.
#[track_caller]
pub fn pca(x: &ArrayRef2<f32>, k: usize) -> Pca {
    let (n, e) = x.dim();
    assert!(n > 0 && k <= e, "pca: {k} components of {:?}", x.dim());
    let x = x.mapv(f64::from);
    let mean = x.mean_axis(Axis(0)).expect("at least one row"); // [E]
    let centred = &x - &mean; // [N, E]
    let mut cov = centred.t().dot(&centred) / n as f64; // [E, E]
    let total_variance = cov.diag().sum();
    let mut components = Array2::zeros((k, e));
    let mut variances = Vec::with_capacity(k);
    for i in 0..k {
        let v = top_eigenvector(&cov);
        let lambda = v.dot(&cov.dot(&v)); // vᵀΣv
        // deflate: Σ ← Σ − λ v vᵀ, so the next top eigenvector is the next component
        for r in 0..e {
            for c in 0..e {
                cov[[r, c]] -= lambda * v[r] * v[c];
            }
        }
        components.row_mut(i).assign(&v.mapv(|a| a as f32));
        variances.push(lambda.max(0.0) as f32);
    }
    Pca {
        mean: mean.mapv(|a| a as f32),
        components,
        variances,
        total_variance: total_variance as f32,
    }
}

/// The unit eigenvector of the largest eigenvalue of a symmetric positive
/// semi-definite matrix, by power iteration.
fn top_eigenvector(cov: &Array2<f64>) -> Array1<f64> {
    let e = cov.nrows();
    // a fixed start with a component along every axis (not orthogonal to the answer)
    let mut v = Array1::from_shape_fn(e, |i| 1.0 + 0.1 * ((i * 7919) % 13) as f64);
    v /= v.dot(&v).sqrt();
    for _ in 0..1000 {
        let w = cov.dot(&v); // Σv
        let norm = w.dot(&w).sqrt();
        if norm < 1e-30 {
            break; // no variance left: any unit vector will do
        }
        let next = w / norm;
        let change = (&next - &v).mapv(f64::abs).sum();
        v = next;
        if change < 1e-12 {
            break;
        }
    }
    // a fixed sign: the largest-magnitude entry positive
    let biggest = v
        .iter()
        .copied()
        .fold(0.0f64, |m, a| if a.abs() > m.abs() { a } else { m });
    if biggest < 0.0 {
        v.mapv_inplace(|a| -a);
    }
    v
}
// ANCHOR_END: pca

impl Pca {
    /// Coordinates of rows along the components.
    ///
    /// # Shapes
    /// - `x: [N, E]` → `[N, k]`
    ///
    /// # Panics
    /// If `x` is not `E` wide.
    #[track_caller]
    pub fn project(&self, x: &ArrayRef2<f32>) -> Array2<f32> {
        assert_eq!(
            x.ncols(),
            self.mean.len(),
            "pca project: rows of width {} into a space of width {}",
            x.ncols(),
            self.mean.len()
        );
        (x.to_owned() - &self.mean).dot(&self.components.t())
    }

    /// The fraction of the total variance each component holds.
    pub fn explained(&self) -> Vec<f32> {
        self.variances
            .iter()
            .map(|v| v / self.total_variance.max(f32::MIN_POSITIVE))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use embedding::init;
    use ndarray::{Array2, array};
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    /// Points with standard deviations 3, 1 and 0.1 along three orthonormal
    /// directions of a 4-D space (a rotation of the axes), shifted by a mean.
    fn known() -> (Array2<f32>, Array2<f32>, Array1<f32>) {
        let s = 0.5f32;
        let directions = array![[s, s, s, s], [s, -s, s, -s], [s, s, -s, -s]]; // orthonormal rows
        let z = init::normal((2000, 3), 1.0, &mut StdRng::seed_from_u64(0)); // [N, 3]
        let scaled = &z * &array![3.0f32, 1.0, 0.1];
        let mean = array![1.0f32, -2.0, 0.5, 4.0];
        let x = scaled.dot(&directions) + &mean;
        (x, directions, mean)
    }

    #[test]
    fn finds_the_directions_and_variances_of_known_data() {
        let (x, directions, mean) = known();
        let p = pca(&x, 3);
        for i in 0..3 {
            let cos = p.components.row(i).dot(&directions.row(i)).abs();
            assert!(cos > 0.999, "component {i}: |cos| = {cos}");
        }
        for (got, want) in p.variances.iter().zip([9.0f32, 1.0, 0.01]) {
            assert!((got / want - 1.0).abs() < 0.1, "variance {got} vs {want}");
        }
        for (a, b) in p.mean.iter().zip(&mean) {
            assert!((a - b).abs() < 0.2, "mean {a} vs {b}");
        }
        let explained: f32 = p.explained().iter().sum();
        assert!((explained - 1.0).abs() < 1e-3, "{explained}");
        // orthonormal components
        let gram = p.components.dot(&p.components.t());
        for r in 0..3 {
            for c in 0..3 {
                let want = if r == c { 1.0 } else { 0.0 };
                assert!((gram[[r, c]] - want).abs() < 1e-4, "gram {r},{c}");
            }
        }
    }

    #[test]
    fn projections_are_centred_with_the_component_variances() {
        let (x, _, _) = known();
        let p = pca(&x, 2);
        let y = p.project(&x); // [N, 2]
        let mean = y.mean_axis(Axis(0)).unwrap();
        assert!(mean.iter().all(|m| m.abs() < 1e-3), "{mean}");
        for i in 0..2 {
            let var = y.column(i).mapv(|a| a * a).mean().unwrap();
            assert!((var / p.variances[i] - 1.0).abs() < 1e-3);
        }
    }

    #[test]
    fn a_single_point_has_no_variance() {
        let p = pca(&array![[1.0f32, 2.0, 3.0]], 2);
        assert_eq!(p.variances, vec![0.0, 0.0]);
        assert!(
            p.project(&array![[1.0f32, 2.0, 3.0]])
                .iter()
                .all(|&a| a == 0.0)
        );
    }
}
