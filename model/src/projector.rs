//! The projector: from the vision tower's token grid to vectors the
//! language model can read as if they were words (LLaVA's "multi-modal
//! projector").
//!
//! ```text
//! tower tokens [B, N_img, C_img]   CLS? + an s×s grid (ViT patches, or a CNN's final map)
//!   → select                       drop the CLS token unless `keep_cls`
//!   → pool the grid                none | 2×2 average | 2×2 pixel shuffle
//!   → linear_1                     [B, N, C_lm]
//!   → GELU → linear_2              [B, N, C_lm]   (the MLP projector; the linear one stops above)
//! ```
//!
//! - **The MLP** is LLaVA-1.5's: `Linear(C_in, C_lm)`, GELU,
//!   `Linear(C_lm, C_lm)`. LLaVA-1 used a single Linear; the 1.5 paper
//!   found the two-layer MLP clearly better, and the linear one stays here
//!   for the comparison ([`ProjectorKind`]).
//! - **Fewer image tokens.** Every image token is a position of the
//!   language model, and attention costs grow with the square of the
//!   sequence. A 2×2 **average** keeps the width and quarters the count, but
//!   blurs four neighbours into one vector. A 2×2 **pixel shuffle**
//!   (Idefics3 and SmolVLM) also quarters the count, but stacks the four
//!   neighbours' channels into one vector four times as wide, so nothing is
//!   thrown away before the projector learns what to keep. Which is better
//!   for a task is a measurement; the default is set where the default run
//!   is configured (the training crate), and the book's multimodal chapter
//!   compares them.
//!
//! Pixel shuffle's channel order: the token for grid cell `(i, j)` of the
//! pooled `s/2 × s/2` grid is `[x(2i, 2j), x(2i, 2j+1), x(2i+1, 2j),
//! x(2i+1, 2j+1)]` concatenated, each `C_img` wide.
//!
//! Parameter names follow Hugging Face's LLaVA (`linear_1.weight`,
//! `linear_2.weight`); the whole model puts `multi_modal_projector.` in front.

use attention::{gelu_backward, gelu_forward};
use embedding::{Layer, Linear, LinearCache, LinearConfig, Params, prefixed};
use ndarray::{Array3, ArrayRef3, ArrayViewD, ArrayViewMutD, s};
use rand::Rng;

// ANCHOR: projector_config
/// A linear map or LLaVA-1.5's two-layer MLP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProjectorKind {
    /// One Linear `C_in → C_lm` (LLaVA-1).
    Linear,
    /// Linear `C_in → C_lm`, GELU, Linear `C_lm → C_lm` (LLaVA-1.5).
    Mlp,
}

/// How the image grid is shrunk before the projector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenPool {
    /// Every grid cell is a token.
    None,
    /// The mean of each 2×2 block: a quarter of the tokens, the same width.
    Average2,
    /// Each 2×2 block's four vectors side by side: a quarter of the tokens,
    /// four times the width.
    PixelShuffle2,
}

/// Which image tokens the language model sees, and how they are mapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProjectorConfig {
    /// Linear or MLP.
    pub kind: ProjectorKind,
    /// Shrinking the grid first.
    pub pool: TokenPool,
    /// Keep a ViT's CLS token (first, unpooled) besides the grid.
    pub keep_cls: bool,
}
// ANCHOR_END: projector_config

/// Where the tower's tokens lie: an optional CLS token first, then an
/// `side × side` grid read row by row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageGrid {
    /// The tower puts a CLS token before the grid (a ViT).
    pub cls: bool,
    /// Side of the square grid.
    pub side: usize,
    /// Width `C_img` of every token.
    pub width: usize,
}

impl ImageGrid {
    /// Tokens the tower returns: `side²`, plus one for CLS.
    pub fn num_tower_tokens(&self) -> usize {
        self.side * self.side + usize::from(self.cls)
    }
}

impl ProjectorConfig {
    /// Image tokens the language model sees for one image.
    pub fn num_tokens(&self, grid: &ImageGrid) -> usize {
        let cells = match self.pool {
            TokenPool::None => grid.side * grid.side,
            TokenPool::Average2 | TokenPool::PixelShuffle2 => (grid.side / 2) * (grid.side / 2),
        };
        cells + usize::from(self.keep_cls)
    }

