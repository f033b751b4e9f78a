//! Teaching the multimodal LLM to answer, in LLaVA's stages, into one run
//! folder that can be stopped and resumed at any step of any stage.
//!
//! ```text
//! runs/<name>/
//! ├── vlm.json         the whole recipe (VlmRunConfig)
//! ├── 1-clip/          the vision tower: a CLIP model (contrastive + captioning) on scene captions
//! ├── 2-lm/            a text-only language model on the world's language (no images)
//! ├── 3-align/         the projector alone, tower and language model frozen, on captioning
//! ├── 4-instruct/      projector and language model on conversations, the tower frozen
//! └── metrics.json     the evaluation of the final model (vlm_eval)
//! ```
//!
//! Every stage folder holds a crash-safe `checkpoint/` (the model's own
//! checkpoint folder, the optimiser's moments and the stage's history),
//! written by [`crate::run::write_checkpoint`]. A stage whose checkpoint
//! has all its steps is done and is reused; the first one that is not
//! resumes from its last checkpoint, with the batches an uninterrupted run
//! would have seen (every batch is a pure function of the seed and the
//! step).
//!
//! Why stages, and why frozen parts: a language model that has never read
//! the world's words cannot learn what a colour vector means, and a
//! projector trained together with a language model from scratch gives the
//! model no reason to look at the picture at all (the answers' language
//! priors are easier to learn). So: first a vision tower that already
//! separates colours, shapes and places (CLIP), and a language model that
//! already speaks; then only the small projector, learning to turn the
//! tower's vectors into "words" the frozen language model can use
//! (captioning, where the picture is the only source of the answer); then
//! both together on questions.

use std::path::{Path, PathBuf};
use std::time::Instant;

use embedding::Params;
use indicatif::{ProgressBar, ProgressStyle};
use model::{
    ChatTokens, Freeze, ImageConfig, ImageSlot, LanguageModel, LmConfig, ModelConfig,
    ProjectorConfig, ProjectorKind, SpecialTokens, TokenPool, Vlm, VlmConfig, VlmMask, collate,
    encode_chat,
};
use ndarray::{Array4, s};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};
use tokenizer::Tokenizer;

use crate::adamw::{AdamW, AdamWState};
use crate::data::questions::{Example, Family, QaData};
use crate::data::scenes::{Colours, GRID, Pairs, SceneConfig, sample_scene};
use crate::data::{World, mix};
use crate::run::{
    self, CHECKPOINT_DIR, HISTORY_FILE, Progress, RunError, checkpoint_dir, checkpoint_error,
    read_json, write_json,
};
use crate::schedule::Schedule;
use crate::vlm_step::{ChatBatch, lm_train_step, vlm_train_step};
use crate::{Batch, RunConfig};

/// The recipe file in a multimodal run folder.
pub const VLM_RUN_FILE: &str = "vlm.json";

// ANCHOR: stage_config
/// How long and how fast one stage trains.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct StageConfig {
    /// Optimiser steps (0 skips the stage's training; its model is still made).
    pub steps: usize,
    /// Examples per step.
    pub batch_size: usize,
    /// Peak learning rate, after `warmup` steps of linear warmup.
    pub lr: f32,
    /// Learning rate at the end of the cosine decay.
    pub min_lr: f32,
    /// Steps of warmup.
    pub warmup: usize,
    /// The most objects a scene holds rises from 1 to the recipe's maximum
    /// over the first `curriculum` steps (0: always the maximum): one object
    /// before six, so binding a word to a place is learned where it is easy.
    pub curriculum: usize,
}

impl StageConfig {
    pub fn schedule(&self) -> Schedule {
        Schedule {
            warmup: self.warmup,
            total: self.steps,
            peak_lr: self.lr,
            min_lr: self.min_lr,
        }
    }

    /// The most objects in a scene at `step`.
    fn max_objects(&self, step: usize, max: usize) -> usize {
        if self.curriculum == 0 || step >= self.curriculum {
            return max;
        }
        1 + (step * max) / self.curriculum
    }
}
// ANCHOR_END: stage_config

/// The tower of the multimodal model and of its CLIP stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Pool {
    /// Every cell of the tower's grid is an image token.
    None,
    /// 2×2 averages.
    Average2,
    /// 2×2 pixel shuffle.
    PixelShuffle2,
}

/// Causal or prefix-LM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum MaskKind {
    Causal,
    PrefixLm,
}

// ANCHOR: vlm_run_config
/// Everything a multimodal run does, from the data to each stage's length.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VlmRunConfig {
    /// Seeds the weights and every batch.
    pub seed: u64,
    /// The shapes and colours of the world.
    pub world: World,
    /// Side of the scene images in pixels.
    pub side: usize,
    /// Most objects in a scene.
    pub max_objects: usize,
    /// Most turns in a conversation.
    pub max_turns: usize,
    /// The CNN tower's channels (three 2×2 poolings: a 48-pixel scene gives
    /// a 6×6 grid).
    pub tower_channels: Vec<usize>,
    /// How the tower's grid is shrunk before the projector.
    pub pool: Pool,
    /// A two-layer MLP projector (LLaVA-1.5) or a Linear one.
    pub mlp_projector: bool,
    /// The language model's mask.
    pub mask: MaskKind,
    /// The language model's width, depth and heads.
    pub lm_width: usize,
    pub lm_depth: usize,
    pub lm_heads: usize,
    /// Stage 1: CLIP on scene captions.
    pub clip: StageConfig,
    /// Stage 2: the text-only language model.
    pub lm: StageConfig,
    /// Stage 3: the projector alone, on captioning.
    pub align: StageConfig,
    /// Stage 4: projector and language model on conversations.
    pub instruct: StageConfig,
    /// Train the vision tower in stage 4 too.
    pub unfreeze_vision: bool,
    /// AdamW's decoupled weight decay, in every stage.
    pub weight_decay: f32,
    /// Clip every gradient to this global norm.
    pub max_grad_norm: f32,
    /// Write a checkpoint every this many steps of a stage (0: at its end).
    pub checkpoint_interval: usize,
    /// Conversations per split in the final evaluation.
    pub eval_count: usize,
    /// Scene captions the tokenizer learns from, besides every phrasing.
    pub tokenizer_captions: usize,
    /// The CLIP stage's text tower and caption decoder: `tiny` (width 64),
    /// or `micro` for tests.
    pub clip_size: crate::ModelSize,
    /// Own data: a folder with `questions.tsv` and, optionally,
    /// `captions.tsv` (absolute, so a run resumes from anywhere); `None`
    /// trains on the generated world.
    #[serde(default)]
    pub data: Option<PathBuf>,
    /// Take stage 1's vision tower from this run (a CLIP run, or another
    /// multimodal run) instead of training one: what own data without
    /// captions needs.
    #[serde(default)]
    pub vision_from: Option<PathBuf>,
    /// Stage 1's first steps show one object at a time, on a canvas of one
    /// cell of the grid (its caption without a place): the tower learns
    /// shapes where nothing else tells captions apart.
    #[serde(default)]
    pub clip_single_steps: usize,
    /// Weight of stage 1's captioning loss (the contrastive loss weighs 1).
    #[serde(default = "default_caption_weight")]
    pub clip_caption_weight: f32,
    /// How the answer loss of stages 3 and 4 weighs the turns.
    #[serde(default)]
    pub answer_weights: AnswerWeights,
    /// Print the accuracy per family on a few conversations every this many
    /// steps of stage 4 (0: never; the time is not counted as training).
    #[serde(default)]
    pub instruct_eval_interval: usize,
}

