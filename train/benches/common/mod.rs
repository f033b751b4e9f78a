//! What both training-step benches share: the vocabulary size and the batch.

use embedding::init;
use model::ModelConfig;
use ndarray::Array2;
use rand::SeedableRng;
use rand::rngs::StdRng;
use train::Batch;

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
