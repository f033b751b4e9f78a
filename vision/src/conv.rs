//! `Conv2d`: a small linear layer slid over every position of an image.
//!
//! - forward: `out[b, o, y, x] = bias[o] + Σ_{c, i, j} weight[o, c, i, j] · in[b, c, y·s + i − p, x·s + j − p]`
//!   (positions outside the image read as zero: that is the padding `p`);
//! - backward: `dweight[o, c, i, j] += Σ_{b, y, x} dout[b, o, y, x] · in[b, c, y·s + i − p, x·s + j − p]`,
//!   `dbias[o] += Σ_{b, y, x} dout[b, o, y, x]`, and every input pixel collects
//!   `weight · dout` from each window that read it. For stride 1 that last sum
//!   is itself a convolution of `dout` with the kernels flipped in both
//!   directions and their in/out channels swapped ([`flip_kernel`]).
//! - output size: `H_out = ⌊(H + 2p − k) / s⌋ + 1` ([`conv_output_size`]).
//!
//! Two implementations compute the same numbers:
//!
//! - [`Conv2d::forward_direct`] / [`Conv2d::backward_direct`]: the seven
//!   nested loops of the formula, the teaching reference;
//! - [`Conv2d::forward`] / [`Conv2d::backward`]: **im2col**. Copy every
//!   receptive field of one image into a column of a matrix
//!   `cols: [C_in·k_h·k_w, H_out·W_out]` ([`im2col`]); the convolution is then
//!   one matrix product `weight [C_out, C_in·k_h·k_w] · cols`, which a tuned
//!   GEMM runs many times faster than the loops. The backward pass is two more
//!   products and [`col2im`], which adds each column back where it came from.
//!
//! Layouts are PyTorch's: images `[B, C, H, W]`, `weight: [C_out, C_in, k_h, k_w]`,
//! `bias: [C_out]`; stride and padding are the same along both axes.
//! Reference: <https://pytorch.org/docs/stable/generated/torch.nn.Conv2d.html>;
//! Chellapilla, Puri & Simard 2006, "High Performance Convolutional Neural
//! Networks for Document Processing" (the im2col idea).

use embedding::{gemm, matmul};
use ndarray::{
    Array1, Array2, Array3, Array4, ArrayRef2, ArrayRef3, ArrayRef4, ArrayViewD, ArrayViewMutD,
    Axis,
};
use rand::Rng;

use embedding::Params;
use embedding::init;

// ANCHOR: output_size
/// The output length of a convolution or pooling along one axis:
/// `⌊(input + 2·padding − kernel) / stride⌋ + 1`.
///
/// ```
/// assert_eq!(vision::conv_output_size(32, 3, 1, 1), 32); // "same" padding
/// assert_eq!(vision::conv_output_size(32, 3, 2, 1), 16); // stride 2 halves
/// assert_eq!(vision::conv_output_size(32, 8, 8, 0), 4);  // 8×8 patches
/// ```
///
/// # Panics
/// If `stride` is zero or the kernel is larger than the padded input.
#[track_caller]
pub fn conv_output_size(input: usize, kernel: usize, stride: usize, padding: usize) -> usize {
    assert!(
        stride > 0 && kernel > 0 && input + 2 * padding >= kernel,
        "conv_output_size: input {input}, kernel {kernel}, stride {stride}, padding {padding} \
         (need stride ≥ 1 and kernel ≤ input + 2·padding)"
    );
    (input + 2 * padding - kernel) / stride + 1
}
// ANCHOR_END: output_size

/// The input index read by output position `out_pos` at kernel offset `k`,
/// or `None` when it falls in the zero padding.
#[inline]
fn source_index(
    out_pos: usize,
    k: usize,
    stride: usize,
    padding: usize,
    len: usize,
) -> Option<usize> {
    (out_pos * stride + k)
        .checked_sub(padding)
        .filter(|&i| i < len)
}

/// The output positions `o < n_out` whose kernel tap `k` reads inside the
/// input (`0 ≤ o·stride + k − padding < len`), as one range: the positions
/// where [`source_index`] is `Some`. Lets im2col/col2im copy whole row runs
/// instead of testing every pixel.
fn valid_outputs(
    k: usize,
    stride: usize,
    padding: usize,
    len: usize,
    n_out: usize,
) -> std::ops::Range<usize> {
    let lo = padding.saturating_sub(k).div_ceil(stride); // first o with o·s + k ≥ p
    let hi = (len + padding)
        .checked_sub(k)
        .map_or(0, |end| end.div_ceil(stride)) // first o with o·s + k − p ≥ len
        .min(n_out);
    lo..hi.max(lo)
}

