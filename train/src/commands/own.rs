//! Training and evaluating on the user's own data: `train --data DIR` and
//! `train eval RUN --data DIR` (the folder format is in
//! [`crate::data::folder`]).
//!
//! A run on own data is an ordinary run folder (`run.json`, `checkpoint/`,
//! `loss.svg`), so every command reads it; its tokenizer is trained on the
//! folder's training captions, and `own-data.json` records the folder, the
//! split and the final evaluation. Every 10th caption line is held out for
//! validation; the evaluation reports the training and the validation split
//! apart.

use super::CommandError;
use crate::data::Tokens;
use crate::data::folder::{DataError, FolderData, read_captions};
use crate::run::{self, History, RunConfig, State};
use crate::{AdamW, AdamWState, RunError};
use model::{Captioner, Model, Strategy, embed_texts, similarity, top_k};
use ndarray::{Axis, s};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use tokenizer::Tokenizer;

/// The file a run on own data writes.
pub const OWN_DATA_FILE: &str = "own-data.json";

/// At most this many training items are evaluated (the first ones).
pub const MAX_EVAL_TRAIN: usize = 200;

/// The figures of one split of a data folder.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct OwnMetrics {
    /// Items evaluated.
    pub items: usize,
    /// Image → text recall@1 and @5 among the split's distinct captions.
    pub image_to_text_r1: f32,
    pub image_to_text_r5: f32,
    /// Text → image recall@1 and @5 among the split's images (a hit is any
    /// image with that caption).
    pub text_to_image_r1: f32,
    pub text_to_image_r5: f32,
    /// Greedy captions equal to the true caption (words compared).
    pub caption_exact: f32,
    /// Teacher-forced next-token accuracy of the decoder on the true captions.
    pub token_accuracy: f32,
}

/// Training and validation figures, reported apart.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct OwnEval {
    pub train: OwnMetrics,
    pub validation: OwnMetrics,
}

/// What `own-data.json` holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OwnRun {
    /// The data folder, as an absolute path (so `--resume` and `eval` find
    /// it from any working directory; runs written before kept it as given).
    pub data: String,
    pub train_items: usize,
    pub validation_items: usize,
    pub blank_lines: usize,
    /// The final evaluation (`None` while training).
    pub eval: Option<OwnEval>,
}

impl OwnEval {
    /// The report as a markdown table, the two splits side by side.
    pub fn table(&self) -> String {
        let (t, v) = (&self.train, &self.validation);
        let pct = |x: f32| format!("{:.1} %", 100.0 * x);
        let mut out = String::from("| metric | train | validation |\n| --- | ---: | ---: |\n");
        out += &format!("| items | {} | {} |\n", t.items, v.items);
        for (name, a, b) in [
            ("image → text R@1", t.image_to_text_r1, v.image_to_text_r1),
            ("image → text R@5", t.image_to_text_r5, v.image_to_text_r5),
            ("text → image R@1", t.text_to_image_r1, v.text_to_image_r1),
            ("text → image R@5", t.text_to_image_r5, v.text_to_image_r5),
            ("caption exact match", t.caption_exact, v.caption_exact),
            ("token accuracy", t.token_accuracy, v.token_accuracy),
        ] {
            out += &format!("| {name} | {} | {} |\n", pct(a), pct(b));
        }
        out
    }
}

fn words(text: &str) -> Vec<&str> {
    text.split_whitespace().collect()
}

