//! Convolution (direct loops against im2col + GEMM), patch embedding, the
//! CNN encoder and the ViT encoder, forward and backward; and the Fourier
//! transform of one audio frame, written out against the FFT.
//!
//! Sizes: the tiny training config (B=64, 32×32 images, the CNN's 3→32 and
//! 32→64 convolutions) and one larger layer (B=4, 64×64, 64→128: four times
//! the pixels and channels of the second, the same work per batch).
//! Run with `cargo bench -p vision`; throughput is in FLOP/s (2 FLOPs per
//! multiply-add of the convolution itself, padding included, so both
//! versions are credited with the same work).

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use embedding::{Params, init};
use ndarray::{Array2, Array3, Array4};
use rand::SeedableRng;
use rand::rngs::StdRng;
use vision::{CnnConfig, Conv2dConfig, PatchEmbedConfig, VitConfig};

/// `(batch, side, c_in, c_out)` of a 3×3, stride 1, padding 1 convolution.
const CONV_SIZES: [(usize, usize, usize, usize); 3] =
    [(64, 32, 3, 32), (64, 32, 32, 64), (4, 64, 64, 128)];

/// `cargo test --benches` runs every bench once, unoptimised, as a smoke
/// test; `cargo bench` passes `--bench`. Only the real run gets real sizes.
fn smoke_test() -> bool {
    !std::env::args().any(|a| a == "--bench")
}

/// The batch size: `full` when benchmarking, 1 in the smoke test.
fn batch_size(full: usize) -> usize {
    if smoke_test() { 1 } else { full }
}

fn conv(c: &mut Criterion) {
    let mut rng = StdRng::seed_from_u64(0);
    for (batch, side, c_in, c_out) in CONV_SIZES {
        let batch = batch_size(batch);
        // the direct loops crawl without optimisation: smoke-test on 8×8 maps
        let side = if smoke_test() { 8 } else { side };
        let id = format!("B{batch}_{side}x{side}_{c_in}to{c_out}");
        let layer = Conv2dConfig {
            c_in,
            c_out,
            kernel: 3,
            stride: 1,
            padding: 1,
            bias: true,
        }
        .init(&mut rng);
        let x: Array4<f32> = init::normal((batch, c_in, side, side), 1.0, &mut rng);
        let flops = (2 * batch * c_out * side * side * c_in * 9) as u64;
        let (out, cache) = layer.forward(&x);
        let dout = Array4::<f32>::ones(out.dim());
        let mut grads = layer.zeros_like();

        for (name, direct) in [("direct", true), ("im2col", false)] {
            let mut group = c.benchmark_group(format!("conv2d/{name}_forward"));
            // the direct loops take seconds at the larger sizes: few, long samples
            group
                .sample_size(10)
                .measurement_time(Duration::from_secs(4));
            group.throughput(Throughput::Elements(flops));
            group.bench_function(BenchmarkId::from_parameter(&id), |b| {
                if direct {
                    b.iter(|| layer.forward_direct(black_box(&x)))
                } else {
                    b.iter(|| layer.forward(black_box(&x)))
                }
            });
            group.finish();

            let mut group = c.benchmark_group(format!("conv2d/{name}_backward"));
            group
                .sample_size(10)
                .measurement_time(Duration::from_secs(4));
            group.throughput(Throughput::Elements(2 * flops)); // dW and dx: twice the forward work
            group.bench_function(BenchmarkId::from_parameter(&id), |b| {
                if direct {
                    b.iter(|| layer.backward_direct(black_box(&dout), &cache, &mut grads))
                } else {
                    b.iter(|| layer.backward(black_box(&dout), &cache, &mut grads))
                }
            });
            group.finish();
        }
    }
}

fn patch_embed(c: &mut Criterion) {
    let mut rng = StdRng::seed_from_u64(1);
    let (batch, side, patch, dim) = (batch_size(64), 32, 8, 64);
    let id = format!("B{batch}_{side}x{side}_P{patch}_C{dim}");
    let layer = PatchEmbedConfig {
        in_channels: 3,
        dim,
        patch,
    }
    .init(&mut rng);
    let images: Array4<f32> = init::normal((batch, 3, side, side), 1.0, &mut rng);
    let flops = (2 * batch * (side / patch) * (side / patch) * 3 * patch * patch * dim) as u64;

    let mut group = c.benchmark_group("patch_embed/forward");
    group.throughput(Throughput::Elements(flops));
    group.bench_function(BenchmarkId::new("linear", &id), |b| {
        b.iter(|| layer.forward(black_box(&images)))
    });
    group.bench_function(BenchmarkId::new("conv", &id), |b| {
        b.iter(|| layer.forward_conv(black_box(&images)))
    });
    group.finish();

    let (out, cache) = layer.forward(&images);
    let (_, conv_cache) = layer.forward_conv(&images);
    let dout = Array3::<f32>::ones(out.dim());
    let mut grads = layer.zeros_like();
    let mut group = c.benchmark_group("patch_embed/backward");
    group.throughput(Throughput::Elements(2 * flops));
    group.bench_function(BenchmarkId::new("linear", &id), |b| {
        b.iter(|| layer.backward(black_box(&dout), &cache, &mut grads))
    });
    group.bench_function(BenchmarkId::new("conv", &id), |b| {
        b.iter(|| layer.backward_conv(black_box(&dout), &conv_cache, &mut grads))
    });
    group.finish();
}

