//! The transformer block at the tiny training config, forward and backward.
//!
//! Run with `cargo bench -p attention`.

use std::hint::black_box;

use attention::BlockConfig;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use embedding::{Layer, Params, init};
use ndarray::Array3;
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

criterion_group!(benches, block);
criterion_main!(benches);
