//! The training run: the loop around [`crate::train_step`], the run folder,
//! checkpoints and resume, and the files a finished run leaves behind.
//!
//! A run folder `runs/<name>/` holds
//! - `run.json`: the [`RunConfig`];
//! - `checkpoint/`: the model's checkpoint folder (`model.safetensors`,
//!   `config.txt`, `tokenizer.txt`), the AdamW moments
//!   (`optimizer.safetensors`, whose metadata holds the step) and the
//!   history so far (`history.json`), replaced as a whole, atomically;
//! - `metrics.json`: the loss history and the evaluations;
//! - `loss.svg`: the loss curve; `samples.md`: greedy captions of a few images.

use crate::data::{Tokens, ToyData, World};
use crate::eval::{EvalConfig, EvalReport, evaluate, sample_captions};
use crate::{AdamW, AdamWState, Batch, LossWeights, Schedule, StepError, train_step};
use embedding::Params;
use indicatif::{ProgressBar, ProgressStyle};
use model::{CheckpointError, ImageConfig, Model, ModelConfig, SpecialTokens, WeightsError};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Instant;
use tokenizer::Tokenizer;

/// Which image tower.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Encoder {
    Vit,
    Cnn,
}

/// How big a model: `tiny` is the real one, `micro` is for tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ModelSize {
    Tiny,
    Micro,
}

// ANCHOR: run_config
/// Everything that decides a run: the same config gives the same weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunConfig {
    /// Seeds the weights and every batch.
    pub seed: u64,
    /// Optimiser steps.
    pub steps: usize,
    /// Images (and captions) per step.
    pub batch_size: usize,
    /// Peak learning rate, reached after `warmup` steps.
    pub lr: f32,
    /// Learning rate at the end of the cosine decay.
    pub min_lr: f32,
    /// Steps of linear warmup.
    pub warmup: usize,
    /// AdamW's decoupled weight decay.
    pub weight_decay: f32,
    /// Clip the gradient to this global norm.
    pub max_grad_norm: f32,
    /// Weight of the contrastive loss.
    pub contrastive_weight: f32,
    /// Weight of the captioning loss.
    pub caption_weight: f32,
    /// The image tower.
    pub encoder: Encoder,
    /// The model size.
    pub size: ModelSize,
    /// Fraction of two-object scenes in training.
    pub two_object: f32,
    /// How many shapes and colours the toy world has. Runs saved before the
    /// world could grow had four shapes and five colours.
    #[serde(default = "small_world")]
    pub world: World,
    /// Evaluate on held-out data every this many steps (0: only at the end).
    pub eval_interval: usize,
    /// Write a checkpoint every this many steps (0: only at the end).
    pub checkpoint_interval: usize,
    /// Images per object in the final evaluation.
    pub eval_per_object: usize,
}
// ANCHOR_END: run_config

fn small_world() -> World {
    World::SMALL
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            seed: 0,
            steps: 2000,
            batch_size: 64,
            lr: 2e-3,
            min_lr: 1e-4,
            warmup: 100,
            weight_decay: 0.05,
            max_grad_norm: 1.0,
            contrastive_weight: 1.0,
            caption_weight: 2.0,
            encoder: Encoder::Cnn,
            size: ModelSize::Tiny,
            two_object: 0.0,
            world: World::FULL,
            eval_interval: 250,
            checkpoint_interval: 500,
            eval_per_object: 2,
        }
    }
}

impl RunConfig {
    /// The dataset this run trains on.
    pub fn data(&self) -> ToyData {
        ToyData {
            seed: self.seed,
            two_object: self.two_object,
            world: self.world,
        }
    }

    /// The model shape for a tokenizer.
    pub fn model_config(&self, tokenizer: &Tokenizer) -> Result<ModelConfig, RunError> {
        let vocab = tokenizer.vocab_size();
        let mut config = match self.size {
            ModelSize::Tiny => ModelConfig::tiny(vocab),
            ModelSize::Micro => {
                let mut c = ModelConfig::micro(vocab);
                c.max_len = 12;
                c
            }
        };
        config.image = match (self.encoder, self.size) {
            (Encoder::Vit, ModelSize::Tiny) => ImageConfig::tiny_vit(),
            (Encoder::Cnn, ModelSize::Tiny) => ImageConfig::tiny_cnn(),
            (Encoder::Vit, ModelSize::Micro) => match config.image {
                ImageConfig::Vit(v) => ImageConfig::Vit(vision::VitConfig {
                    image_size: 32,
                    patch: 8,
                    ..v
                }),
                other => other,
            },
            (Encoder::Cnn, ModelSize::Micro) => match ModelConfig::micro_cnn() {
                ImageConfig::Cnn { cnn, .. } => ImageConfig::Cnn {
                    cnn,
                    image_size: 32,
                },
                other => other,
            },
        };
        config.special = SpecialTokens::from_tokenizer(tokenizer).map_err(RunError::Config)?;
        config.validate().map_err(RunError::Config)?;
        Ok(config)
    }

