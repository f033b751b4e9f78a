//! GELU and the transformer MLP: `Linear → GELU → Linear`.
//!
//! GELU is the *exact* one, PyTorch's default `nn.GELU()` (`approximate='none'`):
//!
//! - forward: `gelu(x) = x·Φ(x) = ½x(1 + erf(x/√2))`;
//! - backward: `gelu'(x) = Φ(x) + x·φ(x)`, with `φ(x) = exp(−x²/2)/√(2π)`.
//!
//! Rust's standard library has no `erf`, so [`erf`] is written here
//! (Abramowitz & Stegun 7.1.26: absolute error below `1.5·10⁻⁷` for the
//! formula, `5·10⁻⁷` once evaluated in f32; the golden test checks GELU and
//! its gradient against PyTorch). The MLP widens each token's vector to `hidden`
//! (usually `4C`), applies GELU, and projects back to `C`.
//! Reference: Hendrycks & Gimpel 2016; <https://pytorch.org/docs/stable/generated/torch.nn.GELU.html>

use embedding::{Layer, Linear, LinearCache, LinearConfig, Params, prefixed};
use ndarray::{Array3, ArrayRef3, ArrayViewD, ArrayViewMutD};
use rand::Rng;
use std::mem::MaybeUninit;

// ANCHOR: erf
/// The error function `erf(x) = 2/√π ∫₀ˣ exp(−t²) dt` (Abramowitz & Stegun
/// 7.1.26): the formula is good to `1.5·10⁻⁷`; with f32 rounding, to `5·10⁻⁷`.
pub fn erf(x: f32) -> f32 {
    const P: f32 = 0.327_591_1;
    const A: [f32; 5] = [
        0.254_829_6,
        -0.284_496_74,
        1.421_413_7,
        -1.453_152_1,
        1.061_405_4,
    ];
    let sign = x.signum();
    let x = x.abs();
    let t = 1.0 / (1.0 + P * x);
    let poly = t * (A[0] + t * (A[1] + t * (A[2] + t * (A[3] + t * A[4])))); // Horner
    sign * (1.0 - poly * (-x * x).exp())
}
// ANCHOR_END: erf

// ANCHOR: gelu
/// Exact GELU, `x·Φ(x)` with `Φ(x) = ½(1 + erf(x/√2))`.
pub fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// `d gelu(x) / dx = Φ(x) + x·φ(x)`, with `φ(x) = exp(−x²/2)/√(2π)`.
pub fn gelu_grad(x: f32) -> f32 {
    const INV_SQRT_2PI: f32 = 0.398_942_3; // 1/√(2π)
    let cdf = 0.5 * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2)); // Φ(x)
    let pdf = (-0.5 * x * x).exp() * INV_SQRT_2PI; // φ(x)
    cdf + x * pdf
}
// ANCHOR_END: gelu

// The fast paths below compute the same formulas as [`erf`], [`gelu`] and
// [`gelu_grad`] (the references, which the tests compare them against), with
// two changes that only move f32 rounding: `exp` is evaluated by
// [`exp_branch_free`] (libm's `expf` is an opaque call per element, so the
// element-wise loops cannot vectorise and the exponential dominates the MLP's
// non-matmul time), and `gelu'` evaluates its one exponential once, since
// `erf(x/√2)` needs `exp(−(x/√2)²)` and `φ(x)` needs `exp(−x²/2)`: the same number.
// Each comes in two builds ([`madd`]): with `FMA`, every `a·b + c` is one
// fused multiply-add, for the loops compiled for AVX-512.

/// `a·b + c`. With `FMA`, one fused multiply-add (rounded once): a single
/// instruction where the caller is compiled for a CPU that has it, but a slow
/// library call anywhere else, so only the AVX-512 loops use it.
#[inline(always)]
fn madd<const FMA: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FMA { a.mul_add(b, c) } else { a * b + c }
}

