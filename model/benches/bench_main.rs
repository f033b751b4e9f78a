//! The whole model at the tiny config, batch 64: forward, backward, and one
//! forward + backward (the model's part of a training step), with the ViT
//! and with the CNN image tower.
//!
//! Run with `cargo bench -p model`; throughput is in images (pairs) per
//! second. The `train` crate's whole step adds the losses and the optimiser
//! to `model/forward_backward`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use embedding::{Params, init};
use model::{ImageConfig, Model, ModelConfig, ModelOutput, ModelOutputGrads};
use ndarray::{Array2, Array4};
use rand::SeedableRng;
use rand::rngs::StdRng;

/// A vocabulary the size of the toy dataset's tokenizer.
const VOCAB: usize = 512;

/// `cargo test --benches` runs every bench once, unoptimised, as a smoke
/// test; `cargo bench` passes `--bench`. Only the real run gets real sizes.
fn smoke_test() -> bool {
    !std::env::args().any(|a| a == "--bench")
}

/// A batch of `batch` random images and captions of mixed lengths.
fn batch_of(batch: usize, config: &ModelConfig) -> (Array4<f32>, Array2<u32>, Vec<usize>) {
    let mut rng = StdRng::seed_from_u64(1);
    let side = config.image.image_size();
    let images = init::normal((batch, 3, side, side), 1.0, &mut rng);
    let t = config.max_len;
    let lengths: Vec<usize> = (0..batch).map(|b| 6 + b % (t - 5)).collect(); // 6..=T
    let special = config.special;
    let tokens = Array2::from_shape_fn((batch, t), |(b, i)| match i {
        0 => special.bos,
        i if i + 1 == lengths[b] => special.eos,
        i if i >= lengths[b] => special.pad,
        i => ((b * 31 + i * 7) % 300) as u32,
    });
    (images, tokens, lengths)
}

/// Output gradients of the right shapes (their values do not change the work).
fn output_grads(output: &ModelOutput) -> ModelOutputGrads {
    let mut rng = StdRng::seed_from_u64(2);
    ModelOutputGrads {
        dimage_embeds: init::normal(output.image_embeds.dim(), 1.0, &mut rng),
        dtext_embeds: init::normal(output.text_embeds.dim(), 1.0, &mut rng),
        dlogit_scale: 1.0,
        dlogits: init::normal(output.logits.dim(), 1e-3, &mut rng),
    }
}

fn model_benches(c: &mut Criterion) {
    let batch = if smoke_test() { 2 } else { 64 };
    for (tower, image) in [
        ("vit", ImageConfig::tiny_vit()),
        ("cnn", ImageConfig::tiny_cnn()),
    ] {
        let config = ModelConfig {
            image,
            ..ModelConfig::tiny(VOCAB)
        };
        let model: Model = config.init(&mut StdRng::seed_from_u64(0)).unwrap();
        let (images, tokens, lengths) = batch_of(batch, &config);
        let id = BenchmarkId::from_parameter(format!("{tower}_B{batch}"));
        let (output, cache) = model.forward(&images, &tokens, &lengths);
        let dout = output_grads(&output);
        let mut grads = model.zeros_like();

        let mut group = c.benchmark_group("model/forward");
        group
            .sample_size(20)
            .measurement_time(Duration::from_secs(6));
        group.throughput(Throughput::Elements(batch as u64));
        group.bench_function(id.clone(), |b| {
            b.iter(|| model.forward(black_box(&images), black_box(&tokens), &lengths))
        });
        group.finish();

        let mut group = c.benchmark_group("model/backward");
        group
            .sample_size(20)
            .measurement_time(Duration::from_secs(6));
        group.throughput(Throughput::Elements(batch as u64));
        // gradients accumulate; the optimiser would zero them, which costs
        // nothing next to the pass itself
        group.bench_function(id.clone(), |b| {
            b.iter(|| model.backward(black_box(&dout), &cache, &mut grads))
        });
        group.finish();

        let mut group = c.benchmark_group("model/forward_backward");
        group
            .sample_size(20)
            .measurement_time(Duration::from_secs(8));
        group.throughput(Throughput::Elements(batch as u64));
        group.bench_function(id, |b| {
            b.iter(|| {
                let (_, cache) = model.forward(black_box(&images), &tokens, &lengths);
                grads.zero();
                model.backward(&dout, &cache, &mut grads); // same shapes as this pass's outputs
            })
        });
        group.finish();
    }
}

criterion_group!(benches, model_benches);
criterion_main!(benches);