fn cnn(c: &mut Criterion) {
    let mut rng = StdRng::seed_from_u64(2);
    let config = CnnConfig::default(); // 3 → 32 → 64, 3×3, 2×2 pooling
    let encoder = config.init(&mut rng);
    let batch = batch_size(64);
    let id = format!("B{batch}_32x32_C32_C64");
    let images: Array4<f32> = init::normal((batch, 3, 32, 32), 1.0, &mut rng);
    // the two convolutions: 3→32 at 32×32, 32→64 at 16×16
    let flops = (2 * batch * (32 * 32 * 32 * 3 * 9 + 64 * 16 * 16 * 32 * 9)) as u64;

    let mut group = c.benchmark_group("cnn/forward");
    group.throughput(Throughput::Elements(flops));
    group.bench_function(BenchmarkId::from_parameter(&id), |b| {
        b.iter(|| encoder.forward(black_box(&images)))
    });
    group.finish();

    let (out, cache) = encoder.forward(&images);
    let dgrid = Array3::<f32>::ones(out.grid.dim());
    let dpooled = Array2::<f32>::ones(out.pooled.dim());
    let mut grads = encoder.zeros_like();
    let mut group = c.benchmark_group("cnn/backward");
    group.throughput(Throughput::Elements(2 * flops));
    group.bench_function(BenchmarkId::from_parameter(&id), |b| {
        b.iter(|| encoder.backward(black_box(&dgrid), &dpooled, &cache, &mut grads))
    });
    group.finish();
}

fn vit(c: &mut Criterion) {
    let mut rng = StdRng::seed_from_u64(3);
    let config = VitConfig::default(); // 32×32, 8×8 patches, 2 blocks of width 64
    let encoder = config.init(&mut rng);
    let batch = batch_size(64);
    let id = format!(
        "B{batch}_32x32_P{}_C{}_L{}",
        config.patch, config.block.width, config.depth
    );
    let images: Array4<f32> = init::normal((batch, 3, 32, 32), 1.0, &mut rng);
    // Throughput in images: the work is spread over many small kernels
    let mut group = c.benchmark_group("vit/forward");
    group.throughput(Throughput::Elements(batch as u64));
    group.bench_function(BenchmarkId::from_parameter(&id), |b| {
        b.iter(|| encoder.forward(black_box(&images)))
    });
    group.finish();

    let (out, cache) = encoder.forward(&images);
    let dtokens = Array3::<f32>::ones(out.tokens.dim());
    let dcls = Array2::<f32>::ones(out.cls.dim());
    let mut grads = encoder.zeros_like();
    let mut group = c.benchmark_group("vit/backward");
    group.throughput(Throughput::Elements(batch as u64));
    group.bench_function(BenchmarkId::from_parameter(&id), |b| {
        b.iter(|| encoder.backward(black_box(&dtokens), &dcls, &cache, &mut grads))
    });
    group.finish();
}

/// The Fourier transform of one frame, written out (`N²`) against the FFT
/// (`N log N`); throughput in samples.
fn audio(c: &mut Criterion) {
    let mut rng = StdRng::seed_from_u64(4);
    let sizes: &[usize] = if smoke_test() { &[16] } else { &[256, 1024] };
    for &n in sizes {
        let x: Array2<f32> = init::normal((1, n), 1.0, &mut rng);
        let x = x.into_raw_vec_and_offset().0;
        for (name, transform) in [
            (
                "audio/dft",
                vision::audio::dft as fn(&[f32]) -> Vec<vision::audio::Complex>,
            ),
            ("audio/fft", vision::audio::fft),
        ] {
            let mut group = c.benchmark_group(name);
            group.throughput(Throughput::Elements(n as u64));
            group.bench_function(BenchmarkId::from_parameter(format!("N{n}")), |b| {
                b.iter(|| transform(black_box(&x)))
            });
            group.finish();
        }
    }
}

criterion_group!(benches, conv, patch_embed, cnn, vit, audio);
criterion_main!(benches);
