//! # train: putting it together
//!
//! The losses, the optimiser, the toy dataset and the training loop that
//! turn the `model` crate's random weights into a model that matches images
//! with captions and writes captions of its own.
//!
//! - [`loss`]: the symmetric contrastive loss (InfoNCE) and the captioning
//!   loss (next-token cross-entropy), each with its gradient;
//! - [`adamw`]: AdamW with decoupled weight decay and the rule of which
//!   parameters decay; [`schedule`]: linear warmup then cosine decay;
//!   [`clip`]: gradient clipping by global norm;
//! - [`step`]: one training step, from a batch to updated weights;
//! - [`data`]: the toy dataset (shapes, colours, sizes, regions; held-out
//!   combinations) and its tokenizer; [`eval`]: zero-shot, retrieval and
//!   captions on seen and held-out combinations; [`run`]: the training loop,
//!   the run folder, checkpoints and resume; [`plot`]: the figures of a run
//!   (loss curves, similarity heatmaps, the shared space, attention maps).
//! - [`commands`]: using a trained run (`caption`, `classify`, `search`,
//!   `tokenize`, `dataset export`) and training on own data (a folder of
//!   images with `captions.tsv`, [`data::folder`]).
//! - [`ablate`]: short runs without one loss or with the other image tower;
//!   [`failures`]: the held-out images the model captions wrongly;
//!   [`vlm_ablate`]: the multimodal recipe without one of its stages, with
//!   the tower unfrozen, the other mask, or the cross-attention decoder of
//!   [`vlm_crossattn`] on the same conversations, over several seeds.
//!
//! ## Public API at a glance
//! ```text
//! contrastive_loss(image_embeds: [B,E], text_embeds: [B,E], scale = exp(logit_scale))
//!   -> ContrastiveLoss { loss, dimage_embeds, dtext_embeds, dscale }
//! caption_loss(logits: [B,T-1,V], tokens: [B,T], lengths: &[usize]) -> CaptionLoss { loss, dlogits, tokens }
//! AdamW { beta1, beta2, eps, weight_decay } (Default: 0.9, 0.98, 1e-6, 0.1); no_decay(name) -> bool
//! AdamWState::new(AdamW, &model) { config, exp_avg, exp_avg_sq, steps }; .step(&mut model, &grads, lr)
//!   (Params: exp_avg.<name>, exp_avg_sq.<name>: checkpoint it with model::save_weights)
//! Schedule { warmup, total, peak_lr, min_lr }.lr(step)
//! clip_grad_norm(&mut grads, max_norm) -> norm before clipping; global_norm(&grads)
//! Batch { images: [B,3,H,W], tokens: [B,T], lengths }; LossWeights { contrastive, caption } (Default 1, 2)
//! train_step(&mut model, &mut grads, &mut opt, &batch, weights, step, &schedule, max_grad_norm: Option<f32>)
//!   -> Result<StepStats { loss, contrastive, caption, grad_norm, lr, logit_scale }, StepError>
//! ToyData { seed, two_object, world: World { shapes, colours } }: .batch(step, B, &Tokens::new(&tokenizer, &config)) -> Batch (pure in seed, step)
//!   .train_tokenizer(), .training_objects(), .held_out_objects(); World::{FULL, SMALL, check, objects, held_out}; Scene::{caption, parse, render}; HELD_OUT
//! evaluate(&model, &tokenizer, &data, &EvalConfig) -> EvalReport { seen, held_out }; .table()
//! run::{start, open, train, finish, eval_run, save_state, load_state}; RunConfig (Default: the default run)
//! commands::load_run(dir) -> Loaded { model, tokenizer }; load_images(&model, paths) -> [N,3,S,S] in [0,1]
//!   caption::caption_files(.., paths, &Strategy); classify::classify_file(.., image, labels) -> ranked (label, p)
//!   search::{search_images(.., text, dir), search_texts(.., image, texts_file)} -> Found { ranked, skipped }
//!   tokenize::tokenize(&tokenizer, text) -> Vec<Token { id, bytes }>; export::export(out, count, &ToyData)
//!   export::export_questions(out, count, &QaData) (scenes + questions.tsv + captions.tsv)
//!   own::{train_own(data, run, &config, progress), eval_own(run, data)} -> OwnEval { train, validation }
//! data::folder::FolderData::load(dir, size) (captions.tsv: file<TAB>caption; every 10th line validation)
//! plot::plot_run(run, out: Option<&Path>) -> Result<PlotReport { written, skipped }, PlotError>
//!   pca(x: [N,E], k) -> Pca { mean, components: [k,E], variances }; .project(x) -> [N,k]
//!   loss_svg(&steps), heatmap_svg(matrix, labels, title), scatter_svg(..); overlay(image, map), tile_rows(..)
//!   cross_attention_maps(&model, image: [1,3,H,W], caption) -> per block, per word: [side, side]; vit_cls_maps
//! ablate(out, &base, progress) -> Vec<AblationResult> (writes out/ablations.{md,json}, out/runs/<variant>/)
//! vlm_ablate(out, &VlmAblateConfig, progress) -> VlmAblation (writes out/vlm-ablations.{md,json}, out/runs/<variant>/seed-<n>/)
//! held_out_failures(&model, &tokenizer, &data, per_object) -> Failures; write_failures(run, out, link_base, max)
//! ```
//!
//! ## Shapes
//! `B` batch, `E` shared space, `T` caption tokens, `V` vocabulary.
//!
//! ## References
//! - Radford et al. 2021 (CLIP): the symmetric contrastive loss, the learned temperature.
//! - van den Oord et al. 2018, "Representation Learning with Contrastive Predictive Coding" (InfoNCE).
//! - Yu et al. 2022 (CoCa): contrastive + captioning losses, weights 1 and 2 (open_clip).
//! - Loshchilov & Hutter 2019, "Decoupled Weight Decay Regularization" (AdamW);
//!   Loshchilov & Hutter 2017, "SGDR" (cosine schedule).

pub mod ablate;
pub mod adamw;
pub mod clip;
pub mod commands;
pub mod data;
pub mod eval;
pub mod failures;
pub mod loss;
pub mod memory;
pub mod plot;
pub mod run;
pub mod schedule;
pub mod step;
pub mod vlm_ablate;
pub mod vlm_crossattn;
pub mod vlm_eval;
pub mod vlm_own;
pub mod vlm_run;
pub mod vlm_step;

pub use adamw::{AdamW, AdamWState, no_decay};
pub use clip::{clip_grad_norm, global_norm};
pub use data::{Tokens, ToyData};
pub use eval::{EvalConfig, EvalReport, evaluate};
pub use loss::{CaptionLoss, ContrastiveLoss, caption_loss, contrastive_loss};
pub use run::{Encoder, ModelSize, RunConfig, RunError};
pub use schedule::Schedule;
pub use step::{Batch, LossWeights, StepError, StepStats, train_step};
pub use vlm_step::{ChatBatch, ChatStepStats, lm_train_step, shifted_targets, vlm_train_step};
