//! The losses and ten whole-model AdamW steps against PyTorch
//! (`tools/golden/train.py`).
//!
//! To regenerate (by hand, never in CI):
//! ```sh
//! cargo test -p train --test golden -- --ignored write_initial_weights
//! /work/venv-torch/bin/python tools/golden/train.py   # any Python with torch + safetensors
//! cargo test -p train --test golden
//! ```
//!
//! The ten-step fixtures hold everything the run depends on (the initial
//! weights' file name, the batch, the schedule, AdamW's settings, the clip
//! norm, the loss weights), so the script is the single source of those
//! values; the Rust side reads them back and must reproduce the script's
//! losses step by step, as llm.c's `test_gpt2` does.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use embedding::Params;
use embedding::testing::{Golden, assert_allclose};
use model::{Head, Model, ModelConfig, load_weights, save_weights};
use ndarray::{Ix1, Ix2, Ix3, Ix4, IxDyn};
use rand::SeedableRng;
use rand::rngs::StdRng;
use train::{
    AdamW, AdamWState, Batch, LossWeights, Schedule, caption_loss, contrastive_loss, train_step,
};

const VOCAB: usize = 12; // 9 ordinary tokens, then bos 9, eos 10, pad 11

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

/// The two models of the ten-step runs: a micro ViT with a tied decoder
/// head, and a micro CNN with a separate one.
fn configs() -> [(&'static str, ModelConfig); 2] {
    let mut cnn = ModelConfig::micro(VOCAB);
    cnn.image = ModelConfig::micro_cnn();
    cnn.decoder.head = Head::Separate;
    [("steps_vit", ModelConfig::micro(VOCAB)), ("steps_cnn", cnn)]
}

/// Writes the initial weights PyTorch loads: the model crate's own
/// initialisation, seeded. Run by hand before `tools/golden/train.py`.
#[test]
#[ignore = "writes the fixtures' initial weights; run by hand before tools/golden/train.py"]
fn write_initial_weights() {
    for (seed, (name, config)) in configs().into_iter().enumerate() {
        let model = config
            .init(&mut StdRng::seed_from_u64(seed as u64))
            .unwrap();
        let path = golden_dir().join(format!("{name}.safetensors"));
        save_weights(&path, &model, &BTreeMap::new()).unwrap();
    }
}

fn ids(g: &Golden, name: &str) -> Vec<usize> {
    g.ids::<Ix1>(name).iter().map(|&x| x as usize).collect()
}

#[test]
fn contrastive_loss_matches_pytorch() {
    let g = Golden::load(golden_dir().join("contrastive.txt")).unwrap();
    let scale = g.scalar("logit_scale").exp();
    let out = contrastive_loss(
        &g.array::<Ix2>("image_embeds"),
        &g.array::<Ix2>("text_embeds"),
        scale,
    );
    assert!(
        (out.loss - g.scalar("loss")).abs() < 1e-5,
        "{} vs {}",
        out.loss,
        g.scalar("loss")
    );
    let (rtol, atol) = (1e-4, 1e-6);
    assert_allclose(
        "dimage_embeds",
        &out.dimage_embeds,
        &g.array::<Ix2>("grad.image_embeds"),
        rtol,
        atol,
    );
    assert_allclose(
        "dtext_embeds",
        &out.dtext_embeds,
        &g.array::<Ix2>("grad.text_embeds"),
        rtol,
        atol,
    );
    // the fixture holds ∂L/∂logit_scale; ours is ∂L/∂s with s = exp(logit_scale)
    let dlogit_scale = out.dscale * scale;
    let want = g.scalar("grad.logit_scale");
    assert!(
        (dlogit_scale - want).abs() < 1e-4 * want.abs() + 1e-6,
        "{dlogit_scale} vs {want}"
    );
}

#[test]
fn caption_loss_matches_pytorch_ignore_index() {
    let g = Golden::load(golden_dir().join("caption.txt")).unwrap();
    let out = caption_loss(
        &g.array::<Ix3>("logits"),
        &g.ids::<Ix2>("tokens"),
        &ids(&g, "lengths"),
    );
    assert!(
        (out.loss - g.scalar("loss")).abs() < 1e-5,
        "{} vs {}",
        out.loss,
        g.scalar("loss")
    );
    assert_allclose(
        "dlogits",
        &out.dlogits,
        &g.array::<Ix3>("grad.logits"),
        1e-4,
        1e-7,
    );
}

/// Ten steps of the whole model, each one's losses, gradient norm, learning
/// rate and logit scale compared, then every final weight.
fn ten_steps(name: &str, config: ModelConfig) {
    let g = Golden::load(golden_dir().join(format!("{name}.txt"))).unwrap();
    let mut model: Model = config.init(&mut StdRng::seed_from_u64(99)).unwrap();
    load_weights(
        &golden_dir().join(format!("{name}.safetensors")),
        &mut model,
    )
    .unwrap();

    let batch = Batch {
        images: g.array::<Ix4>("images"),
        tokens: g.ids::<Ix2>("tokens"),
        lengths: ids(&g, "lengths"),
    };
    let schedule = Schedule {
        warmup: g.scalar("warmup") as usize,
        total: g.scalar("total") as usize,
        peak_lr: g.scalar("peak_lr"),
        min_lr: g.scalar("min_lr"),
    };
    let adamw = AdamW {
        beta1: g.scalar("beta1"),
        beta2: g.scalar("beta2"),
        eps: g.scalar("eps"),
        weight_decay: g.scalar("weight_decay"),
    };
    let weights = LossWeights {
        contrastive: g.scalar("weight_contrastive"),
        caption: g.scalar("weight_caption"),
    };
    let max_norm = g.scalar("max_grad_norm");

    let want = |key: &str| g.array::<Ix1>(key);
    let (losses, contrastive, caption) = (want("losses"), want("contrastive"), want("caption"));
    let (norms, lrs, scales) = (want("grad_norms"), want("lrs"), want("logit_scales"));
    assert_eq!(losses.len(), 10);

    let mut grads = model.zeros_like();
    let mut opt = AdamWState::new(adamw, &model);
    for step in 0..losses.len() {
        let stats = train_step(
            &mut model,
            &mut grads,
            &mut opt,
            &batch,
            weights,
            step,
            &schedule,
            Some(max_norm),
        )
        .unwrap();
        println!(
            "{name} step {step}: loss {} (PyTorch {})",
            stats.loss, losses[step]
        );
        // f32 against float64: measured agreement is a few 1e-7 relative
        let close = |what: &str, got: f32, want: f32, rtol: f32| {
            assert!(
                (got - want).abs() <= rtol * want.abs() + 1e-6,
                "{name} step {step}: {what} is {got}, PyTorch says {want}"
            );
        };
        close("loss", stats.loss, losses[step], 1e-5);
        close(
            "contrastive loss",
            stats.contrastive,
            contrastive[step],
            1e-5,
        );
        close("caption loss", stats.caption, caption[step], 1e-5);
        close("gradient norm", stats.grad_norm, norms[step], 1e-4);
        close("learning rate", stats.lr, lrs[step], 1e-6);
        close("logit scale", stats.logit_scale, scales[step], 1e-5);
    }
    // every final weight; atol 1e-4 because the key biases' true gradient is
    // exactly zero (a softmax ignores a constant added to every score) while
    // f32 rounding leaves ~1e-9 there, and Adam's m/(√v + ε) turns that noise
    // into steps of up to ~1e-3·lr (measured: 2.5e-5 after ten steps)
    for (param, tensor) in model.params() {
        let want = g.array::<IxDyn>(&format!("final.{param}"));
        assert_allclose(&format!("{name} final {param}"), &tensor, &want, 1e-4, 1e-4);
    }
}

#[test]
fn ten_adamw_steps_match_pytorch_vit_tied_head() {
    let [(name, config), _] = configs();
    ten_steps(name, config);
}

#[test]
fn ten_adamw_steps_match_pytorch_cnn_separate_head() {
    let [_, (name, config)] = configs();
    ten_steps(name, config);
}
