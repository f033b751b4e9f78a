//! Tiled attention with an online softmax: the FlashAttention idea on a CPU.
//!
//! The plain kernel ([`crate::attention_forward`]) writes the whole score
//! matrix `S = Q Kᵀ/√D` (`[T_q, T_kv]` per head) to memory, reads it back for
//! the softmax, and reads it again for `P V`. At `T = 1024` that is 4 MiB per
//! head: far more than a core's cache. This kernel walks over the keys in
//! tiles of `Tile::kv` columns and keeps, for each query row, only:
//!
//! - `m`, the largest score seen so far,
//! - `l`, the sum of `exp(s − m)` over the scores seen so far,
//! - `acc`, the sum of `exp(s − m)·vⱼ` (a `[D]` vector).
//!
//! When a new tile brings a larger maximum `m'`, everything accumulated so
//! far was computed relative to the old `m`; multiplying `l` and `acc` by
//! `exp(m − m')` rescales them to the new reference (the *online softmax*,
//! Milakov & Gimelshein 2018). After the last tile, `out = acc / l`. The
//! result equals `softmax(S) V` up to rounding, and the extra memory per
//! worker is one `[Tile::q, Tile::kv]` score tile plus `m` and `l`: `O(T)`
//! in total (the output itself) instead of `O(T²)`.
//!
//! Masks cost nothing extra: every mask allows a prefix of the keys, so
//! tiles past the last visible key are skipped entirely (half the work for
//! a causal mask).
//! Reference: Dao et al. 2022, "FlashAttention", Algorithm 1.

use embedding::gemm;
use ndarray::parallel::prelude::*;
use ndarray::{Array2, Array4, ArrayRef4, ArrayView2, ArrayViewMut2, Axis, Zip, s};

use crate::attention::{check_qkv, flat_mut, heads_flat};
use crate::mask::Mask;
use crate::softmax::{exp_nonpositive, lane_max, lane_sum};

/// Tile sizes of [`tiled_attention_forward`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tile {
    /// Query rows per tile (and per parallel task).
    pub q: usize,
    /// Key columns per tile: the score tile is `[q, kv]`.
    pub kv: usize,
}

impl Default for Tile {
    /// 128 × 256 f32 scores are 128 KiB: the tile, a 128-row query block and
    /// a 256-row key/value block (32 + 64 + 64 KiB at `D = 64`) fit in a
    /// core's L2 cache. Single-threaded at `T = 1024`, tiles from 64 × 128
    /// to 256 × 256 spent about the same CPU time, 64 × 64 some 8 % more.
    fn default() -> Self {
        Tile { q: 128, kv: 256 }
    }
}

impl Tile {
    /// Bytes of scratch one worker needs for `T_q` queries and `T_kv` keys:
    /// the score tile (no larger than the sequences) plus `m` and `l`.
    pub fn scratch_bytes(&self, t_q: usize, t_kv: usize) -> usize {
        let (rows, cols) = (self.q.min(t_q), self.kv.min(t_kv));
        (rows * cols + 2 * rows) * std::mem::size_of::<f32>()
    }
}

/// Tiled online-softmax attention: the same result as
/// [`crate::attention_forward`]'s `out`, without the `[T_q, T_kv]` scores.
///
/// # Shapes
/// - `q: [B, H, T_q, D]`, `k, v: [B, H, T_kv, D]` → `out: [B, H, T_q, D]`
///
/// # Panics
/// If the shapes disagree, a tile size is zero, or a padding mask does not
/// have `B` lengths.
#[track_caller]
pub fn tiled_attention_forward(
    q: &ArrayRef4<f32>,
    k: &ArrayRef4<f32>,
    v: &ArrayRef4<f32>,
    mask: &Mask,
    tile: Tile,
) -> Array4<f32> {
    let (batch, n_head, t_q, t_kv, head_dim) = check_qkv("tiled attention", q, k, v);
    assert!(
        tile.q > 0 && tile.kv > 0,
        "tiled attention: tile is {tile:?}"
    );
    mask.check_batch(batch);
    let scale = 1.0 / (head_dim as f32).sqrt();
    let (q, k, v) = (heads_flat(q), heads_flat(k), heads_flat(v)); // [B*H, T, D]
    let mut out = Array4::<f32>::zeros((batch, n_head, t_q, head_dim));
    Zip::indexed(flat_mut(&mut out, t_q).axis_iter_mut(Axis(0)))
        .and(q.axis_iter(Axis(0)))
        .and(k.axis_iter(Axis(0)))
        .and(v.axis_iter(Axis(0)))
        .par_for_each(|bh, mut out_bh, q_bh, k_bh, v_bh| {
            let b = bh / n_head;
            // query blocks are independent too: more tasks than heads
            out_bh
                .axis_chunks_iter_mut(Axis(0), tile.q)
                .into_par_iter()
                .zip(q_bh.axis_chunks_iter(Axis(0), tile.q))
                .enumerate()
                .for_each(|(block, (out_blk, q_blk))| {
                    let first = block * tile.q;
                    let visible = |r: usize| mask.visible_keys(b, first + r, t_q, t_kv);
                    query_block(out_blk, q_blk, k_bh, v_bh, visible, scale, tile.kv);
                });
        });
    out
}

