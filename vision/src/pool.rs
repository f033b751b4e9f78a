//! Pooling: summarising each window of a feature map by one number.
//!
//! - [`MaxPool2d`]: `out[b, c, y, x] = max over the k×k window at (y·s, x·s)`;
//!   backward routes `dout` to the one input that won (ties: the first in
//!   row-major order, as PyTorch does).
//! - [`AvgPool2d`]: the window's mean; backward spreads `dout / k²` over it.
//! - [`GlobalAvgPool`]: the mean over the whole `H × W` plane, `[B, C, H, W] → [B, C]`:
//!   one vector per image, whatever its size.
//!
//! No padding (PyTorch's default); output sizes follow [`conv_output_size`]
//! with `p = 0` (floor mode: a partial window at the edge is dropped).
//! None of them has parameters, so their backward passes take no gradient twin.
//! References: <https://pytorch.org/docs/stable/generated/torch.nn.MaxPool2d.html>,
//! <https://pytorch.org/docs/stable/generated/torch.nn.AvgPool2d.html>

use std::hint::select_unpredictable;

use ndarray::{Array2, Array4, ArrayRef2, ArrayRef4, Axis, Zip, s};

use crate::conv::conv_output_size;

/// Max pooling over `kernel × kernel` windows, `stride` apart.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MaxPool2d {
    /// Window side `k`.
    pub kernel: usize,
    /// Step between windows `s` (PyTorch's default is `s = k`: windows tile the map).
    pub stride: usize,
}

/// What `MaxPool2d::backward` needs: where each maximum came from.
#[derive(Debug, Clone)]
pub struct MaxPool2dCache {
    argmax: Array4<u32>, // [B, C, H_out, W_out]: the winner's position iy·W + ix in its plane
    input: (usize, usize, usize, usize),
}

impl MaxPool2d {
    /// Non-overlapping `k × k` windows (`stride = kernel`).
    pub fn new(kernel: usize) -> Self {
        MaxPool2d {
            kernel,
            stride: kernel,
        }
    }

    // ANCHOR: maxpool_forward
    /// # Shapes
    /// - `x: [B, C, H, W]` → `out: [B, C, H_out, W_out]`, `H_out = ⌊(H − k)/s⌋ + 1`
    ///
    /// # Panics
    /// If the window is larger than the map or the stride is zero.
    #[track_caller]
    pub fn forward(&self, x: &ArrayRef4<f32>) -> (Array4<f32>, MaxPool2dCache) {
        let (batch, channels, height, width) = x.dim();
        assert!(
            height * width <= u32::MAX as usize,
            "maxpool: x is {:?}, a plane too large for u32 positions",
            x.dim()
        );
        let (k, s) = (self.kernel, self.stride);
        if (k, s) == (2, 2) {
            return self.forward_2x2(x); // the CNN's window: the same result, faster (below)
        }
        let h_out = conv_output_size(height, k, s, 0);
        let w_out = conv_output_size(width, k, s, 0);
        let mut out = Array4::zeros((batch, channels, h_out, w_out));
        let mut argmax = Array4::<u32>::zeros(out.dim());
        // one (b, c) plane at a time, as flat slices: `plane[iy·W + ix]` instead of
        // a checked 4-D index per tap (a view unless x is not row-major)
        let x = x.as_standard_layout();
        let planes = x.as_slice().unwrap().chunks_exact(height * width); // [H·W] each
        let out_planes = out.as_slice_mut().unwrap().chunks_exact_mut(h_out * w_out);
        let arg_planes = argmax
            .as_slice_mut()
            .unwrap()
            .chunks_exact_mut(h_out * w_out);
        for ((plane, out_p), arg_p) in planes.zip(out_planes).zip(arg_planes) {
            let rows = out_p
                .chunks_exact_mut(w_out)
                .zip(arg_p.chunks_exact_mut(w_out));
            for (oy, (out_row, arg_row)) in rows.enumerate() {
                for (ox, (o, a)) in out_row.iter_mut().zip(arg_row).enumerate() {
                    let mut best = (f32::NEG_INFINITY, oy * s * width + ox * s); // any real value beats −∞
                    for iy in oy * s..oy * s + k {
                        let taps = &plane[iy * width + ox * s..][..k]; // x[iy, ox·s..ox·s + k]
                        for (j, &v) in taps.iter().enumerate() {
                            // subtle: NaN wins, so it propagates as in PyTorch
                            let wins = v > best.0 || v.is_nan() && !best.0.is_nan();
                            // a select, not a branch: on real data the winner is a coin toss
                            best = select_unpredictable(wins, (v, iy * width + ox * s + j), best);
                        }
                    }
                    *o = best.0;
                    *a = best.1 as u32; // u32: a quarter of a (usize, usize) pair
                }
            }
        }
        let input = x.dim();
        (out, MaxPool2dCache { argmax, input })
    }
    // ANCHOR_END: maxpool_forward

