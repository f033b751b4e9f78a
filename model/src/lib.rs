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
//! - [`text_encoder`]: CLIP's text tower, pooled at `<|eos|>`;
//! - [`image_encoder`]: a ViT or a CNN behind one interface (tokens + pooled);
//! - [`heads`]: projections into the shared space and L2 normalisation
//!   with its backward pass;
//! - [`decoder`]: the caption decoder (causal self-attention, cross-attention
//!   to the image tokens), its output head tied or separate, and incremental
//!   decoding with KV caches;
//! - [`model`]: [`Model`], the whole forward and backward pass;
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
//!
//! ## The batch
//! `tokens: [B, T]` holds `<|bos|> caption <|eos|> <|pad|>…` per row and
//! `lengths[b]` counts `<|bos|>` to `<|eos|>` inclusive (`2 ≤ lengths[b] ≤ T ≤
//! max_len`). The text tower reads the whole row with causal attention and
//! pools position `lengths[b] − 1` (the `<|eos|>`). The decoder reads
//! `tokens[:, ..T−1]`; its logits at position `t` score `tokens[:, t + 1]`,
//! and the captioning loss ignores padding targets.
//!
//! ```
//! use embedding::Params;
//! use model::{ModelConfig, ModelOutputGrads};
//! use ndarray::{Array4, array};
//! use rand::SeedableRng;
//!
//! let config = ModelConfig::micro(12); // bos 9, eos 10, pad 11
//! let model = config.init(&mut rand::rngs::StdRng::seed_from_u64(0))?;
//! let images = Array4::<f32>::zeros((2, 3, 8, 8)); // [B, C_in, H, W]
//! let tokens = array![[9, 1, 2, 10, 11], [9, 3, 4, 5, 10]]; // [B, T]
//! let (out, cache) = model.forward(&images, &tokens, &[4, 5]);
//! assert_eq!(out.text_embeds.dim(), (2, config.embed_dim)); // unit rows in the shared space
//! assert_eq!(out.logits.dim(), (2, 4, 12)); // [B, T − 1, V]
//!
//! // a loss would supply these; here: only the first caption's first logit matters
//! let mut dout = ModelOutputGrads::zeros_like(&out);
//! dout.dlogits[[0, 0, 1]] = 1.0;
//! let mut grads = model.zeros_like();
//! model.backward(&dout, &cache, &mut grads);
//! let dwte = &grads.decoder.token_embedding.weight; // tied: the head's and the lookup's share
//! assert!(dwte.iter().any(|&g| g != 0.0));
//! # Ok::<(), model::ConfigError>(())
//! ```
//!
//! ## Public API at a glance
//! ```text
//! ModelConfig::tiny(vocab) | ModelConfig::micro(vocab); .validate() -> Result<(), ConfigError>
//!   { vocab, max_len, special: SpecialTokens { bos, eos, pad }, text: TextConfig,
//!     image: ImageConfig::{Vit(VitConfig), Cnn { cnn, image_size }}, decoder: DecoderConfig { .., head: Head },
//!     embed_dim, logit_scale_init, logit_scale_max }
//! ModelConfig::init(&self, &mut rng) -> Result<Model, ConfigError>          Model: Params + Clone
//!   Model::forward(&self, images: [B,3,H,W], tokens: [B,T], lengths: &[usize]) -> (ModelOutput, ModelCache)
//!     ModelOutput { image_embeds: [B,E], text_embeds: [B,E], logit_scale: f32 (= exp), logits: [B,T-1,V] }
//!   Model::backward(&self, &ModelOutputGrads { dimage_embeds, dtext_embeds, dlogit_scale, dlogits }, &cache, &mut grads)
//!   Model::encode_images(images) -> (image_tokens: [B,N_img,C_img], image_embeds: [B,E])
//!   Model::encode_texts(tokens, lengths) -> text_embeds: [B,E]
//!   Model::config(), logit_scale_exp(), clamp_logit_scale()
//! Decoder (model.decoder): logits(image_tokens, tokens: [B,T]) -> [B,T,V]
//!   start(image_tokens) -> DecoderState; step(&mut state, tokens: [B,T_new]) -> [B,V] (after the last new token)
//!   DecoderState::{len, batch, select(rows)}: reorder/duplicate rows (beam search)
//! l2_normalize(x: [B,E]) -> (y, norms); l2_normalize_backward(dy, y, norms) -> dx
//! save_weights(path, &model, &metadata) / load_weights(path, &mut model) -> metadata
//!
//! trait NextToken { type State: Clone; fn step(&self, &mut State, token) -> logits [V] }
//!   greedy(model, state, &GenerationConfig { bos, eos, max_new_tokens }) -> Generated
//!   sample(.., &Sampling { temperature, top_k }, &mut rng) -> Generated
//!   beam_search(.., &Beam { width, length_penalty }) -> Vec<Generated> (best first)
//!   Generated { ids, finished, log_prob, score }; Bigram (a toy NextToken)
//! CachedDecoder { decoder } | UncachedDecoder { decoder, image_tokens }: NextToken
//! Captioner::new(&model, &tokenizer).caption(images, &Strategy) -> Vec<Caption { ids, text, .. }>
//!   (caption_uncached: the same without the KV cache; caption_greedy_batched: all images per step)
//! ZeroShotClassifier::new(&model, &tokenizer, classes, templates); .classify(&model, images) -> [B,K]
//!   top_k(&similarity(a, b), k) -> Vec<Vec<Ranked { index, score }>>; recall_at_k(..)
//! save_checkpoint(dir, &model, &tokenizer); load_checkpoint(dir) -> Result<Checkpoint, CheckpointError>
//! ```
//!
//! ## Shapes
//! `B` batch, `T` caption tokens (`≤ max_len`), `V` vocabulary, `E` shared
//! space, `C_text`/`C_img`/`C_dec` the widths of the text tower, the image
//! tower and the decoder, `N_img` image tokens (`N + 1` for a ViT with CLS,
//! `H'·W'` for a CNN), images `[B, C_in, H, W]`.
//!
//! ## References
//! - Radford et al. 2021, "Learning Transferable Visual Models From Natural
//!   Language Supervision" (CLIP); open_clip (`logit_scale`, its clamp).
//! - Yu et al. 2022, "CoCa: Contrastive Captioners are Image-Text Foundation Models".
//! - Press & Wolf 2017, "Using the Output Embedding to Improve Language Models" (tying).
//! - Hugging Face safetensors: the file format.

