//! Checkpoints: the weights, the config and the tokenizer, in one folder.
//!
//! ```text
//! checkpoint/
//! ├── model.safetensors   every parameter under its PyTorch-style name;
//! │                       metadata: format = model-checkpoint, format_version = 1
//! ├── config.txt          the ModelConfig, `key = value` lines (format below)
//! └── tokenizer.txt       the tokenizer's own text format
//! ```
//!
//! The three travel together because none is usable alone: the weights'
//! shapes come from the config, and the rows of the embedding tables mean
//! nothing without the tokenizer that numbered them.
//!
//! Every file is written atomically (beside the target, then renamed), so an
//! interrupted save leaves the old file or the new one. Loading checks
//! everything before building the model and reports the first problem as a
//! [`CheckpointError`] naming the file: a missing file, a truncated or
//! corrupt weights file, a config that does not parse (with its line) or
//! describes an impossible model, a config whose model is far larger than
//! the weights file (refused before a single weight is allocated, see
//! [`parameter_count`]), weights whose names or shapes differ from the
//! config's model (every difference listed), a weight that is NaN or
//! infinite (named), a tokenizer whose vocabulary or special tokens
//! disagree with the config.
//!
//! ## The config format, version 1
//! Plain text, one `key = value` per line; `#` starts a comment; blank lines
//! are ignored; the first setting must be `format = model-config 1`. Keys are
//! the config's field paths (`text.width`, `decoder.head`). The image tower
//! is `image.kind = vit` (with `image.patch`, `image.depth`, `image.width`,
//! `image.n_head`, `image.mlp_hidden`) or `image.kind = cnn` (with
//! `image.channels = 32, 64`, `image.kernel`, `image.pool`), both with
//! `image.image_size` and `image.in_channels`. `decoder.head` is `tied` or
//! `separate`. Every key must appear exactly once; unknown keys are errors,
//! so a typo is never silently ignored.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use attention::BlockConfig;
use rand::SeedableRng;
use rand::rngs::StdRng;
use tokenizer::Tokenizer;
use vision::{CnnConfig, VitConfig};

use crate::Model;
use crate::config::{
    ConfigError, DecoderConfig, Head, ImageConfig, ModelConfig, SpecialTokens, TextConfig,
};

/// The first setting of every config file this code writes and reads.
pub const CONFIG_FORMAT: &str = "model-config 1";

/// The largest `image.image_size` a config may give. Every image is resized
/// to it before the model reads it, and a CNN's weights do not depend on it,
/// so nothing else bounds what one image would cost.
pub const MAX_IMAGE_SIZE: usize = 1024;

/// Why a checkpoint could not be saved or loaded. Every variant names the
/// file it is about.
#[derive(Debug)]
pub enum CheckpointError {
    /// A file of the checkpoint folder does not exist.
    MissingFile { path: PathBuf },
    /// Reading or writing a file failed.
    Io { path: PathBuf, source: io::Error },
    /// A line of `config.txt` is not a valid setting; `line` counts from 1
    /// (0 for a key missing from the whole file).
    ConfigSyntax {
        path: PathBuf,
        line: usize,
        message: String,
    },
    /// `config.txt` parses but describes a model that cannot be built.
    ConfigInvalid { path: PathBuf, source: ConfigError },
    /// `config.txt` describes a model whose parameters cannot be the ones in
    /// the weights file (far more or far fewer bytes, see
    /// [`crate::weights::sizes_fit`]), or too many to count; nothing was
    /// allocated.
    ConfigTooLarge {
        path: PathBuf,
        /// The model's parameter count (`None`: it overflows 64 bits).
        params: Option<u64>,
        weights: PathBuf,
        /// Bytes in the weights file.
        weights_bytes: u64,
    },
    /// `model.safetensors` cannot be read, is truncated or corrupt, or its
    /// tensors differ from the config's model (missing, unexpected or
    /// wrongly shaped names, all listed).
    Weights { source: crate::WeightsError },
    /// A part taken from another checkpoint (a CLIP run's image tower, a
    /// text-only run's language model) is not of the shape the model needs.
    PartMismatch {
        path: PathBuf,
        part: &'static str,
        found: String,
        expected: String,
    },
    /// `model.safetensors` lacks the checkpoint format version, or has one
    /// this code does not read.
    WeightsVersion {
        path: PathBuf,
        found: Option<String>,
    },
    /// `tokenizer.txt` is not a valid tokenizer file.
    Tokenizer {
        path: PathBuf,
        source: tokenizer::TokenizerError,
    },
    /// The tokenizer's vocabulary size differs from the config's `vocab`.
    VocabMismatch {
        path: PathBuf,
        tokenizer: usize,
        config: usize,
    },
    /// A special token's ID in the tokenizer differs from the config's.
    SpecialTokenMismatch {
        path: PathBuf,
        token: &'static str,
        tokenizer: Option<u32>,
        config: u32,
    },
}

impl fmt::Display for CheckpointError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use CheckpointError::*;
        match self {
            MissingFile { path } => write!(f, "{}: missing from the checkpoint", path.display()),
            Io { path, source } => write!(f, "{}: {source}", path.display()),
            ConfigSyntax {
                path,
                line: 0,
                message,
            } => write!(f, "{}: {message}", path.display()),
            ConfigSyntax {
                path,
                line,
                message,
            } => write!(f, "{}:{line}: {message}", path.display()),
            ConfigInvalid { path, source } => {
                write!(f, "{}: invalid config: {source}", path.display())
            }
            ConfigTooLarge {
                path,
                params,
                weights,
                weights_bytes,
            } => {
                match params {
                    Some(n) => write!(
                        f,
                        "{}: describes a model of {n} parameters ({} bytes as f32)",
                        path.display(),
                        n.saturating_mul(4)
                    )?,
                    None => write!(
                        f,
                        "{}: describes a model of more parameters than can be counted",
                        path.display()
                    )?,
                }
                write!(
                    f,
                    ", but {} holds {weights_bytes} bytes: they do not belong together",
                    weights.display()
                )
            }
            Weights { source } => write!(f, "{source}"),
            PartMismatch {
                path,
                part,
                found,
                expected,
            } => write!(
                f,
                "{}: its {part} is {found}, but the model needs {expected}",
                path.display()
            ),
            WeightsVersion { path, found } => match found {
                Some(v) => write!(
                    f,
                    "{}: checkpoint format version {v:?} is not supported (expected {WEIGHTS_VERSION:?})",
                    path.display()
                ),
                None => write!(
                    f,
                    "{}: no checkpoint format version in the metadata",
                    path.display()
                ),
            },
            Tokenizer { path, source } => write!(f, "{}: {source}", path.display()),
            VocabMismatch {
                path,
                tokenizer,
                config,
            } => write!(
                f,
                "{}: the tokenizer has {tokenizer} tokens but the config says vocab = {config}",
                path.display()
            ),
            SpecialTokenMismatch {
                path,
                token,
                tokenizer,
                config,
            } => match tokenizer {
                Some(id) => write!(
                    f,
                    "{}: special token {token} has id {id} in the tokenizer but {config} in the config",
                    path.display()
                ),
                None => write!(
                    f,
                    "{}: special token {token} (id {config} in the config) is not in the tokenizer",
                    path.display()
                ),
            },
        }
    }
}