    /// [`MaxPool2d::forward`] for 2×2 windows 2 apart, the CNN's pooling:
    /// each window's four taps compared in two pairs and then the pair
    /// winners, with no inner loops. The same maxima, the same winners (the
    /// first of equal maxima, the first NaN), as a test checks; about three
    /// times faster.
    fn forward_2x2(&self, x: &ArrayRef4<f32>) -> (Array4<f32>, MaxPool2dCache) {
        let (batch, channels, height, width) = x.dim();
        let (h_out, w_out) = (height / 2, width / 2);
        let mut out = Array4::zeros((batch, channels, h_out, w_out));
        let mut argmax = Array4::<u32>::zeros(out.dim());
        let x = x.as_standard_layout();
        let planes = x.as_slice().unwrap().chunks_exact(height * width); // [H·W] each
        let out_planes = out.as_slice_mut().unwrap().chunks_exact_mut(h_out * w_out);
        let arg_planes = argmax
            .as_slice_mut()
            .unwrap()
            .chunks_exact_mut(h_out * w_out);
        // `later` beats `first` if larger, or NaN where `first` is not: so the
        // first of equal maxima, and the first NaN, win (the loop's order)
        let pick = |first: (f32, u32), later: (f32, u32)| {
            let wins = later.0 > first.0 || later.0.is_nan() && !first.0.is_nan();
            if wins { later } else { first }
        };
        for ((plane, out_p), arg_p) in planes.zip(out_planes).zip(arg_planes) {
            let rows = out_p
                .chunks_exact_mut(w_out)
                .zip(arg_p.chunks_exact_mut(w_out));
            for (oy, (out_row, arg_row)) in rows.enumerate() {
                let top = 2 * oy * width; // the window's first row in the plane
                let r0 = &plane[top..top + 2 * w_out];
                let r1 = &plane[top + width..top + width + 2 * w_out];
                let cells = r0.chunks_exact(2).zip(r1.chunks_exact(2));
                for (ox, ((o, a), (t, b))) in out_row
                    .iter_mut()
                    .zip(arg_row.iter_mut())
                    .zip(cells)
                    .enumerate()
                {
                    let at = (top + 2 * ox) as u32;
                    let upper = pick((t[0], at), (t[1], at + 1));
                    let lower = pick((b[0], at + width as u32), (b[1], at + width as u32 + 1));
                    (*o, *a) = pick(upper, lower);
                }
            }
        }
        (
            out,
            MaxPool2dCache {
                argmax,
                input: x.dim(),
            },
        )
    }

