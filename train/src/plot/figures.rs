//! `train plot RUN`: every figure of a run folder, written into
//! `RUN/figures/` (or `--out DIR`).
//!
//! - `loss.svg`: the loss parts and the logit scale over the steps;
//! - `similarity_start.svg`, `similarity_end.svg`: image–caption cosine
//!   similarities of one fixed batch of 16 seen scenes, with the initial
//!   weights (re-created from the run's seed) and the trained ones;
//! - `embeddings_pca.svg`: the evaluation images and their captions in the
//!   shared space, projected on its first two principal components;
//! - `cross_attention/<k>.png` (+ `cross_attention/words.md`, a table of
//!   the figures, and `cross_attention/gallery.md`, the figures with their
//!   captions): for a gallery of images (one seen image of each shape, a
//!   held-out one, and held-out images the model captions wrongly), the
//!   decoder's cross-attention over the image tokens while it writes each
//!   word of its greedy caption, one row per decoder block;
//! - `cross_attention/focus.md`: how focused the cross-attention is at the
//!   position that predicts each kind of word, averaged over many images;
//! - `token_neighbours.md`, `token_similarity.svg`: the caption tokens'
//!   nearest neighbours in the text tower's and the decoder's token
//!   embedding, and the decoder's cosine similarities as a heatmap;
//! - `contextual.md`: the same word in different captions, after the text
//!   tower: the cosine similarities of its vectors;
//! - `embeddings_captions.svg`: a few images and their captions in the
//!   shared space (PCA), each caption labelled;
//! - `vit_cls_attention.png`: a ViT's attention from the CLS token to the
//!   patches, one column per block (a CNN run has no CLS token: skipped).

use super::charts::{ScatterPoint, heatmap_svg, heatmap_svg_axis, loss_svg, scatter_svg};
use super::overlay::{grid_side, overlay, tile_rows, to_grid};
use super::pca::pca;
use super::vectors::{
    CaptionToken, WordKind, caption_tokens, contextual_table, cosine_matrix, token_neighbours_table,
};
use crate::data::{Colour, Object, Position, Shape, Size, ToyData, World, is_held_out};
use crate::failures::held_out_failures;
use crate::run::{self, History, Metrics, RunConfig, RunError};
use model::{Captioner, ImageEncoder, Model, Strategy, embed_texts, similarity};
use ndarray::{Array2, Array3, Array4, Axis, concatenate, s};
use rand::SeedableRng;
use rand::rngs::StdRng;
use std::fmt;
use std::path::{Path, PathBuf};
use tokenizer::Tokenizer;

/// What went wrong while plotting a run.
#[derive(Debug)]
pub enum PlotError {
    /// The folder is not a readable run (missing or damaged files, named).
    Run(RunError),
    /// A figure could not be written.
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A PNG could not be encoded or written.
    Image {
        path: PathBuf,
        source: image::ImageError,
    },
    /// The model's image tokens do not form a square grid.
    NotAGrid { tokens: usize },
}

impl fmt::Display for PlotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlotError::Run(e) => write!(f, "{e}"),
            PlotError::Io { path, source } => write!(f, "{}: {source}", path.display()),
            PlotError::Image { path, source } => write!(f, "{}: {source}", path.display()),
            PlotError::NotAGrid { tokens } => write!(
                f,
                "the image tower gives {tokens} tokens, not a square grid to draw"
            ),
        }
    }
}

impl std::error::Error for PlotError {}

impl From<RunError> for PlotError {
    fn from(e: RunError) -> Self {
        PlotError::Run(e)
    }
}

/// What [`plot_run`] wrote, and what it skipped and why.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PlotReport {
    pub written: Vec<PathBuf>,
    pub skipped: Vec<String>,
}

impl fmt::Display for PlotReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for path in &self.written {
            writeln!(f, "wrote {}", path.display())?;
        }
        for why in &self.skipped {
            writeln!(f, "skipped {why}")?;
        }
        Ok(())
    }
}

/// The figures' evaluation stream: images no training step and no
/// evaluation of `train eval` uses.
const PLOT_STREAM: u64 = 2000;
/// Images with cross-attention maps: two held-out, two seen.
const ATTENTION_IMAGES: usize = 4;

/// Writes every figure of the run in `run` into `out` (default `run/figures`).
///
/// # Errors
/// [`PlotError::Run`] if `run` is not a run folder or a file of it is
/// missing or damaged (named), a file error naming the figure otherwise.
pub fn plot_run(run: &Path, out: Option<&Path>) -> Result<PlotReport, PlotError> {
    plot_run_linked(run, out, "../")
}

