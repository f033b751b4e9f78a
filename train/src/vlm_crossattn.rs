//! The other way to join vision and language on the same question data:
//! the caption decoder of stage 1, which reads the picture through
//! cross-attention, instruction-tuned on stage 4's conversations.
//!
//! ```text
//! images [B, 3, H, W] ─ vision tower (stage 1's, frozen) ─ image tokens [B, N_img, C_img] ──┐ keys and values of
//!                                                                                          │ every block's cross-attention
//! <|user|> what colour is the circle ? <|assistant|> red <|end|> ─ decoder (causal) ───────┴─ logits [B, T, V]
//! ```
//!
//! The multimodal LLM ([`model::Vlm`]) puts the picture into its context:
//! `<|image|>` is replaced by projected image tokens, and the language
//! model reads them as it reads words. The caption decoder keeps its
//! context for text and reads the picture in every block, through
//! cross-attention (Flamingo and CoCa join them this way). So the same
//! conversations are encoded as stage 4 encodes them (the same batches,
//! the same answer weights) and the `<|image|>` token is taken out: the
//! decoder's prefix is the question, its loss is on the answer tokens
//! only ([`model::answer_loss`]), and the picture comes in beside.
//!
//! The starting point is the whole CLIP model of stage 1, whose decoder has
//! learned to caption these scenes from this tower: what stages 2 and 3
//! give the multimodal LLM (a model of the world's language, and a link
//! from the tower to it). Its position tables grow from a caption's length
//! to a conversation's ([`conversation_model`]). The tower is frozen as in
//! the recipe's stage 4 (trained when the recipe unfreezes it), the rest
//! of the CLIP model (text tower, projections) is not used.
//!
//! ```text
//! <run>/
//! ├── cross-attention.json   the recipe (VlmRunConfig: stage 1, and stage 4's length and rates)
//! ├── tokenizer.txt          the run's tokenizer
//! ├── 1-clip/                the vision tower and the decoder to start from
//! ├── 4-cross-attention/     checkpoint/: a CLIP model checkpoint (train caption reads it), optimiser, history
//! └── metrics.json           the evaluation (vlm_run::VlmMetrics), the same as a multimodal run's
//! ```

use std::ops::Range;
use std::path::Path;

use embedding::Params;
use model::generate::{GenerationConfig, greedy};
use model::{
    CachedDecoder, ChatTokens, DecoderCache, ImageEncoderCache, ImageSlot, Model, batch_slices,
    encode_prompt,
};
use ndarray::{
    Array2, Array3, ArrayRef2, ArrayRef3, ArrayRef4, ArrayView4, Axis, Slice, concatenate, s,
};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rayon::prelude::*;
use tokenizer::Tokenizer;

use crate::adamw::AdamWState;
use crate::data::questions::Example;
use crate::run::{self, CHECKPOINT_DIR, HISTORY_FILE, Progress, RunError, checkpoint_dir};
use crate::schedule::Schedule;
use crate::step::StepError;
use crate::vlm_eval::MAX_ANSWER_TOKENS;
use crate::vlm_run::{
    ChatHistory, ChatState, Generated, MAX_CONVERSATION_TOKENS, Stage, TableRecord,
    VLM_METRICS_FILE, VLM_TOKENIZER_FILE, VlmData, VlmMetrics, VlmRunConfig, adamw, chat_loop,
    load_chat,
};
use crate::vlm_step::{
    ChatBatch, ChatStepStats, LENGTH_GROUP, clip, in_length_groups, shifted_targets,
};

/// The recipe file of a cross-attention run.
pub const CROSS_RUN_FILE: &str = "cross-attention.json";
/// Its training stage's folder.
pub const CROSS_STAGE: &str = "4-cross-attention";

// ANCHOR: conversation_model
/// The CLIP model `clip` with position tables long enough for a
/// conversation ([`MAX_CONVERSATION_TOKENS`]): every weight is `clip`'s,
/// and the rows past its captions' length are fresh (`seed`).
///
/// # Errors
/// [`RunError::Config`] if the longer model cannot be built.
pub fn conversation_model(clip: &Model, seed: u64) -> Result<Model, RunError> {
    let mut config = clip.config().clone();
    config.max_len = config.max_len.max(MAX_CONVERSATION_TOKENS);
    let mut model = config
        .init(&mut StdRng::seed_from_u64(seed))
        .map_err(RunError::Config)?;
    // the same names in the same order: only max_len differs
    for ((name, mut new), (old_name, old)) in model.params_mut().into_iter().zip(clip.params()) {
        assert_eq!(name, old_name, "the same config lists the same tensors");
        if new.shape() == old.shape() {
            new.assign(&old);
        } else {
            // a position table: [T_max, C], the first rows are the caption's
            let rows = old.shape()[0];
            new.slice_axis_mut(Axis(0), Slice::from(..rows))
                .assign(&old);
        }
    }
    Ok(model)
}
// ANCHOR_END: conversation_model

