//! The whole training step at the tiny config, batch 64: forward, both
//! losses, backward, clipping, AdamW and the clamp, with the ViT and with
//! the CNN image tower; and the step's own parts (the losses, the
//! optimiser), to see where the time goes.
//!
//! Run with `cargo bench -p train`; throughput is in images (pairs) per
//! second. `tools/pytorch_step.py` times PyTorch eager's step for the same
//! model.

mod common;

use std::hint::black_box;
use std::time::Duration;

use common::{VLM_STAGES, VOCAB, batch_of, vlm_batch_of};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use embedding::Params;
use model::{ImageConfig, Model, ModelConfig, VlmConfig};
use rand::SeedableRng;
use rand::rngs::StdRng;
use train::{
    AdamW, AdamWState, LossWeights, Schedule, caption_loss, contrastive_loss, train_step,
    vlm_train_step,
};

/// `cargo test --benches` runs every bench once, unoptimised, as a smoke
/// test; `cargo bench` passes `--bench`. Only the real run gets real sizes.
fn smoke_test() -> bool {
    !std::env::args().any(|a| a == "--bench")
}

const SCHEDULE: Schedule = Schedule {
    warmup: 100,
    total: 1000,
    peak_lr: 1e-3,
    min_lr: 1e-5,
};

fn step_benches(c: &mut Criterion) {
    train::memory::keep_freed_memory(); // as the train program does
    let batch_size = if smoke_test() { 2 } else { 64 };
    for (tower, image) in [
        ("vit", ImageConfig::tiny_vit()),
        ("cnn", ImageConfig::tiny_cnn()),
    ] {
        let config = ModelConfig {
            image,
            ..ModelConfig::tiny(VOCAB)
        };
        let mut model: Model = config.init(&mut StdRng::seed_from_u64(0)).unwrap();
        let batch = batch_of(batch_size, &config);
        let id = BenchmarkId::from_parameter(format!("{tower}_B{batch_size}"));
        let mut grads = model.zeros_like();
        let mut opt = AdamWState::new(AdamW::default(), &model);

        let mut group = c.benchmark_group("train/step");
        group
            .sample_size(20)
            .measurement_time(Duration::from_secs(8));
        group.throughput(Throughput::Elements(batch_size as u64));
        let mut step = 0;
        group.bench_function(id.clone(), |b| {
            b.iter(|| {
                let stats = train_step(
                    &mut model,
                    &mut grads,
                    &mut opt,
                    black_box(&batch),
                    LossWeights::default(),
                    step,
                    &SCHEDULE,
                    Some(1.0),
                )
                .unwrap();
                step += 1;
                stats
            })
        });
        group.finish();

        // the step's parts that live in this crate
        let (out, _) = model.forward(&batch.images, &batch.tokens, &batch.lengths);
        let mut group = c.benchmark_group("train/losses");
        group.throughput(Throughput::Elements(batch_size as u64));
        group.bench_function(id.clone(), |b| {
            b.iter(|| {
                let con = contrastive_loss(&out.image_embeds, &out.text_embeds, out.logit_scale);
                let cap = caption_loss(&out.logits, &batch.tokens, &batch.lengths);
                (con.loss, cap.loss)
            })
        });
        group.finish();

        let mut group = c.benchmark_group("train/adamw");
        group.throughput(Throughput::Elements(model.num_params() as u64));
        group.bench_function(id, |b| b.iter(|| opt.step(&mut model, &grads, 1e-4)));
        group.finish();
    }
}

/// The multimodal model's step at `VlmConfig::tiny` (a CNN tower's 8×8
/// grid averaged to 16 image tokens, 16 text tokens), batch 64, in each
/// stage's freezing: `align` (projector only), `instruct` (projector and
/// language model), `all`.
fn vlm_step_benches(c: &mut Criterion) {
    train::memory::keep_freed_memory();
    let batch_size = if smoke_test() { 2 } else { 64 };
    let config = VlmConfig::tiny(VOCAB, 64);
    let batch = vlm_batch_of(batch_size, &config);
    let mut group = c.benchmark_group("train/vlm_step");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(8));
    group.throughput(Throughput::Elements(batch_size as u64));
    for (stage, freeze) in VLM_STAGES {
        let mut vlm = config.init(&mut StdRng::seed_from_u64(0)).unwrap();
        let mut grads = vlm.zeros_like();
        let mut opt = AdamWState::new(AdamW::default(), &vlm);
        let mut step = 0;
        let id = BenchmarkId::from_parameter(format!("{stage}_B{batch_size}"));
        group.bench_function(id, |b| {
            b.iter(|| {
                let stats = vlm_train_step(
                    &mut vlm,
                    &mut grads,
                    &mut opt,
                    black_box(&batch),
                    freeze,
                    step,
                    &SCHEDULE,
                    Some(1.0),
                )
                .unwrap();
                step += 1;
                stats
            })
        });
    }
    group.finish();
}

criterion_group!(benches, step_benches, vlm_step_benches);
criterion_main!(benches);
