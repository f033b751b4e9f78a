//! Writes the weights the PyTorch mirror (`tools/golden/model.py`) loads.
//!
//! ```sh
//! cargo run -p model --example golden_weights
//! /work/venv-torch/bin/python tools/golden/model.py   # any Python with torch + safetensors
//! cargo test -p model --test golden
//! ```
//!
//! Two micro models, a ViT with a tied decoder head and a CNN with a
//! separate one, so both towers and both heads meet PyTorch. Every tensor is
//! drawn from `N(0, 0.3²)` (LayerNorm gains around 1, the logit scale at
//! `ln(1/0.07)`): at the default initialisation the embedding tables are so
//! small that a wrong term could hide under the LayerNorms.

use std::collections::BTreeMap;
use std::error::Error;
use std::path::Path;

use embedding::{Params, init};
use model::{Head, ModelConfig, save_weights};
use ndarray::ArrayD;
use rand::SeedableRng;
use rand::rngs::StdRng;

/// The vocabulary of both micro models: 9 ordinary tokens, then bos, eos, pad.
const VOCAB: usize = 12;

fn main() -> Result<(), Box<dyn Error>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let vit = ModelConfig::micro(VOCAB);
    let mut cnn = ModelConfig::micro(VOCAB);
    cnn.image = ModelConfig::micro_cnn();
    cnn.decoder.head = Head::Separate;

    for (name, config, seed) in [("micro_vit", vit, 1), ("micro_cnn", cnn, 2)] {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut model = config.init(&mut rng)?;
        for (tensor_name, mut tensor) in model.params_mut() {
            let noise: ArrayD<f32> = init::normal(tensor.shape(), 0.3, &mut rng);
            // the module a tensor belongs to: "ln_1" in "text.blocks.0.ln_1.weight"
            let module = tensor_name.rsplit('.').nth(1).unwrap_or("");
            let is_gain =
                (module.starts_with("ln") || module == "norm") && tensor_name.ends_with(".weight");
            if tensor_name == "logit_scale" {
                continue;
            } else if is_gain {
                tensor.assign(&(noise + 1.0)); // LayerNorm gains around 1
            } else {
                tensor.assign(&noise);
            }
        }
        let path = dir.join(format!("{name}.safetensors"));
        save_weights(&path, &model, &BTreeMap::new())?;
        println!(
            "wrote {} ({} parameters)",
            path.display(),
            model.num_params()
        );
    }
    Ok(())
}