    /// Width of each token entering `linear_1`.
    pub fn input_width(&self, grid: &ImageGrid) -> usize {
        match self.pool {
            TokenPool::PixelShuffle2 => 4 * grid.width,
            TokenPool::None | TokenPool::Average2 => grid.width,
        }
    }

    /// A fresh projector from `grid`'s tokens to width `lm_width`, at
    /// PyTorch's default Linear initialisation (as LLaVA's).
    pub fn init(&self, grid: &ImageGrid, lm_width: usize, rng: &mut impl Rng) -> Projector {
        let linear_1 = LinearConfig {
            c_in: self.input_width(grid),
            c_out: lm_width,
            bias: true,
        }
        .init(rng);
        let linear_2 = match self.kind {
            ProjectorKind::Linear => None,
            ProjectorKind::Mlp => Some(
                LinearConfig {
                    c_in: lm_width,
                    c_out: lm_width,
                    bias: true,
                }
                .init(rng),
            ),
        };
        Projector { linear_1, linear_2 }
    }
}

// ANCHOR: projector_struct
/// The projector's parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct Projector {
    /// `[C_lm, C_in]`
    pub linear_1: Linear,
    /// `[C_lm, C_lm]`, after a GELU; `None` for the linear projector.
    pub linear_2: Option<Linear>,
}

/// What [`Projector`]'s backward pass needs.
#[derive(Debug, Clone)]
pub struct ProjectorCache {
    linear_1: LinearCache,
    mlp: Option<(Array3<f32>, LinearCache)>, // GELU's input [B, N, C_lm], linear_2's cache
    grid: ImageGrid,
    config: ProjectorConfig,
    batch: usize,
}
// ANCHOR_END: projector_struct

impl Projector {
    // ANCHOR: projector_forward
    /// The tower's tokens to language-model vectors.
    ///
    /// # Shapes
    /// - `tokens: [B, N_img, C_img]` → `out: [B, N, C_lm]`, `N` =
    ///   [`ProjectorConfig::num_tokens`]
    ///
    /// # Panics
    /// If `tokens` do not lie as `grid` says, or `linear_1` does not take
    /// the pooled width.
    #[track_caller]
    pub fn forward(
        &self,
        tokens: &ArrayRef3<f32>,
        grid: &ImageGrid,
        config: &ProjectorConfig,
    ) -> (Array3<f32>, ProjectorCache) {
        let x = select_and_pool(tokens, grid, config); // [B, N, C_in]
        let (h, linear_1) = self.linear_1.forward(&x); // [B, N, C_lm]
        let (out, mlp) = match &self.linear_2 {
            None => (h, None),
            Some(linear_2) => {
                let a = gelu_forward(&h);
                let (out, cache) = linear_2.forward(&a); // [B, N, C_lm]
                (out, Some((h, cache)))
            }
        };
        let cache = ProjectorCache {
            linear_1,
            mlp,
            grid: *grid,
            config: *config,
            batch: tokens.dim().0,
        };
        (out, cache)
    }
    // ANCHOR_END: projector_forward

