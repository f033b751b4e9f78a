//! Checkpoints of the multimodal LLM and of the text-only language model:
//! the same three files as [`crate::checkpoint`], other formats inside.
//!
//! ```text
//! checkpoint/
//! ├── model.safetensors   vision_tower.*, multi_modal_projector.*, language_model.*
//! │                       (a text-only model: language_model.* alone);
//! │                       metadata: format = vlm-checkpoint | lm-checkpoint, format_version = 1
//! ├── config.txt          `format = vlm-config 1` or `format = lm-config 1`, then `key = value` lines
//! └── tokenizer.txt       the tokenizer, with the chat format's special tokens
//! ```
//!
//! The weights are grouped as Hugging Face's LLaVA checkpoints are, so the
//! parts can be taken apart: a multimodal model starts from a CLIP run's
//! image tower ([`Vlm::load_vision_tower`]) and a text-only run's language
//! model ([`Vlm::load_language_model`]), one call each. [`load_any_checkpoint`]
//! opens any of the three kinds of folder by the first line of its
//! `config.txt`; a CLIP+captioner folder written before these formats existed
//! opens as it always did.
//!
//! ## The config formats
//! `vlm-config 1`: the image tower's `image.*` keys (as in `model-config 1`),
//! `projector.kind` (`linear` | `mlp`), `projector.pool` (`none` |
//! `average2` | `pixel_shuffle2`), `projector.keep_cls` (`true` | `false`),
//! the language model's `lm.*` keys, `mask` (`causal` | `prefix_lm`), and
//! the chat tokens `tokens.image`, `tokens.user`, `tokens.assistant`,
//! `tokens.end`, `tokens.pad`. `lm-config 1`: the `lm.*` and `tokens.*` keys
//! alone. `lm.*` is `lm.vocab`, `lm.max_len`, `lm.width`, `lm.depth`,
//! `lm.n_head`, `lm.mlp_hidden`, `lm.head` (`tied` | `separate`). As in every
//! config here, each key must appear once and unknown keys are errors.

use std::collections::BTreeMap;
use std::path::Path;

use rand::SeedableRng;
use rand::rngs::StdRng;
use tokenizer::Tokenizer;

use crate::chat::ChatTokens;
use crate::checkpoint::{
    CONFIG_FILE, CONFIG_FORMAT, Checkpoint, CheckpointError, ConfigSyntaxError, Settings,
    TOKENIZER_FILE, WEIGHTS_FILE, block_count, check_files, check_weights_fit, image_config_from,
    image_config_lines, image_parameter_count, layer_norm_count, linear_count, load_checkpoint,
    load_tokenizer, load_versioned_weights, read_text, sum,
};
use crate::config::{ConfigError, Head};
use crate::lm::{LanguageModel, LmConfig};
use crate::projector::{ProjectorConfig, ProjectorKind, TokenPool};
use crate::vlm::{Vlm, VlmConfig, VlmMask, validate_lm};

/// The first setting of a multimodal model's `config.txt`.
pub const VLM_CONFIG_FORMAT: &str = "vlm-config 1";
/// The first setting of a text-only language model's `config.txt`.
pub const LM_CONFIG_FORMAT: &str = "lm-config 1";
/// The weights' `format_version` of both.
pub const VLM_WEIGHTS_VERSION: &str = "1";

/// The largest `lm.max_len` a config may give: far above any model here, and
/// a bound on the position table a damaged file could ask for.
pub const MAX_LM_LEN: usize = 1 << 16;

