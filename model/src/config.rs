//! The model's shape: one config per part, nested, checked before use.
//!
//! ```text
//! ModelConfig
//! ├── vocab, max_len, special { bos, eos, pad }   what the tokenizer and the captions need
//! ├── text:    TextConfig    { width, depth, n_head, mlp_hidden }     the text tower
//! ├── image:   ImageConfig   Vit(VitConfig) | Cnn { cnn, image_size }  the image tower
//! ├── decoder: DecoderConfig { width, depth, n_head, mlp_hidden, head: Tied | Separate }
//! └── embed_dim, logit_scale_init, logit_scale_max                    the shared space
//! ```
//!
//! A config can come from a file or a command line, so [`ModelConfig::validate`]
//! turns an impossible one (a width the heads do not divide, a patch that does
//! not tile the image, a special token outside the vocabulary, …) into a
//! [`ConfigError`] that names the field and its value, instead of a panic deep
//! inside a layer.

use std::fmt;

use attention::BlockConfig;
use vision::{CnnConfig, VitConfig};

// ANCHOR: special_tokens
/// The IDs of the special tokens the model itself relies on.
///
/// A caption in a batch is `<|bos|> caption <|eos|> <|pad|> …`: the decoder
/// starts from `bos` and learns to stop with `eos`; the text encoder reads
/// its vector at the `eos` position; `pad` fills the rest of the row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpecialTokens {
    /// Start of a caption (`<|bos|>`).
    pub bos: u32,
    /// End of a caption (`<|eos|>`).
    pub eos: u32,
    /// Filler after the end (`<|pad|>`).
    pub pad: u32,
}
// ANCHOR_END: special_tokens

impl SpecialTokens {
    /// The last three IDs of a vocabulary of `vocab` tokens, in the order
    /// `bos, eos, pad`: where `Tokenizer::with_special_tokens(&[BOS, EOS, PAD])`
    /// puts them.
    pub fn last_three(vocab: usize) -> Self {
        let id = |back: usize| vocab.saturating_sub(back) as u32;
        SpecialTokens {
            bos: id(3),
            eos: id(2),
            pad: id(1),
        }
    }

    /// Looks the three tokens up in a trained tokenizer.
    ///
    /// # Errors
    /// [`ConfigError::MissingSpecialToken`] if the tokenizer lacks one of them.
    pub fn from_tokenizer(tokenizer: &tokenizer::Tokenizer) -> Result<Self, ConfigError> {
        let id = |token: &'static str| {
            tokenizer
                .special_id(token)
                .ok_or(ConfigError::MissingSpecialToken { token })
        };
        Ok(SpecialTokens {
            bos: id(tokenizer::BOS)?,
            eos: id(tokenizer::EOS)?,
            pad: id(tokenizer::PAD)?,
        })
    }
}

// ANCHOR: text_config
/// The text encoder (CLIP's text tower): causal transformer blocks.
#[derive(Debug, Clone, PartialEq)]
pub struct TextConfig {
    /// Width `C_text` of the residual stream.
    pub width: usize,
    /// Number of transformer blocks.
    pub depth: usize,
    /// Attention heads; must divide `width`.
    pub n_head: usize,
    /// Hidden width of each MLP; `4 · width` as in GPT-2 and CLIP.
    pub mlp_hidden: usize,
}
// ANCHOR_END: text_config

impl TextConfig {
    /// The block every layer of this tower is made from.
    pub fn block(&self) -> BlockConfig {
        BlockConfig {
            width: self.width,
            n_head: self.n_head,
            mlp_hidden: self.mlp_hidden,
        }
    }
}

// ANCHOR: image_config
/// The image encoder: a Vision Transformer or a CNN.
#[derive(Debug, Clone, PartialEq)]
pub enum ImageConfig {
    /// Patches → transformer blocks; image tokens are the CLS token and the
    /// patches `[B, N + 1, C_img]`, the pooled vector is the CLS token.
    Vit(VitConfig),
    /// Convolution blocks; image tokens are the final map's positions
    /// `[B, H'·W', C_img]`, the pooled vector is their mean.
    Cnn {
        /// The convolution blocks.
        cnn: CnnConfig,
        /// Side of the square input images in pixels (the CNN itself takes any size).
        image_size: usize,
    },
}
// ANCHOR_END: image_config

