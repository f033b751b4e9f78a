//! AdamW: Adam with decoupled weight decay (Loshchilov & Hutter 2019).
//!
// ANCHOR: adamw_doc
//! ## The update
//! For every parameter `θ` with gradient `g`, at update `t = 1, 2, …`:
//!
//! $$ \begin{aligned}
//! \theta &\leftarrow \theta (1 - \eta \lambda) && \text{decoupled weight decay (decayed tensors only)} \\
//! m &\leftarrow \beta_1 m + (1 - \beta_1) g && \text{running mean of the gradient} \\
//! v &\leftarrow \beta_2 v + (1 - \beta_2) g^2 && \text{running mean of its square} \\
//! \theta &\leftarrow \theta - \eta \, \frac{m / (1 - \beta_1^t)}{\sqrt{v / (1 - \beta_2^t)} + \epsilon}
//! \end{aligned} $$
//!
//! `m` and `v` start at zero, so for small `t` they underestimate; the
//! factors `1 − βᵗ` undo that bias. Dividing by `√v` gives every parameter
//! its own step size of about `η`, whatever the scale of its gradient: the
//! logit scale, a LayerNorm gain and an embedding row all move at a
//! comparable pace.
//!
//! ## Why "decoupled"
//! Adam with an L2 penalty adds `λθ` to `g`, and then divides it by `√v`
//! like the rest of the gradient: parameters with large gradients are barely
//! regularised. AdamW shrinks `θ` directly by `ηλθ`, independent of the
//! gradient statistics, which is what weight decay is meant to be.
//!
//! ## What is not decayed
//! Decay pulls a tensor toward zero. That suits the weight matrices (Linear
//! and convolution weights, a separate output head), whose scale the next
//! LayerNorm undoes anyway. It is wrong for:
//! - biases and the LayerNorm gains and biases: they set offsets and
//!   scales, and pulling a gain toward 0 fights the normalisation;
//! - the logit scale: decaying `ln(1/τ)` toward 0 pushes the temperature
//!   toward 1, back to the uninformative softmax the contrastive loss must
//!   escape;
//! - embeddings (token and position tables, the ViT's position table and CLS
//!   token): a row is *looked up*, not multiplied, and gets gradient only
//!   when its token (or position) is used, while decoupled decay shrinks
//!   every row at every step; rare tokens and the positions of long captions
//!   would fade toward zero between their uses (minGPT makes the same call;
//!   open_clip decays 2-D embedding tables). With a tied decoder head the
//!   token table is also the output projection; it stays undecayed.
// ANCHOR_END: adamw_doc

use embedding::Params;
use ndarray::Zip;

// ANCHOR: no_decay
/// `true` for the parameters AdamW must not decay: biases, normalisation
/// gains and biases (`ln_*`, `norm`), embeddings (`*_embedding`, `pos_embed`,
/// `cls_token`) and `logit_scale`. Everything else is a weight matrix and
/// decays.
pub fn no_decay(name: &str) -> bool {
    let mut parts = name.rsplit('.');
    let leaf = parts.next().unwrap_or("");
    let module = parts.next().unwrap_or("");
    leaf == "bias"
        || leaf == "logit_scale"
        || leaf == "cls_token"
        || module.starts_with("ln")
        || module == "norm"
        || module.ends_with("embedding")
        || module == "pos_embed"
}
// ANCHOR_END: no_decay

/// AdamW's hyperparameters. The learning rate is not one of them: it
/// changes every step and comes from the [`crate::Schedule`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamW {
    /// `β₁`, the decay of the gradient's running mean.
    pub beta1: f32,
    /// `β₂`, the decay of the squared gradient's running mean.
    pub beta2: f32,
    /// `ε`, keeps the division finite where `v ≈ 0`.
    pub eps: f32,
    /// `λ`, the decoupled weight decay of the decayed tensors.
    pub weight_decay: f32,
}

impl Default for AdamW {
    /// CLIP's settings: `β₂ = 0.98` and `ε = 1e-6` (rather than Adam's 0.999
    /// and 1e-8) react faster to the sudden gradient changes a sharpening
    /// contrastive softmax brings, and `λ = 0.1`.
    fn default() -> Self {
        AdamW {
            beta1: 0.9,
            beta2: 0.98,
            eps: 1e-6,
            weight_decay: 0.1,
        }
    }
}

/// AdamW's state: the hyperparameters, the two moments as gradient twins of
/// the model, and the number of updates taken.
///
/// `Params` lists `exp_avg.<name>` then `exp_avg_sq.<name>` (PyTorch's
/// names for `m` and `v`), so `model::save_weights` can checkpoint it.
#[derive(Debug, Clone, PartialEq)]
pub struct AdamWState<M> {
    /// The hyperparameters.
    pub config: AdamW,
    /// `m`, the running mean of the gradients.
    pub exp_avg: M,
    /// `v`, the running mean of the squared gradients.
    pub exp_avg_sq: M,
    /// `t`, updates taken so far (the bias corrections use it).
    pub steps: u64,
}