// ANCHOR: evaluate_items
/// Evaluates `model` on items `indices` of `data`.
///
/// # Panics
/// If a caption is longer than the model's `max_len` (check with
/// [`FolderData::check_lengths`] first).
pub fn evaluate_items(
    model: &Model,
    tokenizer: &Tokenizer,
    data: &FolderData,
    indices: &[usize],
) -> OwnMetrics {
    let n = indices.len();
    if n == 0 {
        return OwnMetrics::default();
    }
    let images = data.images.select(Axis(0), indices); // [N, 3, S, S]
    let captions: Vec<String> = indices
        .iter()
        .map(|&i| data.items[i].caption.clone())
        .collect();
    let tokens = Tokens::new(tokenizer, model.config());
    let captioner = Captioner::new(model, tokenizer);
    let (mut hits, mut exact, mut predicted) = (0usize, 0usize, 0usize);
    let mut image_embeds = ndarray::Array2::zeros((n, model.config().embed_dim));
    for start in (0..n).step_by(64) {
        let end = (start + 64).min(n);
        let chunk = images.slice(s![start..end, .., .., ..]);
        let (image_tokens, embeds) = model.encode_images(&chunk); // [b, N_img, C], [b, E]
        image_embeds.slice_mut(s![start..end, ..]).assign(&embeds);
        // teacher forcing: the decoder reads tokens[.., ..T-1] and predicts tokens[.., 1..]
        let (ids, lengths) = tokens.encode(&captions[start..end]); // [b, T]
        let t = ids.ncols();
        let logits = model
            .decoder
            .logits(&image_tokens, &ids.slice(s![.., ..t - 1])); // [b, T-1, V]
        for (b, &len) in lengths.iter().enumerate() {
            for p in 0..len - 1 {
                let best = model::argmax(&logits.slice(s![b, p, ..]));
                hits += (best as u32 == ids[[b, p + 1]]) as usize;
                predicted += 1;
            }
        }
        for (c, truth) in captioner
            .caption(&chunk, &Strategy::Greedy)
            .iter()
            .zip(&captions[start..end])
        {
            exact += (words(&c.text) == words(truth)) as usize;
        }
    }
    // retrieval: distinct captions for image → text; any image of the caption for text → image
    let mut distinct: Vec<String> = captions.clone();
    distinct.sort();
    distinct.dedup();
    let text_embeds = embed_texts(model, tokenizer, &distinct); // [D, E]
    let truth: Vec<usize> = captions
        .iter()
        .map(|c| distinct.binary_search(c).expect("every caption is listed"))
        .collect();
    let i2t = top_k(&similarity(&image_embeds, &text_embeds), 5); // per image, over D texts
    let t2i = top_k(&similarity(&text_embeds, &image_embeds), 5); // per text, over N images
    let recall = |rankings: &[Vec<model::Ranked>], hit: &dyn Fn(usize, usize) -> bool, k: usize| {
        let found = rankings
            .iter()
            .enumerate()
            .filter(|(q, r)| r.iter().take(k).any(|x| hit(*q, x.index)))
            .count();
        found as f32 / rankings.len() as f32
    };
    let i2t_hit = |image: usize, text: usize| truth[image] == text;
    let t2i_hit = |text: usize, image: usize| truth[image] == text;
    OwnMetrics {
        items: n,
        image_to_text_r1: recall(&i2t, &i2t_hit, 1),
        image_to_text_r5: recall(&i2t, &i2t_hit, 5),
        text_to_image_r1: recall(&t2i, &t2i_hit, 1),
        text_to_image_r5: recall(&t2i, &t2i_hit, 5),
        caption_exact: exact as f32 / n as f32,
        token_accuracy: hits as f32 / predicted.max(1) as f32,
    }
}
// ANCHOR_END: evaluate_items