impl ImageConfig {
    /// The tiny ViT: 32×32 RGB images in 4×4 patches (64 patches + CLS), two
    /// blocks of width 64 with 4 heads.
    pub fn tiny_vit() -> Self {
        ImageConfig::Vit(VitConfig {
            image_size: 32,
            in_channels: 3,
            patch: 4,
            depth: 2,
            block: BlockConfig::default(),
        })
    }

    /// The tiny CNN: 32×32 RGB images, two blocks 3 → 32 → 64 channels, so an
    /// 8×8 map of 64 tokens of width 64.
    pub fn tiny_cnn() -> Self {
        ImageConfig::Cnn {
            cnn: CnnConfig::default(),
            image_size: 32,
        }
    }

    /// Side of the square input images.
    pub fn image_size(&self) -> usize {
        match self {
            ImageConfig::Vit(vit) => vit.image_size,
            ImageConfig::Cnn { image_size, .. } => *image_size,
        }
    }

    /// Channels of the input images (3 for RGB).
    pub fn in_channels(&self) -> usize {
        match self {
            ImageConfig::Vit(vit) => vit.in_channels,
            ImageConfig::Cnn { cnn, .. } => cnn.in_channels,
        }
    }

    /// Width `C_img` of the image tokens and of the pooled vector.
    pub fn width(&self) -> usize {
        match self {
            ImageConfig::Vit(vit) => vit.block.width,
            ImageConfig::Cnn { cnn, .. } => cnn.channels.last().copied().unwrap_or(0),
        }
    }

    /// Checks that a tower of this shape can be built and read images.
    ///
    /// # Errors
    /// The first problem found, as a [`ConfigError`] naming the `image.*` field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        use ConfigError::*;
        let positive = |field: &'static str, value: usize| {
            if value == 0 {
                Err(Zero { field })
            } else {
                Ok(())
            }
        };
        let divides = |field: &'static str, value: usize, by_field: &'static str, by: usize| {
            if value.is_multiple_of(by) {
                Ok(())
            } else {
                Err(NotDivisible {
                    field,
                    value,
                    by_field,
                    by,
                })
            }
        };
        positive("image.image_size", self.image_size())?;
        positive("image.in_channels", self.in_channels())?;
        match self {
            ImageConfig::Vit(vit) => {
                positive("image.patch", vit.patch)?;
                positive("image.depth", vit.depth)?;
                positive("image.width", vit.block.width)?;
                positive("image.n_head", vit.block.n_head)?;
                positive("image.mlp_hidden", vit.block.mlp_hidden)?;
                divides(
                    "image.width",
                    vit.block.width,
                    "image.n_head",
                    vit.block.n_head,
                )?;
                divides("image.image_size", vit.image_size, "image.patch", vit.patch)?;
            }
            ImageConfig::Cnn { cnn, image_size } => {
                positive("image.channels", cnn.channels.len())?;
                for &c in &cnn.channels {
                    positive("image.channels", c)?;
                }
                positive("image.pool", cnn.pool)?;
                if cnn.kernel % 2 == 0 {
                    return Err(EvenKernel { kernel: cnn.kernel });
                }
                if self.num_tokens() == 0 {
                    return Err(ImageTooSmall {
                        image_size: *image_size,
                        blocks: cnn.channels.len(),
                        pool: cnn.pool,
                    });
                }
            }
        }

        Ok(())
    }

    /// Where the tower's tokens lie: a CLS token first (ViT), then a square grid.
    pub fn grid(&self) -> crate::ImageGrid {
        let (cls, cells) = match self {
            ImageConfig::Vit(vit) => (true, vit.num_patches()),
            ImageConfig::Cnn { .. } => (false, self.num_tokens()),
        };
        crate::ImageGrid {
            cls,
            side: cells.isqrt(),
            width: self.width(),
        }
    }

    /// Number of image tokens `N_img` the decoder cross-attends to.
    pub fn num_tokens(&self) -> usize {
        match self {
            ImageConfig::Vit(vit) => vit.num_patches() + 1,
            ImageConfig::Cnn { cnn, image_size } => {
                let mut side = *image_size;
                for _ in &cnn.channels {
                    // "same" convolution keeps the side, the pool divides it (floor)
                    side = side.checked_div(cnn.pool).unwrap_or(0);
                }
                side * side
            }
        }
    }
}

