//! Caption generation latency, with and without the KV cache, at the tiny
//! config (random weights: the cost of a step does not depend on them).
//!
//! Each measurement generates `L` tokens greedily for one image, the
//! end-of-caption token disabled so every run has exactly `L` steps:
//!
//! - `generation/cached`: [`Decoder::start`] (the image's cross-attention
//!   keys and values, once) then `L` one-token steps;
//! - `generation/uncached`: `L` full decoder passes over the growing prefix.
//!
//! Throughput is in tokens, so criterion's elements/s is tokens per second
//! and the time per token is the mean time divided by `L`. Run with
//! `cargo bench -p model --bench generation`, then
//! `python3 tools/bench_report.py --out book/src/generated/model/generation_bench.md
//! generation/uncached:generation/cached`.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use model::{CachedDecoder, GenerationConfig, ModelConfig, UncachedDecoder, greedy};
use ndarray::Array4;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const VOCAB: usize = 512;
/// Caption lengths: the cached cost grows linearly in `L`, the uncached
/// one quadratically.
const LENGTHS: [usize; 3] = [4, 8, 15];

fn generation(c: &mut Criterion) {
    let config = ModelConfig::tiny(VOCAB);
    let mut rng = StdRng::seed_from_u64(0);
    let model = config.init(&mut rng).expect("the tiny config is valid");
    let image = Array4::from_shape_fn((1, 3, 32, 32), |_| rng.random_range(-1.0f32..1.0));
    let (image_tokens, _) = model.encode_images(&image); // [1, N_img, C_img]

    for len in LENGTHS {
        let gen_config = GenerationConfig {
            bos: config.special.bos,
            eos: u32::MAX, // never produced: always `len` steps
            max_new_tokens: len,
        };
        let id = BenchmarkId::from_parameter(format!("tiny_L{len}"));

        let mut group = c.benchmark_group("generation/cached");
        group.throughput(Throughput::Elements(len as u64));
        let cached = CachedDecoder {
            decoder: &model.decoder,
        };
        group.bench_function(id.clone(), |b| {
            b.iter(|| {
                let state = model.decoder.start(black_box(&image_tokens));
                greedy(&cached, state, &gen_config)
            })
        });
        group.finish();

        let mut group = c.benchmark_group("generation/uncached");
        group.throughput(Throughput::Elements(len as u64));
        let uncached = UncachedDecoder {
            decoder: &model.decoder,
            image_tokens: image_tokens.view(),
        };
        group.bench_function(id, |b| {
            b.iter(|| greedy(black_box(&uncached), Vec::new(), &gen_config))
        });
        group.finish();
    }
}

criterion_group!(benches, generation);
criterion_main!(benches);
