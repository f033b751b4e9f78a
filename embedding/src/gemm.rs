//! The matrix product every layer runs on: `C = α·A·B + β·C`.
//!
//! [`gemm`] has the meaning of ndarray's `general_mat_mul` and takes the same
//! arguments (any strides: a transposed view costs nothing). On an x86-64 CPU
//! with AVX-512 it runs the kernel of this file; elsewhere it calls ndarray,
//! whose `matrixmultiply` backend has kernels for AVX2, SSE2 and NEON.
//!
//! ## Why a kernel of our own
//! A layer of the tiny model multiplies a tall activation matrix (`B·T` rows,
//! thousands) by a small weight matrix (64 to 256 on a side). `matrixmultiply`
//! picks the widest kernel it has at run time, but its widest is AVX2: eight
//! `f32` lanes per register. AVX-512 has sixteen lanes and thirty-two
//! registers, so one instruction does twice the work, and twice as many
//! partial sums can stay in registers.
//!
//! ## How it works (the classic Goto/BLIS structure, cut down)
//! - The kernel reads 32 consecutive numbers of a row of `B` per step of `k`
//!   (two vector loads). A row-major `B` of at most 1024 columns is read
//!   where it is; any other `B` (the transposed weight `Wᵀ` of `x Wᵀ`, or a
//!   wide one) is first copied, one block of `KC` rows at a time, into
//!   *panels* of [`NR`] = 32 columns.
//! - `A` is read where it is, [`MR`] = 12 numbers (one per row) per step of `k`,
//!   whatever its strides (a transposed `doutᵀ` as much as a row-major `x`):
//!   each is broadcast to all 16 lanes of a register.
//! - The *micro-kernel* keeps a `12 × 32` block of `C` in twenty-four 16-lane
//!   registers (or, for a block only 16 columns wide, in twelve) and, for each
//!   `k`, broadcasts the twelve numbers of `A` and adds
//!   `a_i · b_row` into each row with a fused multiply-add: `12·32` products
//!   from two loads of `B`.
//! - The block of `C` is written back once per `KC` block: `α·acc + β·C` on the
//!   first, `α·acc + C` after it.
//!
//! With this kernel every element of `C` is a sum over `k` in a fixed order
//! that depends on neither the other rows nor the thread count, so results
//! are reproducible bit for bit, and a row of a batch comes out the same as
//! that row alone.

use ndarray::linalg::general_mat_mul;
use ndarray::{Array2, ArrayRef2, ArrayView2};

/// Rows of `C` the micro-kernel computes at once.
pub const MR: usize = 12;
/// Columns of `C` the micro-kernel computes at once (two 16-lane registers).
pub const NR: usize = 32;
/// Depth of one block of `k`: a `B` panel of `KC` rows (32 KiB) and the
/// `KC·MR` numbers of `A` the kernel reads with it fit the L1 cache together.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))] // used by the AVX-512 path only
const KC: usize = 256;
/// The longest row stride (in numbers) at which `B` is read in place.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
const MAX_IN_PLACE_STRIDE: usize = 1024;

// ANCHOR: gemm
/// `C = α·A·B + β·C`, as ndarray's `general_mat_mul` (and the same result up
/// to rounding). With `β = 0`, `C`'s old values are not read (a NaN there
/// does not leak through).
///
/// # Shapes
/// - `a: [M, K]`, `b: [K, N]`, `c: [M, N]`
///
/// # Panics
/// If the shapes do not agree.
#[track_caller]
pub fn gemm(alpha: f32, a: &ArrayRef2<f32>, b: &ArrayRef2<f32>, beta: f32, c: &mut ArrayRef2<f32>) {
    let ((m, k), (k2, n)) = (a.dim(), b.dim());
    assert!(
        k == k2 && c.dim() == (m, n),
        "gemm: a is {:?}, b is {:?}, c is {:?}",
        a.dim(),
        b.dim(),
        c.dim()
    );
    #[cfg(target_arch = "x86_64")]
    if k > 0 && c.strides()[1] == 1 && crate::simd::has_avx512() {
        let c_rs = c.strides()[0];
        // SAFETY: the CPU has AVX-512F; c is [m, n] with unit column stride
        unsafe { avx512::gemm(alpha, &a.view(), &b.view(), beta, c.as_mut_ptr(), c_rs) };
        return;
    }
    general_mat_mul(alpha, a, b, beta, c);
}
// ANCHOR_END: gemm