// ANCHOR: decoder_config
/// How the decoder turns its last hidden states into vocabulary logits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Head {
    /// `logits = h · Wteᵀ`: the token embedding read backwards (GPT-2, CoCa).
    Tied,
    /// A separate `lm_head: [V, C_dec]` Linear without bias.
    Separate,
}

/// The caption decoder (CoCa's multimodal decoder).
#[derive(Debug, Clone, PartialEq)]
pub struct DecoderConfig {
    /// Width `C_dec` of the residual stream.
    pub width: usize,
    /// Number of decoder blocks (causal self-attention, cross-attention, MLP).
    pub depth: usize,
    /// Attention heads; must divide `width`.
    pub n_head: usize,
    /// Hidden width of each MLP.
    pub mlp_hidden: usize,
    /// Tied or separate output head.
    pub head: Head,
}
// ANCHOR_END: decoder_config

impl DecoderConfig {
    /// The block every layer of the decoder is made from.
    pub fn block(&self) -> BlockConfig {
        BlockConfig {
            width: self.width,
            n_head: self.n_head,
            mlp_hidden: self.mlp_hidden,
        }
    }
}

// ANCHOR: model_config
/// Everything that fixes the shapes of a [`crate::Model`].
#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    /// Vocabulary size `V`: the tokenizer's, special tokens included.
    pub vocab: usize,
    /// Longest caption in tokens, `<|bos|>` and `<|eos|>` included (rows of
    /// both position tables).
    pub max_len: usize,
    /// The IDs of `<|bos|>`, `<|eos|>` and `<|pad|>`.
    pub special: SpecialTokens,
    /// The text tower.
    pub text: TextConfig,
    /// The image tower.
    pub image: ImageConfig,
    /// The caption decoder.
    pub decoder: DecoderConfig,
    /// Dimension `E` of the shared space both towers project into.
    pub embed_dim: usize,
    /// Starting value of the learnable `logit_scale = ln(1/τ)`: `ln(1/0.07)`,
    /// CLIP's temperature `τ = 0.07`.
    pub logit_scale_init: f32,
    /// Largest `logit_scale` the optimiser allows: `ln 100` (open_clip), so
    /// the similarities are never multiplied by more than 100.
    pub logit_scale_max: f32,
}
// ANCHOR_END: model_config

impl ModelConfig {
    // ANCHOR: tiny
    /// The teaching size, the shapes of the other crates' benches: 32×32
    /// images in 4×4 patches, width 64, 2 layers of 4 heads, MLP 256 in every
    /// tower, captions up to 16 tokens, a shared space of 64 dimensions, a
    /// tied decoder head. The special tokens are the vocabulary's last three
    /// ([`SpecialTokens::last_three`]); set `special` if yours differ.
    pub fn tiny(vocab: usize) -> Self {
        ModelConfig {
            vocab,
            max_len: 16,
            special: SpecialTokens::last_three(vocab),
            text: TextConfig {
                width: 64,
                depth: 2,
                n_head: 4,
                mlp_hidden: 256,
            },
            image: ImageConfig::tiny_vit(),
            decoder: DecoderConfig {
                width: 64,
                depth: 2,
                n_head: 4,
                mlp_hidden: 256,
                head: Head::Tied,
            },
            embed_dim: 64,
            logit_scale_init: (1.0f32 / 0.07).ln(),
            logit_scale_max: 100f32.ln(),
        }
    }
    // ANCHOR_END: tiny