    // ANCHOR: projector_backward
    /// Adds the parameter gradients into `grads` (unless frozen: `None`) and
    /// returns the gradient of the tower's tokens (unless nothing upstream
    /// trains: `input = false`, which skips `linear_1`'s `dx` product).
    ///
    /// # Shapes
    /// - `dout: [B, N, C_lm]` → `dtokens: [B, N_img, C_img]`
    ///
    /// # Panics
    /// If `dout` is not the output's shape, or neither a gradient nor the
    /// input gradient is asked for.
    #[track_caller]
    pub fn backward(
        &self,
        dout: &ArrayRef3<f32>,
        cache: &ProjectorCache,
        grads: Option<&mut Projector>,
        input: bool,
    ) -> Option<Array3<f32>> {
        assert!(
            grads.is_some() || input,
            "projector backward: frozen and nothing upstream trains; do not call it"
        );
        let (dlinear_1, dlinear_2) = match grads {
            Some(g) => (Some(&mut g.linear_1), g.linear_2.as_mut()),
            None => (None, None),
        };
        // out = linear_2(gelu(h)) for the MLP, out = h for the linear projector
        let dh = match (&self.linear_2, &cache.mlp) {
            (None, None) => dout.to_owned(),
            (Some(linear_2), Some((h, linear_2_cache))) => {
                let da = match dlinear_2 {
                    Some(g) => linear_2.backward(dout, linear_2_cache, g),
                    None => linear_2.backward_input(dout),
                };
                gelu_backward(&da, h)
            }
            _ => panic!("projector backward: the cache is from the other kind of projector"),
        };
        // h = linear_1(x)
        let dx = match (dlinear_1, input) {
            (Some(g), true) => Some(self.linear_1.backward(&dh, &cache.linear_1, g)),
            (Some(g), false) => {
                self.linear_1.backward_params(&dh, &cache.linear_1, g);
                None
            }
            (None, _) => Some(self.linear_1.backward_input(&dh)),
        }?;
        Some(select_and_pool_backward(
            &dx,
            &cache.grid,
            &cache.config,
            cache.batch,
        ))
    }
    // ANCHOR_END: projector_backward
}

// ANCHOR: pool
/// The tokens the projector reads: CLS (if kept) then the pooled grid.
///
/// # Shapes
/// - `tokens: [B, N_img, C_img]` → `[B, N, C_in]`
///
/// # Panics
/// If `tokens` do not have `grid`'s count and width.
#[track_caller]
pub fn select_and_pool(
    tokens: &ArrayRef3<f32>,
    grid: &ImageGrid,
    config: &ProjectorConfig,
) -> Array3<f32> {
    let (batch, n_img, width) = tokens.dim();
    assert!(
        n_img == grid.num_tower_tokens() && width == grid.width,
        "projector: tokens are {:?}, the grid is {grid:?}",
        tokens.dim()
    );
    let cells = tokens.slice(s![.., usize::from(grid.cls).., ..]); // [B, s·s, C]: the grid alone
    let side = grid.side;
    let half = side / 2;
    let n = config.num_tokens(grid);
    let mut out = Array3::zeros((batch, n, config.input_width(grid)));
    let first = usize::from(config.keep_cls); // the CLS token, if kept, goes first
    if config.keep_cls {
        out.slice_mut(s![.., 0, ..])
            .assign(&tokens.slice(s![.., 0, ..]));
    }
    match config.pool {
        TokenPool::None => out.slice_mut(s![.., first.., ..]).assign(&cells),
        TokenPool::Average2 => {
            // out[i, j] = ¼ Σ over the 2×2 block at (2i, 2j)
            for (i, j, dy, dx) in blocks(half) {
                let cell = cells.slice(s![.., (2 * i + dy) * side + 2 * j + dx, ..]);
                let mut target = out.slice_mut(s![.., first + i * half + j, ..]);
                target.scaled_add(0.25, &cell);
            }
        }
        TokenPool::PixelShuffle2 => {
            // out[i, j] = the block's four vectors side by side, row by row
            for (i, j, dy, dx) in blocks(half) {
                let cell = cells.slice(s![.., (2 * i + dy) * side + 2 * j + dx, ..]);
                let lane = (2 * dy + dx) * width;
                out.slice_mut(s![.., first + i * half + j, lane..lane + width])
                    .assign(&cell);
            }
        }
    }
    out
}

