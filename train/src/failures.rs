//! What the model gets wrong: held-out images whose greedy caption is not
//! the true one, with the attribute that is wrong and the image itself.
//!
//! The images are exactly the held-out images of the run's final
//! evaluation (the same stream, the same number per object), so the count of
//! failures here is the complement of the "caption exact match" the
//! evaluation table reports for held-out combinations.

use crate::data::{Object, Scene, ToyData};
use crate::run::{self, RunError};
use model::{Captioner, Model, Strategy};
use ndarray::{Array3, ArrayView3, s};
use std::path::{Path, PathBuf};
use tokenizer::Tokenizer;

/// The markdown table [`write_failures`] writes, and the folder of its images.
pub const FAILURES_FILE: &str = "failures.md";
pub const FAILURES_DIR: &str = "failures";

/// One held-out image captioned wrongly.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    /// Index of the image among the evaluated held-out images.
    pub index: usize,
    /// What the image shows.
    pub truth: Object,
    /// The greedy caption.
    pub written: String,
    /// The caption read back by the grammar (`None`: not a single-object
    /// caption of the grammar).
    pub parsed: Option<Object>,
    /// The image, `[3, H, W]` in `[0, 1]`.
    pub image: Array3<f32>,
}

impl Failure {
    /// Which attributes are wrong, as `"colour: blue → green"` parts joined
    /// by `"; "`, or why the caption could not be read.
    pub fn wrong(&self) -> String {
        let Some(p) = self.parsed else {
            return "not a single-object caption of the grammar".to_string();
        };
        let t = self.truth;
        let mut parts = Vec::new();
        let mut part = |name: &str, want: &str, got: &str| {
            if want != got {
                parts.push(format!("{name}: {want} → {got}"));
            }
        };
        part("shape", t.shape.word(), p.shape.word());
        part("colour", t.colour.word(), p.colour.word());
        part("size", t.size.word(), p.size.word());
        part("position", t.position.words(), p.position.words());
        parts.join("; ")
    }
}

/// Every held-out image of the evaluation and the failures among them.
#[derive(Debug, Clone, PartialEq)]
pub struct Failures {
    /// Held-out images captioned.
    pub images: usize,
    /// Images per held-out object.
    pub per_object: usize,
    /// The wrongly captioned ones, in evaluation order.
    pub failures: Vec<Failure>,
}

// ANCHOR: failures
/// Greedy-captions the held-out images the final evaluation uses
/// (`per_object` each, evaluation stream 0) and keeps the wrong ones.
pub fn held_out_failures(
    model: &Model,
    tokenizer: &Tokenizer,
    data: &ToyData,
    per_object: usize,
) -> Failures {
    let per = per_object.max(1);
    let objects = data.held_out_objects();
    // the held-out split of stream 0 is stream 1 (see `eval::evaluate`)
    let images = data.eval_images(&objects, per, 1); // [N·per, 3, H, W]
    let truth: Vec<Object> = objects
        .iter()
        .flat_map(|&o| std::iter::repeat_n(o, per))
        .collect();
    let captioner = Captioner::new(model, tokenizer);
    let mut failures = Vec::new();
    for start in (0..truth.len()).step_by(64) {
        let end = (start + 64).min(truth.len());
        let chunk = images.slice(s![start..end, .., .., ..]);
        for (i, caption) in captioner
            .caption(&chunk, &Strategy::Greedy)
            .into_iter()
            .enumerate()
        {
            let index = start + i;
            let parsed = match Scene::parse(&caption.text) {
                Some(Scene::Single(o)) => Some(o),
                _ => None,
            };
            if parsed != Some(truth[index]) {
                failures.push(Failure {
                    index,
                    truth: truth[index],
                    written: caption.text,
                    parsed,
                    image: images.slice(s![index, .., .., ..]).to_owned(),
                });
            }
        }
    }
    Failures {
        images: truth.len(),
        per_object: per,
        failures,
    }
}
// ANCHOR_END: failures

