//! Scaled dot-product attention, the plain kernel: `softmax(Q Kᵀ/√D + mask) V`.
//!
//! This is the teaching reference. For every (batch item, head) it builds the
//! whole score matrix `S = Q Kᵀ/√D` (`[T_q, T_kv]`), masks it, turns each row
//! into probabilities `P = softmax(S)`, and mixes the values `out = P V`.
//! The probabilities are returned: the backward pass needs them, and they are
//! the attention weights a reader plots.
//!
//! - forward: `S = Q Kᵀ / √D`, `P = softmax(S + mask)`, `out = P V`;
//! - backward: `dV = Pᵀ dout`, `dP = dout Vᵀ`, `dS = P ⊙ (dP − rowsum(P ⊙ dP))`,
//!   `dQ = dS K / √D`, `dK = dSᵀ Q / √D`.
//!
//! Why `√D`: with unit-variance entries, `q·k` sums `D` products and has
//! variance `D`; dividing by `√D` brings it back to 1, so the softmax does not
//! saturate into a one-hot row whose gradient vanishes.
//!
//! [`crate::tiled_attention_forward`] computes the same output without ever holding `S`.
//! Reference: Vaswani et al. 2017, §3.2.1;
//! <https://pytorch.org/docs/stable/generated/torch.nn.functional.scaled_dot_product_attention.html>

use embedding::{gemm, matmul};
use ndarray::{Array2, Array4, ArrayRef4, ArrayView3, ArrayViewMut3, Axis, Zip};

use crate::mask::Mask;
use crate::softmax::{softmax_row_backward, softmax_row_fast};

/// `(batch, n_head, t_q, t_kv, head_dim)` of a `q, k, v` triple, checked.
#[track_caller]
pub(crate) fn check_qkv(
    op: &str,
    q: &ArrayRef4<f32>,
    k: &ArrayRef4<f32>,
    v: &ArrayRef4<f32>,
) -> (usize, usize, usize, usize, usize) {
    let (batch, n_head, t_q, head_dim) = q.dim();
    let (kb, kh, t_kv, kd) = k.dim();
    assert!(
        (kb, kh, kd) == (batch, n_head, head_dim) && v.dim() == k.dim(),
        "{op}: q is {:?}, k is {:?}, v is {:?}",
        q.dim(),
        k.dim(),
        v.dim()
    );
    (batch, n_head, t_q, t_kv, head_dim)
}

/// `[B, H, T, D]` as `[B·H, T, D]`: a view when contiguous, a copy otherwise.
pub(crate) fn heads_flat(x: &ArrayRef4<f32>) -> ndarray::CowArray<'_, f32, ndarray::Ix3> {
    let (batch, n_head, seq, head_dim) = x.dim();
    x.to_shape((batch * n_head, seq, head_dim)).unwrap() // row-major reshape always succeeds
}

/// `[B, H, T, X]` as a mutable `[B·H, T, X]` view of a fresh (contiguous) array.
pub(crate) fn flat_mut(a: &mut Array4<f32>, seq: usize) -> ArrayViewMut3<'_, f32> {
    let (batch, n_head, _, last) = a.dim();
    a.view_mut()
        .into_shape_with_order((batch * n_head, seq, last))
        .unwrap() // fresh arrays are contiguous
}

// ANCHOR: forward
/// Plain scaled dot-product attention.
///
/// # Shapes
/// - `q: [B, H, T_q, D]`, `k, v: [B, H, T_kv, D]`
/// - → `out: [B, H, T_q, D]` and the attention weights `probs: [B, H, T_q, T_kv]`
///   (each row sums to one, or is all zeros when the mask hides every key).
///
/// # Panics
/// If the shapes disagree, or a padding mask does not have `B` lengths.
#[track_caller]
pub fn attention_forward(
    q: &ArrayRef4<f32>,
    k: &ArrayRef4<f32>,
    v: &ArrayRef4<f32>,
    mask: &Mask,
) -> (Array4<f32>, Array4<f32>) {
    let (batch, n_head, t_q, t_kv, head_dim) = check_qkv("attention", q, k, v);
    mask.check_batch(batch);
    let scale = 1.0 / (head_dim as f32).sqrt();
    let (q, k, v) = (heads_flat(q), heads_flat(k), heads_flat(v)); // [B*H, T, D]
    let mut out = Array4::<f32>::zeros((batch, n_head, t_q, head_dim));
    let mut probs = Array4::<f32>::zeros((batch, n_head, t_q, t_kv));
    {
        let (mut out, mut probs) = (flat_mut(&mut out, t_q), flat_mut(&mut probs, t_q)); // [B*H, T_q, _]
        // one (batch item, head) per task; heads are independent
        Zip::indexed(out.axis_iter_mut(Axis(0)))
            .and(probs.axis_iter_mut(Axis(0)))
            .and(q.axis_iter(Axis(0)))
            .and(k.axis_iter(Axis(0)))
            .and(v.axis_iter(Axis(0)))
            .par_for_each(|bh, mut out_bh, mut att_bh, q_bh, k_bh, v_bh| {
                let b = bh / n_head;
                // S = Q Kᵀ / √D                                 [T_q, D] x [D, T_kv] -> [T_q, T_kv]
                gemm(scale, &q_bh, &k_bh.t(), 0.0, &mut att_bh);
                for (i, mut row) in att_bh.outer_iter_mut().enumerate() {
                    let row = row.as_slice_mut().unwrap(); // rows of a fresh array are contiguous
                    let visible = mask.visible_keys(b, i, t_q, t_kv);
                    row[visible..].fill(f32::NEG_INFINITY); // masked scores: exp(−∞) = 0
                    softmax_row_fast(row); // P = softmax(S + mask)
                }
                // out = P V                                     [T_q, T_kv] x [T_kv, D] -> [T_q, D]
                gemm(1.0, &att_bh, &v_bh, 0.0, &mut out_bh);
            });
    }
    (out, probs)
}
// ANCHOR_END: forward

