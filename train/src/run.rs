//! The training run: the loop around [`crate::train_step`], the run folder,
//! checkpoints and resume, and the files a finished run leaves behind.
//!
//! A run folder `runs/<name>/` holds
//! - `run.json`: the [`RunConfig`];
//! - `checkpoint/`: the model's checkpoint folder (`model.safetensors`,
//!   `config.txt`, `tokenizer.txt`), the AdamW moments
//!   (`optimizer.safetensors`, whose metadata holds the step) and the
//!   history so far (`history.json`), replaced as a whole, atomically
//!   ([`save_state`]);
//! - `metrics.json`: the loss history and the evaluations;
//! - `loss.svg`: the loss curve; `samples.md`: greedy captions of a few images;
//! - `.lock`: held by the one training that writes the folder ([`lock`]).
//!
//! A crash (a kill, a power cut, a full disk) at any moment leaves a
//! complete checkpoint, the old or the new one: [`open`] reads whichever is
//! there, [`resume`] finishes the interrupted swap and removes the
//! leftovers first. Starting a run never deletes an existing one; [`clear`]
//! does, when asked (`--force`).

use crate::data::{Tokens, ToyData, World};
use crate::eval::{EvalConfig, EvalReport, evaluate, sample_captions};
use crate::memory::{self, MemoryError};
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
    /// Own data: the most tokens a caption may need, `<|bos|>` and
    /// `<|eos|>` included. The model reads captions as long as the longest
    /// one, so this bounds its size and a step's memory; a longer caption
    /// is an error naming its line.
    #[serde(default = "default_max_caption_tokens")]
    pub max_caption_tokens: usize,
}
// ANCHOR_END: run_config

fn small_world() -> World {
    World::SMALL
}

fn default_max_caption_tokens() -> usize {
    DEFAULT_MAX_CAPTION_TOKENS
}

/// The default of [`RunConfig::max_caption_tokens`]: four times the toy
/// captions' 16.
pub const DEFAULT_MAX_CAPTION_TOKENS: usize = 64;

/// The most [`RunConfig::max_caption_tokens`] may be raised to.
pub const MAX_CAPTION_TOKENS: usize = 1024;

/// The largest loss weight accepted: far above any useful one, and far
/// below where `weight × loss` overflows an `f32`.
pub const MAX_LOSS_WEIGHT: f32 = 1e6;

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
            max_caption_tokens: DEFAULT_MAX_CAPTION_TOKENS,
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
        for (name, w) in [
            ("contrastive-weight", self.contrastive_weight),
            ("caption-weight", self.caption_weight),
        ] {
            if !non_negative(w) || w > MAX_LOSS_WEIGHT {
                return bad(
                    name,
                    &format!("must be a number in [0, {MAX_LOSS_WEIGHT:e}], got {w}"),
                );
            }
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
        if !(3..=MAX_CAPTION_TOKENS).contains(&self.max_caption_tokens) {
            return bad(
                "max-caption-tokens",
                &format!(
                    "must be between 3 and {MAX_CAPTION_TOKENS}, got {}",
                    self.max_caption_tokens
                ),
            );
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
    /// An own data folder is wrong (its file and line are named).
    Data(crate::data::folder::DataError),
    /// The folder already holds a run, and starting over was not asked for.
    Exists { run: PathBuf },
    /// Another training holds the run folder's lock.
    Locked { run: PathBuf },
    /// What was asked would not fit in memory.
    Memory(MemoryError),
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunError::BadValue { name, why } => write!(f, "bad value for {name}: {why}"),
            RunError::Config(e) => write!(f, "impossible model shape: {e}"),
            RunError::Io { path, source } => {
                write!(f, "{}: {source}", path.display())?;
                if source.kind() == std::io::ErrorKind::StorageFull {
                    write!(
                        f,
                        " (the disk is full: the last checkpoint is kept; free some space and \
                         continue with --resume)"
                    )?;
                }
                Ok(())
            }
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
            RunError::Data(e) => write!(f, "{e}"),
            RunError::Exists { run } => write!(
                f,
                "{} already holds a run; pass --resume to continue it, --force to delete it and \
                 start over, or choose another --name",
                run.display()
            ),
            RunError::Locked { run } => write!(
                f,
                "{} is being written by another training (its .lock is held); wait for it to \
                 finish or choose another --name",
                run.display()
            ),
            RunError::Memory(e) => write!(f, "{e}"),
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
pub const LOCK_FILE: &str = ".lock";
/// A checkpoint being written: possibly incomplete.
pub const CHECKPOINT_TMP: &str = "checkpoint.tmp";
/// A complete checkpoint about to replace `checkpoint/`.
pub const CHECKPOINT_NEW: &str = "checkpoint.new";
/// The checkpoint being replaced.
pub const CHECKPOINT_OLD: &str = "checkpoint.old";

/// The training state a checkpoint restores.
#[derive(Debug)]
pub struct State {
    pub model: Model,
    pub tokenizer: Tokenizer,
    pub opt: AdamWState<Model>,
    /// Steps taken.
    pub step: usize,
    pub history: History,
    /// The run folder's lock, when this state is being trained
    /// ([`start`], [`resume`]); `None` for a state only read ([`open`]).
    pub lock: Option<RunLock>,
}

/// The lock of a run folder: while it lives, no other process can train
/// into the folder ([`lock`]). The operating system releases it when the
/// process ends, however it ends, so a crash never leaves a folder locked.
#[derive(Debug)]
pub struct RunLock {
    _file: std::fs::File,
    run: PathBuf,
}

impl RunLock {
    /// The run folder it locks.
    pub fn run(&self) -> &Path {
        &self.run
    }
}

pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> RunError + '_ {
    move |source| RunError::Io {
        path: path.to_path_buf(),
        source,
    }
}

pub(crate) fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), RunError> {
    let text = serde_json::to_string_pretty(value).map_err(|source| RunError::Json {
        path: path.to_path_buf(),
        source,
    })?;
    model::write_atomic(path, text.as_bytes()).map_err(io(path))
}