/// [`plot_run`], with the image links of `cross_attention/gallery.md`
/// starting with `link_base` (then `cross_attention/<k>.png`): `"../"` when
/// the gallery is read where it lies, `generated/figures/` when a book
/// chapter in `book/src/` includes it (an include is pasted text, so its
/// links resolve from the chapter).
///
/// # Errors
/// As [`plot_run`].
pub fn plot_run_linked(
    run: &Path,
    out: Option<&Path>,
    link_base: &str,
) -> Result<PlotReport, PlotError> {
    let (config, state) = run::open(run)?;
    let out = out.map_or_else(|| run.join("figures"), Path::to_path_buf);
    create_dir(&out)?;
    let mut report = PlotReport::default();
    let history = history(run, &state.history)?;
    write_text(&out, "loss.svg", &loss_svg(&history.steps), &mut report)?;

    let initial = initial_model(&config, &state.model)?;
    let start = similarity_figure(&initial, &state.tokenizer, &config, 0);
    write_text(&out, "similarity_start.svg", &start, &mut report)?;
    let end = similarity_figure(&state.model, &state.tokenizer, &config, state.step);
    write_text(&out, "similarity_end.svg", &end, &mut report)?;
    let space = embeddings_figure(&state.model, &state.tokenizer, &config);
    write_text(&out, "embeddings_pca.svg", &space, &mut report)?;

    let captioned = captions_figure(&state.model, &state.tokenizer, &config);
    write_text(&out, "embeddings_captions.svg", &captioned, &mut report)?;

    create_dir(&out.join("cross_attention"))?;
    // drop the pictures of an earlier call, which may have had more
    for entry in std::fs::read_dir(out.join("cross_attention")).map_err(|source| PlotError::Io {
        path: out.join("cross_attention"),
        source,
    })? {
        let path = entry
            .map_err(|source| PlotError::Io {
                path: out.join("cross_attention"),
                source,
            })?
            .path();
        if path.extension().is_some_and(|e| e == "png") {
            std::fs::remove_file(&path).map_err(|source| PlotError::Io {
                path: path.clone(),
                source,
            })?;
        }
    }
    let gallery = cross_attention_figures(&state.model, &state.tokenizer, &config, link_base)?;
    for (k, picture) in gallery.pictures.iter().enumerate() {
        save_png(
            &out.join(format!("cross_attention/{k}.png")),
            picture,
            &mut report,
        )?;
    }
    write_text(
        &out,
        "cross_attention/words.md",
        &gallery.table,
        &mut report,
    )?;
    write_text(
        &out,
        "cross_attention/gallery.md",
        &gallery.markdown,
        &mut report,
    )?;
    let focus = attention_focus(&state.model, &state.tokenizer, &config)?;
    write_text(&out, "cross_attention/focus.md", &focus, &mut report)?;

    let tokens = caption_tokens(&state.tokenizer, &trained_captions(&config));
    let neighbours = token_neighbours_table(&state.model, &tokens, 3);
    write_text(&out, "token_neighbours.md", &neighbours, &mut report)?;
    let heat = token_similarity_figure(&state.model, &tokens);
    write_text(&out, "token_similarity.svg", &heat, &mut report)?;
    match contextual_figure(&state.model, &state.tokenizer, &config.world) {
        Some(md) => write_text(&out, "contextual.md", &md, &mut report)?,
        None => report.skipped.push(
            "contextual.md: a word it compares is not one token of this run's tokenizer"
                .to_string(),
        ),
    }

    match &state.model.image {
        ImageEncoder::Vit(_) => {
            let picture = vit_cls_figure(&state.model, &config)?;
            save_png(&out.join("vit_cls_attention.png"), &picture, &mut report)?;
        }
        ImageEncoder::Cnn(_) => report.skipped.push(
            "vit_cls_attention.png: this run's image tower is a CNN, which has no CLS token \
             (plot a run trained with --encoder vit)"
                .to_string(),
        ),
    }
    Ok(report)
}

pub(super) fn write_text(
    out: &Path,
    name: &str,
    text: &str,
    report: &mut PlotReport,
) -> Result<(), PlotError> {
    let path = out.join(name);
    model::write_atomic(&path, text.as_bytes()).map_err(|source| PlotError::Io {
        path: path.clone(),
        source,
    })?;
    report.written.push(path);
    Ok(())
}

pub(super) fn create_dir(dir: &Path) -> Result<(), PlotError> {
    std::fs::create_dir_all(dir).map_err(|source| PlotError::Io {
        path: dir.to_path_buf(),
        source,
    })
}