impl std::error::Error for CheckpointError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        use CheckpointError::*;
        match self {
            Io { source, .. } => Some(source),
            ConfigInvalid { source, .. } => Some(source),
            Weights { source } => Some(source),
            Tokenizer { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// The checkpoint format version stored in the weights' metadata.
pub const WEIGHTS_VERSION: &str = "1";

// ANCHOR: config_to_text
/// The config as the text of `config.txt` (format version 1).
///
/// Floats are written in Rust's shortest round-trip form, so
/// [`config_from_text`] gives back exactly the same config.
pub fn config_to_text(config: &ModelConfig) -> String {
    let mut lines: Vec<(String, String)> = Vec::new();
    let mut set = |key: &str, value: String| lines.push((key.to_string(), value));
    set("format", CONFIG_FORMAT.to_string());
    set("vocab", config.vocab.to_string());
    set("max_len", config.max_len.to_string());
    set("special.bos", config.special.bos.to_string());
    set("special.eos", config.special.eos.to_string());
    set("special.pad", config.special.pad.to_string());
    let t = &config.text;
    set("text.width", t.width.to_string());
    set("text.depth", t.depth.to_string());
    set("text.n_head", t.n_head.to_string());
    set("text.mlp_hidden", t.mlp_hidden.to_string());
    image_config_lines(&config.image, &mut set);
    let d = &config.decoder;
    set("decoder.width", d.width.to_string());
    set("decoder.depth", d.depth.to_string());
    set("decoder.n_head", d.n_head.to_string());
    set("decoder.mlp_hidden", d.mlp_hidden.to_string());
    let head = match d.head {
        Head::Tied => "tied",
        Head::Separate => "separate",
    };
    set("decoder.head", head.to_string());
    set("embed_dim", config.embed_dim.to_string());
    set("logit_scale_init", config.logit_scale_init.to_string());
    set("logit_scale_max", config.logit_scale_max.to_string());

    let mut text = String::from("# model config: see model::checkpoint for the format\n");
    for (key, value) in lines {
        text.push_str(&format!("{key} = {value}\n"));
    }
    text
}
// ANCHOR_END: config_to_text

/// The `image.*` lines of a config (the CLIP model's image tower, or a
/// multimodal model's vision tower).
pub(crate) fn image_config_lines(image: &ImageConfig, set: &mut impl FnMut(&str, String)) {
    match image {
        ImageConfig::Vit(vit) => {
            set("image.kind", "vit".to_string());
            set("image.image_size", vit.image_size.to_string());
            set("image.in_channels", vit.in_channels.to_string());
            set("image.patch", vit.patch.to_string());
            set("image.depth", vit.depth.to_string());
            set("image.width", vit.block.width.to_string());
            set("image.n_head", vit.block.n_head.to_string());
            set("image.mlp_hidden", vit.block.mlp_hidden.to_string());
        }
        ImageConfig::Cnn { cnn, image_size } => {
            set("image.kind", "cnn".to_string());
            set("image.image_size", image_size.to_string());
            set("image.in_channels", cnn.in_channels.to_string());
            let channels: Vec<String> = cnn.channels.iter().map(|c| c.to_string()).collect();
            set("image.channels", channels.join(", "));
            set("image.kernel", cnn.kernel.to_string());
            set("image.pool", cnn.pool.to_string());
        }
    }
}

/// Reads the `image.*` settings back.
pub(crate) fn image_config_from(s: &mut Settings) -> Result<ImageConfig, ConfigSyntaxError> {
    Ok(match s.choice("image.kind", &["vit", "cnn"])? {
        0 => ImageConfig::Vit(VitConfig {
            image_size: s.usize_at_most("image.image_size", MAX_IMAGE_SIZE)?,
            in_channels: s.usize("image.in_channels")?,
            patch: s.usize("image.patch")?,
            depth: s.usize("image.depth")?,
            block: BlockConfig {
                width: s.usize("image.width")?,
                n_head: s.usize("image.n_head")?,
                mlp_hidden: s.usize("image.mlp_hidden")?,
            },
        }),
        _ => ImageConfig::Cnn {
            image_size: s.usize_at_most("image.image_size", MAX_IMAGE_SIZE)?,
            cnn: CnnConfig {
                in_channels: s.usize("image.in_channels")?,
                channels: s.usize_list("image.channels")?,
                kernel: s.usize("image.kernel")?,
                pool: s.usize("image.pool")?,
            },
        },
    })
}

/// A syntax error in a config text: the line (from 1; 0 when a key is
/// missing from the whole text) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigSyntaxError {
    pub line: usize,
    pub message: String,
}

impl fmt::Display for ConfigSyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}", self.message)
        } else {
            write!(f, "line {}: {}", self.line, self.message)
        }
    }
}

impl std::error::Error for ConfigSyntaxError {}

/// The settings of a config text, each with the line it came from; reading a
/// setting removes it, so the ones left at the end are unknown keys.
pub(crate) struct Settings {
    values: BTreeMap<String, (usize, String)>,
}

fn syntax(line: usize, message: impl Into<String>) -> ConfigSyntaxError {
    ConfigSyntaxError {
        line,
        message: message.into(),
    }
}

impl Settings {
    fn parse(text: &str) -> Result<Self, ConfigSyntaxError> {
        Settings::parse_format(text, CONFIG_FORMAT)
    }

