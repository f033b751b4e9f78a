//! Decoding strategies: from next-token logits to a whole sequence.
//!
//! A language model only ever answers one question: *given the tokens so
//! far, how likely is each token to come next?* Turning those answers into a
//! caption is a search problem, and this file holds the usual answers to it,
//! written against a small trait so they can be read (and tested) apart from
//! any neural network:
//!
//! - [`NextToken`]: feed one token, get the logits `[V]` for the next one; the
//!   model's memory of the prefix lives in an explicit, cloneable `State`
//!   (for the caption decoder: its KV cache; for the toy [`Bigram`] table:
//!   just the last token);
//! - [`greedy`]: always the most likely token;
//! - [`sample`]: draw from `softmax(logits / temperature)`, optionally
//!   restricted to the `top_k` most likely tokens, with a caller's RNG;
//! - [`beam_search`]: keep the `width` most likely prefixes at every step,
//!   with an optional length normalisation of the finished ones.
//!
//! Every sequence starts with `bos` fed to the model and ends when the model
//! emits `eos` or after `max_new_tokens` tokens. The ids returned exclude
//! both; [`Generated::finished`] says whether `eos` was reached.
//!
//! ## Glossary
//! `V` vocabulary size, `W` beam width, `L` number of generated tokens.

use ndarray::{Array1, Array2, ArrayRef1};
use rand::Rng;

// ANCHOR: trait
/// A model that predicts the next token, one token at a time.
///
/// `State` is everything the model remembers about the tokens fed so far.
/// Strategies clone it when a prefix branches (beam search), so cloning must
/// give an independent copy.
pub trait NextToken {
    /// The model's memory of the prefix (a KV cache, the last token, …).
    type State: Clone;

    /// Feeds `token` after the prefix in `state` (updating it) and returns the
    /// logits `[V]` of the token that comes next.
    fn step(&self, state: &mut Self::State, token: u32) -> Array1<f32>;
}
// ANCHOR_END: trait

/// Where a generated sequence starts and when it stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GenerationConfig {
    /// The first token fed to the model; not part of the output.
    pub bos: u32,
    /// The token that ends a sequence; not part of the output.
    pub eos: u32,
    /// The most tokens generated, `eos` included.
    pub max_new_tokens: usize,
}

/// One generated sequence (`default()`: empty, unfinished, log-probability 0).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Generated {
    /// The tokens generated, without `bos` and `eos`.
    pub ids: Vec<u32>,
    /// Whether the model emitted `eos` (else the length limit stopped it).
    pub finished: bool,
    /// `Σ log p(token | prefix)` under the model (temperature 1) over `ids`,
    /// plus `eos` when `finished`.
    pub log_prob: f32,
    /// What the strategy ranked by: `log_prob` for greedy and sampling, the
    /// length-normalised `log_prob` for beam search.
    pub score: f32,
}

impl Generated {
    /// Number of tokens the model produced: `ids`, plus `eos` if finished.
    pub fn len_with_eos(&self) -> usize {
        self.ids.len() + usize::from(self.finished)
    }
}

// ANCHOR: log_softmax
/// `log softmax(logits)`: `x_i - max - ln Σ_j exp(x_j - max)`, computed
/// after subtracting the max so no `exp` overflows.
pub fn log_softmax(logits: &ArrayRef1<f32>) -> Array1<f32> {
    let max = logits.fold(f32::NEG_INFINITY, |m, &x| m.max(x));
    let log_sum = logits.iter().map(|&x| (x - max).exp()).sum::<f32>().ln();
    logits.mapv(|x| (x - max) - log_sum)
}
// ANCHOR_END: log_softmax

/// Index of the largest value; the first one on ties. `NaN`s are skipped.
///
/// # Panics
/// If `values` is empty.
#[track_caller]
pub fn argmax(values: &ArrayRef1<f32>) -> usize {
    assert!(!values.is_empty(), "argmax: empty logits");
    let mut best = 0;
    for (i, &v) in values.iter().enumerate() {
        if v > values[best] || values[best].is_nan() {
            best = i;
        }
    }
    best
}