/// The largest JSON file of a run read: 256 MiB (a history of a million
/// steps is about 200 MB).
pub const MAX_JSON_BYTES: u64 = 256 << 20;

pub(crate) fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, RunError> {
    let bytes = model::read_limited(path, MAX_JSON_BYTES).map_err(io(path))?;
    serde_json::from_slice(&bytes).map_err(|source| RunError::Json {
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

/// Test-only failure injection: the `n`-th [`failpoint`] reached on this
/// thread (counting from 0) returns an error, as if the process had been
/// killed there; nothing after it runs, and nothing is cleaned up.
#[cfg(test)]
pub(crate) mod failpoints {
    use std::cell::Cell;

    thread_local! {
        static FAIL_AT: Cell<Option<usize>> = const { Cell::new(None) };
        static REACHED: Cell<usize> = const { Cell::new(0) };
        static KIND: Cell<std::io::ErrorKind> = const { Cell::new(std::io::ErrorKind::Interrupted) };
    }

    /// Fail at the `n`-th failpoint from now on (`None`: never), with an
    /// I/O error of `kind`.
    pub fn fail_at(n: Option<usize>, kind: std::io::ErrorKind) {
        FAIL_AT.set(n);
        REACHED.set(0);
        KIND.set(kind);
    }

    /// Failpoints reached since [`fail_at`].
    pub fn reached() -> usize {
        REACHED.get()
    }

    pub fn hit() -> Option<std::io::ErrorKind> {
        let n = REACHED.get();
        REACHED.set(n + 1);
        (FAIL_AT.get() == Some(n)).then(|| KIND.get())
    }
}

/// A point where a crash is possible: in tests, [`failpoints`] can stop
/// here with an I/O error naming `what`; elsewhere it does nothing.
#[inline]
fn failpoint(what: &Path) -> Result<(), RunError> {
    #[cfg(test)]
    if let Some(kind) = failpoints::hit() {
        return Err(RunError::Io {
            path: what.to_path_buf(),
            source: std::io::Error::new(kind, "failpoint"),
        });
    }
    let _ = what;
    Ok(())
}

fn rename(from: &Path, to: &Path) -> Result<(), RunError> {
    failpoint(from)?;
    std::fs::rename(from, to).map_err(io(from))
}

fn remove_dir(dir: &Path) -> Result<(), RunError> {
    failpoint(dir)?;
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(dir)(e)),
        _ => Ok(()),
    }
}

/// Flushes a folder's entries (the renames in it) to disk, so that after a
/// power cut the renames are there in the order they were made.
fn sync_dir(dir: &Path) -> Result<(), RunError> {
    #[cfg(unix)]
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir))?;
    let _ = dir;
    Ok(())
}

// ANCHOR: lock
/// Takes the lock of the run folder `run` (creating the folder), so that
/// no other training writes into it at the same time, then repairs what a
/// crash may have left ([`recover`]).
///
/// # Errors
/// [`RunError::Locked`] if another process holds it, [`RunError::Io`].
pub fn lock(run: &Path) -> Result<RunLock, RunError> {
    std::fs::create_dir_all(run).map_err(io(run))?;
    let path = run.join(LOCK_FILE);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io(&path))?;
    // a lock just released can stay held a moment longer: a process that
    // forked keeps a copy of the file until its child starts its program
    let mut tries = 0;
    loop {
        match file.try_lock() {
            Ok(()) => break,
            Err(std::fs::TryLockError::WouldBlock) if tries < 20 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(RunError::Locked {
                    run: run.to_path_buf(),
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(&path)(e)),
        }
    }
    recover(run)?;
    Ok(RunLock {
        _file: file,
        run: run.to_path_buf(),
    })
}
// ANCHOR_END: lock

