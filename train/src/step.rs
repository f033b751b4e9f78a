//! One training step: forward, both losses, backward, clip, AdamW, clamp.

use std::fmt;

use embedding::Params;
use model::{Model, ModelOutputGrads};
use ndarray::{Array2, Array4};

use crate::adamw::AdamWState;
use crate::clip::clip_grad_norm;
use crate::loss::{caption_loss, contrastive_loss};
use crate::schedule::Schedule;

/// A batch of `(image, caption)` pairs in the model crate's convention.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// `[B, 3, H, W]`
    pub images: Array4<f32>,
    /// `[B, T]`: `<|bos|> caption <|eos|> <|pad|>…` per row.
    pub tokens: Array2<u32>,
    /// `[B]`: `<|bos|>` to `<|eos|>` inclusive.
    pub lengths: Vec<usize>,
}

// ANCHOR: loss_weights
/// The weights of the total loss `caption · L_caption + contrastive · L_contrastive`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LossWeights {
    /// The weight of the contrastive loss.
    pub contrastive: f32,
    /// The weight of the captioning loss.
    pub caption: f32,
}

impl Default for LossWeights {
    /// Caption 2.0, contrastive 1.0, as open_clip's CoCa. The captioning
    /// loss is a mean over a vocabulary-wide softmax and falls slowly from
    /// `ln V`, and its gradient, spread over every token, is what teaches the
    /// image tower the fine attributes (colour, position) the decoder must
    /// name; the contrastive loss saturates quickly on an easy batch. Doubling
    /// the caption weight keeps it from being drowned out once the
    /// contrastive loss starts to fall fast.
    fn default() -> Self {
        LossWeights {
            contrastive: 1.0,
            caption: 2.0,
        }
    }
}
// ANCHOR_END: loss_weights

/// What one step measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepStats {
    /// The weighted total loss.
    pub loss: f32,
    /// The contrastive loss (unweighted).
    pub contrastive: f32,
    /// The captioning loss (unweighted).
    pub caption: f32,
    /// The global gradient norm before clipping.
    pub grad_norm: f32,
    /// The learning rate used.
    pub lr: f32,
    /// `exp(logit_scale)` after the update and the clamp.
    pub logit_scale: f32,
}

/// Why a step stopped without touching the weights.
#[derive(Debug, Clone, PartialEq)]
pub enum StepError {
    /// The loss came out NaN or infinite.
    NonFiniteLoss {
        /// The step (counting from 0).
        step: usize,
        /// The contrastive loss.
        contrastive: f32,
        /// The captioning loss.
        caption: f32,
    },
    /// A gradient came out NaN or infinite.
    NonFiniteGradient {
        /// The step (counting from 0).
        step: usize,
        /// The first parameter whose gradient is not finite.
        name: String,
    },
}

impl fmt::Display for StepError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StepError::NonFiniteLoss {
                step,
                contrastive,
                caption,
            } => write!(
                f,
                "step {step}: non-finite loss (contrastive {contrastive}, caption {caption}); weights not updated"
            ),
            StepError::NonFiniteGradient { step, name } => write!(
                f,
                "step {step}: non-finite gradient in {name}; weights not updated"
            ),
        }
    }
}

impl std::error::Error for StepError {}

