//! A fixed number of training steps at the tiny config (batch 64), for
//! `perf stat` and for timing on a shared machine: criterion chooses its own
//! iteration counts, so the instructions it executes cannot be divided by a
//! step count; this runs exactly `--steps` timed steps (after 3 untimed ones)
//! per tower and prints the median and minimum wall time and the process CPU
//! time per step (user + system, from `/proc/self/stat`, Linux only).
//!
//! The multimodal model's step runs with `--tower vlm-align`, `vlm-instruct`
//! or `vlm-all` (the stage's freezing; see `common::VLM_STAGES`).
//!
//! ```sh
//! cargo bench -p train --bench step_count -- --steps 20 --tower cnn
//! cargo bench -p train --bench step_count -- --steps 20 --tower vlm-instruct
//! RAYON_NUM_THREADS=1 perf stat -e instructions,task-clock \
//!     target/release/deps/step_count-<hash> --bench --steps 20 --tower vit
//! ```

mod common;

use std::time::Instant;

use common::{VLM_STAGES, VOCAB, batch_of, vlm_batch_of};
use embedding::Params;
use model::{ImageConfig, Model, ModelConfig, VlmConfig};
use rand::SeedableRng;
use rand::rngs::StdRng;
use train::{AdamW, AdamWState, LossWeights, Schedule, train_step, vlm_train_step};

/// User + system CPU time of this process so far, in seconds (0 where
/// `/proc` is missing).
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // fields after the command name (which ends at the last ')'): utime is the 12th, stime the 13th
    let rest = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields
        .get(11..13)
        .unwrap_or_default()
        .iter()
        .filter_map(|f| f.parse::<f64>().ok())
        .sum();
    ticks / 100.0 // USER_HZ is 100 on Linux
}

fn main() {
    train::memory::keep_freed_memory(); // as the train program does
    let args: Vec<String> = std::env::args().collect();
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    // `cargo test --benches` runs this once without `--bench`: a tiny smoke run
    let real = args.iter().any(|a| a == "--bench");
    let steps: usize = value("--steps").map_or(20, |s| s.parse().expect("--steps N"));
    let (steps, batch_size) = if real { (steps, 64) } else { (1, 2) };
    let towers = value("--tower").map_or(vec!["vit".to_string(), "cnn".to_string()], |t| vec![t]);
    // (the multimodal stages only when asked for, so earlier figures stay comparable)
    let schedule = Schedule {
        warmup: 100,
        total: 1000,
        peak_lr: 1e-3,
        min_lr: 1e-5,
    };
    for tower in towers {
        if let Some(stage) = tower.strip_prefix("vlm-") {
            let freeze = VLM_STAGES
                .iter()
                .find(|(name, _)| *name == stage)
                .unwrap_or_else(|| panic!("--tower vlm-align|vlm-instruct|vlm-all, not {tower}"))
                .1;
            let config = VlmConfig::tiny(VOCAB, 64);
            let mut vlm = config.init(&mut StdRng::seed_from_u64(0)).unwrap();
            let batch = vlm_batch_of(batch_size, &config);
            let mut grads = vlm.zeros_like();
            let mut opt = AdamWState::new(AdamW::default(), &vlm);
            let step = |i: usize| {
                vlm_train_step(
                    &mut vlm,
                    &mut grads,
                    &mut opt,
                    &batch,
                    freeze,
                    i,
                    &schedule,
                    Some(1.0),
                )
                .unwrap()
            };
            report(&tower, batch_size, steps, step);
            continue;
        }
        let image = match tower.as_str() {
            "vit" => ImageConfig::tiny_vit(),
            "cnn" => ImageConfig::tiny_cnn(),
            other => panic!("--tower vit|cnn|vlm-<stage>, not {other}"),
        };
        let config = ModelConfig {
            image,
            ..ModelConfig::tiny(VOCAB)
        };
        let mut model: Model = config.init(&mut StdRng::seed_from_u64(0)).unwrap();
        let batch = batch_of(batch_size, &config);
        let mut grads = model.zeros_like();
        let mut opt = AdamWState::new(AdamW::default(), &model);
        let step = |i: usize| {
            train_step(
                &mut model,
                &mut grads,
                &mut opt,
                &batch,
                LossWeights::default(),
                i,
                &schedule,
                Some(1.0),
            )
            .unwrap()
        };
        report(&tower, batch_size, steps, step);
    }
}

/// Runs 3 untimed steps, then `steps` timed ones, and prints the median and
/// minimum wall time and the CPU time per step.
fn report<T>(name: &str, batch_size: usize, steps: usize, mut step: impl FnMut(usize) -> T) {
    for i in 0..3.min(steps) {
        step(i);
    }
    let cpu_start = cpu_seconds();
    let mut times: Vec<f64> = (0..steps)
        .map(|i| {
            let start = Instant::now();
            std::hint::black_box(step(3 + i));
            start.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    let cpu = (cpu_seconds() - cpu_start) * 1e3 / steps as f64;
    times.sort_by(f64::total_cmp);
    println!(
        "{name}_B{batch_size}: {steps} steps, median {:.1} ms, min {:.1} ms, cpu {cpu:.1} ms per step",
        times[steps / 2],
        times[0]
    );
}