// ANCHOR: recover
/// Brings a run folder back to one complete `checkpoint/` after a crash in
/// [`save_state`], whichever step it stopped at, and removes leftovers:
///
/// 1. `checkpoint.tmp/` may be half written: it goes;
/// 2. `checkpoint.new/` is complete (it is renamed from `.tmp` only once
///    written): the swap it was part of is finished, `checkpoint/` moving to
///    `checkpoint.old/` and `checkpoint.new/` taking its place;
/// 3. with no `checkpoint/` but a `checkpoint.old/`, the old one comes back;
/// 4. `checkpoint.old/` goes, and so do the temporary files of interrupted
///    atomic writes (`.run.json.tmp-1234`).
///
/// Each step leaves a state this same function repairs, so a crash during
/// recovery is repaired by the next one. The caller holds the lock.
///
/// # Errors
/// [`RunError::Io`] if a file cannot be renamed or removed.
pub fn recover(run: &Path) -> Result<(), RunError> {
    let (dir, tmp, new, old) = (
        run.join(CHECKPOINT_DIR),
        run.join(CHECKPOINT_TMP),
        run.join(CHECKPOINT_NEW),
        run.join(CHECKPOINT_OLD),
    );
    if tmp.exists() {
        remove_dir(&tmp)?;
    }
    if new.exists() {
        if dir.exists() {
            if old.exists() {
                remove_dir(&old)?;
            }
            rename(&dir, &old)?;
        }
        rename(&new, &dir)?;
        sync_dir(run)?;
    }
    if !dir.exists() && old.exists() {
        rename(&old, &dir)?;
        sync_dir(run)?;
    }
    if old.exists() {
        remove_dir(&old)?;
    }
    // `model::write_atomic` writes `.<name>.tmp-<pid>` beside its target
    for entry in std::fs::read_dir(run).map_err(io(run))? {
        let path = entry.map_err(io(run))?.path();
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        if name.starts_with('.') && name.contains(".tmp-") && path.is_file() {
            failpoint(&path)?;
            std::fs::remove_file(&path).map_err(io(&path))?;
        }
    }
    Ok(())
}
// ANCHOR_END: recover

/// The complete checkpoint folder of a run as it is on disk, without
/// changing anything (for readers: `eval`, `caption`, …): `checkpoint/`,
/// or, after a crash in the middle of a swap, `checkpoint.new/` or
/// `checkpoint.old/`; `None` if there is none.
pub fn checkpoint_dir(run: &Path) -> Option<PathBuf> {
    [CHECKPOINT_DIR, CHECKPOINT_NEW, CHECKPOINT_OLD]
        .into_iter()
        .map(|name| run.join(name))
        .find(|dir| dir.is_dir())
}

// ANCHOR: checkpoint
/// Writes the checkpoint of `state` into `run/checkpoint/` so that a crash
/// at any moment leaves a complete checkpoint, the old one or the new one:
///
/// 1. every file goes into `checkpoint.tmp/` (each written atomically);
/// 2. `checkpoint.tmp/` is renamed `checkpoint.new/`: from now on the new
///    checkpoint is known to be complete;
/// 3. `checkpoint/` is renamed `checkpoint.old/`, `checkpoint.new/` is
///    renamed `checkpoint/`, `checkpoint.old/` is removed.
///
/// Between the renames of step 3 there is no `checkpoint/`, but a complete
/// `checkpoint.new/` and `checkpoint.old/`: [`recover`] finishes the swap,
/// [`checkpoint_dir`] reads through it. Holds the run's lock while it
/// writes (the state's own, or taken for the call).
///
/// # Errors
/// [`RunError::Locked`] if another process trains into `run`,
/// [`RunError::Io`] (a full disk among them) or [`RunError::Checkpoint`]
/// if a file cannot be written.
pub fn save_state(run: &Path, state: &State) -> Result<(), RunError> {
    write_checkpoint(run, state.lock.as_ref(), |tmp| {
        model::save_checkpoint(tmp, &state.model, &state.tokenizer).map_err(checkpoint_error)?;
        failpoint(tmp)?;
        save_optimizer(tmp, &state.opt, state.step)?;
        write_json(&tmp.join(HISTORY_FILE), &state.history)
    })
}
// ANCHOR_END: checkpoint

/// The optimiser's moments into `dir/optimizer.safetensors`, with the step
/// they belong to in the metadata.
pub(crate) fn save_optimizer<M: Params>(
    dir: &Path,
    opt: &AdamWState<M>,
    step: usize,
) -> Result<(), RunError> {
    let metadata = BTreeMap::from([
        ("step".to_string(), step.to_string()),
        ("adamw_steps".to_string(), opt.steps.to_string()),
    ]);
    let path = dir.join(OPTIMIZER_FILE);
    failpoint(&path)?;
    model::save_weights(&path, opt, &metadata).map_err(optimizer_write_error(&path))
}

/// The crash-safe swap of [`save_state`] for any checkpoint: `write` fills
/// the fresh folder it is given (`run/checkpoint.tmp/`), then the folder
/// replaces `run/checkpoint/` by the renames described there. The run's
/// lock is taken for the call unless `held` is it.
///
/// # Errors
/// [`RunError::Locked`], [`RunError::Io`], or what `write` returns.
pub fn write_checkpoint(
    run: &Path,
    held: Option<&RunLock>,
    write: impl FnOnce(&Path) -> Result<(), RunError>,
) -> Result<(), RunError> {
    let _lock = match held {
        Some(held) if held.run == run => None,
        _ => Some(lock(run)?), // also recovers
    };
    let (dir, tmp, new, old) = (
        run.join(CHECKPOINT_DIR),
        run.join(CHECKPOINT_TMP),
        run.join(CHECKPOINT_NEW),
        run.join(CHECKPOINT_OLD),
    );
    recover(run)?; // a previous save of this process may have failed half way
    // 1. everything into checkpoint.tmp/
    write(&tmp)?;
    sync_dir(&tmp)?;
    // 2. complete: checkpoint.tmp/ becomes checkpoint.new/
    rename(&tmp, &new)?;
    // 3. the swap
    if dir.exists() {
        rename(&dir, &old)?;
    }
    rename(&new, &dir)?;
    sync_dir(run)?;
    if old.exists() {
        remove_dir(&old)?;
    }
    Ok(())
}

