//! Caption generation latency, with and without the KV cache, at the tiny
//! config (random weights: the cost of a step does not depend on them).
//!
//! Each measurement generates `L` tokens greedily for one image, the
//! end-of-caption token disabled so every run has exactly `L` steps:
//!
//! - `generation/cached`: [`Decoder::start`] (the image's cross-attention
//!   keys and values, once) then `L` one-token steps;
//! - `generation/uncached`: `L` full decoder passes over the growing prefix;
//! - `generation/cached_batched`: `B` images at once ([`model::greedy_batched`]),
//!   throughput in tokens of all captions together.
//!
//! - `generation/vlm_cached`, `generation/vlm_uncached`: the multimodal LLM
//!   answering about one image whose 64 image tokens (the tiny CNN's 8×8
//!   grid, unpooled) and a 6-token question sit in the language model's
//!   context: with the cache, [`model::Vlm::prefill`] reads that prefix once
//!   and each token costs one position; without it, every token re-reads
//!   the image and everything after it.
//!
//! Throughput is in tokens, so criterion's elements/s is tokens per second
//! and the time per token is the mean time divided by `L`. Run with
//! `cargo bench -p model --bench generation`, then
//! `python3 tools/bench_report.py --out book/src/generated/model/generation_bench.md
//! generation/uncached:generation/cached`.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use model::{
    CachedDecoder, CachedVlm, GenerationConfig, ModelConfig, TokenPool, UncachedDecoder,
    UncachedVlm, VlmConfig, greedy, greedy_batched,
};
use ndarray::Array4;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const VOCAB: usize = 512;
/// `(max_len, L)`: caption lengths at the tiny config (captions up to 16
/// tokens, so at most 15 generated), and one longer run with the position
/// tables stretched to 64, where the uncached path's quadratic cost shows.
const RUNS: [(usize, usize); 4] = [(16, 4), (16, 8), (16, 15), (64, 60)];

fn generation(c: &mut Criterion) {
    for (max_len, len) in RUNS {
        let config = ModelConfig {
            max_len,
            ..ModelConfig::tiny(VOCAB)
        };
        let mut rng = StdRng::seed_from_u64(0);
        let model = config.init(&mut rng).expect("the tiny config is valid");
        let image = Array4::from_shape_fn((1, 3, 32, 32), |_| rng.random_range(-1.0f32..1.0));
        let (image_tokens, _) = model.encode_images(&image); // [1, N_img, C_img]
        let gen_config = GenerationConfig {
            bos: config.special.bos,
            eos: u32::MAX, // never produced: always `len` steps
            max_new_tokens: len,
        };
        let id = match max_len {
            16 => format!("tiny_L{len}"),
            _ => format!("tiny_maxlen{max_len}_L{len}"),
        };
        let id = BenchmarkId::from_parameter(id);

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

    // the cached path for a batch of images at once: per token, each matrix
    // product's fixed cost is shared by `B` rows
    let config = ModelConfig::tiny(VOCAB);
    let mut rng = StdRng::seed_from_u64(0);
    let model = config.init(&mut rng).expect("the tiny config is valid");
    for batch in [1, 16] {
        let images = Array4::from_shape_fn((batch, 3, 32, 32), |_| rng.random_range(-1.0f32..1.0));
        let (image_tokens, _) = model.encode_images(&images);
        let len = config.max_len - 1;
        let gen_config = GenerationConfig {
            bos: config.special.bos,
            eos: u32::MAX,
            max_new_tokens: len,
        };
        let mut group = c.benchmark_group("generation/cached_batched");
        group.throughput(Throughput::Elements((batch * len) as u64)); // tokens
        group.bench_function(
            BenchmarkId::from_parameter(format!("tiny_B{batch}_L{len}")),
            |b| b.iter(|| greedy_batched(&model.decoder, black_box(&image_tokens), &gen_config)),
        );
        group.finish();
    }
}

/// Answers of `L` tokens after a prefix of 64 image tokens and a question.
fn vlm_generation(c: &mut Criterion) {
    let mut config = VlmConfig::tiny(VOCAB, 96);
    config.projector.pool = TokenPool::None; // the whole 8×8 grid: 64 image tokens
    let mut rng = StdRng::seed_from_u64(0);
    let vlm = config.init(&mut rng).expect("the tiny config is valid");
    assert_eq!(vlm.num_image_tokens(), 64);
    let image = Array4::from_shape_fn((1, 3, 32, 32), |_| rng.random_range(-1.0f32..1.0));
    let t = config.tokens;
    let prompt = vec![t.user, t.image, 3, 4, 5, 6]; // <|user|> <|image|> and a question
    let prompt_row = ndarray::Array2::from_shape_vec((1, prompt.len()), prompt.clone()).unwrap();
    for len in [4, 16] {
        let gen_config = GenerationConfig {
            bos: t.assistant,
            eos: u32::MAX, // never produced: always `len` steps
            max_new_tokens: len,
        };
        let id = BenchmarkId::from_parameter(format!("tiny_image64_L{len}"));
        let mut group = c.benchmark_group("generation/vlm_cached");
        group.throughput(Throughput::Elements(len as u64));
        let cached = CachedVlm { vlm: &vlm };
        group.bench_function(id.clone(), |b| {
            b.iter(|| {
                let (state, _) = vlm.prefill(black_box(&image), &prompt_row);
                greedy(&cached, state, &gen_config)
            })
        });
        group.finish();

        let mut group = c.benchmark_group("generation/vlm_uncached");
        group.throughput(Throughput::Elements(len as u64));
        let uncached = UncachedVlm {
            vlm: &vlm,
            image: image.view(),
        };
        group.bench_function(id, |b| {
            b.iter(|| greedy(black_box(&uncached), prompt.clone(), &gen_config))
        });
        group.finish();
    }
}

criterion_group!(benches, generation, vlm_generation);
criterion_main!(benches);