/// The backward of [`select_and_pool`]: each output gradient goes back to
/// the cells it came from (a quarter to each for the average, a copy for the
/// shuffle); a dropped CLS token and cells outside the pooled blocks get zero.
///
/// # Shapes
/// - `dout: [B, N, C_in]` → `dtokens: [B, N_img, C_img]`
#[track_caller]
pub fn select_and_pool_backward(
    dout: &ArrayRef3<f32>,
    grid: &ImageGrid,
    config: &ProjectorConfig,
    batch: usize,
) -> Array3<f32> {
    assert_eq!(
        dout.dim(),
        (batch, config.num_tokens(grid), config.input_width(grid)),
        "projector backward: dout is {:?}, the grid is {grid:?}",
        dout.dim()
    );
    let (side, half, width) = (grid.side, grid.side / 2, grid.width);
    let mut dtokens = Array3::zeros((batch, grid.num_tower_tokens(), width));
    let first = usize::from(config.keep_cls);
    if config.keep_cls {
        dtokens
            .slice_mut(s![.., 0, ..])
            .assign(&dout.slice(s![.., 0, ..]));
    }
    let offset = usize::from(grid.cls); // where the grid starts among the tower's tokens
    match config.pool {
        TokenPool::None => dtokens
            .slice_mut(s![.., offset.., ..])
            .assign(&dout.slice(s![.., first.., ..])),
        TokenPool::Average2 => {
            for (i, j, dy, dx) in blocks(half) {
                let d = dout.slice(s![.., first + i * half + j, ..]);
                let mut target =
                    dtokens.slice_mut(s![.., offset + (2 * i + dy) * side + 2 * j + dx, ..]);
                target.scaled_add(0.25, &d);
            }
        }
        TokenPool::PixelShuffle2 => {
            for (i, j, dy, dx) in blocks(half) {
                let lane = (2 * dy + dx) * width;
                let d = dout.slice(s![.., first + i * half + j, lane..lane + width]);
                dtokens
                    .slice_mut(s![.., offset + (2 * i + dy) * side + 2 * j + dx, ..])
                    .assign(&d);
            }
        }
    }
    dtokens
}
// ANCHOR_END: pool

/// Every `(i, j)` of a `half × half` pooled grid with the four offsets
/// `(dy, dx)` of its 2×2 block, row by row.
fn blocks(half: usize) -> impl Iterator<Item = (usize, usize, usize, usize)> {
    (0..half).flat_map(move |i| {
        (0..half).flat_map(move |j| {
            [(0, 0), (0, 1), (1, 0), (1, 1)]
                .into_iter()
                .map(move |(dy, dx)| (i, j, dy, dx))
        })
    })
}

impl Params for Projector {
    fn params(&self) -> Vec<(String, ArrayViewD<'_, f32>)> {
        let mut list: Vec<_> = prefixed("linear_1", self.linear_1.params()).collect();
        if let Some(linear_2) = &self.linear_2 {
            list.extend(prefixed("linear_2", linear_2.params()));
        }
        list
    }