// ANCHOR: conv_struct
/// A 2-D convolution with the same stride and zero padding along both axes.
#[derive(Debug, Clone, PartialEq)]
pub struct Conv2d {
    /// `[C_out, C_in, k_h, k_w]`
    pub weight: Array4<f32>,
    /// `[C_out]`, or `None`.
    pub bias: Option<Array1<f32>>,
    /// The step between neighbouring windows, `s ≥ 1`.
    pub stride: usize,
    /// Zeros added on every side of the input, `p`.
    pub padding: usize,
}

/// What the backward pass needs: the input. (Both implementations share it;
/// im2col's backward rebuilds the columns from it rather than keeping a
/// matrix `k_h·k_w` times larger than the input.)
#[derive(Debug, Clone)]
pub struct Conv2dCache {
    x: Array4<f32>, // [B, C_in, H, W]
}
// ANCHOR_END: conv_struct

impl Conv2dCache {
    /// The shape of the cached input, `(B, C_in, H, W)`.
    pub fn input_dim(&self) -> (usize, usize, usize, usize) {
        self.x.dim()
    }
}

/// The sizes of a fresh [`Conv2d`].
#[derive(Debug, Clone, PartialEq)]
pub struct Conv2dConfig {
    /// Input channels `C_in` (3 for RGB images).
    pub c_in: usize,
    /// Output channels `C_out`: how many kernels, one feature map each.
    pub c_out: usize,
    /// Square kernel side `k`.
    pub kernel: usize,
    /// Step between windows.
    pub stride: usize,
    /// Zero padding on each side; `k / 2` keeps the size at stride 1.
    pub padding: usize,
    /// Whether to add a bias per output channel.
    pub bias: bool,
}

impl Default for Conv2dConfig {
    /// A 3×3 "same" convolution from RGB to 8 channels.
    fn default() -> Self {
        Conv2dConfig {
            c_in: 3,
            c_out: 8,
            kernel: 3,
            stride: 1,
            padding: 1,
            bias: true,
        }
    }
}

impl Conv2dConfig {
    /// PyTorch's default initialisation: `W, b ~ U(−a, a)`, `a = 1/√(C_in·k·k)`.
    pub fn init(&self, rng: &mut impl Rng) -> Conv2d {
        let fan_in = self.c_in * self.kernel * self.kernel;
        let bound = init::torch_default_bound(fan_in);
        let weight = init::uniform(
            (self.c_out, self.c_in, self.kernel, self.kernel),
            bound,
            rng,
        );
        let bias = self.bias.then(|| init::uniform(self.c_out, bound, rng));
        Conv2d::new(weight, bias, self.stride, self.padding)
    }
}

impl Conv2d {
    /// A convolution from given tensors: `weight: [C_out, C_in, k_h, k_w]`, `bias: [C_out]`.
    ///
    /// # Panics
    /// If the bias length is not `C_out` or `stride` is zero.
    #[track_caller]
    pub fn new(
        weight: Array4<f32>,
        bias: Option<Array1<f32>>,
        stride: usize,
        padding: usize,
    ) -> Self {
        if let Some(b) = &bias {
            assert_eq!(
                b.len(),
                weight.dim().0,
                "conv2d: bias is [{}], weight is {:?}",
                b.len(),
                weight.dim()
            );
        }
        assert!(stride > 0, "conv2d: stride must be at least 1");
        // standard layout, so `weight` can be viewed as a [C_out, C_in·k_h·k_w] matrix
        let weight = weight.as_standard_layout().into_owned();
        Conv2d {
            weight,
            bias,
            stride,
            padding,
        }
    }

    /// Input channels `C_in`.
    pub fn c_in(&self) -> usize {
        self.weight.dim().1
    }

    /// Output channels `C_out`.
    pub fn c_out(&self) -> usize {
        self.weight.dim().0
    }

    /// `(k_h, k_w)`.
    pub fn kernel_size(&self) -> (usize, usize) {
        let (_, _, kh, kw) = self.weight.dim();
        (kh, kw)
    }

    /// `(H_out, W_out)` for an `H × W` input.
    ///
    /// # Panics
    /// If the kernel does not fit the padded input.
    #[track_caller]
    pub fn output_size(&self, height: usize, width: usize) -> (usize, usize) {
        let (kh, kw) = self.kernel_size();
        (
            conv_output_size(height, kh, self.stride, self.padding),
            conv_output_size(width, kw, self.stride, self.padding),
        )
    }