    // ANCHOR: parse_lines
    /// The settings of `text`, whose first one must be `format = {format}`.
    pub(crate) fn parse_format(text: &str, format: &str) -> Result<Self, ConfigSyntaxError> {
        let mut values = BTreeMap::new();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let content = raw.split('#').next().unwrap_or("").trim();
            if content.is_empty() {
                continue;
            }
            let Some((key, value)) = content.split_once('=') else {
                return Err(syntax(
                    line,
                    format!("expected `key = value`, found {content:?}"),
                ));
            };
            let (key, value) = (key.trim(), value.trim());
            if key.is_empty() {
                return Err(syntax(line, "empty key"));
            }
            if values.is_empty() && (key != "format" || value != format) {
                return Err(syntax(
                    line,
                    format!(
                        "the first setting must be `format = {format}`, found `{key} = {value}`"
                    ),
                ));
            }
            if let Some((first, _)) = values.insert(key.to_string(), (line, value.to_string())) {
                return Err(syntax(
                    line,
                    format!("`{key}` is set twice (first on line {first})"),
                ));
            }
        }
        if values.is_empty() {
            return Err(syntax(0, "empty config: no settings"));
        }
        Ok(Settings { values })
    }
    // ANCHOR_END: parse_lines

    /// Removes `key` and returns its line and raw value.
    pub(crate) fn take(&mut self, key: &str) -> Result<(usize, String), ConfigSyntaxError> {
        self.values
            .remove(key)
            .ok_or_else(|| syntax(0, format!("missing key `{key}`")))
    }

    pub(crate) fn usize(&mut self, key: &str) -> Result<usize, ConfigSyntaxError> {
        let (line, value) = self.take(key)?;
        value.parse().map_err(|_| {
            syntax(
                line,
                format!("`{key}` must be a non-negative integer, found {value:?}"),
            )
        })
    }

    /// A non-negative integer of at most `max`.
    pub(crate) fn usize_at_most(
        &mut self,
        key: &str,
        max: usize,
    ) -> Result<usize, ConfigSyntaxError> {
        let line = self.values.get(key).map_or(0, |(line, _)| *line);
        let value = self.usize(key)?;
        if value > max {
            return Err(syntax(
                line,
                format!("`{key}` must be at most {max}, found {value}"),
            ));
        }
        Ok(value)
    }

    pub(crate) fn u32(&mut self, key: &str) -> Result<u32, ConfigSyntaxError> {
        let (line, value) = self.take(key)?;
        value
            .parse()
            .map_err(|_| syntax(line, format!("`{key}` must be a token id, found {value:?}")))
    }

    pub(crate) fn f32(&mut self, key: &str) -> Result<f32, ConfigSyntaxError> {
        let (line, value) = self.take(key)?;
        match value.parse::<f32>() {
            Ok(x) if x.is_finite() => Ok(x),
            _ => Err(syntax(
                line,
                format!("`{key}` must be a finite number, found {value:?}"),
            )),
        }
    }

    pub(crate) fn usize_list(&mut self, key: &str) -> Result<Vec<usize>, ConfigSyntaxError> {
        let (line, value) = self.take(key)?;
        value
            .split(',')
            .map(|item| item.trim().parse::<usize>())
            .collect::<Result<_, _>>()
            .map_err(|_| {
                syntax(
                    line,
                    format!("`{key}` must be integers separated by commas, found {value:?}"),
                )
            })
    }

    /// `key`'s value, which must be one of `choices`.
    pub(crate) fn choice(
        &mut self,
        key: &str,
        choices: &[&str],
    ) -> Result<usize, ConfigSyntaxError> {
        let (line, value) = self.take(key)?;
        choices.iter().position(|c| *c == value).ok_or_else(|| {
            syntax(
                line,
                format!("`{key}` must be one of {choices:?}, found {value:?}"),
            )
        })
    }

    /// An error for the first key nobody asked for.
    pub(crate) fn finish(self) -> Result<(), ConfigSyntaxError> {
        match self.values.iter().min_by_key(|(_, (line, _))| *line) {
            Some((key, (line, _))) => Err(syntax(*line, format!("unknown key `{key}`"))),
            None => Ok(()),
        }
    }
}

// ANCHOR: config_from_text
/// Parses the text of `config.txt`. The result is not validated; call
/// [`ModelConfig::validate`] (as [`load_config`] does).
///
/// # Errors
/// A [`ConfigSyntaxError`] with the line of the first problem: a line that is
/// not `key = value`, a wrong or missing format header, a value that does not
/// parse, a key set twice or unknown, an `image.image_size` above
/// [`MAX_IMAGE_SIZE`], or (line 0) a missing key.
pub fn config_from_text(text: &str) -> Result<ModelConfig, ConfigSyntaxError> {
    let mut s = Settings::parse(text)?;
    s.take("format")?; // checked by `parse`
    let vocab = s.usize("vocab")?;
    let max_len = s.usize("max_len")?;
    let special = SpecialTokens {
        bos: s.u32("special.bos")?,
        eos: s.u32("special.eos")?,
        pad: s.u32("special.pad")?,
    };
    let text_config = TextConfig {
        width: s.usize("text.width")?,
        depth: s.usize("text.depth")?,
        n_head: s.usize("text.n_head")?,
        mlp_hidden: s.usize("text.mlp_hidden")?,
    };
    let image = image_config_from(&mut s)?;
    let decoder = DecoderConfig {
        width: s.usize("decoder.width")?,
        depth: s.usize("decoder.depth")?,
        n_head: s.usize("decoder.n_head")?,
        mlp_hidden: s.usize("decoder.mlp_hidden")?,
        head: match s.choice("decoder.head", &["tied", "separate"])? {
            0 => Head::Tied,
            _ => Head::Separate,
        },
    };
    let config = ModelConfig {
        vocab,
        max_len,
        special,
        text: text_config,
        image,
        decoder,
        embed_dim: s.usize("embed_dim")?,
        logit_scale_init: s.f32("logit_scale_init")?,
        logit_scale_max: s.f32("logit_scale_max")?,
    };
    s.finish()?;
    Ok(config)
}
// ANCHOR_END: config_from_text