// ANCHOR: train_step
/// One training step at step `step` (counting from 0): zero `grads`, run the
/// model forward, compute both losses, run it backward, clip the gradients
/// to a global norm of `max_grad_norm` (if given), take an AdamW step at the
/// schedule's learning rate, and clamp the logit scale to `≤ ln 100`.
///
/// `grads` is a gradient twin of `model` (`Params::zeros_like`), kept by the
/// caller so no step allocates a whole model.
///
/// # Errors
/// [`StepError`] naming the step if the loss or a gradient is not finite;
/// then neither `model` nor `opt` has changed.
///
/// # Panics
/// If the batch does not fit the model (see [`Model::forward`]).
#[allow(clippy::too_many_arguments)]
pub fn train_step(
    model: &mut Model,
    grads: &mut Model,
    opt: &mut AdamWState<Model>,
    batch: &Batch,
    weights: LossWeights,
    step: usize,
    schedule: &Schedule,
    max_grad_norm: Option<f32>,
) -> Result<StepStats, StepError> {
    let lr = schedule.lr(step);
    grads.zero();

    let (out, cache) = model.forward(&batch.images, &batch.tokens, &batch.lengths);
    let contrastive = contrastive_loss(&out.image_embeds, &out.text_embeds, out.logit_scale);
    let caption = caption_loss(&out.logits, &batch.tokens, &batch.lengths);
    let loss = weights.contrastive * contrastive.loss + weights.caption * caption.loss;
    if !loss.is_finite() {
        return Err(StepError::NonFiniteLoss {
            step,
            contrastive: contrastive.loss,
            caption: caption.loss,
        });
    }

    // L = w_c · L_contrastive + w_cap · L_caption: each part's gradient times its weight
    let mut dlogits = caption.dlogits;
    dlogits *= weights.caption;
    let dout = ModelOutputGrads {
        dimage_embeds: contrastive.dimage_embeds * weights.contrastive,
        dtext_embeds: contrastive.dtext_embeds * weights.contrastive,
        dlogit_scale: contrastive.dscale * weights.contrastive,
        dlogits,
    };
    drop(out);
    model.backward(&dout, &cache, grads);
    drop(cache);

    let grad_norm = match max_grad_norm {
        Some(max) => clip_grad_norm(grads, max),
        None => crate::clip::global_norm(grads),
    };
    if !grad_norm.is_finite() {
        let name = grads
            .params()
            .into_iter()
            .find(|(_, g)| g.iter().any(|x| !x.is_finite()))
            .map_or_else(|| "the global norm".to_string(), |(name, _)| name);
        return Err(StepError::NonFiniteGradient { step, name });
    }

    opt.step(model, grads, lr);
    model.clamp_logit_scale();
    Ok(StepStats {
        loss,
        contrastive: contrastive.loss,
        caption: caption.loss,
        grad_norm,
        lr,
        logit_scale: model.logit_scale_exp(),
    })
}
// ANCHOR_END: train_step

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adamw::{AdamW, no_decay};
    use embedding::init;
    use model::ModelConfig;
    use ndarray::array;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    const VOCAB: usize = 12; // bos 9, eos 10, pad 11

    fn setup() -> (Model, Batch) {
        let model = ModelConfig::micro(VOCAB)
            .init(&mut StdRng::seed_from_u64(0))
            .unwrap();
        let batch = Batch {
            images: init::normal((3, 3, 8, 8), 1.0, &mut StdRng::seed_from_u64(1)),
            tokens: array![
                [9, 1, 2, 3, 10, 11],
                [9, 4, 10, 11, 11, 11],
                [9, 5, 6, 7, 8, 10]
            ],
            lengths: vec![5, 3, 6],
        };
        (model, batch)
    }

    const SCHEDULE: Schedule = Schedule {
        warmup: 2,
        total: 40,
        peak_lr: 3e-3,
        min_lr: 3e-4,
    };

    #[test]
    fn repeated_steps_on_one_batch_lower_the_loss() {
        let (mut model, batch) = setup();
        let mut grads = model.zeros_like();
        let mut opt = AdamWState::new(AdamW::default(), &model);
        let mut losses = Vec::new();
        for step in 0..30 {
            let stats = train_step(
                &mut model,
                &mut grads,
                &mut opt,
                &batch,
                LossWeights::default(),
                step,
                &SCHEDULE,
                Some(1.0),
            )
            .unwrap();
            assert_eq!(stats.lr, SCHEDULE.lr(step));
            losses.push(stats.loss);
        }
        assert!(
            losses[29] < 0.7 * losses[0],
            "loss went from {} to {}",
            losses[0],
            losses[29]
        );
    }

    #[test]
    fn the_logit_scale_is_clamped() {
        let (mut model, batch) = setup();
        model.logit_scale.fill(100f32.ln() + 1.0);
        let mut grads = model.zeros_like();
        let mut opt = AdamWState::new(AdamW::default(), &model);
        let stats = train_step(
            &mut model,
            &mut grads,
            &mut opt,
            &batch,
            LossWeights::default(),
            5,
            &SCHEDULE,
            None,
        )
        .unwrap();
        assert_eq!(model.logit_scale[()], 100f32.ln());
        assert_eq!(stats.logit_scale, model.logit_scale_exp());
    }

    #[test]
    fn a_nan_weight_stops_the_step_without_touching_the_model() {
        let (mut model, batch) = setup();
        model.text_projection.weight[[0, 0]] = f32::NAN;
        let before = model.clone();
        let mut grads = model.zeros_like();
        let mut opt = AdamWState::new(AdamW::default(), &model);
        let err = train_step(
            &mut model,
            &mut grads,
            &mut opt,
            &batch,
            LossWeights::default(),
            7,
            &SCHEDULE,
            Some(1.0),
        )
        .unwrap_err();
        assert!(err.to_string().starts_with("step 7: non-finite"), "{err}");
        // NaN != NaN: compare bit patterns
        let bits = |m: &Model| -> Vec<u32> {
            m.params()
                .iter()
                .flat_map(|(_, t)| t.iter().map(|x| x.to_bits()).collect::<Vec<_>>())
                .collect()
        };
        assert_eq!(bits(&model), bits(&before));
        assert_eq!(opt.steps, 0);
    }

    #[test]
    fn a_nan_gradient_is_named() {
        let err = StepError::NonFiniteGradient {
            step: 3,
            name: "decoder.ln_final.weight".into(),
        };
        assert_eq!(
            err.to_string(),
            "step 3: non-finite gradient in decoder.ln_final.weight; weights not updated"
        );
    }

    #[test]
    fn every_vector_of_the_model_is_left_undecayed() {
        for image in [None, Some(ModelConfig::micro_cnn())] {
            let mut config = ModelConfig::micro(VOCAB);
            if let Some(image) = image {
                config.image = image;
            }
            let model = config.init(&mut StdRng::seed_from_u64(0)).unwrap();
            for (name, tensor) in model.params() {
                if tensor.ndim() < 2 {
                    assert!(no_decay(&name), "{name} is a vector and must not decay");
                }
            }
        }
    }
}