/// How the answer loss counts the turns of a batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum AnswerWeights {
    /// Every answer token counts once: a 40-token caption weighs 20 times a
    /// yes/no answer (and its `<|end|>`).
    #[default]
    PerToken,
    /// Every turn's answer counts once, its tokens sharing the weight.
    PerTurn,
}

fn default_caption_weight() -> f32 {
    2.0
}
// ANCHOR_END: vlm_run_config

// ANCHOR: vlm_run_default
impl Default for VlmRunConfig {
    fn default() -> Self {
        let stage = |steps, lr, curriculum| StageConfig {
            steps,
            batch_size: 64,
            lr,
            min_lr: lr / 20.0,
            warmup: (steps / 10).min(100),
            curriculum,
        };
        VlmRunConfig {
            seed: 0,
            world: World::FULL,
            side: crate::data::scenes::DEFAULT_SIDE,
            max_objects: crate::data::scenes::MAX_OBJECTS,
            max_turns: 3,
            tower_channels: vec![32, 64, 64],
            pool: Pool::PixelShuffle2,
            mlp_projector: true,
            mask: MaskKind::Causal,
            lm_width: 64,
            lm_depth: 3,
            lm_heads: 4,
            clip: stage(1000, 2e-3, 180),
            lm: stage(300, 2e-3, 0),
            align: stage(200, 2e-3, 60),
            instruct: StageConfig {
                batch_size: 8, // many small steps: binding words to objects is learned by steps
                ..stage(24000, 1e-3, 7200)
            },
            unfreeze_vision: false,
            weight_decay: 0.05,
            max_grad_norm: 1.0,
            checkpoint_interval: 1000,
            eval_count: 400,
            tokenizer_captions: 2000,
            clip_size: crate::ModelSize::Tiny,
            data: None,
            vision_from: None,
            clip_single_steps: 1000,
            clip_caption_weight: 2.0,
            answer_weights: AnswerWeights::PerTurn,
            instruct_eval_interval: 0,
        }
    }
}
// ANCHOR_END: vlm_run_default

/// The four stages, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Clip,
    Lm,
    Align,
    Instruct,
}

impl Stage {
    pub const ALL: [Stage; 4] = [Stage::Clip, Stage::Lm, Stage::Align, Stage::Instruct];

    /// The stage's folder in the run.
    pub fn folder(self) -> &'static str {
        match self {
            Stage::Clip => "1-clip",
            Stage::Lm => "2-lm",
            Stage::Align => "3-align",
            Stage::Instruct => "4-instruct",
        }
    }

    /// What the progress bar calls it.
    pub fn title(self) -> &'static str {
        match self {
            Stage::Clip => "stage 1/4 vision tower (CLIP)",
            Stage::Lm => "stage 2/4 language model",
            Stage::Align => "stage 3/4 projector alignment",
            Stage::Instruct => "stage 4/4 instruction tuning",
        }
    }
}

impl VlmRunConfig {
    /// The stage's length and learning rates.
    pub fn stage(&self, stage: Stage) -> &StageConfig {
        match stage {
            Stage::Clip => &self.clip,
            Stage::Lm => &self.lm,
            Stage::Align => &self.align,
            Stage::Instruct => &self.instruct,
        }
    }

    /// Checks every setting; the error names the flag.
    ///
    /// # Errors
    /// [`RunError::BadValue`] naming the setting and why.
    pub fn validate(&self) -> Result<(), RunError> {
        let bad = |name: &'static str, why: String| Err(RunError::BadValue { name, why });
        if let Err((name, why)) = self.qa_data().check() {
            return bad(name, why);
        }
        for stage in Stage::ALL {
            let c = self.stage(stage);
            let fine = |v: f32| v.is_finite() && v >= 0.0;
            if c.batch_size < 2 || c.batch_size > 4096 {
                return bad(
                    "batch-size",
                    format!(
                        "{}: must be 2 to 4096, got {}",
                        stage.folder(),
                        c.batch_size
                    ),
                );
            }
            if !(fine(c.lr) && c.lr > 0.0 && fine(c.min_lr) && c.min_lr <= c.lr) {
                return bad(
                    "lr",
                    format!(
                        "{}: need 0 < lr and 0 ≤ min_lr ≤ lr, got {} and {}",
                        stage.folder(),
                        c.lr,
                        c.min_lr
                    ),
                );
            }
            if c.steps > 10_000_000 {
                return bad(
                    "steps",
                    format!("{}: at most 10000000, got {}", stage.folder(), c.steps),
                );
            }
        }
        if self.tower_channels.is_empty()
            || self.tower_channels.len() > 6
            || self.tower_channels.iter().any(|&c| c == 0 || c > 1024)
        {
            return bad(
                "tower-channels",
                format!(
                    "1 to 6 blocks of 1 to 1024 channels, got {:?}",
                    self.tower_channels
                ),
            );
        }
        if !(1..=1024).contains(&self.lm_width)
            || !(1..=24).contains(&self.lm_depth)
            || self.lm_heads == 0
        {
            return bad(
                "lm-width",
                format!(
                    "width 1 to 1024, depth 1 to 24, heads ≥ 1; got {}, {}, {}",
                    self.lm_width, self.lm_depth, self.lm_heads
                ),
            );
        }
        let finite = |x: f32| x.is_finite();
        if !(finite(self.weight_decay)
            && self.weight_decay >= 0.0
            && finite(self.max_grad_norm)
            && self.max_grad_norm > 0.0)
        {
            return bad(
                "weight-decay",
                "weight decay ≥ 0 and gradient norm > 0".to_string(),
            );
        }
        if self.tokenizer_captions > 1_000_000 {
            return bad(
                "tokenizer-captions",
                format!("at most 1000000, got {}", self.tokenizer_captions),
            );
        }
        if self.eval_count == 0 || self.eval_count > 100_000 {
            return bad(
                "eval-count",
                format!("must be 1 to 100000, got {}", self.eval_count),
            );
        }
        Ok(())
    }

    /// The question and scene generator, at `max_objects` objects.
    pub fn qa_data(&self) -> QaData {
        QaData {
            seed: self.seed,
            world: self.world,
            scenes: SceneConfig {
                side: self.side,
                min_objects: 1,
                max_objects: self.max_objects,
            },
            max_turns: self.max_turns,
            ..QaData::default()
        }
    }

    /// The vision tower: CNN blocks over the scene.
    pub fn vision(&self) -> ImageConfig {
        ImageConfig::Cnn {
            cnn: vision::CnnConfig {
                channels: self.tower_channels.clone(),
                ..vision::CnnConfig::default()
            },
            image_size: self.side,
        }
    }