    /// Checks `x: [B, C_in, H, W]` and returns `(B, H, W, H_out, W_out)`.
    #[track_caller]
    fn check_input(&self, op: &str, x: &ArrayRef4<f32>) -> (usize, usize, usize, usize, usize) {
        let (batch, c_in, height, width) = x.dim();
        assert_eq!(
            c_in,
            self.c_in(),
            "{op}: x is {:?}, weight is {:?}",
            x.dim(),
            self.weight.dim()
        );
        let (h_out, w_out) = self.output_size(height, width);
        (batch, height, width, h_out, w_out)
    }

    /// Checks `dout` against the cached input; returns `(H_out, W_out)`.
    #[track_caller]
    fn check_dout(&self, op: &str, dout: &ArrayRef4<f32>, cache: &Conv2dCache) -> (usize, usize) {
        let (batch, _, height, width) = cache.x.dim();
        let (h_out, w_out) = self.output_size(height, width);
        assert_eq!(
            dout.dim(),
            (batch, self.c_out(), h_out, w_out),
            "{op}: dout is {:?}, want {:?} for x {:?} and weight {:?}",
            dout.dim(),
            (batch, self.c_out(), h_out, w_out),
            cache.x.dim(),
            self.weight.dim()
        );
        (h_out, w_out)
    }

    // ANCHOR: forward_direct
    /// The convolution as the formula reads: the teaching reference.
    ///
    /// # Shapes
    /// - `x: [B, C_in, H, W]` → `out: [B, C_out, H_out, W_out]`
    ///
    /// # Panics
    /// If `x` does not have `C_in` channels or is smaller than the kernel.
    #[track_caller]
    pub fn forward_direct(&self, x: &ArrayRef4<f32>) -> (Array4<f32>, Conv2dCache) {
        let (batch, height, width, h_out, w_out) = self.check_input("conv2d direct", x);
        let (c_out, c_in) = (self.c_out(), self.c_in());
        let (kh, kw) = self.kernel_size();
        let (stride, pad) = (self.stride, self.padding);
        let mut out = Array4::zeros((batch, c_out, h_out, w_out));
        for b in 0..batch {
            for o in 0..c_out {
                let bias = self.bias.as_ref().map_or(0.0, |bias| bias[o]);
                for oy in 0..h_out {
                    for ox in 0..w_out {
                        let mut acc = bias;
                        for c in 0..c_in {
                            for i in 0..kh {
                                let Some(iy) = source_index(oy, i, stride, pad, height) else {
                                    continue; // zero padding
                                };
                                for j in 0..kw {
                                    let Some(ix) = source_index(ox, j, stride, pad, width) else {
                                        continue;
                                    };
                                    acc += self.weight[[o, c, i, j]] * x[[b, c, iy, ix]];
                                }
                            }
                        }
                        out[[b, o, oy, ox]] = acc;
                    }
                }
            }
        }
        (out, Conv2dCache { x: x.to_owned() })
    }
    // ANCHOR_END: forward_direct

    // ANCHOR: backward_direct
    /// The backward pass of [`Conv2d::forward_direct`], loop by loop.
    ///
    /// # Shapes
    /// - `dout: [B, C_out, H_out, W_out]` → `dx: [B, C_in, H, W]`
    ///
    /// # Panics
    /// If `dout` does not match the cached input's output shape.
    #[track_caller]
    pub fn backward_direct(
        &self,
        dout: &ArrayRef4<f32>,
        cache: &Conv2dCache,
        grads: &mut Conv2d,
    ) -> Array4<f32> {
        let (h_out, w_out) = self.check_dout("conv2d direct backward", dout, cache);
        let x = &cache.x;
        let (batch, c_in, height, width) = x.dim();
        let (kh, kw) = self.kernel_size();
        let (stride, pad) = (self.stride, self.padding);
        let mut dx = Array4::zeros(x.dim());
        for b in 0..batch {
            for o in 0..self.c_out() {
                for oy in 0..h_out {
                    for ox in 0..w_out {
                        let d = dout[[b, o, oy, ox]];
                        // in the forward pass this was:
                        //   acc = bias[o]
                        if let Some(dbias) = &mut grads.bias {
                            dbias[o] += d;
                        }
                        for c in 0..c_in {
                            for i in 0..kh {
                                let Some(iy) = source_index(oy, i, stride, pad, height) else {
                                    continue;
                                };
                                for j in 0..kw {
                                    let Some(ix) = source_index(ox, j, stride, pad, width) else {
                                        continue;
                                    };
                                    // in the forward pass this was:
                                    //   acc += weight[o, c, i, j] * x[b, c, iy, ix]
                                    // so now we have:
                                    grads.weight[[o, c, i, j]] += x[[b, c, iy, ix]] * d;
                                    dx[[b, c, iy, ix]] += self.weight[[o, c, i, j]] * d;
                                }
                            }
                        }
                    }
                }
            }
        }
        dx
    }
    // ANCHOR_END: backward_direct

