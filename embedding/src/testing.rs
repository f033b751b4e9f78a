//! How we know a backward pass is right: tools every crate's tests share.
//!
//! - [`GradCheck`]: the finite-difference gradient checker. For every element
//!   `θ` of every tensor, it compares the analytic gradient with the central
//!   difference `(L(θ + h) − L(θ − h)) / 2h`, where `L = Σ out ⊙ dout`
//!   ([`fakeloss`], llm.c's trick: `dout` is random, so every output element
//!   matters). The loss is summed in f64, and an element passes when
//!   `|analytic − numeric| ≤ atol + rtol·|numeric|`.
//! - [`assert_allclose`]: compares two tensors and, on failure, prints the
//!   worst elements and the largest difference (llm.c's `check_tensor`).
//! - [`Golden`]: reads the reference values that `tools/golden/*.py` writes
//!   with PyTorch.
//!
//! This is a plain `pub mod`, not `#[cfg(test)]`, because the tests of the
//! other crates use it too.
//!
//! # Why these tolerances
//! The forward pass runs in f32, whose rounding error is about `1e-7` of each
//! value. A step `h = 1e-3` keeps the truncation error of the central
//! difference (`~h²`) and the rounding error (`~1e-7 / h`) both near `1e-4`,
//! so `atol = 1e-4, rtol = 1e-2` passes every correct layer and still catches
//! a dropped term or a wrong factor. Errors smaller than about 1% hide in f32
//! noise; the golden tests against PyTorch catch those.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use ndarray::{
    Array, Array3, ArrayD, ArrayRef, ArrayRef3, ArrayViewD, ArrayViewMutD, Dimension, IxDyn,
};
use rand::SeedableRng;
use rand::rngs::StdRng;

use crate::init;
use crate::layer::{Layer, Params};

/// `L = Σ out ⊙ dout`, summed in f64. Its gradient with respect to `out` is `dout`.
pub fn fakeloss<D: Dimension>(out: &ArrayRef<f32, D>, dout: &ArrayRef<f32, D>) -> f64 {
    assert_eq!(
        out.shape(),
        dout.shape(),
        "fakeloss: out is {:?}, dout is {:?}",
        out.shape(),
        dout.shape()
    );
    out.iter()
        .zip(dout.iter())
        .map(|(&o, &d)| o as f64 * d as f64)
        .sum()
}

// ANCHOR: gradcheck_struct
/// Settings of the finite-difference gradient check.
#[derive(Debug, Clone, PartialEq)]
pub struct GradCheck {
    /// Step `h` of the central difference.
    pub step: f32,
    /// Absolute tolerance `atol`.
    pub atol: f64,
    /// Relative tolerance `rtol`, a fraction of `|numeric|`.
    pub rtol: f64,
    /// Check at most this many elements of each tensor, evenly spread
    /// (large embedding tables); `usize::MAX` checks them all.
    pub max_per_tensor: usize,
}

impl Default for GradCheck {
    fn default() -> Self {
        GradCheck {
            step: 1e-3,
            atol: 1e-4,
            rtol: 1e-2,
            max_per_tensor: usize::MAX,
        }
    }
}
// ANCHOR_END: gradcheck_struct

/// One element where the analytic and numeric gradients disagree.
#[derive(Debug, Clone, PartialEq)]
pub struct Mismatch {
    /// The tensor's name, as [`Params`] lists it.
    pub name: String,
    /// The element's index in the tensor.
    pub index: Vec<usize>,
    /// The backward pass's value.
    pub analytic: f64,
    /// The central difference.
    pub numeric: f64,
}

/// What a gradient check found.
#[derive(Clone, PartialEq)]
pub struct GradCheckReport {
    /// Elements compared.
    pub checked: usize,
    /// The largest `|analytic − numeric|` seen.
    pub max_abs_diff: f64,
    /// Every element outside the tolerance.
    pub mismatches: Vec<Mismatch>,
}

impl GradCheckReport {
    /// `Ok(self)` when every element passed, `Err(self)` otherwise, so tests
    /// can `.unwrap()` and see the report.
    pub fn into_result(self) -> Result<GradCheckReport, GradCheckReport> {
        if self.mismatches.is_empty() {
            Ok(self)
        } else {
            Err(self)
        }
    }
}