    /// The CLIP model of stage 1, for `tokenizer`'s vocabulary.
    pub fn clip_config(&self, tokenizer: &Tokenizer) -> Result<ModelConfig, RunError> {
        let vocab = tokenizer.vocab_size();
        let mut config = match self.clip_size {
            crate::ModelSize::Tiny => ModelConfig::tiny(vocab),
            crate::ModelSize::Micro => ModelConfig::micro(vocab),
        };
        config.special = SpecialTokens::from_tokenizer(tokenizer).map_err(RunError::Config)?;
        config.image = self.vision();
        config.max_len = MAX_CAPTION_TOKENS;
        config.validate().map_err(RunError::Config)?;
        Ok(config)
    }

    /// The multimodal model of stages 3 and 4 (and its language model, stage 2).
    pub fn vlm_config(&self, tokenizer: &Tokenizer) -> Result<VlmConfig, RunError> {
        let vocab = tokenizer.vocab_size();
        let tokens = ChatTokens::from_tokenizer(tokenizer).map_err(|e| RunError::BadValue {
            name: "tokenizer",
            why: e.to_string(),
        })?;
        let mut config = VlmConfig {
            vision: self.vision(),
            projector: ProjectorConfig {
                kind: if self.mlp_projector {
                    ProjectorKind::Mlp
                } else {
                    ProjectorKind::Linear
                },
                pool: match self.pool {
                    Pool::None => TokenPool::None,
                    Pool::Average2 => TokenPool::Average2,
                    Pool::PixelShuffle2 => TokenPool::PixelShuffle2,
                },
                keep_cls: false,
            },
            lm: LmConfig {
                width: self.lm_width,
                depth: self.lm_depth,
                n_head: self.lm_heads,
                mlp_hidden: 4 * self.lm_width,
                ..LmConfig::tiny(vocab, 0)
            },
            mask: match self.mask {
                MaskKind::Causal => VlmMask::Causal,
                MaskKind::PrefixLm => VlmMask::PrefixLm,
            },
            tokens,
        };
        config.lm.max_len = config.num_image_tokens() + MAX_CONVERSATION_TOKENS;
        config.validate().map_err(RunError::Config)?;
        Ok(config)
    }
}

/// The most tokens a scene caption takes in the CLIP stage (`<|bos|>` and
/// `<|eos|>` included): six objects of about eight words.
pub const MAX_CAPTION_TOKENS: usize = 80;
/// The most text tokens of a conversation the language model reads (the
/// image tokens come on top).
pub const MAX_CONVERSATION_TOKENS: usize = 160;

/// One step of a chat stage, for the history.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ChatRecord {
    pub step: usize,
    pub loss: f32,
    pub grad_norm: f32,
    pub lr: f32,
}

/// What a chat stage's checkpoint restores.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChatHistory {
    pub steps: Vec<ChatRecord>,
    pub train_seconds: f64,
}

/// A chat stage's training state: the model (the language model alone in
/// stage 2), its optimiser, the step.
#[derive(Debug)]
pub struct ChatState<M> {
    pub model: M,
    pub opt: AdamWState<M>,
    pub step: usize,
    pub history: ChatHistory,
}

/// The models of the chat stages: how each saves and loads its checkpoint
/// folder (the language model's records its shape and chat tokens, from
/// the multimodal config it will join).
pub trait StageModel: Params + Clone + Sized {
    fn save(&self, dir: &Path, tokenizer: &Tokenizer, config: &VlmConfig) -> Result<(), RunError>;
    fn load(dir: &Path) -> Result<(Self, Tokenizer), RunError>;
}

impl StageModel for Vlm {
    fn save(&self, dir: &Path, tokenizer: &Tokenizer, _: &VlmConfig) -> Result<(), RunError> {
        model::save_vlm_checkpoint(dir, self, tokenizer).map_err(checkpoint_error)
    }
    fn load(dir: &Path) -> Result<(Self, Tokenizer), RunError> {
        let c = model::load_vlm_checkpoint(dir).map_err(RunError::Checkpoint)?;
        Ok((c.vlm, c.tokenizer))
    }
}

impl StageModel for LanguageModel {
    fn save(&self, dir: &Path, tokenizer: &Tokenizer, config: &VlmConfig) -> Result<(), RunError> {
        model::save_lm_checkpoint(dir, self, &config.lm, &config.tokens, tokenizer)
            .map_err(checkpoint_error)
    }
    fn load(dir: &Path) -> Result<(Self, Tokenizer), RunError> {
        let c = model::load_lm_checkpoint(dir).map_err(RunError::Checkpoint)?;
        Ok((c.language_model, c.tokenizer))
    }
}

impl StageModel for model::Model {
    fn save(&self, dir: &Path, tokenizer: &Tokenizer, _: &VlmConfig) -> Result<(), RunError> {
        model::save_checkpoint(dir, self, tokenizer).map_err(checkpoint_error)
    }
    fn load(dir: &Path) -> Result<(Self, Tokenizer), RunError> {
        let c = model::load_checkpoint(dir).map_err(RunError::Checkpoint)?;
        Ok((c.model, c.tokenizer))
    }
}

/// Saves a chat stage's state into `stage_dir/checkpoint/`, crash-safely.
pub(crate) fn save_chat<M: StageModel>(
    stage_dir: &Path,
    state: &ChatState<M>,
    tokenizer: &Tokenizer,
    config: &VlmConfig,
) -> Result<(), RunError> {
    run::write_checkpoint(stage_dir, None, |tmp| {
        state.model.save(tmp, tokenizer, config)?;
        run::save_optimizer(tmp, &state.opt, state.step)?;
        write_json(&tmp.join(HISTORY_FILE), &state.history)
    })
}

/// A chat stage's state from its checkpoint (`None`: none written yet).
pub(crate) fn load_chat<M: StageModel>(
    stage_dir: &Path,
    config: &VlmRunConfig,
    steps: usize,
) -> Result<Option<ChatState<M>>, RunError> {
    let Some(dir) = checkpoint_dir(stage_dir) else {
        return Ok(None);
    };
    let (model, _) = M::load(&dir)?;
    let mut opt = AdamWState::new(adamw(config), &model);
    let step = run::load_optimizer(&dir, &mut opt, steps)?;
    let path = dir.join(HISTORY_FILE);
    let history: ChatHistory = read_json(&path)?;
    let recorded: Vec<usize> = history.steps.iter().map(|r| r.step).collect();
    run::check_history(&path, &recorded, step)?;
    Ok(Some(ChatState {
        model,
        opt,
        step,
        history,
    }))
}

pub(crate) fn adamw(config: &VlmRunConfig) -> AdamW {
    AdamW {
        weight_decay: config.weight_decay,
        ..AdamW::default()
    }
}

/// The final model of a run folder: stage 4's checkpoint (whichever
/// complete copy a crash left), else the folder itself if it is a
/// checkpoint.
pub fn final_checkpoint(run: &Path) -> PathBuf {
    checkpoint_dir(&run.join(Stage::Instruct.folder())).unwrap_or_else(|| run.to_path_buf())
}

