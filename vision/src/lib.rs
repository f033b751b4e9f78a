//! # vision: pixels to vectors
//!
//! An image becomes vectors in the two ways the field uses:
//!
//! - a **convolutional network** ([`CnnEncoder`]): small kernels slid over the
//!   pixels ([`Conv2d`]), a non-linearity ([`Relu`]) and pooling
//!   ([`MaxPool2d`], [`AvgPool2d`], [`GlobalAvgPool`]), block after block, until
//!   a coarse grid of feature vectors remains;
//! - a **Vision Transformer** ([`Vit`]): the image cut into `P × P` patches,
//!   each projected to a vector ([`PatchEmbed`]), a CLS token and learned
//!   positions added, then a stack of the `attention` crate's transformer blocks.
//!
//! Both give a grid of vectors `[B, N, C]` (for a caption decoder to
//! cross-attend to) and one vector per image `[B, C]` (for contrastive
//! training). [`Conv2d`] comes twice: the direct loops of the formula (the
//! teaching reference) and im2col + one matrix product (the fast version),
//! tested equal. [`images`] loads PNG/JPEG files into normalised tensors.
//! [`audio`] turns a sound into a spectrogram, a one-channel image the same
//! towers can read (a DFT written out, and the FFT, tested equal).
//!
//! ## Example
//! ```
//! use embedding::Params;
//! use ndarray::{Array2, Array3, Array4};
//! use rand::SeedableRng;
//! use vision::{CnnConfig, VitConfig};
//!
//! let mut rng = rand::rngs::StdRng::seed_from_u64(0);
//! let images = Array4::<f32>::zeros((2, 3, 32, 32)); // [B, C_in, H, W]
//!
//! let cnn = CnnConfig::default().init(&mut rng); // 3 → 32 → 64 channels, two 2×2 pools
//! let (out, cache) = cnn.forward(&images);
//! assert_eq!(out.grid.dim(), (2, 8 * 8, 64)); // [B, N, C]: one token per position of the 8×8 map
//! assert_eq!(out.pooled.dim(), (2, 64)); // [B, C]
//! let mut grads = cnn.zeros_like();
//! let dimages = cnn.backward(&Array3::ones((2, 64, 64)), &Array2::zeros((2, 64)), &cache, &mut grads);
//! assert_eq!(dimages.dim(), images.dim());
//!
//! let vit = VitConfig::default().init(&mut rng); // 8×8 patches, width 64, two blocks
//! let (out, _) = vit.forward(&images);
//! assert_eq!(out.tokens.dim(), (2, 16 + 1, 64)); // [B, N + 1, C]: CLS, then 16 patches
//! assert_eq!(out.cls.dim(), (2, 64)); // [B, C]
//! ```
//!
//! ## Shapes
//! `B` batch, `C` channels (`C_in`/`C_out` of a convolution), `H × W` image
//! or feature-map height and width (`H_out × W_out` after a layer), `k` kernel
//! side (`k_h × k_w`), `s` stride, `p` padding, `P` patch side, `N` tokens
//! (`N = (H/P)·(W/P)` patches, or the `H·W` positions of a CNN feature map;
//! `N + 1` with a CLS token). Images are `[B, C, H, W]` (NCHW, PyTorch's
//! layout); token sequences are `[B, N, C]`, channels innermost.
//! Conv2d weights are `[C_out, C_in, k_h, k_w]`.
//!
//! ## Public API at a glance
//! ```text
//! CnnConfig { in_channels, channels, kernel, pool }.init(&mut rng) -> CnnEncoder : Params + Clone
//!   CnnEncoder::forward(&self, images: [B,C_in,H,W]) -> (CnnOutput { grid: [B,N,C], pooled: [B,C] }, CnnCache)
//!   CnnEncoder::backward(&self, dgrid, dpooled, &cache, &mut grads) -> dimages
//!   CnnEncoder::dim() = C, grid_size(H, W) -> (H', W'), N = H'·W'
//! VitConfig { image_size, in_channels, patch, depth, block: BlockConfig }.init(&mut rng) -> Vit : Params + Clone
//!   Vit::forward(&self, images) -> (VitOutput { tokens: [B,N+1,C], cls: [B,C] }, VitCache)
//!   Vit::backward(&self, dtokens, dcls, &cache, &mut grads) -> dimages
//! Conv2dConfig { c_in, c_out, kernel, stride, padding, bias }.init(&mut rng) -> Conv2d
//!   forward / backward (im2col), forward_direct / backward_direct (loops)
//! PatchEmbedConfig { in_channels, dim, patch }.init(&mut rng) -> PatchEmbed
//!   forward / backward (patchify + Linear), forward_conv / backward_conv
//! Preprocess { height, width, mean, std }: load(path), load_batch(paths), to_tensor(&RgbImage), to_image
//! load_image(path), load_image_bytes(bytes, name) -> Result<RgbImage, ImageError>; save_png(tensor, path)
//! ```
//!
//! ## References
//! - PyTorch `nn.Conv2d`, `nn.MaxPool2d`, `nn.AvgPool2d`: layouts, output sizes, init.
//! - Chellapilla, Puri & Simard 2006: convolution as a matrix product (im2col).
//! - LeCun et al. 1998, "Gradient-Based Learning Applied to Document Recognition" (the CNN).
//! - Dosovitskiy et al. 2021, "An Image is Worth 16x16 Words" (ViT, patch embedding, CLS token).

pub mod audio;
pub mod cnn;
pub mod conv;
pub mod images;
pub mod patch;
pub mod pool;
pub mod relu;
pub mod vit;

pub use cnn::{CnnCache, CnnConfig, CnnEncoder, CnnOutput, ConvBlock, ConvBlockCache};
pub use conv::{Conv2d, Conv2dCache, Conv2dConfig, col2im, conv_output_size, flip_kernel, im2col};
pub use images::{ImageError, Preprocess, load_image, load_image_bytes, save_png, stack_images};
pub use patch::{
    PatchEmbed, PatchEmbedCache, PatchEmbedConfig, map_to_tokens, patchify, tokens_to_map,
    unpatchify,
};
pub use pool::{
    AvgPool2d, AvgPool2dCache, GlobalAvgPool, GlobalAvgPoolCache, MaxPool2d, MaxPool2dCache,
};
pub use relu::{Relu, ReluCache};
pub use vit::{Vit, VitCache, VitConfig, VitOutput};