impl fmt::Display for GradCheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "gradcheck: {} of {} elements outside tolerance, max |analytic - numeric| = {:.3e}",
            self.mismatches.len(),
            self.checked,
            self.max_abs_diff
        )?;
        for m in self.mismatches.iter().take(8) {
            write!(
                f,
                "\n  {}{:?}: analytic {:+.6e}, numeric {:+.6e}",
                m.name, m.index, m.analytic, m.numeric
            )?;
        }
        if self.mismatches.len() > 8 {
            write!(f, "\n  … and {} more", self.mismatches.len() - 8)?;
        }
        Ok(())
    }
}

// `unwrap()` prints Debug: make it the readable report.
impl fmt::Debug for GradCheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl GradCheck {
    // ANCHOR: gradcheck_run
    /// Compares `analytic` (a twin of `state` holding dL/dθ for every tensor)
    /// with central differences of `loss` at `state`.
    ///
    /// `state` is anything that lists its tensors through [`Params`]: a layer,
    /// or a layer together with its inputs ([`WithInputs`]). Every tensor is
    /// perturbed in place one element at a time and restored afterwards.
    ///
    /// # Panics
    /// If `state` and `analytic` do not list the same names and shapes.
    pub fn run<S: Params>(
        &self,
        state: &mut S,
        analytic: &S,
        loss: impl Fn(&S) -> f64,
    ) -> GradCheckReport {
        let grads: Vec<(String, ArrayD<f32>)> = analytic
            .params()
            .into_iter()
            .map(|(name, g)| (name, g.to_owned()))
            .collect();
        let mut report = GradCheckReport {
            checked: 0,
            max_abs_diff: 0.0,
            mismatches: Vec::new(),
        };

        for (k, (name, grad)) in grads.iter().enumerate() {
            let shape = state.params()[k].1.shape().to_vec();
            assert_eq!(
                (&state.params()[k].0, &shape[..]),
                (name, grad.shape()),
                "gradcheck: state and analytic list different tensors"
            );
            for flat in sample_indices(grad.len(), self.max_per_tensor) {
                let index = unravel(flat, &shape);
                let original = tensor_mut(state, k)[&index[..]];
                // the steps actually taken in f32, so rounding of θ ± h does not bias the slope
                let (up, down) = (original + self.step, original - self.step);
                tensor_mut(state, k)[&index[..]] = up;
                let loss_up = loss(state);
                tensor_mut(state, k)[&index[..]] = down;
                let loss_down = loss(state);
                tensor_mut(state, k)[&index[..]] = original;

                let numeric = (loss_up - loss_down) / (up as f64 - down as f64);
                let analytic = grad[&index[..]] as f64;
                let diff = (analytic - numeric).abs();
                report.checked += 1;
                report.max_abs_diff = report.max_abs_diff.max(diff);
                if !within(diff, self.atol + self.rtol * numeric.abs()) {
                    report.mismatches.push(Mismatch {
                        name: name.clone(),
                        index,
                        analytic,
                        numeric,
                    });
                }
            }
        }
        report
    }
    // ANCHOR_END: gradcheck_run
}

/// `diff ≤ limit`, false when either is NaN (so a NaN never passes).
fn within(diff: f64, limit: f64) -> bool {
    matches!(
        diff.partial_cmp(&limit),
        Some(Ordering::Less | Ordering::Equal)
    )
}

/// The `k`-th tensor of `state`, writable.
fn tensor_mut<S: Params>(state: &mut S, k: usize) -> ArrayViewMutD<'_, f32> {
    state.params_mut().swap_remove(k).1
}

/// All of `0..len`, or `max` indices spread evenly over it, first and last included.
fn sample_indices(len: usize, max: usize) -> Vec<usize> {
    if len <= max {
        return (0..len).collect();
    }
    let max = max.max(2);
    let mut picks: Vec<usize> = (0..max).map(|i| i * (len - 1) / (max - 1)).collect();
    picks.dedup();
    picks
}

/// The multi-index of the `flat`-th element in row-major order.
fn unravel(mut flat: usize, shape: &[usize]) -> Vec<usize> {
    let mut index = vec![0; shape.len()];
    for axis in (0..shape.len()).rev() {
        index[axis] = flat % shape[axis];
        flat /= shape[axis];
    }
    index
}