    /// The weight as a matrix, one kernel per row: `[C_out, C_in·k_h·k_w]`.
    fn weight_matrix(&self) -> ndarray::ArrayView2<'_, f32> {
        let (c_out, c_in, kh, kw) = self.weight.dim();
        self.weight
            .view()
            .into_shape_with_order((c_out, c_in * kh * kw))
            .expect("conv2d: weight must be in standard layout (Conv2d::new makes it so)")
    }

    // ANCHOR: forward_im2col
    /// The convolution as one matrix product per image (im2col + GEMM).
    ///
    /// # Shapes
    /// - `x: [B, C_in, H, W]` → `out: [B, C_out, H_out, W_out]`
    ///
    /// # Panics
    /// If `x` does not have `C_in` channels or is smaller than the kernel.
    #[track_caller]
    pub fn forward(&self, x: &ArrayRef4<f32>) -> (Array4<f32>, Conv2dCache) {
        let (batch, _, _, h_out, w_out) = self.check_input("conv2d", x);
        let c_out = self.c_out();
        let weight = self.weight_matrix(); // [C_out, K], K = C_in·k_h·k_w
        let mut out = Array4::zeros((batch, c_out, h_out, w_out));
        for (x_b, mut out_b) in x.outer_iter().zip(out.outer_iter_mut()) {
            let cols = im2col(&x_b, self.kernel_size(), self.stride, self.padding); // [K, H_out·W_out]
            let mut out_b = out_b
                .view_mut()
                .into_shape_with_order((c_out, h_out * w_out))
                .unwrap(); // [C_out, H_out·W_out], contiguous by construction
            gemm(1.0, &weight, &cols, 0.0, &mut out_b); // out_b = W · cols
            if let Some(bias) = &self.bias {
                out_b += &bias.view().insert_axis(Axis(1)); // [C_out, 1], broadcast over positions
            }
        }
        (out, Conv2dCache { x: x.to_owned() })
    }
    // ANCHOR_END: forward_im2col

    /// The backward pass of [`Conv2d::forward`]: two matrix products and a col2im.
    ///
    /// # Shapes
    /// - `dout: [B, C_out, H_out, W_out]` → `dx: [B, C_in, H, W]`
    ///
    /// # Panics
    /// If `dout` does not match the cached input's output shape.
    #[track_caller]
    pub fn backward(
        &self,
        dout: &ArrayRef4<f32>,
        cache: &Conv2dCache,
        grads: &mut Conv2d,
    ) -> Array4<f32> {
        let mut dx = Array4::zeros(cache.x.dim());
        self.backward_into(dout, cache, grads, Some(&mut dx));
        dx
    }

    /// [`Conv2d::backward`] for the parameters only: the first layer of an
    /// image tower has pixels below it, whose gradient nobody reads, so it
    /// skips the product and the col2im that would compute it.
    ///
    /// # Panics
    /// As [`Conv2d::backward`].
    #[track_caller]
    pub fn backward_params(&self, dout: &ArrayRef4<f32>, cache: &Conv2dCache, grads: &mut Conv2d) {
        self.backward_into(dout, cache, grads, None);
    }

    // ANCHOR: backward_im2col
    /// Adds the parameter gradients into `grads` and, if `dx` is given (zeros
    /// shaped like the input), the input's gradient into `dx`.
    #[track_caller]
    fn backward_into(
        &self,
        dout: &ArrayRef4<f32>,
        cache: &Conv2dCache,
        grads: &mut Conv2d,
        mut dx: Option<&mut Array4<f32>>,
    ) {
        let (h_out, w_out) = self.check_dout("conv2d backward", dout, cache);
        let c_out = self.c_out();
        let weight = self.weight_matrix(); // [C_out, K]
        let (_, c_in, kh, kw) = self.weight.dim();
        let mut dweight = grads
            .weight
            .view_mut()
            .into_shape_with_order((c_out, c_in * kh * kw))
            .expect("conv2d backward: grads.weight must be in standard layout"); // [C_out, K]
        for (b, (x_b, dout_b)) in cache.x.outer_iter().zip(dout.outer_iter()).enumerate() {
            // recomputed rather than cached: see Conv2dCache
            let cols = im2col(&x_b, (kh, kw), self.stride, self.padding); // [K, H_out·W_out]
            let dout_b = dout_b.to_shape((c_out, h_out * w_out)).unwrap(); // [C_out, H_out·W_out], a view when contiguous
            // in the forward pass this was:
            //   out_b = W · cols + bias
            // so now we have:
            gemm(1.0, &dout_b, &cols.t(), 1.0, &mut dweight); // dW += dout_b · colsᵀ
            if let Some(dbias) = &mut grads.bias {
                *dbias += &dout_b.sum_axis(Axis(1)); // db += Σ_positions dout_b
            }
            if let Some(dx) = dx.as_deref_mut() {
                let dcols = matmul(&weight.t(), &dout_b); // [K, C_out] · [C_out, H_out·W_out] = dcols
                col2im(
                    &dcols,
                    &mut dx.index_axis_mut(Axis(0), b),
                    (kh, kw),
                    self.stride,
                    self.padding,
                );
            }
        }
    }
    // ANCHOR_END: backward_im2col
}