/// The batch without the `<|image|>` placeholder: each row closes up over
/// it (its weight goes with it), and the rows are padded with `pad`, weight
/// 0, to the longest.
///
/// # Shapes
/// - `tokens, weights: [B, T]` → `[B, T − 1]` when every row held one `<|image|>`
pub fn strip_image(batch: &ChatBatch, image: u32, pad: u32) -> ChatBatch {
    let rows: Vec<(Vec<u32>, Vec<f32>)> = batch
        .tokens
        .rows()
        .into_iter()
        .zip(batch.weights.rows())
        .map(|(ids, weights)| {
            ids.iter()
                .zip(weights.iter())
                .filter(|&(&id, _)| id != image)
                .map(|(&id, &w)| (id, w))
                .unzip()
        })
        .collect();
    let seq = rows.iter().map(|(ids, _)| ids.len()).max().unwrap_or(0);
    let mut tokens = Array2::from_elem((rows.len(), seq), pad);
    let mut weights = Array2::zeros((rows.len(), seq));
    for (b, (ids, w)) in rows.iter().enumerate() {
        for (t, (&id, &w)) in ids.iter().zip(w).enumerate() {
            tokens[[b, t]] = id;
            weights[[b, t]] = w;
        }
    }
    ChatBatch {
        images: batch.images.clone(),
        tokens,
        weights,
    }
}

/// Whether the parameter `name` of the model trains: the decoder always,
/// the image tower when `train_tower` (the rest is not used).
pub fn trains(name: &str, train_tower: bool) -> bool {
    name.starts_with("decoder.") || (train_tower && name.starts_with("image."))
}

/// What [`crossattn_backward`] needs: the caches of each slice of the batch.
#[derive(Debug, Clone)]
pub struct CrossAttnCache {
    slices: Vec<(Range<usize>, SliceCache)>, // the rows of each slice, and its cache
    train_tower: bool,
}

#[derive(Debug, Clone)]
struct SliceCache {
    tower: Option<ImageEncoderCache>, // None when the tower is frozen
    pooled_dim: (usize, usize),       // (B, C_img)
    decoder: DecoderCache,
}

// ANCHOR: crossattn_forward
/// The decoder's next-token logits for conversations about pictures: the
/// tower's tokens of each picture are what every block cross-attends to.
/// The batch is cut into [`batch_slices`] run on rayon's threads, as the
/// other models do; the results do not depend on the thread count.
///
/// # Shapes
/// - `images: [B, 3, H, W]`, `tokens: [B, T]` (no `<|image|>`) → `logits: [B, T, V]`
///
/// # Panics
/// If the batch sizes differ, a token is outside the vocabulary, or `T`
/// exceeds the decoder's position table.
#[track_caller]
pub fn crossattn_forward(
    model: &Model,
    images: &ArrayRef4<f32>,
    tokens: &ArrayRef2<u32>,
    train_tower: bool,
) -> (Array3<f32>, CrossAttnCache) {
    assert_eq!(
        images.dim().0,
        tokens.nrows(),
        "cross-attention: images are {:?}, tokens are {:?}",
        images.dim(),
        tokens.dim()
    );
    let slices: Vec<_> = batch_slices(tokens.nrows())
        .into_par_iter()
        .map(|rows| {
            let (tower, tower_cache) =
                model
                    .image
                    .forward(&images.slice(s![rows.clone(), .., .., ..])); // tokens [B, N_img, C_img]
            let (logits, decoder) = model
                .decoder
                .forward(&tower.tokens, &tokens.slice(s![rows.clone(), ..])); // [B, T, V]
            let cache = SliceCache {
                tower: train_tower.then_some(tower_cache),
                pooled_dim: tower.pooled.dim(),
                decoder,
            };
            (logits, (rows, cache))
        })
        .collect();
    let logits: Vec<_> = slices.iter().map(|(logits, _)| logits.view()).collect();
    let logits = concatenate(Axis(0), &logits).unwrap(); // same T and V in every slice
    let slices = slices.into_iter().map(|(_, cache)| cache).collect();
    (
        logits,
        CrossAttnCache {
            slices,
            train_tower,
        },
    )
}

