//! # model: two towers and a decoder
//!
//! The pieces of the earlier crates meet here: a CLIP-style dual encoder
//! that puts images and captions in one shared space, and a decoder that
//! reads the image through cross-attention and writes its caption (the CoCa
//! layout).
//!
//! - [`config`]: [`ModelConfig`], one nested config per part (text,
//!   image, decoder, shared space), `tiny` and `micro` presets, and
//!   [`ModelConfig::validate`] turning an impossible shape into a [`ConfigError`];
//! - [`safetensors`]: the file format, read and written by hand;
//! - [`weights`]: saving any [`embedding::Params`] module under its
//!   PyTorch-style names, and loading with every name and shape checked.

pub mod config;
pub mod safetensors;
pub mod weights;

pub use config::{
    ConfigError, DecoderConfig, Head, ImageConfig, ModelConfig, SpecialTokens, TextConfig,
};
pub use safetensors::{FormatError, Tensors};
pub use weights::{MismatchReport, WeightsError, load_weights, save_weights, write_atomic};