    /// Checks the values a user can get wrong.
    ///
    /// # Errors
    /// [`RunError::BadValue`] naming the setting.
    pub fn validate(&self) -> Result<(), RunError> {
        let bad = |name: &'static str, why: &str| {
            Err(RunError::BadValue {
                name,
                why: why.to_string(),
            })
        };
        let positive = |v: f32| v.is_finite() && v > 0.0;
        let non_negative = |v: f32| v.is_finite() && v >= 0.0;
        if self.steps == 0 {
            return bad("steps", "must be at least 1");
        }
        if self.batch_size < 2 {
            return bad(
                "batch-size",
                "must be at least 2 (the contrastive loss needs negatives)",
            );
        }
        if !positive(self.lr) {
            return bad("lr", &format!("must be a positive number, got {}", self.lr));
        }
        if !non_negative(self.min_lr) || self.min_lr > self.lr {
            return bad(
                "min-lr",
                &format!("must be in [0, lr], got {}", self.min_lr),
            );
        }
        if !non_negative(self.weight_decay) {
            return bad("weight-decay", "must be a non-negative number");
        }
        if !positive(self.max_grad_norm) {
            return bad("max-grad-norm", "must be a positive number");
        }
        if !non_negative(self.contrastive_weight) || !non_negative(self.caption_weight) {
            return bad("loss weights", "must be non-negative numbers");
        }
        if self.contrastive_weight + self.caption_weight == 0.0 {
            return bad("loss weights", "at least one must be positive");
        }
        if !(0.0..=1.0).contains(&self.two_object) {
            return bad("two-object", "must be a fraction in [0, 1]");
        }
        if let Err((name, why)) = self.world.check() {
            return bad(name, &why);
        }
        Ok(())
    }

    fn schedule(&self) -> Schedule {
        Schedule {
            warmup: self.warmup,
            total: self.steps,
            peak_lr: self.lr,
            min_lr: self.min_lr,
        }
    }
}

/// What went wrong with a run.
#[derive(Debug)]
pub enum RunError {
    /// A setting has an impossible value.
    BadValue { name: &'static str, why: String },
    /// The model shape is impossible.
    Config(model::ConfigError),
    /// A file or folder could not be read or written.
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A JSON file is not what a run writes.
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
    /// The checkpoint folder is missing or damaged.
    Checkpoint(CheckpointError),
    /// The optimiser state is missing or damaged.
    Optimizer { path: PathBuf, why: String },
    /// Training met a NaN or infinity; the last good checkpoint is kept.
    NonFinite {
        source: StepError,
        checkpoint: Option<usize>,
    },
    /// The tokenizer could not be trained.
    Tokenizer(tokenizer::TokenizerError),
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunError::BadValue { name, why } => write!(f, "bad value for {name}: {why}"),
            RunError::Config(e) => write!(f, "impossible model shape: {e}"),
            RunError::Io { path, source } => write!(f, "{}: {source}", path.display()),
            RunError::Json { path, source } => {
                write!(f, "{}: not a valid run file: {source}", path.display())
            }
            RunError::Checkpoint(e) => write!(f, "bad checkpoint: {e}"),
            RunError::Optimizer { path, why } => {
                write!(f, "{}: bad optimizer state: {why}", path.display())
            }
            RunError::NonFinite { source, checkpoint } => {
                write!(f, "training stopped: {source}; ")?;
                match checkpoint {
                    Some(step) => write!(f, "the last good checkpoint (step {step}) is kept"),
                    None => write!(f, "no checkpoint had been written yet"),
                }
            }
            RunError::Tokenizer(e) => write!(f, "tokenizer: {e}"),
        }
    }
}

impl std::error::Error for RunError {}

