//! Sound as an image: a waveform becomes a spectrogram, which any image
//! tower can read.
//!
//! A recording is a sequence of air-pressure samples, `sample_rate` a
//! second. Cut it into short overlapping frames, ask each frame which
//! frequencies it holds (a discrete Fourier transform), and stack the
//! answers side by side: the result is a 2-D array, frequency up and time
//! across, a **spectrogram**. It is a one-channel image, so the CNN of this
//! crate turns it into a grid of vectors exactly as it does a picture; this
//! is how speech and audio models (Whisper, AST) take sound in.
//!
//! - [`dft`]: the transform written out from its definition, `O(N²)`, the
//!   teaching reference;
//! - [`fft`]: the same numbers by Cooley–Tukey's radix-2 recursion,
//!   `O(N log N)`, tested equal to [`dft`];
//! - [`stft`]: the short-time Fourier transform, frame by frame with a Hann
//!   window, as a magnitude spectrogram `[F, T]`;
//! - [`tones`]: a test signal of sine tones of chosen pitch and length.
//!
//! ## Shapes
//! `N` samples of one frame (a power of two for [`fft`]), `F = N/2 + 1`
//! frequency bins from 0 Hz to `sample_rate / 2`, `T` frames.

use ndarray::Array2;
use std::f32::consts::PI;
use std::ops::{Add, Mul, Sub};

/// A complex number `re + i·im`, just enough of one for the transforms.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Complex {
    pub re: f32,
    pub im: f32,
}

impl Complex {
    /// `e^{iθ} = cos θ + i sin θ`: a point on the unit circle.
    pub fn from_angle(theta: f32) -> Self {
        Complex {
            re: theta.cos(),
            im: theta.sin(),
        }
    }

    /// `|z|`, the length of the arrow.
    pub fn abs(self) -> f32 {
        self.re.hypot(self.im)
    }
}

impl Add for Complex {
    type Output = Complex;
    fn add(self, o: Complex) -> Complex {
        Complex {
            re: self.re + o.re,
            im: self.im + o.im,
        }
    }
}

impl Sub for Complex {
    type Output = Complex;
    fn sub(self, o: Complex) -> Complex {
        Complex {
            re: self.re - o.re,
            im: self.im - o.im,
        }
    }
}

impl Mul for Complex {
    type Output = Complex;
    fn mul(self, o: Complex) -> Complex {
        Complex {
            re: self.re * o.re - self.im * o.im,
            im: self.re * o.im + self.im * o.re,
        }
    }
}

// ANCHOR: dft
/// The discrete Fourier transform from its definition:
/// `X[k] = Σ_n x[n] · e^{−2πi·k·n/N}` for `k = 0..N`. Bin `k` measures how
/// much of the frequency `k · sample_rate / N` the frame holds: the sum
/// turns the signal against a clock that makes `k` turns over the frame,
/// and only a component turning at the same speed adds up instead of
/// cancelling out. `N²` complex multiply-adds.
pub fn dft(x: &[f32]) -> Vec<Complex> {
    let n = x.len();
    (0..n)
        .map(|k| {
            let mut sum = Complex::default();
            for (t, &sample) in x.iter().enumerate() {
                // (k·t) mod N keeps the angle small, so f32 stays accurate
                let angle = -2.0 * PI * ((k * t) % n) as f32 / n as f32;
                sum = sum
                    + Complex::from_angle(angle)
                        * Complex {
                            re: sample,
                            im: 0.0,
                        };
            }
            sum
        })
        .collect()
}
// ANCHOR_END: dft