impl<M: Params + Clone> AdamWState<M> {
    /// Zero moments shaped like `model`, no updates taken.
    pub fn new(config: AdamW, model: &M) -> Self {
        AdamWState {
            config,
            exp_avg: model.zeros_like(),
            exp_avg_sq: model.zeros_like(),
            steps: 0,
        }
    }
}

impl<M: Params> AdamWState<M> {
    /// One AdamW update of `model` from `grads` at learning rate `lr`.
    ///
    /// # Panics
    /// If `model`, `grads` and the moments do not list the same tensors.
    #[track_caller]
    pub fn step(&mut self, model: &mut M, grads: &M, lr: f32) {
        self.step_where(model, grads, lr, |_| true);
    }

    // ANCHOR: adamw_step
    /// One AdamW update of the tensors whose name `trains` accepts; the
    /// others (a frozen part of the model) are not touched at all: no
    /// decay, no moments, no step.
    ///
    /// # Panics
    /// If `model`, `grads` and the moments do not list the same tensors.
    #[track_caller]
    pub fn step_where(&mut self, model: &mut M, grads: &M, lr: f32, trains: impl Fn(&str) -> bool) {
        let AdamW {
            beta1,
            beta2,
            eps,
            weight_decay,
        } = self.config;
        self.steps += 1;
        let t = self.steps as i32;
        let bias1 = 1.0 - beta1.powi(t);
        let bias2_sqrt = (1.0 - beta2.powi(t)).sqrt();
        let step_size = lr / bias1;

        let params = model.params_mut();
        let grads = grads.params();
        let ms = self.exp_avg.params_mut();
        let vs = self.exp_avg_sq.params_mut();
        assert!(
            params.len() == grads.len() && params.len() == ms.len() && params.len() == vs.len(),
            "adamw: {} parameters, {} gradients, {} and {} moments",
            params.len(),
            grads.len(),
            ms.len(),
            vs.len()
        );
        for (((name, mut p), (gname, g)), ((_, mut m), (_, mut v))) in
            params.into_iter().zip(grads).zip(ms.into_iter().zip(vs))
        {
            assert!(
                name == gname && p.shape() == g.shape(),
                "adamw: parameter {name} {:?} meets gradient {gname} {:?}",
                p.shape(),
                g.shape()
            );
            if !trains(&name) {
                continue; // frozen: left exactly as it is
            }
            // decoupled weight decay: θ ← θ(1 − ηλ), before the Adam step
            let decay = if no_decay(&name) {
                1.0
            } else {
                1.0 - lr * weight_decay
            };
            Zip::from(&mut p)
                .and(&g)
                .and(&mut m)
                .and(&mut v)
                .for_each(|p, &g, m, v| {
                    *m = beta1 * *m + (1.0 - beta1) * g;
                    *v = beta2 * *v + (1.0 - beta2) * g * g;
                    let denom = v.sqrt() / bias2_sqrt + eps;
                    *p = *p * decay - step_size * *m / denom;
                });
        }
    }
    // ANCHOR_END: adamw_step
}

impl<M: Params> Params for AdamWState<M> {
    fn params(&self) -> Vec<(String, ndarray::ArrayViewD<'_, f32>)> {
        let mut list: Vec<_> = embedding::prefixed("exp_avg", self.exp_avg.params()).collect();
        list.extend(embedding::prefixed("exp_avg_sq", self.exp_avg_sq.params()));
        list
    }

