//! Outputs and every gradient against PyTorch (`tools/golden/attention.py`,
//! float64 references computed from the same float32 inputs).
//!
//! Tolerances: our f32 arithmetic against the exact answer. Each value passes
//! within `atol + rtol·|want|`, with `atol = 1e-5, rtol = 1e-4` for kernels
//! and whole blocks alike (f32 rounds at `~6e-8`; a block's few hundred
//! roundings stay well inside). GELU uses `atol = 1e-6, rtol = 1e-5`: the
//! hand-written `erf` is good to `1.5e-7` absolute, which is a relative
//! error of up to `~6e-5` deep in the negative tail where `gelu(x) ≈ 0`.

use attention::{
    BlockConfig, Gelu, LayerNorm, Mask, Tile, attention_backward, attention_forward,
    tiled_attention_forward,
};
use embedding::testing::{Golden, assert_allclose};
use embedding::{Layer, Params};
use ndarray::{Array3, Array4, ArrayD, Ix1, Ix3, Ix4};
use rand::SeedableRng;
use rand::rngs::StdRng;

fn fixture(name: &str) -> Golden {
    let path = format!("{}/tests/golden/{name}.txt", env!("CARGO_MANIFEST_DIR"));
    Golden::load(path).unwrap()
}

/// Copies every parameter of `module` from the fixture, by its PyTorch name.
fn load<P: Params>(module: &mut P, g: &Golden) {
    for (name, mut p) in module.params_mut() {
        let want = g.get(&name);
        assert_eq!(p.shape(), want.shape(), "{name}");
        p.assign(want);
    }
}

/// Compares every parameter gradient in `grads` with `grad.<name>`.
fn check_grads<P: Params>(grads: &P, g: &Golden, rtol: f32, atol: f32) {
    for (name, got) in grads.params() {
        let want: &ArrayD<f32> = g.get(&format!("grad.{name}"));
        assert_allclose(&format!("grad.{name}"), &got, want, rtol, atol);
    }
}

#[test]
fn sdpa_matches_pytorch_for_every_mask() {
    let g = fixture("sdpa");
    for (case, mask) in [
        ("none", Mask::None),
        ("causal", Mask::Causal),
        ("causal_tq_lt_tkv", Mask::Causal),
        ("padding", Mask::KeyPadding(vec![5, 2])),
        ("causal_padding", Mask::CausalKeyPadding(vec![4, 3])),
        ("fully_masked", Mask::KeyPadding(vec![4, 0])),
    ] {
        let get = |key: &str| g.array::<Ix4>(&format!("{case}.{key}"));
        let (q, k, v, dout) = (get("q"), get("k"), get("v"), get("dout"));
        let (out, probs) = attention_forward(&q, &k, &v, &mask);
        assert_allclose(&format!("{case}.out"), &out, &get("out"), 1e-4, 1e-5);
        let tiled = tiled_attention_forward(&q, &k, &v, &mask, Tile { q: 2, kv: 2 });
        assert_allclose(
            &format!("{case}.out (tiled)"),
            &tiled,
            &get("out"),
            1e-4,
            1e-5,
        );
        let d = attention_backward(&dout, &q, &k, &v, &probs);
        assert_allclose(&format!("{case}.dq"), &d.dq, &get("dq"), 1e-4, 1e-5);
        assert_allclose(&format!("{case}.dk"), &d.dk, &get("dk"), 1e-4, 1e-5);
        assert_allclose(&format!("{case}.dv"), &d.dv, &get("dv"), 1e-4, 1e-5);
    }
}

#[test]
fn layer_norm_matches_pytorch() {
    let g = fixture("layer_norm");
    let mut ln = LayerNorm::new(5);
    load(&mut ln, &g);
    let x = g.array::<Ix3>("x");
    let (out, cache) = ln.forward(&x);
    assert_allclose("out", &out, &g.array::<Ix3>("out"), 1e-4, 1e-5);
    let mut grads = ln.zeros_like();
    let dx = ln.backward(&g.array::<Ix3>("dout"), &cache, &mut grads);
    assert_allclose("dx", &dx, &g.array::<Ix3>("dx"), 1e-4, 1e-5);
    check_grads(&grads, &g, 1e-4, 1e-5);
}

#[test]
fn gelu_is_pytorchs_exact_form() {
    let g = fixture("gelu");
    let x = g
        .array::<Ix1>("x")
        .into_shape_with_order((1, 1, 64))
        .unwrap();
    let (out, cache) = Gelu.forward(&x);
    let want = g
        .array::<Ix1>("out")
        .into_shape_with_order((1, 1, 64))
        .unwrap();
    assert_allclose("out", &out, &want, 1e-5, 1e-6);
    let dout = g
        .array::<Ix1>("dout")
        .into_shape_with_order((1, 1, 64))
        .unwrap();
    let dx = Gelu.backward(&dout, &cache, &mut Gelu);
    let want = g
        .array::<Ix1>("dx")
        .into_shape_with_order((1, 1, 64))
        .unwrap();
    assert_allclose("dx", &dx, &want, 1e-5, 1e-6);
}

const CONFIG: BlockConfig = BlockConfig {
    width: 8,
    n_head: 2,
    mlp_hidden: 16,
};