// ANCHOR: greedy
/// Greedy decoding: feed `bos`, then always append the most likely token.
///
/// Fast and deterministic, but myopic: a likely first token can lead into a
/// prefix whose continuations are all unlikely ([`beam_search`] looks further).
pub fn greedy<M: NextToken>(model: &M, mut state: M::State, cfg: &GenerationConfig) -> Generated {
    let mut out = Generated::empty();
    let mut token = cfg.bos;
    while out.ids.len() < cfg.max_new_tokens {
        let logp = log_softmax(&model.step(&mut state, token));
        token = argmax(&logp) as u32;
        out.push(token, logp[token as usize], cfg.eos);
        if out.finished {
            break;
        }
    }
    out.score = out.log_prob;
    out
}
// ANCHOR_END: greedy

/// How [`sample`] reshapes the model's distribution before drawing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampling {
    /// Divides the logits: below 1 sharpens the distribution, above 1
    /// flattens it; `0` means greedy (the limit as the temperature goes to 0).
    pub temperature: f32,
    /// Keep only the `k` most likely tokens (ties broken by lower id);
    /// `None` keeps all of them.
    pub top_k: Option<usize>,
}

// ANCHOR: sampling_distribution
/// The distribution [`sample`] draws from: `softmax(logits / temperature)`
/// over the `top_k` largest logits, zero elsewhere.
///
/// A temperature of `0` (or below) puts all the mass on the argmax.
///
/// # Panics
/// If `top_k` is `Some(0)` or `logits` is empty.
#[track_caller]
pub fn sampling_probs(logits: &ArrayRef1<f32>, sampling: &Sampling) -> Array1<f32> {
    assert!(
        sampling.top_k != Some(0),
        "sampling_probs: top_k must be at least 1"
    );
    let v = logits.len();
    if sampling.temperature <= 0.0 {
        let mut p = Array1::zeros(v);
        p[argmax(logits)] = 1.0;
        return p;
    }
    // (x − max) / T rather than x / T: the largest logit becomes 0 whatever
    // the temperature, so a tiny T sends the others to −∞ (probability 0)
    // instead of overflowing every logit to ±∞ (and the softmax to NaN)
    let max = logits.fold(f32::NEG_INFINITY, |m, &x| m.max(x));
    let mut scaled = logits.mapv(|x| (x - max) / sampling.temperature);
    if let Some(k) = sampling.top_k.filter(|&k| k < v) {
        // the k-th largest scaled logit; everything strictly below it goes,
        // and among equal values the lower ids are kept
        let mut order: Vec<usize> = (0..v).collect();
        order.sort_by(|&a, &b| scaled[b].total_cmp(&scaled[a]).then(a.cmp(&b)));
        for &i in &order[k..] {
            scaled[i] = f32::NEG_INFINITY;
        }
    }
    log_softmax(&scaled).mapv(f32::exp)
}
// ANCHOR_END: sampling_distribution

/// Draws an index from the distribution `probs` (non-negative, summing to
/// about 1) by inverting its cumulative sum at a uniform `u ∈ [0, 1)`.
pub fn sample_index<R: Rng + ?Sized>(probs: &ArrayRef1<f32>, rng: &mut R) -> usize {
    let u: f64 = rng.random::<f64>() * probs.iter().map(|&p| f64::from(p)).sum::<f64>();
    let mut cumulative = 0.0f64;
    let mut last_possible = 0;
    for (i, &p) in probs.iter().enumerate() {
        if p > 0.0 {
            cumulative += f64::from(p);
            last_possible = i;
            if u < cumulative {
                return i;
            }
        }
    }
    last_possible // `u` fell past the end by rounding
}

// ANCHOR: sample
/// Ancestral sampling: feed `bos`, then draw each token from
/// [`sampling_probs`] of the model's logits, until `eos` or the length limit.
///
/// The same `rng` state gives the same sequence. `log_prob` and `score` are
/// measured under the unmodified model (temperature 1, no top-k).
///
/// # Panics
/// If `sampling.top_k` is `Some(0)`.
pub fn sample<M: NextToken, R: Rng + ?Sized>(
    model: &M,
    mut state: M::State,
    cfg: &GenerationConfig,
    sampling: &Sampling,
    rng: &mut R,
) -> Generated {
    let mut out = Generated::empty();
    let mut token = cfg.bos;
    while out.ids.len() < cfg.max_new_tokens {
        let logits = model.step(&mut state, token);
        token = sample_index(&sampling_probs(&logits, sampling), rng) as u32;
        out.push(token, log_softmax(&logits)[token as usize], cfg.eos);
        if out.finished {
            break;
        }
    }
    out.score = out.log_prob;
    out
}
// ANCHOR_END: sample

