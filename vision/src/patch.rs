//! Patch embedding: an image as a sequence of tokens (ViT's first layer).
//!
//! Cut the image into non-overlapping `P × P` patches, flatten each to a
//! vector of `C_in·P·P` pixels, and project it to `C` channels with one shared
//! linear map. Two ways to write the same thing:
//!
//! - reshape + Linear ([`PatchEmbed::forward`]): [`patchify`] gives
//!   `[B, N, C_in·P·P]`, then `tokens = patches · Wᵀ + b`;
//! - a convolution with kernel `P` and stride `P` ([`PatchEmbed::forward_conv`]):
//!   its windows are exactly the patches, and each kernel is a row of `W`.
//!   This is how PyTorch implementations write it (`nn.Conv2d(3, C, P, stride=P)`
//!   then `flatten(2).transpose(1, 2)`).
//!
//! The weight is stored in the convolution's layout `[C, C_in, P, P]` (state_dict
//! name `proj.weight`); flattened per row in `(c, i, j)` order it is the
//! Linear's `[C, C_in·P·P]`. Patches are numbered row by row: token
//! `n = gy·(W/P) + gx`.
//! Reference: Dosovitskiy et al. 2021, "An Image is Worth 16x16 Words", §3.1.

use embedding::{gemm, matmul};
use ndarray::{Array3, Array4, ArrayRef3, ArrayRef4, ArrayViewD, ArrayViewMutD, Axis, IxDyn};
use rand::Rng;

use embedding::{Params, prefixed};

use crate::conv::{Conv2d, Conv2dCache, Conv2dConfig};

// ANCHOR: patchify
/// Cuts images into `P × P` patches and flattens each one.
///
/// Patch `n = gy·(W/P) + gx` holds `images[b, c, gy·P + i, gx·P + j]` at
/// position `(c·P + i)·P + j`.
///
/// # Shapes
/// - `images: [B, C_in, H, W]` → `[B, N, C_in·P·P]`, `N = (H/P)·(W/P)`
///
/// # Panics
/// If `H` or `W` is not a multiple of `P`.
#[track_caller]
pub fn patchify(images: &ArrayRef4<f32>, patch: usize) -> Array3<f32> {
    let (batch, channels, height, width) = images.dim();
    assert!(
        patch > 0 && height % patch == 0 && width % patch == 0,
        "patchify: images are {:?}, patch {patch} must divide H and W",
        images.dim()
    );
    let (grid_h, grid_w) = (height / patch, width / patch);
    let split = images
        .to_shape(IxDyn(&[batch, channels, grid_h, patch, grid_w, patch]))
        .unwrap(); // [B, C_in, H/P, P, W/P, P]: splitting axes never fails
    let grouped = split.permuted_axes(IxDyn(&[0, 2, 4, 1, 3, 5])); // [B, H/P, W/P, C_in, P, P]
    grouped
        .as_standard_layout() // the one copy: pixels of a patch become neighbours
        .into_owned()
        .into_shape_with_order((batch, grid_h * grid_w, channels * patch * patch))
        .unwrap() // contiguous by construction
}
// ANCHOR_END: patchify

/// Puts patches back into images: the inverse of [`patchify`], and so also
/// its backward pass (a permutation's transpose is its inverse).
///
/// # Shapes
/// - `patches: [B, N, C_in·P·P]` → `[B, C_in, H, W]`
///
/// # Panics
/// If the sizes do not fit together.
#[track_caller]
pub fn unpatchify(
    patches: &ArrayRef3<f32>,
    patch: usize,
    channels: usize,
    (height, width): (usize, usize),
) -> Array4<f32> {
    let (batch, n, k) = patches.dim();
    let (grid_h, grid_w) = (height / patch, width / patch);
    assert!(
        height % patch == 0
            && width % patch == 0
            && n == grid_h * grid_w
            && k == channels * patch * patch,
        "unpatchify: patches are {:?}, want [_, {}, {}] for {channels}×{height}×{width} images and patch {patch}",
        patches.dim(),
        grid_h * grid_w,
        channels * patch * patch
    );
    let split = patches
        .to_shape(IxDyn(&[batch, grid_h, grid_w, channels, patch, patch]))
        .unwrap(); // [B, H/P, W/P, C_in, P, P]
    let images = split.permuted_axes(IxDyn(&[0, 3, 1, 4, 2, 5])); // [B, C_in, H/P, P, W/P, P]
    images
        .as_standard_layout()
        .into_owned()
        .into_shape_with_order((batch, channels, height, width))
        .unwrap() // contiguous by construction
}