/// Optimiser moments that could not be written (a full disk) are an I/O
/// error naming the file, not "bad optimizer state".
fn optimizer_write_error(path: &Path) -> impl FnOnce(WeightsError) -> RunError + '_ {
    move |e| match e {
        WeightsError::Io { path, source } => RunError::Io { path, source },
        other => RunError::Optimizer {
            path: path.to_path_buf(),
            why: other.to_string(),
        },
    }
}

/// A checkpoint that could not be written because the disk is full is an
/// I/O error naming the file, not a "bad checkpoint".
pub(crate) fn checkpoint_error(e: CheckpointError) -> RunError {
    match e {
        CheckpointError::Io { path, source }
        | CheckpointError::Weights {
            source: WeightsError::Io { path, source },
        } => RunError::Io { path, source },
        other => RunError::Checkpoint(other),
    }
}

/// Reads the checkpoint of a run folder back ([`checkpoint_dir`]: after a
/// crash, whichever complete copy is there), checking that the step, the
/// optimiser's step count and the history agree with each other and with
/// the config.
///
/// # Errors
/// Any missing or damaged file, named.
pub fn load_state(run: &Path, config: &RunConfig) -> Result<State, RunError> {
    let dir = checkpoint_dir(run).ok_or_else(|| RunError::Io {
        path: run.join(CHECKPOINT_DIR),
        source: std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "no checkpoint yet (the run stopped before its first one)",
        ),
    })?;
    let model::Checkpoint { model, tokenizer } =
        model::load_checkpoint(&dir).map_err(RunError::Checkpoint)?;
    let mut opt = AdamWState::new(AdamW::from_run(config), &model);
    let step = load_optimizer(&dir, &mut opt, config.steps)?;
    let history_path = dir.join(HISTORY_FILE);
    let history: History = read_json(&history_path)?;
    let recorded: Vec<usize> = history.steps.iter().map(|r| r.step).collect();
    check_history(&history_path, &recorded, step)?;
    Ok(State {
        model,
        tokenizer,
        opt,
        step,
        history,
        lock: None,
    })
}

/// Reads `dir/optimizer.safetensors` into `opt` and returns the step it
/// belongs to, checked: at most `steps`, and one AdamW update per step.
///
/// # Errors
/// [`RunError::Optimizer`] naming the file and what is wrong.
pub(crate) fn load_optimizer<M: Params>(
    dir: &Path,
    opt: &mut AdamWState<M>,
    steps: usize,
) -> Result<usize, RunError> {
    let path = dir.join(OPTIMIZER_FILE);
    let bad = |why: String| RunError::Optimizer {
        path: path.clone(),
        why,
    };
    let metadata = model::load_weights(&path, opt).map_err(|e: WeightsError| bad(e.to_string()))?;
    let step = checked_step(&metadata, steps).map_err(bad)?;
    opt.steps = step as u64;
    Ok(step)
}

/// The step an optimiser state's metadata records, checked: a number of at
/// most `steps`, and `adamw_steps` equal to it (one update per step).
///
/// # Errors
/// What is wrong, as text.
pub fn checked_step(metadata: &BTreeMap<String, String>, steps: usize) -> Result<usize, String> {
    let number = |key: &str| -> Result<u64, String> {
        metadata
            .get(key)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("metadata lacks a numeric {key:?}"))
    };
    let (step, adamw_steps) = (number("step")?, number("adamw_steps")?);
    if step > steps as u64 {
        return Err(format!("step {step} is past the run's {steps} steps"));
    }
    if adamw_steps != step {
        return Err(format!(
            "adamw_steps {adamw_steps} differs from step {step} (one update per step)"
        ));
    }
    Ok(step as usize)
}