/// One step's figures, as the history keeps them.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    pub step: usize,
    pub loss: f32,
    pub contrastive: f32,
    pub caption: f32,
    pub grad_norm: f32,
    pub lr: f32,
    pub logit_scale: f32,
}

/// An evaluation during or after training.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EvalRecord {
    /// Steps taken when it ran.
    pub step: usize,
    pub report: EvalReport,
}

/// What a run has done so far: saved in every checkpoint and in `metrics.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct History {
    pub steps: Vec<StepRecord>,
    pub evals: Vec<EvalRecord>,
    /// Seconds spent training (summed over resumed parts).
    pub train_seconds: f64,
}

/// The run folder's files.
pub const RUN_FILE: &str = "run.json";
pub const CHECKPOINT_DIR: &str = "checkpoint";
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";
pub const HISTORY_FILE: &str = "history.json";
pub const METRICS_FILE: &str = "metrics.json";
pub const LOSS_PLOT_FILE: &str = "loss.svg";
pub const SAMPLES_FILE: &str = "samples.md";

/// The training state a checkpoint restores.
#[derive(Debug)]
pub struct State {
    pub model: Model,
    pub tokenizer: Tokenizer,
    pub opt: AdamWState<Model>,
    /// Steps taken.
    pub step: usize,
    pub history: History,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> RunError + '_ {
    move |source| RunError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), RunError> {
    let text = serde_json::to_string_pretty(value).map_err(|source| RunError::Json {
        path: path.to_path_buf(),
        source,
    })?;
    model::write_atomic(path, text.as_bytes()).map_err(io(path))
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, RunError> {
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    serde_json::from_str(&text).map_err(|source| RunError::Json {
        path: path.to_path_buf(),
        source,
    })
}

impl AdamW {
    fn from_run(config: &RunConfig) -> Self {
        AdamW {
            weight_decay: config.weight_decay,
            ..AdamW::default()
        }
    }
}

// ANCHOR: checkpoint
/// Writes the checkpoint of `state` into `run/checkpoint/` atomically: the
/// files go to `checkpoint.tmp/`, which then replaces `checkpoint/` by two
/// renames, so a crash leaves either the old checkpoint or the new one.
pub fn save_state(run: &Path, state: &State) -> Result<(), RunError> {
    let tmp = run.join("checkpoint.tmp");
    let old = run.join("checkpoint.old");
    let dir = run.join(CHECKPOINT_DIR);
    for d in [&tmp, &old] {
        if d.exists() {
            std::fs::remove_dir_all(d).map_err(io(d))?;
        }
    }
    model::save_checkpoint(&tmp, &state.model, &state.tokenizer).map_err(RunError::Checkpoint)?;
    let metadata = BTreeMap::from([
        ("step".to_string(), state.step.to_string()),
        ("adamw_steps".to_string(), state.opt.steps.to_string()),
    ]);
    let path = tmp.join(OPTIMIZER_FILE);
    model::save_weights(&path, &state.opt, &metadata).map_err(|e| RunError::Optimizer {
        path: path.clone(),
        why: e.to_string(),
    })?;
    write_json(&tmp.join(HISTORY_FILE), &state.history)?;
    if dir.exists() {
        std::fs::rename(&dir, &old).map_err(io(&dir))?;
    }
    std::fs::rename(&tmp, &dir).map_err(io(&tmp))?;
    if old.exists() {
        std::fs::remove_dir_all(&old).map_err(io(&old))?;
    }
    Ok(())
}
// ANCHOR_END: checkpoint

/// Reads the checkpoint of a run folder back.
///
/// # Errors
/// Any missing or damaged file, named.
pub fn load_state(run: &Path, config: &RunConfig) -> Result<State, RunError> {
    let dir = run.join(CHECKPOINT_DIR);
    let model::Checkpoint { model, tokenizer } =
        model::load_checkpoint(&dir).map_err(RunError::Checkpoint)?;
    let mut opt = AdamWState::new(AdamW::from_run(config), &model);
    let path = dir.join(OPTIMIZER_FILE);
    let bad = |why: String| RunError::Optimizer {
        path: path.clone(),
        why,
    };
    let metadata =
        model::load_weights(&path, &mut opt).map_err(|e: WeightsError| bad(e.to_string()))?;
    let number = |key: &str| -> Result<u64, RunError> {
        metadata
            .get(key)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| bad(format!("metadata lacks a numeric {key:?}")))
    };
    let step = number("step")? as usize;
    opt.steps = number("adamw_steps")?;
    let history: History = read_json(&dir.join(HISTORY_FILE))?;
    Ok(State {
        model,
        tokenizer,
        opt,
        step,
        history,
    })
}