// ANCHOR: fft
/// The same transform by Cooley–Tukey's radix-2 recursion. Split the
/// samples into the even and the odd ones; each half is a transform of
/// `N/2` points, `E` and `O`, and
///
/// `X[k] = E[k] + w^k·O[k]`, `X[k + N/2] = E[k] − w^k·O[k]`, `w = e^{−2πi/N}`,
///
/// because the odd samples sit one step later (the factor `w^k`) and both
/// halves repeat after `N/2` bins. `log₂ N` levels of `N` operations each.
///
/// # Panics
/// If `x.len()` is not a power of two.
#[track_caller]
pub fn fft(x: &[f32]) -> Vec<Complex> {
    assert!(
        x.len().is_power_of_two(),
        "fft: {} samples is not a power of two",
        x.len()
    );
    let complex: Vec<Complex> = x.iter().map(|&re| Complex { re, im: 0.0 }).collect();
    fft_complex(&complex)
}

fn fft_complex(x: &[Complex]) -> Vec<Complex> {
    let n = x.len();
    if n == 1 {
        return x.to_vec();
    }
    let even: Vec<Complex> = x.iter().step_by(2).copied().collect();
    let odd: Vec<Complex> = x.iter().skip(1).step_by(2).copied().collect();
    let (even, odd) = (fft_complex(&even), fft_complex(&odd)); // [N/2] each
    let mut out = vec![Complex::default(); n];
    for k in 0..n / 2 {
        let twiddle = Complex::from_angle(-2.0 * PI * k as f32 / n as f32) * odd[k]; // w^k·O[k]
        out[k] = even[k] + twiddle;
        out[k + n / 2] = even[k] - twiddle;
    }
    out
}
// ANCHOR_END: fft

/// The Hann window `w[n] = sin²(π n / N)`: zero at both ends of a frame, so
/// cutting the signal into frames adds no sharp edges (which would smear
/// every tone over many bins).
pub fn hann(n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| (PI * i as f32 / n as f32).sin().powi(2))
        .collect()
}

// ANCHOR: stft
/// The magnitude spectrogram `[F, T]` of `signal`: frames of `frame`
/// samples, `hop` samples apart, each multiplied by a Hann window and
/// transformed by `transform` ([`dft`] or [`fft`]); row `f` is the bin of
/// frequency `f · sample_rate / frame`, from 0 up to half the sample rate
/// (the upper half of a real signal's transform mirrors the lower).
///
/// # Panics
/// If `frame` or `hop` is 0 or the signal is shorter than one frame.
#[track_caller]
pub fn stft(
    signal: &[f32],
    frame: usize,
    hop: usize,
    transform: fn(&[f32]) -> Vec<Complex>,
) -> Array2<f32> {
    assert!(
        frame > 0 && hop > 0 && signal.len() >= frame,
        "stft: frame {frame}, hop {hop} on {} samples",
        signal.len()
    );
    let window = hann(frame);
    let frames = (signal.len() - frame) / hop + 1;
    let bins = frame / 2 + 1;
    let mut spectrogram = Array2::zeros((bins, frames)); // [F, T]
    for t in 0..frames {
        let windowed: Vec<f32> = signal[t * hop..t * hop + frame]
            .iter()
            .zip(&window)
            .map(|(x, w)| x * w)
            .collect();
        let spectrum = transform(&windowed); // [N]
        for f in 0..bins {
            spectrogram[[f, t]] = spectrum[f].abs();
        }
    }
    spectrogram
}
// ANCHOR_END: stft

/// One tone of the test signal: a sine of `hertz` for `seconds`, or
/// silence when `hertz` is 0.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tone {
    pub hertz: f32,
    pub seconds: f32,
}