// ANCHOR: vlm_config_text
/// The text of a multimodal model's `config.txt`.
pub fn vlm_config_to_text(config: &VlmConfig) -> String {
    let mut lines: Vec<(String, String)> = Vec::new();
    let mut set = |key: &str, value: String| lines.push((key.to_string(), value));
    set("format", VLM_CONFIG_FORMAT.to_string());
    image_config_lines(&config.vision, &mut set);
    let p = &config.projector;
    let kind = match p.kind {
        ProjectorKind::Linear => "linear",
        ProjectorKind::Mlp => "mlp",
    };
    set("projector.kind", kind.to_string());
    let pool = match p.pool {
        TokenPool::None => "none",
        TokenPool::Average2 => "average2",
        TokenPool::PixelShuffle2 => "pixel_shuffle2",
    };
    set("projector.pool", pool.to_string());
    set("projector.keep_cls", p.keep_cls.to_string());
    lm_lines(&config.lm, &mut set);
    let mask = match config.mask {
        VlmMask::Causal => "causal",
        VlmMask::PrefixLm => "prefix_lm",
    };
    set("mask", mask.to_string());
    token_lines(&config.tokens, &mut set);
    finish_text(lines, "multimodal model config")
}
// ANCHOR_END: vlm_config_text

/// Parses a multimodal model's `config.txt` (not validated: see
/// [`VlmConfig::validate`]).
///
/// # Errors
/// A [`ConfigSyntaxError`] with the line of the first problem.
pub fn vlm_config_from_text(text: &str) -> Result<VlmConfig, ConfigSyntaxError> {
    let mut s = Settings::parse_format(text, VLM_CONFIG_FORMAT)?;
    s.take("format")?; // checked by `parse_format`
    let vision = image_config_from(&mut s)?;
    let kind = match s.choice("projector.kind", &["linear", "mlp"])? {
        0 => ProjectorKind::Linear,
        _ => ProjectorKind::Mlp,
    };
    let pool = match s.choice("projector.pool", &["none", "average2", "pixel_shuffle2"])? {
        0 => TokenPool::None,
        1 => TokenPool::Average2,
        _ => TokenPool::PixelShuffle2,
    };
    let keep_cls = s.choice("projector.keep_cls", &["false", "true"])? == 1;
    let lm = lm_from(&mut s)?;
    let mask = match s.choice("mask", &["causal", "prefix_lm"])? {
        0 => VlmMask::Causal,
        _ => VlmMask::PrefixLm,
    };
    let tokens = tokens_from(&mut s)?;
    s.finish()?;
    Ok(VlmConfig {
        vision,
        projector: ProjectorConfig {
            kind,
            pool,
            keep_cls,
        },
        lm,
        mask,
        tokens,
    })
}

/// The text of a text-only language model's `config.txt`.
pub fn lm_config_to_text(config: &LmConfig, tokens: &ChatTokens) -> String {
    let mut lines: Vec<(String, String)> = Vec::new();
    let mut set = |key: &str, value: String| lines.push((key.to_string(), value));
    set("format", LM_CONFIG_FORMAT.to_string());
    lm_lines(config, &mut set);
    token_lines(tokens, &mut set);
    finish_text(lines, "language model config")
}

/// Parses a text-only language model's `config.txt`.
///
/// # Errors
/// A [`ConfigSyntaxError`] with the line of the first problem.
pub fn lm_config_from_text(text: &str) -> Result<(LmConfig, ChatTokens), ConfigSyntaxError> {
    let mut s = Settings::parse_format(text, LM_CONFIG_FORMAT)?;
    s.take("format")?;
    let lm = lm_from(&mut s)?;
    let tokens = tokens_from(&mut s)?;
    s.finish()?;
    Ok((lm, tokens))
}

fn lm_lines(lm: &LmConfig, set: &mut impl FnMut(&str, String)) {
    set("lm.vocab", lm.vocab.to_string());
    set("lm.max_len", lm.max_len.to_string());
    set("lm.width", lm.width.to_string());
    set("lm.depth", lm.depth.to_string());
    set("lm.n_head", lm.n_head.to_string());
    set("lm.mlp_hidden", lm.mlp_hidden.to_string());
    let head = match lm.head {
        Head::Tied => "tied",
        Head::Separate => "separate",
    };
    set("lm.head", head.to_string());
}

