//! The whole model against its PyTorch mirror (`tools/golden/model.py`).
//!
//! The mirror loads the very weights these tests load (`tests/golden/*.safetensors`,
//! written by `cargo run -p model --example golden_weights`), runs one batch
//! forward and the fake loss backward in float64, and stores the batch, the
//! outputs and the gradient of every parameter. Here the f32 model runs the
//! same batch and must agree on all of them.

use std::path::{Path, PathBuf};

use embedding::Params;
use embedding::testing::{Golden, assert_allclose};
use model::{Head, Model, ModelConfig, ModelOutputGrads, load_weights};
use ndarray::{Ix1, Ix2, Ix3, Ix4};
use rand::SeedableRng;
use rand::rngs::StdRng;

const VOCAB: usize = 12;

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

/// A model of `config` holding the weights of `name.safetensors`.
fn load(name: &str, config: &ModelConfig) -> Model {
    let mut model = config.init(&mut StdRng::seed_from_u64(0)).unwrap();
    load_weights(
        &golden_dir().join(format!("{name}.safetensors")),
        &mut model,
    )
    .unwrap();
    model
}

/// Forward and backward on the fixture's batch; every output and every
/// parameter gradient compared with PyTorch's float64 values.
fn check(name: &str, config: ModelConfig) {
    let model = load(name, &config);
    let g = Golden::load(golden_dir().join(format!("{name}.txt"))).unwrap();
    let images = g.array::<Ix4>("images");
    let tokens = g.ids::<Ix2>("tokens");
    let lengths: Vec<usize> = g
        .ids::<Ix1>("lengths")
        .iter()
        .map(|&l| l as usize)
        .collect();

    let (output, cache) = model.forward(&images, &tokens, &lengths);
    // f32 against float64 through ~10 layers: measured agreement is ~1e-6 relative
    let (rtol, atol) = (1e-5, 1e-6);
    assert_allclose(
        "image_embeds",
        &output.image_embeds,
        &g.array::<Ix2>("image_embeds"),
        rtol,
        atol,
    );
    assert_allclose(
        "text_embeds",
        &output.text_embeds,
        &g.array::<Ix2>("text_embeds"),
        rtol,
        atol,
    );
    assert!((output.logit_scale - g.scalar("logit_scale")).abs() < 1e-5);
    assert_allclose(
        "logits",
        &output.logits,
        &g.array::<Ix3>("logits"),
        rtol,
        1e-4,
    );

    let dout = ModelOutputGrads {
        dimage_embeds: g.array::<Ix2>("d_image_embeds"),
        dtext_embeds: g.array::<Ix2>("d_text_embeds"),
        dlogit_scale: g.scalar("d_logit_scale"),
        dlogits: g.array::<Ix3>("d_logits"),
    };
    let mut grads = model.zeros_like();
    model.backward(&dout, &cache, &mut grads);
    let mut compared = 0;
    for (param, grad) in grads.params() {
        let want = g.get(&format!("grad.{param}"));
        // gradients sum many products (measured: ~5e-6 relative); compare at the scale of the tensor
        let scale = want.iter().fold(0f32, |m, &v| m.max(v.abs())).max(1.0);
        assert_allclose(&format!("grad.{param}"), &grad, want, 1e-4, 1e-5 * scale);
        compared += 1;
    }
    assert_eq!(compared, model.params().len());
}

#[test]
fn vit_with_tied_head_matches_pytorch() {
    check("micro_vit", ModelConfig::micro(VOCAB));
}

#[test]
fn cnn_with_separate_head_matches_pytorch() {
    let mut config = ModelConfig::micro(VOCAB);
    config.image = ModelConfig::micro_cnn();
    config.decoder.head = Head::Separate;
    check("micro_cnn", config);
}

#[test]
fn the_weights_file_holds_exactly_the_model_names() {
    // load_weights checks every name and shape; loading into the other
    // head kind must fail and name the tensor
    let mut config = ModelConfig::micro(VOCAB);
    config.decoder.head = Head::Separate;
    let mut model = config.init(&mut StdRng::seed_from_u64(0)).unwrap();
    let err = load_weights(&golden_dir().join("micro_vit.safetensors"), &mut model).unwrap_err();
    assert!(err.to_string().contains("decoder.lm_head.weight"), "{err}");
}
