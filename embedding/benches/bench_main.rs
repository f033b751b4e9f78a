//! Linear and Embedding, forward and backward, at the tiny training config
//! (B=64, T=16, C=64) and at a larger one (B=64, T=64, C=256).
//!
//! Each fast path is benched beside its plain reference: `linear/forward`
//! (ndarray's blocked `dot`) beside `linear/forward_naive` (three loops), and
//! `embedding/forward` (a row lookup) beside `embedding/one_hot_forward` (the
//! same result as a one-hot matrix times the table).
//!
//! Run with `cargo bench -p embedding`; throughput is in FLOP/s for Linear
//! (2 FLOPs per multiply-add) and in output elements/s for the lookups.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use embedding::{EmbeddingConfig, Layer, LinearConfig, Params, init};
use ndarray::{Array2, Array3};
use rand::SeedableRng;
use rand::rngs::StdRng;

/// `(batch, seq, channels)`; Linear maps `C → 4C` (a transformer MLP's first layer).
const SIZES: [(usize, usize, usize); 2] = [(64, 16, 64), (64, 64, 256)];
const VOCAB: usize = 512;

fn linear(c: &mut Criterion) {
    let mut rng = StdRng::seed_from_u64(0);
    for (batch, seq, dim) in SIZES {
        let id = format!("B{batch}_T{seq}_C{dim}");
        let layer = LinearConfig {
            c_in: dim,
            c_out: 4 * dim,
            bias: true,
        }
        .init(&mut rng);
        let x: Array3<f32> = init::normal((batch, seq, dim), 1.0, &mut rng);
        let flops = 2 * batch * seq * dim * 4 * dim;

        let mut group = c.benchmark_group("linear/forward");
        group.throughput(Throughput::Elements(flops as u64));
        group.bench_function(BenchmarkId::from_parameter(&id), |b| {
            b.iter(|| layer.forward(black_box(&x)))
        });
        group.finish();

        let mut group = c.benchmark_group("linear/forward_naive");
        group.sample_size(10); // a second per call at the larger size
        group.throughput(Throughput::Elements(flops as u64));
        group.bench_function(BenchmarkId::from_parameter(&id), |b| {
            b.iter(|| layer.forward_naive(black_box(&x)))
        });
        group.finish();

        let (out, cache) = layer.forward(&x);
        let dout = Array3::<f32>::ones(out.dim());
        let mut grads = layer.zeros_like();
        let mut group = c.benchmark_group("linear/backward");
        group.throughput(Throughput::Elements(2 * flops as u64)); // dW and dx: two products
        group.bench_function(BenchmarkId::from_parameter(&id), |b| {
            b.iter(|| layer.backward(black_box(&dout), &cache, &mut grads))
        });
        group.finish();
    }
}

fn embedding(c: &mut Criterion) {
    let mut rng = StdRng::seed_from_u64(1);
    for (batch, seq, dim) in SIZES {
        let id = format!("B{batch}_T{seq}_C{dim}_V{VOCAB}");
        let table = EmbeddingConfig {
            vocab: VOCAB,
            dim,
            std: 0.02,
        }
        .init(&mut rng);
        let ids = Array2::from_shape_fn((batch, seq), |(b, t)| ((b * 31 + t * 7) % VOCAB) as u32);
        let elements = (batch * seq * dim) as u64;

        let mut group = c.benchmark_group("embedding/forward");
        group.throughput(Throughput::Elements(elements));
        group.bench_function(BenchmarkId::from_parameter(&id), |b| {
            b.iter(|| table.forward(black_box(&ids)))
        });
        group.finish();

        // the same lookup as a one-hot matrix times the table: [B*T, V] x [V, C]
        let one_hot = Array2::from_shape_fn((batch * seq, VOCAB), |(row, v)| {
            (ids.as_slice().unwrap()[row] as usize == v) as u8 as f32
        });
        let mut group = c.benchmark_group("embedding/one_hot_forward");
        group.throughput(Throughput::Elements(elements));
        group.bench_function(BenchmarkId::from_parameter(&id), |b| {
            b.iter(|| black_box(&one_hot).dot(&table.weight))
        });
        group.finish();

        let (out, cache) = table.forward(&ids);
        let dout = Array3::<f32>::ones(out.dim());
        let mut grads = table.zeros_like();
        let mut group = c.benchmark_group("embedding/backward");
        group.throughput(Throughput::Elements(elements));
        group.bench_function(BenchmarkId::from_parameter(&id), |b| {
            b.iter(|| table.backward(black_box(&dout), &cache, &mut grads))
        });
        group.finish();
    }
}

criterion_group!(benches, linear, embedding);
criterion_main!(benches);
