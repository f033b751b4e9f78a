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
//!   PyTorch-style names, and loading with every name and shape checked;
//! - [`generate`]: decoding strategies (greedy, temperature and top-k
//!   sampling, beam search) over any model that predicts the next token;
//! - [`zero_shot`]: zero-shot classification with prompt ensembling, and
//!   retrieval ranking with recall@k;
//! - [`checkpoint`]: a folder with the weights, the config (a versioned
//!   `key = value` text format) and the tokenizer, checked on load;
//! - [`caption`]: the strategies on the caption decoder, with the KV cache
//!   ([`Captioner::caption`]) and without it.

pub mod caption;
pub mod checkpoint;
pub mod config;
pub mod decoder;
pub mod generate;
pub mod heads;
pub mod image_encoder;
pub mod model;
pub mod safetensors;
pub mod text_encoder;
pub mod weights;
pub mod zero_shot;

pub use caption::{CachedDecoder, Caption, Captioner, UncachedDecoder, decode};
pub use checkpoint::{
    CONFIG_FILE, CONFIG_FORMAT, Checkpoint, CheckpointError, ConfigSyntaxError, TOKENIZER_FILE,
    WEIGHTS_FILE, WEIGHTS_VERSION, config_from_text, config_to_text, load_checkpoint, load_config,
    save_checkpoint, save_config,
};
pub use config::{
    ConfigError, DecoderConfig, Head, ImageConfig, ModelConfig, SpecialTokens, TextConfig,
};
pub use decoder::{Decoder, DecoderCache, DecoderState};
pub use generate::{
    Beam, Bigram, Generated, GenerationConfig, NextToken, Sampling, Strategy, beam_search, greedy,
    sample, sequence_log_prob,
};
pub use heads::{L2_EPS, l2_normalize, l2_normalize_backward, projection};
pub use image_encoder::{ImageEncoder, ImageEncoderCache, ImageOutput};
pub use model::{Model, ModelCache, ModelOutput, ModelOutputGrads};
pub use safetensors::{FormatError, Tensors};
pub use text_encoder::{TextEncoder, TextEncoderCache};
pub use weights::{MismatchReport, WeightsError, load_weights, save_weights, write_atomic};
pub use zero_shot::{
    PROMPT_TEMPLATES, Ranked, ZeroShotClassifier, average_prompts, embed_texts, fill_template,
    l2_normalize_rows, prompts, recall_at_k, similarity, tokenize_texts, top_k, zero_shot_probs,
};

/// The gradient-check settings of this crate's tests.
///
/// A step `h = 1e-2` (as the attention crate uses): the losses here sum many
/// f32 logits through softmaxes and LayerNorms, so they carry rounding noise
/// near `1e-6` of their size, which a central difference over `2h` turns
/// into a few `1e-4` of noise in the slope (seen on key biases, whose true
/// gradient is exactly zero). `atol = 1e-3` sits above that noise; `rtol`
/// stays at 1 %, so any dropped term or wrong factor on a real gradient
/// still fails.
#[cfg(test)]
pub(crate) fn gradcheck() -> embedding::testing::GradCheck {
    embedding::testing::GradCheck {
        step: 1e-2,
        atol: 1e-3,
        ..Default::default()
    }
}