/// Settings of [`beam_search`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Beam {
    /// `W`, the number of prefixes kept at every step (at least 1).
    pub width: usize,
    /// `α` in `score = log_prob / L^α`, `L` counting the generated tokens
    /// with `eos`. `0` ranks by probability alone (favouring short
    /// sequences, since every token multiplies in a factor below 1); `1`
    /// ranks by the mean log-probability per token.
    pub length_penalty: f32,
}

impl Beam {
    /// The score a finished hypothesis is ranked by.
    pub fn score(&self, log_prob: f32, len: usize) -> f32 {
        if self.length_penalty == 0.0 {
            log_prob
        } else {
            log_prob / (len.max(1) as f32).powf(self.length_penalty)
        }
    }
}

// ANCHOR: beam_search
/// Beam search: keep the `W` most likely prefixes at every step.
///
/// Each step extends every live prefix by every token and ranks the `W·V`
/// candidates by their total log-probability (all have the same length, so
/// no normalisation is needed here). Walking down that ranking, a candidate
/// ending in `eos` among the top `W` becomes a finished hypothesis; the
/// others refill the `W` live prefixes. The search stops when `W`
/// hypotheses have finished, no prefix is left alive, or the length limit is
/// reached (live prefixes then count as unfinished hypotheses).
///
/// Returns between 1 and `W` hypotheses, best first by [`Beam::score`].
/// With `W = 1` this is exactly [`greedy`]. A step where no token has a
/// finite log-probability (a model whose logits are NaN) ends the search
/// with the live prefixes, unfinished.
///
/// # Panics
/// If `beam.width` is 0.
#[track_caller]
pub fn beam_search<M: NextToken>(
    model: &M,
    state: M::State,
    cfg: &GenerationConfig,
    beam: &Beam,
) -> Vec<Generated> {
    assert!(beam.width > 0, "beam_search: width must be at least 1");
    let w = beam.width;
    // each live prefix: its tokens and log-probability, the model state
    // after feeding all but its last token, and that last token
    let mut live = vec![(Generated::empty(), state, cfg.bos)];
    let mut finished: Vec<Generated> = Vec::new();
    for _ in 0..cfg.max_new_tokens {
        // 1. the next-token log-probabilities of every live prefix
        let mut states = Vec::with_capacity(live.len());
        let mut candidates = Vec::new(); // (beam, token, log_prob of the extension)
        for (b, (prefix, state, last)) in live.iter().enumerate() {
            let mut state = state.clone();
            let logp = log_softmax(&model.step(&mut state, *last));
            for (token, &lp) in logp.iter().enumerate() {
                if lp > f32::NEG_INFINITY {
                    // impossible continuations never compete
                    candidates.push((b, token as u32, prefix.log_prob + lp, lp));
                }
            }
            states.push(state);
        }
        if candidates.is_empty() {
            // no token has a finite probability (NaN or −∞ logits
            // everywhere): the live prefixes end here, unfinished
            break;
        }
        // 2. rank all W·V extensions; ties go to the lower beam, then lower id
        candidates.sort_by(|a, b| b.2.total_cmp(&a.2).then(a.0.cmp(&b.0)).then(a.1.cmp(&b.1)));
        // 3. the top W finish (if eos) or stay alive
        let mut next = Vec::with_capacity(w);
        for (rank, &(b, token, _, lp)) in candidates.iter().enumerate() {
            if next.len() == w {
                break;
            }
            let mut prefix = live[b].0.clone();
            prefix.push(token, lp, cfg.eos);
            if prefix.finished {
                if rank < w {
                    prefix.score = beam.score(prefix.log_prob, prefix.len_with_eos());
                    finished.push(prefix);
                }
            } else {
                next.push((prefix, states[b].clone(), token));
            }
        }
        live = next;
        if finished.len() >= w || live.is_empty() {
            break;
        }
    }
    // 4. prefixes cut by the length limit still compete, unfinished
    if finished.len() < w {
        for (mut prefix, _, _) in live {
            prefix.score = beam.score(prefix.log_prob, prefix.len_with_eos());
            finished.push(prefix);
        }
    }
    finished.sort_by(|a, b| b.score.total_cmp(&a.score));
    finished.truncate(w);
    finished
}
// ANCHOR_END: beam_search