    /// A model small enough to check every gradient by finite differences:
    /// 8×8 images in 4×4 patches, width 8, one layer of 2 heads per tower,
    /// captions up to 6 tokens, a shared space of 6 dimensions. The text and
    /// decoder widths differ from the image width on purpose, so a mixed-up
    /// shape cannot pass unnoticed.
    pub fn micro(vocab: usize) -> Self {
        ModelConfig {
            vocab,
            max_len: 6,
            special: SpecialTokens::last_three(vocab),
            text: TextConfig {
                width: 8,
                depth: 1,
                n_head: 2,
                mlp_hidden: 16,
            },
            image: ImageConfig::Vit(VitConfig {
                image_size: 8,
                in_channels: 3,
                patch: 4,
                depth: 1,
                block: BlockConfig {
                    width: 12,
                    n_head: 2,
                    mlp_hidden: 16,
                },
            }),
            decoder: DecoderConfig {
                width: 10,
                depth: 1,
                n_head: 2,
                mlp_hidden: 16,
                head: Head::Tied,
            },
            embed_dim: 6,
            logit_scale_init: (1.0f32 / 0.07).ln(),
            logit_scale_max: 100f32.ln(),
        }
    }

    /// The micro CNN image tower: 8×8 images, two blocks 3 → 4 → 6 channels,
    /// so a 2×2 map of 4 tokens of width 6.
    pub fn micro_cnn() -> ImageConfig {
        ImageConfig::Cnn {
            cnn: CnnConfig {
                in_channels: 3,
                channels: vec![4, 6],
                kernel: 3,
                pool: 2,
            },
            image_size: 8,
        }
    }

    // ANCHOR: validate
    /// Checks that a model of this shape can be built and run.
    ///
    /// # Errors
    /// The first problem found, as a [`ConfigError`] naming the field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        use ConfigError::*;
        let positive = |field: &'static str, value: usize| {
            if value == 0 {
                Err(Zero { field })
            } else {
                Ok(())
            }
        };
        let divides = |field: &'static str, value: usize, by_field: &'static str, by: usize| {
            if value.is_multiple_of(by) {
                Ok(())
            } else {
                Err(NotDivisible {
                    field,
                    value,
                    by_field,
                    by,
                })
            }
        };

        // the vocabulary and the captions
        positive("vocab", self.vocab)?;
        let SpecialTokens { bos, eos, pad } = self.special;
        for (name, id) in [("bos", bos), ("eos", eos), ("pad", pad)] {
            if id as usize >= self.vocab {
                return Err(SpecialTokenOutOfRange {
                    name,
                    id,
                    vocab: self.vocab,
                });
            }
        }
        if bos == eos || bos == pad || eos == pad {
            return Err(SpecialTokensNotDistinct { bos, eos, pad });
        }
        if self.max_len < 2 {
            return Err(MaxLenTooShort {
                max_len: self.max_len,
            });
        }

        // the text tower
        positive("text.width", self.text.width)?;
        positive("text.depth", self.text.depth)?;
        positive("text.n_head", self.text.n_head)?;
        positive("text.mlp_hidden", self.text.mlp_hidden)?;
        divides(
            "text.width",
            self.text.width,
            "text.n_head",
            self.text.n_head,
        )?;

        // the image tower
        self.image.validate()?;

        // the decoder and the shared space
        positive("decoder.width", self.decoder.width)?;
        positive("decoder.depth", self.decoder.depth)?;
        positive("decoder.n_head", self.decoder.n_head)?;
        positive("decoder.mlp_hidden", self.decoder.mlp_hidden)?;
        divides(
            "decoder.width",
            self.decoder.width,
            "decoder.n_head",
            self.decoder.n_head,
        )?;
        positive("embed_dim", self.embed_dim)?;
        let (init, max) = (self.logit_scale_init, self.logit_scale_max);
        if !(init.is_finite() && max.is_finite() && init <= max) {
            return Err(LogitScale { init, max });
        }
        Ok(())
    }
    // ANCHOR_END: validate
}

