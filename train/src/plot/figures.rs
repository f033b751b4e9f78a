//! `train plot RUN`: every figure of a run folder, written into
//! `RUN/figures/` (or `--out DIR`).
//!
//! - `loss.svg`: the loss parts and the logit scale over the steps;
//! - `similarity_start.svg`, `similarity_end.svg`: image–caption cosine
//!   similarities of one fixed batch of 16 seen scenes, with the initial
//!   weights (re-created from the run's seed) and the trained ones;
//! - `embeddings_pca.svg`: the evaluation images and their captions in the
//!   shared space, projected on its first two principal components;
//! - `cross_attention/<k>.png` (+ `cross_attention/words.md`): for a few
//!   images, the decoder's cross-attention over the image tokens while it
//!   writes each word of its greedy caption, one row per decoder block;
//! - `vit_cls_attention.png`: a ViT's attention from the CLS token to the
//!   patches, one column per block (a CNN run has no CLS token: skipped).

use super::charts::{ScatterPoint, heatmap_svg, loss_svg, scatter_svg};
use super::overlay::{grid_side, overlay, tile_rows, to_grid};
use super::pca::pca;
use crate::data::{Object, ToyData, World, is_held_out};
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

    create_dir(&out.join("cross_attention"))?;
    let (pictures, table) = cross_attention_figures(&state.model, &state.tokenizer, &config)?;
    for (k, picture) in pictures.iter().enumerate() {
        save_png(
            &out.join(format!("cross_attention/{k}.png")),
            picture,
            &mut report,
        )?;
    }
    write_text(&out, "cross_attention/words.md", &table, &mut report)?;

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

fn write_text(
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

fn create_dir(dir: &Path) -> Result<(), PlotError> {
    std::fs::create_dir_all(dir).map_err(|source| PlotError::Io {
        path: dir.to_path_buf(),
        source,
    })
}

fn save_png(
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

fn cross_attention_figures(
    model: &Model,
    tokenizer: &Tokenizer,
    config: &RunConfig,
) -> Result<(Vec<image::RgbImage>, String), PlotError> {
    let objects = attention_objects(&config.world);
    let images = config.data().eval_images(&objects, 1, PLOT_STREAM + 2);
    let captions = Captioner::new(model, tokenizer).caption(&images, &Strategy::Greedy);
    let mut pictures = Vec::new();
    let mut table = String::from(
        "| figure | true caption | greedy caption | tiles after the image, left to right |\n\
         | --- | --- | --- | --- |\n",
    );
    for (k, (object, caption)) in objects.iter().zip(&captions).enumerate() {
        let single = images.slice(s![k..k + 1, .., .., ..]).to_owned();
        let maps = cross_attention_maps(model, &single, &caption.ids)?;
        pictures.push(overlay_rows(&image_tile(&images, k), &maps));
        let words: Vec<String> = caption
            .ids
            .iter()
            .map(|&id| {
                let bytes = tokenizer.id_to_bytes(id).unwrap_or_default();
                format!("`{}`", String::from_utf8_lossy(bytes).trim())
            })
            .collect();
        let held_out = if is_held_out(object.shape, object.colour) {
            " (held out)"
        } else {
            ""
        };
        table += &format!(
            "| `cross_attention/{k}.png` | {}{held_out} | {} | {} |\n",
            object.caption(),
            caption.text.trim(),
            words.join(" "),
        );
    }
    table += "\nOne row per decoder block (first block at the top); each tile is the attention, \
              averaged over heads, of the position that predicts that word. The tiles of a row \
              share one scale: brightness grows with the square root of the weight over the \
              row's largest.\n";
    if matches!(model.image, ImageEncoder::Vit(_)) {
        table += "The ViT's CLS token is not a place in the image: its share of the attention \
                  is left out of the tiles.\n";
    }
    Ok((pictures, table))
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