/// Starts a multimodal run in `run` (which must not hold one), or with
/// `resume`, continues the one there; trains every stage that is not
/// done, in order.
///
/// # Errors
/// A bad config, a locked or existing folder, a file error, a non-finite
/// loss (the last checkpoint stays).
pub fn train_vlm(
    run: &Path,
    config: Option<&VlmRunConfig>,
    progress: Progress,
) -> Result<VlmRunConfig, RunError> {
    let recipe = match config {
        Some(config) => config.clone(),
        None => read_json(&run.join(VLM_RUN_FILE))?,
    };
    match &recipe.data {
        None => train_vlm_on(run, config, &Generated { config: &recipe }, progress),
        Some(dir) => {
            let data = crate::vlm_own::OwnVlmData::load(dir, &recipe)?;
            train_vlm_on(run, config, &data, progress)
        }
    }
}

/// The run's tokenizer file: written when the run starts, read when it
/// resumes (every stage's model numbers its vocabulary with it).
pub const VLM_TOKENIZER_FILE: &str = "tokenizer.txt";

// ANCHOR: train_vlm
/// [`train_vlm`] on any data source.
///
/// # Errors
/// As [`train_vlm`].
pub fn train_vlm_on(
    run: &Path,
    config: Option<&VlmRunConfig>,
    data: &dyn VlmData,
    progress: Progress,
) -> Result<VlmRunConfig, RunError> {
    let lock = run::lock(run)?;
    let path = run.join(VLM_RUN_FILE);
    let tokenizer_path = run.join(VLM_TOKENIZER_FILE);
    let (config, tokenizer) = match config {
        Some(config) => {
            config.validate()?;
            if holds_vlm_run(run) {
                return Err(RunError::Exists {
                    run: run.to_path_buf(),
                });
            }
            let tokenizer = data.train_tokenizer()?;
            model::write_atomic(&tokenizer_path, tokenizer.to_text().as_bytes())
                .map_err(run::io(&tokenizer_path))?;
            write_json(&path, config)?; // last: a run is there once its recipe is
            (config.clone(), tokenizer)
        }
        None => {
            let config: VlmRunConfig = read_json(&path)?;
            config.validate()?;
            let text = model::read_limited(&tokenizer_path, model::checkpoint::MAX_TEXT_FILE_BYTES)
                .map_err(run::io(&tokenizer_path))?;
            let tokenizer = Tokenizer::from_text(&String::from_utf8_lossy(&text))
                .map_err(|e| RunError::Tokenizer(e.in_file(&tokenizer_path)))?;
            (config, tokenizer)
        }
    };
    match &config.vision_from {
        None => train_clip(run, &config, data, &tokenizer, progress)?,
        Some(from) => say(
            progress,
            &format!("stage 1/4: the vision tower comes from {}", from.display()),
        ),
    }
    let vlm_config = config.vlm_config(&tokenizer)?;
    train_text(run, &config, data, &vlm_config, &tokenizer, progress)?;
    train_align(run, &config, data, &vlm_config, &tokenizer, progress)?;
    train_instruct(run, &config, data, &vlm_config, &tokenizer, progress)?;
    drop(lock);
    Ok(config)
}
// ANCHOR_END: train_vlm

// ANCHOR: vlm_data
/// Where a run's batches come from: the generated world ([`Generated`]) or
/// a folder of the user's ([`crate::vlm_own::OwnVlmData`]). Every batch is
/// a pure function of the step, so a resumed run sees what an
/// uninterrupted one would have.
pub trait VlmData {
    /// The tokenizer a new run trains on the data's language, with the
    /// chat's special tokens.
    fn train_tokenizer(&self) -> Result<Tokenizer, RunError>;
    /// Stage 1's batch: images and their captions.
    fn clip_batch(&self, step: u64, tokens: &crate::Tokens) -> Batch;
    /// Stage 2's (text only), 3's (captioning) or 4's (questions) batch.
    fn chat_batch(
        &self,
        stage: Stage,
        step: u64,
        tokenizer: &Tokenizer,
        tokens: &ChatTokens,
    ) -> ChatBatch;
    /// Whether stage 3 has captions to align on (own data may have none:
    /// the stage is then skipped, and the run says so).
    fn has_captions(&self) -> bool {
        true
    }
}
// ANCHOR_END: vlm_data

/// The generated world of scenes and questions, as the recipe describes it.
#[derive(Debug, Clone, Copy)]
pub struct Generated<'a> {
    pub config: &'a VlmRunConfig,
}

impl VlmData for Generated<'_> {
    fn train_tokenizer(&self) -> Result<Tokenizer, RunError> {
        self.config
            .qa_data()
            .train_tokenizer(self.config.tokenizer_captions)
            .map_err(RunError::Tokenizer)
    }

    fn clip_batch(&self, step: u64, tokens: &crate::Tokens) -> Batch {
        clip_batch(self.config, tokens, step)
    }

    fn chat_batch(
        &self,
        stage: Stage,
        step: u64,
        tokenizer: &Tokenizer,
        tokens: &ChatTokens,
    ) -> ChatBatch {
        let config = self.config;
        match stage {
            Stage::Clip | Stage::Lm => {
                let (examples, _) =
                    stage_examples(config, &config.lm, None, config.max_turns, step);
                chat_batch(
                    &examples,
                    Array4::zeros((0, 3, 1, 1)),
                    tokenizer,
                    tokens,
                    ImageSlot::Forbidden,
                    true,
                    config.answer_weights,
                )
            }
            Stage::Align => {
                // captioning: "describe the picture", where the picture is all there is to go on
                let (examples, images) =
                    stage_examples(config, &config.align, Some(vec![Family::Describe]), 1, step);
                chat_batch(
                    &examples,
                    images,
                    tokenizer,
                    tokens,
                    ImageSlot::Required,
                    false,
                    config.answer_weights,
                )
            }
            Stage::Instruct => {
                let (examples, images) =
                    stage_examples(config, &config.instruct, None, config.max_turns, step);
                chat_batch(
                    &examples,
                    images,
                    tokenizer,
                    tokens,
                    ImageSlot::Required,
                    false,
                    config.answer_weights,
                )
            }
        }
    }
}

/// The CLIP checkpoint of `run`'s stage 1, or of the run named by
/// `vision_from` (a CLIP run's `checkpoint/`, or a multimodal run's stage 1).
fn clip_checkpoint(run: &Path, config: &VlmRunConfig) -> Result<PathBuf, RunError> {
    match &config.vision_from {
        None => final_of(run, Stage::Clip),
        Some(from) => checkpoint_dir(from)
            .or_else(|| checkpoint_dir(&from.join(Stage::Clip.folder())))
            .ok_or_else(|| RunError::BadValue {
                name: "vision-from",
                why: format!(
                    "{} holds no CLIP checkpoint (a run folder with checkpoint/, or a multimodal run with 1-clip/)",
                    from.display()
                ),
            }),
    }
}