// ANCHOR: with_inputs
/// A module together with the inputs of a forward pass, so one gradient
/// check covers the input gradients and the parameter gradients alike.
///
/// [`Params`] lists the inputs first, by their own names, then the module's
/// parameters under their usual names.
#[derive(Debug, Clone, PartialEq)]
pub struct WithInputs<M> {
    /// `(name, tensor)` of each input, e.g. `("x", x.into_dyn())`.
    pub inputs: Vec<(String, ArrayD<f32>)>,
    /// The module under test, or its gradient twin.
    pub module: M,
}
// ANCHOR_END: with_inputs

impl<M> WithInputs<M> {
    /// Bundles `module` with named inputs.
    pub fn new<D: Dimension>(module: M, inputs: Vec<(&str, Array<f32, D>)>) -> Self {
        let inputs = inputs
            .into_iter()
            .map(|(name, x)| (name.to_string(), x.into_dyn()))
            .collect();
        WithInputs { inputs, module }
    }

    /// The `i`-th input with its static dimension back, e.g. `input::<Ix3>(0)`.
    ///
    /// # Panics
    /// If the input does not have `D`'s number of axes.
    #[track_caller]
    pub fn input<D: Dimension>(&self, i: usize) -> ndarray::ArrayView<'_, f32, D> {
        let (name, x) = &self.inputs[i];
        x.view()
            .into_dimensionality::<D>()
            .unwrap_or_else(|_| panic!("with_inputs: input {name} is {:?}", x.shape()))
    }
}

impl<M: Params> Params for WithInputs<M> {
    fn params(&self) -> Vec<(String, ArrayViewD<'_, f32>)> {
        let mut list: Vec<_> = self
            .inputs
            .iter()
            .map(|(n, x)| (n.clone(), x.view()))
            .collect();
        list.extend(self.module.params());
        list
    }

    fn params_mut(&mut self) -> Vec<(String, ArrayViewMutD<'_, f32>)> {
        let mut list: Vec<_> = self
            .inputs
            .iter_mut()
            .map(|(n, x)| (n.clone(), x.view_mut()))
            .collect();
        list.extend(self.module.params_mut());
        list
    }
}

// ANCHOR: gradcheck_layer
/// Gradient check of a [`Layer`]: the input gradient and every parameter
/// gradient, for `L = Σ forward(x) ⊙ dout` with a random `dout` from `seed`.
///
/// It also checks the contract that `backward` *accumulates*: a second call
/// into the same gradient twin must exactly double every parameter gradient.
pub fn gradcheck_layer<L>(
    check: &GradCheck,
    layer: &L,
    x: &ArrayRef3<f32>,
    seed: u64,
) -> Result<GradCheckReport, GradCheckReport>
where
    L: Layer + Params + Clone,
{
    let (out, cache) = layer.forward(x);
    let dout: Array3<f32> = init::normal(out.dim(), 1.0, &mut StdRng::seed_from_u64(seed));

    let mut grads = layer.zeros_like();
    let dx = layer.backward(&dout, &cache, &mut grads);
    let analytic = WithInputs::new(grads.clone(), vec![("x", dx)]);

    let mut state = WithInputs::new(layer.clone(), vec![("x", x.to_owned())]);
    let mut report = check.run(&mut state, &analytic, |s| {
        fakeloss(&s.module.forward(&s.input(0)).0, &dout)
    });

    layer.backward(&dout, &cache, &mut grads);
    for ((name, twice), (_, once)) in grads.params().iter().zip(analytic.module.params()) {
        for ((index, &t), &o) in twice.indexed_iter().zip(once.iter()) {
            if t != 2.0 * o {
                let index = index.slice().to_vec();
                let name = format!(
                    "{name} (backward twice, want 2×; does backward assign instead of +=?)"
                );
                report.mismatches.push(Mismatch {
                    name,
                    index,
                    analytic: t as f64,
                    numeric: 2.0 * o as f64,
                });
            }
        }
    }
    report.into_result()
}
// ANCHOR_END: gradcheck_layer

