//! `train caption IMAGE...`: captions for image files.

use super::{CommandError, bad_arg, load_images, load_run, shown};
use model::{Beam, Caption, Captioner, Model, Sampling, Strategy};
use std::path::{Path, PathBuf};
use tokenizer::Tokenizer;

/// The widest beam `--beam` accepts.
pub const MAX_BEAM: usize = 100;

/// Arguments of `train caption`.
#[derive(clap::Args, Debug, Clone)]
pub struct CaptionArgs {
    /// Image files (PNG or JPEG, any size).
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
    /// The run folder.
    #[arg(long, default_value = "runs/default")]
    pub run: PathBuf,
    /// Beam search with this many beams (instead of greedy decoding).
    #[arg(long)]
    pub beam: Option<usize>,
    /// Sample with this temperature (instead of greedy decoding).
    #[arg(long)]
    pub temperature: Option<f32>,
    /// Sample only among the K most likely tokens (implies sampling).
    #[arg(long)]
    pub top_k: Option<usize>,
    /// Seed of the sampler.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

impl CaptionArgs {
    /// The decoding strategy the flags ask for ([`strategy`]).
    ///
    /// # Errors
    /// As [`strategy`].
    pub fn strategy(&self) -> Result<Strategy, CommandError> {
        strategy(self.beam, self.temperature, self.top_k, self.seed)
    }

    /// Runs the command.
    ///
    /// # Errors
    /// A bad flag, a run folder that is not one, an unreadable image.
    pub fn execute(&self) -> Result<String, CommandError> {
        let strategy = self.strategy()?;
        let run = load_run(&self.run)?;
        let captions = caption_files(&run.model, &run.tokenizer, &self.images, &strategy)?;
        Ok(render(&self.images, &captions))
    }
}

// ANCHOR: strategy
/// The decoding strategy the flags ask for (`caption`, `ask`, `chat`):
/// greedy by default, beam search with `--beam`, sampling with
/// `--temperature` and/or `--top-k`.
///
/// # Errors
/// [`CommandError::BadArg`] for a beam width or top-k of 0, a negative
/// or non-finite temperature, or beam search and sampling together.
pub fn strategy(
    beam: Option<usize>,
    temperature: Option<f32>,
    top_k: Option<usize>,
    seed: u64,
) -> Result<Strategy, CommandError> {
    let sampling = temperature.is_some() || top_k.is_some();
    match (beam, sampling) {
        (Some(_), true) => Err(bad_arg(
            "beam",
            "choose beam search (--beam) or sampling (--temperature, --top-k), not both",
        )),
        (Some(0), _) => Err(bad_arg("beam", "the beam width must be at least 1")),
        (Some(width), false) if width > MAX_BEAM => Err(bad_arg(
            "beam",
            format!("at most {MAX_BEAM} beams (wider ones only cost time)"),
        )),
        (Some(width), false) => Ok(Strategy::Beam(Beam {
            width,
            length_penalty: 1.0,
        })),
        (None, true) => {
            let temperature = temperature.unwrap_or(1.0);
            if !temperature.is_finite() || temperature < 0.0 {
                return Err(bad_arg(
                    "temperature",
                    format!("must be a number ≥ 0, got {temperature}"),
                ));
            }
            if top_k == Some(0) {
                return Err(bad_arg("top-k", "must be at least 1"));
            }
            Ok(Strategy::Sample {
                sampling: Sampling { temperature, top_k },
                seed,
            })
        }
        (None, false) => Ok(Strategy::Greedy),
    }
}
// ANCHOR_END: strategy

/// Captions of image files, in the order given.
///
/// # Errors
/// The first unreadable image, named.
pub fn caption_files<P: AsRef<Path>>(
    model: &Model,
    tokenizer: &Tokenizer,
    paths: &[P],
    strategy: &Strategy,
) -> Result<Vec<Caption>, CommandError> {
    // a chunk of images at a time: any number of files costs one chunk's memory
    let captioner = Captioner::new(model, tokenizer);
    let mut captions = Vec::with_capacity(paths.len());
    for chunk in paths.chunks(super::IMAGE_CHUNK) {
        let images = load_images(model, chunk)?; // [n, 3, S, S]
        captions.extend(captioner.caption(&images, strategy));
    }
    Ok(captions)
}

/// One line per image: the file, the caption, its log-probability.
pub fn render<P: AsRef<Path>>(paths: &[P], captions: &[Caption]) -> String {
    let mut out = String::new();
    for (path, c) in paths.iter().zip(captions) {
        let end = if c.finished { "" } else { " (cut at max_len)" };
        let text = if c.text.trim().is_empty() {
            "(empty caption)"
        } else {
            c.text.as_str()
        };
        out += &format!(
            "{}: {text}{end}  [log p = {:.2}]\n",
            shown(path.as_ref()),
            c.log_prob
        );
    }
    out
}