/// The CLIP stage's own settings, as a [`RunConfig`] for [`run::train_loop`].
fn clip_run_config(config: &VlmRunConfig) -> RunConfig {
    let c = &config.clip;
    RunConfig {
        seed: config.seed,
        steps: c.steps.max(1),
        batch_size: c.batch_size,
        lr: c.lr,
        min_lr: c.min_lr,
        warmup: c.warmup,
        weight_decay: config.weight_decay,
        max_grad_norm: config.max_grad_norm,
        world: config.world,
        eval_interval: 0,
        checkpoint_interval: config.checkpoint_interval,
        caption_weight: config.clip_caption_weight,
        ..RunConfig::default()
    }
}

// ANCHOR: clip_batch
/// Stage 1's batch of step `step`: scenes of up to the curriculum's number
/// of objects (any colours; only pairs training may show) and their captions.
fn clip_batch(config: &VlmRunConfig, tokens: &crate::Tokens, step: u64) -> Batch {
    let c = &config.clip;
    let single = (step as usize) < config.clip_single_steps;
    let max = c.max_objects(
        (step as usize).saturating_sub(config.clip_single_steps),
        config.max_objects,
    );
    let mut rng = StdRng::seed_from_u64(mix(config.seed ^ 0xC11F, step));
    let side = if single {
        config.side / GRID
    } else {
        config.side
    };
    let mut images = Array4::zeros((c.batch_size, 3, side, side));
    let mut captions = Vec::with_capacity(c.batch_size);
    for b in 0..c.batch_size {
        let n = if single {
            1
        } else {
            rand::Rng::random_range(&mut rng, 1..=max)
        };
        let scene = sample_scene(&config.world, n, Colours::Free, Pairs::Seen, &mut rng);
        let image = scene.render(config.side, &mut rng);
        if single {
            // the object's own cell, and its caption without the place
            let o = scene.objects()[0];
            let (y, x) = (o.cell.row * side, o.cell.col * side);
            images.slice_mut(s![b, .., .., ..]).assign(&image.slice(s![
                ..,
                y..y + side,
                x..x + side
            ]));
            captions.push(o.words());
        } else {
            images.slice_mut(s![b, .., .., ..]).assign(&image);
            captions.push(scene.caption());
        }
    }
    let (tokens, lengths) = tokens.encode(&captions);
    Batch {
        images,
        tokens,
        lengths,
    }
}
// ANCHOR_END: clip_batch

fn train_clip(
    run: &Path,
    config: &VlmRunConfig,
    data: &dyn VlmData,
    tokenizer: &Tokenizer,
    progress: Progress,
) -> Result<(), RunError> {
    let dir = run.join(Stage::Clip.folder());
    let run_config = clip_run_config(config);
    let mut state = match checkpoint_dir(&dir) {
        Some(_) => run::load_state(&dir, &run_config)?,
        None => {
            std::fs::create_dir_all(&dir).map_err(run::io(&dir))?;
            let model_config = config.clip_config(tokenizer)?;
            let model = model_config
                .init(&mut StdRng::seed_from_u64(config.seed))
                .map_err(RunError::Config)?;
            let opt = AdamWState::new(adamw(config), &model);
            run::State {
                model,
                tokenizer: tokenizer.clone(),
                opt,
                step: 0,
                history: Default::default(),
                lock: None,
            }
        }
    };
    if checkpoint_dir(&dir).is_some() && state.step >= config.clip.steps {
        return Ok(()); // done
    }
    if config.clip.steps == 0 {
        return run::save_state(&dir, &state); // an untrained tower, for the stages after
    }
    say(progress, Stage::Clip.title());
    run::train_loop(
        &dir,
        &run_config,
        &mut state,
        run_config.steps,
        progress,
        |step, state| {
            let tokens = crate::Tokens::new(&state.tokenizer, state.model.config());
            data.clip_batch(step, &tokens)
        },
        None,
    )
}

/// A chat batch of examples: each conversation encoded, padded.
fn chat_batch(
    examples: &[Example],
    images: Array4<f32>,
    tokenizer: &Tokenizer,
    tokens: &ChatTokens,
    slot: ImageSlot,
    all_tokens: bool,
    answer_weights: AnswerWeights,
) -> ChatBatch {
    let encoded: Vec<_> = examples
        .iter()
        .map(|e| {
            let mut turns = e.conversation.chat_turns();
            if slot == ImageSlot::Forbidden {
                for turn in &mut turns {
                    turn.user = turn.user.replace(tokenizer::IMAGE, "").trim().to_string();
                }
            }
            let chat = encode_chat(tokenizer, tokens, &turns, slot)
                .expect("generated conversations encode");
            weighed(chat, all_tokens, answer_weights)
        })
        .collect();
    let (ids, weights) = collate(&encoded, tokens.pad);
    ChatBatch {
        images,
        tokens: ids,
        weights,
    }
}

/// A stage's weights on an encoded conversation, cut to
/// [`MAX_CONVERSATION_TOKENS`]: every token when `all_tokens` (the
/// text-only model learns the whole language, questions too), else the
/// answers', per token or per turn.
pub(crate) fn weighed(
    mut chat: model::ChatExample,
    all_tokens: bool,
    answer_weights: AnswerWeights,
) -> model::ChatExample {
    if all_tokens {
        chat.weights.fill(1.0);
    } else if answer_weights == AnswerWeights::PerTurn {
        per_turn(&mut chat.weights);
    }
    chat.ids.truncate(MAX_CONVERSATION_TOKENS);
    chat.weights.truncate(MAX_CONVERSATION_TOKENS);
    chat
}

// ANCHOR: per_turn
/// Shares each turn's weight among its answer tokens: every run of
/// weighted tokens (one answer and its `<|end|>`) sums to 1.
pub(crate) fn per_turn(weights: &mut [f32]) {
    let mut start = 0;
    while start < weights.len() {
        if weights[start] == 0.0 {
            start += 1;
            continue;
        }
        let end = (start..weights.len())
            .find(|&i| weights[i] == 0.0)
            .unwrap_or(weights.len());
        let share = 1.0 / (end - start) as f32;
        weights[start..end].fill(share);
        start = end;
    }
}
// ANCHOR_END: per_turn

/// A stage's data at `step`: `families` (None: all), the curriculum's objects.
fn stage_examples(
    config: &VlmRunConfig,
    stage: &StageConfig,
    families: Option<Vec<Family>>,
    max_turns: usize,
    step: u64,
) -> (Vec<Example>, Array4<f32>) {
    let mut data = config.qa_data();
    data.scenes.max_objects = stage.max_objects(step as usize, config.max_objects);
    data.max_turns = max_turns;
    if let Some(families) = families {
        data.families = families;
    }
    data.batch(step, stage.batch_size)
}

fn train_text(
    run: &Path,
    config: &VlmRunConfig,
    data: &dyn VlmData,
    vlm_config: &VlmConfig,
    tokenizer: &Tokenizer,
    progress: Progress,
) -> Result<(), RunError> {
    let dir = run.join(Stage::Lm.folder());
    let stage = config.lm;
    let mut state = match load_chat::<LanguageModel>(&dir, config, stage.steps)? {
        Some(state) => state,
        None => {
            let model = vlm_config
                .lm
                .init(&mut StdRng::seed_from_u64(config.seed ^ 2));
            let opt = AdamWState::new(adamw(config), &model);
            ChatState {
                model,
                opt,
                step: 0,
                history: ChatHistory::default(),
            }
        }
    };
    let tokens = vlm_config.tokens;
    let mut grads = state.model.zeros_like();
    chat_loop(
        &dir,
        (Stage::Lm.title(), Stage::Lm.folder()),
        &stage,
        &mut state,
        tokenizer,
        vlm_config,
        config.checkpoint_interval,
        progress,
        |state, step, schedule| {
            let batch = data.chat_batch(Stage::Lm, step as u64, tokenizer, &tokens);
            lm_train_step(
                &mut state.model,
                &mut grads,
                &mut state.opt,
                &batch,
                step,
                schedule,
                Some(config.max_grad_norm),
            )
        },
        None,
    )
}

