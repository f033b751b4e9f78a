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

pub mod ask;
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

/// Reads the checkpoint of a run folder: `run/checkpoint/`, or the
/// complete copy a crash in the middle of a save left
/// ([`crate::run::checkpoint_dir`]). Changes nothing on disk.
///
/// # Errors
/// [`CommandError::NotARun`] if `run` is not a folder or has no
/// checkpoint, [`CommandError::Checkpoint`] if the checkpoint is damaged.
pub fn load_run(run: &Path) -> Result<Loaded, CommandError> {
    let not_a_run = |why: &str| CommandError::NotARun {
        path: run.to_path_buf(),
        why: why.to_string(),
    };
    if !run.is_dir() {
        return Err(not_a_run("no such folder"));
    }
    // a training may be swapping its checkpoint right now: look twice
    let mut attempt = 0;
    loop {
        let Some(dir) = crate::run::checkpoint_dir(run) else {
            return Err(not_a_run(
                "it has no checkpoint/ folder (train one with `train --name NAME`)",
            ));
        };
        match model::load_checkpoint(&dir) {
            Ok(model::Checkpoint { model, tokenizer }) => return Ok(Loaded { model, tokenizer }),
            Err(CheckpointError::MissingFile { .. }) if attempt == 0 && !dir.is_dir() => {
                attempt += 1; // the folder was renamed while it was read
            }
            Err(e) => return Err(CommandError::Checkpoint(e)),
        }
    }
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

/// Images read and run through the model at once by the commands: a
/// folder of any size then costs the memory of one chunk, plus one
/// embedding (or caption) per image.
pub const IMAGE_CHUNK: usize = 64;

/// Texts run through the text tower at once: `classify` with thousands of
/// labels (each in every prompt template) costs the memory of one chunk.
pub const TEXT_CHUNK: usize = 256;

/// The embeddings `[N, E]` of image files, read and encoded
/// [`IMAGE_CHUNK`] at a time.
///
/// # Errors
/// The first unreadable file's [`ImageError`], naming it.
pub fn embed_image_files<P: AsRef<Path>>(
    model: &Model,
    paths: &[P],
) -> Result<ndarray::Array2<f32>, CommandError> {
    let mut embeds = ndarray::Array2::zeros((paths.len(), model.config().embed_dim));
    for (i, chunk) in paths.chunks(IMAGE_CHUNK).enumerate() {
        let images = load_images(model, chunk)?; // [n, 3, S, S]
        let (_, e) = model.encode_images(&images); // [n, E]
        let start = i * IMAGE_CHUNK;
        embeds
            .slice_mut(ndarray::s![start..start + chunk.len(), ..])
            .assign(&e);
    }
    Ok(embeds)
}

/// [`model::embed_texts`], [`TEXT_CHUNK`] texts at a time: `[N, E]`.
pub fn embed_texts_chunked(
    model: &Model,
    tokenizer: &Tokenizer,
    texts: &[String],
) -> ndarray::Array2<f32> {
    let mut embeds = ndarray::Array2::zeros((texts.len(), model.config().embed_dim));
    for (i, chunk) in texts.chunks(TEXT_CHUNK).enumerate() {
        let start = i * TEXT_CHUNK;
        embeds
            .slice_mut(ndarray::s![start..start + chunk.len(), ..])
            .assign(&model::embed_texts(model, tokenizer, chunk));
    }
    embeds
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
    /// Ask the multimodal model (`train vlm`) a question about a picture.
    Ask(ask::AskArgs),
    /// Talk with the multimodal model about a picture, turn after turn
    /// (reads questions from standard input when it is not a terminal).
    Chat(ask::ChatArgs),
    /// The toy dataset as files.
    #[command(subcommand)]
    Dataset(DatasetCommand),
}

/// `dataset` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum DatasetCommand {
    /// Write toy images as PNG with a captions.tsv (usable as own data: train --data DIR).
    Export(export::ExportArgs),
    /// Write scenes of several objects as PNG with a questions.tsv (one question an image, its family in the 4th column) and a captions.tsv.
    ExportQuestions(export::ExportQuestionsArgs),
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
            UseCommand::Ask(a) => a.execute(),
            UseCommand::Chat(a) => a.execute(),
            UseCommand::Dataset(DatasetCommand::Export(a)) => a.execute(),
            UseCommand::Dataset(DatasetCommand::ExportQuestions(a)) => a.execute(),
        }
    }
}

/// Runs a command as the program does: its output on stdout, an error as
/// `error: ...` on stderr with exit code 1.
pub fn run_command(command: &UseCommand) -> ExitCode {
    report(command.execute())
}

/// Prints a command's output ([`print_out`]), or its error with exit code 1.
pub fn report<E: fmt::Display>(result: Result<String, E>) -> ExitCode {
    match result {
        Ok(text) => print_out(&text),
        Err(e) => {
            note(&format!("error: {e}"));
            ExitCode::FAILURE
        }
    }
}

// ANCHOR: print_out
/// Writes `text` to standard output, as `print!` does but without its
/// panic when the output cannot be written. A reader that stopped reading
/// (`train tokenize … | head -1` closes the pipe) ends the program quietly
/// with success, as Unix tools do; any other failure (`> /dev/full`, a
/// full disk) is an error with exit code 1.
pub fn print_out(text: &str) -> ExitCode {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            note(&format!("error: cannot write the output: {e}"));
            ExitCode::FAILURE
        }
    }
}

/// Writes a line to standard error (progress, notes, errors), ignoring a
/// failure: with nowhere to report it, the exit code says the rest.
pub fn note(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}
// ANCHOR_END: print_out

/// A path as printed: relative paths as given, with `/` separators.
pub(crate) fn shown(path: &Path) -> String {
    path.display().to_string()
}