pub(super) fn save_png(
    path: &Path,
    picture: &image::RgbImage,
    report: &mut PlotReport,
) -> Result<(), PlotError> {
    picture.save(path).map_err(|source| PlotError::Image {
        path: path.to_path_buf(),
        source,
    })?;
    report.written.push(path.to_path_buf());
    Ok(())
}

/// The step history: from `metrics.json` when the run has finished, else
/// from its last checkpoint.
fn history(run: &Path, checkpoint: &History) -> Result<History, PlotError> {
    let path = run.join(run::METRICS_FILE);
    if !path.exists() {
        return Ok(checkpoint.clone());
    }
    let text = std::fs::read_to_string(&path).map_err(|source| PlotError::Io {
        path: path.clone(),
        source,
    })?;
    let metrics: Metrics = serde_json::from_str(&text)
        .map_err(|source| PlotError::Run(RunError::Json { path, source }))?;
    Ok(metrics.history)
}

// ANCHOR: initial_model
/// The weights the run started from: [`run::start`] initialises the
/// model's shape from `StdRng::seed_from_u64(seed)`, and initialisation
/// is a pure function of the shape and the RNG.
pub fn initial_model(config: &RunConfig, trained: &Model) -> Result<Model, PlotError> {
    trained
        .config()
        .init(&mut StdRng::seed_from_u64(config.seed))
        .map_err(|e| PlotError::Run(RunError::Config(e)))
}
// ANCHOR_END: initial_model

/// The fixed batch of the similarity figures: one scene of each seen
/// (shape, colour) pair of the small world ([`World::SMALL`], all 16 when
/// the run's world holds it), sizes and positions varying, so all
/// captions differ.
pub fn similarity_objects(world: &World) -> Vec<Object> {
    // training_objects holds each seen (shape, colour) pair as a block of
    // 2 sizes × 5 positions = 10 objects
    world
        .training_objects()
        .chunks(10)
        .filter(|block| World::SMALL.contains(block[0].shape, block[0].colour))
        .enumerate()
        .map(|(i, block)| block[(3 * i) % block.len()])
        .collect()
}

fn short_label(o: &Object) -> String {
    format!("{} {}", o.colour.word(), o.shape.word())
}

/// Cosine similarities `[B, B]` of the images and captions of `objects`
/// (unit embeddings, so the dot product).
pub fn similarity_matrix(
    model: &Model,
    tokenizer: &Tokenizer,
    data: &ToyData,
    objects: &[Object],
) -> Array2<f32> {
    let images = data.eval_images(objects, 1, PLOT_STREAM);
    let (_, image_embeds) = model.encode_images(&images);
    let captions: Vec<String> = objects.iter().map(Object::caption).collect();
    let text_embeds = embed_texts(model, tokenizer, &captions);
    similarity(&image_embeds, &text_embeds)
}

fn similarity_figure(
    model: &Model,
    tokenizer: &Tokenizer,
    config: &RunConfig,
    step: usize,
) -> String {
    let objects = similarity_objects(&config.world);
    let matrix = similarity_matrix(model, tokenizer, &config.data(), &objects);
    let diagonal = matrix.diag().mean().unwrap_or(0.0);
    let off = (matrix.sum() - matrix.diag().sum()) / (matrix.len() - matrix.nrows()).max(1) as f32;
    let labels: Vec<String> = objects.iter().map(short_label).collect();
    heatmap_svg(
        &matrix,
        &labels,
        &format!(
            "image × caption cosine similarity, step {step}: diagonal {diagonal:.2}, elsewhere {off:.2}"
        ),
    )
}

/// Embeds images in chunks of 64 (the evaluation's batch).
fn image_embeddings(model: &Model, images: &Array4<f32>) -> Array2<f32> {
    let chunks: Vec<Array2<f32>> = (0..images.dim().0)
        .step_by(64)
        .map(|start| {
            let end = (start + 64).min(images.dim().0);
            model
                .encode_images(&images.slice(s![start..end, .., .., ..]))
                .1
        })
        .collect();
    let views: Vec<_> = chunks.iter().map(|c| c.view()).collect();
    concatenate(Axis(0), &views).expect("chunks of one width")
}

