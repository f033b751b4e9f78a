//! `train dataset export --out DIR --count N`: the toy dataset as PNG files
//! and a `captions.tsv`, in the own-data format (`train --data DIR` reads it);
//! `train dataset export-questions`: scenes of several objects with a
//! `questions.tsv` (and their captions), the own-question format.

use super::{CommandError, bad_arg};
use crate::ToyData;
use crate::data::World;
use crate::data::folder::CAPTIONS_FILE;
use crate::data::qa_folder::QUESTIONS_FILE;
use crate::data::questions::{Example, QaData};
use crate::data::scenes::{DEFAULT_SIDE, MAX_OBJECTS, SceneConfig};
use crate::data::toy::Scene;
use std::path::{Path, PathBuf};

/// Arguments of `train dataset export`.
#[derive(clap::Args, Debug, Clone)]
pub struct ExportArgs {
    /// The folder to write: a new or empty one (an existing data set is
    /// never overwritten or mixed with the new one).
    #[arg(long)]
    pub out: PathBuf,
    /// How many images.
    #[arg(long)]
    pub count: usize,
    /// Seed of the scenes.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Fraction of two-object scenes.
    #[arg(long, default_value_t = 0.0)]
    pub two_object: f32,
    /// Shapes of the toy world (the first N, 2 to 6).
    #[arg(long, default_value_t = World::FULL.shapes)]
    pub shapes: usize,
    /// Colours of the toy world (the first N, 3 to 8).
    #[arg(long, default_value_t = World::FULL.colours)]
    pub colours: usize,
}

/// Scenes drawn per step of the stream.
const PER_STEP: usize = 64;

/// The most images one export writes: a million files of about 1 kB.
pub const MAX_COUNT: usize = 1_000_000;

impl ExportArgs {
    /// Runs the command.
    ///
    /// # Errors
    /// A bad count or fraction, or a file that cannot be written.
    pub fn execute(&self) -> Result<String, CommandError> {
        let data = ToyData {
            seed: self.seed,
            two_object: self.two_object,
            world: World {
                shapes: self.shapes,
                colours: self.colours,
            },
        };
        let scenes = export(&self.out, self.count, &data)?;
        Ok(format!(
            "wrote {} images and {} into {}\n",
            scenes.len(),
            CAPTIONS_FILE,
            self.out.display()
        ))
    }
}

// ANCHOR: export
/// Writes `count` toy scenes as `00000.png`, `00001.png`, … (32×32) and
/// their captions as `captions.tsv` into `out`; returns the scenes.
///
/// The scenes are those of training steps 0, 1, … of a run with the seed,
/// fraction of two-object scenes and world of `data`, 64 a step: what
/// training sees (no held-out combination).
///
/// `out` must be new or empty, so the folder holds exactly this data set;
/// `captions.tsv` is written last, atomically, so a folder with one is
/// complete.
///
/// # Errors
/// [`CommandError::BadArg`] for a count of 0 or above [`MAX_COUNT`], a
/// fraction outside `[0, 1]`, a world out of range or an `out` folder that
/// is not empty; [`CommandError::Io`] / [`CommandError::Image`] if a file
/// cannot be written.
pub fn export(out: &Path, count: usize, data: &ToyData) -> Result<Vec<Scene>, CommandError> {
    check_count(count)?;
    let two_object = data.two_object;
    if !(0.0..=1.0).contains(&two_object) {
        return Err(bad_arg(
            "two-object",
            format!("must be a fraction in [0, 1], got {two_object}"),
        ));
    }
    if let Err((name, why)) = data.world.check() {
        return Err(bad_arg(name, why));
    }
    new_folder(out)?;
    let mut scenes = Vec::with_capacity(count);
    let mut tsv = String::new();
    for step in 0..count.div_ceil(PER_STEP) {
        let (batch, images) = data.scenes(step as u64, PER_STEP); // [64, 3, 32, 32]
        for (scene, image) in batch.into_iter().zip(images.outer_iter()) {
            if scenes.len() == count {
                break;
            }
            let name = format!("{:05}.png", scenes.len());
            vision::save_png(&image, out.join(&name))?;
            tsv += &format!("{name}\t{}\n", scene.caption());
            scenes.push(scene);
        }
    }
    write_tsv(out, CAPTIONS_FILE, &tsv)?;
    Ok(scenes)
}
// ANCHOR_END: export