/// The total log-probability the model gives `ids` after `bos`, with `eos`
/// appended when `with_eos`: the quantity beam search maximises.
pub fn sequence_log_prob<M: NextToken>(
    model: &M,
    mut state: M::State,
    cfg: &GenerationConfig,
    ids: &[u32],
    with_eos: bool,
) -> f32 {
    let mut total = 0.0f32;
    let mut prev = cfg.bos;
    let eos = with_eos.then_some(cfg.eos);
    for &token in ids.iter().chain(eos.iter()) {
        total += log_softmax(&model.step(&mut state, prev))[token as usize];
        prev = token;
    }
    total
}

/// The strategies as one value, for APIs that take "how to decode" as an
/// argument (the captioner).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Strategy {
    /// [`greedy`].
    Greedy,
    /// [`sample`] with an RNG seeded from `seed`.
    Sample { sampling: Sampling, seed: u64 },
    /// [`beam_search`]; its best hypothesis is the result.
    Beam(Beam),
}

impl Generated {
    fn empty() -> Self {
        Generated::default()
    }

    /// Appends `token` with its log-probability to `log_prob`; `eos`
    /// finishes the sequence instead of joining `ids`.
    pub fn push(&mut self, token: u32, log_prob: f32, eos: u32) {
        self.log_prob += log_prob;
        if token == eos {
            self.finished = true;
        } else {
            self.ids.push(token);
        }
    }
}

// ANCHOR: bigram
/// A toy language model: a table of next-token logits indexed by the last
/// token, `logits[prev, next]`. Its state is the last token fed.
///
/// Small enough to work out by hand, which makes it the test bench of the
/// strategies above (and the source of the book's example table).
#[derive(Debug, Clone, PartialEq)]
pub struct Bigram {
    /// `[V, V]`: row `prev` holds the logits of the token after `prev`.
    pub logits: Array2<f32>,
}

impl NextToken for Bigram {
    type State = u32;

    fn step(&self, last: &mut u32, token: u32) -> Array1<f32> {
        *last = token;
        self.logits.row(token as usize).to_owned()
    }
}
// ANCHOR_END: bigram

impl Bigram {
    /// A bigram model from next-token probabilities `[V, V]` (rows need not
    /// be normalised; zeros become impossible transitions).
    pub fn from_probs(probs: &Array2<f32>) -> Self {
        Bigram {
            logits: probs.mapv(f32::ln),
        }
    }