    // ANCHOR: maxpool_backward
    /// # Shapes
    /// - `dout: [B, C, H_out, W_out]` → `dx: [B, C, H, W]`
    ///
    /// # Panics
    /// If `dout` is not the forward output's shape.
    #[track_caller]
    pub fn backward(&self, dout: &ArrayRef4<f32>, cache: &MaxPool2dCache) -> Array4<f32> {
        assert_eq!(
            dout.dim(),
            cache.argmax.dim(),
            "maxpool backward: dout is {:?}, out was {:?}",
            dout.dim(),
            cache.argmax.dim()
        );
        let (_, _, height, width) = cache.input;
        let (h_out, w_out) = (cache.argmax.dim().2, cache.argmax.dim().3);
        let mut dx = Array4::zeros(cache.input);
        // one (b, c) plane at a time, as flat slices, as in the forward pass
        let dout = dout.as_standard_layout(); // a view when already row-major
        let dout_planes = dout.as_slice().unwrap().chunks_exact(h_out * w_out);
        let arg_planes = cache.argmax.as_slice().unwrap().chunks_exact(h_out * w_out);
        let dx_planes = dx.as_slice_mut().unwrap().chunks_exact_mut(height * width);
        for ((dx_p, dout_p), arg_p) in dx_planes.zip(dout_planes).zip(arg_planes) {
            for (&d, &winner) in dout_p.iter().zip(arg_p) {
                // in the forward pass this was:
                //   out[b, c, oy, ox] = x[b, c, iy, ix]   (the winner of the window, at iy·W + ix)
                // so now we have (+=: overlapping windows may share a winner):
                dx_p[winner as usize] += d;
            }
        }
        dx
    }
    // ANCHOR_END: maxpool_backward
}

/// Average pooling over `kernel × kernel` windows, `stride` apart.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AvgPool2d {
    /// Window side `k`.
    pub kernel: usize,
    /// Step between windows `s`.
    pub stride: usize,
}

/// What `AvgPool2d::backward` needs: the input shape.
#[derive(Debug, Clone)]
pub struct AvgPool2dCache {
    input: (usize, usize, usize, usize),
}

impl AvgPool2d {
    /// Non-overlapping `k × k` windows (`stride = kernel`).
    pub fn new(kernel: usize) -> Self {
        AvgPool2d {
            kernel,
            stride: kernel,
        }
    }

    // ANCHOR: avgpool
    /// # Shapes
    /// - `x: [B, C, H, W]` → `out: [B, C, H_out, W_out]`, `H_out = ⌊(H − k)/s⌋ + 1`
    ///
    /// # Panics
    /// If the window is larger than the map or the stride is zero.
    #[track_caller]
    pub fn forward(&self, x: &ArrayRef4<f32>) -> (Array4<f32>, AvgPool2dCache) {
        let (batch, channels, height, width) = x.dim();
        let (k, s) = (self.kernel, self.stride);
        let h_out = conv_output_size(height, k, s, 0);
        let w_out = conv_output_size(width, k, s, 0);
        let scale = 1.0 / (k * k) as f32;
        let out = Array4::from_shape_fn((batch, channels, h_out, w_out), |(b, c, oy, ox)| {
            let window = x.slice(s![b, c, oy * s..oy * s + k, ox * s..ox * s + k]); // [k, k]
            window.sum() * scale
        });
        let input = x.dim();
        (out, AvgPool2dCache { input })
    }

    /// # Shapes
    /// - `dout: [B, C, H_out, W_out]` → `dx: [B, C, H, W]`
    ///
    /// # Panics
    /// If `dout` is not the forward output's shape.
    #[track_caller]
    pub fn backward(&self, dout: &ArrayRef4<f32>, cache: &AvgPool2dCache) -> Array4<f32> {
        let (batch, channels, height, width) = cache.input;
        let (k, s) = (self.kernel, self.stride);
        let want = (
            batch,
            channels,
            conv_output_size(height, k, s, 0),
            conv_output_size(width, k, s, 0),
        );
        assert_eq!(
            dout.dim(),
            want,
            "avgpool backward: dout is {:?}, out was {want:?}",
            dout.dim()
        );
        let scale = 1.0 / (k * k) as f32;
        let mut dx = Array4::zeros(cache.input);
        for ((b, c, oy, ox), &d) in dout.indexed_iter() {
            // in the forward pass this was:
            //   out[b, c, oy, ox] = Σ_window x / k²
            // so every pixel of the window gets dout / k²:
            let mut window = dx.slice_mut(s![b, c, oy * s..oy * s + k, ox * s..ox * s + k]);
            window += d * scale;
        }
        dx
    }
    // ANCHOR_END: avgpool
}