/// `A·B` into a new array, with [`gemm`].
///
/// # Shapes
/// - `a: [M, K]`, `b: [K, N]` → `[M, N]`
///
/// # Panics
/// If the inner dimensions differ.
#[track_caller]
pub fn matmul(a: &ArrayRef2<f32>, b: &ArrayRef2<f32>) -> Array2<f32> {
    let ((m, k), (k2, n)) = (a.dim(), b.dim());
    assert_eq!(k, k2, "matmul: a is {:?}, b is {:?}", a.dim(), b.dim());
    #[cfg(target_arch = "x86_64")]
    if k > 0 && crate::simd::has_avx512() {
        // the kernel writes every element with β = 0 and reads none, so the
        // output need not be zeroed first (on these sizes the zeroing costs
        // as much as a tenth of the product)
        let mut out = Vec::with_capacity(m * n);
        // SAFETY: the CPU has AVX-512F; out has room for [m, n] row-major
        unsafe {
            avx512::gemm(1.0, &a.view(), &b.view(), 0.0, out.as_mut_ptr(), n as isize);
            out.set_len(m * n); // every element written
        }
        return Array2::from_shape_vec((m, n), out).unwrap(); // m·n elements by construction
    }
    let mut c = Array2::zeros((m, n));
    general_mat_mul(1.0, a, b, 0.0, &mut c);
    c
}