fn lm_from(s: &mut Settings) -> Result<LmConfig, ConfigSyntaxError> {
    Ok(LmConfig {
        vocab: s.usize("lm.vocab")?,
        max_len: s.usize_at_most("lm.max_len", MAX_LM_LEN)?,
        width: s.usize("lm.width")?,
        depth: s.usize("lm.depth")?,
        n_head: s.usize("lm.n_head")?,
        mlp_hidden: s.usize("lm.mlp_hidden")?,
        head: match s.choice("lm.head", &["tied", "separate"])? {
            0 => Head::Tied,
            _ => Head::Separate,
        },
    })
}

fn token_lines(tokens: &ChatTokens, set: &mut impl FnMut(&str, String)) {
    set("tokens.image", tokens.image.to_string());
    set("tokens.user", tokens.user.to_string());
    set("tokens.assistant", tokens.assistant.to_string());
    set("tokens.end", tokens.end.to_string());
    set("tokens.pad", tokens.pad.to_string());
}

fn tokens_from(s: &mut Settings) -> Result<ChatTokens, ConfigSyntaxError> {
    Ok(ChatTokens {
        image: s.u32("tokens.image")?,
        user: s.u32("tokens.user")?,
        assistant: s.u32("tokens.assistant")?,
        end: s.u32("tokens.end")?,
        pad: s.u32("tokens.pad")?,
    })
}

fn finish_text(lines: Vec<(String, String)>, what: &str) -> String {
    let mut text = format!("# {what}: see model::vlm_checkpoint for the format\n");
    for (key, value) in lines {
        text.push_str(&format!("{key} = {value}\n"));
    }
    text
}

/// The parameters of a language model of this shape, counted from the
/// config alone (`None` on overflow).
pub fn lm_parameter_count(lm: &LmConfig) -> Option<u64> {
    let n = |x: usize| x as u64;
    let (vocab, width) = (n(lm.vocab), n(lm.width));
    sum(&[
        vocab.checked_mul(width),         // token_embedding
        n(lm.max_len).checked_mul(width), // position_embedding
        block_count(&lm.block())?.checked_mul(n(lm.depth)),
        layer_norm_count(width), // ln_final
        match lm.head {
            Head::Tied => Some(0),
            Head::Separate => linear_count(width, vocab, false), // lm_head
        },
    ])
}

/// The parameters of a multimodal model of this shape (`None` on overflow).
pub fn vlm_parameter_count(config: &VlmConfig) -> Option<u64> {
    let grid = config.grid();
    let (c_in, c_lm) = (
        config.projector.input_width(&grid) as u64,
        config.lm.width as u64,
    );
    let projector = match config.projector.kind {
        ProjectorKind::Linear => linear_count(c_in, c_lm, true),
        ProjectorKind::Mlp => sum(&[
            linear_count(c_in, c_lm, true),
            linear_count(c_lm, c_lm, true),
        ]),
    };
    sum(&[
        image_parameter_count(&config.vision),
        projector,
        lm_parameter_count(&config.lm),
    ])
}

/// A multimodal model with the tokenizer that numbers its vocabulary.
#[derive(Debug, Clone)]
pub struct VlmCheckpoint {
    pub vlm: Vlm,
    pub tokenizer: Tokenizer,
}

/// A text-only language model, its shape, its chat tokens and its tokenizer.
#[derive(Debug, Clone)]
pub struct LmCheckpoint {
    pub language_model: LanguageModel,
    pub config: LmConfig,
    pub tokens: ChatTokens,
    pub tokenizer: Tokenizer,
}

/// Whatever a checkpoint folder holds.
#[allow(clippy::large_enum_variant)] // one per load
#[derive(Debug, Clone)]
pub enum AnyCheckpoint {
    /// A CLIP-style dual encoder with its caption decoder (`model-config 1`).
    Clip(Checkpoint),
    /// A text-only language model (`lm-config 1`).
    Lm(LmCheckpoint),
    /// A multimodal LLM (`vlm-config 1`).
    Vlm(VlmCheckpoint),
}

