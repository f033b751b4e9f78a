//! One training step of the multimodal LLM, or of its language model alone.
//!
//! The multimodal step is the CLIP step's shape with one loss: forward with
//! the stage's frozen parts, the answer loss on the spliced sequence,
//! backward (frozen parts cost nothing), clip, and an AdamW update of the
//! trainable parts only. The text-only step trains the language model on
//! the same chat format without the picture: the stage that teaches it the
//! world's language before it ever sees an image.

use embedding::Params;
use model::{Freeze, LanguageModel, Vlm, answer_loss};
use ndarray::{Array2, Array3, Array4, ArrayRef2, Axis, s};

use crate::adamw::AdamWState;
use crate::clip::clip_grad_norm;
use crate::schedule::Schedule;
use crate::step::StepError;

/// A batch of conversations about pictures (or, with no images, of text).
#[derive(Debug, Clone, PartialEq)]
pub struct ChatBatch {
    /// `[B, 3, H, W]`; empty (`B = 0`) for the text-only model.
    pub images: Array4<f32>,
    /// `[B, T]`: each row a [`model::ChatExample`]'s IDs, padded at the end.
    pub tokens: Array2<u32>,
    /// `[B, T]`: 1 where the token is a target (an answer token, or for the
    /// text-only model every real token), 0 elsewhere.
    pub weights: Array2<f32>,
}

/// What one step measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChatStepStats {
    /// The answer loss (mean over the target tokens).
    pub loss: f32,
    /// The global gradient norm before clipping.
    pub grad_norm: f32,
    /// The learning rate used.
    pub lr: f32,
    /// Target tokens in the batch.
    pub tokens: f32,
}

// ANCHOR: vlm_train_step
/// One step of the multimodal model with the parts in `freeze` frozen:
/// zero `grads`; forward, answer loss and backward one group of rows of
/// about one length at a time ([`length_groups`]); clip to
/// `max_grad_norm`; AdamW on the trainable parts.
///
/// # Errors
/// [`StepError`] naming the step if the loss or a gradient is not finite;
/// then neither `vlm` nor `opt` has changed.
///
/// # Panics
/// If the batch does not fit the model (see [`Vlm::forward`]).
#[allow(clippy::too_many_arguments)]
pub fn vlm_train_step(
    vlm: &mut Vlm,
    grads: &mut Vlm,
    opt: &mut AdamWState<Vlm>,
    batch: &ChatBatch,
    freeze: Freeze,
    step: usize,
    schedule: &Schedule,
    max_grad_norm: Option<f32>,
) -> Result<ChatStepStats, StepError> {
    let lr = schedule.lr(step);
    grads.zero();
    let (loss, tokens) = vlm_gradients(vlm, grads, batch, freeze, step, LENGTH_GROUP)?;
    let grad_norm = clip(grads, step, max_grad_norm)?;
    opt.step_where(vlm, grads, lr, |name| !freeze.is_frozen(name));
    Ok(ChatStepStats {
        loss,
        grad_norm,
        lr,
        tokens,
    })
}
// ANCHOR_END: vlm_train_step

/// One step of the text-only language model: next-token loss where
/// `batch.weights` says (its images are ignored).
///
/// # Errors
/// As [`vlm_train_step`].
pub fn lm_train_step(
    lm: &mut LanguageModel,
    grads: &mut LanguageModel,
    opt: &mut AdamWState<LanguageModel>,
    batch: &ChatBatch,
    step: usize,
    schedule: &Schedule,
    max_grad_norm: Option<f32>,
) -> Result<ChatStepStats, StepError> {
    let lr = schedule.lr(step);
    grads.zero();
    let (loss, tokens) = lm_gradients(lm, grads, batch, step, LENGTH_GROUP)?;
    let grad_norm = clip(grads, step, max_grad_norm)?;
    opt.step(lm, grads, lr);
    Ok(ChatStepStats {
        loss,
        grad_norm,
        lr,
        tokens,
    })
}

/// Adds the gradient of `batch`'s answer loss into `grads` (trainable
/// parts only), `group` rows at a time; returns the loss and the target
/// weight.
fn vlm_gradients(
    vlm: &Vlm,
    grads: &mut Vlm,
    batch: &ChatBatch,
    freeze: Freeze,
    step: usize,
    group: usize,
) -> Result<(f32, f32), StepError> {
    in_length_groups(
        batch,
        (group, step),
        |b| vlm.targets(&b.tokens, &b.weights),
        |b| vlm.forward(&b.images, &b.tokens, freeze),
        |dlogits, cache| vlm.backward(dlogits, cache, grads),
    )
}