fn embeddings_figure(model: &Model, tokenizer: &Tokenizer, config: &RunConfig) -> String {
    let objects = config.world.objects(); // seen and held-out
    let images = config.data().eval_images(&objects, 1, PLOT_STREAM + 1);
    let image_embeds = image_embeddings(model, &images); // [N, E]
    let captions: Vec<String> = objects.iter().map(Object::caption).collect();
    let text_embeds = embed_texts(model, tokenizer, &captions); // [N, E]
    let both = concatenate(Axis(0), &[image_embeds.view(), text_embeds.view()]).expect("one width"); // [2N, E]
    let p = pca(&both, 2);
    let xy = p.project(&both); // [2N, 2]
    let n = objects.len();
    let shapes = config.world.shapes();
    let points: Vec<ScatterPoint> = (0..2 * n)
        .map(|i| {
            let o = objects[i % n];
            ScatterPoint {
                x: xy[[i, 0]],
                y: xy[[i, 1]],
                group: shapes.iter().position(|&s| s == o.shape).unwrap_or(0),
                caption: i >= n,
                marked: is_held_out(o.shape, o.colour),
                label: None,
            }
        })
        .collect();
    let links: Vec<(usize, usize)> = (0..n).map(|i| (i, n + i)).collect();
    let explained = p.explained();
    let groups: Vec<&str> = shapes.iter().map(|s| s.word()).collect();
    scatter_svg(
        &points,
        &groups,
        &links,
        "images and captions in the shared space (PCA; lines join an image to its caption)",
        (
            &format!(
                "first principal component ({:.0} % of the variance)",
                100.0 * explained[0]
            ),
            &format!("second ({:.0} %)", 100.0 * explained[1]),
        ),
        "held-out combination",
    )
}

/// The objects of the cross-attention figures: held-out ones first.
pub fn attention_objects(world: &World) -> Vec<Object> {
    let mut objects = world.held_out_objects();
    objects.truncate(ATTENTION_IMAGES / 2);
    objects.extend(
        world
            .training_objects()
            .into_iter()
            .step_by(37)
            .take(ATTENTION_IMAGES - ATTENTION_IMAGES / 2),
    );
    objects
}

/// The image tokens that form the grid: all of a CNN's, a ViT's without
/// its CLS token (position 0). Returns the first grid token and the side.
fn grid_of(model: &Model, tokens: usize) -> Result<(usize, usize), PlotError> {
    let first = match model.image {
        ImageEncoder::Vit(_) => 1,
        ImageEncoder::Cnn(_) => 0,
    };
    let side = grid_side(tokens.saturating_sub(first)).ok_or(PlotError::NotAGrid { tokens })?;
    Ok((first, side))
}

// ANCHOR: cross_attention_maps
/// The decoder's cross-attention while it writes a caption of one image:
/// `maps[l][w]` is block `l`'s attention (averaged over heads) over the
/// image grid at the position that predicts word `w`, as a `side × side` map.
///
/// # Shapes
/// - `image: [1, 3, H, W]`, `caption` without `<|bos|>` and `<|eos|>`
///
/// # Errors
/// [`PlotError::NotAGrid`] if the image tokens do not form a square grid.
///
/// # Panics
/// If the image does not have the model's size, or the caption holds an ID
/// outside the vocabulary or is longer than the decoder's `max_len − 1`.
pub fn cross_attention_maps(
    model: &Model,
    image: &Array4<f32>,
    caption: &[u32],
) -> Result<Vec<Vec<Array2<f32>>>, PlotError> {
    let (image_tokens, _) = model.encode_images(image); // [1, N_img, C_img]
    let (first, side) = grid_of(model, image_tokens.dim().1)?;
    // the decoder reads <|bos|> w1 … wn; position t predicts word t + 1
    let mut ids = vec![model.config().special.bos];
    ids.extend_from_slice(caption);
    let tokens = Array2::from_shape_vec((1, ids.len()), ids).expect("one row");
    let (_, cache) = model.decoder.forward(&image_tokens, &tokens);
    let maps = (0..cache.depth())
        .map(|l| {
            let weights = cache.cross_attention_weights(l); // [1, H, T, N_img]
            let mean = weights.mean_axis(Axis(1)).expect("at least one head"); // [1, T, N_img]
            (0..caption.len())
                .map(|t| to_grid(&mean.slice(s![0, t, first..first + side * side])))
                .collect()
        })
        .collect();
    Ok(maps)
}
// ANCHOR_END: cross_attention_maps

/// The largest weight of a set of maps: they are drawn on one scale, so a
/// spread-out map looks fainter than a focused one.
fn scale<'a>(maps: impl Iterator<Item = &'a Array2<f32>>) -> f32 {
    maps.flat_map(|m| m.iter().copied()).fold(0.0, f32::max)
}