/// A feature map as a sequence of tokens, one per position, row by row.
///
/// # Shapes
/// - `map: [B, C, H, W]` → `[B, H·W, C]`
pub fn map_to_tokens(map: &ArrayRef4<f32>) -> Array3<f32> {
    let (batch, channels, height, width) = map.dim();
    let tokens = map.view().permuted_axes([0, 2, 3, 1]); // [B, H, W, C]
    tokens
        .as_standard_layout()
        .into_owned()
        .into_shape_with_order((batch, height * width, channels))
        .unwrap() // contiguous by construction
}

/// The inverse of [`map_to_tokens`] (and its backward pass).
///
/// # Shapes
/// - `tokens: [B, H·W, C]` → `[B, C, H, W]`
///
/// # Panics
/// If the token count is not `H·W`.
#[track_caller]
pub fn tokens_to_map(tokens: &ArrayRef3<f32>, (height, width): (usize, usize)) -> Array4<f32> {
    let (batch, n, channels) = tokens.dim();
    assert_eq!(
        n,
        height * width,
        "tokens_to_map: tokens are {:?}, want {} = {height}×{width} tokens",
        tokens.dim(),
        height * width
    );
    let map = tokens.to_shape((batch, height, width, channels)).unwrap(); // [B, H, W, C]
    map.permuted_axes([0, 3, 1, 2])
        .as_standard_layout()
        .into_owned() // [B, C, H, W]
}

// ANCHOR: patch_struct
/// `P × P` patches projected to `C` channels.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchEmbed {
    /// A convolution with kernel `P`, stride `P`, no padding:
    /// `weight: [C, C_in, P, P]`, `bias: [C]`.
    pub proj: Conv2d,
}

/// What `PatchEmbed::backward` needs: the flattened patches and the image shape.
#[derive(Debug, Clone)]
pub struct PatchEmbedCache {
    patches: ndarray::Array2<f32>,       // [B·N, C_in·P·P]
    image: (usize, usize, usize, usize), // (B, C_in, H, W)
}
// ANCHOR_END: patch_struct

/// The sizes of a fresh [`PatchEmbed`].
#[derive(Debug, Clone, PartialEq)]
pub struct PatchEmbedConfig {
    /// Image channels `C_in`.
    pub in_channels: usize,
    /// Token width `C`.
    pub dim: usize,
    /// Patch side `P`; must divide the image's height and width.
    pub patch: usize,
}

impl Default for PatchEmbedConfig {
    /// RGB, 8×8 patches (a 32×32 image is 16 tokens), 64 channels.
    fn default() -> Self {
        PatchEmbedConfig {
            in_channels: 3,
            dim: 64,
            patch: 8,
        }
    }
}

impl PatchEmbedConfig {
    /// PyTorch's `nn.Conv2d` default initialisation, `U(−a, a)` with `a = 1/√(C_in·P·P)`.
    pub fn init(&self, rng: &mut impl Rng) -> PatchEmbed {
        PatchEmbed::new(
            Conv2dConfig {
                c_in: self.in_channels,
                c_out: self.dim,
                kernel: self.patch,
                stride: self.patch,
                padding: 0,
                bias: true,
            }
            .init(rng),
        )
    }
}

impl PatchEmbed {
    /// A patch embedding from a convolution whose stride equals its square kernel.
    ///
    /// # Panics
    /// If the kernel is not square, the stride differs from it, there is
    /// padding, or there is no bias.
    #[track_caller]
    pub fn new(proj: Conv2d) -> Self {
        let (kh, kw) = proj.kernel_size();
        assert!(
            kh == kw && proj.stride == kh && proj.padding == 0 && proj.bias.is_some(),
            "patch embed: needs a square kernel with stride = kernel, no padding and a bias; \
             got weight {:?}, stride {}, padding {}",
            proj.weight.dim(),
            proj.stride,
            proj.padding
        );
        PatchEmbed { proj }
    }