/// Checks an export's image count.
fn check_count(count: usize) -> Result<(), CommandError> {
    if !(1..=MAX_COUNT).contains(&count) {
        return Err(bad_arg(
            "count",
            format!("must be between 1 and {MAX_COUNT}, got {count}"),
        ));
    }
    Ok(())
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CommandError {
    let path = path.to_path_buf();
    move |source| CommandError::Io { path, source }
}

/// Creates `out`, or checks that it is empty: an export never overwrites
/// or mixes with an existing data set.
fn new_folder(out: &Path) -> Result<(), CommandError> {
    if out.exists() {
        let mut entries = std::fs::read_dir(out).map_err(io(out))?;
        if entries.next().is_some() {
            return Err(bad_arg(
                "out",
                format!(
                    "{} is not empty; export into a new folder (an existing data set is never overwritten)",
                    out.display()
                ),
            ));
        }
    }
    std::fs::create_dir_all(out).map_err(io(out))
}

/// Writes `out/name` atomically.
fn write_tsv(out: &Path, name: &str, tsv: &str) -> Result<(), CommandError> {
    let path = out.join(name);
    model::write_atomic(&path, tsv.as_bytes()).map_err(io(&path))
}

/// Arguments of `train dataset export-questions`.
#[derive(clap::Args, Debug, Clone)]
pub struct ExportQuestionsArgs {
    /// The folder to write: a new or empty one.
    #[arg(long)]
    pub out: PathBuf,
    /// How many images (one question each).
    #[arg(long)]
    pub count: usize,
    /// Seed of the scenes and questions.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Side of the scenes in pixels (45 to 256).
    #[arg(long, default_value_t = DEFAULT_SIDE)]
    pub side: usize,
    /// Most objects in a scene (1 to 6).
    #[arg(long, default_value_t = MAX_OBJECTS)]
    pub max_objects: usize,
    /// Shapes of the toy world (the first N, 2 to 6).
    #[arg(long, default_value_t = World::FULL.shapes)]
    pub shapes: usize,
    /// Colours of the toy world (the first N, 3 to 8).
    #[arg(long, default_value_t = World::FULL.colours)]
    pub colours: usize,
}

impl ExportQuestionsArgs {
    /// Runs the command.
    ///
    /// # Errors
    /// As [`export_questions`].
    pub fn execute(&self) -> Result<String, CommandError> {
        let data = QaData {
            seed: self.seed,
            world: World {
                shapes: self.shapes,
                colours: self.colours,
            },
            scenes: SceneConfig {
                side: self.side,
                min_objects: 1,
                max_objects: self.max_objects,
            },
            ..QaData::default()
        };
        let examples = export_questions(&self.out, self.count, &data)?;
        Ok(format!(
            "wrote {} images, {} and {} into {}\n",
            examples.len(),
            QUESTIONS_FILE,
            CAPTIONS_FILE,
            self.out.display()
        ))
    }
}

// ANCHOR: export_questions
/// Writes `count` scenes of several objects as `00000.png`, … (`side ×
/// side`), one question about each as `questions.tsv` (`file<TAB>question
/// <TAB>answer<TAB>family`) and each scene's caption as `captions.tsv`, so
/// the folder serves both the captioning and the question stages; returns
/// the examples.
///
/// The examples are those of training steps 0, 1, … of `data` with one
/// turn a conversation (a follow-up, "and what colour is it?", means
/// nothing on a line of its own), 64 a step: seen pairs, seen wording.
///
/// # Errors
/// [`CommandError::BadArg`] for a count of 0 or above [`MAX_COUNT`], a
/// world or scene config out of range, an `out` folder that is not empty;
/// [`CommandError::Io`] / [`CommandError::Image`] if a file cannot be
/// written.
pub fn export_questions(
    out: &Path,
    count: usize,
    data: &QaData,
) -> Result<Vec<Example>, CommandError> {
    check_count(count)?;
    data.check().map_err(|(name, why)| bad_arg(name, why))?;
    new_folder(out)?;
    let data = QaData {
        max_turns: 1,
        ..data.clone()
    };
    let mut examples = Vec::with_capacity(count);
    let (mut questions, mut captions) = (String::new(), String::new());
    for step in 0..count.div_ceil(PER_STEP) {
        let (batch, images) = data.batch(step as u64, PER_STEP); // [64, 3, S, S]
        for (example, image) in batch.into_iter().zip(images.outer_iter()) {
            if examples.len() == count {
                break;
            }
            let name = format!("{:05}.png", examples.len());
            vision::save_png(&image, out.join(&name))?;
            let turn = &example.conversation.turns[0];
            let question = turn.user.trim_start_matches(tokenizer::IMAGE).trim();
            questions += &format!(
                "{name}\t{question}\t{}\t{}\n",
                turn.assistant,
                turn.meta.family.name()
            );
            captions += &format!("{name}\t{}\n", example.scene.caption());
            examples.push(example);
        }
    }
    write_tsv(out, CAPTIONS_FILE, &captions)?;
    write_tsv(out, QUESTIONS_FILE, &questions)?;
    Ok(examples)
}
// ANCHOR_END: export_questions