/// How a run reports progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// A progress bar and printed evaluations.
    Bar,
    /// Nothing (tests).
    Quiet,
}

/// Starts a new run in `run` (which must not hold a checkpoint yet).
pub fn start(run: &Path, config: &RunConfig) -> Result<State, RunError> {
    config.validate()?;
    std::fs::create_dir_all(run).map_err(io(run))?;
    let tokenizer = config
        .data()
        .train_tokenizer()
        .map_err(RunError::Tokenizer)?;
    let model_config = config.model_config(&tokenizer)?;
    let model = model_config
        .init(&mut StdRng::seed_from_u64(config.seed))
        .map_err(RunError::Config)?;
    let opt = AdamWState::new(AdamW::from_run(config), &model);
    write_json(&run.join(RUN_FILE), config)?;
    Ok(State {
        model,
        tokenizer,
        opt,
        step: 0,
        history: History::default(),
    })
}

/// Opens an existing run folder: its config and its last checkpoint.
pub fn open(run: &Path) -> Result<(RunConfig, State), RunError> {
    if !run.is_dir() {
        return Err(RunError::Io {
            path: run.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such run folder"),
        });
    }
    let config: RunConfig = read_json(&run.join(RUN_FILE))?;
    config.validate()?;
    let state = load_state(run, &config)?;
    Ok((config, state))
}

/// Trains `state` on the toy dataset up to `stop` steps (at most
/// `config.steps`), evaluating and checkpointing on the way and at the end.
///
/// # Errors
/// [`RunError::NonFinite`] naming the step if a loss or gradient is not
/// finite (the last checkpoint stays as it was), or a file error.
pub fn train(
    run: &Path,
    config: &RunConfig,
    state: &mut State,
    stop: usize,
    progress: Progress,
) -> Result<(), RunError> {
    let data = config.data();
    let batch_of = |step: u64, state: &State| {
        let tokens = Tokens::new(&state.tokenizer, state.model.config());
        data.batch(step, config.batch_size, &tokens)
    };
    let evaluate_now = |state: &State| {
        let on = EvalConfig {
            per_object: 1,
            stream: 1,
        };
        evaluate(&state.model, &state.tokenizer, &data, &on)
    };
    train_loop(
        run,
        config,
        state,
        stop,
        progress,
        batch_of,
        Some(&evaluate_now),
    )
}