// ANCHOR: assert_allclose
/// Asserts `|got − want| ≤ atol + rtol·|want|` element by element.
///
/// On failure it panics with the shape, the number of failing elements, the
/// five worst ones and the largest difference, like llm.c's `check_tensor`.
/// NaN never passes.
///
/// # Panics
/// If the shapes differ or any element is outside the tolerance.
#[track_caller]
pub fn assert_allclose<D1: Dimension, D2: Dimension>(
    label: &str,
    got: &ArrayRef<f32, D1>,
    want: &ArrayRef<f32, D2>,
    rtol: f32,
    atol: f32,
) {
    assert_eq!(
        got.shape(),
        want.shape(),
        "{label}: got shape {:?}, want shape {:?}",
        got.shape(),
        want.shape()
    );
    let mut bad: Vec<(usize, f32, f32, f32)> = Vec::new(); // (flat index, got, want, |diff|)
    let mut max_diff = 0.0f32;
    for (i, (&g, &w)) in got.iter().zip(want.iter()).enumerate() {
        let diff = (g - w).abs();
        if diff > max_diff || diff.is_nan() {
            max_diff = if diff.is_nan() {
                f32::NAN
            } else {
                max_diff.max(diff)
            };
        }
        if !within(diff as f64, (atol + rtol * w.abs()) as f64) {
            bad.push((i, g, w, diff));
        }
    }
    if bad.is_empty() {
        return;
    }
    bad.sort_by(|a, b| b.3.total_cmp(&a.3)); // worst first (NaN sorts highest)
    let mut message = format!(
        "{label}: {} of {} elements differ beyond atol {atol:e} + rtol {rtol:e}·|want| (shape {:?}, max |diff| {max_diff:e})",
        bad.len(),
        got.len(),
        got.shape()
    );
    for &(i, g, w, d) in bad.iter().take(5) {
        message += &format!(
            "\n  at {:?}: got {g:+.7e}, want {w:+.7e}, |diff| {d:.3e}",
            unravel(i, got.shape())
        );
    }
    panic!("{message}");
}
// ANCHOR_END: assert_allclose

/// Reference tensors written by a `tools/golden/*.py` script.
///
/// The file format is plain text, so a fixture can be read and diffed:
///
/// ```text
/// # comments start with '#'
/// tensor x 2 3
/// 0.5 -1.25 3 0 0 1
/// tensor loss
/// 0.693147
/// ```
///
/// `tensor NAME DIM…` is followed by exactly `∏ DIM` numbers (a scalar has no
/// dims and one number), separated by any white space.
#[derive(Debug, Clone)]
pub struct Golden {
    path: PathBuf,
    tensors: BTreeMap<String, ArrayD<f32>>,
}