/// An error naming `path` unless `recorded` is exactly the steps `0..step`.
pub fn check_history(path: &Path, recorded: &[usize], step: usize) -> Result<(), RunError> {
    if recorded.iter().copied().eq(0..step) {
        return Ok(());
    }
    Err(RunError::Io {
        path: path.to_path_buf(),
        source: std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "the history records {} steps, not steps 0 to {} of the checkpoint",
                recorded.len(),
                step.saturating_sub(1)
            ),
        ),
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

/// Names of everything a run writes into its folder: what [`clear`]
/// removes, and what makes a folder hold a run.
pub const RUN_FILES: [&str; 10] = [
    RUN_FILE,
    CHECKPOINT_DIR,
    CHECKPOINT_TMP,
    CHECKPOINT_NEW,
    CHECKPOINT_OLD,
    METRICS_FILE,
    LOSS_PLOT_FILE,
    SAMPLES_FILE,
    "eval.json",
    crate::commands::own::OWN_DATA_FILE,
];

/// Whether `run` holds a run (its config or a checkpoint).
pub fn holds_run(run: &Path) -> bool {
    RUN_FILES[..5].iter().any(|name| run.join(name).exists())
}

/// The folder of run `name` under `out`, if `name` is a plain folder name:
/// not empty, not `.` or `..`, without `/` and not absolute, so a run can
/// never land outside `out`.
///
/// # Errors
/// [`RunError::BadValue`] naming `name`.
pub fn run_dir(out: &Path, name: &str) -> Result<PathBuf, RunError> {
    use std::path::Component;
    let mut parts = Path::new(name).components();
    match (parts.next(), parts.next()) {
        (Some(Component::Normal(part)), None) if part == name => Ok(out.join(name)),
        _ => Err(RunError::BadValue {
            name: "name",
            why: format!(
                "{name:?} is not a folder name (the run goes to --out/<name>: no `/`, `..` or empty name)"
            ),
        }),
    }
}

/// Deletes the run in `run` (what [`RUN_FILES`] names, nothing else), under
/// its lock: `--force`. A folder that holds no run is left alone.
///
/// # Errors
/// [`RunError::Locked`] if a training is writing it, [`RunError::Io`].
pub fn clear(run: &Path) -> Result<(), RunError> {
    if !holds_run(run) {
        return Ok(());
    }
    let _lock = lock(run)?;
    for name in RUN_FILES {
        let path = run.join(name);
        let removed = if path.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        match removed {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(&path)(e)),
            _ => {}
        }
    }
    Ok(())
}

/// Claims `run` for a new run: takes its lock, refuses a folder that holds
/// a run already, checks `config` and writes `run.json`.
///
/// # Errors
/// [`RunError::Exists`], [`RunError::Locked`], a bad config, a file error.
pub fn claim(run: &Path, config: &RunConfig) -> Result<RunLock, RunError> {
    config.validate()?;
    let lock = lock(run)?;
    if holds_run(run) {
        return Err(RunError::Exists {
            run: run.to_path_buf(),
        });
    }
    write_json(&run.join(RUN_FILE), config)?;
    Ok(lock)
}

/// Starts a new run in `run`, which must not hold one ([`claim`]); the
/// returned state holds the folder's lock until it is dropped.
///
/// # Errors
/// As [`claim`], or a tokenizer or model that cannot be made.
pub fn start(run: &Path, config: &RunConfig) -> Result<State, RunError> {
    config.validate()?;
    let tokenizer = config
        .data()
        .train_tokenizer()
        .map_err(RunError::Tokenizer)?;
    let model_config = config.model_config(&tokenizer)?;
    let lock = claim(run, config)?;
    let model = model_config
        .init(&mut StdRng::seed_from_u64(config.seed))
        .map_err(RunError::Config)?;
    let opt = AdamWState::new(AdamW::from_run(config), &model);
    Ok(State {
        model,
        tokenizer,
        opt,
        step: 0,
        history: History::default(),
        lock: Some(lock),
    })
}

/// Opens an existing run folder to read it: its config and its last
/// checkpoint. Changes nothing on disk (see [`resume`] to train on).
///
/// # Errors
/// A missing folder, a missing or damaged file, named.
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

/// Opens a run folder to train on: takes its lock, repairs what a crash
/// left ([`recover`]) and loads the last checkpoint.
///
/// # Errors
/// [`RunError::Locked`] if another training holds it, else as [`open`].
pub fn resume(run: &Path) -> Result<(RunConfig, State), RunError> {
    if !run.is_dir() {
        return open(run); // the error for a missing folder
    }
    let lock = lock(run)?;
    let (config, mut state) = open(run)?;
    state.lock = Some(lock);
    Ok((config, state))
}

// ANCHOR: step_memory
/// Bytes a training step of `batch` examples of `model` needs, measured
/// rather than guessed: the peak memory of a forward and backward pass at
/// 8 and at 16 examples (captions of `max_len` tokens, the most a batch
/// can hold), extended in a straight line to `batch`, plus the batch
/// itself, plus an eighth: the threads' buffers overlap differently from
/// one run to the next, so a measured peak moves by a few per cent, and
/// the line extends that from 16 examples to `batch`. `None` if
/// [`memory::Counting`] is not the global allocator (the `train` program
/// installs it).
pub fn step_bytes(model: &Model, batch: usize) -> Option<u64> {
    use crate::{caption_loss, contrastive_loss};
    let config = model.config();
    let (size, t) = (config.image.image_size(), config.max_len);
    let probe = |b: usize| {
        let images = ndarray::Array4::<f32>::zeros((b, config.image.in_channels(), size, size));
        let mut tokens = ndarray::Array2::from_elem((b, t), config.special.pad);
        tokens.column_mut(0).fill(config.special.bos);
        tokens.column_mut(t - 1).fill(config.special.eos);
        let lengths = vec![t; b];
        let mut grads = model.zeros_like();
        memory::peak_during(|| {
            let (out, cache) = model.forward(&images, &tokens, &lengths);
            let c = contrastive_loss(&out.image_embeds, &out.text_embeds, out.logit_scale);
            let cap = caption_loss(&out.logits, &tokens, &lengths);
            let dout = model::ModelOutputGrads {
                dimage_embeds: c.dimage_embeds,
                dtext_embeds: c.dtext_embeds,
                dlogit_scale: c.dscale,
                dlogits: cap.dlogits,
            };
            model.backward(&dout, &cache, &mut grads);
        })
        .1
    };
    let (small, large) = (probe(8)?, probe(16)?);
    let per_example = large.saturating_sub(small).div_ceil(8);
    // the batch: images and tokens, drawn and then copied once
    let data = 2 * 4 * (config.image.in_channels() * size * size + 2 * t) as u64;
    let extra = (batch as u64).saturating_sub(8);
    let estimate = small
        .saturating_add(extra.saturating_mul(per_example))
        .saturating_add((batch as u64).saturating_mul(data));
    Some(estimate.saturating_add(estimate / 8))
}