/// Adds the gradients of the decoder (and of the tower, when it trains)
/// into `grads`, a zeroed twin: the decoder's backward returns the image
/// tokens' gradient, which the tower takes (its pooled vector feeds nothing
/// here). Slices run in parallel into twins added in slice order.
///
/// # Panics
/// If `dlogits` is not the logits' shape.
#[track_caller]
pub fn crossattn_backward(
    model: &Model,
    dlogits: &ArrayRef3<f32>,
    cache: &CrossAttnCache,
    grads: &mut Model,
) {
    let mut twins: Vec<Model> = cache.slices[1..]
        .iter()
        .map(|_| model.zeros_like())
        .collect();
    let mut targets: Vec<&mut Model> = std::iter::once(&mut *grads).chain(&mut twins).collect();
    targets
        .par_iter_mut()
        .zip(&cache.slices)
        .for_each(|(grads, (rows, slice))| {
            let dimage_tokens = model.decoder.backward(
                &dlogits.slice(s![rows.clone(), .., ..]),
                &slice.decoder,
                &mut grads.decoder,
            ); // [B, N_img, C_img]
            if let Some(tower) = &slice.tower {
                let dpooled = Array2::zeros(slice.pooled_dim);
                model
                    .image
                    .backward(&dimage_tokens, &dpooled, tower, &mut grads.image);
            }
        });
    for twin in &twins {
        let pairs = grads.params_mut().into_iter().zip(twin.params());
        for ((name, mut sum), (_, part)) in pairs {
            if trains(&name, cache.train_tower) {
                sum.zip_mut_with(&part, |sum, &part| *sum += part);
            }
        }
    }
}
// ANCHOR_END: crossattn_forward

// ANCHOR: crossattn_train_step
/// One step of the cross-attention model on conversations (`batch` without
/// `<|image|>`, [`strip_image`]): zero `grads`; forward, the answer loss
/// (position `t` predicts token `t + 1` with that token's weight) and
/// backward one length group at a time, as the multimodal step does
/// ([`crate::vlm_step::length_groups`]); clip to `max_grad_norm`; AdamW on
/// the decoder (and the tower when `train_tower`).
///
/// # Errors
/// [`StepError`] naming the step if the loss or a gradient is not finite;
/// then neither `model` nor `opt` has changed.
///
/// # Panics
/// If the batch does not fit the model (see [`crossattn_forward`]).
#[allow(clippy::too_many_arguments)]
pub fn crossattn_train_step(
    model: &mut Model,
    grads: &mut Model,
    opt: &mut AdamWState<Model>,
    batch: &ChatBatch,
    train_tower: bool,
    step: usize,
    schedule: &Schedule,
    max_grad_norm: Option<f32>,
) -> Result<ChatStepStats, StepError> {
    let lr = schedule.lr(step);
    grads.zero();
    let (loss, tokens) = in_length_groups(
        batch,
        (LENGTH_GROUP, step),
        |b| shifted_targets(&b.tokens, &b.weights),
        |b| crossattn_forward(model, &b.images, &b.tokens, train_tower),
        |dlogits, cache| crossattn_backward(model, dlogits, cache, grads),
    )?;
    let grad_norm = clip(grads, step, max_grad_norm)?;
    opt.step_where(model, grads, lr, |name| trains(name, train_tower));
    Ok(ChatStepStats {
        loss,
        grad_norm,
        lr,
        tokens,
    })
}
// ANCHOR_END: crossattn_train_step