// ANCHOR: query_block
/// One block of query rows against all keys, tile by tile.
/// `out_blk: [bq, D]` (zeros on entry), `q_blk: [bq, D]`, `k, v: [T_kv, D]`.
fn query_block(
    mut out_blk: ArrayViewMut2<f32>,
    q_blk: ArrayView2<f32>,
    k: ArrayView2<f32>,
    v: ArrayView2<f32>,
    visible: impl Fn(usize) -> usize,
    scale: f32,
    tile_kv: usize,
) {
    let rows = q_blk.nrows();
    let last_key = (0..rows).map(&visible).max().unwrap_or(0); // keys past this are masked for every row
    let mut scores = Array2::<f32>::zeros((rows, tile_kv.min(last_key))); // the only [bq, tile] buffer
    let mut max = vec![f32::NEG_INFINITY; rows]; // m: running max of each row
    let mut sum = vec![0.0f32; rows]; // l: running Σ exp(s − m)
    for start in (0..last_key).step_by(tile_kv) {
        let end = (start + tile_kv).min(last_key);
        let mut s_tile = scores.slice_mut(s![.., ..end - start]); // [bq, n]
        // S_tile = Q_blk K_tileᵀ / √D                     [bq, D] x [D, n] -> [bq, n]
        gemm(
            scale,
            &q_blk,
            &k.slice(s![start..end, ..]).t(),
            0.0,
            &mut s_tile,
        );
        for (r, mut row) in s_tile.outer_iter_mut().enumerate() {
            let row = row.as_slice_mut().unwrap(); // a row of a column slice is contiguous
            let seen = visible(r).saturating_sub(start).min(row.len()); // visible keys in this tile
            let (visible_part, masked_part) = row.split_at_mut(seen);
            let tile_max = lane_max(visible_part);
            let new_max = max[r].max(tile_max);
            if new_max == f32::NEG_INFINITY {
                row.fill(0.0); // nothing visible yet: contributes nothing
                continue;
            }
            let correction = (max[r] - new_max).exp(); // rescale what was summed against the old max
            for s in visible_part.iter_mut() {
                *s = exp_nonpositive(*s - new_max); // p̃ = exp(s − m') ≤ 1
            }
            masked_part.fill(0.0); // masked keys: p̃ = 0
            let tile_sum = lane_sum(visible_part);
            sum[r] = sum[r] * correction + tile_sum; // l' = l·exp(m − m') + Σ p̃
            out_blk.row_mut(r).mapv_inplace(|a| a * correction); // acc' = acc·exp(m − m') + …
            max[r] = new_max;
        }
        // … + P̃_tile V_tile                               [bq, n] x [n, D] -> [bq, D]
        gemm(
            1.0,
            &s_tile,
            &v.slice(s![start..end, ..]),
            1.0,
            &mut out_blk,
        );
    }
    for (mut row, &l) in out_blk.outer_iter_mut().zip(&sum) {
        if l > 0.0 {
            row.mapv_inplace(|a| a / l); // out = acc / l
        } // else: fully masked, acc is still zeros
    }
}
// ANCHOR_END: query_block

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attention::attention_forward;
    use embedding::init;
    use embedding::testing::assert_allclose;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn tiled_equals_plain_for_every_mask_and_tile() {
        let mut rng = StdRng::seed_from_u64(0);
        for (t_q, t_kv) in [(7, 7), (5, 11), (11, 5), (1, 9)] {
            let q: Array4<f32> = init::normal((2, 2, t_q, 4), 2.0, &mut rng);
            let k: Array4<f32> = init::normal((2, 2, t_kv, 4), 2.0, &mut rng);
            let v: Array4<f32> = init::normal((2, 2, t_kv, 4), 1.0, &mut rng);
            for mask in [
                Mask::None,
                Mask::Causal,
                Mask::KeyPadding(vec![t_kv, 2]),
                Mask::CausalKeyPadding(vec![0, 3]),
            ] {
                let (want, _) = attention_forward(&q, &k, &v, &mask);
                for tile in [Tile { q: 1, kv: 1 }, Tile { q: 3, kv: 2 }, Tile::default()] {
                    let got = tiled_attention_forward(&q, &k, &v, &mask, tile);
                    let label = format!("{mask:?} T_q {t_q} T_kv {t_kv} {tile:?}");
                    assert_allclose(&label, &got, &want, 1e-5, 1e-6);
                }
            }
        }
    }

    #[test]
    fn scratch_is_one_tile() {
        let tile = Tile { q: 64, kv: 128 };
        assert_eq!(tile.scratch_bytes(1024, 1024), (64 * 128 + 2 * 64) * 4);
        assert_eq!(tile.scratch_bytes(16, 16), (16 * 16 + 2 * 16) * 4); // never larger than the scores
    }
}