/// `exp(x)` without branches or calls, so that loops over it vectorise.
///
/// Cody–Waite range reduction `x = k·ln 2 + r` with `|r| ≤ ln 2 / 2`, the
/// Cephes degree-6 polynomial for `eʳ`, and `2ᵏ` written straight into the
/// exponent bits. Within 2 ulp of `f32::exp` on `[−87, 88]`; arguments are
/// clamped to that range (below it `eˣ < 2·10⁻³⁸`, which no caller here can tell from 0).
#[inline(always)]
fn exp_branch_free<const FMA: bool>(x: f32) -> f32 {
    const LN2_HI: f32 = 0.693_359_4; // ln 2 split in two, so k·LN2_HI is exact
    const LN2_LO: f32 = -2.121_944_4e-4;
    const ROUND: f32 = 12_582_912.0; // 1.5·2²³: adding and subtracting it rounds to an integer
    let x = x.clamp(-87.0, 88.0);
    let shifted = madd::<FMA>(x, std::f32::consts::LOG2_E, ROUND); // ROUND + k: k sits in the low mantissa bits
    let k = shifted - ROUND; // nearest integer to x / ln 2
    let r = madd::<FMA>(-k, LN2_LO, madd::<FMA>(-k, LN2_HI, x)); // x − k·ln 2, |r| ≤ ln 2 / 2
    let p = 1.987_569_1e-4;
    let p = madd::<FMA>(p, r, 1.398_2e-3);
    let p = madd::<FMA>(p, r, 8.333_452e-3);
    let p = madd::<FMA>(p, r, 4.166_579_6e-2);
    let p = madd::<FMA>(p, r, 1.666_666_5e-1);
    let p = madd::<FMA>(p, r, 0.5); // Cephes' 5.0000001e-1, which rounds to 0.5 in f32
    let er = madd::<FMA>(p * r, r, r) + 1.0; // eʳ = p·r² + r + 1
    // 2ᵏ, k ∈ [−126, 127], from the bits of `shifted` (ROUND + k is exact, one ulp per unit):
    // integer operations on every lane, where `k as i32` is a scalar saturating conversion
    let k_bits = shifted.to_bits().wrapping_sub(ROUND.to_bits()); // k as a two's-complement u32
    let two_k = f32::from_bits(k_bits.wrapping_add(127) << 23);
    er * two_k
}

/// [`erf`] at `z = x/√2` from `e = exp(−z²)`, computed by the caller.
#[inline(always)]
fn erf_from_exp<const FMA: bool>(z: f32, e: f32) -> f32 {
    const P: f32 = 0.327_591_1; // the constants of [`erf`]
    const A: [f32; 5] = [
        0.254_829_6,
        -0.284_496_74,
        1.421_413_7,
        -1.453_152_1,
        1.061_405_4,
    ];
    let t = 1.0 / madd::<FMA>(P, z.abs(), 1.0);
    let poly = madd::<FMA>(t, A[4], A[3]); // Horner
    let poly = madd::<FMA>(t, poly, A[2]);
    let poly = madd::<FMA>(t, poly, A[1]);
    let poly = t * madd::<FMA>(t, poly, A[0]);
    z.signum() * madd::<FMA>(-poly, e, 1.0)
}

/// [`gelu`] with [`exp_branch_free`], for [`gelu_forward`].
#[inline(always)]
fn gelu_fast<const FMA: bool>(x: f32) -> f32 {
    let z = x * std::f32::consts::FRAC_1_SQRT_2; // x/√2
    0.5 * x * (1.0 + erf_from_exp::<FMA>(z, exp_branch_free::<FMA>(-z * z)))
}

/// [`gelu_grad`] with one [`exp_branch_free`] instead of two `exp`s, for [`gelu_backward`].
#[inline(always)]
fn gelu_grad_fast<const FMA: bool>(x: f32) -> f32 {
    const INV_SQRT_2PI: f32 = 0.398_942_3; // 1/√(2π)
    let z = x * std::f32::consts::FRAC_1_SQRT_2; // x/√2
    let e = exp_branch_free::<FMA>(-z * z); // = exp(−x²/2), shared by erf and φ
    let cdf = 0.5 * (1.0 + erf_from_exp::<FMA>(z, e)); // Φ(x)
    let pdf = e * INV_SQRT_2PI; // φ(x)
    madd::<FMA>(x, pdf, cdf) // Φ(x) + x·φ(x)
}