/// Reads, parses and validates a config file.
///
/// # Errors
/// [`CheckpointError::MissingFile`], [`CheckpointError::Io`],
/// [`CheckpointError::ConfigSyntax`] or [`CheckpointError::ConfigInvalid`].
pub fn load_config(path: &Path) -> Result<ModelConfig, CheckpointError> {
    let text = read_text(path)?;
    let config = config_from_text(&text).map_err(|e| CheckpointError::ConfigSyntax {
        path: path.to_path_buf(),
        line: e.line,
        message: e.message,
    })?;
    config
        .validate()
        .map_err(|source| CheckpointError::ConfigInvalid {
            path: path.to_path_buf(),
            source,
        })?;
    Ok(config)
}

/// Writes `config.txt` atomically.
///
/// # Errors
/// [`CheckpointError::Io`].
pub fn save_config(path: &Path, config: &ModelConfig) -> Result<(), CheckpointError> {
    crate::write_atomic(path, config_to_text(config).as_bytes()).map_err(|source| {
        CheckpointError::Io {
            path: path.to_path_buf(),
            source,
        }
    })
}

/// The file names inside a checkpoint folder.
pub const WEIGHTS_FILE: &str = "model.safetensors";
/// See [`WEIGHTS_FILE`].
pub const CONFIG_FILE: &str = "config.txt";
/// See [`WEIGHTS_FILE`].
pub const TOKENIZER_FILE: &str = "tokenizer.txt";

/// A model with the tokenizer that numbers its vocabulary: what a checkpoint
/// folder holds. The config is `model.config()`.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    pub model: Model,
    pub tokenizer: Tokenizer,
}

