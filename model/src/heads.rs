//! Into the shared space: projection, L2 normalisation, logit scale.
//!
//! Each tower's pooled vector goes through its own projection, a `Linear`
//! without bias (`image_projection: [E, C_img]`, `text_projection:
//! [E, C_text]`), into the shared space of dimension `E`. There both are
//! L2-normalised onto the unit sphere, so the dot product of an image
//! embedding and a text embedding is their cosine similarity, in `[−1, 1]`.
//! The contrastive loss multiplies those cosines by `exp(logit_scale)`, a
//! learned inverse temperature.
//!
//! ```text
//! forward:   n = max(‖x‖, ε)          y = x / n
//! backward:  dx = (dy − y · (y·dy)) / n
//! ```
//!
//! The backward pass removes the part of `dy` along `y` (moving along `y`
//! only changes the length, which the normalisation throws away) and scales
//! by `1/n`. The book derives it.

use embedding::{Linear, LinearConfig};
use ndarray::{Array1, Array2, ArrayRef1, ArrayRef2, Axis, Zip};
use rand::Rng;

/// The `ε` under the norm (PyTorch's `F.normalize` default): a zero vector
/// stays zero instead of becoming NaN.
pub const L2_EPS: f32 = 1e-12;

/// A projection into the shared space: `Linear(c_in → embed_dim)`, no bias
/// (CLIP's), at PyTorch's default initialisation.
pub fn projection(c_in: usize, embed_dim: usize, rng: &mut impl Rng) -> Linear {
    LinearConfig {
        c_in,
        c_out: embed_dim,
        bias: false,
    }
    .init(rng)
}

// ANCHOR: l2_forward
/// Scales every row to unit length; returns the rows and their norms.
///
/// # Shapes
/// - `x: [B, E]` → `y: [B, E]`, `norms: [B]` (each `max(‖x_b‖, ε)`)
pub fn l2_normalize(x: &ArrayRef2<f32>) -> (Array2<f32>, Array1<f32>) {
    let norms = x.map_axis(Axis(1), |row| row.dot(&row).sqrt().max(L2_EPS)); // [B]
    let mut y = x.to_owned();
    for (mut row, &n) in y.rows_mut().into_iter().zip(&norms) {
        row /= n; // y = x / n
    }
    (y, norms)
}
// ANCHOR_END: l2_forward

// ANCHOR: l2_backward
/// The gradient of [`l2_normalize`] from its output `y` and the `norms`.
///
/// # Shapes
/// - `dy, y: [B, E]`, `norms: [B]` → `dx: [B, E]`
///
/// # Panics
/// If the shapes disagree.
#[track_caller]
pub fn l2_normalize_backward(
    dy: &ArrayRef2<f32>,
    y: &ArrayRef2<f32>,
    norms: &ArrayRef1<f32>,
) -> Array2<f32> {
    assert!(
        dy.dim() == y.dim() && norms.len() == y.nrows(),
        "l2 normalize backward: dy is {:?}, y is {:?}, norms is {:?}",
        dy.dim(),
        y.dim(),
        norms.dim()
    );
    // in the forward pass this was:
    //   y = x / ‖x‖
    // so now we have, row by row:
    //   dx = (dy − y (y·dy)) / ‖x‖
    let mut dx = dy.to_owned();
    Zip::from(dx.rows_mut())
        .and(y.rows())
        .and(norms)
        .for_each(|mut dx_b, y_b, &n| {
            let along = y_b.dot(&dx_b); // y·dy: the radial part of dy
            dx_b.scaled_add(-along, &y_b); // dy − y (y·dy)
            dx_b /= n;
        });
    dx
}
// ANCHOR_END: l2_backward

#[cfg(test)]
mod tests {
    use super::*;
    use embedding::init;
    use embedding::testing::{GradCheck, WithInputs, assert_allclose, fakeloss};
    use ndarray::{Ix2, array};
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn rows_get_unit_length_and_direction_is_kept() {
        let (y, norms) = l2_normalize(&array![[3.0, 4.0], [0.0, -2.0]]);
        assert_allclose("y", &y, &array![[0.6, 0.8], [0.0, -1.0]], 1e-6, 1e-7);
        assert_allclose("norms", &norms, &array![5.0, 2.0], 1e-6, 1e-7);
    }

    #[test]
    fn a_zero_row_stays_zero() {
        let (y, _) = l2_normalize(&Array2::zeros((1, 3)));
        assert!(y.iter().all(|&v| v == 0.0));
    }

    #[test]
    fn gradcheck_l2_normalize() {
        let mut rng = StdRng::seed_from_u64(0);
        let x: Array2<f32> = init::normal((3, 5), 1.0, &mut rng);
        let dy: Array2<f32> = init::normal((3, 5), 1.0, &mut rng);
        let (y, norms) = l2_normalize(&x);
        let dx = l2_normalize_backward(&dy, &y, &norms);
        let no_params = Vec::<Linear>::new();
        let mut state = WithInputs::new(no_params.clone(), vec![("x", x)]);
        let analytic = WithInputs::new(no_params, vec![("x", dx)]);
        GradCheck::default()
            .run(&mut state, &analytic, |s| {
                fakeloss(&l2_normalize(&s.input::<Ix2>(0)).0, &dy)
            })
            .into_result()
            .unwrap();
    }

    #[test]
    fn the_gradient_is_orthogonal_to_the_output() {
        let mut rng = StdRng::seed_from_u64(1);
        let x: Array2<f32> = init::normal((4, 6), 2.0, &mut rng);
        let dy: Array2<f32> = init::normal((4, 6), 1.0, &mut rng);
        let (y, norms) = l2_normalize(&x);
        let dx = l2_normalize_backward(&dy, &y, &norms);
        for (dx_b, y_b) in dx.rows().into_iter().zip(y.rows()) {
            assert!(dx_b.dot(&y_b).abs() < 1e-5);
        }
    }
}