/// The image, then each map laid over it: brightness `√(weight / max)`,
/// so weaker structure stays visible next to the strongest weight.
fn overlay_row(picture: &Array3<f32>, maps: &[Array2<f32>], max: &f32) -> Vec<Array3<f32>> {
    std::iter::once(picture.clone())
        .chain(maps.iter().map(|m| {
            let a = if *max > 0.0 {
                m.mapv(|w| (w / max).sqrt())
            } else {
                m.clone()
            };
            overlay(&picture.view(), &a)
        }))
        .collect()
}

/// One row per block, each on the scale of its own largest weight.
fn overlay_rows(picture: &Array3<f32>, maps: &[Vec<Array2<f32>>]) -> image::RgbImage {
    let rows: Vec<_> = maps
        .iter()
        .map(|layer| overlay_row(picture, layer, &scale(layer.iter())))
        .collect();
    tile_rows(&rows, 4, 4)
}

fn image_tile(images: &Array4<f32>, b: usize) -> Array3<f32> {
    images.slice(s![b, .., .., ..]).to_owned()
}

/// The cross-attention gallery: the pictures, the table of their words and
/// the markdown that shows them with their captions.
struct Gallery {
    pictures: Vec<image::RgbImage>,
    table: String,
    markdown: String,
}

/// Held-out images the model captions wrongly shown in the gallery, at most.
const GALLERY_WRONG: usize = 2;

/// The gallery's images: one seen image of each shape of the world (each in
/// another colour, size and position), a held-out image, and up to
/// [`GALLERY_WRONG`] held-out images of the final evaluation that the model
/// captions wrongly. `(object, image [3, H, W], what it is)`.
fn gallery_images(
    model: &Model,
    tokenizer: &Tokenizer,
    config: &RunConfig,
) -> Vec<(Object, Array3<f32>, &'static str)> {
    let data = config.data();
    let training = config.world.training_objects();
    let mut objects: Vec<Object> = config
        .world
        .shapes()
        .iter()
        .enumerate()
        .filter_map(|(i, &shape)| {
            let of_shape: Vec<&Object> = training.iter().filter(|o| o.shape == shape).collect();
            (!of_shape.is_empty()).then(|| *of_shape[(7 * i + 3) % of_shape.len()])
        })
        .collect();
    let seen = objects.len();
    objects.extend(config.world.held_out_objects().into_iter().take(1));
    let images = data.eval_images(&objects, 1, PLOT_STREAM + 2); // [N, 3, H, W]
    let mut gallery: Vec<_> = objects
        .iter()
        .enumerate()
        .map(|(k, &o)| {
            let why = if k < seen { "seen" } else { "held out" };
            (o, image_tile(&images, k), why)
        })
        .collect();
    let wrong = held_out_failures(model, tokenizer, &data, config.eval_per_object).failures;
    let stride = wrong.len().div_ceil(GALLERY_WRONG).max(1);
    gallery.extend(
        wrong
            .into_iter()
            .step_by(stride)
            .take(GALLERY_WRONG)
            .map(|f| (f.truth, f.image, "held out, captioned wrongly")),
    );
    gallery
}

fn cross_attention_figures(
    model: &Model,
    tokenizer: &Tokenizer,
    config: &RunConfig,
    link_base: &str,
) -> Result<Gallery, PlotError> {
    let entries = gallery_images(model, tokenizer, config);
    let views: Vec<_> = entries.iter().map(|(_, image, _)| image.view()).collect();
    let images = ndarray::stack(Axis(0), &views).expect("images of one size"); // [N, 3, H, W]
    let captions = Captioner::new(model, tokenizer).caption(&images, &Strategy::Greedy);
    let mut pictures = Vec::new();
    let mut table = String::from(
        "| figure | true caption | greedy caption | tiles after the image, left to right |\n\
         | --- | --- | --- | --- |\n",
    );
    let mut markdown = String::new();
    for (k, ((object, image, why), caption)) in entries.iter().zip(&captions).enumerate() {
        let single = image.clone().insert_axis(Axis(0)); // [1, 3, H, W]
        let maps = cross_attention_maps(model, &single, &caption.ids)?;
        pictures.push(overlay_rows(image, &maps));
        let words: Vec<String> = caption
            .ids
            .iter()
            .map(|&id| {
                let bytes = tokenizer.id_to_bytes(id).unwrap_or_default();
                format!(
                    "`{}`",
                    String::from_utf8_lossy(bytes).trim().replace('`', "'")
                )
            })
            .collect();
        let held_out = if is_held_out(object.shape, object.colour) {
            " (held out)"
        } else {
            ""
        };
        let written = caption.text.trim();
        let verdict = if written == object.caption() {
            "right"
        } else {
            "wrong"
        };
        table += &format!(
            "| `cross_attention/{k}.png` | {}{held_out} | {} ({verdict}) | {} |\n",
            object.caption(),
            markdown_text(written),
            words.join(" "),
        );
        // an HTML image, as in the failures table: its link is pasted as is
        markdown += &format!(
            "**{}.** {why}: *{}*; the decoder writes *{}* ({verdict}).\n\n\
             <img src=\"{link_base}cross_attention/{k}.png\" alt=\"cross-attention of the decoder \
             for each word it writes, {why}\">\n\n",
            k + 1,
            object.caption(),
            markdown_text(written),
        );
    }
    let note = "One row per decoder block (first block at the top); each tile is the attention, \
                averaged over heads, of the position that predicts that word. The tiles of a row \
                share one scale: brightness grows with the square root of the weight over the \
                row's largest.\n";
    table += "\n";
    table += note;
    markdown += note;
    if matches!(model.image, ImageEncoder::Vit(_)) {
        let vit = "The ViT's CLS token is not a place in the image: its share of the attention \
                   is left out of the tiles.\n";
        table += vit;
        markdown += vit;
    }
    Ok(Gallery {
        pictures,
        table,
        markdown,
    })
}