/// GELU applied element-wise, as a parameter-free [`Layer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Gelu;

/// What [`Gelu`]'s backward pass needs: its input.
#[derive(Debug, Clone)]
pub struct GeluCache {
    x: Array3<f32>, // [B, T, C]
}

/// `f` of every element of `xs`, in a loop the compiler vectorises as wide
/// as the CPU allows (see [`embedding::simd`]); `fused` is the same function
/// with fused multiply-adds, for the AVX-512 build.
#[inline(always)]
fn map_widest<F: Fn(f32) -> f32, G: Fn(f32) -> f32>(xs: &[f32], f: F, fused: G) -> Vec<f32> {
    zip_map_widest(xs, xs, |x, _| f(x), |x, _| fused(x))
}

/// `f(a, b)` of every pair of elements, as [`map_widest`].
#[inline(always)]
fn zip_map_widest<F: Fn(f32, f32) -> f32, G: Fn(f32, f32) -> f32>(
    a: &[f32],
    b: &[f32],
    f: F,
    fused: G,
) -> Vec<f32> {
    #[inline(always)]
    fn run<F: Fn(f32, f32) -> f32>(out: &mut [MaybeUninit<f32>], a: &[f32], b: &[f32], f: &F) {
        for ((o, &a), &b) in out.iter_mut().zip(a).zip(b) {
            o.write(f(a, b));
        }
    }
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,fma")]
    fn run_avx512<F: Fn(f32, f32) -> f32>(
        out: &mut [MaybeUninit<f32>],
        a: &[f32],
        b: &[f32],
        f: &F,
    ) {
        run(out, a, b, f);
    }

    let n = a.len().min(b.len());
    let mut out = Vec::with_capacity(n);
    let spare = &mut out.spare_capacity_mut()[..n];
    #[cfg(target_arch = "x86_64")]
    if embedding::simd::has_avx512() {
        // SAFETY: the CPU has AVX-512F, and with it FMA
        unsafe { run_avx512(spare, a, b, &fused) };
    } else {
        run(spare, a, b, &f);
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = fused;
        run(spare, a, b, &f);
    }
    // SAFETY: the loop wrote all n elements (the shorter of a and b)
    unsafe { out.set_len(n) };
    out
}

/// GELU of every element.
///
/// # Shapes
/// - `x: [B, T, C]` → `out: [B, T, C]`
pub fn gelu_forward(x: &ArrayRef3<f32>) -> Array3<f32> {
    // one flat loop over a slice, which the compiler vectorises; the model
    // already runs slices of the batch on separate threads, so threads here
    // would only add overhead
    let x = x.as_standard_layout(); // a view when already row-major
    let out = map_widest(x.as_slice().unwrap(), gelu_fast::<false>, gelu_fast::<true>);
    Array3::from_shape_vec(x.dim(), out).unwrap()
}

/// Backward of [`gelu_forward`] from its input `x`: `dx = dout ⊙ gelu'(x)`.
///
/// # Shapes
/// - `dout, x: [B, T, C]` → `dx: [B, T, C]`
///
/// # Panics
/// If the shapes differ.
#[track_caller]
pub fn gelu_backward(dout: &ArrayRef3<f32>, x: &ArrayRef3<f32>) -> Array3<f32> {
    assert_eq!(
        dout.dim(),
        x.dim(),
        "gelu backward: dout is {:?}, x is {:?}",
        dout.dim(),
        x.dim()
    );
    // in the forward pass this was:
    //   out = gelu(x)
    // so now we have:
    let (dout, x) = (dout.as_standard_layout(), x.as_standard_layout());
    let (ds, xs) = (dout.as_slice().unwrap(), x.as_slice().unwrap());
    let dx = zip_map_widest(
        ds,
        xs,
        |d, x| d * gelu_grad_fast::<false>(x),
        |d, x| d * gelu_grad_fast::<true>(x),
    );
    Array3::from_shape_vec(x.dim(), dx).unwrap()
}