    /// The model the book and the tests use to show that greedy decoding is
    /// myopic. Tokens: `0 <|bos|>`, `1 <|eos|>`, `2 the`, `3 a`, `4 cat`,
    /// `5 dog`. After `<|bos|>`, "the" (0.55) beats "a" (0.45); but "the"
    /// is followed by five words about equally, while "a" is almost always
    /// followed by "cat": `P(a cat) = 0.405 > P(the …) ≤ 0.55·0.35`.
    pub fn myopic() -> Self {
        let probs = ndarray::array![
            //  bos  eos   the   a     cat   dog
            [0.0, 0.0, 0.55, 0.45, 0.0, 0.0],   // after bos
            [0.0, 1.0, 0.0, 0.0, 0.0, 0.0],     // after eos (never used)
            [0.0, 0.05, 0.05, 0.25, 0.35, 0.3], // after "the"
            [0.0, 0.02, 0.03, 0.05, 0.9, 0.0],  // after "a"
            [0.0, 0.8, 0.1, 0.1, 0.0, 0.0],     // after "cat"
            [0.0, 0.7, 0.1, 0.1, 0.1, 0.0],     // after "dog"
        ];
        Bigram::from_probs(&probs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn cfg(max_new_tokens: usize) -> GenerationConfig {
        GenerationConfig {
            bos: 0,
            eos: 1,
            max_new_tokens,
        }
    }

    /// A random bigram table over `v` tokens. Each row is a shuffle of
    /// logits at least 0.6 apart, so the argmax is never a near tie (at
    /// temperature 1e-3 the runner-up has probability below e^-600).
    fn random_bigram(v: usize, seed: u64) -> Bigram {
        use rand::seq::SliceRandom;
        let mut rng = StdRng::seed_from_u64(seed);
        let mut logits = Array2::zeros((v, v));
        for mut row in logits.rows_mut() {
            let mut ranks: Vec<usize> = (0..v).collect();
            ranks.shuffle(&mut rng);
            for (x, r) in row.iter_mut().zip(ranks) {
                *x = 0.7 * r as f32 - 2.0 + rng.random_range(0.0..0.1);
            }
        }
        Bigram { logits }
    }

    #[test]
    fn log_softmax_is_normalised_and_stable() {
        let lp = log_softmax(&array![1000.0f32, 1001.0, 999.0]);
        let total: f32 = lp.iter().map(|x| x.exp()).sum();
        assert!((total - 1.0).abs() < 1e-6, "{lp}");
        assert!((lp[1] - lp[0] - 1.0).abs() < 1e-4);
    }

    #[test]
    fn greedy_follows_the_argmax_by_hand() {
        // bos -> the (0.55) -> cat (0.35) -> eos (0.8)
        let g = greedy(&Bigram::myopic(), 0, &cfg(10));
        assert_eq!(g.ids, vec![2, 4]);
        assert!(g.finished);
        assert!((g.log_prob - (0.55f32 * 0.35 * 0.8).ln()).abs() < 1e-5);
    }

    #[test]
    fn length_limit_stops_unfinished() {
        // eos impossible: only a cycle 0 -> 2 -> 3 -> 2 ...
        let probs = array![
            [0.0, 0.0, 1.0, 0.0],
            [0.0, 1.0, 0.0, 0.0],
            [0.0, 0.0, 0.0, 1.0],
            [0.0, 0.0, 1.0, 0.0]
        ];
        let m = Bigram::from_probs(&probs);
        let g = greedy(&m, 0, &cfg(5));
        assert_eq!(g.ids, vec![2, 3, 2, 3, 2]);
        assert!(!g.finished);
        let b = beam_search(
            &m,
            0,
            &cfg(5),
            &Beam {
                width: 3,
                length_penalty: 0.0,
            },
        );
        assert_eq!(b[0].ids, g.ids);
        assert!(!b[0].finished);
    }

    /// A broken model: every logit NaN (as from a NaN weight).
    struct NanModel;

    impl NextToken for NanModel {
        type State = ();
        fn step(&self, _: &mut (), _: u32) -> Array1<f32> {
            Array1::from_elem(5, f32::NAN)
        }
    }

    #[test]
    fn beam_search_on_nan_logits_returns_an_unfinished_hypothesis() {
        for width in [1, 3] {
            let beam = Beam {
                width,
                length_penalty: 1.0,
            };
            let b = beam_search(&NanModel, (), &cfg(5), &beam);
            assert_eq!(b.len(), 1, "width {width}");
            assert!(b[0].ids.is_empty() && !b[0].finished, "{b:?}");
        }
    }

    #[test]
    fn a_tiny_temperature_is_greedy_not_nan() {
        let logits = array![1.0f32, 3.0, -2.0, 2.5];
        for temperature in [1e-45, 1e-30, f32::MIN_POSITIVE] {
            let p = sampling_probs(
                &logits,
                &Sampling {
                    temperature,
                    top_k: None,
                },
            );
            assert_eq!(p, array![0.0, 1.0, 0.0, 0.0], "T = {temperature:e}");
        }
        // and a huge one flattens the distribution without overflow
        let p = sampling_probs(
            &logits,
            &Sampling {
                temperature: f32::MAX,
                top_k: None,
            },
        );
        assert!(p.iter().all(|&q| (q - 0.25).abs() < 1e-6), "{p}");
    }

    #[test]
    fn beam_width_one_equals_greedy() {
        for seed in 0..20 {
            let m = random_bigram(7, seed);
            let g = greedy(&m, 0, &cfg(12));
            for alpha in [0.0, 1.0] {
                let b = beam_search(
                    &m,
                    0,
                    &cfg(12),
                    &Beam {
                        width: 1,
                        length_penalty: alpha,
                    },
                );
                assert_eq!(b.len(), 1);
                assert_eq!(
                    (&b[0].ids, b[0].finished),
                    (&g.ids, g.finished),
                    "seed {seed}"
                );
                assert!((b[0].log_prob - g.log_prob).abs() < 1e-5);
            }
        }
    }

    #[test]
    fn zero_temperature_and_top_one_equal_greedy() {
        let mut rng = StdRng::seed_from_u64(1);
        for seed in 0..20 {
            let m = random_bigram(7, seed);
            let g = greedy(&m, 0, &cfg(12));
            let settings = [
                Sampling {
                    temperature: 0.0,
                    top_k: None,
                },
                Sampling {
                    temperature: 1e-3,
                    top_k: None,
                },
                Sampling {
                    temperature: 1.0,
                    top_k: Some(1),
                },
                Sampling {
                    temperature: 5.0,
                    top_k: Some(1),
                },
            ];
            for s in settings {
                let got = sample(&m, 0, &cfg(12), &s, &mut rng);
                assert_eq!(got, g, "seed {seed}, {s:?}");
            }
        }
    }

    #[test]
    fn sampling_with_a_seed_is_reproducible() {
        let m = random_bigram(9, 3);
        let s = Sampling {
            temperature: 1.5,
            top_k: Some(5),
        };
        let draw = |seed| {
            let mut rng = StdRng::seed_from_u64(seed);
            (0..5)
                .map(|_| sample(&m, 0, &cfg(20), &s, &mut rng).ids)
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(42), draw(42));
        assert_ne!(draw(42), draw(43)); // and the seed matters
    }

    /// Pearson's χ² of observed counts against expected probabilities.
    fn chi_square(counts: &[usize], probs: &[f64]) -> f64 {
        let n: usize = counts.iter().sum();
        counts
            .iter()
            .zip(probs)
            .filter(|&(_, &p)| p > 0.0)
            .map(|(&c, &p)| {
                let e = n as f64 * p;
                (c as f64 - e).powi(2) / e
            })
            .sum()
    }

    #[test]
    fn sampling_frequencies_follow_the_softmax() {
        // χ² with d ≥ 3 degrees of freedom exceeds 10·d with probability
        // below 2e-6 when the sampler is right; a wrong temperature, an off-by-one in
        // the cumulative sum or a biased top-k gives χ² in the hundreds.
        let logits = array![0.0f32, 1.0, 2.0, -0.5, 0.5];
        let mut rng = StdRng::seed_from_u64(7);
        let n = 20_000;
        for (temperature, top_k) in [(1.0f32, None), (2.0, None), (0.5, Some(4))] {
            let s = Sampling { temperature, top_k };
            let t = f64::from(temperature);
            let mut counts = [0usize; 5];
            let probs = sampling_probs(&logits, &s);
            for _ in 0..n {
                counts[sample_index(&probs, &mut rng)] += 1;
            }
            // expected, straight from the definition
            let kept: Vec<usize> = match top_k {
                Some(_) => vec![0, 1, 2, 4], // the 4 largest logits
                None => (0..5).collect(),
            };
            let z: f64 = kept.iter().map(|&i| (f64::from(logits[i]) / t).exp()).sum();
            let expected: Vec<f64> = (0..5)
                .map(|i| {
                    if kept.contains(&i) {
                        (f64::from(logits[i]) / t).exp() / z
                    } else {
                        0.0
                    }
                })
                .collect();
            assert!(
                kept.len() == 5 || counts[3] == 0,
                "top-k let a dropped token through: {counts:?}"
            );
            let chi2 = chi_square(&counts, &expected);
            let dof = kept.len() - 1;
            assert!(
                chi2 < 10.0 * dof as f64,
                "T={temperature}: χ²={chi2:.1}, counts {counts:?}"
            );
            // a deliberately wrong distribution (temperature 1 instead of T)
            // must fail the same bound, or the test proves nothing
            if temperature != 1.0 {
                let wrong = sampling_probs(
                    &logits,
                    &Sampling {
                        temperature: 1.0,
                        top_k,
                    },
                );
                let wrong: Vec<f64> = wrong.iter().map(|&p| f64::from(p)).collect();
                assert!(chi_square(&counts, &wrong) > 10.0 * dof as f64);
            }
        }
    }

    #[test]
    fn top_k_keeps_the_k_largest_with_ties_to_lower_ids() {
        let p = sampling_probs(
            &array![1.0f32, 3.0, 3.0, 2.0, 3.0],
            &Sampling {
                temperature: 1.0,
                top_k: Some(2),
            },
        );
        assert_eq!(p.mapv(|x| x > 0.0), array![false, true, true, false, false]);
        assert!((p[1] - 0.5).abs() < 1e-6);
    }

    #[test]
    fn beam_search_beats_myopic_greedy() {
        let m = Bigram::myopic();
        let g = greedy(&m, 0, &cfg(10));
        let b = beam_search(
            &m,
            0,
            &cfg(10),
            &Beam {
                width: 2,
                length_penalty: 0.0,
            },
        );
        // "a cat <eos>" = 0.45 · 0.9 · 0.8 = 0.324 > greedy's 0.132
        assert_eq!(b[0].ids, vec![3, 4]);
        assert!(
            b[0].log_prob > g.log_prob + 0.5,
            "{} vs {}",
            b[0].log_prob,
            g.log_prob
        );
        // the reported scores are the model's own log-probabilities
        for h in &b {
            let lp = sequence_log_prob(&m, 0, &cfg(10), &h.ids, h.finished);
            assert!((h.log_prob - lp).abs() < 1e-5);
            assert_eq!(h.score, h.log_prob);
        }
        assert!(b.windows(2).all(|w| w[0].score >= w[1].score));
    }

    /// Every sequence of at most `max` tokens (finished or cut at `max`),
    /// with its log-probability.
    fn all_sequences(m: &Bigram, c: &GenerationConfig) -> Vec<(Vec<u32>, bool, f32)> {
        let v = m.logits.nrows() as u32;
        let mut out = Vec::new();
        let mut frontier = vec![Vec::<u32>::new()];
        for len in 0..c.max_new_tokens {
            let mut next = Vec::new();
            for prefix in frontier {
                out.push((
                    prefix.clone(),
                    true,
                    sequence_log_prob(m, 0, c, &prefix, true),
                ));
                for t in (0..v).filter(|&t| t != c.eos) {
                    let mut p = prefix.clone();
                    p.push(t);
                    if len + 1 == c.max_new_tokens {
                        let lp = sequence_log_prob(m, 0, c, &p, false);
                        out.push((p, false, lp));
                    } else {
                        next.push(p);
                    }
                }
            }
            frontier = next;
        }
        out
    }

    #[test]
    fn a_wide_beam_finds_the_most_likely_sequence() {
        // with W ≥ V^L every prefix survives, so beam search is exhaustive
        for seed in 0..5 {
            let m = random_bigram(4, 100 + seed);
            let c = cfg(4);
            let best = all_sequences(&m, &c)
                .into_iter()
                .max_by(|a, b| a.2.total_cmp(&b.2))
                .unwrap();
            let b = beam_search(
                &m,
                0,
                &c,
                &Beam {
                    width: 64,
                    length_penalty: 0.0,
                },
            );
            assert_eq!((&b[0].ids, b[0].finished), (&best.0, best.1), "seed {seed}");
            assert!((b[0].log_prob - best.2).abs() < 1e-5);
        }
    }

    #[test]
    fn length_normalisation_prefers_longer_confident_sequences() {
        // after bos: eos at once (0.5), or "x y eos" (0.5 · 1 · 0.9 = 0.45):
        // the short one wins on probability, the long one per token
        let probs = array![
            [0.0, 0.5, 0.5, 0.0], // bos: eos 0.5, x 0.5
            [0.0, 1.0, 0.0, 0.0], // eos
            [0.0, 0.0, 0.0, 1.0], // x -> y certainly
            [0.0, 0.9, 0.1, 0.0], // y -> eos 0.9
        ];
        let m = Bigram::from_probs(&probs);
        let raw = beam_search(
            &m,
            0,
            &cfg(6),
            &Beam {
                width: 2,
                length_penalty: 0.0,
            },
        );
        assert_eq!(raw[0].ids, Vec::<u32>::new()); // 0.5 > 0.45
        let norm = beam_search(
            &m,
            0,
            &cfg(6),
            &Beam {
                width: 2,
                length_penalty: 1.0,
            },
        );
        assert_eq!(norm[0].ids, vec![2, 3]); // ln(0.45)/3 > ln(0.5)/1
        assert!((norm[0].score - 0.45f32.ln() / 3.0).abs() < 1e-5);
    }
}