// ANCHOR: config_error
/// Why a [`ModelConfig`] cannot describe a working model.
#[derive(Debug, Clone, PartialEq)]
pub enum ConfigError {
    /// A size that must be at least 1 is 0.
    Zero { field: &'static str },
    /// `field = value` is not a multiple of `by_field = by`.
    NotDivisible {
        field: &'static str,
        value: usize,
        by_field: &'static str,
        by: usize,
    },
    /// A special token's ID is outside the vocabulary.
    SpecialTokenOutOfRange {
        name: &'static str,
        id: u32,
        vocab: usize,
    },
    /// Two special tokens share an ID.
    SpecialTokensNotDistinct { bos: u32, eos: u32, pad: u32 },
    /// The tokenizer has no such special token.
    MissingSpecialToken { token: &'static str },
    /// Captions need room for at least `<|bos|>` and `<|eos|>`.
    MaxLenTooShort { max_len: usize },
    /// A CNN kernel must be odd, so "same" padding keeps the size.
    EvenKernel { kernel: usize },
    /// The CNN's pooling leaves no pixel of the image.
    ImageTooSmall {
        image_size: usize,
        blocks: usize,
        pool: usize,
    },
    /// The logit scale must be finite and start at most at its maximum.
    LogitScale { init: f32, max: f32 },
    /// The projector cannot read the tower's tokens as configured.
    Projector { message: String },
    /// Two of the chat format's special tokens share an ID.
    ChatTokensNotDistinct { ids: Vec<u32> },
    /// The language model's positions cannot hold the image and a turn.
    LmTooShort { max_len: usize, image_tokens: usize },
}
// ANCHOR_END: config_error

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Zero { field } => write!(f, "{field} must be at least 1, got 0"),
            ConfigError::NotDivisible {
                field,
                value,
                by_field,
                by,
            } => write!(f, "{field} = {value} is not divisible by {by_field} = {by}"),
            ConfigError::SpecialTokenOutOfRange { name, id, vocab } => write!(
                f,
                "special token {name} = {id} is outside the vocabulary of {vocab} tokens"
            ),
            ConfigError::SpecialTokensNotDistinct { bos, eos, pad } => write!(
                f,
                "special tokens must differ, got bos = {bos}, eos = {eos}, pad = {pad}"
            ),
            ConfigError::MissingSpecialToken { token } => {
                write!(f, "the tokenizer has no special token {token}")
            }
            ConfigError::MaxLenTooShort { max_len } => write!(
                f,
                "max_len = {max_len} leaves no room for <|bos|> and <|eos|> (needs at least 2)"
            ),
            ConfigError::EvenKernel { kernel } => {
                write!(f, "image.kernel = {kernel} must be odd")
            }
            ConfigError::ImageTooSmall {
                image_size,
                blocks,
                pool,
            } => write!(
                f,
                "image.image_size = {image_size} is too small for {blocks} blocks pooling by {pool}"
            ),
            ConfigError::LogitScale { init, max } => write!(
                f,
                "logit_scale_init = {init} must be finite and at most logit_scale_max = {max}"
            ),
            ConfigError::Projector { message } => write!(f, "{message}"),
            ConfigError::ChatTokensNotDistinct { ids } => write!(
                f,
                "the chat tokens (image, user, assistant, end, pad) must differ, got {ids:?}"
            ),
            ConfigError::LmTooShort {
                max_len,
                image_tokens,
            } => write!(
                f,
                "lm.max_len = {max_len} cannot hold {image_tokens} image tokens and a turn \
                 (needs at least {})",
                image_tokens + 4
            ),
        }
    }
}