// ANCHOR: im2col
/// Copies every receptive field of one image into a column.
///
/// Row `(c·k_h + i)·k_w + j` of the result holds, for every output position
/// `(y, x)` in row-major order, the input pixel `in[c, y·s + i − p, x·s + j − p]`
/// that kernel entry `(c, i, j)` multiplies there (zero in the padding). So
/// `weight.reshape(C_out, K) · cols` is the convolution.
///
/// # Shapes
/// - `x: [C_in, H, W]` → `cols: [C_in·k_h·k_w, H_out·W_out]`
pub fn im2col(
    x: &ArrayRef3<f32>,
    (kh, kw): (usize, usize),
    stride: usize,
    padding: usize,
) -> Array2<f32> {
    let (c_in, height, width) = x.dim();
    let h_out = conv_output_size(height, kh, stride, padding);
    let w_out = conv_output_size(width, kw, stride, padding);
    let mut cols = Array2::zeros((c_in * kh * kw, h_out * w_out));
    // rows as slices: one contiguous run per (row, oy) instead of a bounds
    // test and a 2-D index per pixel (the padding stays zero)
    let x = x.as_standard_layout(); // [C_in, H, W], a view when already row-major
    let x = x.as_slice().unwrap();
    let cols_rows = cols.as_slice_mut().unwrap().chunks_exact_mut(h_out * w_out);
    for (row, col_row) in cols_rows.enumerate() {
        let (c, i, j) = (row / (kh * kw), (row / kw) % kh, row % kw);
        let xs = valid_outputs(j, stride, padding, width, w_out); // ox reading inside
        if xs.is_empty() {
            continue; // this tap only ever reads padding
        }
        for oy in 0..h_out {
            let Some(iy) = source_index(oy, i, stride, padding, height) else {
                continue; // this whole output row reads padding: leave the zeros
            };
            let src = &x[(c * height + iy) * width..][..width]; // x[c, iy, :]
            let dst = &mut col_row[oy * w_out..][xs.clone()];
            let first = xs.start * stride + j - padding; // ix of the first valid ox
            // cols[row, oy·W_out + ox] = x[c, iy, ox·s + j − p]
            if stride == 1 {
                dst.copy_from_slice(&src[first..first + dst.len()]); // one memcpy
            } else {
                for (d, &v) in dst.iter_mut().zip(src[first..].iter().step_by(stride)) {
                    *d = v;
                }
            }
        }
    }
    cols
}
// ANCHOR_END: im2col