/// Refuses a batch whose training step would not fit in the memory
/// available ([`memory::available_bytes`]), saying which batch size fits.
/// Batches of at most 16 are not checked (the model itself is the most
/// they can need), nor is anything when [`step_bytes`] cannot measure.
///
/// # Errors
/// [`RunError::Memory`].
pub fn check_step_memory(model: &Model, batch: usize) -> Result<(), RunError> {
    if batch <= 16 {
        return Ok(());
    }
    let Some(needed) = step_bytes(model, batch) else {
        return Ok(());
    };
    let available = memory::available_bytes();
    if needed <= available {
        return Ok(());
    }
    // the largest batch that fits, by the same straight line
    let (at8, at16) = (step_bytes(model, 8), step_bytes(model, 16));
    let fits = match (at8, at16) {
        (Some(a), Some(b)) if b > a => (available.saturating_sub(a) / ((b - a) / 8).max(1)) + 8,
        _ => 16,
    };
    Err(RunError::Memory(MemoryError {
        what: format!("a training step of {batch} examples"),
        needed,
        available,
        fits: format!("a --batch-size of at most about {fits} fits"),
    }))
}
// ANCHOR_END: step_memory

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
    check_step_memory(&state.model, config.batch_size)?;
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
                Progress::Bar if bar.is_hidden() => crate::commands::note(&line),
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
    check_eval_memory(&state.model, &data, config.eval_per_object)?;
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

/// Refuses an evaluation of `per_object` images of each object of
/// `data`'s world whose images would not fit in memory.
///
/// # Errors
/// [`RunError::Memory`] naming `--per-object`.
pub fn check_eval_memory(model: &Model, data: &ToyData, per_object: usize) -> Result<(), RunError> {
    let c = model.config();
    let size = c.image.image_size() as u64;
    // each image: its pixels, its embedding and its caption (a few hundred bytes)
    let per_image = 4 * (c.image.in_channels() as u64 * size * size + c.embed_dim as u64) + 512;
    let objects = data.world.objects().len() as u64;
    memory::check_items(
        objects.saturating_mul(per_object as u64),
        per_image,
        0,
        memory::available_bytes(),
        |n| format!("an evaluation on {n} images"),
        |n| format!("--per-object {} fits", n / objects.max(1)),
    )
    .map_err(RunError::Memory)
}

