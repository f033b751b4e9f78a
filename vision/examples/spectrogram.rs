//! Sound by the same route as pictures: a generated melody becomes a
//! spectrogram, and the crate's CNN reads the spectrogram as an image.
//!
//! ```text
//! cargo run --release -p vision --example spectrogram
//! ```
//!
//! writes, under `book/src/generated/vision/`:
//! - `spectrogram.png`: the waveform (top) and its spectrogram (frequency
//!   up, time across, brighter = louder, on a log scale);
//! - `spectrogram.md`: the signal, the transform's settings, the check that
//!   the DFT and the FFT give the same spectrogram, and the shapes the CNN
//!   turns it into.
//!
//! Deterministic: no randomness that reaches the output, no timings.

use std::error::Error;
use std::fmt::Write as _;
use std::path::Path;

use embedding::Params;
use ndarray::{Array2, Array3, Array4, s};
use rand::SeedableRng;
use rand::rngs::StdRng;
use vision::audio::{Tone, dft, fft, stft, tones};
use vision::{CnnConfig, save_png};

/// Samples per second: enough for tones up to 4 kHz.
const SAMPLE_RATE: usize = 8000;
/// Samples per frame (32 ms) and between frames (16 ms).
const FRAME: usize = 256;
const HOP: usize = 128;

/// The melody: tones of different pitch and length, and a rest.
fn melody() -> Vec<Tone> {
    let tone = |hertz, seconds| Tone { hertz, seconds };
    vec![
        tone(440.0, 0.30),  // A4
        tone(660.0, 0.15),  // E5, short
        tone(880.0, 0.45),  // A5, long
        tone(0.0, 0.15),    // a rest
        tone(330.0, 0.30),  // E4
        tone(1760.0, 0.15), // A6, short and high
    ]
}

/// The figure: the waveform as a strip of `width` columns (each column the
/// range of the samples under it), above the spectrogram (low frequencies
/// at the bottom), each cell of it `zoom` pixels.
fn figure(signal: &[f32], spec_db: &Array2<f32>, zoom: usize) -> Array3<f32> {
    let (bins, frames) = spec_db.dim();
    let width = frames * zoom;
    let (wave_h, gap) = (96, 8);
    let height = wave_h + gap + bins * zoom / 2;
    let mut img = Array3::<f32>::ones((3, height, width));
    // waveform: dark blue where some sample under the column reaches that height
    let per_col = signal.len() as f32 / width as f32;
    for x in 0..width {
        let (a, b) = (
            (x as f32 * per_col) as usize,
            (((x + 1) as f32 * per_col) as usize).min(signal.len()),
        );
        let (lo, hi) = signal[a..b.max(a + 1).min(signal.len())]
            .iter()
            .fold((0.0f32, 0.0f32), |(lo, hi), &v| (lo.min(v), hi.max(v)));
        // amplitude 0.5 fills the strip
        let to_y = |v: f32| ((0.5 - v) * (wave_h - 1) as f32).round() as usize;
        for y in to_y(hi)..=to_y(lo) {
            for (c, v) in [0.1, 0.2, 0.5].iter().enumerate() {
                img[[c, y, x]] = *v;
            }
        }
    }
    // spectrogram: dB mapped to [0, 1], drawn with a dark-to-yellow ramp,
    // bin 0 at the bottom; half the vertical zoom (bins are many)
    let (top, bottom) = (
        spec_db.iter().fold(f32::MIN, |m, &v| m.max(v)),
        spec_db.iter().fold(f32::MAX, |m, &v| m.min(v)),
    );
    let y0 = wave_h + gap;
    for y in 0..bins * zoom / 2 {
        let f = bins - 1 - (2 * y / zoom);
        for x in 0..width {
            let t = x / zoom;
            let v = ((spec_db[[f, t]] - bottom) / (top - bottom).max(1e-6)).clamp(0.0, 1.0);
            let rgb = [v.powf(0.8), v.powi(2) * 0.9, 0.35 * (1.0 - v) + 0.1 * v];
            for c in 0..3 {
                img[[c, y0 + y, x]] = rgb[c];
            }
        }
    }
    img
}

