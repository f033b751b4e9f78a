//! Using a trained run from the command line: `caption`, `classify`,
//! `search`, `tokenize`, `dataset export`, and training and evaluating on
//! the user's own data ([`own`]).
//!
//! Each command is a library function returning what it found (tested in
//! `train/tests/commands.rs`) and a `render` into the text the program
//! prints; `train/src/main.rs` only parses the arguments ([`UseCommand`])
//! and calls [`run_command`].
//!
//! Every image goes through [`crate::data::folder::preprocess`]: resized to
//! the model's size and scaled to `[0, 1]`, as the toy images are drawn.
//! User input never panics: a missing or unreadable file, a bad argument or
//! a folder that is not a run is a [`CommandError`] naming it.

pub mod caption;
pub mod classify;
pub mod export;
pub mod own;
pub mod search;
pub mod tokenize;

use crate::RunError;
use crate::data::folder::{DataError, preprocess};
use model::{CheckpointError, Model};
use ndarray::Array4;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use tokenizer::Tokenizer;
use vision::ImageError;

/// What went wrong in a command.
#[derive(Debug)]
pub enum CommandError {
    /// The folder is not a run folder.
    NotARun { path: PathBuf, why: String },
    /// The run's checkpoint is damaged.
    Checkpoint(CheckpointError),
    /// A run could not be trained, opened or written.
    Run(RunError),
    /// An image could not be read.
    Image(ImageError),
    /// A data folder or its captions file is wrong.
    Data(DataError),
    /// An argument has an impossible value.
    BadArg { name: &'static str, why: String },
    /// A file or folder could not be read or written.
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A texts file has a bad line.
    BadLine {
        path: PathBuf,
        line: usize,
        why: String,
    },
    /// A tokenizer file could not be read.
    Tokenizer {
        path: PathBuf,
        source: tokenizer::TokenizerError,
    },
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CommandError::NotARun { path, why } => {
                write!(f, "{}: not a run folder: {why}", path.display())
            }
            CommandError::Checkpoint(e) => write!(f, "bad checkpoint: {e}"),
            CommandError::Run(e) => write!(f, "{e}"),
            CommandError::Image(e) => write!(f, "{e}"),
            CommandError::Data(e) => write!(f, "{e}"),
            CommandError::BadArg { name, why } => write!(f, "bad value for --{name}: {why}"),
            CommandError::Io { path, source } => write!(f, "{}: {source}", path.display()),
            CommandError::BadLine { path, line, why } => {
                write!(f, "{}:{line}: {why}", path.display())
            }
            CommandError::Tokenizer { path, source } => {
                write!(f, "{}: not a tokenizer file: {source}", path.display())
            }
        }
    }
}

impl std::error::Error for CommandError {}

impl From<ImageError> for CommandError {
    fn from(e: ImageError) -> Self {
        CommandError::Image(e)
    }
}

impl From<DataError> for CommandError {
    fn from(e: DataError) -> Self {
        CommandError::Data(e)
    }
}

impl From<RunError> for CommandError {
    fn from(e: RunError) -> Self {
        CommandError::Run(e)
    }
}

pub(crate) fn bad_arg(name: &'static str, why: impl Into<String>) -> CommandError {
    CommandError::BadArg {
        name,
        why: why.into(),
    }
}

/// A trained model and its tokenizer, read from a run folder.
#[derive(Debug)]
pub struct Loaded {
    pub model: Model,
    pub tokenizer: Tokenizer,
}

/// Reads `run/checkpoint/`.
///
/// # Errors
/// [`CommandError::NotARun`] if `run` is not a folder or has no
/// `checkpoint/`, [`CommandError::Checkpoint`] if the checkpoint is damaged.
pub fn load_run(run: &Path) -> Result<Loaded, CommandError> {
    let not_a_run = |why: &str| CommandError::NotARun {
        path: run.to_path_buf(),
        why: why.to_string(),
    };
    if !run.is_dir() {
        return Err(not_a_run("no such folder"));
    }
    let dir = run.join(crate::run::CHECKPOINT_DIR);
    if !dir.is_dir() {
        return Err(not_a_run(
            "it has no checkpoint/ folder (train one with `train --name NAME`)",
        ));
    }
    let model::Checkpoint { model, tokenizer } =
        model::load_checkpoint(&dir).map_err(CommandError::Checkpoint)?;
    Ok(Loaded { model, tokenizer })
}

/// Image files as the model's input: each resized to the model's size and
/// scaled to `[0, 1]`.
///
/// # Shapes
/// `N` paths → `[N, 3, S, S]`
///
/// # Errors
/// The first file's [`ImageError`], naming it.
pub fn load_images<P: AsRef<Path>>(
    model: &Model,
    paths: &[P],
) -> Result<Array4<f32>, CommandError> {
    let size = model.config().image.image_size();
    Ok(preprocess(size).load_batch(paths)?)
}

/// How many of `texts` are longer than the text tower reads (`max_len`
/// with `<|bos|>` and `<|eos|>`): [`model::tokenize_texts`] cuts them, and
/// the commands say so.
pub fn texts_cut(model: &Model, tokenizer: &Tokenizer, texts: &[String]) -> usize {
    let max = model.config().max_len;
    texts
        .iter()
        .filter(|t| tokenizer.encode_ordinary(t).len() + 2 > max)
        .count()
}

/// The note the commands print for texts that were cut.
pub(crate) fn cut_note(cut: usize, max_len: usize) -> String {
    if cut == 0 {
        String::new()
    } else {
        format!(
            "note: {cut} text(s) needed more than the model's {max_len} tokens and were cut to fit\n"
        )
    }
}

/// The commands that use a trained run (flattened into the `train`
/// program's subcommands).
#[derive(clap::Subcommand, Debug)]
pub enum UseCommand {
    /// Write captions for image files of any size (greedy by default).
    Caption(caption::CaptionArgs),
    /// Zero-shot classification of an image among labels, with prompt templates.
    Classify(classify::ClassifyArgs),
    /// Rank images by similarity to a text (--text, --images), or texts to an image (--image, --texts).
    Search(search::SearchArgs),
    /// Show the pieces, IDs and bytes of the tokens of a text.
    Tokenize(tokenize::TokenizeArgs),
    /// The toy dataset as files.
    #[command(subcommand)]
    Dataset(DatasetCommand),
}

/// `dataset` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum DatasetCommand {
    /// Write toy images as PNG with a captions.tsv (usable as own data: train --data DIR).
    Export(export::ExportArgs),
}

impl UseCommand {
    /// Runs the command; returns what it prints.
    ///
    /// # Errors
    /// The command's [`CommandError`].
    pub fn execute(&self) -> Result<String, CommandError> {
        match self {
            UseCommand::Caption(a) => a.execute(),
            UseCommand::Classify(a) => a.execute(),
            UseCommand::Search(a) => a.execute(),
            UseCommand::Tokenize(a) => a.execute(),
            UseCommand::Dataset(DatasetCommand::Export(a)) => a.execute(),
        }
    }
}

/// Runs a command as the program does: its output on stdout, an error as
/// `error: ...` on stderr with exit code 1.
pub fn run_command(command: &UseCommand) -> ExitCode {
    report(command.execute())
}

/// Prints a command's output, or its error with exit code 1.
pub fn report(result: Result<String, CommandError>) -> ExitCode {
    match result {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A path as printed: relative paths as given, with `/` separators.
pub(crate) fn shown(path: &Path) -> String {
    path.display().to_string()
}