// ANCHOR: col2im
/// The adjoint of [`im2col`]: adds each column entry back onto the pixel it
/// was copied from. A pixel read by several windows collects all their
/// gradients.
///
/// # Shapes
/// - `dcols: [C_in·k_h·k_w, H_out·W_out]`, added into `dx: [C_in, H, W]`
///
/// # Panics
/// If `dcols` does not have the shape `im2col` gives for `dx`'s size.
#[track_caller]
pub fn col2im(
    dcols: &ArrayRef2<f32>,
    dx: &mut ArrayRef3<f32>,
    (kh, kw): (usize, usize),
    stride: usize,
    padding: usize,
) {
    let (c_in, height, width) = dx.dim();
    let h_out = conv_output_size(height, kh, stride, padding);
    let w_out = conv_output_size(width, kw, stride, padding);
    assert_eq!(
        dcols.dim(),
        (c_in * kh * kw, h_out * w_out),
        "col2im: dcols is {:?}, dx is {:?}, kernel {:?}",
        dcols.dim(),
        dx.dim(),
        (kh, kw)
    );
    let Some(dx) = dx.as_slice_mut() else {
        // a strided dx (never from Conv2d::backward): add through a contiguous copy
        let mut contiguous = Array3::zeros(dx.dim());
        col2im(dcols, &mut contiguous, (kh, kw), stride, padding);
        *dx += &*contiguous;
        return;
    };
    // rows as slices, as in im2col: one run per (row, oy), no 2-D index per pixel
    let dcols = dcols.as_standard_layout(); // a view when already row-major
    let dcol_rows = dcols.as_slice().unwrap().chunks_exact(h_out * w_out);
    for (row, dcol_row) in dcol_rows.enumerate() {
        let (c, i, j) = (row / (kh * kw), (row / kw) % kh, row % kw);
        let xs = valid_outputs(j, stride, padding, width, w_out); // ox reading inside
        if xs.is_empty() {
            continue; // this tap only ever reads padding
        }
        for oy in 0..h_out {
            let Some(iy) = source_index(oy, i, stride, padding, height) else {
                continue;
            };
            let dcol = &dcol_row[oy * w_out..][xs.clone()];
            let first = xs.start * stride + j - padding; // ix of the first valid ox
            let drow =
                &mut dx[(c * height + iy) * width + first..][..(dcol.len() - 1) * stride + 1]; // dx[c, iy, first..]
            // in im2col this was: cols[row, oy·W_out + ox] = x[c, iy, ox·s + j − p]
            for (d, &g) in drow.iter_mut().step_by(stride).zip(dcol) {
                *d += g;
            }
        }
    }
}
// ANCHOR_END: col2im

// ANCHOR: flip_kernel
/// The kernels of the input-gradient convolution: `flipped[c, o, i, j] =
/// weight[o, c, k_h − 1 − i, k_w − 1 − j]`.
///
/// For stride 1, `dx` of a convolution with padding `p` is the convolution of
/// `dout` with these kernels and padding `k − 1 − p`: each input pixel sums
/// `weight · dout` over the windows that covered it, and walking those windows
/// from the pixel's side visits the kernel back to front.
///
/// # Shapes
/// - `weight: [C_out, C_in, k_h, k_w]` → `[C_in, C_out, k_h, k_w]`
pub fn flip_kernel(weight: &ArrayRef4<f32>) -> Array4<f32> {
    let (c_out, c_in, kh, kw) = weight.dim();
    Array4::from_shape_fn((c_in, c_out, kh, kw), |(c, o, i, j)| {
        weight[[o, c, kh - 1 - i, kw - 1 - j]]
    })
}
// ANCHOR_END: flip_kernel

impl Params for Conv2d {
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
    use embedding::testing::{GradCheck, WithInputs, assert_allclose, fakeloss};
    use ndarray::{Ix4, array};
    use proptest::prelude::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn conv(
        c_in: usize,
        c_out: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
        seed: u64,
    ) -> Conv2d {
        Conv2dConfig {
            c_in,
            c_out,
            kernel,
            stride,
            padding,
            bias: true,
        }
        .init(&mut StdRng::seed_from_u64(seed))
    }

    #[test]
    fn forward_by_hand() {
        // one 3×3 input, a 2×2 kernel of ones, bias 1: each output is 1 + its window's sum
        let layer = Conv2d::new(Array4::ones((1, 1, 2, 2)), Some(array![1.0]), 1, 0);
        let x = Array4::from_shape_vec((1, 1, 3, 3), (1..=9).map(|v| v as f32).collect()).unwrap();
        let want = array![[[[13.0, 17.0], [25.0, 29.0]]]];
        assert_eq!(layer.forward_direct(&x).0, want);
        assert_eq!(layer.forward(&x).0, want);
    }

    #[test]
    fn padding_reads_zeros() {
        // a 3×3 kernel of ones with padding 1 on a 2×2 image of ones: every window sees all 4 pixels
        let layer = Conv2d::new(Array4::ones((1, 1, 3, 3)), None, 1, 1);
        let x = Array4::ones((1, 1, 2, 2));
        assert_eq!(layer.forward(&x).0, Array4::from_elem((1, 1, 2, 2), 4.0));
    }

    #[test]
    fn col2im_adds_into_a_strided_dx_as_into_a_contiguous_one() {
        // stride 2, padding 1, a 3×2 kernel on [2, 5, 4]: dcols is [2·3·2, 3·3]
        let dcols = Array2::from_shape_fn((12, 9), |(r, c)| (r * 9 + c) as f32 * 0.25 - 3.0);
        let mut contiguous = Array3::from_elem((2, 5, 4), 1.0);
        col2im(&dcols, &mut contiguous, (3, 2), 2, 1);
        let mut wide = Array3::from_elem((2, 5, 8), 1.0);
        let mut strided = wide.slice_mut(ndarray::s![.., .., ..;2]); // every other column
        col2im(&dcols, &mut strided, (3, 2), 2, 1);
        assert_eq!(strided, contiguous);
        // and the adjoint identity ⟨im2col(x), dcols⟩ = ⟨x, col2im(dcols)⟩ (x of ones, plus the initial 1s)
        let cols = im2col(&Array3::ones((2, 5, 4)), (3, 2), 2, 1);
        let lhs: f32 = (&cols * &dcols).sum();
        assert!((lhs - (contiguous.sum() - 40.0)).abs() < 1e-3);
    }