// ANCHOR: save_vlm_checkpoint
/// Saves a multimodal model and its tokenizer into the folder `dir`, each
/// file atomically.
///
/// # Errors
/// [`CheckpointError::VocabMismatch`] or [`CheckpointError::SpecialTokenMismatch`]
/// if the tokenizer does not belong to the model (nothing is written then),
/// [`CheckpointError::Io`] or [`CheckpointError::Weights`] if a file cannot
/// be written.
pub fn save_vlm_checkpoint(
    dir: &Path,
    vlm: &Vlm,
    tokenizer: &Tokenizer,
) -> Result<(), CheckpointError> {
    let config = vlm.config();
    check_chat_tokenizer(
        &dir.join(TOKENIZER_FILE),
        tokenizer,
        config.lm.vocab,
        &config.tokens,
    )?;
    save_folder(
        dir,
        vlm,
        "vlm-checkpoint",
        &vlm_config_to_text(config),
        tokenizer,
    )
}
// ANCHOR_END: save_vlm_checkpoint

/// Saves a text-only language model of shape `config` (its weights under
/// `language_model.*`), its chat tokens and its tokenizer into `dir`.
///
/// # Errors
/// As [`save_vlm_checkpoint`].
pub fn save_lm_checkpoint(
    dir: &Path,
    language_model: &LanguageModel,
    config: &LmConfig,
    tokens: &ChatTokens,
    tokenizer: &Tokenizer,
) -> Result<(), CheckpointError> {
    check_chat_tokenizer(&dir.join(TOKENIZER_FILE), tokenizer, config.vocab, tokens)?;
    let named = Named(language_model.clone()); // a copy of the (small) model, to name it
    save_folder(
        dir,
        &named,
        "lm-checkpoint",
        &lm_config_to_text(config, tokens),
        tokenizer,
    )
}

/// The three files, each atomically.
fn save_folder<P: embedding::Params>(
    dir: &Path,
    module: &P,
    format: &str,
    config_text: &str,
    tokenizer: &Tokenizer,
) -> Result<(), CheckpointError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| CheckpointError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let metadata = BTreeMap::from([
        ("format".to_string(), format.to_string()),
        (
            "format_version".to_string(),
            VLM_WEIGHTS_VERSION.to_string(),
        ),
    ]);
    crate::save_weights(&dir.join(WEIGHTS_FILE), module, &metadata)
        .map_err(|source| CheckpointError::Weights { source })?;
    let path = dir.join(CONFIG_FILE);
    crate::write_atomic(&path, config_text.as_bytes()).map_err(io(&path))?;
    let path = dir.join(TOKENIZER_FILE);
    crate::write_atomic(&path, tokenizer.to_text().as_bytes()).map_err(io(&path))
}

// ANCHOR: load_vlm_checkpoint
/// Loads a folder written by [`save_vlm_checkpoint`], checking everything
/// in the order [`crate::load_checkpoint`] does: the files, the config, the
/// tokenizer against the config, the weights file's size against the
/// config's model (before anything is allocated), then every tensor's name,
/// shape and value.
///
/// # Errors
/// The first problem found, as a [`CheckpointError`] naming the file.
pub fn load_vlm_checkpoint(dir: &Path) -> Result<VlmCheckpoint, CheckpointError> {
    let (weights_path, config_path, tokenizer_path) = paths(dir);
    check_files(&[&weights_path, &config_path, &tokenizer_path])?;
    let config = parse_config(&config_path, vlm_config_from_text)?;
    config.validate().map_err(invalid(&config_path))?;
    let tokenizer = load_tokenizer(&tokenizer_path)?;
    check_chat_tokenizer(&tokenizer_path, &tokenizer, config.lm.vocab, &config.tokens)?;
    check_weights_fit(&config_path, &weights_path, vlm_parameter_count(&config))?;
    let mut vlm = config
        .init(&mut StdRng::seed_from_u64(0)) // every weight is overwritten below
        .map_err(invalid(&config_path))?;
    load_versioned_weights(&weights_path, &mut vlm, VLM_WEIGHTS_VERSION)?;
    Ok(VlmCheckpoint { vlm, tokenizer })
}
// ANCHOR_END: load_vlm_checkpoint

