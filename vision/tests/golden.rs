//! Forward outputs and gradients against PyTorch (`tools/golden/vision.py`).
//!
//! The fixtures hold f32 inputs and references computed from them in f64, so
//! the tolerances below are the f32 error of our arithmetic, not PyTorch's.
//! Both convolution implementations (direct loops and im2col) are checked.

use embedding::Params;
use embedding::testing::{Golden, assert_allclose};
use ndarray::{Ix1, Ix3, Ix4};
use vision::{AvgPool2d, Conv2d, MaxPool2d, PatchEmbed};

fn fixture(name: &str) -> Golden {
    let path = format!("{}/tests/golden/{name}.txt", env!("CARGO_MANIFEST_DIR"));
    Golden::load(path).unwrap_or_else(|e| panic!("{e}"))
}

// a convolution sums C_in·k·k products of O(1) values in f32
const RTOL: f32 = 1e-5;
const ATOL: f32 = 1e-5;

fn conv_matches(name: &str, stride: usize, padding: usize) {
    let g = fixture(name);
    let layer = Conv2d::new(
        g.array::<Ix4>("weight"),
        Some(g.array::<Ix1>("bias")),
        stride,
        padding,
    );
    let x = g.array::<Ix4>("x");
    let dout = g.array::<Ix4>("dout");
    for direct in [false, true] {
        let label = |what: &str| {
            format!(
                "{name} ({}) {what}",
                if direct { "direct" } else { "im2col" }
            )
        };
        let (out, cache) = if direct {
            layer.forward_direct(&x)
        } else {
            layer.forward(&x)
        };
        assert_allclose(&label("out"), &out, g.get("out"), RTOL, ATOL);
        let mut grads = layer.zeros_like();
        let dx = if direct {
            layer.backward_direct(&dout, &cache, &mut grads)
        } else {
            layer.backward(&dout, &cache, &mut grads)
        };
        assert_allclose(&label("dx"), &dx, g.get("dx"), RTOL, ATOL);
        assert_allclose(
            &label("dweight"),
            &grads.weight,
            g.get("dweight"),
            RTOL,
            ATOL,
        );
        assert_allclose(
            &label("dbias"),
            grads.bias.as_ref().unwrap(),
            g.get("dbias"),
            RTOL,
            ATOL,
        );
    }
}

#[test]
fn conv2d_stride2_pad1_matches_pytorch() {
    conv_matches("conv2d_stride2_pad1", 2, 1);
}

#[test]
fn conv2d_stride1_pad0_matches_pytorch() {
    conv_matches("conv2d_stride1_pad0", 1, 0);
}

#[test]
fn maxpool_matches_pytorch() {
    for (name, pool) in [
        ("maxpool2d", MaxPool2d::new(2)),
        (
            "maxpool2d_overlapping",
            MaxPool2d {
                kernel: 3,
                stride: 2,
            },
        ),
    ] {
        let g = fixture(name);
        let (out, cache) = pool.forward(&g.array::<Ix4>("x"));
        assert_allclose(name, &out, g.get("out"), 0.0, 0.0); // a max is exact
        let dx = pool.backward(&g.array::<Ix4>("dout"), &cache);
        assert_allclose(name, &dx, g.get("dx"), RTOL, ATOL); // overlapping windows add
    }
}

#[test]
fn avgpool_matches_pytorch() {
    let g = fixture("avgpool2d");
    let pool = AvgPool2d::new(2);
    let (out, cache) = pool.forward(&g.array::<Ix4>("x"));
    assert_allclose("out", &out, g.get("out"), RTOL, 1e-6);
    let dx = pool.backward(&g.array::<Ix4>("dout"), &cache);
    assert_allclose("dx", &dx, g.get("dx"), RTOL, 1e-6);
}

#[test]
fn patch_embedding_matches_pytorch() {
    let g = fixture("patch_embed");
    let weight = g.array::<Ix4>("weight");
    let patch = weight.dim().2;
    let layer = PatchEmbed::new(Conv2d::new(weight, Some(g.array::<Ix1>("bias")), patch, 0));
    let x = g.array::<Ix4>("x");
    let dout = g.array::<Ix3>("dout");

    let (out, cache) = layer.forward(&x);
    assert_allclose("out (linear)", &out, g.get("out"), RTOL, ATOL);
    let mut grads = layer.zeros_like();
    let dx = layer.backward(&dout, &cache, &mut grads);
    assert_allclose("dx (linear)", &dx, g.get("dx"), RTOL, ATOL);
    assert_allclose(
        "dweight (linear)",
        &grads.proj.weight,
        g.get("dweight"),
        RTOL,
        ATOL,
    );
    assert_allclose(
        "dbias (linear)",
        grads.proj.bias.as_ref().unwrap(),
        g.get("dbias"),
        RTOL,
        ATOL,
    );

    let (out, cache) = layer.forward_conv(&x);
    assert_allclose("out (conv)", &out, g.get("out"), RTOL, ATOL);
    let mut grads = layer.zeros_like();
    let dx = layer.backward_conv(&dout, &cache, &mut grads);
    assert_allclose("dx (conv)", &dx, g.get("dx"), RTOL, ATOL);
    assert_allclose(
        "dweight (conv)",
        &grads.proj.weight,
        g.get("dweight"),
        RTOL,
        ATOL,
    );
    assert_allclose(
        "dbias (conv)",
        grads.proj.bias.as_ref().unwrap(),
        g.get("dbias"),
        RTOL,
        ATOL,
    );
}