    #[test]
    fn im2col_columns_are_receptive_fields() {
        // [C_in = 1, 3, 3], k = 2, stride 1: four windows of four pixels
        let x = Array4::from_shape_vec((1, 1, 3, 3), (1..=9).map(|v| v as f32).collect()).unwrap();
        let cols = im2col(&x.index_axis(Axis(0), 0), (2, 2), 1, 0);
        assert_eq!(
            cols,
            array![
                [1.0, 2.0, 4.0, 5.0],
                [2.0, 3.0, 5.0, 6.0],
                [4.0, 5.0, 7.0, 8.0],
                [5.0, 6.0, 8.0, 9.0]
            ]
        );
    }

    /// A convolution is linear in its input and in its weights, so a central
    /// difference has no truncation error at any step: a step of 1e-2 instead
    /// of 1e-3 divides the f32 rounding noise of the loss by ten.
    pub(crate) fn linear_check() -> GradCheck {
        GradCheck {
            step: 1e-2,
            ..GradCheck::default()
        }
    }

    fn gradcheck_both(layer: &Conv2d, x: Array4<f32>, seed: u64) {
        let (out, cache) = layer.forward(&x);
        let dout: Array4<f32> = init::normal(out.dim(), 1.0, &mut StdRng::seed_from_u64(seed));
        type Forward = fn(&Conv2d, &ArrayRef4<f32>) -> (Array4<f32>, Conv2dCache);
        type Backward = fn(&Conv2d, &ArrayRef4<f32>, &Conv2dCache, &mut Conv2d) -> Array4<f32>;
        let versions: [(Forward, Backward); 2] = [
            (Conv2d::forward, Conv2d::backward),
            (Conv2d::forward_direct, Conv2d::backward_direct),
        ];
        for (forward, backward) in versions {
            let mut grads = layer.zeros_like();
            let dx = backward(layer, &dout, &cache, &mut grads);
            let analytic = WithInputs::new(grads, vec![("x", dx)]);
            let mut state = WithInputs::new(layer.clone(), vec![("x", x.clone())]);
            linear_check()
                .run(&mut state, &analytic, |s| {
                    fakeloss(&forward(&s.module, &s.input::<Ix4>(0)).0, &dout)
                })
                .into_result()
                .unwrap();
        }
    }

    #[test]
    fn conv_gradcheck_stride_1_padding_1() {
        let layer = conv(2, 3, 3, 1, 1, 0);
        let x = init::normal((2, 2, 4, 5), 1.0, &mut StdRng::seed_from_u64(1));
        gradcheck_both(&layer, x, 2);
    }

    #[test]
    fn conv_gradcheck_stride_2_padding_1() {
        let layer = conv(2, 3, 3, 2, 1, 3);
        let x = init::normal((2, 2, 5, 6), 1.0, &mut StdRng::seed_from_u64(4));
        gradcheck_both(&layer, x, 5);
    }

    #[test]
    fn conv_gradcheck_without_bias_non_square_kernel() {
        let mut rng = StdRng::seed_from_u64(6);
        let layer = Conv2d::new(init::normal((3, 2, 2, 3), 0.5, &mut rng), None, 2, 0);
        let x = init::normal((1, 2, 5, 7), 1.0, &mut rng);
        gradcheck_both(&layer, x, 7);
    }

    #[test]
    fn backward_accumulates() {
        let layer = conv(2, 2, 3, 1, 1, 8);
        let x: Array4<f32> = init::normal((1, 2, 4, 4), 1.0, &mut StdRng::seed_from_u64(9));
        let (out, cache) = layer.forward(&x);
        let dout = Array4::ones(out.dim());
        let mut once = layer.zeros_like();
        layer.backward(&dout, &cache, &mut once);
        let mut twice = layer.zeros_like();
        layer.backward(&dout, &cache, &mut twice);
        layer.backward_direct(&dout, &cache, &mut twice);
        assert_allclose("dweight", &twice.weight, &(&once.weight * 2.0), 1e-5, 1e-5);
        assert_allclose(
            "dbias",
            twice.bias.as_ref().unwrap(),
            &(once.bias.as_ref().unwrap() * 2.0),
            1e-5,
            1e-5,
        );
    }