// ANCHOR: train_loop
/// The loop every run shares: [`train_step`] on `batch_of(step, state)` from
/// `state.step` up to `stop` (at most `config.steps`), a progress bar, an
/// evaluation every `eval_interval` steps (if `evaluate_now` is given) and a
/// checkpoint every `checkpoint_interval` steps and at the end.
///
/// `batch_of` must be a pure function of the step (and the run's fixed
/// data), so that a resumed run sees the batches the uninterrupted run saw.
///
/// # Errors
/// [`RunError::NonFinite`] naming the step if a loss or gradient is not
/// finite (the last checkpoint stays as it was), or a file error.
pub fn train_loop(
    run: &Path,
    config: &RunConfig,
    state: &mut State,
    stop: usize,
    progress: Progress,
    batch_of: impl Fn(u64, &State) -> Batch,
    evaluate_now: Option<&dyn Fn(&State) -> EvalReport>,
) -> Result<(), RunError> {
    let stop = stop.min(config.steps);
    let schedule = config.schedule();
    let weights = LossWeights {
        contrastive: config.contrastive_weight,
        caption: config.caption_weight,
    };
    let mut grads = state.model.zeros_like();
    let bar = match progress {
        Progress::Bar => ProgressBar::new(config.steps as u64),
        Progress::Quiet => ProgressBar::hidden(),
    };
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} {msg} [{elapsed} < {eta}]")
            .expect("a valid template"),
    );
    bar.set_position(state.step as u64);
    let mut last_checkpoint = (state.step > 0).then_some(state.step);
    let started = Instant::now();
    let mut timer = (Instant::now(), state.step);
    while state.step < stop {
        let step = state.step;
        let batch = batch_of(step as u64, state);
        let stats = train_step(
            &mut state.model,
            &mut grads,
            &mut state.opt,
            &batch,
            weights,
            step,
            &schedule,
            Some(config.max_grad_norm),
        )
        .map_err(|source| RunError::NonFinite {
            source,
            checkpoint: last_checkpoint,
        })?;
        state.history.steps.push(StepRecord {
            step,
            loss: stats.loss,
            contrastive: stats.contrastive,
            caption: stats.caption,
            grad_norm: stats.grad_norm,
            lr: stats.lr,
            logit_scale: stats.logit_scale,
        });
        state.step += 1;
        let images_per_s = (state.step - timer.1) as f64 * config.batch_size as f64
            / timer.0.elapsed().as_secs_f64().max(1e-9);
        if state.step - timer.1 >= 20 {
            timer = (Instant::now(), state.step);
        }
        bar.set_position(state.step as u64);
        bar.set_message(format!(
            "loss {:.3} (clip {:.3} cap {:.3}) lr {:.1e} scale {:.1} {:.0} img/s",
            stats.loss, stats.contrastive, stats.caption, stats.lr, stats.logit_scale, images_per_s
        ));
        let at = |interval: usize| interval > 0 && state.step.is_multiple_of(interval);
        if let Some(evaluate_now) =
            evaluate_now.filter(|_| at(config.eval_interval) && state.step < config.steps)
        {
            let report = evaluate_now(state);
            let line = format!(
                "step {}: held-out zero-shot {:.1}%, caption exact {:.1}%; seen {:.1}% / {:.1}%",
                state.step,
                100.0 * report.held_out.zero_shot.exact,
                100.0 * report.held_out.caption.exact,
                100.0 * report.seen.zero_shot.exact,
                100.0 * report.seen.caption.exact,
            );
            // a hidden bar (no terminal) drops println: print the line plainly
            match progress {
                Progress::Bar if bar.is_hidden() => eprintln!("{line}"),
                Progress::Bar => bar.println(line),
                Progress::Quiet => {}
            }
            state.history.evals.push(EvalRecord {
                step: state.step,
                report,
            });
        }
        if at(config.checkpoint_interval) || state.step == config.steps {
            state.history.train_seconds += started.elapsed().as_secs_f64();
            save_state(run, state)?;
            state.history.train_seconds -= started.elapsed().as_secs_f64();
            last_checkpoint = Some(state.step);
        }
    }
    state.history.train_seconds += started.elapsed().as_secs_f64();
    bar.finish_and_clear();
    Ok(())
}
// ANCHOR_END: train_loop

/// The figures of a finished run, as `metrics.json` holds them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    pub config: RunConfig,
    pub parameters: usize,
    pub steps_done: usize,
    pub train_seconds: f64,
    pub final_eval: EvalReport,
    pub history: History,
}

/// Evaluates the finished model and writes `metrics.json`, `loss.svg` and
/// `samples.md`; returns the metrics.
pub fn finish(run: &Path, config: &RunConfig, state: &State) -> Result<Metrics, RunError> {
    let data = config.data();
    let final_eval = evaluate(
        &state.model,
        &state.tokenizer,
        &data,
        &EvalConfig {
            per_object: config.eval_per_object,
            stream: 0,
        },
    );
    let metrics = Metrics {
        config: config.clone(),
        parameters: state.model.num_params(),
        steps_done: state.step,
        train_seconds: state.history.train_seconds,
        final_eval,
        history: state.history.clone(),
    };
    write_json(&run.join(METRICS_FILE), &metrics)?;
    let svg = crate::plot::loss_svg(&state.history.steps);
    let path = run.join(LOSS_PLOT_FILE);
    model::write_atomic(&path, svg.as_bytes()).map_err(io(&path))?;
    let mut samples = String::from("| true caption | greedy caption |\n| --- | --- |\n");
    for (truth, written) in sample_captions(&state.model, &state.tokenizer, &data, 8) {
        samples += &format!("| {truth} | {written} |\n");
    }
    let path = run.join(SAMPLES_FILE);
    model::write_atomic(&path, samples.as_bytes()).map_err(io(&path))?;
    Ok(metrics)
}