/// Writes an image `[3, H, W]` in `[0, 1]` as an RGB PNG, each pixel
/// repeated `scale × scale` times (nearest neighbour), so a 32×32 toy image
/// stays sharp at 128×128.
///
/// # Errors
/// [`RunError::Io`] naming the file.
///
/// # Panics
/// If the image does not have 3 channels or `scale` is 0.
pub fn write_png(path: &Path, image: ArrayView3<f32>, scale: u32) -> Result<(), RunError> {
    let (c, h, w) = image.dim();
    assert!(
        c == 3 && scale > 0,
        "write_png: want [3, H, W] and scale > 0, got {:?} and {scale}",
        image.dim()
    );
    let out = image::RgbImage::from_fn(w as u32 * scale, h as u32 * scale, |x, y| {
        let (x, y) = ((x / scale) as usize, (y / scale) as usize);
        image::Rgb(std::array::from_fn(|k| {
            (image[[k, y, x]].clamp(0.0, 1.0) * 255.0).round() as u8
        }))
    });
    let mut bytes = Vec::new();
    let io = |source| RunError::Io {
        path: path.to_path_buf(),
        source,
    };
    out.write_to(
        &mut std::io::Cursor::new(&mut bytes),
        image::ImageFormat::Png,
    )
    .map_err(|e| io(std::io::Error::other(e)))?;
    model::write_atomic(path, &bytes).map_err(io)
}

/// What [`write_failures`] wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct FailureFiles {
    /// The markdown table.
    pub table: PathBuf,
    /// Failures found, held-out images captioned, failures shown.
    pub failures: usize,
    pub images: usize,
    pub shown: usize,
}