// ANCHOR: crossattn_answer
/// Answers every turn of `examples` about `images` as
/// [`crate::vlm_eval::answer_turns`] does for the multimodal LLM: turn `k`
/// after the true turns `0..k`, greedily, with the KV cache. The prompt is
/// encoded as in training, `<|image|>` taken out; the picture's tokens are
/// computed once per example.
///
/// # Shapes
/// - `images: [N, 3, H, W]`, one per example
pub fn answer_turns_crossattn(
    model: &Model,
    tokenizer: &Tokenizer,
    tokens: &ChatTokens,
    examples: &[Example],
    images: &ArrayView4<f32>,
) -> Vec<String> {
    let decoder = &model.decoder;
    let max_len = decoder.max_len();
    let mut answers = Vec::new();
    for (example, image) in examples.iter().zip(images.axis_iter(Axis(0))) {
        let image = image.insert_axis(Axis(0)); // [1, 3, H, W]
        let (tower, _) = model.image.forward(&image); // tokens [1, N_img, C_img]
        let turns = example.conversation.chat_turns();
        for k in 0..turns.len() {
            let Ok(prompt) = encode_prompt(
                tokenizer,
                tokens,
                &turns[..k],
                &turns[k].user,
                ImageSlot::Required,
            ) else {
                answers.push(String::new()); // a question the chat format refuses: scored wrong
                continue;
            };
            let prompt: Vec<u32> = prompt
                .into_iter()
                .filter(|&id| id != tokens.image)
                .collect();
            if prompt.len() + 2 > max_len {
                answers.push(String::new()); // no room to answer: scored wrong
                continue;
            }
            let mut state = decoder.start(&tower.tokens);
            let row = Array2::from_shape_vec((1, prompt.len()), prompt).expect("one row");
            decoder.step(&mut state, &row); // the prompt into the cache
            let cfg = GenerationConfig {
                bos: tokens.assistant,
                eos: tokens.end,
                max_new_tokens: MAX_ANSWER_TOKENS.min(max_len - row.ncols()),
            };
            let out = greedy(&CachedDecoder { decoder }, state, &cfg);
            let bytes = tokenizer.decode_bytes(&out.ids).unwrap_or_default();
            answers.push(String::from_utf8_lossy(&bytes).into_owned());
        }
    }
    answers
}
// ANCHOR_END: crossattn_answer

/// The run's tokenizer, from `run/tokenizer.txt`.
fn read_tokenizer(run: &Path) -> Result<Tokenizer, RunError> {
    let path = run.join(VLM_TOKENIZER_FILE);
    let text = model::read_limited(&path, model::checkpoint::MAX_TEXT_FILE_BYTES)
        .map_err(run::io(&path))?;
    Tokenizer::from_text(&String::from_utf8_lossy(&text)).map_err(RunError::Tokenizer)
}

fn chat_tokens(tokenizer: &Tokenizer) -> Result<ChatTokens, RunError> {
    ChatTokens::from_tokenizer(tokenizer).map_err(|e| RunError::BadValue {
        name: "tokenizer",
        why: e.to_string(),
    })
}

/// The checkpoint of stage 1 in `run`.
fn clip_checkpoint(run: &Path) -> Result<std::path::PathBuf, RunError> {
    let dir = run.join(Stage::Clip.folder());
    checkpoint_dir(&dir).ok_or_else(|| RunError::Io {
        path: dir.join(CHECKPOINT_DIR),
        source: std::io::Error::new(std::io::ErrorKind::NotFound, "the stage has no checkpoint"),
    })
}

// ANCHOR: train_crossattn
/// Trains (or resumes) the cross-attention model of `run`, a folder holding
/// [`CROSS_RUN_FILE`], the tokenizer and a finished stage 1: stage 4's
/// batches, length and learning rates, a checkpoint every
/// `checkpoint_interval` steps and at the end. Returns the recipe.
///
/// # Errors
/// A missing or damaged file, a locked folder, a non-finite loss (the
/// last checkpoint stays).
pub fn train_crossattn(run: &Path, progress: Progress) -> Result<VlmRunConfig, RunError> {
    let lock = run::lock(run)?;
    let config: VlmRunConfig = run::read_json(&run.join(CROSS_RUN_FILE))?;
    config.validate()?;
    let tokenizer = read_tokenizer(run)?;
    let tokens = chat_tokens(&tokenizer)?;
    let dir = run.join(CROSS_STAGE);
    let stage = config.instruct;
    let mut state = match load_chat::<Model>(&dir, &config, stage.steps)? {
        Some(state) => state,
        None => {
            let clip = model::load_checkpoint(&clip_checkpoint(run)?)
                .map_err(RunError::Checkpoint)?
                .model;
            let model = conversation_model(&clip, config.seed ^ 4)?;
            let opt = AdamWState::new(adamw(&config), &model); // fresh moments for a new stage
            ChatState {
                model,
                opt,
                step: 0,
                history: ChatHistory::default(),
            }
        }
    };
    let data = Generated { config: &config };
    let vlm_config = config.vlm_config(&tokenizer)?; // what chat stages save with; unused here
    let mut grads = state.model.zeros_like();
    chat_loop(
        &dir,
        (
            "cross-attention decoder on the conversations of stage 4",
            CROSS_STAGE,
        ),
        &stage,
        &mut state,
        &tokenizer,
        &vlm_config,
        config.checkpoint_interval,
        progress,
        |state, step, schedule| {
            let batch = data.chat_batch(Stage::Instruct, step as u64, &tokenizer, &tokens);
            let batch = strip_image(&batch, tokens.image, tokens.pad);
            crossattn_train_step(
                &mut state.model,
                &mut grads,
                &mut state.opt,
                &batch,
                config.unfreeze_vision,
                step,
                schedule,
                Some(config.max_grad_norm),
            )
        },
        None,
    )?;
    drop(lock);
    Ok(config)
}
// ANCHOR_END: train_crossattn