// ANCHOR: save_checkpoint
/// Saves `model` and `tokenizer` into the folder `dir` (created if needed):
/// `model.safetensors`, `config.txt`, `tokenizer.txt`, each atomically.
///
/// # Errors
/// [`CheckpointError::VocabMismatch`] or
/// [`CheckpointError::SpecialTokenMismatch`] if the tokenizer does not
/// belong to the model (nothing is written then), [`CheckpointError::Io`] or
/// [`CheckpointError::Weights`] if a file cannot be written.
pub fn save_checkpoint(
    dir: &Path,
    model: &Model,
    tokenizer: &Tokenizer,
) -> Result<(), CheckpointError> {
    let config = model.config();
    check_tokenizer(&dir.join(TOKENIZER_FILE), tokenizer, config)?;
    std::fs::create_dir_all(dir).map_err(|source| CheckpointError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let metadata = BTreeMap::from([
        ("format".to_string(), "model-checkpoint".to_string()),
        ("format_version".to_string(), WEIGHTS_VERSION.to_string()),
    ]);
    crate::save_weights(&dir.join(WEIGHTS_FILE), model, &metadata)
        .map_err(|source| CheckpointError::Weights { source })?;
    save_config(&dir.join(CONFIG_FILE), config)?;
    let path = dir.join(TOKENIZER_FILE);
    crate::write_atomic(&path, tokenizer.to_text().as_bytes())
        .map_err(|source| CheckpointError::Io { path, source })
}
// ANCHOR_END: save_checkpoint

// ANCHOR: load_checkpoint
/// Loads a folder written by [`save_checkpoint`], checking everything before
/// the model is returned.
///
/// The order of the checks: all three files exist; the config parses and
/// validates; the tokenizer parses and agrees with the config (vocabulary
/// size and special token IDs); the weights file is readable, complete, of
/// a known format version, and holds exactly the tensors, with exactly the
/// shapes, of the model the config describes.
///
/// # Errors
/// The first problem found, as a [`CheckpointError`] naming the file.
pub fn load_checkpoint(dir: &Path) -> Result<Checkpoint, CheckpointError> {
    let (weights_path, config_path, tokenizer_path) = (
        dir.join(WEIGHTS_FILE),
        dir.join(CONFIG_FILE),
        dir.join(TOKENIZER_FILE),
    );
    // 1. every file is there (report a missing one before any other problem)
    check_files(&[&weights_path, &config_path, &tokenizer_path])?;
    // 2. the config: parsed, validated
    let config = load_config(&config_path)?;
    // 3. the tokenizer, and that it numbers the config's vocabulary
    let tokenizer = load_tokenizer(&tokenizer_path)?;
    check_tokenizer(&tokenizer_path, &tokenizer, &config)?;
    // 4. the weights: the config's model must be about the file's size
    //    before it is built (a config edited to `text.width = 20000` would
    //    otherwise allocate gigabytes for a 1 MB file) ...
    check_weights_fit(&config_path, &weights_path, parameter_count(&config))?;
    //    ... then a model of the config's shape, every tensor checked
    let mut model = config
        .init(&mut StdRng::seed_from_u64(0)) // every weight is overwritten below
        .map_err(|source| CheckpointError::ConfigInvalid {
            path: config_path.clone(),
            source,
        })?;
    load_versioned_weights(&weights_path, &mut model, WEIGHTS_VERSION)?;
    Ok(Checkpoint { model, tokenizer })
}
// ANCHOR_END: load_checkpoint

/// A [`CheckpointError::MissingFile`] for the first path that is not a file.
pub(crate) fn check_files(paths: &[&Path]) -> Result<(), CheckpointError> {
    match paths.iter().find(|path| !path.is_file()) {
        Some(path) => Err(CheckpointError::MissingFile {
            path: path.to_path_buf(),
        }),
        None => Ok(()),
    }
}

/// Reads and parses a tokenizer file.
pub(crate) fn load_tokenizer(path: &Path) -> Result<Tokenizer, CheckpointError> {
    Tokenizer::from_text(&read_text(path)?).map_err(|source| CheckpointError::Tokenizer {
        path: path.to_path_buf(),
        source,
    })
}

/// [`CheckpointError::ConfigTooLarge`] unless a model of `params` parameters
/// can be the weights file's (see [`crate::weights::sizes_fit`]).
pub(crate) fn check_weights_fit(
    config_path: &Path,
    weights_path: &Path,
    params: Option<u64>,
) -> Result<(), CheckpointError> {
    let weights_bytes = std::fs::metadata(weights_path)
        .map_err(|source| CheckpointError::Io {
            path: weights_path.to_path_buf(),
            source,
        })?
        .len();
    if params.is_some_and(|n| crate::weights::sizes_fit(weights_bytes, n.saturating_mul(4))) {
        Ok(())
    } else {
        Err(CheckpointError::ConfigTooLarge {
            path: config_path.to_path_buf(),
            params,
            weights: weights_path.to_path_buf(),
            weights_bytes,
        })
    }
}

/// Loads the weights file into `module` (every name and shape checked) and
/// requires its `format_version` to be `version`.
pub(crate) fn load_versioned_weights<P: embedding::Params>(
    path: &Path,
    module: &mut P,
    version: &str,
) -> Result<(), CheckpointError> {
    let metadata =
        crate::load_weights(path, module).map_err(|source| CheckpointError::Weights { source })?;
    let found = metadata.get("format_version");
    if found.map(String::as_str) != Some(version) {
        return Err(CheckpointError::WeightsVersion {
            path: path.to_path_buf(),
            found: found.cloned(),
        });
    }
    Ok(())
}

// ANCHOR: parameter_count
/// The number of parameters of the model `config` describes, counted from
/// the config alone, without allocating anything (`None` if the count
/// overflows 64 bits): how [`load_checkpoint`] knows that a config cannot
/// belong to a weights file before it builds the model.
///
/// It follows [`ModelConfig::init`] layer by layer; a test compares it with
/// [`embedding::Params::num_params`] of built models.
pub fn parameter_count(config: &ModelConfig) -> Option<u64> {
    let n = |x: usize| x as u64;
    let cross_block = |b: &BlockConfig, memory: u64| {
        let w = n(b.width);
        sum(&[
            block_count(b),
            layer_norm_count(w),                           // ln_cross
            linear_count(w, w, true),                      // cross_attn.q
            linear_count(memory, w.checked_mul(2)?, true), // cross_attn.kv
            linear_count(w, w, true),                      // cross_attn.proj
        ])
    };
    let blocks = |depth: usize, one: Option<u64>| one?.checked_mul(n(depth));
    let (vocab, max_len) = (n(config.vocab), n(config.max_len));

    let t = &config.text;
    let text = sum(&[
        vocab.checked_mul(n(t.width)),   // token_embedding
        max_len.checked_mul(n(t.width)), // position_embedding
        blocks(t.depth, block_count(&t.block())),
        layer_norm_count(n(t.width)), // ln_final
    ]);
    let d = &config.decoder;
    let image_width = n(config.image.width());
    let decoder = sum(&[
        vocab.checked_mul(n(d.width)),   // token_embedding
        max_len.checked_mul(n(d.width)), // position_embedding
        blocks(d.depth, cross_block(&d.block(), image_width)),
        layer_norm_count(n(d.width)), // ln_final
        match d.head {
            Head::Tied => Some(0),
            Head::Separate => linear_count(n(d.width), vocab, false), // lm_head
        },
    ]);
    let e = n(config.embed_dim);
    sum(&[
        image_parameter_count(&config.image),
        text,
        linear_count(image_width, e, false), // image_projection
        linear_count(n(t.width), e, false),  // text_projection
        Some(1),                             // logit_scale
        decoder,
    ])
}
// ANCHOR_END: parameter_count

/// The sum of some counts, `None` if one is or the sum overflows.
pub(crate) fn sum(parts: &[Option<u64>]) -> Option<u64> {
    parts
        .iter()
        .try_fold(0u64, |acc, part| acc.checked_add((*part)?))
}

/// A Linear's parameters: `c_in · c_out`, plus `c_out` with a bias.
pub(crate) fn linear_count(c_in: u64, c_out: u64, bias: bool) -> Option<u64> {
    c_in.checked_mul(c_out)?
        .checked_add(if bias { c_out } else { 0 })
}

/// A LayerNorm's: weight and bias.
pub(crate) fn layer_norm_count(width: u64) -> Option<u64> {
    width.checked_mul(2)
}

/// A pre-LN block's, as [`BlockConfig::init`] builds it.
pub(crate) fn block_count(b: &BlockConfig) -> Option<u64> {
    let (w, h) = (b.width as u64, b.mlp_hidden as u64);
    sum(&[
        layer_norm_count(w),                      // ln_1
        linear_count(w, w.checked_mul(3)?, true), // attn.qkv
        linear_count(w, w, true),                 // attn.proj
        layer_norm_count(w),                      // ln_2
        linear_count(w, h, true),                 // mlp.fc
        linear_count(h, w, true),                 // mlp.proj
    ])
}

/// An image tower's, as [`ImageConfig::init`] builds it.
pub(crate) fn image_parameter_count(image: &ImageConfig) -> Option<u64> {
    let n = |x: usize| x as u64;
    match image {
        ImageConfig::Vit(vit) => {
            let w = n(vit.block.width);
            let patch_in = n(vit.in_channels).checked_mul(n(vit.patch).checked_pow(2)?);
            let tokens = n(vit.image_size.checked_div(vit.patch)?)
                .checked_pow(2)?
                .checked_add(1); // the patches and CLS
            sum(&[
                linear_count(patch_in?, w, true), // patch_embed: a convolution of stride = kernel
                Some(w),                          // cls_token
                tokens?.checked_mul(w),           // pos_embed
                block_count(&vit.block)?.checked_mul(n(vit.depth)),
                layer_norm_count(w), // norm
            ])
        }
        ImageConfig::Cnn { cnn, .. } => {
            let k2 = n(cnn.kernel).checked_pow(2)?;
            let mut c_in = n(cnn.in_channels);
            let mut convs = Vec::with_capacity(cnn.channels.len());
            for &c_out in &cnn.channels {
                convs.push(linear_count(c_in.checked_mul(k2)?, n(c_out), true));
                c_in = n(c_out);
            }
            sum(&convs)
        }
    }
}

/// The tokenizer's vocabulary size and special tokens against the config's.
fn check_tokenizer(
    path: &Path,
    tokenizer: &Tokenizer,
    config: &ModelConfig,
) -> Result<(), CheckpointError> {
    if tokenizer.vocab_size() != config.vocab {
        return Err(CheckpointError::VocabMismatch {
            path: path.to_path_buf(),
            tokenizer: tokenizer.vocab_size(),
            config: config.vocab,
        });
    }
    let SpecialTokens { bos, eos, pad } = config.special;
    for (token, id) in [
        (tokenizer::BOS, bos),
        (tokenizer::EOS, eos),
        (tokenizer::PAD, pad),
    ] {
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

/// The largest `config.txt` or `tokenizer.txt` read (64 MiB): far above
/// any real one, and a bound on what a damaged or hostile file can make
/// the loader allocate.
pub const MAX_TEXT_FILE_BYTES: u64 = 64 << 20;

/// A file's text, with a missing file told apart from other I/O errors.
pub(crate) fn read_text(path: &Path) -> Result<String, CheckpointError> {
    match crate::read_limited(path, MAX_TEXT_FILE_BYTES) {
        Ok(bytes) => String::from_utf8(bytes).map_err(|_| CheckpointError::Io {
            path: path.to_path_buf(),
            source: io::Error::new(io::ErrorKind::InvalidData, "not valid UTF-8"),
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(CheckpointError::MissingFile {
            path: path.to_path_buf(),
        }),
        Err(source) => Err(CheckpointError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn configs() -> Vec<ModelConfig> {
        let mut cnn = ModelConfig::micro(40);
        cnn.image = ModelConfig::micro_cnn();
        cnn.decoder.head = Head::Separate;
        vec![ModelConfig::tiny(300), ModelConfig::micro(40), cnn]
    }

    #[test]
    fn config_text_round_trips_exactly() {
        for config in configs() {
            let text = config_to_text(&config);
            assert_eq!(config_from_text(&text).unwrap(), config, "{text}");
        }
    }

    #[test]
    fn config_text_is_readable() {
        let text = config_to_text(&ModelConfig::tiny(300));
        assert!(text.contains("\nformat = model-config 1\n"), "{text}");
        assert!(text.contains("\ntext.width = 64\n"));
        assert!(text.contains("\nimage.kind = vit\n"));
        assert!(text.contains("\ndecoder.head = tied\n"));
        // comments, blank lines and spacing are free
        let edited = text.replace("text.depth = 2", "\n  text.depth=3   # deeper\n");
        assert_eq!(config_from_text(&edited).unwrap().text.depth, 3);
    }

    /// The error for `text` with line `n` (from 1) of the tiny config's text
    /// replaced by `line`.
    fn error_with_line(n: usize, line: &str) -> ConfigSyntaxError {
        let text = config_to_text(&ModelConfig::tiny(300));
        let mut lines: Vec<&str> = text.lines().collect();
        lines[n - 1] = line;
        config_from_text(&lines.join("\n")).unwrap_err()
    }

    #[test]
    fn syntax_errors_name_their_line() {
        // line 1 is the comment, line 2 the format, line 3 vocab
        let e = error_with_line(3, "vocab: 300");
        assert_eq!(e.line, 3);
        assert!(e.message.contains("key = value"), "{e}");
        let e = error_with_line(3, "vocab = -4");
        assert_eq!(e.line, 3);
        assert!(e.message.contains("`vocab`"), "{e}");
        let e = error_with_line(3, "vocab = 300 = 301");
        assert_eq!(e.line, 3);
        let e = error_with_line(3, "text.width = 64"); // again on line 8
        assert_eq!(e.line, 8);
        assert!(e.message.contains("set twice (first on line 3)"), "{e}");
        let e = error_with_line(3, "vocabulary = 300");
        assert!(e.message.contains("missing key `vocab`"), "{e}");
        assert_eq!(e.to_string(), "missing key `vocab`");
        let e = error_with_line(2, "format = model-config 2");
        assert_eq!(
            (e.line, e.to_string().contains("model-config 1")),
            (2, true)
        );
        let e = error_with_line(12, "image.kind = mlp");
        assert_eq!(e.line, 12, "{e}");
        assert!(e.message.contains("`image.kind` must be one of"), "{e}");
        let e = error_with_line(27, "logit_scale_max = inf");
        assert_eq!(e.line, 27, "{e}");
        let mut text = config_to_text(&ModelConfig::tiny(300));
        text.push_str("decoder.heads = 4\n");
        let e = config_from_text(&text).unwrap_err();
        assert_eq!(e.line, text.lines().count());
        assert!(e.message.contains("unknown key `decoder.heads`"), "{e}");
        assert_eq!(config_from_text("# nothing\n\n").unwrap_err().line, 0);
    }

    #[test]
    fn load_config_validates() {
        let dir = std::env::temp_dir().join(format!("model-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("config.txt");
        let mut config = ModelConfig::tiny(300);
        save_config(&path, &config).unwrap();
        assert_eq!(load_config(&path).unwrap(), config);
        config.text.n_head = 5; // 64 is not divisible by 5
        save_config(&path, &config).unwrap();
        let e = load_config(&path).unwrap_err();
        assert!(matches!(e, CheckpointError::ConfigInvalid { .. }), "{e}");
        assert!(e.to_string().contains("config.txt: invalid config"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(matches!(
            load_config(&path),
            Err(CheckpointError::MissingFile { .. })
        ));
    }

    // --- whole checkpoints -------------------------------------------------

    use crate::WeightsError;

    /// A tokenizer of 263 tokens whose last three are bos, eos, pad, and a
    /// micro model with random weights over its vocabulary.
    fn micro_pair() -> (Model, Tokenizer) {
        let tokenizer = Tokenizer::train_lines(["a red circle", "a blue square"], 260)
            .unwrap()
            .with_special_tokens(&[tokenizer::BOS, tokenizer::EOS, tokenizer::PAD])
            .unwrap();
        let config = ModelConfig::micro(tokenizer.vocab_size());
        (
            config.init(&mut StdRng::seed_from_u64(1)).unwrap(),
            tokenizer,
        )
    }

    /// A fresh folder with a saved micro checkpoint; removed on drop.
    struct Folder(PathBuf);

    impl Folder {
        fn saved(name: &str) -> (Folder, Model, Tokenizer) {
            let dir =
                std::env::temp_dir().join(format!("model-ckpt-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            let (model, tokenizer) = micro_pair();
            save_checkpoint(&dir, &model, &tokenizer).unwrap();
            (Folder(dir), model, tokenizer)
        }
        fn file(&self, name: &str) -> PathBuf {
            self.0.join(name)
        }
    }

    impl Drop for Folder {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// The error of loading, which must name `file`.
    fn load_error(folder: &Folder, file: &str) -> CheckpointError {
        let e = load_checkpoint(&folder.0).unwrap_err();
        assert!(e.to_string().contains(file), "{file} not named in: {e}");
        e
    }

    #[test]
    fn save_then_load_gives_the_same_model_and_outputs() {
        let (folder, model, tokenizer) = Folder::saved("roundtrip");
        let loaded = load_checkpoint(&folder.0).unwrap();
        assert_eq!(loaded.tokenizer, tokenizer);
        assert_eq!(loaded.model.config(), model.config());
        assert!(
            loaded.model == model,
            "every parameter round-trips bit for bit"
        );
        // and so do the outputs
        let images = ndarray::Array4::from_shape_fn((2, 3, 8, 8), |(b, c, h, w)| {
            ((b * 7 + c * 5 + h * 3 + w) % 11) as f32 / 11.0 - 0.5
        });
        let (tokens, embeds) = model.encode_images(&images);
        let (tokens2, embeds2) = loaded.model.encode_images(&images);
        assert_eq!((tokens, embeds), (tokens2, embeds2));
        let ids = ndarray::array![[260u32, 97, 32, 261]];
        assert_eq!(
            model.encode_texts(&ids, &[4]),
            loaded.model.encode_texts(&ids, &[4])
        );
        // the weights file carries its format version
        let metadata = crate::load_weights(&folder.file(WEIGHTS_FILE), &mut model.clone()).unwrap();
        assert_eq!(metadata["format_version"], WEIGHTS_VERSION);
        // and saving again over an existing checkpoint works (atomic renames)
        save_checkpoint(&folder.0, &loaded.model, &loaded.tokenizer).unwrap();
        assert!(load_checkpoint(&folder.0).unwrap().model == model);
    }

    #[test]
    fn a_missing_file_is_named() {
        for file in [WEIGHTS_FILE, CONFIG_FILE, TOKENIZER_FILE] {
            let (folder, _, _) = Folder::saved(&format!("missing-{file}"));
            std::fs::remove_file(folder.file(file)).unwrap();
            let e = load_error(&folder, file);
            assert!(matches!(e, CheckpointError::MissingFile { .. }), "{e}");
        }
    }

    #[test]
    fn truncated_or_corrupt_weights_are_errors() {
        let (folder, _, _) = Folder::saved("corrupt");
        let path = folder.file(WEIGHTS_FILE);
        let bytes = std::fs::read(&path).unwrap();
        for cut in [0, 4, 8, 20, bytes.len() / 2, bytes.len() - 1] {
            std::fs::write(&path, &bytes[..cut]).unwrap();
            let e = load_error(&folder, WEIGHTS_FILE);
            assert!(
                matches!(
                    e,
                    CheckpointError::Weights {
                        source: WeightsError::Format { .. }
                    }
                ),
                "cut at {cut}: {e}"
            );
        }
        let mut corrupt = bytes.clone();
        corrupt[9] = b'!'; // inside the JSON header
        std::fs::write(&path, &corrupt).unwrap();
        let e = load_error(&folder, WEIGHTS_FILE);
        assert!(matches!(e, CheckpointError::Weights { .. }), "{e}");
    }

    #[test]
    fn config_errors_name_the_file_and_line() {
        let (folder, model, _) = Folder::saved("config");
        let path = folder.file(CONFIG_FILE);
        let text = config_to_text(model.config());
        std::fs::write(&path, text.replace("text.width = 8", "text.width = eight")).unwrap();
        let e = load_error(&folder, "config.txt:8:");
        assert!(
            matches!(e, CheckpointError::ConfigSyntax { line: 8, .. }),
            "{e}"
        );
        std::fs::write(&path, text.replace("text.n_head = 2", "text.n_head = 3")).unwrap();
        let e = load_error(&folder, CONFIG_FILE);
        assert!(matches!(e, CheckpointError::ConfigInvalid { .. }), "{e}");
    }

    #[test]
    fn a_config_that_does_not_match_the_weights_lists_every_difference() {
        let (folder, model, _) = Folder::saved("shapes");
        let path = folder.file(CONFIG_FILE);
        let mut config = model.config().clone();
        config.decoder.mlp_hidden = 24; // was 16
        config.text.depth = 2; // was 1
        save_config(&path, &config).unwrap();
        let e = load_error(&folder, WEIGHTS_FILE);
        let CheckpointError::Weights {
            source: WeightsError::Mismatch { report, .. },
        } = e
        else {
            panic!("expected a mismatch, got {e}");
        };
        assert!(!report.wrong_shape.is_empty());
        assert!(
            report.wrong_shape.iter().all(|(name, want, got)| {
                name.starts_with("decoder.blocks.0.mlp") && want != got
            }),
            "{report:?}"
        );
        assert!(!report.missing.is_empty());
        assert!(
            report
                .missing
                .iter()
                .all(|n| n.starts_with("text.blocks.1.")),
            "{report:?}"
        );
        assert!(report.unexpected.is_empty());
    }

    #[test]
    fn a_foreign_tokenizer_is_an_error() {
        let (folder, _, tokenizer) = Folder::saved("tokenizer");
        let path = folder.file(TOKENIZER_FILE);
        // one token short
        let small = Tokenizer::train_lines(["a red circle", "a blue square"], 259)
            .unwrap()
            .with_special_tokens(&[tokenizer::BOS, tokenizer::EOS, tokenizer::PAD])
            .unwrap();
        std::fs::write(&path, small.to_text()).unwrap();
        let e = load_error(&folder, TOKENIZER_FILE);
        assert!(
            matches!(
                e,
                CheckpointError::VocabMismatch {
                    tokenizer: 262,
                    config: 263,
                    ..
                }
            ),
            "{e}"
        );
        // same size, special tokens in another order
        let swapped = Tokenizer::train_lines(["a red circle", "a blue square"], 260)
            .unwrap()
            .with_special_tokens(&[tokenizer::EOS, tokenizer::BOS, tokenizer::PAD])
            .unwrap();
        std::fs::write(&path, swapped.to_text()).unwrap();
        let e = load_error(&folder, TOKENIZER_FILE);
        assert!(
            matches!(e, CheckpointError::SpecialTokenMismatch { .. }),
            "{e}"
        );
        // not a tokenizer file at all
        std::fs::write(&path, "hello\n").unwrap();
        let e = load_error(&folder, TOKENIZER_FILE);
        assert!(matches!(e, CheckpointError::Tokenizer { .. }), "{e}");
        // and saving refuses a tokenizer that does not belong to the model
        let (model, _) = micro_pair();
        let other = folder.0.join("other");
        let e = save_checkpoint(&other, &model, &small).unwrap_err();
        assert!(matches!(e, CheckpointError::VocabMismatch { .. }), "{e}");
        assert!(!other.exists(), "nothing is written for a mismatched pair");
        let _ = tokenizer;
    }

    #[test]
    fn the_parameter_count_is_the_built_models() {
        use embedding::Params;
        let mut configs = configs();
        configs.push(ModelConfig::tiny(300));
        let mut cnn = ModelConfig::tiny(300);
        cnn.image = ImageConfig::tiny_cnn();
        configs.push(cnn);
        for config in configs {
            let model = config.init(&mut StdRng::seed_from_u64(0)).unwrap();
            assert_eq!(
                parameter_count(&config),
                Some(model.num_params() as u64),
                "{config:?}"
            );
        }
        let mut huge = ModelConfig::tiny(300);
        huge.text.width = 1 << 62;
        huge.text.mlp_hidden = 1 << 62;
        assert_eq!(parameter_count(&huge), None);
    }

    /// Random small shapes of every part: the count follows `init`.
    #[test]
    fn the_parameter_count_follows_init_for_random_shapes() {
        use rand::Rng;
        let mut rng = StdRng::seed_from_u64(7);
        for _ in 0..40 {
            let mut r = |lo: usize, hi: usize| rng.random_range(lo..hi);
            let heads = r(1, 3);
            let mut config = ModelConfig::micro(r(4, 20));
            config.max_len = r(2, 6);
            config.text = TextConfig {
                width: heads * r(1, 3),
                depth: r(1, 3),
                n_head: heads,
                mlp_hidden: r(1, 5),
            };
            config.decoder = DecoderConfig {
                width: heads * r(1, 3),
                depth: r(1, 3),
                n_head: heads,
                mlp_hidden: r(1, 5),
                head: if r(0, 2) == 0 {
                    Head::Tied
                } else {
                    Head::Separate
                },
            };
            config.image = if r(0, 2) == 0 {
                let patch = r(1, 3);
                ImageConfig::Vit(VitConfig {
                    image_size: patch * r(1, 3),
                    in_channels: r(1, 4),
                    patch,
                    depth: r(1, 3),
                    block: BlockConfig {
                        width: heads * r(1, 3),
                        n_head: heads,
                        mlp_hidden: r(1, 5),
                    },
                })
            } else {
                let blocks = r(1, 3);
                ImageConfig::Cnn {
                    cnn: CnnConfig {
                        in_channels: r(1, 4),
                        channels: (0..blocks).map(|_| r(1, 4)).collect(),
                        kernel: 2 * r(0, 2) + 1,
                        pool: 1,
                    },
                    image_size: r(1, 5),
                }
            };
            config.embed_dim = r(1, 5);
            let model = config.init(&mut StdRng::seed_from_u64(0)).unwrap();
            assert_eq!(
                parameter_count(&config),
                Some(embedding::Params::num_params(&model) as u64),
                "{config:?}"
            );
        }
    }

    #[test]
    fn a_config_far_larger_than_the_weights_is_refused_before_building() {
        let (folder, model, _) = Folder::saved("too-large");
        let path = folder.file(CONFIG_FILE);
        let text = config_to_text(model.config());
        // 20000 wide: about 2 GB of weights for a file of some 50 kB
        std::fs::write(&path, text.replace("text.width = 8", "text.width = 20000")).unwrap();
        let e = load_error(&folder, CONFIG_FILE);
        assert!(
            matches!(e, CheckpointError::ConfigTooLarge { params: Some(n), .. } if n > 100_000_000),
            "{e}"
        );
        assert!(e.to_string().contains("do not belong together"), "{e}");
        // widths of 2^62 overflow every count: an error, not a panic in ndarray
        let wide = 1usize << 62;
        let text2 = text
            .replace("text.width = 8", &format!("text.width = {wide}"))
            .replace("text.mlp_hidden = 16", &format!("text.mlp_hidden = {wide}"));
        std::fs::write(&path, text2).unwrap();
        let e = load_error(&folder, CONFIG_FILE);
        assert!(
            matches!(e, CheckpointError::ConfigTooLarge { params: None, .. }),
            "{e}"
        );
        // an image size no image should be resized to
        std::fs::write(
            &path,
            text.replace("image.image_size = 8", "image.image_size = 100000"),
        )
        .unwrap();
        let e = load_error(&folder, "config.txt:");
        assert!(e.to_string().contains("at most 1024"), "{e}");
    }

    #[test]
    fn a_non_finite_weight_is_refused_naming_the_tensor() {
        let (folder, mut model, _) = Folder::saved("nan");
        model.text_projection.weight[[0, 1]] = f32::NAN;
        let metadata =
            BTreeMap::from([("format_version".to_string(), WEIGHTS_VERSION.to_string())]);
        crate::save_weights(&folder.file(WEIGHTS_FILE), &model, &metadata).unwrap();
        let e = load_error(&folder, WEIGHTS_FILE);
        assert!(e.to_string().contains("text_projection.weight"), "{e}");
        assert!(
            matches!(
                e,
                CheckpointError::Weights {
                    source: WeightsError::NonFinite { count: 1, .. }
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn an_unknown_weights_version_is_an_error() {
        let (folder, model, _) = Folder::saved("version");
        let path = folder.file(WEIGHTS_FILE);
        let metadata = BTreeMap::from([("format_version".to_string(), "2".to_string())]);
        crate::save_weights(&path, &model, &metadata).unwrap();
        let e = load_error(&folder, WEIGHTS_FILE);
        assert!(
            matches!(e, CheckpointError::WeightsVersion { found: Some(ref v), .. } if v == "2"),
            "{e}"
        );
        crate::save_weights(&path, &model, &BTreeMap::new()).unwrap();
        let e = load_error(&folder, WEIGHTS_FILE);
        assert!(
            matches!(e, CheckpointError::WeightsVersion { found: None, .. }),
            "{e}"
        );
    }
}