fn train_align(
    run: &Path,
    config: &VlmRunConfig,
    data: &dyn VlmData,
    vlm_config: &VlmConfig,
    tokenizer: &Tokenizer,
    progress: Progress,
) -> Result<(), RunError> {
    let dir = run.join(Stage::Align.folder());
    let mut stage = config.align;
    if !data.has_captions() {
        stage.steps = 0; // nothing to align on: the stage writes its model untrained
        if checkpoint_dir(&dir).is_none() {
            say(
                progress,
                "stage 3/4: no captions.tsv, so no projector alignment",
            );
        }
    }
    let mut state = match load_chat::<Vlm>(&dir, config, stage.steps)? {
        Some(state) => state,
        None => {
            // a fresh projector between stage 1's tower and stage 2's language model
            let mut vlm = vlm_config
                .init(&mut StdRng::seed_from_u64(config.seed ^ 3))
                .map_err(RunError::Config)?;
            vlm.load_vision_tower(&clip_checkpoint(run, config)?)
                .map_err(RunError::Checkpoint)?;
            vlm.load_language_model(&final_of(run, Stage::Lm)?)
                .map_err(RunError::Checkpoint)?;
            let opt = AdamWState::new(adamw(config), &vlm);
            ChatState {
                model: vlm,
                opt,
                step: 0,
                history: ChatHistory::default(),
            }
        }
    };
    let freeze = Freeze {
        vision_tower: true,
        projector: false,
        language_model: true,
    };
    let mut grads = state.model.zeros_like();
    chat_loop(
        &dir,
        (Stage::Align.title(), Stage::Align.folder()),
        &stage,
        &mut state,
        tokenizer,
        vlm_config,
        config.checkpoint_interval,
        progress,
        |state, step, schedule| {
            let batch = data.chat_batch(Stage::Align, step as u64, tokenizer, &vlm_config.tokens);
            vlm_train_step(
                &mut state.model,
                &mut grads,
                &mut state.opt,
                &batch,
                freeze,
                step,
                schedule,
                Some(config.max_grad_norm),
            )
        },
        None,
    )
}

fn train_instruct(
    run: &Path,
    config: &VlmRunConfig,
    data: &dyn VlmData,
    vlm_config: &VlmConfig,
    tokenizer: &Tokenizer,
    progress: Progress,
) -> Result<(), RunError> {
    let dir = run.join(Stage::Instruct.folder());
    let stage = config.instruct;
    let mut state = match load_chat::<Vlm>(&dir, config, stage.steps)? {
        Some(state) => state,
        None => {
            let (vlm, _) = Vlm::load(&final_of(run, Stage::Align)?)?;
            let opt = AdamWState::new(adamw(config), &vlm); // fresh moments for a new stage
            ChatState {
                model: vlm,
                opt,
                step: 0,
                history: ChatHistory::default(),
            }
        }
    };
    let freeze = Freeze {
        vision_tower: !config.unfreeze_vision,
        projector: false,
        language_model: false,
    };
    let mut grads = state.model.zeros_like();
    chat_loop(
        &dir,
        (Stage::Instruct.title(), Stage::Instruct.folder()),
        &stage,
        &mut state,
        tokenizer,
        vlm_config,
        config.checkpoint_interval,
        progress,
        |state, step, schedule| {
            let batch =
                data.chat_batch(Stage::Instruct, step as u64, tokenizer, &vlm_config.tokens);
            vlm_train_step(
                &mut state.model,
                &mut grads,
                &mut state.opt,
                &batch,
                freeze,
                step,
                schedule,
                Some(config.max_grad_norm),
            )
        },
        Some((config.instruct_eval_interval, &|vlm: &Vlm| {
            let data = config.qa_data();
            crate::vlm_eval::progress_line(vlm, tokenizer, &data, 100)
        })),
    )
}

/// The checkpoint a finished stage left.
fn final_of(run: &Path, stage: Stage) -> Result<PathBuf, RunError> {
    let dir = run.join(stage.folder());
    checkpoint_dir(&dir).ok_or_else(|| RunError::Io {
        path: dir.join(CHECKPOINT_DIR),
        source: std::io::Error::new(std::io::ErrorKind::NotFound, "the stage has no checkpoint"),
    })
}

fn say(progress: Progress, line: &str) {
    if progress == Progress::Bar {
        crate::commands::note(line);
    }
}

/// Every this many steps, a line about the model in training (not counted
/// as training time).
type Report<'a, M> = Option<(usize, &'a dyn Fn(&M) -> String)>;

// ANCHOR: chat_loop
/// The loop of stages 2 to 4 (and of the cross-attention decoder's stage):
/// `step` from the state's step to the stage's end, a progress bar labelled
/// with the stage's folder after a line with its title, a checkpoint every
/// `checkpoint_interval` steps and at the end. A stage of 0 steps still
/// writes its (untrained) model, so the next stage finds it.
#[allow(clippy::too_many_arguments)]
pub(crate) fn chat_loop<M: StageModel>(
    dir: &Path,
    (title, label): (&str, &str),
    stage_config: &StageConfig,
    state: &mut ChatState<M>,
    tokenizer: &Tokenizer,
    vlm_config: &VlmConfig,
    interval: usize,
    progress: Progress,
    mut step_fn: impl FnMut(
        &mut ChatState<M>,
        usize,
        &Schedule,
    ) -> Result<crate::ChatStepStats, crate::StepError>,
    report: Report<'_, M>,
) -> Result<(), RunError> {
    let steps = stage_config.steps;
    if checkpoint_dir(dir).is_some() && state.step >= steps {
        return Ok(()); // done
    }
    std::fs::create_dir_all(dir).map_err(run::io(dir))?;
    say(progress, title);
    let schedule = stage_config.schedule();
    let bar = match progress {
        Progress::Bar => ProgressBar::new(steps as u64),
        Progress::Quiet => ProgressBar::hidden(),
    };
    bar.set_style(
        ProgressStyle::with_template("{prefix} {bar:30} {pos}/{len} {msg} [{elapsed} < {eta}]")
            .expect("a valid template"),
    );
    bar.set_prefix(label.to_string());
    bar.set_position(state.step as u64);
    let started = Instant::now();
    let mut last_checkpoint = (state.step > 0).then_some(state.step);
    while state.step < steps {
        let step = state.step;
        let stats = step_fn(state, step, &schedule).map_err(|source| RunError::NonFinite {
            source,
            checkpoint: last_checkpoint,
        })?;
        state.history.steps.push(ChatRecord {
            step,
            loss: stats.loss,
            grad_norm: stats.grad_norm,
            lr: stats.lr,
        });
        state.step += 1;
        bar.set_position(state.step as u64);
        bar.set_message(format!("loss {:.3} lr {:.1e}", stats.loss, stats.lr));
        if (interval > 0 && state.step.is_multiple_of(interval)) || state.step == steps {
            state.history.train_seconds += started.elapsed().as_secs_f64();
            save_chat(dir, state, tokenizer, vlm_config)?;
            state.history.train_seconds -= started.elapsed().as_secs_f64();
            last_checkpoint = Some(state.step);
        }
        if let Some((every, report)) = report
            && every > 0
            && state.step.is_multiple_of(every)
        {
            state.history.train_seconds += started.elapsed().as_secs_f64();
            let line = report(&state.model);
            crate::commands::note(&format!("{label} step {}: {line}", state.step));
            state.history.train_seconds -= started.elapsed().as_secs_f64();
        }
    }
    if steps == 0 {
        save_chat(dir, state, tokenizer, vlm_config)?;
    }
    bar.finish_and_clear();
    Ok(())
}
// ANCHOR_END: chat_loop

