//! The language model and the multimodal model against their PyTorch mirror
//! (`tools/golden/vlm.py`).
//!
//! The mirror loads the very weights these tests load
//! (`tests/golden/{lm_text,vlm_*}.safetensors`, written by `cargo run -p
//! model --example golden_vlm_weights`), runs a batch of conversations
//! forward and the answer loss backward in float64, and stores the batch,
//! the loss's targets in spliced positions, the logits, the loss and the
//! gradient of every parameter. Here the f32 model runs the same batch and
//! must agree on all of them, trained whole and with a part frozen.

use embedding::Params;
use embedding::testing::{Golden, assert_allclose};
use model::{Freeze, LanguageModel, Vlm, VlmConfig, answer_loss, load_weights};
use ndarray::{Array2, ArrayViewD, Ix2, Ix3, Ix4};
use rand::SeedableRng;
use rand::rngs::StdRng;

#[path = "../examples/golden_vlm_weights.rs"]
#[allow(dead_code)] // its `main` writes the weights; the tests read its cases
mod cases; // the configs, written once for the weights and the tests

fn fixture(name: &str) -> Golden {
    Golden::load(cases::golden_dir().join(format!("{name}.txt"))).unwrap()
}

/// f32 against float64 through ~10 layers: measured agreement ~1e-6 relative.
const RTOL: f32 = 1e-5;

/// A gradient against PyTorch's, at the scale of the tensor (gradients sum
/// many products; measured ~5e-6 relative).
fn check_grad(name: &str, got: &ArrayViewD<f32>, g: &Golden) {
    let want = g.get(&format!("grad.{name}"));
    let scale = want.iter().fold(0f32, |m, &v| m.max(v.abs())).max(1.0);
    assert_allclose(&format!("grad.{name}"), got, want, 1e-4, 1e-5 * scale);
}

fn vlm_config(name: &str) -> VlmConfig {
    cases::vlm_cases()
        .into_iter()
        .find(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("no case {name}"))
        .1
}

/// The case's model, holding the weights PyTorch loaded.
fn load_vlm(name: &str) -> Vlm {
    let mut vlm = vlm_config(name)
        .init(&mut StdRng::seed_from_u64(0))
        .unwrap();
    let path = cases::golden_dir().join(format!("{name}.safetensors"));
    load_weights(&path, &mut vlm).unwrap();
    vlm
}

/// Forward, answer loss and backward on the fixture's conversations; the
/// targets, logits, loss and every parameter gradient against PyTorch's.
/// Then again with each part frozen in turn: the frozen part's gradient is
/// exactly zero and every other part's is still PyTorch's.
fn check_vlm(name: &str) {
    let vlm = load_vlm(name);
    let g = fixture(name);
    let images = g.array::<Ix4>("images");
    let tokens = g.ids::<Ix2>("tokens");
    let weights = g.array::<Ix2>("weights");

    // the splice moves the targets where PyTorch's independent count puts them
    let (targets, target_weights) = vlm.targets(&tokens, &weights);
    assert_eq!(targets, g.ids::<Ix2>("targets"), "{name}: targets");
    assert_eq!(
        target_weights,
        g.array::<Ix2>("target_weights"),
        "{name}: target weights"
    );

    let (logits, cache) = vlm.forward(&images, &tokens, Freeze::NONE);
    assert_allclose(
        &format!("{name}: logits"),
        &logits,
        &g.array::<Ix3>("logits"),
        RTOL,
        1e-4,
    );
    let loss = answer_loss(&logits, &targets, &target_weights);
    let want = g.scalar("loss");
    assert!(
        (loss.loss - want).abs() < 1e-5 * want.abs().max(1.0),
        "{name}: loss {} vs PyTorch {want}",
        loss.loss
    );

    let mut grads = vlm.zeros_like();
    vlm.backward(&loss.dlogits, &cache, &mut grads);
    let mut compared = 0;
    for (param, grad) in grads.params() {
        check_grad(&param, &grad, &g);
        compared += 1;
    }
    assert_eq!(compared, vlm.params().len());

    for freeze in [
        Freeze {
            vision_tower: true,
            ..Freeze::NONE
        },
        Freeze {
            projector: true,
            ..Freeze::NONE
        },
        Freeze {
            language_model: true,
            ..Freeze::NONE
        },
    ] {
        let (_, cache) = vlm.forward(&images, &tokens, freeze);
        let mut grads = vlm.zeros_like();
        vlm.backward(&loss.dlogits, &cache, &mut grads);
        for (param, grad) in grads.params() {
            if freeze.is_frozen(&param) {
                assert!(
                    grad.iter().all(|&v| v == 0.0),
                    "{name} {freeze:?}: {param} is frozen but has a gradient"
                );
            } else {
                check_grad(&param, &grad, &g);
            }
        }
    }
}

#[test]
fn vit_mlp_every_cell_cls_causal_matches_pytorch() {
    check_vlm("vlm_vit_mlp_cls_causal");
}

#[test]
fn cnn_linear_pixel_shuffle_prefix_lm_separate_head_matches_pytorch() {
    check_vlm("vlm_cnn_linear_shuffle_prefix");
}

#[test]
fn vit_mlp_average_with_cls_prefix_lm_matches_pytorch() {
    check_vlm("vlm_vit_mlp_average_cls_prefix");
}

#[test]
fn vit_linear_pixel_shuffle_without_cls_causal_matches_pytorch() {
    check_vlm("vlm_vit_linear_shuffle_causal");
}

#[test]
fn text_only_language_model_matches_pytorch() {
    let (name, config) = cases::lm_case();
    let mut lm: LanguageModel = config.init(&mut StdRng::seed_from_u64(0));
    let path = cases::golden_dir().join(format!("{name}.safetensors"));
    load_weights(&path, &mut lm).unwrap();
    let g = fixture(name);
    let tokens = g.ids::<Ix2>("tokens");
    let (targets, weights): (Array2<u32>, Array2<f32>) =
        (g.ids::<Ix2>("targets"), g.array::<Ix2>("weights"));

    let (logits, cache) = lm.forward(&tokens);
    assert_allclose("logits", &logits, &g.array::<Ix3>("logits"), RTOL, 1e-4);
    let loss = answer_loss(&logits, &targets, &weights);
    let want = g.scalar("loss");
    assert!(
        (loss.loss - want).abs() < 1e-5 * want.abs().max(1.0),
        "loss {} vs PyTorch {want}",
        loss.loss
    );
    let mut grads = lm.zeros_like();
    lm.backward(&loss.dlogits, &cache, &mut grads);
    let mut compared = 0;
    for (param, grad) in grads.params() {
        check_grad(&param, &grad, &g);
        compared += 1;
    }
    assert_eq!(compared, lm.params().len());
}