/// Both splits of a data folder: the first [`MAX_EVAL_TRAIN`] training
/// items and every validation item.
pub fn evaluate_folder(model: &Model, tokenizer: &Tokenizer, data: &FolderData) -> OwnEval {
    let mut train = data.train_indices();
    train.truncate(MAX_EVAL_TRAIN);
    OwnEval {
        train: evaluate_items(model, tokenizer, data, &train),
        validation: evaluate_items(model, tokenizer, data, &data.validation_indices()),
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CommandError + '_ {
    move |source| CommandError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), CommandError> {
    let text =
        serde_json::to_string_pretty(value).map_err(|e| io(path)(std::io::Error::other(e)))?;
    model::write_atomic(path, text.as_bytes()).map_err(io(path))
}

/// How a run on own data reports progress.
pub use crate::run::Progress;

// ANCHOR: train_own
/// Starts a new run in `run` on the data folder `data_dir` with `config`
/// (its toy-data setting `two_object` is not used): writes `run.json` and
/// `own-data.json`, returns the data and the untrained state, which holds
/// the run folder's lock.
///
/// The tokenizer is trained on the training captions; the model reads
/// captions as long as the preset's `max_len` or the longest caption,
/// whichever is more, and no caption may need more than
/// `config.max_caption_tokens`.
///
/// # Errors
/// A bad config, any [`DataError`] (file and line), a caption longer than
/// `max_caption_tokens`, fewer than 2 training items, a run folder that
/// already holds a run or is being trained.
pub fn start_own(
    data_dir: &Path,
    run: &Path,
    config: &RunConfig,
) -> Result<(FolderData, State), CommandError> {
    config.validate()?;
    if run::holds_run(run) {
        return Err(RunError::Exists {
            run: run.to_path_buf(),
        }
        .into());
    }
    let (items, _) = read_captions(data_dir)?;
    let tokenizer = FolderData::train_tokenizer(&items)?;
    let mut model_config = config.model_config(&tokenizer)?;
    let longest = FolderData::longest(&items, &tokenizer);
    if longest.tokens > config.max_caption_tokens {
        return Err(DataError::TooLong {
            path: data_dir.join(crate::data::folder::CAPTIONS_FILE),
            line: longest.line,
            tokens: longest.tokens,
            max: config.max_caption_tokens,
        }
        .into());
    }
    model_config.max_len = model_config.max_len.max(longest.tokens);
    let data = FolderData::load(data_dir, model_config.image.image_size())?;
    let n_train = data.train_indices().len();
    if n_train < 2 {
        return Err(DataError::TooFew {
            path: data.captions_path(),
            why: format!(
                "{n_train} training caption(s); training needs at least 2 (every {}th line is validation)",
                crate::data::folder::VALIDATION_EVERY
            ),
        }
        .into());
    }
    let model = model_config
        .init(&mut StdRng::seed_from_u64(config.seed))
        .map_err(RunError::Config)?;
    let lock = run::claim(run, config)?;
    write_json(&run.join(OWN_DATA_FILE), &own_run(data_dir, &data))?; // names the folder for --resume
    let state = State {
        opt: AdamWState::new(
            AdamW {
                weight_decay: config.weight_decay,
                ..AdamW::default()
            },
            &model,
        ),
        model,
        tokenizer,
        step: 0,
        history: History::default(),
        lock: Some(lock),
    };
    Ok((data, state))
}

/// Trains a new run in `run` on the data folder `data_dir` with `config`
/// ([`start_own`], then every step), writes its files and returns the
/// final evaluation.
///
/// # Errors
/// As [`start_own`], or a non-finite loss.
pub fn train_own(
    data_dir: &Path,
    run: &Path,
    config: &RunConfig,
    progress: Progress,
) -> Result<(OwnRun, State), CommandError> {
    let (data, mut state) = start_own(data_dir, run, config)?;
    train_steps(run, config, &data, &mut state, config.steps, progress)?;
    let mut own = own_run(data_dir, &data);
    own.eval = Some(finish_own(run, &data, &state)?);
    write_json(&run.join(OWN_DATA_FILE), &own)?;
    Ok((own, state))
}
// ANCHOR_END: train_own

fn own_run(data_dir: &Path, data: &FolderData) -> OwnRun {
    // absolute, so the run finds its data from any working directory
    let absolute = data_dir
        .canonicalize()
        .or_else(|_| std::path::absolute(data_dir))
        .unwrap_or_else(|_| data_dir.to_path_buf());
    OwnRun {
        data: absolute.display().to_string(),
        train_items: data.train_indices().len(),
        validation_items: data.validation_indices().len(),
        blank_lines: data.blank_lines,
        eval: None,
    }
}

/// Continues a run on own data from its last checkpoint, on the folder
/// its `own-data.json` names (or `data_dir` if given), to its `steps`.
/// Batches are a pure function of `(seed, step)`, so the result is the
/// uninterrupted run's.
///
/// # Errors
/// A folder that is not a run on own data, a damaged checkpoint, any
/// [`DataError`].
pub fn resume_own(
    run: &Path,
    data_dir: Option<&Path>,
    progress: Progress,
) -> Result<(OwnRun, State), CommandError> {
    let recorded: OwnRun = read_own(run)?;
    let (config, mut state) = run::resume(run)?;
    let data_dir = data_dir.map_or_else(|| PathBuf::from(&recorded.data), Path::to_path_buf);
    let data = FolderData::load(&data_dir, state.model.config().image.image_size())?;
    data.check_lengths(&state.tokenizer, state.model.config().max_len)?;
    let mut own = own_run(&data_dir, &data);
    train_steps(run, &config, &data, &mut state, config.steps, progress)?;
    own.eval = Some(finish_own(run, &data, &state)?);
    write_json(&run.join(OWN_DATA_FILE), &own)?;
    Ok((own, state))
}

/// Whether `run` is a run on own data (it has an `own-data.json`).
pub fn is_own_run(run: &Path) -> bool {
    run.join(OWN_DATA_FILE).is_file()
}

/// The data folder a run on own data was trained on (`None` for a run on
/// the toy data, or an `own-data.json` that cannot be read: then the
/// evaluation reports that).
pub fn recorded_data(run: &Path) -> Option<PathBuf> {
    if !is_own_run(run) {
        return None;
    }
    Some(read_own(run).map_or_else(
        |_| run.join(OWN_DATA_FILE), // names the broken file in the error that follows
        |own| PathBuf::from(own.data),
    ))
}

fn read_own(run: &Path) -> Result<OwnRun, CommandError> {
    let path = run.join(OWN_DATA_FILE);
    let text = model::read_limited(&path, run::MAX_JSON_BYTES).map_err(io(&path))?;
    serde_json::from_slice(&text).map_err(|e| CommandError::BadLine {
        path: path.clone(),
        line: e.line(),
        why: format!("not a valid {OWN_DATA_FILE}: {e}"),
    })
}

/// Writes the checkpoint, `loss.svg`, and evaluates both splits.
fn finish_own(run: &Path, data: &FolderData, state: &State) -> Result<OwnEval, CommandError> {
    run::save_state(run, state)?;
    let svg = crate::plot::loss_svg(&state.history.steps);
    let path = run.join(run::LOSS_PLOT_FILE);
    model::write_atomic(&path, svg.as_bytes()).map_err(io(&path))?;
    Ok(evaluate_folder(&state.model, &state.tokenizer, data))
}

// ANCHOR: train_steps
/// The training loop on own data: [`run::train_loop`] on
/// [`FolderData::batch`] from `state.step` to `stop` (at most
/// `config.steps`), with a checkpoint every `checkpoint_interval` steps and
/// at the end; no evaluation on the way (the finished run evaluates both
/// splits).
///
/// # Errors
/// [`RunError::NonFinite`] naming the step (the last checkpoint is kept), a
/// checkpoint that cannot be written.
///
/// # Panics
/// If a caption is longer than the model reads
/// ([`FolderData::check_lengths`]).
pub fn train_steps(
    run: &Path,
    config: &RunConfig,
    data: &FolderData,
    state: &mut State,
    stop: usize,
    progress: Progress,
) -> Result<(), CommandError> {
    let batch = config.batch_size.min(data.train_indices().len());
    run::check_step_memory(&state.model, batch)?;
    let batch_of = |step: u64, state: &State| {
        let tokens = Tokens::new(&state.tokenizer, state.model.config());
        data.batch(config.seed, step, config.batch_size, &tokens)
    };
    run::train_loop(run, config, state, stop, progress, batch_of, None)?;
    Ok(())
}
// ANCHOR_END: train_steps

/// Evaluates a saved run on a data folder (its validation split must not
/// be empty); writes nothing.
///
/// # Errors
/// A run folder that is not one, any [`DataError`], a caption longer than
/// the model reads, a folder with fewer than 10 caption lines.
pub fn eval_own(run: &Path, data_dir: &Path) -> Result<(OwnEval, FolderData), CommandError> {
    let loaded = super::load_run(run)?;
    let data = FolderData::load(data_dir, loaded.model.config().image.image_size())?;
    data.check_lengths(&loaded.tokenizer, loaded.model.config().max_len)?;
    if data.validation_indices().is_empty() {
        return Err(DataError::TooFew {
            path: data.captions_path(),
            why: format!(
                "{} caption line(s): the validation split (every {}th line) is empty",
                data.items.len(),
                crate::data::folder::VALIDATION_EVERY
            ),
        }
        .into());
    }
    let eval = evaluate_folder(&loaded.model, &loaded.tokenizer, &data);
    Ok((eval, data))
}

/// A recorded data folder as printed: relative to the working directory
/// when it is inside it (as the user most likely typed it), else absolute.
fn shown_data(data: &str) -> String {
    let data = Path::new(data);
    std::env::current_dir()
        .and_then(|cwd| cwd.canonicalize())
        .ok()
        .and_then(|cwd| data.strip_prefix(cwd).ok().map(Path::to_path_buf))
        .filter(|rel| !rel.as_os_str().is_empty())
        .unwrap_or_else(|| data.to_path_buf())
        .display()
        .to_string()
}

/// What `train --data DIR` prints.
pub fn render_train(own: &OwnRun, run: &Path) -> String {
    let mut out = format!(
        "trained on {} ({} training, {} validation captions)\n",
        shown_data(&own.data),
        own.train_items,
        own.validation_items
    );
    if own.blank_lines > 0 {
        out += &format!("skipped {} blank line(s)\n", own.blank_lines);
    }
    if let Some(eval) = &own.eval {
        out += &format!("\n{}", eval.table());
    }
    out += &format!("\nwrote {}\n", run.display());
    out
}

/// What `train eval RUN --data DIR` prints.
pub fn render_eval(eval: &OwnEval, data: &FolderData) -> String {
    let mut out = String::new();
    if data.blank_lines > 0 {
        out += &format!("skipped {} blank line(s)\n", data.blank_lines);
    }
    out + &eval.table()
}

/// `train --data DIR`: trains, prints the evaluation, exit code 1 on error.
/// With `force`, a run already in `run` is deleted first ([`run::clear`]).
pub fn train_cli(
    data: Option<&Path>,
    run: &Path,
    config: &RunConfig,
    resume: bool,
    force: bool,
) -> std::process::ExitCode {
    let result = match (resume, data) {
        (true, _) if !is_own_run(run) => Err(super::bad_arg(
            "resume",
            format!(
                "{} is not a run on own data (no {OWN_DATA_FILE})",
                run.display()
            ),
        )),
        (true, _) => {
            super::note(&format!("resuming {}", run.display()));
            resume_own(run, data, Progress::Bar)
        }
        (false, Some(data)) => {
            super::note(&format!(
                "training on {} for {} steps of {} images into {}",
                data.display(),
                config.steps,
                config.batch_size,
                run.display()
            ));
            let cleared = if force { run::clear(run) } else { Ok(()) };
            cleared
                .map_err(CommandError::from)
                .and_then(|()| train_own(data, run, config, Progress::Bar))
        }
        (false, None) => Err(super::bad_arg("data", "give the data folder")),
    };
    super::report(result.map(|(own, _)| render_train(&own, run)))
}

/// `train eval RUN --data DIR`: prints the evaluation, exit code 1 on error.
pub fn eval_cli(run: &Path, data: &Path) -> std::process::ExitCode {
    super::report(eval_own(run, data).map(|(eval, data)| render_eval(&eval, &data)))
}