/// The tones one after the other at `sample_rate`, amplitude 0.5, each
/// faded in and out over 5 ms so that no click (a sudden jump, which holds
/// every frequency) sits between them.
pub fn tones(tones: &[Tone], sample_rate: usize) -> Vec<f32> {
    let fade = (0.005 * sample_rate as f32).max(1.0);
    let mut signal = Vec::new();
    for tone in tones {
        let n = (tone.seconds * sample_rate as f32).round() as usize;
        for i in 0..n {
            let t = i as f32 / sample_rate as f32;
            let edge = (i as f32 / fade).min((n - i) as f32 / fade).min(1.0);
            signal.push(0.5 * edge * (2.0 * PI * tone.hertz * t).sin());
        }
    }
    signal
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    fn random_signal(n: usize, seed: u64) -> Vec<f32> {
        let mut rng = StdRng::seed_from_u64(seed);
        (0..n).map(|_| rng.random_range(-1.0..1.0)).collect()
    }

    #[test]
    fn fft_equals_the_dft() {
        for (n, seed) in [(1, 0), (2, 1), (8, 2), (64, 3), (256, 4)] {
            let x = random_signal(n, seed);
            let (slow, fast) = (dft(&x), fft(&x));
            for k in 0..n {
                let err = (slow[k] - fast[k]).abs();
                assert!(
                    err < 1e-4 * (n as f32).sqrt(),
                    "N = {n}, bin {k}: dft {:?}, fft {:?}",
                    slow[k],
                    fast[k]
                );
            }
        }
    }

    #[test]
    fn a_pure_tone_lands_in_its_bin() {
        // 8 turns over 64 samples: all the energy in bins 8 and 64 − 8
        let n = 64;
        let x: Vec<f32> = (0..n)
            .map(|t| (2.0 * PI * 8.0 * t as f32 / n as f32).cos())
            .collect();
        let spectrum = fft(&x);
        for (k, z) in spectrum.iter().enumerate() {
            let want = if k == 8 || k == n - 8 {
                n as f32 / 2.0
            } else {
                0.0
            };
            assert!((z.abs() - want).abs() < 1e-3, "bin {k}: {}", z.abs());
        }
    }

    #[test]
    fn parseval_energy_is_kept() {
        // Σ x² = (1/N) Σ |X|²
        let x = random_signal(128, 7);
        let time: f32 = x.iter().map(|v| v * v).sum();
        let freq: f32 = dft(&x).iter().map(|z| z.abs().powi(2)).sum::<f32>() / 128.0;
        assert!((time - freq).abs() < 1e-3 * time, "{time} vs {freq}");
    }

    #[test]
    #[should_panic(expected = "not a power of two")]
    fn fft_needs_a_power_of_two() {
        fft(&[0.0; 12]);
    }

    #[test]
    fn the_spectrogram_follows_the_tones() {
        let rate = 8000;
        let signal = tones(
            &[
                Tone {
                    hertz: 500.0,
                    seconds: 0.25,
                },
                Tone {
                    hertz: 1500.0,
                    seconds: 0.25,
                },
            ],
            rate,
        );
        let (frame, hop) = (256, 128);
        let slow = stft(&signal, frame, hop, dft);
        let fast = stft(&signal, frame, hop, fft);
        assert_eq!(
            slow.dim(),
            (frame / 2 + 1, (signal.len() - frame) / hop + 1)
        );
        let scale = slow.iter().fold(0.0f32, |m, v| m.max(*v));
        assert!(
            slow.iter()
                .zip(&fast)
                .all(|(a, b)| (a - b).abs() < 1e-4 * scale),
            "stft with dft and fft differ"
        );
        // the loudest bin of the first and the last frame: 500 Hz and 1500 Hz
        let bin_hz = rate as f32 / frame as f32;
        let peak = |t: usize| {
            (0..slow.nrows())
                .max_by(|&a, &b| slow[[a, t]].total_cmp(&slow[[b, t]]))
                .unwrap() as f32
                * bin_hz
        };
        assert!((peak(0) - 500.0).abs() <= bin_hz, "{}", peak(0));
        let last = slow.ncols() - 1;
        assert!((peak(last) - 1500.0).abs() <= bin_hz, "{}", peak(last));
    }

    #[test]
    fn tones_have_the_asked_length_and_fade_in() {
        let s = tones(
            &[
                Tone {
                    hertz: 440.0,
                    seconds: 0.5,
                },
                Tone {
                    hertz: 0.0,
                    seconds: 0.25,
                },
            ],
            1000,
        );
        assert_eq!(s.len(), 750);
        assert_eq!(s[0], 0.0);
        assert!(s[500..].iter().all(|&v| v == 0.0), "silence is silent");
        assert!(s.iter().all(|v| v.abs() <= 0.5));
    }
}