/// [`vlm_gradients`] for the text-only model.
fn lm_gradients(
    lm: &LanguageModel,
    grads: &mut LanguageModel,
    batch: &ChatBatch,
    step: usize,
    group: usize,
) -> Result<(f32, f32), StepError> {
    in_length_groups(
        batch,
        (group, step),
        |b| shifted_targets(&b.tokens, &b.weights),
        |b| lm.forward(&b.tokens),
        |dlogits, cache| lm.backward(dlogits, cache, grads),
    )
}

// ANCHOR: length_groups
/// Rows that go through the model together: a batch's conversations,
/// sorted by length, this many at a time, each group cut after its longest
/// row.
pub const LENGTH_GROUP: usize = 8;

/// The batch's rows in groups of up to `group` of about one length, each
/// group with the length it needs: a row is needed up to its last target
/// token, since no target's logits depend on a later position (the mask
/// lets nothing see ahead but the picture and the first question, which
/// come before every answer). One long description in a batch then no
/// longer makes every short answer's row pay for its padding. Rows with
/// no target are left out.
pub fn length_groups(weights: &ArrayRef2<f32>, group: usize) -> Vec<(Vec<usize>, usize)> {
    let mut rows: Vec<(usize, usize)> = weights
        .rows()
        .into_iter()
        .enumerate()
        .filter_map(|(b, w)| w.iter().rposition(|&w| w > 0.0).map(|last| (last + 1, b)))
        .collect();
    rows.sort_unstable();
    rows.chunks(group.max(1))
        .map(|chunk| {
            let len = chunk.last().map_or(0, |&(len, _)| len);
            (chunk.iter().map(|&(_, b)| b).collect(), len)
        })
        .collect()
}

/// The batch's loss and gradient, one length group of `group` rows at a
/// time (`step` names the step in an error): `targets` makes a group's
/// targets and their weights, `forward` its logits, and `backward` adds
/// the gradient of given logit gradients into the gradients. Each group's
/// logit gradient is scaled by its share of the batch's target weight, so
/// the result, the loss and the target weight of the whole batch, is what
/// one pass over the whole batch gives (the same loss, the same gradient,
/// up to the order of the sums).
pub(crate) fn in_length_groups<C>(
    batch: &ChatBatch,
    (group, step): (usize, usize),
    targets: impl Fn(&ChatBatch) -> (Array2<u32>, Array2<f32>),
    forward: impl Fn(&ChatBatch) -> (Array3<f32>, C),
    mut backward: impl FnMut(&Array3<f32>, &C),
) -> Result<(f32, f32), StepError> {
    let groups: Vec<_> = length_groups(&batch.weights, group)
        .into_iter()
        .map(|(rows, len)| {
            let images = if batch.images.is_empty() {
                batch.images.clone() // the text-only model has none
            } else {
                batch.images.select(Axis(0), &rows)
            };
            let part = ChatBatch {
                images,
                tokens: batch
                    .tokens
                    .select(Axis(0), &rows)
                    .slice_move(s![.., ..len]),
                weights: batch
                    .weights
                    .select(Axis(0), &rows)
                    .slice_move(s![.., ..len]),
            };
            let (t, w) = targets(&part);
            (part, t, w)
        })
        .collect();
    let total: f32 = groups.iter().map(|(_, _, w)| w.sum()).sum();
    let mut loss = 0.0;
    for (part, targets, weights) in &groups {
        let (logits, cache) = forward(part);
        let mut part_loss = answer_loss(&logits, targets, weights);
        drop(logits);
        check_loss(step, part_loss.loss)?;
        let share = if total > 0.0 {
            weights.sum() / total
        } else {
            0.0
        };
        part_loss.dlogits *= share;
        backward(&part_loss.dlogits, &cache);
        loss += share * part_loss.loss;
    }
    Ok((loss, total))
}
// ANCHOR_END: length_groups

/// The text-only model's targets: position `t` predicts token `t + 1`, with
/// that token's weight; the last position predicts nothing.
///
/// # Shapes
/// - `tokens, weights: [B, T]` → `targets, weights: [B, T]`
pub fn shifted_targets(
    tokens: &ArrayRef2<u32>,
    weights: &ArrayRef2<f32>,
) -> (Array2<u32>, Array2<f32>) {
    let (batch, seq) = tokens.dim();
    let mut targets = Array2::zeros((batch, seq));
    let mut target_weights = Array2::zeros((batch, seq));
    if seq > 1 {
        targets
            .slice_mut(s![.., ..seq - 1])
            .assign(&tokens.slice(s![.., 1..]));
        target_weights
            .slice_mut(s![.., ..seq - 1])
            .assign(&weights.slice(s![.., 1..]));
    }
    (targets, target_weights)
}

