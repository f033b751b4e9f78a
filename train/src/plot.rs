//! Pictures of a run: the charts (SVG, plotters) and the attention maps
//! (PNG, the `image` crate), and `train plot RUN` that writes them all.
//!
//! - [`charts`]: the loss curves and the logit scale, a similarity heatmap,
//!   a scatter plot;
//! - [`pca`]: principal components by power iteration, for the 2-D view of
//!   the shared space;
//! - [`overlay`]: attention weights over image tokens as a grid, upscaled
//!   and laid over the image, tiles assembled into one picture;
//! - [`vectors`]: what the learned vectors look like: nearest neighbours of
//!   the token embeddings, and a word's vector in different sentences;
//! - [`figures`]: [`plot_run`], every figure of a run folder;
//! - [`vlm`]: [`vlm::plot_vlm_run`], every figure of a multimodal run;
//! - [`kinds`]: each kind of question answered by several runs side by side.
//!
//! ## Shapes
//! `N` points or image tokens, `E` the shared space, `side × side` the grid
//! of image tokens, images `[3, H, W]` with values in `[0, 1]`.

pub mod charts;
pub mod figures;
pub mod kinds;
pub mod overlay;
pub mod pca;
pub mod vectors;
pub mod vlm;
pub mod wording;

pub use charts::{ScatterPoint, heatmap_svg, heatmap_svg_axis, loss_svg, scatter_svg};
pub use figures::{
    PlotError, PlotReport, cross_attention_maps, plot_run, plot_run_linked, vit_cls_maps,
};
pub use overlay::{normalise_max, overlay, tile_rows, upscale_nearest};
pub use pca::{Pca, pca};
