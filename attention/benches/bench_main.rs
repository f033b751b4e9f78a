//! Attention kernels and the transformer block.
//!
//! - `attention/plain_forward` vs `attention/tiled_forward`: one sequence of
//!   `T = 64, 256, 1024` tokens, 4 heads of `D = 64`, without a mask and with
//!   the causal one; throughput in FLOP/s (`4·B·H·T²·D` for `QKᵀ` and `PV`,
//!   halved for the causal mask, whose skipped half the tiled kernel never does).
//! - `attention/plain_backward`: the plain kernel's backward at the same sizes.
//! - `block/forward`, `block/backward`: the tiny training config,
//!   `B = 64, C = 64` at `T = 16` (captions) and `T = 65` (64 patches + CLS).
//!
//! Run with `cargo bench -p attention`.

use std::hint::black_box;

use attention::{
    BlockConfig, Mask, Tile, attention_backward, attention_forward, tiled_attention_forward,
};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use embedding::{Layer, Params, init};
use ndarray::{Array3, Array4};
use rand::SeedableRng;
use rand::rngs::StdRng;

/// `(batch, seq)` at `C = 64`: text captions (T = 16) and ViT patches + CLS (T = 65).
const BLOCK_SIZES: [(usize, usize); 2] = [(64, 16), (64, 65)];

fn block(c: &mut Criterion) {
    let mut rng = StdRng::seed_from_u64(0);
    let config = BlockConfig::default();
    let block = config.init(&mut rng);
    for (batch, seq) in BLOCK_SIZES {
        let width = config.width;
        let id = format!("B{batch}_T{seq}_C{width}");
        let x: Array3<f32> = init::normal((batch, seq, width), 1.0, &mut rng);
        let tokens = (batch * seq) as u64;

        let mut group = c.benchmark_group("block/forward");
        group.throughput(Throughput::Elements(tokens));
        group.bench_function(BenchmarkId::from_parameter(&id), |b| {
            b.iter(|| block.forward(black_box(&x)))
        });
        group.finish();

        let (out, cache) = block.forward(&x);
        let dout = Array3::<f32>::ones(out.dim());
        let mut grads = block.zeros_like();
        let mut group = c.benchmark_group("block/backward");
        group.throughput(Throughput::Elements(tokens));
        group.bench_function(BenchmarkId::from_parameter(&id), |b| {
            b.iter(|| block.backward(black_box(&dout), &cache, &mut grads))
        });
        group.finish();
    }
}

/// `(batch, n_head, head_dim)` of the kernel benches; `T` varies.
const HEADS: (usize, usize, usize) = (1, 4, 64);
const KERNEL_SEQS: [usize; 3] = [64, 256, 1024];

fn kernels(c: &mut Criterion) {
    let mut rng = StdRng::seed_from_u64(1);
    let (batch, n_head, head_dim) = HEADS;
    for seq in KERNEL_SEQS {
        let shape = (batch, n_head, seq, head_dim);
        let q: Array4<f32> = init::normal(shape, 1.0, &mut rng);
        let k: Array4<f32> = init::normal(shape, 1.0, &mut rng);
        let v: Array4<f32> = init::normal(shape, 1.0, &mut rng);
        for (mask, suffix) in [(Mask::None, ""), (Mask::Causal, "_causal")] {
            let id = format!("B{batch}_H{n_head}_T{seq}_D{head_dim}{suffix}");
            let mut flops = 4 * batch * n_head * seq * seq * head_dim;
            if mask == Mask::Causal {
                flops /= 2;
            }
            let mut group = c.benchmark_group("attention/plain_forward");
            group.throughput(Throughput::Elements(flops as u64));
            group.bench_function(BenchmarkId::from_parameter(&id), |b| {
                b.iter(|| attention_forward(black_box(&q), &k, &v, &mask))
            });
            group.finish();

            let mut group = c.benchmark_group("attention/tiled_forward");
            group.throughput(Throughput::Elements(flops as u64));
            group.bench_function(BenchmarkId::from_parameter(&id), |b| {
                b.iter(|| tiled_attention_forward(black_box(&q), &k, &v, &mask, Tile::default()))
            });
            group.finish();

            let (out, probs) = attention_forward(&q, &k, &v, &mask);
            let dout = Array4::<f32>::ones(out.dim());
            let mut group = c.benchmark_group("attention/plain_backward");
            group.throughput(Throughput::Elements(2 * flops as u64)); // four products instead of two
            group.bench_function(BenchmarkId::from_parameter(&id), |b| {
                b.iter(|| attention_backward(black_box(&dout), &q, &k, &v, &probs))
            });
            group.finish();
        }
    }
}

criterion_group!(benches, kernels, block);
criterion_main!(benches);