    /// Patch side `P`.
    pub fn patch(&self) -> usize {
        self.proj.kernel_size().0
    }

    /// Token width `C`.
    pub fn dim(&self) -> usize {
        self.proj.c_out()
    }

    /// Number of patches `N` of an `H × W` image.
    pub fn num_patches(&self, height: usize, width: usize) -> usize {
        (height / self.patch()) * (width / self.patch())
    }

    /// The weight as the Linear's matrix `[C, C_in·P·P]` (a view, no copy).
    fn weight_matrix(&self) -> ndarray::ArrayView2<'_, f32> {
        let (dim, c_in, p, _) = self.proj.weight.dim();
        self.proj
            .weight
            .view()
            .into_shape_with_order((dim, c_in * p * p))
            .expect("patch embed: weight must be in standard layout (Conv2d::new makes it so)")
    }

    // ANCHOR: forward
    /// Patches, then one Linear.
    ///
    /// # Shapes
    /// - `images: [B, C_in, H, W]` → `tokens: [B, N, C]`
    ///
    /// # Panics
    /// If the channels differ from `C_in` or `P` does not divide `H` and `W`.
    #[track_caller]
    pub fn forward(&self, images: &ArrayRef4<f32>) -> (Array3<f32>, PatchEmbedCache) {
        let (batch, c_in, height, width) = images.dim();
        assert_eq!(
            c_in,
            self.proj.c_in(),
            "patch embed: images are {:?}, weight is {:?}",
            images.dim(),
            self.proj.weight.dim()
        );
        let patches = patchify(images, self.patch()); // [B, N, C_in·P·P]
        let (_, n, k) = patches.dim();
        let patches = patches.into_shape_with_order((batch * n, k)).unwrap(); // [B·N, K], contiguous
        // the Linear: tokens = patches · Wᵀ + b
        let mut tokens = matmul(&patches, &self.weight_matrix().t()); // [B·N, K] · [K, C] = [B·N, C]
        if let Some(bias) = &self.proj.bias {
            tokens += bias; // broadcast [C] over rows
        }
        let tokens = tokens
            .into_shape_with_order((batch, n, self.dim()))
            .unwrap(); // [B, N, C]
        let image = (batch, c_in, height, width);
        (tokens, PatchEmbedCache { patches, image })
    }
    // ANCHOR_END: forward

    // ANCHOR: backward
    /// # Shapes
    /// - `dout: [B, N, C]` → `dimages: [B, C_in, H, W]`
    ///
    /// # Panics
    /// If `dout` is not the forward output's shape.
    #[track_caller]
    pub fn backward(
        &self,
        dout: &ArrayRef3<f32>,
        cache: &PatchEmbedCache,
        grads: &mut PatchEmbed,
    ) -> Array4<f32> {
        self.backward_params(dout, cache, grads); // dW and db
        let (batch, c_in, height, width) = cache.image;
        let n = self.num_patches(height, width);
        let p = self.proj.weight.dim().2;
        let dout = dout.to_shape((batch * n, self.dim())).unwrap(); // [B·N, C]
        // in the forward pass this was:
        //   tokens = patches · Wᵀ + b
        // so the patches' gradient is:
        let dpatches = matmul(&dout, &self.weight_matrix()); // [B·N, C] · [C, K] = [B·N, K]
        let dpatches = dpatches
            .into_shape_with_order((batch, n, c_in * p * p))
            .unwrap(); // [B, N, K]
        unpatchify(&dpatches, p, c_in, (height, width))
    }

    /// [`PatchEmbed::backward`] for the parameters only: the gradient of the
    /// pixels (a product and an unpatchify) is not computed.
    ///
    /// # Panics
    /// As [`PatchEmbed::backward`].
    #[track_caller]
    pub fn backward_params(
        &self,
        dout: &ArrayRef3<f32>,
        cache: &PatchEmbedCache,
        grads: &mut PatchEmbed,
    ) {
        let (batch, c_in, height, width) = cache.image;
        let n = self.num_patches(height, width);
        assert_eq!(
            dout.dim(),
            (batch, n, self.dim()),
            "patch embed backward: dout is {:?}, tokens were {:?}",
            dout.dim(),
            (batch, n, self.dim())
        );
        let dout = dout.to_shape((batch * n, self.dim())).unwrap(); // [B·N, C]
        let (dim, _, p, _) = self.proj.weight.dim();
        let mut dweight = grads
            .proj
            .weight
            .view_mut()
            .into_shape_with_order((dim, c_in * p * p))
            .expect("patch embed backward: grads weight must be in standard layout"); // [C, K]
        // in the forward pass this was:
        //   tokens = patches · Wᵀ + b
        // so now we have:
        gemm(1.0, &dout.t(), &cache.patches, 1.0, &mut dweight); // dW += doutᵀ · patches
        if let Some(dbias) = &mut grads.proj.bias {
            *dbias += &dout.sum_axis(Axis(0)); // db += Σ_rows dout
        }
    }
    // ANCHOR_END: backward

    // ANCHOR: forward_conv
    /// The same map as a stride-`P` convolution, then the feature map read as tokens.
    ///
    /// # Shapes
    /// - `images: [B, C_in, H, W]` → `tokens: [B, N, C]`
    ///
    /// # Panics
    /// If the channels differ from `C_in` or the image is smaller than a patch.
    #[track_caller]
    pub fn forward_conv(&self, images: &ArrayRef4<f32>) -> (Array3<f32>, Conv2dCache) {
        let (map, cache) = self.proj.forward(images); // [B, C, H/P, W/P]
        (map_to_tokens(&map), cache) // [B, N, C]
    }
    // ANCHOR_END: forward_conv

    /// The backward pass of [`PatchEmbed::forward_conv`].
    ///
    /// # Shapes
    /// - `dout: [B, N, C]` → `dimages: [B, C_in, H, W]`
    ///
    /// # Panics
    /// If `dout` does not fit the cached images.
    #[track_caller]
    pub fn backward_conv(
        &self,
        dout: &ArrayRef3<f32>,
        cache: &Conv2dCache,
        grads: &mut PatchEmbed,
    ) -> Array4<f32> {
        let (_, _, height, width) = cache.input_dim();
        let grid = self.proj.output_size(height, width);
        let dmap = tokens_to_map(dout, grid); // [B, C, H/P, W/P]
        self.proj.backward(&dmap, cache, &mut grads.proj)
    }
}

