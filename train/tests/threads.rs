//! The same seed gives the same run bit for bit whatever the thread count:
//! three training steps inside rayon pools of 1, 2 and 3 threads end with
//! identical losses and weights (every sum over the batch runs in a
//! fixed order, see `model::batch_slices`).

use embedding::{Params, init};
use model::{Model, ModelConfig};
use ndarray::Array2;
use rand::SeedableRng;
use rand::rngs::StdRng;
use train::{AdamW, AdamWState, Batch, LossWeights, Schedule, train_step};

const VOCAB: usize = 12; // bos 9, eos 10, pad 11

/// Three steps on a batch of 7 (four uneven slices); the weights' bits and the loss of each step.
fn three_steps(config: &ModelConfig, threads: usize) -> (Vec<u32>, Vec<f32>) {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    pool.install(|| {
        let mut model: Model = config.init(&mut StdRng::seed_from_u64(0)).unwrap();
        let lengths: Vec<usize> = (0..7).map(|b| 2 + b % 5).collect();
        let batch = Batch {
            images: init::normal((7, 3, 8, 8), 1.0, &mut StdRng::seed_from_u64(1)),
            tokens: Array2::from_shape_fn((7, 6), |(b, t)| match t {
                0 => 9,
                t if t + 1 == lengths[b] => 10,
                t if t >= lengths[b] => 11,
                t => ((b * 3 + t) % 9) as u32,
            }),
            lengths,
        };
        let schedule = Schedule {
            warmup: 1,
            total: 10,
            peak_lr: 1e-2,
            min_lr: 1e-3,
        };
        let mut grads = model.zeros_like();
        let mut opt = AdamWState::new(AdamW::default(), &model);
        let losses = (0..3)
            .map(|step| {
                let stats = train_step(
                    &mut model,
                    &mut grads,
                    &mut opt,
                    &batch,
                    LossWeights::default(),
                    step,
                    &schedule,
                    Some(1.0),
                )
                .unwrap();
                stats.loss
            })
            .collect();
        let bits = model
            .params()
            .iter()
            .flat_map(|(_, t)| t.iter().map(|x| x.to_bits()).collect::<Vec<_>>())
            .collect();
        (bits, losses)
    })
}

#[test]
fn a_step_gives_the_same_weights_on_one_thread_or_several() {
    let mut cnn = ModelConfig::micro(VOCAB);
    cnn.image = ModelConfig::micro_cnn();
    for config in [ModelConfig::micro(VOCAB), cnn] {
        let (weights, losses) = three_steps(&config, 1);
        for threads in [2, 3] {
            let (other_weights, other_losses) = three_steps(&config, threads);
            assert_eq!(other_losses, losses, "{threads} threads");
            assert!(
                other_weights == weights,
                "{threads} threads: the weights differ"
            );
        }
    }
}