/// Loads a folder written by [`save_lm_checkpoint`], with the same checks.
///
/// # Errors
/// The first problem found, as a [`CheckpointError`] naming the file.
pub fn load_lm_checkpoint(dir: &Path) -> Result<LmCheckpoint, CheckpointError> {
    let (weights_path, config_path, tokenizer_path) = paths(dir);
    check_files(&[&weights_path, &config_path, &tokenizer_path])?;
    let (config, tokens) = parse_config(&config_path, lm_config_from_text)?;
    validate_lm(&config).map_err(invalid(&config_path))?;
    let tokenizer = load_tokenizer(&tokenizer_path)?;
    check_chat_tokenizer(&tokenizer_path, &tokenizer, config.vocab, &tokens)?;
    check_weights_fit(&config_path, &weights_path, lm_parameter_count(&config))?;
    let mut named = Named(config.init(&mut StdRng::seed_from_u64(0)));
    load_versioned_weights(&weights_path, &mut named, VLM_WEIGHTS_VERSION)?;
    Ok(LmCheckpoint {
        language_model: named.0,
        config,
        tokens,
        tokenizer,
    })
}

/// Opens any checkpoint folder: the first setting of its `config.txt` says
/// which kind it is.
///
/// # Errors
/// As the loader of that kind; a config of no known format is
/// [`CheckpointError::ConfigSyntax`] on its first line.
pub fn load_any_checkpoint(dir: &Path) -> Result<AnyCheckpoint, CheckpointError> {
    let config_path = dir.join(CONFIG_FILE);
    check_files(&[&config_path])?;
    let text = read_text(&config_path)?;
    let format = text
        .lines()
        .map(|line| line.split('#').next().unwrap_or("").trim())
        .find(|line| !line.is_empty())
        .and_then(|line| line.split_once('='))
        .filter(|(key, _)| key.trim() == "format")
        .map(|(_, value)| value.trim().to_string());
    match format.as_deref() {
        Some(CONFIG_FORMAT) => load_checkpoint(dir).map(AnyCheckpoint::Clip),
        Some(LM_CONFIG_FORMAT) => load_lm_checkpoint(dir).map(AnyCheckpoint::Lm),
        Some(VLM_CONFIG_FORMAT) => load_vlm_checkpoint(dir).map(AnyCheckpoint::Vlm),
        _ => Err(CheckpointError::ConfigSyntax {
            path: config_path,
            line: 1,
            message: format!(
                "the first setting must name a checkpoint format: `format = {CONFIG_FORMAT}`, \
                 `format = {LM_CONFIG_FORMAT}` or `format = {VLM_CONFIG_FORMAT}`"
            ),
        }),
    }
}

impl Vlm {
    // ANCHOR: load_parts
    /// Replaces the vision tower by a CLIP run's image tower (the folder of
    /// [`crate::save_checkpoint`]): stage one of LLaVA's recipe.
    ///
    /// # Errors
    /// The folder's [`CheckpointError`], or [`CheckpointError::PartMismatch`]
    /// if its tower is not of this model's shape (nothing is changed then).
    pub fn load_vision_tower(&mut self, dir: &Path) -> Result<(), CheckpointError> {
        let clip = load_checkpoint(dir)?;
        if clip.model.config().image != self.config().vision {
            return Err(CheckpointError::PartMismatch {
                path: dir.join(CONFIG_FILE),
                part: "image tower",
                found: format!("{:?}", clip.model.config().image),
                expected: format!("{:?}", self.config().vision),
            });
        }
        self.vision_tower = clip.model.image;
        Ok(())
    }

    /// Replaces the language model by a text-only run's (the folder of
    /// [`save_lm_checkpoint`]), whose tokenizer must number the same
    /// vocabulary with the same chat tokens.
    ///
    /// # Errors
    /// The folder's [`CheckpointError`], or [`CheckpointError::PartMismatch`]
    /// if its shape or chat tokens differ from this model's.
    pub fn load_language_model(&mut self, dir: &Path) -> Result<(), CheckpointError> {
        let lm = load_lm_checkpoint(dir)?;
        let config = self.config();
        if lm.config != config.lm || lm.tokens != config.tokens {
            return Err(CheckpointError::PartMismatch {
                path: dir.join(CONFIG_FILE),
                part: "language model",
                found: format!("{:?} {:?}", lm.config, lm.tokens),
                expected: format!("{:?} {:?}", config.lm, config.tokens),
            });
        }
        self.language_model = lm.language_model;
        Ok(())
    }
    // ANCHOR_END: load_parts
}