/// The mean over all positions: `[B, C, H, W] → [B, C]`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct GlobalAvgPool;

/// What `GlobalAvgPool::backward` needs: the plane size `(H, W)`.
#[derive(Debug, Clone)]
pub struct GlobalAvgPoolCache {
    plane: (usize, usize),
}

impl GlobalAvgPool {
    // ANCHOR: global_avgpool
    /// # Shapes
    /// - `x: [B, C, H, W]` → `out: [B, C]`
    pub fn forward(&self, x: &ArrayRef4<f32>) -> (Array2<f32>, GlobalAvgPoolCache) {
        let (_, _, height, width) = x.dim();
        let out = x.sum_axis(Axis(3)).sum_axis(Axis(2)) / (height * width) as f32; // [B, C]
        (
            out,
            GlobalAvgPoolCache {
                plane: (height, width),
            },
        )
    }

    /// # Shapes
    /// - `dout: [B, C]` → `dx: [B, C, H, W]`
    pub fn backward(&self, dout: &ArrayRef2<f32>, cache: &GlobalAvgPoolCache) -> Array4<f32> {
        let (batch, channels) = dout.dim();
        let (height, width) = cache.plane;
        let scale = 1.0 / (height * width) as f32;
        // in the forward pass this was:
        //   out[b, c] = Σ_{y, x} x[b, c, y, x] / (H·W)
        // so every position gets dout[b, c] / (H·W):
        let mut dx = Array4::zeros((batch, channels, height, width));
        Zip::from(dx.outer_iter_mut())
            .and(dout.outer_iter())
            .for_each(|mut dx_b, dout_b| {
                dx_b += &dout_b
                    .mapv(|d| d * scale)
                    .into_shape_with_order((channels, 1, 1))
                    .unwrap(); // [C, 1, 1], broadcast
            });
        dx
    }
    // ANCHOR_END: global_avgpool
}

#[cfg(test)]
mod tests {
    use super::*;
    use embedding::init;
    use embedding::testing::{GradCheck, WithInputs, fakeloss};
    use ndarray::{Ix4, array};
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    /// The module half of a gradient-check state for an op without parameters.
    #[derive(Debug, Clone)]
    struct NoParams;

    impl embedding::Params for NoParams {
        fn params(&self) -> Vec<(String, ndarray::ArrayViewD<'_, f32>)> {
            Vec::new()
        }
        fn params_mut(&mut self) -> Vec<(String, ndarray::ArrayViewMutD<'_, f32>)> {
            Vec::new()
        }
    }

    /// Finite-difference check of a parameter-free 4-D op.
    fn gradcheck_op<C>(
        x: Array4<f32>,
        forward: impl Fn(&ArrayRef4<f32>) -> (Array4<f32>, C),
        backward: impl Fn(&ArrayRef4<f32>, &C) -> Array4<f32>,
    ) {
        let (out, cache) = forward(&x);
        let dout: Array4<f32> = init::normal(out.dim(), 1.0, &mut StdRng::seed_from_u64(7));
        let dx = backward(&dout, &cache);
        let analytic = WithInputs::new(NoParams, vec![("x", dx)]);
        let mut state = WithInputs::new(NoParams, vec![("x", x)]);
        GradCheck::default()
            .run(&mut state, &analytic, |s| {
                fakeloss(&forward(&s.input::<Ix4>(0)).0, &dout)
            })
            .into_result()
            .unwrap();
    }

    /// Distinct values far apart, so a step of h = 1e-3 never changes a window's winner.
    fn spread_input(dim: (usize, usize, usize, usize), seed: u64) -> Array4<f32> {
        let n = dim.0 * dim.1 * dim.2 * dim.3;
        let mut values: Vec<f32> = (0..n).map(|i| i as f32 * 0.1 - 1.0).collect();
        // a seeded shuffle (Fisher–Yates with a small LCG), so winners sit anywhere in the window
        let mut state = seed;
        for i in (1..n).rev() {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            values.swap(i, (state >> 33) as usize % (i + 1));
        }
        Array4::from_shape_vec(dim, values).unwrap()
    }