/// Evaluates a saved run and writes `eval.json` into it.
///
/// # Errors
/// A run folder that cannot be opened, an evaluation too large for memory.
pub fn eval_run(run: &Path, per_object: usize) -> Result<EvalReport, RunError> {
    let (config, state) = open(run)?;
    check_eval_memory(&state.model, &config.data(), per_object)?;
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

    // ---- crash safety -----------------------------------------------------

    /// Copies a run folder (files and one level of folders), as a crash left it.
    fn copy_run(from: &Path, to: &Path) {
        let _ = std::fs::remove_dir_all(to);
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let path = entry.unwrap().path();
            let target = to.join(path.file_name().unwrap());
            if path.is_dir() {
                std::fs::create_dir_all(&target).unwrap();
                for inner in std::fs::read_dir(&path).unwrap() {
                    let inner = inner.unwrap().path();
                    std::fs::copy(&inner, target.join(inner.file_name().unwrap())).unwrap();
                }
            } else {
                std::fs::copy(&path, &target).unwrap();
            }
        }
    }

    /// The entries of a run folder that only a crash leaves behind.
    fn leftovers(run: &Path) -> Vec<String> {
        std::fs::read_dir(run)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(CHECKPOINT_DIR) && n != CHECKPOINT_DIR || n.contains(".tmp-"))
            .collect()
    }

    // ANCHOR: crash_test
    /// A save killed at each of its renames and removals (a failpoint stops
    /// it there, as a kill would: nothing after it runs), and the recovery
    /// after it killed at each of its own steps: the run always opens, on
    /// the old checkpoint or the new one, and resumes to exactly the
    /// weights of the run that was never interrupted.
    #[test]
    fn a_kill_at_every_step_of_a_save_never_loses_the_run() {
        let config = RunConfig {
            checkpoint_interval: 2,
            ..micro(4)
        };
        let straight = tmp("kill-straight");
        let mut a = start(&straight, &config).unwrap();
        train(&straight, &config, &mut a, 4, Progress::Quiet).unwrap();

        // how many failpoints one save passes
        let probe = tmp("kill-probe");
        let mut p = start(&probe, &config).unwrap();
        train(&probe, &config, &mut p, 3, Progress::Quiet).unwrap(); // saved at 2, at 3 in memory
        failpoints::fail_at(None, std::io::ErrorKind::Interrupted);
        save_state(&probe, &p).unwrap();
        let points = failpoints::reached();
        assert!(points >= 6, "{points} failpoints");

        for k in 0..points {
            let dir = tmp(&format!("kill-{k}"));
            let mut s = start(&dir, &config).unwrap();
            train(&dir, &config, &mut s, 3, Progress::Quiet).unwrap();
            failpoints::fail_at(Some(k), std::io::ErrorKind::Interrupted);
            assert!(save_state(&dir, &s).is_err(), "failpoint {k}");
            failpoints::fail_at(None, std::io::ErrorKind::Interrupted);
            drop(s); // the process died: its lock goes with it

            // readers see a complete checkpoint, old or new, and change nothing
            let (_, r) = open(&dir).unwrap_or_else(|e| panic!("failpoint {k}: {e}"));
            assert!(r.step == 2 || r.step == 3, "failpoint {k}: step {}", r.step);
            let loaded = crate::commands::load_run(&dir).unwrap();
            assert_eq!(loaded.model, r.model);

            // a recovery killed at each of its steps is repaired by the next
            for j in 0.. {
                let copy = tmp(&format!("kill-{k}-{j}"));
                copy_run(&dir, &copy);
                failpoints::fail_at(Some(j), std::io::ErrorKind::Interrupted);
                let interrupted = lock(&copy).is_err();
                failpoints::fail_at(None, std::io::ErrorKind::Interrupted);
                let (_, again) = resume(&copy).unwrap_or_else(|e| panic!("{k}/{j}: {e}"));
                assert!(again.step == 2 || again.step == 3);
                assert!(leftovers(&copy).is_empty(), "{:?}", leftovers(&copy));
                drop(again);
                std::fs::remove_dir_all(&copy).unwrap();
                if !interrupted {
                    break;
                }
            }

            // and training on gives the uninterrupted run's weights, bit for bit
            let (config2, mut t) = resume(&dir).unwrap();
            assert!(leftovers(&dir).is_empty(), "{:?}", leftovers(&dir));
            train(&dir, &config2, &mut t, 4, Progress::Quiet).unwrap();
            assert_eq!(t.model, a.model, "failpoint {k}: weights differ");
            assert_eq!(t.opt, a.opt, "failpoint {k}: moments differ");
            assert_eq!(t.history.steps, a.history.steps);
            drop(t);
            std::fs::remove_dir_all(&dir).unwrap();
        }
        for d in [straight, probe] {
            std::fs::remove_dir_all(d).unwrap();
        }
    }
    // ANCHOR_END: crash_test

    #[test]
    fn starting_over_a_run_never_deletes_it_without_force() {
        let config = micro(2);
        let dir = tmp("exists");
        let mut s = start(&dir, &config).unwrap();
        train(&dir, &config, &mut s, 2, Progress::Quiet).unwrap();
        drop(s);
        // a crash between the two renames: no checkpoint/, the old and the new
        std::fs::rename(dir.join(CHECKPOINT_DIR), dir.join(CHECKPOINT_OLD)).unwrap();
        copy_run(&dir.join(CHECKPOINT_OLD), &dir.join(CHECKPOINT_NEW));
        let e = start(&dir, &config).unwrap_err();
        assert!(matches!(e, RunError::Exists { .. }), "{e}");
        assert!(e.to_string().contains("--force"), "{e}");
        // nothing was deleted: the interrupted swap was finished instead
        assert_eq!(open(&dir).unwrap().1.step, 2);
        assert!(leftovers(&dir).is_empty(), "{:?}", leftovers(&dir));
        // a run that stopped before its first checkpoint is a run too
        let early = tmp("exists-early");
        drop(start(&early, &config).unwrap());
        assert!(matches!(
            start(&early, &config).unwrap_err(),
            RunError::Exists { .. }
        ));
        // --force deletes what a run wrote, and only that
        std::fs::write(dir.join("notes.txt"), "mine").unwrap();
        clear(&dir).unwrap();
        assert!(!holds_run(&dir));
        assert_eq!(
            std::fs::read_to_string(dir.join("notes.txt")).unwrap(),
            "mine"
        );
        drop(start(&dir, &config).unwrap());
        // a folder without a run is left alone
        let other = tmp("not-a-run");
        std::fs::create_dir_all(other.join(CHECKPOINT_DIR.to_string() + "s")).unwrap();
        clear(&other).unwrap();
        assert!(other.join("checkpoints").is_dir());
        for d in [dir, early, other] {
            std::fs::remove_dir_all(d).unwrap();
        }
    }

    #[test]
    fn two_trainings_in_one_folder_are_refused() {
        let config = micro(1);
        let dir = tmp("locked");
        let first = start(&dir, &config).unwrap();
        let e = resume(&dir).unwrap_err();
        assert!(matches!(e, RunError::Locked { .. }), "{e}");
        assert!(e.to_string().contains("another training"), "{e}");
        assert!(matches!(clear(&dir), Err(RunError::Locked { .. })));
        drop(first);
        // the lock goes with its holder
        let mut again = start(&tmp("locked"), &config).unwrap();
        train(&dir, &config, &mut again, 1, Progress::Quiet).unwrap();
        let other = open(&dir); // reading needs no lock
        assert!(other.is_ok());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn leftovers_of_a_crash_are_removed_on_resume() {
        let config = micro(2);
        let dir = tmp("leftovers");
        let mut s = start(&dir, &config).unwrap();
        train(&dir, &config, &mut s, 2, Progress::Quiet).unwrap();
        drop(s);
        std::fs::write(dir.join(".run.json.tmp-99999"), "{").unwrap();
        std::fs::write(dir.join(".metrics.json.tmp-99999"), "").unwrap();
        std::fs::create_dir_all(dir.join(CHECKPOINT_TMP)).unwrap();
        std::fs::write(dir.join(CHECKPOINT_TMP).join("model.safetensors"), b"half").unwrap();
        assert_eq!(leftovers(&dir).len(), 3);
        let (_, state) = resume(&dir).unwrap();
        assert_eq!(state.step, 2);
        assert!(leftovers(&dir).is_empty(), "{:?}", leftovers(&dir));
        drop(state);
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// A real "No space left on device" from `/dev/full`.
    fn disk_full() -> Option<std::io::Error> {
        Path::new("/dev/full")
            .exists()
            .then(|| std::fs::write("/dev/full", b"x").unwrap_err())
    }

    #[test]
    fn a_full_disk_is_reported_as_a_full_disk() {
        let Some(full) = disk_full() else { return };
        assert_eq!(full.kind(), std::io::ErrorKind::StorageFull);
        let path = PathBuf::from("run/checkpoint.tmp/optimizer.safetensors");
        let e = optimizer_write_error(&path)(WeightsError::Io {
            path: path.clone(),
            source: disk_full().unwrap(),
        });
        let text = e.to_string();
        assert!(
            text.contains("optimizer.safetensors: No space left"),
            "{text}"
        );
        assert!(text.contains("the disk is full"), "{text}");
        assert!(!text.contains("bad optimizer state"), "{text}");
        let e = checkpoint_error(CheckpointError::Weights {
            source: WeightsError::Io {
                path: path.clone(),
                source: full,
            },
        });
        assert!(!e.to_string().contains("bad checkpoint"), "{e}");
        // and a real write that fails: metrics.json's temporary file is /dev/full
        let config = micro(1);
        let dir = tmp("full");
        let mut s = start(&dir, &config).unwrap();
        train(&dir, &config, &mut s, 1, Progress::Quiet).unwrap();
        let temporary = dir.join(format!(".{METRICS_FILE}.tmp-{}", std::process::id()));
        std::os::unix::fs::symlink("/dev/full", &temporary).unwrap();
        let text = finish(&dir, &config, &s).unwrap_err().to_string();
        assert!(
            text.contains("metrics.json") && text.contains("No space left"),
            "{text}"
        );
        assert!(text.contains("the disk is full"), "{text}");
        drop(s);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn step_counts_that_disagree_are_refused() {
        let config = micro(2);
        let dir = tmp("steps");
        let mut s = start(&dir, &config).unwrap();
        train(&dir, &config, &mut s, 2, Progress::Quiet).unwrap();
        let path = dir.join(CHECKPOINT_DIR).join(OPTIMIZER_FILE);
        for (step, adamw, want) in [
            (
                u64::MAX,
                u64::MAX,
                "step 18446744073709551615 is past the run's 2 steps",
            ),
            (2, 5, "adamw_steps 5 differs from step 2"),
            (1, 1, "the history records 2 steps, not steps 0 to 0"),
        ] {
            let metadata = BTreeMap::from([
                ("step".to_string(), step.to_string()),
                ("adamw_steps".to_string(), adamw.to_string()),
            ]);
            model::save_weights(&path, &s.opt, &metadata).unwrap();
            let e = open(&dir).unwrap_err().to_string();
            assert!(e.contains(want), "{e}");
        }
        drop(s);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_run_name_is_one_folder_inside_out() {
        let out = Path::new("runs");
        assert_eq!(run_dir(out, "mine").unwrap(), out.join("mine"));
        for name in ["", ".", "..", "../x", "a/b", "/tmp/x", "x/", "a/../b"] {
            let e = run_dir(out, name).unwrap_err().to_string();
            assert!(e.contains("--name") || e.contains("name"), "{name:?}: {e}");
        }
    }

    #[test]
    fn loss_weights_are_bounded() {
        let e = RunConfig {
            caption_weight: 1e38,
            ..micro(1)
        }
        .validate()
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("caption-weight") && e.contains("[0, 1e6]"),
            "{e}"
        );
        assert!(
            RunConfig {
                max_caption_tokens: 1_000_000,
                ..micro(1)
            }
            .validate()
            .is_err()
        );
    }
}
