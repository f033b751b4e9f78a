//! Forward outputs and gradients against PyTorch (`tools/golden/embedding.py`).
//!
//! The fixtures hold f32 inputs and references computed from them in f64, so
//! the tolerances below are the f32 error of our arithmetic, not PyTorch's.

use embedding::testing::{Golden, assert_allclose};
use embedding::{Embedding, Layer, LearnedPositions, Linear, Params, sinusoidal_table};
use ndarray::{Ix1, Ix2, Ix3};

fn fixture(name: &str) -> Golden {
    let path = format!("{}/tests/golden/{name}.txt", env!("CARGO_MANIFEST_DIR"));
    Golden::load(path).unwrap_or_else(|e| panic!("{e}"))
}

const RTOL: f32 = 1e-5;
const ATOL: f32 = 1e-6;

#[test]
fn linear_matches_pytorch() {
    let g = fixture("linear");
    let layer = Linear::new(g.array::<Ix2>("weight"), Some(g.array::<Ix1>("bias")));
    let x = g.array::<Ix3>("x");
    let (out, cache) = layer.forward(&x);
    assert_allclose("out", &out, g.get("out"), RTOL, ATOL);

    let mut grads = layer.zeros_like();
    let dx = layer.backward(&g.array::<Ix3>("dout"), &cache, &mut grads);
    assert_allclose("dx", &dx, g.get("dx"), RTOL, ATOL);
    assert_allclose("dweight", &grads.weight, g.get("dweight"), RTOL, ATOL);
    assert_allclose(
        "dbias",
        grads.bias.as_ref().unwrap(),
        g.get("dbias"),
        RTOL,
        ATOL,
    );
}

#[test]
fn embedding_matches_pytorch() {
    let g = fixture("embedding");
    let table = Embedding::new(g.array::<Ix2>("weight"));
    let ids = g.ids::<Ix2>("ids");
    let (out, cache) = table.forward(&ids);
    assert_allclose("out", &out, g.get("out"), 0.0, 0.0); // a lookup is exact

    let mut grads = table.zeros_like();
    table.backward(&g.array::<Ix3>("dout"), &cache, &mut grads);
    assert_allclose("dweight", &grads.weight, g.get("dweight"), RTOL, ATOL);
}

#[test]
fn positions_match_pytorch() {
    let g = fixture("positions");
    let pos = LearnedPositions::new(g.array::<Ix2>("weight"));
    let (out, ()) = pos.forward(&g.array::<Ix3>("x"));
    assert_allclose("out", &out, g.get("out"), RTOL, ATOL);

    let mut grads = pos.zeros_like();
    let dx = pos.backward(&g.array::<Ix3>("dout"), &(), &mut grads);
    assert_allclose("dx", &dx, g.get("dx"), 0.0, 0.0);
    assert_allclose("dweight", &grads.weight, g.get("dweight"), RTOL, ATOL);

    assert_allclose(
        "sinusoidal",
        &sinusoidal_table(8, 6),
        g.get("sinusoidal_8x6"),
        1e-6,
        1e-6,
    );
}