/// A table of `metrics.json`: each row's `(correct, total)` per column
/// (seen pairs, held-out pairs, unseen wording).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableRecord {
    pub rows: Vec<(String, [(usize, usize); 3])>,
}

impl From<&crate::data::answers::AccuracyTable> for TableRecord {
    fn from(table: &crate::data::answers::AccuracyTable) -> Self {
        TableRecord {
            rows: table
                .rows
                .iter()
                .map(|(name, t)| (name.clone(), t.map(|t| (t.correct, t.total))))
                .collect(),
        }
    }
}

/// What `metrics.json` of a multimodal run holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VlmMetrics {
    pub config: VlmRunConfig,
    /// Parameters of the final model.
    pub parameters: usize,
    /// Training seconds of each stage (stage 1 first).
    pub stage_seconds: [f64; 4],
    pub model: TableRecord,
    pub blind: TableRecord,
    pub majority: TableRecord,
    /// Every evaluated turn: question, expected, answer, blind answer.
    pub answered: Vec<crate::vlm_eval::Answered>,
    /// An own-data run: the scores on its training and validation lines
    /// (the tables above are then empty).
    #[serde(default)]
    pub own: Option<(crate::vlm_own::OwnScores, crate::vlm_own::OwnScores)>,
}

/// The metrics file of a multimodal run.
pub const VLM_METRICS_FILE: &str = "metrics.json";

// ANCHOR: finish_vlm
/// Evaluates the final model of `run` (seen pairs, held-out pairs, unseen
/// wording; with the blind and majority baselines), writes
/// `metrics.json`, and returns the printed tables.
///
/// # Errors
/// A missing or damaged checkpoint, a file that cannot be written.
pub fn finish_vlm(run: &Path, config: &VlmRunConfig) -> Result<(VlmMetrics, String), RunError> {
    let (vlm, tokenizer) = Vlm::load(&final_of(run, Stage::Instruct)?)?;
    if let Some(dir) = &config.data {
        return finish_own(run, config, &vlm, &tokenizer, dir);
    }
    let report =
        crate::vlm_eval::evaluate_vlm(&vlm, &tokenizer, &config.qa_data(), config.eval_count);
    let seconds = |stage: Stage| -> f64 {
        let dir = run.join(stage.folder());
        let Some(dir) = checkpoint_dir(&dir) else {
            return 0.0;
        };
        match stage {
            Stage::Clip => {
                read_json::<run::History>(&dir.join(HISTORY_FILE)).map_or(0.0, |h| h.train_seconds)
            }
            _ => read_json::<ChatHistory>(&dir.join(HISTORY_FILE)).map_or(0.0, |h| h.train_seconds),
        }
    };
    let metrics = VlmMetrics {
        config: config.clone(),
        parameters: vlm.num_params(),
        stage_seconds: Stage::ALL.map(seconds),
        model: (&report.model).into(),
        blind: (&report.blind).into(),
        majority: (&report.majority).into(),
        answered: report.answered.clone(),
        own: None,
    };
    write_json(&run.join(VLM_METRICS_FILE), &metrics)?;
    let total: f64 = metrics.stage_seconds.iter().sum();
    let text = format!(
        "trained in {total:.0} s (stages: {:.0} s, {:.0} s, {:.0} s, {:.0} s)\n\n\
         exact match of the answers:\n\n{}\n\
         blind (the picture replaced by a blank one):\n\n{}\n\
         majority answer of each family:\n\n{}",
        metrics.stage_seconds[0],
        metrics.stage_seconds[1],
        metrics.stage_seconds[2],
        metrics.stage_seconds[3],
        report.model.render(),
        report.blind.render(),
        report.majority.render(),
    );
    Ok((metrics, text))
}
// ANCHOR_END: finish_vlm

/// [`finish_vlm`] for an own-data run: accuracy per answer and family on
/// its training and validation lines.
fn finish_own(
    run: &Path,
    config: &VlmRunConfig,
    vlm: &Vlm,
    tokenizer: &Tokenizer,
    dir: &Path,
) -> Result<(VlmMetrics, String), RunError> {
    let (train, validation) = crate::vlm_own::evaluate_own(vlm, tokenizer, dir, config.side)?;
    let empty = TableRecord { rows: Vec::new() };
    let metrics = VlmMetrics {
        config: config.clone(),
        parameters: vlm.num_params(),
        stage_seconds: [0.0; 4],
        model: empty.clone(),
        blind: empty.clone(),
        majority: empty,
        answered: Vec::new(),
        own: Some((train.clone(), validation.clone())),
    };
    write_json(&run.join(VLM_METRICS_FILE), &metrics)?;
    let text = format!(
        "exact match on {} (every 10th line is validation):\n\n{}",
        dir.display(),
        crate::vlm_own::render_own(&train, &validation)
    );
    Ok((metrics, text))
}

/// Whether `run` holds a multimodal run.
pub fn holds_vlm_run(run: &Path) -> bool {
    [VLM_RUN_FILE, VLM_TOKENIZER_FILE]
        .iter()
        .any(|f| run.join(f).exists())
        || Stage::ALL.iter().any(|s| run.join(s.folder()).exists())
}

/// Deletes the multimodal run in `run` (its recipe, stage folders and
/// metrics, nothing else), under its lock: `--force`.
///
/// # Errors
/// [`RunError::Locked`] if a training writes it, [`RunError::Io`].
pub fn clear_vlm(run: &Path) -> Result<(), RunError> {
    if !holds_vlm_run(run) {
        return Ok(());
    }
    remove_run(
        run,
        &Stage::ALL.map(Stage::folder),
        &[VLM_RUN_FILE, VLM_TOKENIZER_FILE, VLM_METRICS_FILE],
    )
}