impl Layer for Gelu {
    type Cache = GeluCache;

    /// # Shapes
    /// - `x: [B, T, C]` → `out: [B, T, C]`
    fn forward(&self, x: &ArrayRef3<f32>) -> (Array3<f32>, GeluCache) {
        (gelu_forward(x), GeluCache { x: x.to_owned() })
    }

    /// # Shapes
    /// - `dout: [B, T, C]` → `dx: [B, T, C]`
    #[track_caller]
    fn backward(&self, dout: &ArrayRef3<f32>, cache: &GeluCache, _: &mut Gelu) -> Array3<f32> {
        gelu_backward(dout, &cache.x)
    }
}

impl Params for Gelu {
    fn params(&self) -> Vec<(String, ArrayViewD<'_, f32>)> {
        Vec::new()
    }
    fn params_mut(&mut self) -> Vec<(String, ArrayViewMutD<'_, f32>)> {
        Vec::new()
    }
}

// ANCHOR: mlp_struct
/// The transformer MLP: `proj(gelu(fc(x)))`.
#[derive(Debug, Clone, PartialEq)]
pub struct Mlp {
    /// `c_fc`: `[hidden, C]`
    pub fc: Linear,
    /// `c_proj`: `[C, hidden]`
    pub proj: Linear,
}

/// What [`Mlp`]'s backward pass needs: the two Linear caches and GELU's input.
#[derive(Debug, Clone)]
pub struct MlpCache {
    fc: LinearCache,   // x: [B*T, C]
    h: Array3<f32>,    // GELU's input h = fc(x): [B, T, hidden], moved here, not copied
    proj: LinearCache, // gelu(h): [B*T, hidden]
}
// ANCHOR_END: mlp_struct

/// The sizes of a fresh [`Mlp`].
#[derive(Debug, Clone, PartialEq)]
pub struct MlpConfig {
    /// Width `C` of the token vectors.
    pub width: usize,
    /// Hidden width, usually `4C` (GPT-2, ViT).
    pub hidden: usize,
}

impl MlpConfig {
    /// PyTorch's default Linear initialisation for both layers.
    pub fn init(&self, rng: &mut impl Rng) -> Mlp {
        let fc = LinearConfig {
            c_in: self.width,
            c_out: self.hidden,
            bias: true,
        }
        .init(rng);
        let proj = LinearConfig {
            c_in: self.hidden,
            c_out: self.width,
            bias: true,
        }
        .init(rng);
        Mlp { fc, proj }
    }
}

impl Layer for Mlp {
    type Cache = MlpCache;

    // ANCHOR: mlp_forward
    /// # Shapes
    /// - `x: [B, T, C]` → `out: [B, T, C]`, through `[B, T, hidden]`
    ///
    /// # Panics
    /// If `x`'s last axis is not `C`.
    #[track_caller]
    fn forward(&self, x: &ArrayRef3<f32>) -> (Array3<f32>, MlpCache) {
        let (h, fc) = self.fc.forward(x); // [B, T, hidden]
        let a = gelu_forward(&h); // [B, T, hidden]
        let (out, proj) = self.proj.forward(&a); // [B, T, C]
        (out, MlpCache { fc, h, proj })
    }
    // ANCHOR_END: mlp_forward

    // ANCHOR: mlp_backward
    /// # Shapes
    /// - `dout: [B, T, C]` → `dx: [B, T, C]`
    fn backward(&self, dout: &ArrayRef3<f32>, cache: &MlpCache, grads: &mut Mlp) -> Array3<f32> {
        let da = self.proj.backward(dout, &cache.proj, &mut grads.proj); // [B, T, hidden]
        let dh = gelu_backward(&da, &cache.h); // [B, T, hidden]
        self.fc.backward(&dh, &cache.fc, &mut grads.fc) // [B, T, C]
    }
    // ANCHOR_END: mlp_backward
}

