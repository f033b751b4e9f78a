//! Writes the weights the PyTorch mirror of the multimodal model
//! (`tools/golden/vlm.py`) loads.
//!
//! ```sh
//! cargo run -p model --example golden_vlm_weights
//! /work/venv-torch/bin/python tools/golden/vlm.py   # any Python with torch + safetensors
//! cargo test -p model --test golden_vlm
//! ```
//!
//! One text-only language model and four multimodal models, between them
//! both towers, both projectors, all three poolings, the CLS token kept and
//! dropped, both masks and both heads (the table in [`vlm_cases`]). Every
//! tensor is drawn from `N(0, 0.3²)` (LayerNorm gains around 1), as for
//! `golden_weights`: at the default initialisation the embedding tables are
//! so small that a wrong term could hide under the LayerNorms.
//!
//! `tests/golden_vlm.rs` reads the same cases from this file, so the
//! configs are written once on the Rust side.

use std::collections::BTreeMap;
use std::error::Error;
use std::path::{Path, PathBuf};

use attention::BlockConfig;
use embedding::{Params, init};
use model::{
    Head, ImageConfig, LmConfig, ProjectorConfig, ProjectorKind, TokenPool, VlmConfig, VlmMask,
    save_weights,
};
use rand::SeedableRng;
use rand::rngs::StdRng;
use vision::{CnnConfig, VitConfig};

/// The vocabulary: 11 ordinary tokens, then `<|image|>` 11, `<|user|>` 12,
/// `<|assistant|>` 13, `<|end|>` 14, `<|pad|>` 15 ([`VlmConfig::last_five`]).
pub const VOCAB: usize = 16;
/// Positions of every language model: the longest spliced batch row is 16.
pub const MAX_LEN: usize = 20;

/// The folder of the fixtures.
pub fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

/// A micro ViT on `image_size`² images in 4×4 patches: width 12, one block.
fn vit(image_size: usize) -> ImageConfig {
    ImageConfig::Vit(VitConfig {
        image_size,
        in_channels: 3,
        patch: 4,
        depth: 1,
        block: BlockConfig {
            width: 12,
            n_head: 2,
            mlp_hidden: 16,
        },
    })
}

/// The language model of every case: width 8, 2 blocks of 2 heads.
pub fn lm(head: Head) -> LmConfig {
    LmConfig {
        head,
        ..LmConfig::micro(VOCAB, MAX_LEN)
    }
}

/// The text-only language model's case: its name and its config.
pub fn lm_case() -> (&'static str, LmConfig) {
    ("lm_text", lm(Head::Tied))
}

/// The multimodal cases: their names (which say what each covers) and configs.
pub fn vlm_cases() -> Vec<(&'static str, VlmConfig)> {
    let case = |vision, projector, mask, head| VlmConfig {
        vision,
        projector,
        lm: lm(head),
        mask,
        tokens: VlmConfig::last_five(VOCAB),
    };
    let cnn = ImageConfig::Cnn {
        cnn: CnnConfig {
            in_channels: 3,
            channels: vec![4, 6],
            kernel: 3,
            pool: 2,
        },
        image_size: 16, // a 4×4 grid of width 6
    };
    vec![
        // a 2×2 grid and CLS: 5 image tokens
        (
            "vlm_vit_mlp_cls_causal",
            case(
                vit(8),
                ProjectorConfig {
                    kind: ProjectorKind::Mlp,
                    pool: TokenPool::None,
                    keep_cls: true,
                },
                VlmMask::Causal,
                Head::Tied,
            ),
        ),
        // a 4×4 grid shuffled to 2×2 tokens of width 24
        (
            "vlm_cnn_linear_shuffle_prefix",
            case(
                cnn,
                ProjectorConfig {
                    kind: ProjectorKind::Linear,
                    pool: TokenPool::PixelShuffle2,
                    keep_cls: false,
                },
                VlmMask::PrefixLm,
                Head::Separate,
            ),
        ),
        // a 4×4 grid averaged to 2×2, CLS first: 5 image tokens
        (
            "vlm_vit_mlp_average_cls_prefix",
            case(
                vit(16),
                ProjectorConfig {
                    kind: ProjectorKind::Mlp,
                    pool: TokenPool::Average2,
                    keep_cls: true,
                },
                VlmMask::PrefixLm,
                Head::Tied,
            ),
        ),
        // CLS dropped, the grid behind it shuffled
        (
            "vlm_vit_linear_shuffle_causal",
            case(
                vit(16),
                ProjectorConfig {
                    kind: ProjectorKind::Linear,
                    pool: TokenPool::PixelShuffle2,
                    keep_cls: false,
                },
                VlmMask::Causal,
                Head::Separate,
            ),
        ),
    ]
}

/// Every tensor `N(0, 0.3²)`, LayerNorm gains `1 + N(0, 0.3²)`.
fn randomise<P: Params>(module: &mut P, rng: &mut StdRng) {
    for (name, mut tensor) in module.params_mut() {
        let noise: ndarray::ArrayD<f32> = init::normal(tensor.shape(), 0.3, rng);
        // the module a tensor belongs to: "ln_1" in "language_model.blocks.0.ln_1.weight"
        let module = name.rsplit('.').nth(1).unwrap_or("");
        let is_gain = (module.starts_with("ln") || module == "norm") && name.ends_with(".weight");
        if is_gain {
            tensor.assign(&(noise + 1.0));
        } else {
            tensor.assign(&noise);
        }
    }
}

fn main() -> Result<(), Box<dyn Error>> {
    let dir = golden_dir();
    let (name, config) = lm_case();
    let mut rng = StdRng::seed_from_u64(10);
    let mut lm = config.init(&mut rng);
    randomise(&mut lm, &mut rng);
    let path = dir.join(format!("{name}.safetensors"));
    save_weights(&path, &lm, &BTreeMap::new())?;
    println!("wrote {} ({} parameters)", path.display(), lm.num_params());

    for (seed, (name, config)) in (11..).zip(vlm_cases()) {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut vlm = config.init(&mut rng)?;
        randomise(&mut vlm, &mut rng);
        let path = dir.join(format!("{name}.safetensors"));
        save_weights(&path, &vlm, &BTreeMap::new())?;
        println!("wrote {} ({} parameters)", path.display(), vlm.num_params());
    }
    Ok(())
}