/// Evaluates the trained cross-attention model of `run` as
/// [`crate::vlm_run::finish_vlm`] evaluates a multimodal run (the same
/// conversations, exact match, blind and majority baselines) and writes
/// `metrics.json`; its `stage_seconds` are stage 1's and this stage's
/// (in the place of stage 4).
///
/// # Errors
/// A missing or damaged checkpoint, a file that cannot be written.
pub fn finish_crossattn(run: &Path, config: &VlmRunConfig) -> Result<VlmMetrics, RunError> {
    let tokenizer = read_tokenizer(run)?;
    let tokens = chat_tokens(&tokenizer)?;
    let dir = run.join(CROSS_STAGE);
    let checkpoint = checkpoint_dir(&dir).ok_or_else(|| RunError::Io {
        path: dir.join(CHECKPOINT_DIR),
        source: std::io::Error::new(std::io::ErrorKind::NotFound, "the stage has no checkpoint"),
    })?;
    let model = model::load_checkpoint(&checkpoint)
        .map_err(RunError::Checkpoint)?
        .model;
    let report =
        crate::vlm_eval::evaluate_answers(&config.qa_data(), config.eval_count, |ex, images| {
            answer_turns_crossattn(&model, &tokenizer, &tokens, ex, images)
        });
    let seconds = |path: &Path, clip: bool| -> f64 {
        let path = path.join(HISTORY_FILE);
        if clip {
            run::read_json::<run::History>(&path).map_or(0.0, |h| h.train_seconds)
        } else {
            run::read_json::<ChatHistory>(&path).map_or(0.0, |h| h.train_seconds)
        }
    };
    let clip_seconds = clip_checkpoint(run).map_or(0.0, |dir| seconds(&dir, true));
    // the parts that answer: the tower and the decoder
    let parameters = model
        .params()
        .iter()
        .filter(|(name, _)| trains(name, true))
        .map(|(_, t)| t.len())
        .sum();
    let metrics = VlmMetrics {
        config: config.clone(),
        parameters,
        stage_seconds: [clip_seconds, 0.0, 0.0, seconds(&checkpoint, false)],
        model: TableRecord::from(&report.model),
        blind: TableRecord::from(&report.blind),
        majority: TableRecord::from(&report.majority),
        answered: report.answered,
        own: None,
    };
    run::write_json(&run.join(VLM_METRICS_FILE), &metrics)?;
    Ok(metrics)
}