fn main() -> Result<(), Box<dyn Error>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../book/src/generated/vision");
    std::fs::create_dir_all(&dir)?;
    let melody = melody();
    let signal = tones(&melody, SAMPLE_RATE); // [S]

    // the spectrogram, once with the DFT as written and once with the FFT
    let slow = stft(&signal, FRAME, HOP, dft); // [F, T]
    let fast = stft(&signal, FRAME, HOP, fft);
    let loudest = slow.iter().fold(0.0f32, |m, &v| m.max(v));
    let worst = slow
        .iter()
        .zip(&fast)
        .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(worst <= 1e-4 * loudest, "dft and fft spectrograms differ");
    let (bins, frames) = fast.dim();
    // decibels, floored 80 dB below the loudest cell: what an ear (and a
    // model) compares is ratios of loudness, so the log scale shows them evenly
    let db = fast.mapv(|v| 20.0 * (v.max(loudest * 1e-4) / loudest).log10()); // [F, T], −80..0
    save_png(&figure(&signal, &db, 6), dir.join("spectrogram.png"))?;

    // the CNN: one input channel instead of three, everything else the
    // model's CNN; the spectrogram scaled to [0, 1] is its image
    let image = db.mapv(|v| (v + 80.0) / 80.0); // [F, T] in [0, 1]
    let image = image.slice(s![..bins - 1, ..]).to_owned(); // drop the top bin: an even height
    let (h, w) = image.dim();
    let images: Array4<f32> = image.clone().into_shape_with_order((1, 1, h, w))?; // [B=1, C=1, H, W]
    let config = CnnConfig {
        in_channels: 1,
        ..CnnConfig::default()
    };
    let cnn = config.init(&mut StdRng::seed_from_u64(0));
    let (out, _) = cnn.forward(&images);
    let (gh, gw) = cnn.grid_size(h, w);

    let mut md = String::new();
    let notes: Vec<String> = melody
        .iter()
        .map(|t| {
            if t.hertz == 0.0 {
                format!("a rest of {} s", t.seconds)
            } else {
                format!("{} Hz for {} s", t.hertz, t.seconds)
            }
        })
        .collect();
    writeln!(
        md,
        "The signal: {} samples a second, {} in all ({:.2} s): {}.\n",
        SAMPLE_RATE,
        signal.len(),
        signal.len() as f32 / SAMPLE_RATE as f32,
        notes.join(", ")
    )?;
    writeln!(
        md,
        "The transform: frames of {FRAME} samples ({:.0} ms) every {HOP} samples, each under a Hann \
         window, so {frames} frames; {bins} frequency bins from 0 to {} Hz, {:.2} Hz apart. \
         The spectrogram made with the written-out DFT and the one made with the FFT differ by at most \
         {:.1e} of the loudest cell.\n",
        1000.0 * FRAME as f32 / SAMPLE_RATE as f32,
        SAMPLE_RATE / 2,
        SAMPLE_RATE as f32 / FRAME as f32,
        worst / loudest,
    )?;
    writeln!(
        md,
        "| step | shape |\n| --- | --- |\n\
         | waveform | `[{}]` samples |\n\
         | spectrogram (frequency × time) | `[{bins}, {frames}]` |\n\
         | as an image for the CNN (top bin dropped) | `[1, 1, {h}, {w}]` (B, C, H, W) |\n\
         | the CNN's grid of tokens, {gh}×{gw} positions | `{:?}` (B, N, C) |\n\
         | the CNN's pooled vector | `{:?}` (B, C) |\n",
        signal.len(),
        out.grid.dim(),
        out.pooled.dim(),
    )?;
    writeln!(
        md,
        "The CNN is the model's, with one input channel instead of three ({} parameters); it is \
         untrained here, so the vectors mean nothing yet, but their shapes are those a caption \
         decoder would cross-attend to.",
        cnn.num_params()
    )?;
    std::fs::write(dir.join("spectrogram.md"), md)?;
    println!("wrote book/src/generated/vision/spectrogram.png and spectrogram.md");
    Ok(())
}