impl Golden {
    /// Reads a fixture.
    ///
    /// # Errors
    /// A message naming the file and the line for a missing file, a malformed
    /// header, a bad number or a tensor with too few values.
    pub fn load(path: impl AsRef<Path>) -> Result<Golden, String> {
        let path = path.as_ref().to_path_buf();
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut tensors = BTreeMap::new();
        // (name, shape, values, header line)
        let mut current: Option<(String, Vec<usize>, Vec<f32>, usize)> = None;
        let finish = |t: (String, Vec<usize>, Vec<f32>, usize),
                      tensors: &mut BTreeMap<String, ArrayD<f32>>| {
            let (name, shape, values, line) = t;
            let want: usize = shape.iter().product();
            if values.len() != want {
                return Err(format!(
                    "{}:{line}: tensor {name} {shape:?} needs {want} values, found {}",
                    path.display(),
                    values.len()
                ));
            }
            let array = ArrayD::from_shape_vec(IxDyn(&shape), values).unwrap(); // length checked above
            tensors.insert(name, array);
            Ok(())
        };
        for (n, line) in text.lines().enumerate() {
            let line_no = n + 1;
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            if let Some(header) = line.strip_prefix("tensor ") {
                if let Some(done) = current.take() {
                    finish(done, &mut tensors)?;
                }
                let mut words = header.split_whitespace();
                let name = words.next().ok_or_else(|| {
                    format!("{}:{line_no}: tensor without a name", path.display())
                })?;
                let shape = words
                    .map(|w| w.parse::<usize>())
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| {
                        format!(
                            "{}:{line_no}: bad dimension in '{line}': {e}",
                            path.display()
                        )
                    })?;
                current = Some((name.to_string(), shape, Vec::new(), line_no));
                continue;
            }
            let Some((_, _, values, _)) = current.as_mut() else {
                return Err(format!(
                    "{}:{line_no}: numbers before the first 'tensor' line",
                    path.display()
                ));
            };
            for word in line.split_whitespace() {
                let v = word.parse::<f32>().map_err(|e| {
                    format!("{}:{line_no}: bad number '{word}': {e}", path.display())
                })?;
                values.push(v);
            }
        }
        if let Some(done) = current.take() {
            finish(done, &mut tensors)?;
        }
        Ok(Golden { path, tensors })
    }

    /// The tensor called `name`.
    ///
    /// # Panics
    /// If the fixture has no such tensor (the message lists the ones it has).
    #[track_caller]
    pub fn get(&self, name: &str) -> &ArrayD<f32> {
        self.tensors.get(name).unwrap_or_else(|| {
            panic!(
                "{}: no tensor '{name}'; it has {:?}",
                self.path.display(),
                self.tensors.keys().collect::<Vec<_>>()
            )
        })
    }

    /// The tensor called `name` with a static dimension, e.g. `array::<Ix2>("weight")`.
    ///
    /// # Panics
    /// If it is missing or has another number of axes.
    #[track_caller]
    pub fn array<D: Dimension>(&self, name: &str) -> Array<f32, D> {
        let t = self.get(name);
        t.clone().into_dimensionality::<D>().unwrap_or_else(|_| {
            panic!(
                "{}: tensor '{name}' is {:?}",
                self.path.display(),
                t.shape()
            )
        })
    }

    /// The tensor called `name` as integers (token IDs are stored as numbers).
    #[track_caller]
    pub fn ids<D: Dimension>(&self, name: &str) -> Array<u32, D> {
        self.array::<D>(name).mapv(|v| v as u32)
    }

    /// A scalar (a 0-d tensor or a tensor with one element).
    #[track_caller]
    pub fn scalar(&self, name: &str) -> f32 {
        let t = self.get(name);
        assert_eq!(
            t.len(),
            1,
            "{}: tensor '{name}' is {:?}, not a scalar",
            self.path.display(),
            t.shape()
        );
        t.iter().next().copied().unwrap() // one element, checked above
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Linear, LinearCache, LinearConfig};
    use ndarray::array;

    /// A Linear whose backward forgets the bias gradient's factor: the checker must see it.
    #[derive(Debug, Clone, PartialEq)]
    struct BrokenLinear(Linear, f32);

    impl Layer for BrokenLinear {
        type Cache = LinearCache;
        fn forward(&self, x: &ArrayRef3<f32>) -> (Array3<f32>, LinearCache) {
            self.0.forward(x)
        }
        fn backward(
            &self,
            dout: &ArrayRef3<f32>,
            cache: &LinearCache,
            grads: &mut Self,
        ) -> Array3<f32> {
            let dx = self.0.backward(dout, cache, &mut grads.0);
            if let Some(b) = &mut grads.0.bias {
                b.mapv_inplace(|v| v * self.1); // planted bug: scale the accumulated bias grad
            }
            dx
        }
    }

    impl Params for BrokenLinear {
        fn params(&self) -> Vec<(String, ArrayViewD<'_, f32>)> {
            self.0.params()
        }
        fn params_mut(&mut self) -> Vec<(String, ArrayViewMutD<'_, f32>)> {
            self.0.params_mut()
        }
    }

    fn broken(factor: f32) -> BrokenLinear {
        let mut rng = StdRng::seed_from_u64(0);
        BrokenLinear(
            LinearConfig {
                c_in: 3,
                c_out: 4,
                bias: true,
            }
            .init(&mut rng),
            factor,
        )
    }

    #[test]
    fn gradcheck_catches_a_three_percent_error() {
        let x = init::normal((2, 3, 3), 1.0, &mut StdRng::seed_from_u64(1));
        let report = gradcheck_layer(&GradCheck::default(), &broken(1.03), &x, 0).unwrap_err();
        assert!(
            report.mismatches.iter().any(|m| m.name == "bias"),
            "{report}"
        );
        assert!(
            report.mismatches.iter().all(|m| m.name.starts_with("bias")),
            "{report}"
        );
    }

    /// A Linear whose backward assigns (`=`) its gradients instead of adding them.
    #[derive(Debug, Clone, PartialEq)]
    struct AssigningLinear(Linear);

    impl Layer for AssigningLinear {
        type Cache = LinearCache;
        fn forward(&self, x: &ArrayRef3<f32>) -> (Array3<f32>, LinearCache) {
            self.0.forward(x)
        }
        fn backward(
            &self,
            dout: &ArrayRef3<f32>,
            cache: &LinearCache,
            grads: &mut Self,
        ) -> Array3<f32> {
            let mut fresh = self.0.zeros_like();
            let dx = self.0.backward(dout, cache, &mut fresh);
            grads.0 = fresh; // planted bug: overwrites what was accumulated
            dx
        }
    }

    impl Params for AssigningLinear {
        fn params(&self) -> Vec<(String, ArrayViewD<'_, f32>)> {
            self.0.params()
        }
        fn params_mut(&mut self) -> Vec<(String, ArrayViewMutD<'_, f32>)> {
            self.0.params_mut()
        }
    }

    #[test]
    fn gradcheck_catches_assignment_instead_of_accumulation() {
        let x = init::normal((2, 3, 3), 1.0, &mut StdRng::seed_from_u64(2));
        let layer = AssigningLinear(broken(1.0).0);
        let report = gradcheck_layer(&GradCheck::default(), &layer, &x, 0).unwrap_err();
        // the gradients themselves are right; only the doubling test fails
        assert!(
            report
                .mismatches
                .iter()
                .all(|m| m.name.contains("backward twice")),
            "{report}"
        );
        assert_eq!(report.mismatches.len(), 4 * 3 + 4);
    }

    #[test]
    fn gradcheck_passes_a_correct_layer_and_counts_elements() {
        let x = init::normal((2, 3, 3), 1.0, &mut StdRng::seed_from_u64(3));
        let report = gradcheck_layer(&GradCheck::default(), &broken(1.0), &x, 0).unwrap();
        assert_eq!(report.checked, 2 * 3 * 3 + 4 * 3 + 4);
    }

    #[test]
    fn sampling_keeps_ends_and_count() {
        assert_eq!(sample_indices(5, 10), vec![0, 1, 2, 3, 4]);
        let picks = sample_indices(1000, 7);
        assert_eq!(picks.len(), 7);
        assert_eq!((picks[0], picks[6]), (0, 999));
    }

    #[test]
    fn unravel_is_row_major() {
        assert_eq!(unravel(5, &[2, 3]), vec![1, 2]);
        assert_eq!(unravel(0, &[]), Vec::<usize>::new());
    }

    #[test]
    fn allclose_passes_within_tolerance() {
        assert_allclose(
            "x",
            &array![1.0f32, 2.0],
            &array![1.0f32, 2.000001],
            1e-5,
            0.0,
        );
    }

    #[test]
    #[should_panic(expected = "x: 1 of 2 elements differ")]
    fn allclose_reports_the_worst() {
        assert_allclose("x", &array![1.0f32, 2.5], &array![1.0f32, 2.0], 1e-5, 1e-5);
    }

    #[test]
    #[should_panic(expected = "1 of 1 elements differ")]
    fn allclose_rejects_nan() {
        assert_allclose("x", &array![f32::NAN], &array![f32::NAN], 1.0, 1.0);
    }

    fn write_temp(name: &str, text: &str) -> PathBuf {
        let path = std::env::temp_dir().join(format!("golden-{}-{name}.txt", std::process::id()));
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn golden_reads_tensors_and_scalars() {
        let path = write_temp(
            "ok",
            "# a comment\ntensor x 2 2\n1 2\n3 4 # trailing\ntensor loss\n0.5\n",
        );
        let g = Golden::load(&path).unwrap();
        assert_eq!(g.array::<ndarray::Ix2>("x"), array![[1., 2.], [3., 4.]]);
        assert_eq!(g.scalar("loss"), 0.5);
    }

    #[test]
    fn golden_errors_name_the_line() {
        let short = write_temp("short", "tensor x 3\n1 2\n");
        assert!(
            Golden::load(&short)
                .unwrap_err()
                .ends_with(":1: tensor x [3] needs 3 values, found 2")
        );
        let bad = write_temp("bad", "tensor x 2\n1 two\n");
        assert!(
            Golden::load(&bad)
                .unwrap_err()
                .contains(":2: bad number 'two'")
        );
        let orphan = write_temp("orphan", "1 2\n");
        assert!(
            Golden::load(&orphan)
                .unwrap_err()
                .contains(":1: numbers before the first 'tensor' line")
        );
    }
}