/// Removes what a cross-attention run folder holds (recipe, tokenizer,
/// stage folders, metrics), under its lock.
///
/// # Errors
/// [`RunError::Locked`] if a training writes it, [`RunError::Io`].
pub fn clear_crossattn(run: &Path) -> Result<(), RunError> {
    if !run.exists() {
        return Ok(());
    }
    crate::vlm_run::remove_run(
        run,
        &[Stage::Clip.folder(), CROSS_STAGE],
        &[CROSS_RUN_FILE, VLM_TOKENIZER_FILE, VLM_METRICS_FILE],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::questions::{
        CHAT_SPECIAL, Conversation, Family, Kind, Turn, TurnMeta, Wording,
    };
    use crate::data::scenes::Pairs;
    use embedding::init;
    use embedding::testing::GradCheck;
    use model::answer_loss;
    use model::{ModelConfig, SpecialTokens, collate, encode_chat};
    use ndarray::{Array4, ArrayViewD, ArrayViewMutD};

    fn tokenizer() -> Tokenizer {
        let lines = [
            "what colour is it?",
            "what shape is it?",
            "red",
            "blue",
            "circle",
            "square",
        ];
        Tokenizer::train_lines(lines, 270)
            .unwrap()
            .with_special_tokens(&CHAT_SPECIAL)
            .unwrap()
    }

    /// A micro CLIP model of `tokenizer`'s vocabulary (8×8 images, a ViT
    /// tower), grown to conversations; tables at std 1 for the gradient
    /// check (LayerNorm divides by the std of its input).
    fn micro_model(tokenizer: &Tokenizer, seed: u64) -> Model {
        let mut config = ModelConfig::micro(tokenizer.vocab_size());
        config.special = SpecialTokens::from_tokenizer(tokenizer).unwrap();
        let mut rng = StdRng::seed_from_u64(seed);
        let mut clip = config.init(&mut rng).unwrap();
        let d = &mut clip.decoder;
        d.token_embedding.weight = init::normal(d.token_embedding.weight.dim(), 1.0, &mut rng);
        d.position_embedding.weight =
            init::normal(d.position_embedding.weight.dim(), 1.0, &mut rng);
        if let model::ImageEncoder::Vit(vit) = &mut clip.image {
            vit.cls_token = init::normal(vit.cls_token.dim(), 1.0, &mut rng);
            vit.pos_embed.weight = init::normal(vit.pos_embed.weight.dim(), 1.0, &mut rng);
        }
        conversation_model(&clip, seed + 1).unwrap()
    }

    /// Two conversations about two pictures, `<|image|>` already taken out.
    fn batch(tokenizer: &Tokenizer) -> ChatBatch {
        let tokens = ChatTokens::from_tokenizer(tokenizer).unwrap();
        let turns = [
            vec![
                model::Turn::new("<|image|> what colour is it?", "red"),
                model::Turn::new("what shape is it?", "circle"),
            ],
            vec![model::Turn::new("<|image|> what colour is it?", "blue")],
        ];
        let encoded: Vec<_> = turns
            .iter()
            .map(|t| encode_chat(tokenizer, &tokens, t, ImageSlot::Required).unwrap())
            .collect();
        let (ids, weights) = collate(&encoded, tokens.pad);
        let images = init::normal((2, 3, 8, 8), 1.0, &mut StdRng::seed_from_u64(9));
        strip_image(
            &ChatBatch {
                images,
                tokens: ids,
                weights,
            },
            tokens.image,
            tokens.pad,
        )
    }

    /// The answer loss written out in f64 from the logits, with the shift
    /// spelled out: position `t` predicts `tokens[t + 1]`, weighted by that
    /// token's weight, and the sum is divided by the total weight.
    fn reference_loss(logits: &Array3<f32>, batch: &ChatBatch) -> f64 {
        let (rows, seq) = batch.tokens.dim();
        let (mut total, mut weight) = (0.0f64, 0.0f64);
        for b in 0..rows {
            for t in 0..seq - 1 {
                let w = f64::from(batch.weights[[b, t + 1]]);
                if w == 0.0 {
                    continue;
                }
                let z = logits.slice(s![b, t, ..]).mapv(f64::from);
                let max = z.fold(f64::NEG_INFINITY, |m, &x| m.max(x));
                let log_sum = z.mapv(|x| (x - max).exp()).sum().ln() + max;
                total += w * (log_sum - z[batch.tokens[[b, t + 1]] as usize]);
                weight += w;
            }
        }
        total / weight
    }

    #[test]
    fn strip_image_takes_out_the_placeholder_with_its_weight() {
        let batch = ChatBatch {
            images: Array4::zeros((2, 3, 1, 1)),
            tokens: ndarray::array![[1, 9, 2, 3, 4], [1, 9, 5, 6, 7]],
            weights: ndarray::array![[0.0, 0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 0.5, 0.5, 0.0]],
        };
        let out = strip_image(&batch, 9, 0);
        assert_eq!(out.tokens, ndarray::array![[1, 2, 3, 4], [1, 5, 6, 7]]);
        assert_eq!(
            out.weights,
            ndarray::array![[0.0, 0.0, 1.0, 1.0], [0.0, 0.5, 0.5, 0.0]]
        );
        // a row without it keeps its length, the others are padded to it
        let batch = ChatBatch {
            tokens: ndarray::array![[1, 9, 2], [1, 2, 3]],
            weights: ndarray::array![[0.0, 0.0, 1.0], [0.0, 1.0, 1.0]],
            ..batch
        };
        let out = strip_image(&batch, 9, 0);
        assert_eq!(out.tokens, ndarray::array![[1, 2, 0], [1, 2, 3]]);
        assert_eq!(
            out.weights,
            ndarray::array![[0.0, 1.0, 0.0], [0.0, 1.0, 1.0]]
        );
    }

    #[test]
    fn the_longer_model_keeps_every_weight_of_the_clip_model() {
        let tok = tokenizer();
        let mut config = ModelConfig::micro(tok.vocab_size());
        config.special = SpecialTokens::from_tokenizer(&tok).unwrap();
        let clip = config.init(&mut StdRng::seed_from_u64(1)).unwrap();
        let long = conversation_model(&clip, 2).unwrap();
        assert_eq!(long.config().max_len, MAX_CONVERSATION_TOKENS);
        assert_eq!(long.decoder.max_len(), MAX_CONVERSATION_TOKENS);
        let rows = clip.config().max_len;
        for ((name, new), (_, old)) in long.params().into_iter().zip(clip.params()) {
            if new.shape() == old.shape() {
                assert_eq!(new, old, "{name}");
            } else {
                assert!(name.ends_with("position_embedding.weight"), "{name}");
                assert_eq!(new.slice_axis(Axis(0), Slice::from(..rows)), old, "{name}");
                assert!(
                    new.slice_axis(Axis(0), Slice::from(rows..))
                        .iter()
                        .any(|&x| x != 0.0)
                );
            }
        }
    }

    // ANCHOR: crossattn_tests
    #[test]
    fn the_loss_is_the_mean_over_the_answer_tokens() {
        let tok = tokenizer();
        let model = micro_model(&tok, 3);
        let batch = batch(&tok);
        let (targets, weights) = shifted_targets(&batch.tokens, &batch.weights);
        let (logits, _) = crossattn_forward(&model, &batch.images, &batch.tokens, false);
        let loss = answer_loss(&logits, &targets, &weights);
        let want = reference_loss(&logits, &batch);
        assert!(
            (f64::from(loss.loss) - want).abs() < 1e-5,
            "{} vs {want}",
            loss.loss
        );
        // "red <|end|>", "circle <|end|>", "blue <|end|>": the answers and their ends
        let answer_tokens = batch.weights.iter().filter(|&&w| w > 0.0).count();
        assert_eq!(loss.weight as usize, answer_tokens);
        assert!(answer_tokens >= 6);
    }

    #[test]
    fn length_groups_give_the_whole_batchs_loss_and_gradient() {
        let tok = tokenizer();
        let model = micro_model(&tok, 4);
        let batch = batch(&tok);
        for train_tower in [false, true] {
            let (targets, weights) = shifted_targets(&batch.tokens, &batch.weights);
            let (logits, cache) =
                crossattn_forward(&model, &batch.images, &batch.tokens, train_tower);
            let whole = answer_loss(&logits, &targets, &weights);
            let mut want = model.zeros_like();
            crossattn_backward(&model, &whole.dlogits, &cache, &mut want);
            let mut got = model.zeros_like();
            let (loss, weight) = in_length_groups(
                &batch,
                (1, 0),
                |b| shifted_targets(&b.tokens, &b.weights),
                |b| crossattn_forward(&model, &b.images, &b.tokens, train_tower),
                |dlogits, cache| crossattn_backward(&model, dlogits, cache, &mut got),
            )
            .unwrap();
            assert!((loss - whole.loss).abs() < 1e-5, "{loss} vs {}", whole.loss);
            assert_eq!(weight, whole.weight);
            for ((name, g), (_, w)) in got.params().into_iter().zip(want.params()) {
                let scale = w.iter().fold(1e-3f32, |m, v| m.max(v.abs()));
                let worst = g
                    .iter()
                    .zip(w.iter())
                    .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
                assert!(worst <= 1e-5 * scale, "{name}: {worst} (scale {scale})");
            }
        }
    }

    /// A module whose parameters are the trainable ones only, so the
    /// gradient check compares exactly what the backward pass promises.
    #[derive(Debug, Clone)]
    struct Trainable {
        model: Model,
        train_tower: bool,
    }
    impl Params for Trainable {
        fn params(&self) -> Vec<(String, ArrayViewD<'_, f32>)> {
            let train_tower = self.train_tower;
            let all = self.model.params().into_iter();
            all.filter(|(n, _)| trains(n, train_tower)).collect()
        }
        fn params_mut(&mut self) -> Vec<(String, ArrayViewMutD<'_, f32>)> {
            let train_tower = self.train_tower;
            let all = self.model.params_mut().into_iter();
            all.filter(|(n, _)| trains(n, train_tower)).collect()
        }
    }

    /// The weighted loss's gradient, through the decoder's hand-written
    /// backward and (when it trains) the tower's, against central
    /// differences of the f64 reference loss; parts that do not train get
    /// exactly nothing.
    #[test]
    fn crossattn_gradcheck_with_the_tower_frozen_and_trained() {
        let tok = tokenizer();
        let model = micro_model(&tok, 4);
        let batch = batch(&tok);
        for train_tower in [false, true] {
            let (targets, weights) = shifted_targets(&batch.tokens, &batch.weights);
            let (logits, cache) =
                crossattn_forward(&model, &batch.images, &batch.tokens, train_tower);
            let loss = answer_loss(&logits, &targets, &weights);
            let mut grads = model.zeros_like();
            crossattn_backward(&model, &loss.dlogits, &cache, &mut grads);
            for (name, g) in grads.params() {
                let nonzero = g.iter().any(|&v| v != 0.0);
                assert_eq!(nonzero, trains(&name, train_tower), "{name}");
            }
            let mut state = Trainable {
                model: model.clone(),
                train_tower,
            };
            let analytic = Trainable {
                model: grads,
                train_tower,
            };
            let check = GradCheck {
                step: 1e-2,
                atol: 1e-4,
                max_per_tensor: 12,
                ..GradCheck::default()
            };
            let report = check
                .run(&mut state, &analytic, |s| {
                    let (logits, _) =
                        crossattn_forward(&s.model, &batch.images, &batch.tokens, false);
                    reference_loss(&logits, &batch)
                })
                .into_result()
                .unwrap_or_else(|r| panic!("train_tower {train_tower}: {r}"));
            assert!(report.checked > 100, "{}", report.checked);
        }
    }

    /// Two pictures, the same question, different answers: the decoder can
    /// only tell them apart by reading the picture. A few dozen steps make
    /// the answers exact, and the answer function (prompt encoded as in
    /// training, `<|image|>` taken out) gives them back; the frozen tower
    /// and the unused text tower are left bit for bit alone.
    #[test]
    fn it_learns_a_tiny_set_and_answers_it() {
        let tok = tokenizer();
        let tokens = ChatTokens::from_tokenizer(&tok).unwrap();
        let mut model = micro_model(&tok, 5);
        let before = model.clone();
        let batch = batch(&tok);
        let mut grads = model.zeros_like();
        let mut opt = AdamWState::new(crate::AdamW::default(), &model);
        let schedule = Schedule {
            warmup: 0,
            total: 150,
            peak_lr: 1e-2,
            min_lr: 1e-2,
        };
        let mut first = None;
        let mut last = 0.0;
        for step in 0..150 {
            let stats = crossattn_train_step(
                &mut model,
                &mut grads,
                &mut opt,
                &batch,
                false,
                step,
                &schedule,
                Some(1.0),
            )
            .unwrap();
            first.get_or_insert(stats.loss);
            last = stats.loss;
        }
        assert!(last < 0.05 * first.unwrap(), "{first:?} → {last}");
        assert_eq!(model.image, before.image, "the frozen tower moved");
        assert_eq!(model.text, before.text, "the unused text tower moved");
        assert_ne!(model.decoder, before.decoder);
        let meta = TurnMeta {
            family: Family::Attribute,
            kind: Kind::Colour,
            phrasing: 0,
            wording: Wording::Seen,
            pairs: Pairs::Seen,
            objects: 1,
            turn: 0,
        };
        let turn = |user: &str, answer: &str, turn| Turn {
            user: user.to_string(),
            assistant: answer.to_string(),
            meta: TurnMeta { turn, ..meta },
        };
        // any scene: the answers read the pictures of the batch
        let scene = crate::data::questions::QaData::default().batch(0, 1).0[0]
            .scene
            .clone();
        let examples = [
            Example {
                scene: scene.clone(),
                conversation: Conversation {
                    turns: vec![
                        turn("<|image|> what colour is it?", "red", 0),
                        turn("what shape is it?", "circle", 1),
                    ],
                },
            },
            Example {
                scene,
                conversation: Conversation {
                    turns: vec![turn("<|image|> what colour is it?", "blue", 0)],
                },
            },
        ];
        let answers =
            answer_turns_crossattn(&model, &tok, &tokens, &examples, &batch.images.view());
        assert_eq!(answers, ["red", "circle", "blue"]);
    }
    // ANCHOR_END: crossattn_tests

    #[test]
    fn results_are_bit_for_bit_the_same_on_any_thread_count() {
        let tok = tokenizer();
        let model = micro_model(&tok, 6);
        let batch = batch(&tok);
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                let (targets, weights) = shifted_targets(&batch.tokens, &batch.weights);
                let (logits, cache) = crossattn_forward(&model, &batch.images, &batch.tokens, true);
                let loss = answer_loss(&logits, &targets, &weights);
                let mut grads = model.zeros_like();
                crossattn_backward(&model, &loss.dlogits, &cache, &mut grads);
                let bits: Vec<u32> = grads
                    .params()
                    .iter()
                    .flat_map(|(_, t)| t.iter().map(|x| x.to_bits()).collect::<Vec<_>>())
                    .collect();
                (logits, bits)
            })
        };
        let one = run(1);
        for threads in [2, 3] {
            assert!(run(threads) == one, "{threads} threads");
        }
    }
}