pub mod caption;
pub mod chat;
pub mod checkpoint;
pub mod config;
pub mod decoder;
pub mod generate;
pub mod heads;
pub mod image_encoder;
pub mod lm;
mod lm_head;
pub mod model;
pub mod projector;
pub mod safetensors;
pub mod text_encoder;
pub mod vlm;
pub mod vlm_checkpoint;
pub mod vlm_generate;
pub mod weights;
pub mod zero_shot;

pub use caption::{CachedDecoder, Caption, Captioner, UncachedDecoder, decode, greedy_batched};
pub use chat::{
    ASSISTANT, AnswerLoss, CHAT_SPECIAL_TOKENS, ChatError, ChatExample, ChatTokens, END, ImageSlot,
    Turn, USER, answer_loss, collate, encode_chat, encode_prompt, encode_user,
};
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
    Beam, Bigram, Generated, GenerationConfig, NextToken, Sampling, Strategy, argmax, beam_search,
    greedy, log_softmax, sample, sample_index, sampling_probs, sequence_log_prob,
};
pub use heads::{L2_EPS, l2_normalize, l2_normalize_backward, projection};
pub use image_encoder::{ImageEncoder, ImageEncoderCache, ImageOutput};
pub use lm::{LanguageModel, LmCache, LmConfig, LmState, LmTextCache};
pub use model::{BATCH_SLICES, Model, ModelCache, ModelOutput, ModelOutputGrads, batch_slices};
pub use projector::{
    ImageGrid, Projector, ProjectorCache, ProjectorConfig, ProjectorKind, TokenPool,
    select_and_pool, select_and_pool_backward,
};
pub use safetensors::{FormatError, Tensors};
pub use text_encoder::{TextEncoder, TextEncoderCache};
pub use vlm::{Freeze, Vlm, VlmCache, VlmConfig, VlmMask, VlmState, splice, unsplice, validate_lm};
pub use vlm_checkpoint::{
    AnyCheckpoint, LM_CONFIG_FORMAT, LmCheckpoint, VLM_CONFIG_FORMAT, VlmCheckpoint,
    lm_config_from_text, lm_config_to_text, lm_parameter_count, load_any_checkpoint,
    load_lm_checkpoint, load_vlm_checkpoint, save_lm_checkpoint, save_vlm_checkpoint,
    vlm_config_from_text, vlm_config_to_text, vlm_parameter_count,
};
pub use vlm_generate::{Answer, CachedVlm, Chat, UncachedVlm};
pub use weights::{
    MismatchReport, WeightsError, load_weights, load_weights_from_bytes, read_limited,
    save_weights, write_atomic,
};
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