/// Copies rows `k0..k0 + kc` of `b` into panels of [`NR`] columns:
/// `packed[p][kk][j] = b[k0 + kk, p·NR + j]`, zeros past the last column.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
fn pack_b(b: &ArrayView2<f32>, k0: usize, kc: usize, packed: &mut Vec<f32>) {
    let n = b.ncols();
    let (rs, cs) = (b.strides()[0], b.strides()[1]);
    packed.clear();
    packed.reserve(n.div_ceil(NR) * kc * NR);
    for j0 in (0..n).step_by(NR) {
        let width = NR.min(n - j0);
        for kk in k0..k0 + kc {
            // SAFETY: row kk < K and columns j0..j0 + width ≤ n are inside b
            let first = unsafe { b.as_ptr().offset(kk as isize * rs + j0 as isize * cs) };
            if cs == 1 {
                // SAFETY: as above; a row of b with unit stride is contiguous
                packed.extend_from_slice(unsafe { std::slice::from_raw_parts(first, width) });
            } else {
                // SAFETY: as above
                packed.extend((0..width).map(|j| unsafe { *first.offset(j as isize * cs) }));
            }
            packed.extend(std::iter::repeat_n(0.0, NR - width));
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{KC, MAX_IN_PLACE_STRIDE, MR, NR, pack_b};
    use ndarray::ArrayView2;
    use std::arch::x86_64::*;

    /// [`super::gemm`] on a CPU with AVX-512F, for `k ≥ 1`, into `c`: element
    /// `(i, j)` of the `[M, N]` result at `c + i·c_rs + j`. With `β = 0` the
    /// old values are never read (`c` may be uninitialised).
    ///
    /// # Safety
    /// `c` must point to such an `[M, N]` block.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn gemm(
        alpha: f32,
        a: &ArrayView2<f32>,
        b: &ArrayView2<f32>,
        beta: f32,
        c: *mut f32,
        c_rs: isize,
    ) {
        let ((m, k), n) = (a.dim(), b.ncols());
        let (a_rs, a_cs) = (a.strides()[0], a.strides()[1]);
        // B's rows are read in place when they are contiguous and not too far
        // apart, else packed: the KC rows of a block of a wide B (a 64×64
        // image's 4096 positions in a convolution) lie on KC different pages,
        // and reading them in place costs more in address translation than
        // the copy does
        let (b_rs, b_cs) = (b.strides()[0], b.strides()[1]);
        let in_place = b_cs == 1 && b_rs.unsigned_abs() <= MAX_IN_PLACE_STRIDE;
        let mut packed_b = Vec::new();
        for k0 in (0..k).step_by(KC) {
            let kc = KC.min(k - k0);
            if !in_place {
                pack_b(b, k0, kc, &mut packed_b);
            }
            // the first block of k scales the old C by β, the later ones add to it
            let beta_here = if k0 == 0 { beta } else { 1.0 };
            for i0 in (0..m).step_by(MR) {
                let rows = MR.min(m - i0);
                for j0 in (0..n).step_by(NR) {
                    // SAFETY: rows i0..i0 + rows ≤ m and columns k0..k0 + kc ≤ k of a,
                    // rows k0..k0 + kc and columns j0..j0 + cols ≤ n of b (or its
                    // packed copy), rows i0.. and columns j0..j0 + cols of c (the
                    // caller's block)
                    unsafe {
                        let (b_ptr, b_row_stride) = if in_place {
                            (b.as_ptr().offset(k0 as isize * b_rs + j0 as isize), b_rs)
                        } else {
                            (packed_b.as_ptr().add((j0 / NR) * kc * NR), NR as isize)
                        };
                        let tile = Tile {
                            a: a.as_ptr().offset(i0 as isize * a_rs + k0 as isize * a_cs),
                            a_rs,
                            a_cs,
                            b: b_ptr,
                            b_rs: b_row_stride,
                            kc,
                            c: c.offset(i0 as isize * c_rs + j0 as isize),
                            c_rs,
                            cols: NR.min(n - j0),
                        };
                        match rows {
                            12 => block::<12>(&tile, alpha, beta_here),
                            11 => block::<11>(&tile, alpha, beta_here),
                            10 => block::<10>(&tile, alpha, beta_here),
                            9 => block::<9>(&tile, alpha, beta_here),
                            8 => block::<8>(&tile, alpha, beta_here),
                            7 => block::<7>(&tile, alpha, beta_here),
                            6 => block::<6>(&tile, alpha, beta_here),
                            5 => block::<5>(&tile, alpha, beta_here),
                            4 => block::<4>(&tile, alpha, beta_here),
                            3 => block::<3>(&tile, alpha, beta_here),
                            2 => block::<2>(&tile, alpha, beta_here),
                            _ => block::<1>(&tile, alpha, beta_here),
                        }
                    }
                }
            }
        }
    }

    /// One call of the micro-kernel: where its `A` rows, `B` panel and `C` block are.
    struct Tile {
        a: *const f32, // A[i0, k0]; element (i, kk) at a + i·a_rs + kk·a_cs
        a_rs: isize,
        a_cs: isize,
        b: *const f32, // B[k0, j0]; row kk at b + kk·b_rs, `cols` numbers used
        b_rs: isize,
        kc: usize,
        c: *mut f32, // C[i0, j0]; element (i, j) at c + i·c_rs + j
        c_rs: isize,
        cols: usize, // valid columns of the block, ≤ NR
    }

    /// [`kernel`] for a block of 32 columns (two registers per row, plain
    /// loads of `B`), of 16 (one register), or fewer (masked loads). The
    /// narrow ones matter for attention, whose head dimension is 16: a
    /// 32-column block there would multiply zeros half the time.
    ///
    /// # Safety
    /// As [`kernel`].
    #[target_feature(enable = "avx512f")]
    unsafe fn block<const ROWS: usize>(t: &Tile, alpha: f32, beta: f32) {
        // SAFETY: the caller's
        unsafe {
            match t.cols {
                NR => kernel::<ROWS, 2, true>(t, alpha, beta),
                16 => kernel::<ROWS, 1, true>(t, alpha, beta),
                cols if cols < 16 => kernel::<ROWS, 1, false>(t, alpha, beta),
                _ => kernel::<ROWS, 2, false>(t, alpha, beta),
            }
        }
    }

    // ANCHOR: kernel
    /// `C[i, j] = α·Σ_kk A[i, kk]·B[kk, j] + β·C[i, j]` for a block of `ROWS`
    /// rows and `REGS` registers of 16 columns (all of them used if `FULL`):
    /// `ROWS·REGS` registers of 16 sums stay in place while `kk` runs.
    ///
    /// # Safety
    /// The tile's pointers must cover `ROWS` rows of `A` and `C` and `kc` rows
    /// of `B`, each as described in [`Tile`].
    #[target_feature(enable = "avx512f")]
    unsafe fn kernel<const ROWS: usize, const REGS: usize, const FULL: bool>(
        t: &Tile,
        alpha: f32,
        beta: f32,
    ) {
        // lane masks: a block past the last column neither reads B nor writes C
        let masks: [__mmask16; REGS] = std::array::from_fn(|r| {
            let valid = t.cols.saturating_sub(16 * r).min(16);
            ((1u32 << valid) - 1) as __mmask16
        });
        let mut acc = [[_mm512_setzero_ps(); REGS]; ROWS];
        for kk in 0..t.kc {
            unsafe {
                let b_row = t.b.offset(kk as isize * t.b_rs);
                let b: [__m512; REGS] = std::array::from_fn(|r| {
                    if FULL {
                        _mm512_loadu_ps(b_row.add(16 * r))
                    } else {
                        _mm512_maskz_loadu_ps(masks[r], b_row.add(16 * r))
                    }
                });
                let a_col = t.a.offset(kk as isize * t.a_cs);
                for (i, acc) in acc.iter_mut().enumerate() {
                    let ai = _mm512_set1_ps(*a_col.offset(i as isize * t.a_rs));
                    for (acc, &b) in acc.iter_mut().zip(&b) {
                        *acc = _mm512_fmadd_ps(ai, b, *acc);
                    }
                }
            }
        }
        let read_old = beta != 0.0;
        let (alpha, beta) = (_mm512_set1_ps(alpha), _mm512_set1_ps(beta));
        for (i, acc) in acc.iter().enumerate() {
            for (r, (&sums, &mask)) in acc.iter().zip(&masks).enumerate() {
                if mask == 0 {
                    continue;
                }
                unsafe {
                    let c = t.c.offset(i as isize * t.c_rs).add(16 * r);
                    let mut out = _mm512_mul_ps(alpha, sums);
                    if read_old {
                        let old = _mm512_maskz_loadu_ps(mask, c);
                        out = _mm512_fmadd_ps(beta, old, out);
                    }
                    _mm512_mask_storeu_ps(c, mask, out);
                }
            }
        }
    }
    // ANCHOR_END: kernel
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::init;
    use ndarray::{Array2, s};
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    /// `α·A·B + β·C` in f64, the plain triple loop.
    fn reference(
        alpha: f32,
        a: &Array2<f32>,
        b: &ArrayView2<f32>,
        beta: f32,
        c: &Array2<f32>,
    ) -> Array2<f32> {
        Array2::from_shape_fn(c.dim(), |(i, j)| {
            let dot: f64 = (0..a.ncols())
                .map(|k| a[[i, k]] as f64 * b[[k, j]] as f64)
                .sum();
            (alpha as f64 * dot + beta as f64 * c[[i, j]] as f64) as f32
        })
    }

    #[test]
    fn agrees_with_the_triple_loop_on_ragged_shapes_and_strides() {
        let mut rng = StdRng::seed_from_u64(0);
        for &(m, k, n) in &[
            (1, 1, 1),
            (7, 5, 3),
            (9, 33, 31),
            (17, 300, 65),
            (64, 64, 192),
            (3, 600, 40),
            (13, 20, 1100), // wider than MAX_IN_PLACE_STRIDE: packed either way
            (20, 30, 16),   // one register of columns
            (5, 7, 48),     // two, then one
        ] {
            let a: Array2<f32> = init::normal((m, k), 1.0, &mut rng);
            let b_t: Array2<f32> = init::normal((n, k), 1.0, &mut rng); // read as b_tᵀ: packed
            let b = b_t.t().to_owned(); // row-major: read in place (if not too wide)
            let c0: Array2<f32> = init::normal((m, n), 1.0, &mut rng);
            for (alpha, beta) in [(1.0, 0.0), (0.5, 1.0), (2.0, -0.5)] {
                let want = reference(alpha, &a, &b.view(), beta, &c0);
                let a_t = a.t().to_owned();
                for (name, a) in [("A", a.view()), ("Aᵀ", a_t.t())] {
                    for (bname, b) in [("B", b.view()), ("Bᵀ", b_t.t())] {
                        let mut got = c0.clone();
                        gemm(alpha, &a, &b, beta, &mut got);
                        let label = format!("{m}x{k}x{n} {name} {bname} α {alpha} β {beta}");
                        crate::testing::assert_allclose(&label, &got, &want, 1e-5, 1e-4);
                    }
                }
            }
        }
    }

    #[test]
    fn beta_zero_ignores_nan_in_c_and_rows_do_not_depend_on_the_batch() {
        let mut rng = StdRng::seed_from_u64(1);
        let a: Array2<f32> = init::normal((37, 70), 1.0, &mut rng);
        let b: Array2<f32> = init::normal((70, 50), 1.0, &mut rng);
        let mut c = Array2::from_elem((37, 50), f32::NAN);
        gemm(1.0, &a, &b, 0.0, &mut c);
        assert!(c.iter().all(|x| x.is_finite()));
        for rows in [0..1, 5..13, 30..37] {
            let part = matmul(&a.slice(s![rows.clone(), ..]), &b);
            if crate::simd::has_avx512() {
                assert_eq!(part, c.slice(s![rows, ..])); // our kernel: bit for bit
            } else {
                crate::testing::assert_allclose("rows", &part, &c.slice(s![rows, ..]), 1e-6, 1e-6);
            }
        }
    }
}