fn check_block(name: &str, mask: Mask) {
    let g = fixture(name);
    let mut block = CONFIG.init(&mut StdRng::seed_from_u64(0));
    load(&mut block, &g);
    let x: Array3<f32> = g.array::<Ix3>("x");
    let (out, cache) = block.forward_masked(&x, &mask);
    assert_allclose("out", &out, &g.array::<Ix3>("out"), 1e-4, 1e-5);
    let mut grads = block.zeros_like();
    let dx = block.backward(&g.array::<Ix3>("dout"), &cache, &mut grads);
    assert_allclose("dx", &dx, &g.array::<Ix3>("dx"), 1e-4, 1e-5);
    check_grads(&grads, &g, 1e-4, 1e-5);
}

#[test]
fn block_matches_pytorch() {
    check_block("block", Mask::None);
}

#[test]
fn masked_block_matches_pytorch() {
    check_block("block_causal_padding", Mask::CausalKeyPadding(vec![4, 3]));
}

#[test]
fn cross_block_matches_pytorch() {
    let g = fixture("cross_block");
    let mut block = CONFIG.init_cross(6, &mut StdRng::seed_from_u64(0));
    load(&mut block, &g);
    let (x, memory) = (g.array::<Ix3>("x"), g.array::<Ix3>("memory"));
    let memory_mask = Mask::KeyPadding(vec![5, 3]);
    let (out, cache) = block.forward(&x, &memory, &Mask::Causal, &memory_mask);
    assert_allclose("out", &out, &g.array::<Ix3>("out"), 1e-4, 1e-5);
    let mut grads = block.zeros_like();
    let (dx, dmemory) = block.backward(&g.array::<Ix3>("dout"), &cache, &mut grads);
    assert_allclose("dx", &dx, &g.array::<Ix3>("dx"), 1e-4, 1e-5);
    assert_allclose("dmemory", &dmemory, &g.array::<Ix3>("dmemory"), 1e-4, 1e-5);
    check_grads(&grads, &g, 1e-4, 1e-5);
    // the cross-attention weights of padded memory keys are zero
    let w: &Array4<f32> = cache.cross_attention_weights();
    assert!(
        w.slice(ndarray::s![1, .., .., 3..])
            .iter()
            .all(|&p| p == 0.0)
    );
}

/// `Mask::PrefixLm` (`prefix_lm.txt`): the kernels in every regime (a prefix
/// inside the sequence, the last queries of a longer one as in incremental
/// decoding, a prefix longer than the sequence and one of zero), and a whole
/// block, whose input gradient is also what `backward_input` (a frozen
/// block) returns.
#[test]
fn prefix_lm_matches_pytorch() {
    let g = fixture("prefix_lm");
    for (case, prefix) in [
        ("prefix", vec![3, 1]),
        ("prefix_tq_lt_tkv", vec![5, 2]),
        ("prefix_clamped", vec![9, 0]),
    ] {
        let mask = Mask::PrefixLm(prefix);
        let get = |key: &str| g.array::<Ix4>(&format!("{case}.{key}"));
        let (q, k, v, dout) = (get("q"), get("k"), get("v"), get("dout"));
        let (out, probs) = attention_forward(&q, &k, &v, &mask);
        assert_allclose(&format!("{case}.out"), &out, &get("out"), 1e-4, 1e-5);
        let tiled = tiled_attention_forward(&q, &k, &v, &mask, Tile { q: 2, kv: 2 });
        assert_allclose(
            &format!("{case}.out (tiled)"),
            &tiled,
            &get("out"),
            1e-4,
            1e-5,
        );
        let d = attention_backward(&dout, &q, &k, &v, &probs);
        assert_allclose(&format!("{case}.dq"), &d.dq, &get("dq"), 1e-4, 1e-5);
        assert_allclose(&format!("{case}.dk"), &d.dk, &get("dk"), 1e-4, 1e-5);
        assert_allclose(&format!("{case}.dv"), &d.dv, &get("dv"), 1e-4, 1e-5);
    }

    let mut block = CONFIG.init(&mut StdRng::seed_from_u64(0));
    for (name, mut p) in block.params_mut() {
        let want = g.get(&format!("block.{name}"));
        assert_eq!(p.shape(), want.shape(), "{name}");
        p.assign(want);
    }
    let mask = Mask::PrefixLm(vec![3, 1]);
    let x = g.array::<Ix3>("block.x");
    let (out, cache) = block.forward_masked(&x, &mask);
    assert_allclose("block.out", &out, &g.array::<Ix3>("block.out"), 1e-4, 1e-5);
    let dout = g.array::<Ix3>("block.dout");
    let mut grads = block.zeros_like();
    let dx = block.backward(&dout, &cache, &mut grads);
    let want_dx = g.array::<Ix3>("block.dx");
    assert_allclose("block.dx", &dx, &want_dx, 1e-4, 1e-5);
    let frozen_dx = block.backward_input(&dout, &cache);
    assert_allclose("block.dx (frozen)", &frozen_dx, &want_dx, 1e-4, 1e-5);
    for (name, got) in grads.params() {
        let want = g.get(&format!("block.grad.{name}"));
        assert_allclose(&format!("block.grad.{name}"), &got, want, 1e-4, 1e-5);
    }
}