impl Mlp {
    /// The input gradient alone, for a frozen MLP (no parameter gradients).
    ///
    /// # Shapes
    /// - `dout: [B, T, C]` → `dx: [B, T, C]`
    pub fn backward_input(&self, dout: &ArrayRef3<f32>, cache: &MlpCache) -> Array3<f32> {
        let da = self.proj.backward_input(dout); // [B, T, hidden]
        let dh = gelu_backward(&da, &cache.h); // [B, T, hidden]
        self.fc.backward_input(&dh) // [B, T, C]
    }
}

impl Params for Mlp {
    fn params(&self) -> Vec<(String, ArrayViewD<'_, f32>)> {
        let mut list: Vec<_> = prefixed("fc", self.fc.params()).collect();
        list.extend(prefixed("proj", self.proj.params()));
        list
    }

    fn params_mut(&mut self) -> Vec<(String, ArrayViewMutD<'_, f32>)> {
        let mut list: Vec<_> = prefixed("fc", self.fc.params_mut()).collect();
        list.extend(prefixed("proj", self.proj.params_mut()));
        list
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use embedding::init;
    use embedding::testing::gradcheck_layer;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn erf_known_values() {
        // erf(0) = 0, erf(0.5) = 0.5204998778, erf(1) = 0.8427007929, erf(2) = 0.9953222650
        let cases: [(f32, f64); 5] = [
            (0.0, 0.0),
            (0.5, 0.520_499_877_8),
            (1.0, 0.842_700_792_9),
            (2.0, 0.995_322_265_0),
            (-1.0, -0.842_700_792_9),
        ];
        for (x, want) in cases {
            assert!((erf(x) as f64 - want).abs() < 5e-7, "erf({x}) = {}", erf(x));
        }
    }

    #[test]
    fn gelu_known_values() {
        // gelu(1) = Φ(1) = 0.8413447, gelu(-1) = -(1 - Φ(1)) = -0.1586553
        assert!((gelu(1.0) - 0.841_344_7).abs() < 1e-6);
        assert!((gelu(-1.0) + 0.158_655_3).abs() < 1e-6);
        assert_eq!(gelu(0.0), 0.0);
    }

    #[test]
    fn exp_branch_free_is_within_two_ulp() {
        for i in -8700..8800 {
            let x = i as f32 * 0.01 + 0.003;
            let want = x.exp();
            let ulp = f32::EPSILON * want;
            for got in [exp_branch_free::<false>(x), exp_branch_free::<true>(x)] {
                assert!((want - got).abs() <= 2.0 * ulp, "exp({x}): {want} vs {got}");
            }
        }
        assert!(exp_branch_free::<false>(-1000.0) < 2e-38);
        assert!(exp_branch_free::<true>(-1000.0) < 2e-38);
    }

    #[test]
    fn fast_gelu_matches_the_reference() {
        for i in -2000..=2000 {
            let x = i as f32 * 0.01;
            let want = gelu(x);
            for got in [gelu_fast::<false>(x), gelu_fast::<true>(x)] {
                assert!(
                    (want - got).abs() <= 1e-6 * (1.0 + want.abs()),
                    "gelu({x}): {want} vs {got}"
                );
            }
            let want = gelu_grad(x);
            for got in [gelu_grad_fast::<false>(x), gelu_grad_fast::<true>(x)] {
                assert!((want - got).abs() <= 1e-6, "gelu'({x}): {want} vs {got}");
            }
        }
    }

    #[test]
    fn gelu_gradcheck() {
        let x = init::normal((2, 3, 4), 2.0, &mut StdRng::seed_from_u64(0));
        gradcheck_layer(&crate::gradcheck(), &Gelu, &x, 1).unwrap();
    }

    #[test]
    fn mlp_gradcheck() {
        let mut rng = StdRng::seed_from_u64(1);
        let mlp = MlpConfig {
            width: 4,
            hidden: 8,
        }
        .init(&mut rng);
        let names: Vec<String> = mlp.params().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["fc.weight", "fc.bias", "proj.weight", "proj.bias"]);
        let x = init::normal((2, 3, 4), 1.0, &mut rng);
        gradcheck_layer(&crate::gradcheck(), &mlp, &x, 2).unwrap();
    }
}