/// `text` as the content of a markdown table cell: a generated caption may
/// hold any bytes, so the characters markdown would read as syntax are
/// escaped and line breaks become spaces.
fn markdown_cell(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '|' | '*' | '_' | '`' | '\\' | '[' | ']' | '#' | '$' => {
                out.push('\\');
                out.push(c);
            }
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '\n' | '\r' | '\t' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// At most `max` of `items`, evenly spread (every `⌈n / max⌉`-th), so the
/// shown failures cover every held-out pair, not just the first.
fn spread<T>(items: &[T], max: usize) -> Vec<&T> {
    if max == 0 {
        return Vec::new();
    }
    let stride = items.len().div_ceil(max).max(1);
    items.iter().step_by(stride).take(max).collect()
}

/// The failure cases of a run folder: writes `out/failures.md` (a table of
/// at most `max` failures, each with its image) and the images as
/// `out/failures/failure-NN.png`, 4× upscaled. Image links in the table are
/// `link_base` + `failures/failure-NN.png`: `""` when the table is read
/// where it lies, `generated/train/` when a chapter in `book/src/`
/// includes it (an include is pasted text: its links resolve from the
/// chapter). They are HTML `<img>` tags, which a table cell holds as well as
/// markdown's and which state the size.
///
/// # Errors
/// A run folder that is not one (named), or a file that cannot be written.
pub fn write_failures(
    run_dir: &Path,
    out: &Path,
    link_base: &str,
    max: usize,
) -> Result<FailureFiles, RunError> {
    let (config, state) = run::open(run_dir)?;
    let data = config.data();
    let found = held_out_failures(
        &state.model,
        &state.tokenizer,
        &data,
        config.eval_per_object,
    );
    let dir = out.join(FAILURES_DIR);
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| RunError::Io { path, source }
    };
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    // drop the images of an earlier call, which may have had more failures
    for entry in std::fs::read_dir(&dir).map_err(io(&dir))? {
        let path = entry.map_err(io(&dir))?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with("failure-") && name.ends_with(".png") {
            std::fs::remove_file(&path).map_err(io(&path))?;
        }
    }
    let all = &found.failures;
    let count = |f: &dyn Fn(&Failure) -> bool| all.iter().filter(|x| f(x)).count();
    let wrong = |f: fn(&Object) -> String| {
        count(&|x: &Failure| x.parsed.is_some_and(|p| f(&p) != f(&x.truth)))
    };
    let mut md = format!(
        "{} of the {} held-out images of the final evaluation ({} per held-out object) get a wrong greedy caption. \
         Among them the shape is wrong {} times, the colour {}, the size {}, the position {}; \
         {} captions are not a single-object caption of the grammar.",
        all.len(),
        found.images,
        found.per_object,
        wrong(|o| o.shape.word().into()),
        wrong(|o| o.colour.word().into()),
        wrong(|o| o.size.word().into()),
        wrong(|o| o.position.words().into()),
        count(&|x: &Failure| x.parsed.is_none()),
    );
    let held_out = data.world.held_out();
    let per_pair: Vec<String> = held_out
        .iter()
        .map(|&(shape, colour)| {
            let wrong = count(&|x: &Failure| x.truth.shape == shape && x.truth.colour == colour);
            let of = found.images / held_out.len();
            format!("{} {} {wrong} of {of}", colour.word(), shape.word())
        })
        .collect();
    md += &format!(" Wrong per held-out pair: {}.", per_pair.join(", "));
    let shown = spread(all, max);
    if shown.len() < all.len() {
        md += &format!(" {} of them, evenly spread, are shown.", shown.len());
    }
    md += "\n\n";
    if !shown.is_empty() {
        md += "| image | true caption | greedy caption | what is wrong |\n| :---: | --- | --- | --- |\n";
    }
    for (n, f) in shown.iter().enumerate() {
        let file = format!("failure-{:02}.png", n + 1);
        write_png(&dir.join(&file), f.image.view(), 4)?;
        md += &format!(
            "| <img src=\"{link_base}{FAILURES_DIR}/{file}\" alt=\"held-out image {}\" width=\"128\" height=\"128\"> | {} | {} | {} |\n",
            f.index,
            f.truth.caption(),
            if f.written.is_empty() {
                "(empty)".to_string()
            } else {
                markdown_cell(&f.written)
            },
            f.wrong()
        );
    }
    let table = out.join(FAILURES_FILE);
    model::write_atomic(&table, md.as_bytes()).map_err(io(&table))?;
    Ok(FailureFiles {
        table,
        failures: all.len(),
        images: found.images,
        shown: shown.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{Colour, Position, Shape, Size};

    fn object() -> Object {
        Object {
            shape: Shape::Circle,
            colour: Colour::Blue,
            size: Size::Big,
            position: Position::Middle,
        }
    }

    fn failure(parsed: Option<Object>) -> Failure {
        Failure {
            index: 0,
            truth: object(),
            written: String::new(),
            parsed,
            image: Array3::zeros((3, 2, 2)),
        }
    }

    #[test]
    fn the_wrong_attributes_are_named() {
        let p = Object {
            colour: Colour::Green,
            size: Size::Small,
            ..object()
        };
        assert_eq!(
            failure(Some(p)).wrong(),
            "colour: blue → green; size: big → small"
        );
        assert!(
            failure(None)
                .wrong()
                .contains("not a single-object caption")
        );
    }

    #[test]
    fn captions_cannot_break_the_table() {
        assert_eq!(markdown_cell("a red circle"), "a red circle");
        assert_eq!(markdown_cell("a|b*c\n<d>"), "a\\|b\\*c &lt;d&gt;");
    }

    #[test]
    fn spread_keeps_at_most_max_evenly() {
        let xs: Vec<usize> = (0..10).collect();
        assert_eq!(spread(&xs, 4), [&0, &3, &6, &9]);
        assert_eq!(spread(&xs, 20).len(), 10);
        assert!(spread(&xs, 0).is_empty());
        assert!(spread::<usize>(&[], 3).is_empty());
    }

    #[test]
    fn png_is_upscaled_nearest() {
        let dir = std::env::temp_dir().join(format!("train-png-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut img = Array3::zeros((3, 2, 2));
        img[[0, 0, 1]] = 1.0; // red top-right pixel
        let path = dir.join("x.png");
        write_png(&path, img.view(), 3).unwrap();
        let back = image::open(&path).unwrap().to_rgb8();
        assert_eq!(back.dimensions(), (6, 6));
        assert_eq!(back.get_pixel(5, 2).0, [255, 0, 0]);
        assert_eq!(back.get_pixel(2, 2).0, [0, 0, 0]);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
