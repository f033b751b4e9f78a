//! Linear and Embedding, forward and backward, at the tiny training config
//! (B=64, T=16, C=64) and at a larger one (B=64, T=64, C=256).
//!
//! Each fast path is benched beside its plain reference: `linear/forward`
//! (the blocked product [`embedding::gemm`]) beside `linear/forward_naive`
//! (three loops), and `embedding/forward` (a row lookup) beside
//! `embedding/one_hot_forward` (the same result as a one-hot matrix times the
//! table). The matrix products themselves, `gemm/kernel`, run beside
//! ndarray's `general_mat_mul` (`gemm/ndarray`) on the shapes of the tiny
//! model's layers.
//!
//! Run with `cargo bench -p embedding`; throughput is in FLOP/s for Linear
//! (2 FLOPs per multiply-add) and in output elements/s for the lookups.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use embedding::{EmbeddingConfig, Layer, LinearConfig, Params, init};
use ndarray::linalg::general_mat_mul;
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

/// `(M, K, N, how)`: the products of one slice of 16 ViT images (16·65 =
/// 1040 tokens) through a width-64 MLP, and one attention head.
const GEMMS: [(usize, usize, usize, &str); 5] = [
    (1040, 64, 256, "x_Wt"),    // fc forward: x Wᵀ, W read transposed
    (1040, 256, 64, "dout_W"),  // fc backward: dx = dout W
    (256, 1040, 64, "doutT_x"), // fc backward: dW = doutᵀ x, A read transposed
    (65, 16, 65, "q_kT"),       // one head's scores: Q Kᵀ
    (65, 65, 16, "p_v"),        // one head's output: P V
];

fn gemm(c: &mut Criterion) {
    let mut rng = StdRng::seed_from_u64(2);
    for (m, k, n, how) in GEMMS {
        let id = format!("M{m}_K{k}_N{n}_{how}");
        // the operands in the layout the layer has them: transposed views where it reads them so
        let a_t = how.starts_with("doutT");
        let b_t = how.ends_with("Wt") || how.ends_with("kT");
        let a: Array2<f32> = if a_t {
            init::normal((k, m), 1.0, &mut rng)
        } else {
            init::normal((m, k), 1.0, &mut rng)
        };
        let b: Array2<f32> = if b_t {
            init::normal((n, k), 1.0, &mut rng)
        } else {
            init::normal((k, n), 1.0, &mut rng)
        };
        let (a, b) = (
            if a_t { a.reversed_axes() } else { a },
            if b_t { b.reversed_axes() } else { b },
        );
        let mut out = Array2::<f32>::zeros((m, n));
        let flops = (2 * m * k * n) as u64;
        for (name, ours) in [("gemm/ndarray", false), ("gemm/kernel", true)] {
            let mut group = c.benchmark_group(name);
            group.throughput(Throughput::Elements(flops));
            group.bench_function(BenchmarkId::from_parameter(&id), |bench| {
                bench.iter(|| {
                    if ours {
                        embedding::gemm(1.0, black_box(&a), black_box(&b), 0.0, &mut out)
                    } else {
                        general_mat_mul(1.0, black_box(&a), black_box(&b), 0.0, &mut out)
                    }
                })
            });
            group.finish();
        }
    }
}

criterion_group!(benches, linear, embedding, gemm);
criterion_main!(benches);