    fn params_mut(&mut self) -> Vec<(String, ArrayViewMutD<'_, f32>)> {
        let mut list: Vec<_> = prefixed("linear_1", self.linear_1.params_mut()).collect();
        if let Some(linear_2) = &mut self.linear_2 {
            list.extend(prefixed("linear_2", linear_2.params_mut()));
        }
        list
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use embedding::init;
    use embedding::testing::{GradCheck, WithInputs, fakeloss};
    use ndarray::{Ix3, array};
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    const VIT: ImageGrid = ImageGrid {
        cls: true,
        side: 4,
        width: 3,
    };
    const CNN: ImageGrid = ImageGrid {
        cls: false,
        side: 2,
        width: 2,
    };

    fn configs() -> Vec<ProjectorConfig> {
        let mut all = Vec::new();
        for kind in [ProjectorKind::Linear, ProjectorKind::Mlp] {
            for pool in [
                TokenPool::None,
                TokenPool::Average2,
                TokenPool::PixelShuffle2,
            ] {
                for keep_cls in [false, true] {
                    all.push(ProjectorConfig {
                        kind,
                        pool,
                        keep_cls,
                    });
                }
            }
        }
        all
    }

    #[test]
    fn pooling_by_hand() {
        // a 2×2 grid of width 2, no CLS: cells (0,0)=[1,2] (0,1)=[3,4] (1,0)=[5,6] (1,1)=[7,8]
        let tokens = array![[[1.0f32, 2.0], [3.0, 4.0], [5.0, 6.0], [7.0, 8.0]]];
        let config = |pool| ProjectorConfig {
            kind: ProjectorKind::Linear,
            pool,
            keep_cls: false,
        };
        assert_eq!(
            select_and_pool(&tokens, &CNN, &config(TokenPool::None)),
            tokens
        );
        assert_eq!(
            select_and_pool(&tokens, &CNN, &config(TokenPool::Average2)),
            array![[[4.0f32, 5.0]]]
        );
        assert_eq!(
            select_and_pool(&tokens, &CNN, &config(TokenPool::PixelShuffle2)),
            array![[[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]]]
        );
    }

    #[test]
    fn token_counts_and_widths() {
        let c = |pool, keep_cls| ProjectorConfig {
            kind: ProjectorKind::Mlp,
            pool,
            keep_cls,
        };
        assert_eq!(c(TokenPool::None, true).num_tokens(&VIT), 17);
        assert_eq!(c(TokenPool::None, false).num_tokens(&VIT), 16);
        assert_eq!(c(TokenPool::Average2, true).num_tokens(&VIT), 5);
        assert_eq!(c(TokenPool::PixelShuffle2, false).num_tokens(&VIT), 4);
        assert_eq!(c(TokenPool::PixelShuffle2, false).input_width(&VIT), 12);
        assert_eq!(c(TokenPool::Average2, false).input_width(&VIT), 3);
    }

    /// Every kind, pool and CLS choice, on both grids, with the projector
    /// trained and frozen: the parameter gradients (zero when frozen) and the
    /// tokens' gradient against finite differences.
    #[test]
    fn gradcheck_every_configuration_trained_and_frozen() {
        let mut rng = StdRng::seed_from_u64(0);
        for config in configs() {
            for grid in [VIT, CNN] {
                if config.keep_cls && (!grid.cls || config.pool == TokenPool::PixelShuffle2) {
                    continue; // rejected by VlmConfig::validate
                }
                let projector = config.init(&grid, 5, &mut rng);
                let tokens: Array3<f32> =
                    init::normal((2, grid.num_tower_tokens(), grid.width), 1.0, &mut rng);
                let (out, cache) = projector.forward(&tokens, &grid, &config);
                assert_eq!(out.dim(), (2, config.num_tokens(&grid), 5));
                let dout: Array3<f32> = init::normal(out.dim(), 1.0, &mut rng);
                let mut grads = projector.zeros_like();
                let dtokens = projector
                    .backward(&dout, &cache, Some(&mut grads), true)
                    .unwrap();
                // frozen: the same tokens' gradient, no parameter gradient
                let frozen = projector.backward(&dout, &cache, None, true).unwrap();
                assert_eq!(frozen, dtokens, "{config:?}");
                // nothing upstream: the same parameter gradients, no tokens' gradient
                let mut params_only = projector.zeros_like();
                assert!(
                    projector
                        .backward(&dout, &cache, Some(&mut params_only), false)
                        .is_none()
                );
                assert_eq!(params_only, grads);
                let mut state = WithInputs::new(projector, vec![("tokens", tokens)]);
                let analytic = WithInputs::new(grads, vec![("tokens", dtokens)]);
                GradCheck::default()
                    .run(&mut state, &analytic, |s| {
                        fakeloss(
                            &s.module.forward(&s.input::<Ix3>(0), &grid, &config).0,
                            &dout,
                        )
                    })
                    .into_result()
                    .unwrap_or_else(|r| panic!("{config:?} {grid:?}: {r}"));
            }
        }
    }

    #[test]
    fn names_follow_llava() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut names = |kind| -> Vec<String> {
            ProjectorConfig {
                kind,
                pool: TokenPool::None,
                keep_cls: false,
            }
            .init(&CNN, 4, &mut rng)
            .params()
            .into_iter()
            .map(|(n, _)| n)
            .collect()
        };
        assert_eq!(
            names(ProjectorKind::Linear),
            ["linear_1.weight", "linear_1.bias"]
        );
        assert_eq!(
            names(ProjectorKind::Mlp),
            [
                "linear_1.weight",
                "linear_1.bias",
                "linear_2.weight",
                "linear_2.bias"
            ]
        );
    }
}