    fn params_mut(&mut self) -> Vec<(String, ndarray::ArrayViewMutD<'_, f32>)> {
        let mut list: Vec<_> = embedding::prefixed("exp_avg", self.exp_avg.params_mut()).collect();
        list.extend(embedding::prefixed(
            "exp_avg_sq",
            self.exp_avg_sq.params_mut(),
        ));
        list
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use embedding::Linear;
    use ndarray::{Array1, array};

    fn layer() -> Linear {
        Linear::new(array![[1.0, -2.0]], Some(Array1::from(vec![0.5])))
    }

    /// The update written out for one scalar, in f64.
    fn reference(theta: f64, grads: &[f64], lr: f64, decay: bool, c: AdamW) -> f64 {
        let (b1, b2, eps, wd) = (
            c.beta1 as f64,
            c.beta2 as f64,
            c.eps as f64,
            c.weight_decay as f64,
        );
        let (mut theta, mut m, mut v) = (theta, 0.0, 0.0);
        for (t, &g) in grads.iter().enumerate() {
            let t = t as i32 + 1;
            if decay {
                theta *= 1.0 - lr * wd;
            }
            m = b1 * m + (1.0 - b1) * g;
            v = b2 * v + (1.0 - b2) * g * g;
            let mhat = m / (1.0 - b1.powi(t));
            let vhat = v / (1.0 - b2.powi(t));
            theta -= lr * mhat / (vhat.sqrt() + eps);
        }
        theta
    }

    #[test]
    fn frozen_tensors_are_not_touched() {
        let mut model = vec![
            embedding::Linear::new(
                ndarray::Array2::ones((2, 3)),
                Some(ndarray::Array1::ones(2)),
            ),
            embedding::Linear::new(ndarray::Array2::ones((2, 2)), None),
        ];
        let mut grads = model.zeros_like();
        for (_, mut g) in grads.params_mut() {
            g.fill(0.5);
        }
        let before = model.clone();
        let mut state = AdamWState::new(AdamW::default(), &model);
        state.step_where(&mut model, &grads, 0.1, |name| !name.starts_with("1."));
        assert_eq!(model[1], before[1]); // frozen: no decay, no step
        assert!(state.exp_avg[1].weight.iter().all(|&m| m == 0.0));
        assert_ne!(model[0], before[0]);
    }

    #[test]
    fn three_steps_match_the_formula_and_biases_do_not_decay() {
        let config = AdamW {
            weight_decay: 0.5,
            ..AdamW::default()
        };
        let mut model = layer();
        let mut state = AdamWState::new(config, &model);
        let gs = [[0.3, -0.1, 2.0], [-0.2, 0.05, 1.0], [0.1, 0.0, -3.0]];
        for g in gs {
            let grads = Linear::new(array![[g[0], g[1]]], Some(Array1::from(vec![g[2]])));
            state.step(&mut model, &grads, 0.01);
        }
        let col = |k: usize| gs.iter().map(|g| g[k] as f64).collect::<Vec<_>>();
        let want_w0 = reference(1.0, &col(0), 0.01, true, config);
        let want_w1 = reference(-2.0, &col(1), 0.01, true, config);
        let want_b = reference(0.5, &col(2), 0.01, false, config);
        assert!((model.weight[[0, 0]] as f64 - want_w0).abs() < 1e-6);
        assert!((model.weight[[0, 1]] as f64 - want_w1).abs() < 1e-6);
        assert!((model.bias.as_ref().unwrap()[0] as f64 - want_b).abs() < 1e-6);
        assert_eq!(state.steps, 3);
    }

    #[test]
    fn the_first_step_moves_each_parameter_by_about_lr() {
        // m̂ / √v̂ = g / |g| at t = 1, whatever the gradient's size
        let config = AdamW {
            weight_decay: 0.0,
            ..AdamW::default()
        };
        let mut model = layer();
        let mut state = AdamWState::new(config, &model);
        let grads = Linear::new(array![[1e-3, -50.0]], Some(Array1::from(vec![7.0])));
        state.step(&mut model, &grads, 0.1);
        assert!((model.weight[[0, 0]] - 0.9).abs() < 1e-4);
        assert!((model.weight[[0, 1]] - -1.9).abs() < 1e-4);
        assert!((model.bias.as_ref().unwrap()[0] - 0.4).abs() < 1e-4);
    }

    #[test]
    fn which_parameters_decay() {
        for name in [
            "image.blocks.0.attn.qkv.weight",
            "image.patch_embed.proj.weight",
            "image.blocks.1.conv.weight",
            "text_projection.weight",
            "decoder.lm_head.weight",
            "decoder.blocks.0.cross_attn.kv.weight",
        ] {
            assert!(!no_decay(name), "{name} should decay");
        }
        for name in [
            "logit_scale",
            "image.cls_token",
            "image.pos_embed.weight",
            "image.norm.weight",
            "text.blocks.0.ln_1.weight",
            "decoder.blocks.0.ln_cross.bias",
            "text.ln_final.weight",
            "text.token_embedding.weight",
            "decoder.position_embedding.weight",
            "image.blocks.0.mlp.fc.bias",
        ] {
            assert!(no_decay(name), "{name} should not decay");
        }
    }

    #[test]
    fn state_lists_both_moments_by_name() {
        let state = AdamWState::new(AdamW::default(), &layer());
        let names: Vec<String> = state.params().into_iter().map(|(n, _)| n).collect();
        assert_eq!(
            names,
            [
                "exp_avg.weight",
                "exp_avg.bias",
                "exp_avg_sq.weight",
                "exp_avg_sq.bias"
            ]
        );
    }
}