/// A language model whose names carry `language_model.`, as in a
/// multimodal model's file, so the two kinds of file share their names.
struct Named(LanguageModel);

impl embedding::Params for Named {
    fn params(&self) -> Vec<(String, ndarray::ArrayViewD<'_, f32>)> {
        embedding::prefixed("language_model", self.0.params()).collect()
    }

    fn params_mut(&mut self) -> Vec<(String, ndarray::ArrayViewMutD<'_, f32>)> {
        embedding::prefixed("language_model", self.0.params_mut()).collect()
    }
}

fn paths(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    (
        dir.join(WEIGHTS_FILE),
        dir.join(CONFIG_FILE),
        dir.join(TOKENIZER_FILE),
    )
}

fn parse_config<T>(
    path: &Path,
    parse: impl Fn(&str) -> Result<T, ConfigSyntaxError>,
) -> Result<T, CheckpointError> {
    parse(&read_text(path)?).map_err(|e| CheckpointError::ConfigSyntax {
        path: path.to_path_buf(),
        line: e.line,
        message: e.message,
    })
}

fn invalid(path: &Path) -> impl Fn(ConfigError) -> CheckpointError + '_ {
    move |source| CheckpointError::ConfigInvalid {
        path: path.to_path_buf(),
        source,
    }
}