    #[test]
    fn input_gradient_is_a_convolution_with_flipped_kernels() {
        for (kernel, padding) in [(3, 1), (3, 0), (5, 2), (2, 1)] {
            let layer = conv(3, 4, kernel, 1, padding, kernel as u64);
            let x: Array4<f32> = init::normal((2, 3, 6, 5), 1.0, &mut StdRng::seed_from_u64(10));
            let (out, cache) = layer.forward(&x);
            let dout: Array4<f32> = init::normal(out.dim(), 1.0, &mut StdRng::seed_from_u64(11));
            let dx = layer.backward(&dout, &cache, &mut layer.zeros_like());
            let transposed = Conv2d::new(flip_kernel(&layer.weight), None, 1, kernel - 1 - padding);
            let (dx_by_conv, _) = transposed.forward(&dout);
            assert_allclose("dx", &dx_by_conv, &dx, 1e-5, 1e-5);
        }
    }

    #[test]
    #[should_panic(expected = "conv2d: x is (1, 2, 4, 4), weight is (3, 3, 3, 3)")]
    fn wrong_channels_name_both_shapes() {
        let _ = conv(3, 3, 3, 1, 1, 0).forward(&Array4::zeros((1, 2, 4, 4)));
    }

    #[test]
    #[should_panic(expected = "kernel ≤ input + 2·padding")]
    fn image_smaller_than_kernel_panics() {
        let _ = conv(1, 1, 5, 1, 0, 0).forward(&Array4::zeros((1, 1, 3, 3)));
    }

    #[test]
    #[should_panic(expected = "conv2d backward: dout is (1, 1, 3, 3)")]
    fn wrong_dout_names_shapes() {
        let layer = conv(1, 1, 3, 1, 1, 0);
        let (_, cache) = layer.forward(&Array4::zeros((1, 1, 4, 4)));
        let _ = layer.backward(
            &Array4::zeros((1, 1, 3, 3)),
            &cache,
            &mut layer.zeros_like(),
        );
    }

    /// The output size a brute-force count of windows gives.
    fn windows(input: usize, kernel: usize, stride: usize, padding: usize) -> usize {
        (0..)
            .map(|n| n * stride)
            .take_while(|start| start + kernel <= input + 2 * padding)
            .count()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn output_size_counts_windows(
            input in 1usize..40, kernel in 1usize..8, stride in 1usize..5, padding in 0usize..4
        ) {
            prop_assume!(kernel <= input + 2 * padding);
            let size = conv_output_size(input, kernel, stride, padding);
            prop_assert_eq!(size, windows(input, kernel, stride, padding));
            // and the layer really produces it
            let layer = Conv2d::new(Array4::ones((1, 1, kernel, kernel)), None, stride, padding);
            let (out, _) = layer.forward(&Array4::zeros((1, 1, input, input)));
            prop_assert_eq!(out.dim(), (1, 1, size, size));
        }

        #[test]
        fn im2col_equals_direct(
            batch in 1usize..3, c_in in 1usize..4, c_out in 1usize..4,
            height in 1usize..9, width in 1usize..9,
            kernel in 1usize..5, stride in 1usize..4, padding in 0usize..3, seed in 0u64..1000
        ) {
            prop_assume!(kernel <= height + 2 * padding && kernel <= width + 2 * padding);
            let layer = conv(c_in, c_out, kernel, stride, padding, seed);
            let mut rng = StdRng::seed_from_u64(seed + 1);
            let x: Array4<f32> = init::normal((batch, c_in, height, width), 1.0, &mut rng);
            let (fast, cache) = layer.forward(&x);
            let (slow, _) = layer.forward_direct(&x);
            assert_allclose("out", &fast, &slow, 1e-5, 1e-5);

            let dout: Array4<f32> = init::normal(fast.dim(), 1.0, &mut rng);
            let (mut g_fast, mut g_slow) = (layer.zeros_like(), layer.zeros_like());
            let dx_fast = layer.backward(&dout, &cache, &mut g_fast);
            let dx_slow = layer.backward_direct(&dout, &cache, &mut g_slow);
            assert_allclose("dx", &dx_fast, &dx_slow, 1e-5, 1e-5);
            assert_allclose("dweight", &g_fast.weight, &g_slow.weight, 1e-4, 1e-4);
            assert_allclose("dbias", g_fast.bias.as_ref().unwrap(), g_slow.bias.as_ref().unwrap(), 1e-4, 1e-4);
        }
    }
}