/// A generated caption as markdown text: it may hold any bytes, so the
/// characters markdown reads as syntax are escaped and line breaks become
/// spaces.
fn markdown_text(text: &str) -> String {
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

/// Images averaged over in [`attention_focus`]: every seen (shape, colour,
/// size, position) of the world, one image each.
fn focus_objects(world: &World) -> Vec<Object> {
    world.training_objects()
}

/// The kind of word a caption token is, as the focus table names it.
fn slot_name(word: &str) -> String {
    match WordKind::of(word) {
        WordKind::Size => "a size word".to_string(),
        WordKind::Colour => "a colour word".to_string(),
        WordKind::Shape => "a shape word".to_string(),
        WordKind::Position => "a position word".to_string(),
        WordKind::Other => format!("`{word}`"),
    }
}

// ANCHOR: attention_focus
/// How the decoder's cross-attention is spread at the position that
/// predicts each kind of word: over every seen object of the world, with
/// the true caption fed in (teacher forcing), the mean of the largest
/// weight of the map and of the weight on the 3×3 cells around the centre
/// of the object's region. Uniform attention over `N` cells would give
/// `1/N` and `9/N`.
fn attention_focus(
    model: &Model,
    tokenizer: &Tokenizer,
    config: &RunConfig,
) -> Result<String, PlotError> {
    let objects = focus_objects(&config.world);
    let images = config.data().eval_images(&objects, 1, PLOT_STREAM + 4); // [N, 3, H, W]
    let size = images.dim().2;
    let depth = model.decoder.blocks.len();
    // slot name → (count, per block: sum of largest weight, sum of weight on the object)
    type Slot = (String, usize, Vec<(f32, f32)>);
    let mut slots: Vec<Slot> = Vec::new();
    let mut side = 0;
    for (b, object) in objects.iter().enumerate() {
        let ids = tokenizer.encode_ordinary(&object.caption());
        let maps = cross_attention_maps(
            model,
            &images.slice(s![b..b + 1, .., .., ..]).to_owned(),
            &ids,
        )?;
        side = maps
            .first()
            .and_then(|m| m.first())
            .map_or(0, |m| m.nrows());
        let (cx, cy) = object.position.centre();
        let cell = |v: f32| ((v / size as f32 * side as f32) as usize).min(side.saturating_sub(1));
        let (gx, gy) = (cell(cx), cell(cy));
        for (w, &id) in ids.iter().enumerate() {
            let bytes = tokenizer.id_to_bytes(id).unwrap_or_default();
            let name = slot_name(String::from_utf8_lossy(bytes).trim());
            let at = match slots.iter().position(|(n, _, _)| *n == name) {
                Some(i) => i,
                None => {
                    slots.push((name, 0, vec![(0.0, 0.0); depth]));
                    slots.len() - 1
                }
            };
            slots[at].1 += 1;
            for (l, layer) in maps.iter().enumerate() {
                let map = &layer[w]; // [side, side]
                let largest = map.iter().fold(0.0f32, |m, &v| m.max(v));
                let on_object: f32 = map
                    .indexed_iter()
                    .filter(|((y, x), _)| y.abs_diff(gy) <= 1 && x.abs_diff(gx) <= 1)
                    .map(|(_, &v)| v)
                    .sum();
                slots[at].2[l].0 += largest;
                slots[at].2[l].1 += on_object;
            }
        }
    }
    let cells = side * side;
    let mut md = String::from("| the position that predicts |");
    for l in 1..=depth {
        md += &format!(" block {l}: largest weight | block {l}: weight on the object |");
    }
    md += "\n| --- |";
    md += &" ---: | ---: |".repeat(depth);
    md += "\n";
    for (name, count, sums) in &slots {
        md += &format!("| {name} |");
        for (largest, on) in sums {
            let n = (*count).max(1) as f32;
            md += &format!(" {:.2} | {:.2} |", largest / n, on / n);
        }
        md += "\n";
    }
    md += &format!(
        "\nMeans over {} images, one of each seen object, with the true caption fed in. \
         \"On the object\": the 3×3 cells of the {side}×{side} grid around the centre of the \
         object's region. Attention spread evenly over the {cells} cells would give a largest \
         weight of {:.3} and {:.2} on the object.\n",
        objects.len(),
        1.0 / cells.max(1) as f32,
        9.0 / cells.max(1) as f32,
    );
    Ok(md)
}
// ANCHOR_END: attention_focus

/// The captions the run trains on: its world's single-object captions, and
/// the tokenizer's whole corpus (two-object captions too) only when the run
/// draws two-object scenes. The tokenizer knows words a run never trains
/// (`left of`, `an`): their rows stay as initialised, or drift all alike.
fn trained_captions(config: &RunConfig) -> Vec<String> {
    if config.two_object > 0.0 {
        config.data().training_captions()
    } else {
        config
            .world
            .training_objects()
            .iter()
            .map(Object::caption)
            .collect()
    }
}

/// The decoder's token embedding: cosine similarities of the caption
/// tokens, grouped by kind.
fn token_similarity_figure(model: &Model, tokens: &[CaptionToken]) -> String {
    let ids: Vec<u32> = tokens.iter().map(|t| t.id).collect();
    let matrix = cosine_matrix(&model.decoder.token_embedding.weight, &ids);
    let labels: Vec<String> = tokens.iter().map(|t| t.text.clone()).collect();
    heatmap_svg_axis(
        &matrix,
        &labels,
        "the decoder's token embeddings: cosine similarity",
        "token",
    )
}

/// Captions of one size and position whose shapes and colours vary:
/// the first `n` shapes × first `n` colours of the world.
fn captioned_objects(world: &World, n: usize) -> Vec<Object> {
    let mut objects = Vec::new();
    for &colour in world.colours().iter().take(n) {
        for &shape in world.shapes().iter().take(n + 1) {
            objects.push(Object {
                shape,
                colour,
                size: Size::Big,
                position: Position::Middle,
            });
        }
    }
    objects
}

/// A few images and their captions in the shared space, each caption
/// labelled with its colour and shape (PCA of these points only).
fn captions_figure(model: &Model, tokenizer: &Tokenizer, config: &RunConfig) -> String {
    let objects = captioned_objects(&config.world, 3);
    let images = config.data().eval_images(&objects, 1, PLOT_STREAM + 5);
    let (_, image_embeds) = model.encode_images(&images); // [N, E]
    let captions: Vec<String> = objects.iter().map(Object::caption).collect();
    let text_embeds = embed_texts(model, tokenizer, &captions); // [N, E]
    let both = concatenate(Axis(0), &[image_embeds.view(), text_embeds.view()]).expect("one width"); // [2N, E]
    let p = pca(&both, 2);
    let xy = p.project(&both);
    let n = objects.len();
    let shapes = config.world.shapes();
    let points: Vec<ScatterPoint> = (0..2 * n)
        .map(|i| {
            let o = objects[i % n];
            ScatterPoint {
                x: xy[[i, 0]],
                y: xy[[i, 1]],
                group: shapes.iter().position(|&s| s == o.shape).unwrap_or(0),
                caption: i >= n,
                marked: is_held_out(o.shape, o.colour),
                label: (i >= n).then(|| short_label(&o)),
            }
        })
        .collect();
    let links: Vec<(usize, usize)> = (0..n).map(|i| (i, n + i)).collect();
    let explained = p.explained();
    let groups: Vec<&str> = shapes.iter().take(4).map(|s| s.word()).collect();
    scatter_svg(
        &points,
        &groups,
        &links,
        "a big … in the middle: images and their captions in the shared space (PCA)",
        (
            &format!(
                "first principal component ({:.0} % of the variance)",
                100.0 * explained[0]
            ),
            &format!("second ({:.0} %)", 100.0 * explained[1]),
        ),
        "held-out combination",
    )
}

/// The same word in four captions, after the text tower: `left` after
/// `top` and after `bottom`, and a colour word after each size.
fn contextual_figure(model: &Model, tokenizer: &Tokenizer, world: &World) -> Option<String> {
    let (shape_a, shape_b) = (world.shapes()[0], world.shapes()[1]);
    let (colour_a, colour_b) = (world.colours()[0], world.colours()[2]);
    let object = |shape: Shape, colour: Colour, size: Size, position: Position| Object {
        shape,
        colour,
        size,
        position,
    };
    let mut md = String::new();
    let left = [
        object(shape_a, colour_a, Size::Big, Position::TopLeft),
        object(shape_b, colour_b, Size::Small, Position::TopLeft),
        object(shape_a, colour_a, Size::Big, Position::BottomLeft),
        object(shape_b, colour_b, Size::Small, Position::BottomLeft),
    ];
    let colour = [
        object(shape_a, colour_a, Size::Big, Position::TopLeft),
        object(shape_b, colour_a, Size::Big, Position::BottomRight),
        object(shape_a, colour_a, Size::Small, Position::TopLeft),
        object(shape_b, colour_a, Size::Small, Position::Middle),
    ];
    for (objects, word) in [(left, "left"), (colour, colour_a.word())] {
        let sentences: Vec<String> = objects.iter().map(Object::caption).collect();
        md += &contextual_table(model, tokenizer, &sentences, &format!(" {word}"))?;
        md += "\n";
    }
    Some(md)
}

// ANCHOR: vit_cls
/// A ViT's attention from the CLS token to the patches in each block,
/// averaged over heads: `maps[b][l]` is image `b`'s map in block `l`, a
/// `side × side` grid. `None` for a CNN run (no CLS token), or a ViT
/// without blocks or whose patches do not form a square.
///
/// # Shapes
/// - `images: [B, 3, H, W]`
pub fn vit_cls_maps(model: &Model, images: &Array4<f32>) -> Option<Vec<Vec<Array2<f32>>>> {
    let ImageEncoder::Vit(vit) = &model.image else {
        return None;
    };
    if vit.blocks.is_empty() {
        return None;
    }
    let (_, cache) = vit.forward(images);
    let tokens = cache.attention_weights(0).dim().3; // N + 1
    let side = grid_side(tokens - 1)?;
    let maps = (0..images.dim().0)
        .map(|b| {
            (0..vit.blocks.len())
                .map(|l| {
                    let weights = cache.attention_weights(l); // [B, H, N+1, N+1]
                    let cls = weights
                        .slice(s![b, .., 0, 1..])
                        .mean_axis(Axis(0))
                        .expect("heads"); // [N]
                    to_grid(&cls.slice(s![..side * side]))
                })
                .collect()
        })
        .collect();
    Some(maps)
}
// ANCHOR_END: vit_cls

fn vit_cls_figure(model: &Model, config: &RunConfig) -> Result<image::RgbImage, PlotError> {
    let objects = attention_objects(&config.world);
    let images = config.data().eval_images(&objects, 1, PLOT_STREAM + 2);
    let maps = vit_cls_maps(model, &images).ok_or(PlotError::NotAGrid {
        tokens: model.config().image.num_tokens(),
    })?;
    // each image on its own scale: its strongest weight in any block
    let rows: Vec<Vec<Array3<f32>>> = maps
        .iter()
        .enumerate()
        .map(|(b, layers)| overlay_row(&image_tile(&images, b), layers, &scale(layers.iter())))
        .collect();
    Ok(tile_rows(&rows, 4, 4))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_similarity_batch_has_sixteen_distinct_seen_pairs() {
        let objects = similarity_objects(&World::FULL);
        assert_eq!(objects, similarity_objects(&World::SMALL));
        assert_eq!(objects.len(), 16);
        let mut pairs: Vec<_> = objects.iter().map(|o| (o.shape, o.colour)).collect();
        pairs.sort();
        pairs.dedup();
        assert_eq!(pairs.len(), 16);
        assert!(objects.iter().all(|o| !is_held_out(o.shape, o.colour)));
        let mut captions: Vec<_> = objects.iter().map(Object::caption).collect();
        captions.dedup();
        assert_eq!(captions.len(), 16);
    }

    #[test]
    fn attention_images_start_with_held_out_ones() {
        let objects = attention_objects(&World::FULL);
        assert_eq!(objects.len(), ATTENTION_IMAGES);
        assert!(is_held_out(objects[0].shape, objects[0].colour));
        assert!(!is_held_out(objects[3].shape, objects[3].colour));
    }
}