/// Removes a staged run's stage folders and files (only those: nothing
/// else in `run` is touched), holding the run's lock and each stage's.
///
/// # Errors
/// [`RunError::Locked`] if a training writes it, [`RunError::Io`].
pub(crate) fn remove_run(run: &Path, stages: &[&str], files: &[&str]) -> Result<(), RunError> {
    let _lock = run::lock(run)?;
    for stage in stages {
        let dir = run.join(stage);
        if dir.exists() {
            let _stage_lock = run::lock(&dir)?; // no training inside either
            std::fs::remove_dir_all(&dir).map_err(run::io(&dir))?;
        }
    }
    for name in files {
        let path = run.join(name);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(run::io(&path)(e)),
            _ => {}
        }
    }
    Ok(())
}

/// `train eval RUN` on a multimodal run: evaluates its final model again.
///
/// # Errors
/// A missing or damaged recipe or checkpoint.
pub fn eval_vlm_run(run: &Path) -> Result<String, RunError> {
    let config: VlmRunConfig = read_json(&run.join(VLM_RUN_FILE))?;
    config.validate()?;
    let (_, text) = finish_vlm(run, &config)?;
    Ok(format!(
        "{text}\nwrote {}\n",
        run.join(VLM_METRICS_FILE).display()
    ))
}

impl VlmRunConfig {
    /// A run small enough for a test: tiny widths, a few steps per stage,
    /// a small evaluation.
    pub fn micro() -> Self {
        let stage = |steps| StageConfig {
            steps,
            batch_size: 4,
            lr: 2e-3,
            min_lr: 1e-4,
            warmup: 0,
            curriculum: 0,
        };
        VlmRunConfig {
            max_objects: 2,
            max_turns: 2,
            tower_channels: vec![4, 4, 4],
            lm_width: 8,
            lm_depth: 1,
            lm_heads: 2,
            clip: stage(2),
            lm: stage(2),
            align: stage(2),
            instruct: stage(3),
            checkpoint_interval: 2,
            eval_count: 2,
            tokenizer_captions: 20,
            clip_size: crate::ModelSize::Micro,
            ..VlmRunConfig::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::failpoints;

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("vlm-run-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn per_turn_weights_give_every_answer_the_same_total() {
        // a 3-token answer, a 1-token answer, a 2-token answer at the end
        let mut w = [0.0, 1.0, 1.0, 1.0, 0.0, 0.0, 1.0, 0.0, 1.0, 1.0];
        per_turn(&mut w);
        let third = 1.0 / 3.0;
        assert_eq!(w, [0.0, third, third, third, 0.0, 0.0, 1.0, 0.0, 0.5, 0.5]);
        let mut none = [0.0; 4];
        per_turn(&mut none);
        assert_eq!(none, [0.0; 4]);
    }

    /// The final model's every weight, as bits.
    fn final_bits(run: &Path) -> Vec<u32> {
        let (vlm, _) = Vlm::load(&final_of(run, Stage::Instruct).unwrap()).unwrap();
        vlm.params()
            .iter()
            .flat_map(|(_, t)| t.iter().map(|x| x.to_bits()).collect::<Vec<_>>())
            .collect()
    }

    // ANCHOR: resume_test
    /// A run killed at any write of any stage (a failpoint standing for the
    /// kill) resumes to exactly the weights of the run that was never
    /// interrupted.
    #[test]
    fn a_run_killed_anywhere_resumes_to_the_same_weights() {
        let config = VlmRunConfig::micro();
        let whole = temp("whole");
        train_vlm(&whole, Some(&config), Progress::Quiet).unwrap();
        let want = final_bits(&whole);
        // count the failpoints of a whole run (every rename and removal of
        // every checkpoint of every stage), then kill one run at each
        failpoints::fail_at(None, std::io::ErrorKind::Interrupted);
        let counted = temp("count");
        train_vlm(&counted, Some(&config), Progress::Quiet).unwrap();
        let points = failpoints::reached();
        assert!(points >= 4 * 3, "{points} failpoints"); // at least 3 per stage
        for k in 0..points {
            let run = temp(&format!("kill{k}"));
            failpoints::fail_at(Some(k), std::io::ErrorKind::Interrupted);
            let first = train_vlm(&run, Some(&config), Progress::Quiet);
            failpoints::fail_at(None, std::io::ErrorKind::Interrupted);
            assert!(
                first.is_err(),
                "failpoint {k} of {points} did not stop the run"
            );
            // a reader finds a complete checkpoint in every stage written so far
            for stage in Stage::ALL {
                let dir = run.join(stage.folder());
                if dir.exists() && dir.join(CHECKPOINT_DIR).exists() {
                    assert!(checkpoint_dir(&dir).is_some());
                }
            }
            train_vlm(&run, None, Progress::Quiet)
                .unwrap_or_else(|e| panic!("resume after failpoint {k}: {e}"));
            assert_eq!(final_bits(&run), want, "failpoint {k}");
            std::fs::remove_dir_all(&run).unwrap();
        }
        // a finished run resumes to nothing new; starting over it is refused
        train_vlm(&whole, None, Progress::Quiet).unwrap();
        assert_eq!(final_bits(&whole), want);
        assert!(matches!(
            train_vlm(&whole, Some(&config), Progress::Quiet),
            Err(RunError::Exists { .. })
        ));
        for dir in [whole, counted] {
            std::fs::remove_dir_all(dir).unwrap();
        }
    }
    // ANCHOR_END: resume_test

    #[test]
    fn frozen_parts_are_the_stages_before() {
        let config = VlmRunConfig::micro();
        let run = temp("frozen");
        train_vlm(&run, Some(&config), Progress::Quiet).unwrap();
        let clip = model::load_checkpoint(&final_of(&run, Stage::Clip).unwrap()).unwrap();
        let (lm, _) = LanguageModel::load(&final_of(&run, Stage::Lm).unwrap()).unwrap();
        let (aligned, _) = Vlm::load(&final_of(&run, Stage::Align).unwrap()).unwrap();
        let (tuned, _) = Vlm::load(&final_of(&run, Stage::Instruct).unwrap()).unwrap();
        // alignment trained the projector alone
        assert_eq!(aligned.vision_tower, clip.model.image);
        assert_eq!(aligned.language_model, lm);
        // instruction tuning left the tower alone, trained the rest
        assert_eq!(tuned.vision_tower, clip.model.image);
        assert_ne!(tuned.language_model, lm);
        assert_ne!(tuned.multi_modal_projector, aligned.multi_modal_projector);
        let (metrics, text) = finish_vlm(&run, &config).unwrap();
        assert!(text.contains("blind"), "{text}");
        assert!(!metrics.answered.is_empty());
        std::fs::remove_dir_all(&run).unwrap();
    }

    #[test]
    fn bad_settings_name_their_flag() {
        let mut config = VlmRunConfig::micro();
        config.instruct.batch_size = 1;
        let e = config.validate().unwrap_err().to_string();
        assert!(e.contains("batch-size") && e.contains("4-instruct"), "{e}");
        let mut config = VlmRunConfig::micro();
        config.side = 20;
        assert!(config.validate().unwrap_err().to_string().contains("side"));
        let mut config = VlmRunConfig::micro();
        config.lm_heads = 3;
        let tok = config.qa_data().train_tokenizer(5).unwrap();
        assert!(config.vlm_config(&tok).is_err());
    }
}