    #[test]
    fn maxpool_by_hand() {
        let x = array![[[
            [1.0, 5.0, 2.0, 0.0],
            [3.0, 4.0, 8.0, 1.0],
            [0.0, 0.0, 1.0, 1.0],
            [9.0, 0.0, 1.0, 1.0]
        ]]];
        let pool = MaxPool2d::new(2);
        let (out, cache) = pool.forward(&x);
        assert_eq!(out, array![[[[5.0, 8.0], [9.0, 1.0]]]]);
        let dx = pool.backward(&array![[[[1.0, 2.0], [3.0, 4.0]]]], &cache);
        // ties (the four ones) go to the first in row-major order
        let want = array![[[
            [0.0, 1.0, 0.0, 0.0],
            [0.0, 0.0, 2.0, 0.0],
            [0.0, 0.0, 4.0, 0.0],
            [3.0, 0.0, 0.0, 0.0]
        ]]];
        assert_eq!(dx, want);
    }

    /// The 2×2 path against the general loop written out for 2×2 windows:
    /// the same maxima (bit for bit) and the same winners, with NaNs and ties.
    #[test]
    fn the_2x2_window_gives_what_the_general_loop_gives() {
        let mut x = spread_input((2, 3, 7, 9), 5); // odd sides: the last row and column are dropped
        x[[0, 0, 0, 0]] = f32::NAN;
        x[[0, 1, 2, 3]] = f32::NAN;
        x[[0, 1, 3, 2]] = f32::NAN; // two NaNs in one window: the first wins
        for v in x.slice_mut(s![1, 2, .., ..]).iter_mut() {
            *v = (*v * 2.0).round(); // many ties
        }
        let pool = MaxPool2d::new(2);
        let (fast, fast_cache) = pool.forward_2x2(&x);
        // the general loop, as forward runs it for any other window
        let general = |x: &Array4<f32>| {
            let (batch, channels, height, width) = x.dim();
            let (h_out, w_out) = (height / 2, width / 2);
            let mut out = Array4::<f32>::zeros((batch, channels, h_out, w_out));
            let mut arg = Array4::<u32>::zeros(out.dim());
            for ((b, c, oy, ox), o) in out.indexed_iter_mut() {
                let mut best = (f32::NEG_INFINITY, (2 * oy * width + 2 * ox) as u32);
                for iy in 2 * oy..2 * oy + 2 {
                    for ix in 2 * ox..2 * ox + 2 {
                        let v = x[[b, c, iy, ix]];
                        if v > best.0 || v.is_nan() && !best.0.is_nan() {
                            best = (v, (iy * width + ix) as u32);
                        }
                    }
                }
                *o = best.0;
                arg[[b, c, oy, ox]] = best.1;
            }
            (out, arg)
        };
        let (want, want_arg) = general(&x);
        let bits = |a: &Array4<f32>| a.mapv(f32::to_bits);
        assert_eq!(bits(&fast), bits(&want));
        assert_eq!(fast_cache.argmax, want_arg);
    }