/// The input gradients of [`attention_backward`].
#[derive(Debug, Clone)]
pub struct AttentionGrads {
    /// `[B, H, T_q, D]`
    pub dq: Array4<f32>,
    /// `[B, H, T_kv, D]`
    pub dk: Array4<f32>,
    /// `[B, H, T_kv, D]`
    pub dv: Array4<f32>,
}

// ANCHOR: backward
/// Backward of [`attention_forward`], from the saved `q, k, v` and `probs`.
///
/// The mask needs no second look: masked weights are exactly zero, so their
/// gradients vanish by themselves.
///
/// # Shapes
/// - `dout, q: [B, H, T_q, D]`, `k, v: [B, H, T_kv, D]`, `probs: [B, H, T_q, T_kv]`
/// - → `dq: [B, H, T_q, D]`, `dk, dv: [B, H, T_kv, D]`
///
/// # Panics
/// If the shapes disagree.
#[track_caller]
pub fn attention_backward(
    dout: &ArrayRef4<f32>,
    q: &ArrayRef4<f32>,
    k: &ArrayRef4<f32>,
    v: &ArrayRef4<f32>,
    probs: &ArrayRef4<f32>,
) -> AttentionGrads {
    let (batch, n_head, t_q, t_kv, head_dim) = check_qkv("attention backward", q, k, v);
    assert!(
        dout.dim() == q.dim() && probs.dim() == (batch, n_head, t_q, t_kv),
        "attention backward: dout is {:?}, q is {:?}, probs is {:?}",
        dout.dim(),
        q.dim(),
        probs.dim()
    );
    let scale = 1.0 / (head_dim as f32).sqrt();
    let (q, k, v, dout) = (
        heads_flat(q),
        heads_flat(k),
        heads_flat(v),
        heads_flat(dout),
    );
    let probs = probs.to_shape((batch * n_head, t_q, t_kv)).unwrap(); // row-major reshape always succeeds
    let mut dq = Array4::<f32>::zeros((batch, n_head, t_q, head_dim));
    let mut dk = Array4::<f32>::zeros((batch, n_head, t_kv, head_dim));
    let mut dv = Array4::<f32>::zeros((batch, n_head, t_kv, head_dim));
    {
        let (mut dq, mut dk, mut dv) = (
            flat_mut(&mut dq, t_q),
            flat_mut(&mut dk, t_kv),
            flat_mut(&mut dv, t_kv),
        );
        let inputs: [ArrayView3<f32>; 5] =
            [q.view(), k.view(), v.view(), dout.view(), probs.view()];
        let [q, k, v, dout, probs] = inputs;
        Zip::indexed(dq.axis_iter_mut(Axis(0)))
            .and(dk.axis_iter_mut(Axis(0)))
            .and(dv.axis_iter_mut(Axis(0)))
            .and(q.axis_iter(Axis(0)))
            .and(k.axis_iter(Axis(0)))
            .par_for_each(|bh, mut dq_bh, mut dk_bh, mut dv_bh, q_bh, k_bh| {
                // a Zip takes at most six parts: the other inputs by index
                let v_bh = v.index_axis(Axis(0), bh);
                let dout_bh = dout.index_axis(Axis(0), bh);
                let att_bh = probs.index_axis(Axis(0), bh);
                // in the forward pass this was:
                //   out = P V
                // so now we have:
                gemm(1.0, &att_bh.t(), &dout_bh, 0.0, &mut dv_bh); // dV = Pᵀ dout: [T_kv, D]
                let datt = matmul(&dout_bh, &v_bh.t()); // dP = dout Vᵀ: [T_q, T_kv]
                // in the forward pass this was:
                //   P = softmax(S + mask)
                // so now we have (masked entries have P = 0, so dS = 0 there):
                let mut dpreatt = Array2::<f32>::zeros((t_q, t_kv)); // dS: [T_q, T_kv]
                for ((p, dp), mut ds) in att_bh
                    .outer_iter()
                    .zip(datt.outer_iter())
                    .zip(dpreatt.outer_iter_mut())
                {
                    // every row here is contiguous: standard-layout inputs, fresh buffers
                    softmax_row_backward(
                        p.as_slice().unwrap(),
                        dp.as_slice().unwrap(),
                        ds.as_slice_mut().unwrap(),
                    );
                }
                // in the forward pass this was:
                //   S = Q Kᵀ / √D
                // so now we have:
                gemm(scale, &dpreatt, &k_bh, 0.0, &mut dq_bh); // dQ = dS K / √D: [T_q, D]
                gemm(scale, &dpreatt.t(), &q_bh, 0.0, &mut dk_bh); // dK = dSᵀ Q / √D: [T_kv, D]
            });
    }
    AttentionGrads { dq, dk, dv }
}
// ANCHOR_END: backward