/// The tokenizer's vocabulary size and chat tokens against the config's.
fn check_chat_tokenizer(
    path: &Path,
    tokenizer: &Tokenizer,
    vocab: usize,
    tokens: &ChatTokens,
) -> Result<(), CheckpointError> {
    if tokenizer.vocab_size() != vocab {
        return Err(CheckpointError::VocabMismatch {
            path: path.to_path_buf(),
            tokenizer: tokenizer.vocab_size(),
            config: vocab,
        });
    }
    for (token, id) in tokens.named() {
        let found = tokenizer.special_id(token);
        if found != Some(id) {
            return Err(CheckpointError::SpecialTokenMismatch {
                path: path.to_path_buf(),
                token,
                tokenizer: found,
                config: id,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::CHAT_SPECIAL_TOKENS;
    use crate::{ImageConfig, ModelConfig, SpecialTokens, save_checkpoint};
    use embedding::Params;
    use ndarray::{Array2, Array4};
    use tokenizer::{BOS, EOS, PAD};

    /// A tokenizer with the chat tokens, and a micro VLM numbered by it.
    fn micro_pair(config: impl Fn(usize) -> VlmConfig) -> (Vlm, Tokenizer) {
        let mut specials = vec![BOS, EOS, PAD];
        specials.extend(CHAT_SPECIAL_TOKENS);
        let tokenizer = Tokenizer::train_lines(["what colour is it? red"], 262)
            .unwrap()
            .with_special_tokens(&specials)
            .unwrap();
        let mut config = config(tokenizer.vocab_size());
        config.tokens = ChatTokens::from_tokenizer(&tokenizer).unwrap();
        (
            config.init(&mut StdRng::seed_from_u64(1)).unwrap(),
            tokenizer,
        )
    }

    fn configs() -> Vec<VlmConfig> {
        let mut all = vec![VlmConfig::tiny(300, 64), VlmConfig::micro(20, 16)];
        for (pool, kind, mask) in [
            (
                TokenPool::PixelShuffle2,
                ProjectorKind::Linear,
                VlmMask::PrefixLm,
            ),
            (TokenPool::Average2, ProjectorKind::Mlp, VlmMask::Causal),
        ] {
            let mut c = VlmConfig::tiny(300, 64);
            c.projector.pool = pool;
            c.projector.kind = kind;
            c.mask = mask;
            c.lm.head = Head::Separate;
            all.push(c);
        }
        all
    }

    struct Folder(std::path::PathBuf);
    impl Folder {
        fn new(name: &str) -> Folder {
            let dir = std::env::temp_dir().join(format!("vlm-ckpt-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            Folder(dir)
        }
    }
    impl Drop for Folder {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn config_texts_round_trip_exactly() {
        for config in configs() {
            let text = vlm_config_to_text(&config);
            assert_eq!(vlm_config_from_text(&text).unwrap(), config, "{text}");
            let tokens = config.tokens;
            let text = lm_config_to_text(&config.lm, &tokens);
            assert_eq!(
                lm_config_from_text(&text).unwrap(),
                (config.lm.clone(), tokens)
            );
        }
        let text = vlm_config_to_text(&VlmConfig::tiny(300, 64));
        assert!(text.contains("projector.pool = average2\n"), "{text}");
        assert!(text.contains("mask = causal\n"));
    }

    #[test]
    fn parameter_counts_follow_init() {
        for config in configs() {
            let vlm = config.init(&mut StdRng::seed_from_u64(0)).unwrap();
            assert_eq!(vlm_parameter_count(&config), Some(vlm.num_params() as u64));
            let lm = config.lm.init(&mut StdRng::seed_from_u64(0));
            assert_eq!(lm_parameter_count(&config.lm), Some(lm.num_params() as u64));
        }
        let mut huge = VlmConfig::tiny(300, 64);
        huge.lm.width = 1 << 62;
        assert_eq!(vlm_parameter_count(&huge), None);
    }

    // ANCHOR: vlm_checkpoint_test
    #[test]
    fn a_saved_vlm_loads_whole_and_answers_the_same() {
        let (vlm, tokenizer) = micro_pair(|v| VlmConfig {
            mask: VlmMask::PrefixLm,
            ..VlmConfig::micro(v, 16)
        });
        let folder = Folder::new("whole");
        save_vlm_checkpoint(&folder.0, &vlm, &tokenizer).unwrap();
        let loaded = load_vlm_checkpoint(&folder.0).unwrap();
        assert_eq!(loaded.vlm, vlm);
        assert_eq!(loaded.tokenizer, tokenizer);
        let t = vlm.config().tokens;
        let tokens = Array2::from_shape_vec((1, 4), vec![t.user, t.image, 5, t.assistant]).unwrap();
        let images = Array4::from_elem((1, 3, 8, 8), 0.5);
        let frozen = crate::Freeze::default();
        assert_eq!(
            loaded.vlm.forward(&images, &tokens, frozen).0,
            vlm.forward(&images, &tokens, frozen).0
        );
        // the names are LLaVA's groups
        let bytes = std::fs::read(folder.0.join(WEIGHTS_FILE)).unwrap();
        let weights = crate::safetensors::from_bytes(&bytes).unwrap();
        let names: Vec<&str> = weights.tensors.iter().map(|(n, _)| n.as_str()).collect();
        for prefix in ["vision_tower.", "multi_modal_projector.", "language_model."] {
            assert!(names.iter().any(|n| n.starts_with(prefix)), "{prefix}");
        }
        assert!(matches!(
            load_any_checkpoint(&folder.0).unwrap(),
            AnyCheckpoint::Vlm(_)
        ));
    }
    // ANCHOR_END: vlm_checkpoint_test

    #[test]
    fn the_parts_come_from_a_clip_run_and_a_text_run() {
        let (mut vlm, tokenizer) = micro_pair(|v| VlmConfig::micro(v, 16));
        // a CLIP run with the same image tower
        let mut clip_config = ModelConfig::micro(tokenizer.vocab_size());
        clip_config.special = SpecialTokens::from_tokenizer(&tokenizer).unwrap();
        let clip = clip_config.init(&mut StdRng::seed_from_u64(9)).unwrap();
        let clip_folder = Folder::new("clip");
        save_checkpoint(&clip_folder.0, &clip, &tokenizer).unwrap();
        assert!(matches!(
            load_any_checkpoint(&clip_folder.0).unwrap(),
            AnyCheckpoint::Clip(_)
        ));
        assert_ne!(vlm.vision_tower, clip.image);
        vlm.load_vision_tower(&clip_folder.0).unwrap();
        assert_eq!(vlm.vision_tower, clip.image);
        // a text-only run with the same language model shape
        let config = vlm.config().clone();
        let lm = config.lm.init(&mut StdRng::seed_from_u64(10));
        let lm_folder = Folder::new("lm");
        save_lm_checkpoint(&lm_folder.0, &lm, &config.lm, &config.tokens, &tokenizer).unwrap();
        assert!(matches!(
            load_any_checkpoint(&lm_folder.0).unwrap(),
            AnyCheckpoint::Lm(_)
        ));
        vlm.load_language_model(&lm_folder.0).unwrap();
        assert_eq!(vlm.language_model, lm);
        // a tower of another shape is refused, and nothing changes
        let mut other = config.clone();
        other.vision = ImageConfig::tiny_cnn();
        other.projector.keep_cls = false;
        other.lm.max_len = 80;
        let mut other = other.init(&mut StdRng::seed_from_u64(0)).unwrap();
        let before = other.clone();
        let err = other
            .load_vision_tower(&clip_folder.0)
            .unwrap_err()
            .to_string();
        assert!(err.contains("its image tower is Vit("), "{err}");
        assert_eq!(other, before);
    }

    #[test]
    fn broken_folders_are_errors_naming_the_file() {
        let (vlm, tokenizer) = micro_pair(|v| VlmConfig::micro(v, 16));
        let folder = Folder::new("broken");
        save_vlm_checkpoint(&folder.0, &vlm, &tokenizer).unwrap();
        let config_path = folder.0.join(CONFIG_FILE);
        let text = std::fs::read_to_string(&config_path).unwrap();
        let err = |edited: &str| {
            std::fs::write(&config_path, edited).unwrap();
            load_any_checkpoint(&folder.0).unwrap_err().to_string()
        };
        // a model far larger than its weights: refused before anything is allocated
        let e = err(&text
            .replace("lm.width = 8", "lm.width = 20000")
            .replace("lm.mlp_hidden = 16", "lm.mlp_hidden = 20000"));
        assert!(
            e.contains("describes a model of") && e.contains("do not belong together"),
            "{e}"
        );
        let e = err(&text.replace("mask = causal", "mask = sideways"));
        assert!(
            e.contains(":") && e.contains("`mask` must be one of"),
            "{e}"
        );
        let e = err(&text.replace("format = vlm-config 1", "format = vlm-config 9"));
        assert!(
            e.contains("the first setting must name a checkpoint format"),
            "{e}"
        );
        let e = err(&text.replace("lm.max_len = 16", "lm.max_len = 99999999"));
        assert!(e.contains("`lm.max_len` must be at most 65536"), "{e}");
        let e = err(&text.replace("projector.keep_cls = true", "projector.keep_cls = yes"));
        assert!(e.contains("`projector.keep_cls` must be one of"), "{e}");
        std::fs::write(&config_path, &text).unwrap();
        std::fs::remove_file(folder.0.join(TOKENIZER_FILE)).unwrap();
        let e = load_vlm_checkpoint(&folder.0).unwrap_err().to_string();
        assert!(
            e.ends_with("tokenizer.txt: missing from the checkpoint"),
            "{e}"
        );
        // a tokenizer without the chat tokens cannot be saved with the model
        let others: Vec<String> = (0..10).map(|i| format!("<|other{i}|>")).collect();
        let mut specials = vec![BOS, EOS, PAD];
        specials.extend(others.iter().map(String::as_str));
        let plain = Tokenizer::bytes_only(Default::default())
            .with_special_tokens(&specials)
            .unwrap();
        assert_eq!(plain.vocab_size(), vlm.config().lm.vocab);
        let e = save_vlm_checkpoint(&folder.0, &vlm, &plain)
            .unwrap_err()
            .to_string();
        assert!(e.contains("<|image|>"), "{e}");
    }
}