impl Params for PatchEmbed {
    fn params(&self) -> Vec<(String, ArrayViewD<'_, f32>)> {
        prefixed("proj", self.proj.params()).collect()
    }

    fn params_mut(&mut self) -> Vec<(String, ArrayViewMutD<'_, f32>)> {
        prefixed("proj", self.proj.params_mut()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use embedding::testing::{GradCheck, WithInputs, assert_allclose, fakeloss};
    use embedding::{Layer, Linear, init};
    use ndarray::{Ix4, s};
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn embed(seed: u64) -> PatchEmbed {
        PatchEmbedConfig {
            in_channels: 2,
            dim: 5,
            patch: 2,
        }
        .init(&mut StdRng::seed_from_u64(seed))
    }

    #[test]
    fn patchify_by_hand() {
        // one channel, 4×4 image numbered 0..16, 2×2 patches
        let images = Array4::from_shape_fn((1, 1, 4, 4), |(_, _, y, x)| (y * 4 + x) as f32);
        let patches = patchify(&images, 2);
        assert_eq!(patches.dim(), (1, 4, 4));
        assert_eq!(patches.slice(s![0, 0, ..]).to_vec(), [0.0, 1.0, 4.0, 5.0]); // top left
        assert_eq!(patches.slice(s![0, 1, ..]).to_vec(), [2.0, 3.0, 6.0, 7.0]); // top right
        assert_eq!(patches.slice(s![0, 2, ..]).to_vec(), [8.0, 9.0, 12.0, 13.0]); // bottom left
        assert_eq!(unpatchify(&patches, 2, 1, (4, 4)), images);
    }

    #[test]
    fn patchify_round_trips_with_channels() {
        let images: Array4<f32> = init::normal((2, 3, 6, 4), 1.0, &mut StdRng::seed_from_u64(0));
        let patches = patchify(&images, 2);
        assert_eq!(patches.dim(), (2, 6, 12));
        assert_eq!(unpatchify(&patches, 2, 3, (6, 4)), images);
        assert_eq!(tokens_to_map(&map_to_tokens(&images), (6, 4)), images);
    }

    #[test]
    fn linear_and_conv_forms_agree() {
        let layer = embed(1);
        let images: Array4<f32> = init::normal((2, 2, 6, 4), 1.0, &mut StdRng::seed_from_u64(2));
        let (by_linear, lcache) = layer.forward(&images);
        let (by_conv, ccache) = layer.forward_conv(&images);
        assert_eq!(by_linear.dim(), (2, 6, 5));
        assert_allclose("tokens", &by_linear, &by_conv, 1e-5, 1e-6);

        // and the Linear really is embedding::Linear with the flattened kernels
        let (dim, c_in, p, _) = layer.proj.weight.dim();
        let weight = layer
            .proj
            .weight
            .to_shape((dim, c_in * p * p))
            .unwrap()
            .into_owned();
        let linear = Linear::new(weight, layer.proj.bias.clone());
        let (by_embedding_linear, _) = linear.forward(&patchify(&images, 2));
        assert_allclose("tokens", &by_linear, &by_embedding_linear, 1e-6, 1e-6);

        let dout: Array3<f32> = init::normal(by_linear.dim(), 1.0, &mut StdRng::seed_from_u64(3));
        let (mut g_linear, mut g_conv) = (layer.zeros_like(), layer.zeros_like());
        let dx_linear = layer.backward(&dout, &lcache, &mut g_linear);
        let dx_conv = layer.backward_conv(&dout, &ccache, &mut g_conv);
        assert_allclose("dimages", &dx_linear, &dx_conv, 1e-5, 1e-6);
        assert_allclose(
            "dweight",
            &g_linear.proj.weight,
            &g_conv.proj.weight,
            1e-5,
            1e-5,
        );
        assert_allclose(
            "dbias",
            g_linear.proj.bias.as_ref().unwrap(),
            g_conv.proj.bias.as_ref().unwrap(),
            1e-5,
            1e-5,
        );
    }

    #[test]
    fn patch_embed_gradcheck() {
        let layer = embed(4);
        let images: Array4<f32> = init::normal((2, 2, 4, 6), 1.0, &mut StdRng::seed_from_u64(5));
        let (out, cache) = layer.forward(&images);
        let dout: Array3<f32> = init::normal(out.dim(), 1.0, &mut StdRng::seed_from_u64(6));
        let mut grads = layer.zeros_like();
        let dx = layer.backward(&dout, &cache, &mut grads);
        let analytic = WithInputs::new(grads, vec![("images", dx)]);
        let mut state = WithInputs::new(layer, vec![("images", images)]);
        GradCheck::default()
            .run(&mut state, &analytic, |s| {
                fakeloss(&s.module.forward(&s.input::<Ix4>(0)).0, &dout)
            })
            .into_result()
            .unwrap();
    }

    #[test]
    fn patch_embed_conv_form_gradcheck() {
        let layer = embed(7);
        let images: Array4<f32> = init::normal((1, 2, 6, 4), 1.0, &mut StdRng::seed_from_u64(8));
        let (out, cache) = layer.forward_conv(&images);
        let dout: Array3<f32> = init::normal(out.dim(), 1.0, &mut StdRng::seed_from_u64(9));
        let mut grads = layer.zeros_like();
        let dx = layer.backward_conv(&dout, &cache, &mut grads);
        let analytic = WithInputs::new(grads, vec![("images", dx)]);
        let mut state = WithInputs::new(layer, vec![("images", images)]);
        GradCheck::default()
            .run(&mut state, &analytic, |s| {
                fakeloss(&s.module.forward_conv(&s.input::<Ix4>(0)).0, &dout)
            })
            .into_result()
            .unwrap();
    }

    #[test]
    fn params_use_pytorch_names() {
        let names: Vec<String> = embed(0).params().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["proj.weight", "proj.bias"]);
    }

    #[test]
    #[should_panic(expected = "patchify: images are (1, 2, 5, 4), patch 2 must divide H and W")]
    fn image_size_not_a_multiple_of_the_patch_panics() {
        let _ = embed(0).forward(&Array4::zeros((1, 2, 5, 4)));
    }
}