    #[test]
    fn maxpool_ties_go_to_the_first_tap_and_nan_wins() {
        // window [[1, 3], [3, 2]]: the first 3 (row-major) wins; [[0, NaN], [5, NaN]]: the first NaN
        let x = array![[[[1.0, 3.0, 0.0, f32::NAN], [3.0, 2.0, 5.0, f32::NAN]]]];
        let pool = MaxPool2d::new(2);
        let (out, cache) = pool.forward(&x);
        assert_eq!(out[[0, 0, 0, 0]], 3.0);
        assert!(out[[0, 0, 0, 1]].is_nan());
        let dx = pool.backward(&array![[[[10.0, 20.0]]]], &cache);
        assert_eq!(dx, array![[[[0.0, 10.0, 0.0, 20.0], [0.0, 0.0, 0.0, 0.0]]]]);
        // overlapping windows (k 3, s 2) on values with many ties, against a plain search
        let x = Array4::from_shape_fn((2, 3, 7, 9), |(b, c, i, j)| {
            ((b + 3 * c + 5 * i + 7 * j) % 4) as f32
        });
        let pool = MaxPool2d {
            kernel: 3,
            stride: 2,
        };
        let (out, cache) = pool.forward(&x);
        let dx = pool.backward(&Array4::ones(out.dim()), &cache);
        let mut want = Array4::<f32>::zeros(x.dim());
        for ((b, c, oy, ox), &o) in out.indexed_iter() {
            let window = (0..9).map(|t| (2 * oy + t / 3, 2 * ox + t % 3));
            let first = window.clone().find(|&(i, j)| x[[b, c, i, j]] == o).unwrap();
            assert_eq!(
                window
                    .map(|(i, j)| x[[b, c, i, j]])
                    .fold(f32::MIN, f32::max),
                o
            );
            want[[b, c, first.0, first.1]] += 1.0;
        }
        assert_eq!(dx, want);
    }

    #[test]
    fn maxpool_gradcheck() {
        let pool = MaxPool2d::new(2);
        gradcheck_op(
            spread_input((2, 2, 4, 6), 1),
            |x| pool.forward(x),
            |d, c| pool.backward(d, c),
        );
    }

    #[test]
    fn maxpool_overlapping_windows_gradcheck() {
        let pool = MaxPool2d {
            kernel: 3,
            stride: 2,
        };
        gradcheck_op(
            spread_input((1, 2, 7, 5), 2),
            |x| pool.forward(x),
            |d, c| pool.backward(d, c),
        );
    }

    #[test]
    fn avgpool_by_hand_and_gradcheck() {
        let pool = AvgPool2d::new(2);
        let x = array![[[[1.0, 3.0], [5.0, 7.0]]]];
        assert_eq!(pool.forward(&x).0, array![[[[4.0]]]]);
        gradcheck_op(
            spread_input((2, 1, 5, 4), 3),
            |x| pool.forward(x),
            |d, c| pool.backward(d, c),
        );
        let overlapping = AvgPool2d {
            kernel: 3,
            stride: 1,
        };
        gradcheck_op(
            spread_input((1, 2, 4, 5), 4),
            |x| overlapping.forward(x),
            |d, c| overlapping.backward(d, c),
        );
    }

    #[test]
    fn global_avgpool_by_hand_and_gradcheck() {
        let x = array![[[[1.0, 3.0], [5.0, 7.0]], [[0.0, 0.0], [0.0, 8.0]]]];
        assert_eq!(GlobalAvgPool.forward(&x).0, array![[4.0, 2.0]]);

        let x = spread_input((2, 3, 2, 3), 5);
        let (_, cache) = GlobalAvgPool.forward(&x);
        let dout: Array2<f32> = init::normal((2, 3), 1.0, &mut StdRng::seed_from_u64(8));
        let dx = GlobalAvgPool.backward(&dout, &cache);
        let analytic = WithInputs::new(NoParams, vec![("x", dx)]);
        let mut state = WithInputs::new(NoParams, vec![("x", x)]);
        GradCheck::default()
            .run(&mut state, &analytic, |s| {
                fakeloss(&GlobalAvgPool.forward(&s.input::<Ix4>(0)).0, &dout)
            })
            .into_result()
            .unwrap();
    }

    #[test]
    fn maxpool_floor_mode_drops_partial_windows() {
        let (out, _) = MaxPool2d::new(2).forward(&Array4::zeros((1, 1, 5, 7)));
        assert_eq!(out.dim(), (1, 1, 2, 3));
    }

    #[test]
    #[should_panic(expected = "maxpool backward: dout is (1, 1, 1, 1), out was (1, 1, 2, 2)")]
    fn maxpool_wrong_dout_panics() {
        let pool = MaxPool2d::new(2);
        let (_, cache) = pool.forward(&Array4::zeros((1, 1, 4, 4)));
        let _ = pool.backward(&Array4::zeros((1, 1, 1, 1)), &cache);
    }
}
