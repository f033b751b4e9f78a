//! `train dataset export --out DIR --count N`: the toy dataset as PNG files
//! and a `captions.tsv`, in the own-data format (`train --data DIR` reads it).

use super::{CommandError, bad_arg};
use crate::ToyData;
use crate::data::World;
use crate::data::folder::CAPTIONS_FILE;
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
    if !(1..=MAX_COUNT).contains(&count) {
        return Err(bad_arg(
            "count",
            format!("must be between 1 and {MAX_COUNT}, got {count}"),
        ));
    }
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
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| CommandError::Io { path, source }
    };
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
    std::fs::create_dir_all(out).map_err(io(out))?;
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
    let path = out.join(CAPTIONS_FILE);
    model::write_atomic(&path, tsv.as_bytes()).map_err(io(&path))?;
    Ok(scenes)
}
// ANCHOR_END: export
