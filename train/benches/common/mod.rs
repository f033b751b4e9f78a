//! What both training-step benches share: the vocabulary size and the batch.

use embedding::init;
use model::ModelConfig;
use model::VlmConfig;
use ndarray::Array2;
use rand::SeedableRng;
use rand::rngs::StdRng;
use train::{Batch, ChatBatch};

/// A vocabulary the size of the toy dataset's tokenizer (as the model crate's bench).
pub const VOCAB: usize = 512;

/// `batch` random images and captions of mixed lengths (6..=T tokens).
pub fn batch_of(batch: usize, config: &ModelConfig) -> Batch {
    let mut rng = StdRng::seed_from_u64(1);
    let side = config.image.image_size();
    let images = init::normal((batch, 3, side, side), 1.0, &mut rng);
    let t = config.max_len;
    let lengths: Vec<usize> = (0..batch).map(|b| 6 + b % (t - 5)).collect();
    let special = config.special;
    let tokens = Array2::from_shape_fn((batch, t), |(b, i)| match i {
        0 => special.bos,
        i if i + 1 == lengths[b] => special.eos,
        i if i >= lengths[b] => special.pad,
        i => ((b * 31 + i * 7) % 300) as u32,
    });
    Batch {
        images,
        tokens,
        lengths,
    }
}

/// The multimodal model's stages in the benches: what is frozen in each.
pub const VLM_STAGES: [(&str, model::Freeze); 3] = [
    // projector alignment: both ends frozen
    (
        "align",
        model::Freeze {
            vision_tower: true,
            projector: false,
            language_model: true,
        },
    ),
    // instruction tuning: the vision tower frozen
    (
        "instruct",
        model::Freeze {
            vision_tower: true,
            projector: false,
            language_model: false,
        },
    ),
    // everything trained
    (
        "all",
        model::Freeze {
            vision_tower: false,
            projector: false,
            language_model: false,
        },
    ),
];

/// `batch` conversations of 16 text tokens about random images:
/// `<|user|> <|image|>` and nine question tokens, `<|assistant|>`, three
/// answer tokens and `<|end|>` (the answer and `<|end|>` are the targets).
pub fn vlm_batch_of(batch: usize, config: &VlmConfig) -> ChatBatch {
    let mut rng = StdRng::seed_from_u64(2);
    let side = config.vision.image_size();
    let images = init::normal((batch, 3, side, side), 1.0, &mut rng);
    let t = config.tokens;
    let tokens = Array2::from_shape_fn((batch, 16), |(b, i)| match i {
        0 => t.user,
        1 => t.image,
        11 => t.assistant,
        15 => t.end,
        i => ((b * 31 + i * 7) % 300) as u32,
    });
    let weights = Array2::from_shape_fn((batch, 16), |(_, i)| if i >= 12 { 1.0 } else { 0.0 });
    ChatBatch {
        images,
        tokens,
        weights,
    }
}