impl std::error::Error for ConfigError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_are_valid() {
        ModelConfig::tiny(300).validate().unwrap();
        ModelConfig::micro(12).validate().unwrap();
        let mut cnn = ModelConfig::tiny(300);
        cnn.image = ImageConfig::tiny_cnn();
        cnn.validate().unwrap();
        cnn.image = ModelConfig::micro_cnn();
        cnn.validate().unwrap();
    }

    #[test]
    fn tiny_has_the_teaching_shapes() {
        let config = ModelConfig::tiny(300);
        assert_eq!(config.image.num_tokens(), 65); // (32/4)² patches + CLS
        assert_eq!(ImageConfig::tiny_cnn().num_tokens(), 64); // 8×8 map
        assert_eq!(config.image.width(), 64);
        assert_eq!(
            config.special,
            SpecialTokens {
                bos: 297,
                eos: 298,
                pad: 299
            }
        );
        assert!((config.logit_scale_init.exp() - 1.0 / 0.07).abs() < 1e-4);
        assert!((config.logit_scale_max.exp() - 100.0).abs() < 1e-3);
    }

    #[test]
    fn impossible_configs_name_the_field() {
        type Break = Box<dyn Fn(&mut ModelConfig)>;
        let cases: Vec<(Break, &str)> = vec![
            (
                Box::new(|c| c.text.width = 63),
                "text.width = 63 is not divisible by text.n_head = 4",
            ),
            (
                Box::new(|c| c.decoder.n_head = 0),
                "decoder.n_head must be at least 1, got 0",
            ),
            (
                Box::new(|c| {
                    if let ImageConfig::Vit(vit) = &mut c.image {
                        vit.patch = 5;
                    }
                }),
                "image.image_size = 32 is not divisible by image.patch = 5",
            ),
            (
                Box::new(|c| c.special.eos = 300),
                "special token eos = 300 is outside the vocabulary of 300 tokens",
            ),
            (
                Box::new(|c| c.special.pad = c.special.bos),
                "special tokens must differ, got bos = 297, eos = 298, pad = 297",
            ),
            (
                Box::new(|c| c.max_len = 1),
                "max_len = 1 leaves no room for <|bos|> and <|eos|> (needs at least 2)",
            ),
            (
                Box::new(|c| c.embed_dim = 0),
                "embed_dim must be at least 1, got 0",
            ),
            (
                Box::new(|c| c.logit_scale_init = 5.0),
                "logit_scale_init = 5 must be finite and at most logit_scale_max = 4.6051702",
            ),
            (
                Box::new(|c| {
                    c.image = ImageConfig::Cnn {
                        cnn: CnnConfig::default(),
                        image_size: 3,
                    }
                }),
                "image.image_size = 3 is too small for 2 blocks pooling by 2",
            ),
            (
                Box::new(|c| {
                    c.image = ImageConfig::Cnn {
                        cnn: CnnConfig {
                            kernel: 4,
                            ..CnnConfig::default()
                        },
                        image_size: 32,
                    }
                }),
                "image.kernel = 4 must be odd",
            ),
        ];
        for (break_it, message) in cases {
            let mut config = ModelConfig::tiny(300);
            break_it(&mut config);
            let err = config.validate().unwrap_err();
            assert_eq!(err.to_string(), message);
        }
    }

    #[test]
    fn a_vocabulary_too_small_for_the_special_tokens_is_an_error() {
        let err = ModelConfig::tiny(2).validate().unwrap_err();
        assert!(
            matches!(err, ConfigError::SpecialTokensNotDistinct { .. }),
            "{err}"
        );
        assert!(ModelConfig::tiny(3).validate().is_ok());
    }

    #[test]
    fn special_tokens_come_from_the_tokenizer() {
        use tokenizer::{BOS, EOS, IMAGE, PAD, Tokenizer};
        let tok = Tokenizer::train_lines(["a red circle", "a blue square"], 260)
            .unwrap()
            .with_special_tokens(&[BOS, EOS, PAD, IMAGE])
            .unwrap();
        let special = SpecialTokens::from_tokenizer(&tok).unwrap();
        assert_eq!((special.bos, special.eos, special.pad), (260, 261, 262));
        let plain = Tokenizer::train_lines(["a red circle"], 257).unwrap();
        assert_eq!(
            SpecialTokens::from_tokenizer(&plain)
                .unwrap_err()
                .to_string(),
            "the tokenizer has no special token <|bos|>"
        );
    }
}