#[cfg(test)]
mod tests {
    use super::*;
    use embedding::Linear;
    use embedding::init;
    use embedding::testing::{WithInputs, assert_allclose, fakeloss};
    use ndarray::{Ix4, array};
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn attention_by_hand() {
        // one query, two keys: q·k = [0, 2], scaled by 1/√2... use D = 1 so no scaling
        let q = array![[[[1.0f32]]]];
        let k = array![[[[0.0f32], [2.0f32.ln()]]]]; // scores [0, ln 2] -> probs [1/3, 2/3]
        let v = array![[[[3.0f32], [6.0]]]];
        let (out, probs) = attention_forward(&q, &k, &v, &Mask::None);
        assert!((probs[[0, 0, 0, 0]] - 1.0 / 3.0).abs() < 1e-6);
        assert!((out[[0, 0, 0, 0]] - 5.0).abs() < 1e-5); // 3/3 + 12/3
    }

    fn check(mask: &Mask, t_q: usize, t_kv: usize, seed: u64) {
        let mut rng = StdRng::seed_from_u64(seed);
        let q: Array4<f32> = init::normal((2, 2, t_q, 3), 1.0, &mut rng);
        let k: Array4<f32> = init::normal((2, 2, t_kv, 3), 1.0, &mut rng);
        let v: Array4<f32> = init::normal((2, 2, t_kv, 3), 1.0, &mut rng);
        let dout: Array4<f32> = init::normal((2, 2, t_q, 3), 1.0, &mut rng);
        let (_, probs) = attention_forward(&q, &k, &v, mask);
        let g = attention_backward(&dout, &q, &k, &v, &probs);
        let none = Vec::<Linear>::new(); // no parameters
        let analytic = WithInputs::new(none.clone(), vec![("q", g.dq), ("k", g.dk), ("v", g.dv)]);
        let mut state = WithInputs::new(none, vec![("q", q), ("k", k), ("v", v)]);
        crate::gradcheck()
            .run(&mut state, &analytic, |s| {
                let (q, k, v) = (s.input::<Ix4>(0), s.input::<Ix4>(1), s.input::<Ix4>(2));
                fakeloss(&attention_forward(&q, &k, &v, mask).0, &dout)
            })
            .into_result()
            .unwrap_or_else(|r| panic!("{mask:?}, T_q {t_q}, T_kv {t_kv}: {r}"));
    }

    #[test]
    fn attention_gradcheck_every_mask() {
        check(&Mask::None, 3, 3, 0);
        check(&Mask::None, 2, 4, 1); // T_q ≠ T_kv
        check(&Mask::Causal, 3, 3, 2);
        check(&Mask::Causal, 2, 4, 3); // queries at the end of a longer key sequence
        check(&Mask::KeyPadding(vec![4, 2]), 3, 4, 4);
        check(&Mask::CausalKeyPadding(vec![3, 0]), 3, 3, 5); // item 1 fully masked
    }

    #[test]
    fn fully_masked_rows_are_zero_not_nan() {
        let mut rng = StdRng::seed_from_u64(6);
        let q: Array4<f32> = init::normal((2, 1, 3, 2), 1.0, &mut rng);
        let kv: Array4<f32> = init::normal((2, 1, 3, 2), 1.0, &mut rng);
        let (out, probs) = attention_forward(&q, &kv, &kv, &Mask::KeyPadding(vec![3, 0]));
        assert!(out.iter().chain(probs.iter()).all(|v| v.is_finite()));
        assert!(out.index_axis(Axis(0), 1).iter().all(|&v| v == 0.0));
        let g = attention_backward(&Array4::ones(out.dim()), &q, &kv, &kv, &probs);
        assert!(g.dq.index_axis(Axis(0), 1).iter().all(|&v| v == 0.0));
    }

    #[test]
    fn non_contiguous_inputs_give_the_same_answer() {
        let mut rng = StdRng::seed_from_u64(7);
        let q: Array4<f32> = init::normal((1, 2, 3, 4), 1.0, &mut rng);
        let k: Array4<f32> = init::normal((1, 2, 3, 4), 1.0, &mut rng);
        let kt = k
            .permuted_axes([0, 2, 1, 3])
            .as_standard_layout()
            .into_owned(); // [1, 3, 2, 4]
        let k_view = kt.view().permuted_axes([0, 2, 1, 3]); // [1, 2, 3, 4], strided
        let (want, _) = attention_forward(&q, &k_view.to_owned(), &q, &Mask::Causal);
        let (got, _) = attention_forward(&q, &k_view, &q, &Mask::Causal);
        assert_allclose("out", &got, &want, 0.0, 0.0);
    }
}