pub(crate) fn check_loss(step: usize, loss: f32) -> Result<(), StepError> {
    if loss.is_finite() {
        Ok(())
    } else {
        Err(StepError::NonFiniteLoss {
            step,
            contrastive: 0.0,
            caption: loss,
        })
    }
}

/// Clips to `max_grad_norm` (if given) and returns the norm before; a
/// non-finite gradient is an error naming the first tensor that holds one.
pub(crate) fn clip<P: Params>(
    grads: &mut P,
    step: usize,
    max_grad_norm: Option<f32>,
) -> Result<f32, StepError> {
    let grad_norm = match max_grad_norm {
        Some(max) => clip_grad_norm(grads, max),
        None => crate::clip::global_norm(grads),
    };
    if grad_norm.is_finite() {
        return Ok(grad_norm);
    }
    let name = grads
        .params()
        .into_iter()
        .find(|(_, g)| g.iter().any(|x| !x.is_finite()))
        .map_or_else(|| "the global norm".to_string(), |(name, _)| name);
    Err(StepError::NonFiniteGradient { step, name })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adamw::AdamW;
    use model::{VlmConfig, VlmMask};
    use ndarray::array;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    const VOCAB: usize = 16; // image 11, user 12, assistant 13, end 14, pad 15

    fn batch() -> ChatBatch {
        ChatBatch {
            images: embedding::init::normal((2, 3, 8, 8), 1.0, &mut StdRng::seed_from_u64(1)),
            tokens: array![[12, 3, 11, 4, 13, 5, 6, 14], [12, 11, 2, 13, 7, 14, 15, 15]],
            weights: array![
                [0.0f32, 0., 0., 0., 0., 1., 1., 1.],
                [0., 0., 0., 0., 1., 1., 0., 0.]
            ],
        }
    }

    /// Five conversations of different lengths, padded to the longest; the
    /// third has two turns, the fifth ends early.
    fn ragged_batch() -> ChatBatch {
        let p = 15;
        ChatBatch {
            images: embedding::init::normal((5, 3, 8, 8), 1.0, &mut StdRng::seed_from_u64(3)),
            tokens: array![
                [12, 11, 4, 13, 5, 14, p, p, p, p, p, p],
                [12, 11, 2, 3, 4, 13, 6, 7, 8, 14, p, p],
                [12, 11, 1, 13, 9, 14, 12, 2, 13, 3, 4, 14],
                [12, 11, 5, 13, 6, 14, p, p, p, p, p, p],
                [12, 3, 11, 13, 7, 14, p, p, p, p, p, p],
            ],
            weights: array![
                [0.0f32, 0., 0., 0., 1., 1., 0., 0., 0., 0., 0., 0.],
                [0., 0., 0., 0., 0., 0., 1., 1., 1., 1., 0., 0.],
                [0., 0., 0., 0., 0.5, 0.5, 0., 0., 0., 0.5, 0.25, 0.25],
                [0., 0., 0., 0., 1., 1., 0., 0., 0., 0., 0., 0.],
                [0., 0., 0., 0., 1., 0., 0., 0., 0., 0., 0., 0.],
            ],
        }
    }

    #[test]
    fn length_groups_sort_rows_and_cut_each_group_after_its_last_target() {
        let b = ragged_batch();
        assert_eq!(
            length_groups(&b.weights, 2),
            vec![(vec![4, 0], 6), (vec![3, 1], 10), (vec![2], 12)]
        );
        let mut none = b.weights.clone();
        none.row_mut(1).fill(0.0);
        assert_eq!(
            length_groups(&none, 16),
            vec![(vec![4, 0, 3, 2], 12)],
            "a row without a target is left out"
        );
        assert!(length_groups(&Array2::<f32>::zeros((3, 4)), 2).is_empty());
    }

    fn assert_close<P: Params>(a: &P, b: &P, what: &str) {
        for ((name, x), (_, y)) in a.params().into_iter().zip(b.params()) {
            let scale = y.iter().fold(1e-3f32, |m, v| m.max(v.abs()));
            let worst = x
                .iter()
                .zip(y.iter())
                .fold(0f32, |m, (x, y)| m.max((x - y).abs()));
            assert!(
                worst <= 1e-5 * scale,
                "{what}: {name} differs by {worst} (scale {scale})"
            );
        }
    }

    #[test]
    fn cut_groups_give_the_whole_padded_batchs_loss_and_gradient() {
        let b = ragged_batch();
        for mask in [VlmMask::Causal, VlmMask::PrefixLm] {
            let config = VlmConfig {
                mask,
                ..VlmConfig::micro(VOCAB, 24)
            };
            let vlm = config.init(&mut StdRng::seed_from_u64(4)).unwrap();
            let freeze = Freeze {
                vision_tower: false,
                projector: false,
                language_model: false,
            };
            // the reference: the whole batch at its padded length, at once
            let mut whole = vlm.zeros_like();
            let (targets, target_weights) = vlm.targets(&b.tokens, &b.weights);
            let (logits, cache) = vlm.forward(&b.images, &b.tokens, freeze);
            let reference = answer_loss(&logits, &targets, &target_weights);
            vlm.backward(&reference.dlogits, &cache, &mut whole);
            for group in [1, 2, 3, 16] {
                let mut grads = vlm.zeros_like();
                let (loss, weight) = vlm_gradients(&vlm, &mut grads, &b, freeze, 0, group).unwrap();
                assert!((loss - reference.loss).abs() < 1e-5, "{mask:?} {group}");
                assert_eq!(weight, reference.weight);
                assert_close(&grads, &whole, &format!("{mask:?}, groups of {group}"));
            }
        }
        let lm = model::LmConfig::micro(VOCAB, 12).init(&mut StdRng::seed_from_u64(5));
        let mut whole = lm.zeros_like();
        let (targets, target_weights) = shifted_targets(&b.tokens, &b.weights);
        let (logits, cache) = lm.forward(&b.tokens);
        let reference = answer_loss(&logits, &targets, &target_weights);
        lm.backward(&reference.dlogits, &cache, &mut whole);
        for group in [1, 2, 16] {
            let mut grads = lm.zeros_like();
            let (loss, weight) = lm_gradients(&lm, &mut grads, &b, 0, group).unwrap();
            assert!((loss - reference.loss).abs() < 1e-5, "text-only, {group}");
            assert_eq!(weight, reference.weight);
            assert_close(&grads, &whole, &format!("text-only, groups of {group}"));
        }
    }

    #[test]
    fn frozen_parts_stay_exactly_as_they_were_and_the_loss_falls() {
        let config = VlmConfig {
            mask: VlmMask::PrefixLm,
            ..VlmConfig::micro(VOCAB, 16)
        };
        let mut vlm = config.init(&mut StdRng::seed_from_u64(0)).unwrap();
        let before = vlm.clone();
        let mut grads = vlm.zeros_like();
        let mut opt = AdamWState::new(AdamW::default(), &vlm);
        let schedule = Schedule {
            warmup: 0,
            total: 30,
            peak_lr: 1e-2,
            min_lr: 1e-2,
        };
        let freeze = Freeze {
            vision_tower: true,
            projector: false,
            language_model: true,
        };
        let b = batch();
        let mut losses = Vec::new();
        for step in 0..30 {
            losses.push(
                vlm_train_step(
                    &mut vlm,
                    &mut grads,
                    &mut opt,
                    &b,
                    freeze,
                    step,
                    &schedule,
                    Some(1.0),
                )
                .unwrap()
                .loss,
            );
        }
        assert_eq!(vlm.vision_tower, before.vision_tower);
        assert_eq!(vlm.language_model, before.language_model);
        assert_ne!(vlm.multi_modal_projector, before.multi_modal_projector);
        // the projector alone moves a random, frozen LM only a little, but it does
        assert!(losses[29] < losses[0] - 0.02, "{losses:?}");
    }

    #[test]
    fn the_text_only_model_learns_its_sequences() {
        let lm_config = model::LmConfig::micro(VOCAB, 8);
        let mut lm = lm_config.init(&mut StdRng::seed_from_u64(2));
        let mut grads = lm.zeros_like();
        let mut opt = AdamWState::new(AdamW::default(), &lm);
        let schedule = Schedule {
            warmup: 0,
            total: 40,
            peak_lr: 1e-2,
            min_lr: 1e-2,
        };
        let b = ChatBatch {
            images: Array4::zeros((0, 3, 8, 8)),
            tokens: array![[12, 3, 4, 13, 5, 14, 15, 15]],
            weights: array![[1.0f32, 1., 1., 1., 1., 1., 0., 0.]],
        };
        let (targets, w) = shifted_targets(&b.tokens, &b.weights);
        assert_eq!(targets.row(0).to_vec(), [3, 4, 13, 5, 14, 15, 15, 0]);
        assert_eq!(w.row(0).to_vec(), [1., 1., 1., 1., 1., 0., 0., 0.]);
        let first =
            lm_train_step(&mut lm, &mut grads, &mut opt, &b, 0, &schedule, Some(1.0)).unwrap();
        let mut last = first;
        for step in 1..40 {
            last = lm_train_step(
                &mut lm,
                &mut grads,
                &mut opt,
                &b,
                step,
                &schedule,
                Some(1.0),
            )
            .unwrap();
        }
        assert_eq!(first.tokens, 5.0);
        assert!(
            last.loss < 0.2 * first.loss,
            "{} -> {}",
            first.loss,
            last.loss
        );
    }
}