/// Evaluates a saved run and writes `eval.json` into it.
pub fn eval_run(run: &Path, per_object: usize) -> Result<EvalReport, RunError> {
    let (config, state) = open(run)?;
    let report = evaluate(
        &state.model,
        &state.tokenizer,
        &config.data(),
        &EvalConfig {
            per_object: per_object.max(1),
            stream: 0,
        },
    );
    write_json(&run.join("eval.json"), &report)?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn micro(steps: usize) -> RunConfig {
        RunConfig {
            steps,
            batch_size: 8,
            warmup: 2,
            size: ModelSize::Micro,
            encoder: Encoder::Vit,
            eval_interval: 0,
            checkpoint_interval: 0,
            eval_per_object: 1,
            ..RunConfig::default()
        }
    }

    fn tmp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("train-run-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn resuming_gives_the_same_weights_bit_for_bit() {
        let config = micro(6);
        let straight = tmp("straight");
        let mut a = start(&straight, &config).unwrap();
        train(&straight, &config, &mut a, 6, Progress::Quiet).unwrap();

        let halves = tmp("halves");
        let mut b = start(&halves, &config).unwrap();
        train(&halves, &config, &mut b, 3, Progress::Quiet).unwrap();
        save_state(&halves, &b).unwrap();
        drop(b);
        let (config2, mut c) = open(&halves).unwrap();
        assert_eq!(config2, config);
        assert_eq!(c.step, 3);
        train(&halves, &config2, &mut c, 6, Progress::Quiet).unwrap();

        assert_eq!(a.model, c.model, "weights differ after resuming");
        assert_eq!(a.opt, c.opt, "optimizer moments differ after resuming");
        let losses = |s: &State| s.history.steps.iter().map(|r| r.loss).collect::<Vec<_>>();
        assert_eq!(losses(&a), losses(&c));
        // the end-of-run checkpoint holds the final state
        let (_, d) = open(&straight).unwrap();
        assert_eq!(d.model, a.model);
        assert_eq!(d.step, 6);
        for dir in [straight, halves] {
            std::fs::remove_dir_all(dir).unwrap();
        }
    }

    #[test]
    fn bad_values_and_missing_runs_are_errors() {
        let bad = RunConfig {
            lr: -1.0,
            ..micro(1)
        };
        let e = bad.validate().unwrap_err().to_string();
        assert!(e.contains("lr"), "{e}");
        assert!(
            RunConfig {
                batch_size: 1,
                ..micro(1)
            }
            .validate()
            .is_err()
        );
        assert!(
            RunConfig {
                two_object: 2.0,
                ..micro(1)
            }
            .validate()
            .is_err()
        );
        let e = RunConfig {
            world: World {
                shapes: 9,
                colours: 5,
            },
            ..micro(1)
        }
        .validate()
        .unwrap_err()
        .to_string();
        assert!(e.contains("shapes") && e.contains("got 9"), "{e}");
        let missing = tmp("missing");
        assert!(
            open(&missing)
                .unwrap_err()
                .to_string()
                .contains("no such run folder")
        );
        // a run folder whose checkpoint is damaged
        let dir = tmp("damaged");
        let config = micro(1);
        let mut s = start(&dir, &config).unwrap();
        train(&dir, &config, &mut s, 1, Progress::Quiet).unwrap();
        std::fs::write(dir.join(CHECKPOINT_DIR).join(OPTIMIZER_FILE), b"junk").unwrap();
        let e = open(&dir).err().unwrap().to_string();
        assert!(e.contains("optimizer"), "{e}");
        std::fs::write(dir.join(RUN_FILE), b"{").unwrap();
        let e = open(&dir).err().unwrap().to_string();
        assert!(e.contains("run.json"), "{e}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_non_finite_loss_names_the_step_and_keeps_the_checkpoint() {
        let dir = tmp("nan");
        let config = RunConfig {
            checkpoint_interval: 2,
            ..micro(6)
        };
        let mut s = start(&dir, &config).unwrap();
        train(&dir, &config, &mut s, 2, Progress::Quiet).unwrap();
        // poison one weight: the next forward pass gives NaN
        s.model.text_projection.weight[[0, 0]] = f32::NAN;
        let e = train(&dir, &config, &mut s, 6, Progress::Quiet).unwrap_err();
        let text = e.to_string();
        assert!(
            matches!(
                e,
                RunError::NonFinite {
                    checkpoint: Some(2),
                    ..
                }
            ),
            "{text}"
        );
        assert!(text.contains("step 2"), "{text}");
        let (_, kept) = open(&dir).unwrap();
        assert_eq!(kept.step, 2);
        assert!(
            kept.model
                .text_projection
                .weight
                .iter()
                .all(|v| v.is_finite())
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
