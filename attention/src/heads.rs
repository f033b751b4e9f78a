//! Splitting token vectors into heads and merging them back.
//!
//! A width-`C` vector is cut into `H` consecutive pieces of `D = C/H`
//! channels, one per head: `x[b, t, h·D + d]` becomes `q[b, h, t, d]`. The
//! fused QKV projection puts `q`, `k` and `v` side by side (`[B, T, 3C]`),
//! so one reshape and a transpose give all three. These are layout moves
//! only: their backward passes are the opposite moves.

use ndarray::{Array3, Array4, ArrayRef3, ArrayRef4};

/// Cuts `x: [B, T, P·C]` into `P` tensors `[B, H, T, D]` (`P = 3` for a fused QKV).
///
/// # Panics
/// If the last axis is not divisible into `P·H` pieces.
#[track_caller]
pub fn split_heads(x: &ArrayRef3<f32>, parts: usize, n_head: usize) -> Vec<Array4<f32>> {
    let (batch, seq, width) = x.dim();
    assert!(
        width.is_multiple_of(parts * n_head),
        "split heads: x is {:?}, cannot cut into {parts} parts of {n_head} heads",
        x.dim()
    );
    let head_dim = width / (parts * n_head);
    // x[b, t, (p·H + h)·D + d] → part p [b, h, t, d]: D numbers at a time,
    // contiguous on both sides (a direct loop; a permuted-axes copy visits
    // the numbers one by one)
    let x = x.as_standard_layout(); // a view when already row-major
    let x = x.as_slice().unwrap();
    (0..parts)
        .map(|p| {
            let mut out = Vec::with_capacity(batch * n_head * seq * head_dim);
            for b in 0..batch {
                for h in 0..n_head {
                    for t in 0..seq {
                        let from = (b * seq + t) * width + (p * n_head + h) * head_dim;
                        out.extend_from_slice(&x[from..from + head_dim]);
                    }
                }
            }
            Array4::from_shape_vec((batch, n_head, seq, head_dim), out).unwrap() // B·H·T·D numbers
        })
        .collect()
}

/// The backward of [`split_heads`]: puts `P` tensors `[B, H, T, D]` side by
/// side into `[B, T, P·C]`. It is also the forward merge of the heads (`P = 1`).
///
/// # Panics
/// If the parts differ in shape or there are none.
#[track_caller]
pub fn merge_heads(parts: &[&ArrayRef4<f32>]) -> Array3<f32> {
    let (batch, n_head, seq, head_dim) = parts.first().expect("merge heads: no parts").dim();
    for (p, part) in parts.iter().enumerate() {
        assert_eq!(
            part.dim(),
            (batch, n_head, seq, head_dim),
            "merge heads: part {p} is {:?}, part 0 is {:?}",
            part.dim(),
            (batch, n_head, seq, head_dim)
        );
    }
    let parts: Vec<_> = parts.iter().map(|part| part.as_standard_layout()).collect();
    let parts: Vec<&[f32]> = parts.iter().map(|part| part.as_slice().unwrap()).collect();
    // part p [b, h, t, d] → out[b, t, (p·H + h)·D + d], D numbers at a time
    let width = parts.len() * n_head * head_dim;
    let mut out = Vec::with_capacity(batch * seq * width);
    for b in 0..batch {
        for t in 0..seq {
            for part in &parts {
                for h in 0..n_head {
                    let from = ((b * n_head + h) * seq + t) * head_dim;
                    out.extend_from_slice(&part[from..from + head_dim]);
                }
            }
        }
    }
    Array3::from_shape_vec((batch, seq, width), out).unwrap() // B·T·P·C numbers
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_then_merge_is_the_identity() {
        let x = Array3::from_shape_fn((2, 3, 12), |(b, t, c)| (b * 100 + t * 10 + c) as f32);
        let parts = split_heads(&x, 3, 2); // three [2, 2, 3, 2]
        assert_eq!(parts[1].dim(), (2, 2, 3, 2));
        // k of head 1 at token 2, channel 0 is x[b, 2, C + 1·D + 0] = x[b, 2, 4 + 2]
        assert_eq!(parts[1][[1, 1, 2, 0]], x[[1, 2, 6]]);
        let refs: Vec<&ArrayRef4<f32>> = parts.iter().map(|p| &**p).collect();
        assert_eq!(merge_heads(&refs), x);
    }
}
