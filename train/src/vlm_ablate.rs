//! Ablations of the multimodal recipe ([`crate::vlm_run`]): what each
//! stage, the frozen tower, the mask and the way of joining vision and
//! language contribute, each variant trained with several seeds.
//!
//! | variant | what changes |
//! | --- | --- |
//! | `baseline` | nothing: the recipe as configured |
//! | `no-lm` | stage 2 of 0 steps: the language model starts from its initialisation |
//! | `no-align` | stage 3 of 0 steps: instruction tuning starts from a fresh projector |
//! | `scratch` | stages 1 to 3 of 0 steps: everything trained from its initialisation, end to end in stage 4, the tower too |
//! | `unfrozen-tower` | the vision tower trains in stage 4 too |
//! | `prefix-lm` | the prefix-LM mask instead of the causal one |
//! | `cross-attention` | stage 1's caption decoder, which reads the picture through cross-attention, trained on stage 4's conversations ([`crate::vlm_crossattn`]) |
//!
//! A variant shares with the baseline of its seed whatever its recipe does
//! not change: the tokenizer, and each stage whose settings, and those of
//! every stage before it, are the baseline's ([`shared_levels`]). Those are
//! not trained again: the baseline's finished checkpoint folders are
//! hard-linked (copied where the file system cannot link) into the
//! variant's run folder, which then resumes like any run and finds them
//! done. The whole ablation costs the baseline plus each variant's own
//! stages.
//!
//! ```text
//! <out>/
//! ├── vlm-ablations.md          the generated tables
//! ├── vlm-ablations.txt         their figures one by one, for the chapter's prose
//! ├── vlm-ablations.json        every number
//! └── runs/<variant>/seed-<n>/  a multimodal run folder (train eval reads it), or a cross-attention run
//! ```
//!
//! A finished run (its `metrics.json` records the variant's recipe) is read
//! back, not trained; an unfinished one resumes where it stopped. So the
//! command can be stopped at any moment and started again.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::data::answers::Column;
use crate::data::questions::Family;
use crate::run::{self, CHECKPOINT_DIR, Progress, RunError, checkpoint_dir};
use crate::vlm_crossattn::{self, CROSS_RUN_FILE, CROSS_STAGE};
use crate::vlm_run::{
    self, MaskKind, Stage, TableRecord, VLM_METRICS_FILE, VLM_RUN_FILE, VLM_TOKENIZER_FILE,
    VlmMetrics, VlmRunConfig,
};

/// The markdown tables and the JSON file `vlm-ablate` writes into its folder.
pub const TABLE_FILE: &str = "vlm-ablations.md";
pub const JSON_FILE: &str = "vlm-ablations.json";
/// The tables' figures one by one, as mdBook anchors for the chapter's prose.
pub const FIGURES_FILE: &str = "vlm-ablations.txt";
/// The subfolder of the ablation folder holding the runs.
pub const RUNS_DIR: &str = "runs";

/// One variant of the recipe.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum VlmVariant {
    /// The recipe as configured.
    Baseline,
    /// No text-only pretraining.
    NoLm,
    /// No projector alignment.
    NoAlign,
    /// Everything from its initialisation, in one stage.
    Scratch,
    /// The tower trained in stage 4.
    UnfrozenTower,
    /// The prefix-LM mask.
    PrefixLm,
    /// The cross-attention decoder instead of image tokens in the context.
    CrossAttention,
    /// Stage 4 three times as long (run only when listed).
    LongInstruct,
}

impl VlmVariant {
    /// Every variant, in table order.
    pub const ALL: [VlmVariant; 8] = [
        VlmVariant::Baseline,
        VlmVariant::NoLm,
        VlmVariant::NoAlign,
        VlmVariant::Scratch,
        VlmVariant::UnfrozenTower,
        VlmVariant::PrefixLm,
        VlmVariant::CrossAttention,
        VlmVariant::LongInstruct,
    ];

    /// Whether the variant runs when none are named: all but the long
    /// stage 4, which alone costs as much as the rest.
    pub fn runs_by_default(self) -> bool {
        self != VlmVariant::LongInstruct
    }

    /// The folder's name (and the `--variants` value).
    pub fn name(self) -> &'static str {
        match self {
            VlmVariant::Baseline => "baseline",
            VlmVariant::NoLm => "no-lm",
            VlmVariant::NoAlign => "no-align",
            VlmVariant::Scratch => "scratch",
            VlmVariant::UnfrozenTower => "unfrozen-tower",
            VlmVariant::PrefixLm => "prefix-lm",
            VlmVariant::CrossAttention => "cross-attention",
            VlmVariant::LongInstruct => "long-instruct",
        }
    }

    /// What the variant changes, in words.
    pub fn describe(self) -> &'static str {
        match self {
            VlmVariant::Baseline => "the recipe as configured",
            VlmVariant::NoLm => {
                "no text-only pretraining: the language model starts from its initialisation"
            }
            VlmVariant::NoAlign => "no projector alignment: stage 4 starts from a fresh projector",
            VlmVariant::Scratch => {
                "everything from its initialisation, trained end to end in stage 4 (the tower too)"
            }
            VlmVariant::UnfrozenTower => "the vision tower trained in stage 4 too",
            VlmVariant::PrefixLm => "the prefix-LM mask instead of the causal one",
            VlmVariant::CrossAttention => {
                "cross-attention instead of image tokens in the context: stage 1's caption decoder trained on stage 4's conversations"
            }
            VlmVariant::LongInstruct => {
                "stage 4 three times as long (its warmup and curriculum as they are)"
            }
        }
    }

    // ANCHOR: variant_config
    /// The variant's recipe: `base` changed in its one respect. The
    /// cross-attention variant keeps `base` whole: stage 1, and stage 4's
    /// length, learning rates and tower freezing for its decoder.
    pub fn config(self, base: &VlmRunConfig) -> VlmRunConfig {
        let mut c = base.clone();
        match self {
            VlmVariant::Baseline | VlmVariant::CrossAttention => {}
            VlmVariant::NoLm => c.lm.steps = 0,
            VlmVariant::NoAlign => c.align.steps = 0,
            VlmVariant::Scratch => {
                c.clip.steps = 0;
                c.clip_single_steps = 0;
                c.lm.steps = 0;
                c.align.steps = 0;
                c.unfreeze_vision = true;
            }
            VlmVariant::UnfrozenTower => c.unfreeze_vision = true,
            VlmVariant::PrefixLm => c.mask = MaskKind::PrefixLm,
            VlmVariant::LongInstruct => c.instruct.steps *= 3,
        }
        c
    }
    // ANCHOR_END: variant_config
}

// ANCHOR: shared_levels
/// How much of a run of `base` a run of `config` can take over, in order:
/// 0 nothing, 1 the tokenizer, 2 also stage 1, … 5 all four stages. A
/// level is shared when the two recipes agree on everything it and the
/// levels before it read.
pub fn shared_levels(config: &VlmRunConfig, base: &VlmRunConfig) -> usize {
    (0..=Stage::ALL.len())
        .take_while(|&level| same_up_to(config, base, level))
        .count()
}

/// Whether `a` and `b` agree on what the tokenizer (level 0) and stages
/// `1..=level` read: what only later levels read is taken from `b`, the
/// rest compared. A setting not named here counts at every level.
fn same_up_to(a: &VlmRunConfig, b: &VlmRunConfig, level: usize) -> bool {
    let mut a = a.clone();
    if level < 1 {
        a.clip = b.clip;
        a.clip_single_steps = b.clip_single_steps;
        a.clip_caption_weight = b.clip_caption_weight;
        a.clip_size = b.clip_size;
    }
    if level < 2 {
        a.lm = b.lm;
        a.lm_width = b.lm_width;
        a.lm_depth = b.lm_depth;
        a.lm_heads = b.lm_heads;
        a.pool = b.pool; // the image tokens set the language model's length
    }
    if level < 3 {
        a.align = b.align;
        a.mask = b.mask;
        a.mlp_projector = b.mlp_projector;
        a.answer_weights = b.answer_weights;
    }
    if level < 4 {
        a.instruct = b.instruct;
        a.unfreeze_vision = b.unfreeze_vision;
        a.instruct_eval_interval = b.instruct_eval_interval;
    }
    a.eval_count = b.eval_count; // the evaluation comes after every stage
    a == *b
}
// ANCHOR_END: shared_levels

/// What `vlm-ablate` runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VlmAblateConfig {
    /// Seeds per variant: the recipe's seed and the ones after it.
    pub seeds: usize,
    /// Multiplies every stage's steps, warmup and curriculum (and stage
    /// 1's single-object steps): 0.25 for a run a quarter as long.
    pub scale: f64,
    /// Start from [`VlmRunConfig::micro`] (tests) instead of the recipe.
    pub micro: bool,
    /// Conversations per evaluation split (`None`: the recipe's).
    pub eval_count: Option<usize>,
    /// The variants; the baseline runs whether listed or not.
    pub variants: Vec<VlmVariant>,
}

impl Default for VlmAblateConfig {
    fn default() -> Self {
        VlmAblateConfig {
            seeds: 3,
            scale: 1.0,
            micro: false,
            eval_count: None,
            variants: (VlmVariant::ALL.into_iter())
                .filter(|v| v.runs_by_default())
                .collect(),
        }
    }
}

impl VlmAblateConfig {
    /// The baseline's recipe: the default (or micro) recipe, every stage
    /// scaled, no evaluation during training.
    pub fn base(&self) -> VlmRunConfig {
        let mut c = if self.micro {
            VlmRunConfig::micro()
        } else {
            VlmRunConfig::default()
        };
        let scale = |n: usize| (n as f64 * self.scale).round() as usize;
        for stage in [&mut c.clip, &mut c.lm, &mut c.align, &mut c.instruct] {
            if stage.steps > 0 {
                stage.steps = scale(stage.steps).max(1);
            }
            stage.warmup = scale(stage.warmup);
            stage.curriculum = scale(stage.curriculum);
        }
        c.clip_single_steps = scale(c.clip_single_steps);
        c.instruct_eval_interval = 0;
        if let Some(n) = self.eval_count {
            c.eval_count = n;
        }
        c
    }

    /// The seeds of every variant.
    pub fn seeds(&self) -> Vec<u64> {
        let first = self.base().seed;
        (0..self.seeds as u64).map(|i| first + i).collect()
    }

    /// The baseline, then the listed variants in table order.
    pub fn variants(&self) -> Vec<VlmVariant> {
        VlmVariant::ALL
            .into_iter()
            .filter(|&v| v == VlmVariant::Baseline || self.variants.contains(&v))
            .collect()
    }

    /// The command line that runs this ablation.
    pub fn command(&self) -> String {
        let mut line = format!(
            "cargo run --release -p train -- vlm-ablate --seeds {} --scale {}",
            self.seeds, self.scale
        );
        if self.micro {
            line += " --micro";
        }
        if let Some(n) = self.eval_count {
            line += &format!(" --eval-count {n}");
        }
        let variants = self.variants();
        if variants != VlmAblateConfig::default().variants() {
            let names: Vec<&str> = variants[1..].iter().map(|v| v.name()).collect();
            line += &format!(" --variants {}", names.join(","));
        }
        line
    }

    /// Checks the settings and the recipe they make.
    ///
    /// # Errors
    /// [`RunError::BadValue`] naming the flag.
    pub fn validate(&self) -> Result<(), RunError> {
        if !(1..=100).contains(&self.seeds) {
            return Err(RunError::BadValue {
                name: "seeds",
                why: format!("must be 1 to 100, got {}", self.seeds),
            });
        }
        if !(self.scale.is_finite() && self.scale > 0.0 && self.scale <= 100.0) {
            return Err(RunError::BadValue {
                name: "scale",
                why: format!("must be above 0 and at most 100, got {}", self.scale),
            });
        }
        let base = self.base();
        for variant in self.variants() {
            variant.config(&base).validate()?;
        }
        Ok(())
    }
}

/// One run of the ablation: a variant with one seed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VlmAblationRun {
    pub variant: VlmVariant,
    pub seed: u64,
    /// The run folder.
    pub run: PathBuf,
    /// Stage folders taken over from the baseline of the same seed.
    pub reused: Vec<String>,
    /// Stage folders this run trained itself (0 steps included).
    pub trained: Vec<String>,
    /// Seconds of training in those.
    pub train_seconds: f64,
    /// Parameters of the model that answers.
    pub parameters: usize,
    pub config: VlmRunConfig,
    /// Exact match: the model, the blind model, the majority answer.
    pub model: TableRecord,
    pub blind: TableRecord,
    pub majority: TableRecord,
}

/// The mean and range of a figure over the seeds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Spread {
    pub mean: f64,
    pub min: f64,
    pub max: f64,
    /// Seeds that measured it.
    pub seeds: usize,
}

impl Spread {
    /// `None` for no values.
    pub fn of(values: &[f64]) -> Option<Spread> {
        if values.is_empty() {
            return None;
        }
        Some(Spread {
            mean: values.iter().sum::<f64>() / values.len() as f64,
            min: values.iter().copied().fold(f64::INFINITY, f64::min),
            max: values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            seeds: values.len(),
        })
    }
}

/// Accuracy over the seeds per row (family, objects, turn, all) and
/// column (seen pairs, held-out pairs, unseen wording).
pub type SpreadTable = Vec<(String, [Option<Spread>; 3])>;

/// A variant over its seeds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VariantSummary {
    pub variant: VlmVariant,
    pub model: SpreadTable,
    pub blind: SpreadTable,
    pub majority: SpreadTable,
    pub train_seconds: Option<Spread>,
    pub parameters: usize,
}

/// Everything `vlm-ablate` measured: what `vlm-ablations.json` holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VlmAblation {
    pub settings: VlmAblateConfig,
    pub command: String,
    /// The baseline's recipe (of the first seed).
    pub base: VlmRunConfig,
    pub seeds: Vec<u64>,
    pub runs: Vec<VlmAblationRun>,
    pub summary: Vec<VariantSummary>,
}

/// The run folder of a variant and seed.
pub fn run_folder(out: &Path, variant: VlmVariant, seed: u64) -> PathBuf {
    out.join(RUNS_DIR)
        .join(variant.name())
        .join(format!("seed-{seed}"))
}

fn say(progress: Progress, line: &str) {
    if progress == Progress::Bar {
        crate::commands::note(line);
    }
}

fn different(dir: &Path) -> RunError {
    RunError::BadValue {
        name: "out",
        why: format!(
            "{} holds a run of another recipe (another --scale, --micro or --eval-count?); \
             remove it or choose another --out",
            dir.display()
        ),
    }
}

// ANCHOR: vlm_ablate
/// Runs (or reads back, or resumes) every variant of `settings` with each
/// seed under `out/runs/<variant>/seed-<n>/`, the baseline of a seed first,
/// and writes `out/vlm-ablations.md`, `out/vlm-ablations.txt` and
/// `out/vlm-ablations.json`.
///
/// # Errors
/// Bad settings, a file that cannot be written, a folder that holds a run
/// of another recipe, a locked folder, a training that met a NaN.
pub fn vlm_ablate(
    out: &Path,
    settings: &VlmAblateConfig,
    progress: Progress,
) -> Result<VlmAblation, RunError> {
    settings.validate()?;
    let variants = settings.variants();
    let seeds = settings.seeds();
    let total = variants.len() * seeds.len();
    let mut runs = Vec::new();
    for (i, &seed) in seeds.iter().enumerate() {
        let base = VlmRunConfig {
            seed,
            ..settings.base()
        };
        let baseline = run_folder(out, VlmVariant::Baseline, seed);
        for (j, &variant) in variants.iter().enumerate() {
            say(
                progress,
                &format!(
                    "vlm-ablate {}/{total}: {}, seed {seed}: {}",
                    i * variants.len() + j + 1,
                    variant.name(),
                    variant.describe()
                ),
            );
            let dir = run_folder(out, variant, seed);
            runs.push(run_variant(&dir, variant, &base, &baseline, progress)?);
        }
    }
    let ablation = VlmAblation {
        settings: settings.clone(),
        command: settings.command(),
        base: settings.base(),
        seeds,
        summary: variants.iter().map(|&v| summarise(v, &runs)).collect(),
        runs,
    };
    let write = |name: &str, text: &str| {
        let path = out.join(name);
        model::write_atomic(&path, text.as_bytes()).map_err(run::io(&path))
    };
    write(TABLE_FILE, &table(&ablation))?;
    write(FIGURES_FILE, &figures(&ablation))?;
    let json = serde_json::to_string_pretty(&ablation).map_err(|source| RunError::Json {
        path: out.join(JSON_FILE),
        source,
    })?;
    write(JSON_FILE, &json)?;
    Ok(ablation)
}
// ANCHOR_END: vlm_ablate

/// The stage folders a variant takes over from the baseline, and the ones
/// it trains.
fn plan(
    variant: VlmVariant,
    config: &VlmRunConfig,
    base: &VlmRunConfig,
) -> (Vec<String>, Vec<String>) {
    let folders = |stages: &[Stage]| stages.iter().map(|s| s.folder().to_string()).collect();
    match variant {
        VlmVariant::Baseline => (Vec::new(), folders(&Stage::ALL)),
        VlmVariant::CrossAttention => (folders(&[Stage::Clip]), vec![CROSS_STAGE.to_string()]),
        _ => {
            let stages = shared_levels(config, base).saturating_sub(1);
            (
                folders(&Stage::ALL[..stages]),
                folders(&Stage::ALL[stages..]),
            )
        }
    }
}

/// Trains, resumes or reads back one variant with one seed in `dir`.
fn run_variant(
    dir: &Path,
    variant: VlmVariant,
    base: &VlmRunConfig,
    baseline: &Path,
    progress: Progress,
) -> Result<VlmAblationRun, RunError> {
    let config = variant.config(base);
    let (reused, trained) = plan(variant, &config, base);
    let metrics = match finished(dir, &config)? {
        Some(metrics) => {
            say(progress, &format!("  finished before: {}", dir.display()));
            metrics
        }
        None => {
            if !reused.is_empty() {
                say(
                    progress,
                    &format!("  taking {} from the baseline", reused.join(", ")),
                );
            }
            // the baseline's tokenizer is the variant's unless the variant changes what it reads
            let take = (variant != VlmVariant::Baseline && shared_levels(&config, base) > 0)
                .then_some(reused.as_slice());
            if variant == VlmVariant::CrossAttention {
                prepare(dir, &config, baseline, CROSS_RUN_FILE, take)?;
                vlm_crossattn::train_crossattn(dir, progress)?;
                vlm_crossattn::finish_crossattn(dir, &config)?
            } else {
                let start = prepare(dir, &config, baseline, VLM_RUN_FILE, take)?;
                vlm_run::train_vlm(dir, start.then_some(&config), progress)?;
                vlm_run::finish_vlm(dir, &config)?.0
            }
        }
    };
    // the cross-attention stage's seconds stand in stage 4's place
    let train_seconds = Stage::ALL
        .iter()
        .zip(metrics.stage_seconds)
        .filter(|(s, _)| {
            let folder = match (variant, s) {
                (VlmVariant::CrossAttention, Stage::Instruct) => CROSS_STAGE,
                _ => s.folder(),
            };
            trained.iter().any(|t| t == folder)
        })
        .map(|(_, seconds)| seconds)
        .sum();
    Ok(VlmAblationRun {
        variant,
        seed: config.seed,
        run: dir.to_path_buf(),
        reused,
        trained,
        train_seconds,
        parameters: metrics.parameters,
        config,
        model: metrics.model,
        blind: metrics.blind,
        majority: metrics.majority,
    })
}

/// The metrics of a finished run of `config` in `dir` (`None`: not
/// finished).
///
/// # Errors
/// A damaged metrics file, or one of another recipe.
fn finished(dir: &Path, config: &VlmRunConfig) -> Result<Option<VlmMetrics>, RunError> {
    let path = dir.join(VLM_METRICS_FILE);
    if !path.is_file() {
        return Ok(None);
    }
    let metrics: VlmMetrics = run::read_json(&path)?;
    if metrics.config != *config {
        return Err(different(dir));
    }
    Ok(Some(metrics))
}

// ANCHOR: prepare
/// Gets `dir` ready to train `config`, its recipe in the file `recipe`,
/// and says whether the run starts afresh (`true`: [`vlm_run::train_vlm`]
/// writes the recipe) or resumes:
///
/// - with the recipe there (the same one), the run resumes;
/// - otherwise nothing was trained there yet (a run writes its recipe
///   before its first step), and what a start cut short left goes. With
///   `take` naming stage folders of `baseline`, the baseline's tokenizer
///   and those stages' checkpoints are linked in, then the recipe is
///   written: the run resumes with them done. Without, it starts afresh.
///
/// # Errors
/// A recipe of another run, a file that cannot be linked or written.
fn prepare(
    dir: &Path,
    config: &VlmRunConfig,
    baseline: &Path,
    recipe: &str,
    take: Option<&[String]>,
) -> Result<bool, RunError> {
    let recipe = dir.join(recipe);
    if recipe.is_file() {
        let recorded: VlmRunConfig = run::read_json(&recipe)?;
        if recorded != *config {
            return Err(different(dir));
        }
        return Ok(false);
    }
    vlm_run::clear_vlm(dir)?;
    vlm_crossattn::clear_crossattn(dir)?;
    let Some(stages) = take else {
        return Ok(true);
    };
    std::fs::create_dir_all(dir).map_err(run::io(dir))?;
    link(
        &baseline.join(VLM_TOKENIZER_FILE),
        &dir.join(VLM_TOKENIZER_FILE),
    )?;
    for stage in stages {
        let from = checkpoint_dir(&baseline.join(stage)).ok_or_else(|| RunError::Io {
            path: baseline.join(stage).join(CHECKPOINT_DIR),
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "the baseline's stage has no checkpoint",
            ),
        })?;
        link_tree(&from, &dir.join(stage).join(CHECKPOINT_DIR))?;
    }
    run::write_json(&recipe, config)?; // last: the run is there once its recipe is
    Ok(false)
}
// ANCHOR_END: prepare

/// Hard-links `from` at `to`, or copies it where the file system cannot
/// link. A finished checkpoint is never written again (a new one replaces
/// the folder), so the two runs can share its files.
fn link(from: &Path, to: &Path) -> Result<(), RunError> {
    if std::fs::hard_link(from, to).is_err() {
        std::fs::copy(from, to).map_err(run::io(from))?;
    }
    Ok(())
}

/// [`link`] for every file of the folder `from`, into a new folder `to`.
fn link_tree(from: &Path, to: &Path) -> Result<(), RunError> {
    std::fs::create_dir_all(to).map_err(run::io(to))?;
    for entry in std::fs::read_dir(from).map_err(run::io(from))? {
        let entry = entry.map_err(run::io(from))?;
        let path = entry.path();
        let target = to.join(entry.file_name());
        if path.is_dir() {
            link_tree(&path, &target)?;
        } else {
            link(&path, &target)?;
        }
    }
    Ok(())
}

/// A variant's figures over its seeds.
fn summarise(variant: VlmVariant, runs: &[VlmAblationRun]) -> VariantSummary {
    let runs: Vec<&VlmAblationRun> = runs.iter().filter(|r| r.variant == variant).collect();
    let over = |table: fn(&VlmAblationRun) -> &TableRecord| -> SpreadTable {
        let mut names: Vec<String> = Vec::new();
        for r in &runs {
            for (name, _) in &table(r).rows {
                if !names.contains(name) {
                    names.push(name.clone());
                }
            }
        }
        names
            .into_iter()
            .map(|name| {
                let cells = [0, 1, 2].map(|c| {
                    let values: Vec<f64> = runs
                        .iter()
                        .filter_map(|r| table(r).rows.iter().find(|(n, _)| *n == name))
                        .filter(|(_, t)| t[c].1 > 0)
                        .map(|(_, t)| t[c].0 as f64 / t[c].1 as f64)
                        .collect();
                    Spread::of(&values)
                });
                (name, cells)
            })
            .collect()
    };
    let seconds: Vec<f64> = runs.iter().map(|r| r.train_seconds).collect();
    VariantSummary {
        variant,
        model: over(|r| &r.model),
        blind: over(|r| &r.blind),
        majority: over(|r| &r.majority),
        train_seconds: Spread::of(&seconds),
        parameters: runs.first().map_or(0, |r| r.parameters),
    }
}

/// A cell: the mean in %, and the range over the seeds when there are several.
fn cell(spread: Option<Spread>) -> String {
    match spread {
        None => "–".to_string(),
        Some(s) if s.seeds > 1 => format!(
            "{:.1} ({:.0}–{:.0})",
            100.0 * s.mean,
            100.0 * s.min,
            100.0 * s.max
        ),
        Some(s) => format!("{:.1}", 100.0 * s.mean),
    }
}

fn get(table: &SpreadTable, row: &str, column: usize) -> Option<Spread> {
    table
        .iter()
        .find(|(name, _)| name == row)
        .and_then(|(_, cells)| cells[column])
}

// ANCHOR: table
/// The results as markdown: how they were made (seeds, command, each
/// stage's length), what each variant trained, then one table per column
/// of the evaluation (seen pairs, held-out pairs, unseen wording) with a
/// row per variant and the majority answer below.
pub fn table(ablation: &VlmAblation) -> String {
    let Some(baseline) = ablation.runs.first() else {
        return String::from("No ablation results.\n");
    };
    let b = &ablation.base;
    let seeds: Vec<String> = ablation.seeds.iter().map(u64::to_string).collect();
    let lengths: Vec<String> = Stage::ALL
        .iter()
        .map(|&s| {
            let c = b.stage(s);
            format!("{} {} × {}", s.folder(), c.steps, c.batch_size)
        })
        .collect();
    // a variant that lengthens a stage says so (long-instruct); the others only cut
    let lengthens = ablation.runs.iter().any(|r| {
        Stage::ALL
            .iter()
            .any(|&s| r.config.stage(s).steps > b.stage(s).steps)
    });
    let changes = if lengthens {
        "set some of them to 0 or lengthen one"
    } else {
        "set some of them to 0"
    };
    let mut md = format!(
        "Every variant trained with seed{} {} (`{}`). Stage lengths in steps × examples: {} \
         ({} × the {} recipe's); the variants {changes}, as the first table says. \
         Evaluated on {} conversations of each split. A stage a variant shares with the \
         baseline of its seed was trained once, for the baseline, and taken over.\n\n",
        if seeds.len() == 1 { "" } else { "s" },
        seeds.join(", "),
        ablation.command,
        lengths.join(", "),
        ablation.settings.scale,
        if ablation.settings.micro {
            "micro"
        } else {
            "default"
        },
        b.eval_count,
    );
    md += "| variant | what changes | trained | taken from the baseline | parameters | training (s) |\n";
    md += "| --- | --- | --- | --- | ---: | ---: |\n";
    for s in &ablation.summary {
        let Some(run) = ablation.runs.iter().find(|r| r.variant == s.variant) else {
            continue;
        };
        let trained: Vec<String> = run
            .trained
            .iter()
            .map(|folder| {
                // the cross-attention stage stands in stage 4's place
                let stage = Stage::ALL.iter().find(|st| st.folder() == folder);
                let steps =
                    stage.map_or(run.config.instruct.steps, |&st| run.config.stage(st).steps);
                let base_steps = stage.map_or(b.instruct.steps, |&st| b.stage(st).steps);
                if steps == 0 || steps > base_steps {
                    format!("{folder} ({steps} steps)")
                } else {
                    folder.clone()
                }
            })
            .collect();
        let mut what = s.variant.describe().to_string();
        if s.variant != VlmVariant::Baseline
            && s.variant != VlmVariant::CrossAttention
            && run.config == baseline.config
        {
            what += " (the recipe already does: the baseline's runs again)";
        }
        md += &format!(
            "| {} | {} | {} | {} | {} | {} |\n",
            s.variant.name(),
            what,
            if trained.is_empty() {
                "–".to_string()
            } else {
                trained.join(", ")
            },
            if run.reused.is_empty() {
                "–".to_string()
            } else {
                run.reused.join(", ")
            },
            s.parameters,
            s.train_seconds
                .map_or("–".to_string(), |t| format!("{:.0}", t.mean)),
        );
    }
    let families: Vec<&str> = Family::ALL
        .iter()
        .map(|f| f.name())
        .filter(|name| {
            ablation
                .summary
                .iter()
                .any(|s| s.model.iter().any(|(n, _)| n == name))
        })
        .collect();
    let titles = [
        "Seen pairs, seen wording",
        "Held-out (shape, colour) pairs",
        "Unseen wording (seen pairs)",
    ];
    for (column, title) in Column::ALL.iter().zip(titles) {
        let c = Column::ALL.iter().position(|x| x == column).unwrap_or(0);
        md += &format!("\n**{title}**\n\n| variant |");
        for f in &families {
            md += &format!(" {f} |");
        }
        md += " all | blind, all |\n| --- |";
        md += &" ---: |".repeat(families.len() + 2);
        md.push('\n');
        for s in &ablation.summary {
            md += &format!("| {} |", s.variant.name());
            for f in &families {
                md += &format!(" {} |", cell(get(&s.model, f, c)));
            }
            md += &format!(
                " {} | {} |\n",
                cell(get(&s.model, "all", c)),
                cell(get(&s.blind, "all", c))
            );
        }
        if let Some(s) = ablation.summary.first() {
            md += "| majority answer |";
            for f in &families {
                md += &format!(" {} |", cell(get(&s.majority, f, c)));
            }
            md += &format!(" {} | |\n", cell(get(&s.majority, "all", c)));
        }
    }
    md += "\nEach cell is the exact-match accuracy in %: the mean over the seeds and, in brackets, \
           the lowest and the highest. *blind*: the same model asked with the picture replaced by a \
           blank one, what its language priors alone answer. *majority answer*: the most frequent \
           training answer of each family, whatever the picture. *training*: the seconds of the \
           stages the variant trained itself, the mean over the seeds.\n";
    md
}
// ANCHOR_END: table

/// The columns of the evaluation as anchor suffixes.
const COLUMN_NAMES: [&str; 3] = ["seen", "held_out", "unseen"];

/// The figures of the tables, one mdBook anchor each, so that the chapter
/// quotes them by including them rather than typing them:
/// `<variant>_<row>_<column>` (`scratch_all_seen`, `no_lm_relations_held_out`)
/// for the model, `<variant>_blind_<column>`, `majority_<row>_<column>`,
/// and `apart_<column>`: a clause saying which variants' ranges over the
/// seeds lie wholly above or below the baseline's on all questions.
pub fn figures(ablation: &VlmAblation) -> String {
    let mut text = String::from(
        "The figures of vlm-ablations.md one by one (exact match in %: the mean over the seeds \
         and, in brackets, the lowest and the highest run), one anchor each, included inline by \
         the chapter. Written by `train vlm-ablate`; do not edit by hand.\n",
    );
    let mut anchor = |name: String, value: String| {
        text += &crate::ablate::anchored(&name, &value);
    };
    let id = |name: &str| name.replace('-', "_");
    for s in &ablation.summary {
        let v = id(s.variant.name());
        for (c, column) in COLUMN_NAMES.iter().enumerate() {
            for (row, _) in &s.model {
                anchor(
                    format!("{v}_{}_{column}", id(row)),
                    cell(get(&s.model, row, c)),
                );
            }
            anchor(format!("{v}_blind_{column}"), cell(get(&s.blind, "all", c)));
        }
    }
    if let Some(s) = ablation.summary.first() {
        for (c, column) in COLUMN_NAMES.iter().enumerate() {
            for (row, _) in &s.majority {
                anchor(
                    format!("majority_{}_{column}", id(row)),
                    cell(get(&s.majority, row, c)),
                );
            }
        }
    }
    for (c, column) in COLUMN_NAMES.iter().enumerate() {
        anchor(format!("apart_{column}"), apart(ablation, c));
    }
    text
}

/// Which variants' ranges over the seeds, on all questions of `column`,
/// lie wholly below or above the baseline's, as a clause.
fn apart(ablation: &VlmAblation, column: usize) -> String {
    let all = |s: &VariantSummary| get(&s.model, "all", column);
    let Some(base) = ablation
        .summary
        .iter()
        .find(|s| s.variant == VlmVariant::Baseline)
        .and_then(all)
    else {
        return "the baseline measured nothing here to compare with".to_string();
    };
    let (mut below, mut above) = (Vec::new(), Vec::new());
    let mut others = 0;
    for s in &ablation.summary {
        let Some(v) = all(s).filter(|_| s.variant != VlmVariant::Baseline) else {
            continue;
        };
        others += 1;
        let named = format!("{} at {}", s.variant.name(), cell(Some(v)));
        if v.max < base.min {
            below.push(named);
        } else if v.min > base.max {
            above.push(named);
        }
    }
    let base = cell(Some(base));
    if others == 0 {
        return format!("no variant measured anything here to compare with the baseline's {base}");
    }
    let rest = match others - below.len() - above.len() {
        n if n == others => {
            return format!("every variant's range over the seeds overlaps the baseline's {base}");
        }
        0 => "no variant's range overlaps it".to_string(),
        1 => "the one other variant's range overlaps it".to_string(),
        n => format!("the other {n} variants' ranges overlap it"),
    };
    let ranges = |names: &[String]| match names {
        [one] => format!("the range over the seeds of {one} lies"),
        _ => format!("the ranges over the seeds of {} lie", names.join(" and ")),
    };
    let side = match (below.is_empty(), above.is_empty()) {
        (false, true) => format!("{} wholly below the baseline's {base}", ranges(&below)),
        (true, false) => format!("{} wholly above the baseline's {base}", ranges(&above)),
        _ => format!(
            "{} wholly below the baseline's {base}, and {} wholly above it",
            ranges(&below),
            ranges(&above)
        ),
    };
    format!("{side}; {rest}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::failpoints;

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("vlm-ablate-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn each_variant_shares_the_stages_before_its_change() {
        let base = VlmAblateConfig::default().base();
        assert_eq!(
            base,
            VlmRunConfig {
                instruct_eval_interval: 0,
                ..VlmRunConfig::default()
            }
        );
        let levels = |v: VlmVariant| shared_levels(&v.config(&base), &base);
        assert_eq!(levels(VlmVariant::Baseline), 5);
        assert_eq!(levels(VlmVariant::Scratch), 1); // the tokenizer only
        assert_eq!(levels(VlmVariant::NoLm), 2); // and stage 1
        assert_eq!(levels(VlmVariant::PrefixLm), 3); // and stage 2: the mask is read from stage 3 on
        assert_eq!(levels(VlmVariant::NoAlign), 3);
        assert_eq!(levels(VlmVariant::UnfrozenTower), 4);
        assert_eq!(levels(VlmVariant::LongInstruct), 4); // stages 1 to 3
        let long = VlmVariant::LongInstruct.config(&base);
        assert_eq!(long.instruct.steps, 3 * base.instruct.steps);
        assert_eq!(
            (long.instruct.warmup, long.instruct.curriculum),
            (base.instruct.warmup, base.instruct.curriculum)
        );
        let scratch = VlmVariant::Scratch.config(&base);
        assert_eq!(
            (scratch.clip.steps, scratch.lm.steps, scratch.align.steps),
            (0, 0, 0)
        );
        assert!(scratch.unfreeze_vision);
        assert_eq!(scratch.instruct, base.instruct);
        assert_eq!(VlmVariant::CrossAttention.config(&base), base);
        // a setting the table does not know counts for every level
        let other = VlmRunConfig {
            side: base.side * 2,
            ..base.clone()
        };
        assert_eq!(shared_levels(&other, &base), 0);
        let evaluated = VlmRunConfig {
            eval_count: 7,
            ..base.clone()
        };
        assert_eq!(shared_levels(&evaluated, &base), 5);
        for v in VlmVariant::ALL {
            v.config(&base).validate().unwrap();
        }
    }

    #[test]
    fn scale_shortens_every_stage_and_the_table_says_so() {
        let settings = VlmAblateConfig {
            scale: 0.1,
            ..VlmAblateConfig::default()
        };
        let full = VlmRunConfig::default();
        let base = settings.base();
        for stage in Stage::ALL {
            let (a, b) = (full.stage(stage), base.stage(stage));
            assert_eq!(b.steps, (a.steps as f64 * 0.1).round() as usize);
            assert_eq!(b.warmup, (a.warmup as f64 * 0.1).round() as usize);
            assert_eq!(b.curriculum, (a.curriculum as f64 * 0.1).round() as usize);
            assert_eq!((b.batch_size, b.lr), (a.batch_size, a.lr));
        }
        assert_eq!(settings.seeds(), [0, 1, 2]);
        assert_eq!(
            settings.command(),
            "cargo run --release -p train -- vlm-ablate --seeds 3 --scale 0.1"
        );
        let every = VlmAblateConfig {
            variants: VlmVariant::ALL.to_vec(),
            ..settings.clone()
        };
        assert!(
            every.command().ends_with(
                " --variants no-lm,no-align,scratch,unfrozen-tower,prefix-lm,cross-attention,long-instruct"
            ),
            "{}",
            every.command()
        );
        for bad in [0.0, -1.0, f64::NAN, 1000.0] {
            let e = VlmAblateConfig {
                scale: bad,
                ..settings.clone()
            }
            .validate();
            assert!(e.unwrap_err().to_string().contains("scale"));
        }
        let e = VlmAblateConfig {
            seeds: 0,
            ..settings
        }
        .validate();
        assert!(e.unwrap_err().to_string().contains("seeds"));
    }

    /// Every file under `dir`, relative, with its bytes, its modification
    /// time and (on Unix) its inode: a file taken over is the baseline's
    /// very file, not a copy or one trained again.
    fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>, std::time::SystemTime, u64)> {
        #[cfg(unix)]
        fn inode(meta: &std::fs::Metadata) -> u64 {
            std::os::unix::fs::MetadataExt::ino(meta)
        }
        #[cfg(not(unix))]
        fn inode(_: &std::fs::Metadata) -> u64 {
            0
        }
        let mut out = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for entry in std::fs::read_dir(&d).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else if !path.file_name().unwrap().to_string_lossy().starts_with('.') {
                    let meta = std::fs::metadata(&path).unwrap();
                    let rel = path.strip_prefix(dir).unwrap().to_path_buf();
                    let bytes = std::fs::read(&path).unwrap();
                    out.push((rel, bytes, meta.modified().unwrap(), inode(&meta)));
                }
            }
        }
        out.sort();
        out
    }

    /// An ablation of made-up spreads on all seen questions: `(variant, lowest, highest)`.
    fn made_up(ranges: &[(VlmVariant, f64, f64)]) -> VlmAblation {
        let spread = |lo: f64, hi: f64| Spread {
            mean: (lo + hi) / 2.0,
            min: lo,
            max: hi,
            seeds: 3,
        };
        let summary = ranges
            .iter()
            .map(|&(variant, lo, hi)| VariantSummary {
                variant,
                model: vec![
                    (
                        "relations".to_string(),
                        [Some(spread(0.1, 0.2)), None, None],
                    ),
                    ("all".to_string(), [Some(spread(lo, hi)), None, None]),
                ],
                blind: vec![("all".to_string(), [Some(spread(0.2, 0.3)), None, None])],
                majority: vec![("all".to_string(), [Some(spread(0.25, 0.25)), None, None])],
                train_seconds: None,
                parameters: 0,
            })
            .collect();
        VlmAblation {
            settings: VlmAblateConfig::default(),
            command: String::new(),
            base: VlmRunConfig::default(),
            seeds: vec![0, 1, 2],
            runs: Vec::new(),
            summary,
        }
    }

    #[test]
    fn the_figures_say_which_variants_stand_apart() {
        use VlmVariant::*;
        let overlapping = made_up(&[
            (Baseline, 0.4, 0.5),
            (NoLm, 0.45, 0.55),
            (NoAlign, 0.3, 0.4),
        ]);
        assert_eq!(
            apart(&overlapping, 0),
            "every variant's range over the seeds overlaps the baseline's 45.0 (40–50)"
        );
        let apart_both = made_up(&[
            (Baseline, 0.4, 0.5),
            (NoLm, 0.45, 0.55),
            (Scratch, 0.3, 0.35),
            (NoAlign, 0.2, 0.3),
            (CrossAttention, 0.6, 0.7),
        ]);
        assert_eq!(
            apart(&apart_both, 0),
            "the ranges over the seeds of scratch at 32.5 (30–35) and no-align at 25.0 (20–30) \
             lie wholly below the baseline's 45.0 (40–50), and the range over the seeds of \
             cross-attention at 65.0 (60–70) lies wholly above it; the one other variant's range \
             overlaps it"
        );
        let one = made_up(&[(Baseline, 0.4, 0.5), (Scratch, 0.3, 0.35)]);
        assert_eq!(
            apart(&one, 0),
            "the range over the seeds of scratch at 32.5 (30–35) lies wholly below the \
             baseline's 45.0 (40–50); no variant's range overlaps it"
        );
        // a column nobody measured, and a baseline alone
        assert_eq!(
            apart(&one, 1),
            "the baseline measured nothing here to compare with"
        );
        assert_eq!(
            apart(&made_up(&[(Baseline, 0.4, 0.5)]), 0),
            "no variant measured anything here to compare with the baseline's 45.0 (40–50)"
        );
        let figures = figures(&apart_both);
        for needle in [
            "ANCHOR: baseline_all_seen\n45.0 (40–50)\nANCHOR_END: baseline_all_seen\n",
            "ANCHOR: no_lm_relations_seen\n15.0 (10–20)\n",
            "ANCHOR: cross_attention_blind_seen\n25.0 (20–30)\n",
            "ANCHOR: majority_all_seen\n25.0 (25–25)\n",
            "ANCHOR: scratch_all_held_out\n–\n",
            "ANCHOR: apart_seen\nthe ranges over the seeds of scratch",
        ] {
            assert!(figures.contains(needle), "{needle} missing:\n{figures}");
        }
    }

    fn micro() -> VlmAblateConfig {
        VlmAblateConfig {
            seeds: 2,
            micro: true,
            variants: vec![VlmVariant::NoAlign, VlmVariant::CrossAttention],
            ..VlmAblateConfig::default()
        }
    }

    // ANCHOR: micro_test
    /// A micro ablation (the baseline, no alignment, cross-attention; two
    /// seeds): the table and the JSON are written, the stages shared with
    /// the baseline are its very files (not trained again), the others are
    /// new; running it again trains nothing; a run cut short anywhere
    /// resumes to the same figures.
    #[test]
    fn a_micro_ablation_reuses_shared_stages_and_resumes() {
        let settings = micro();
        let out = temp("micro");
        failpoints::fail_at(None, std::io::ErrorKind::Interrupted); // counts them
        let ablation = vlm_ablate(&out, &settings, Progress::Quiet).unwrap();
        assert_eq!(ablation.runs.len(), 6);
        let md = std::fs::read_to_string(out.join(TABLE_FILE)).unwrap();
        let figures = std::fs::read_to_string(out.join(FIGURES_FILE)).unwrap();
        assert!(figures.contains("ANCHOR: apart_unseen\n"), "{figures}");
        assert!(
            figures.contains("ANCHOR: no_align_all_held_out\n"),
            "{figures}"
        );
        for needle in [
            "baseline",
            "no-align",
            "cross-attention",
            "majority answer",
            "Held-out",
            "seeds 0, 1",
            "1-clip 2 × 4",
            "--micro",
        ] {
            assert!(md.contains(needle), "{needle} missing:\n{md}");
        }
        let points = failpoints::reached();
        let json: VlmAblation =
            serde_json::from_str(&std::fs::read_to_string(out.join(JSON_FILE)).unwrap()).unwrap();
        // (seconds may come back a rounding apart: serde_json's fast float parsing)
        let same = |a: &VlmAblation, b: &VlmAblation| {
            a.runs.len() == b.runs.len()
                && a.runs.iter().zip(&b.runs).all(|(a, b)| {
                    (a.variant, a.seed, &a.run, &a.reused, &a.trained, &a.config)
                        == (b.variant, b.seed, &b.run, &b.reused, &b.trained, &b.config)
                        && (a.model.clone(), a.blind.clone(), a.majority.clone())
                            == (b.model.clone(), b.blind.clone(), b.majority.clone())
                })
        };
        assert!(same(&json, &ablation));
        assert_eq!(json.command, ablation.command);
        for seed in [0, 1] {
            let baseline = run_folder(&out, VlmVariant::Baseline, seed);
            let stage = |variant, stage: &str| {
                files(
                    &run_folder(&out, variant, seed)
                        .join(stage)
                        .join(CHECKPOINT_DIR),
                )
            };
            // taken over: the same bytes, time and inode (one file, linked)
            for s in ["1-clip", "2-lm"] {
                let shared = stage(VlmVariant::NoAlign, s);
                assert!(!shared.is_empty());
                assert_eq!(shared, files(&baseline.join(s).join(CHECKPOINT_DIR)), "{s}");
            }
            assert_eq!(
                stage(VlmVariant::CrossAttention, "1-clip"),
                files(&baseline.join("1-clip").join(CHECKPOINT_DIR))
            );
            // trained anew: other weights (no alignment before)
            let weights = |files: Vec<(PathBuf, Vec<u8>, _, _)>| {
                files
                    .into_iter()
                    .find(|f| f.0.ends_with("model.safetensors"))
                    .unwrap()
                    .1
            };
            let own = weights(stage(VlmVariant::NoAlign, "4-instruct"));
            let base = weights(files(&baseline.join("4-instruct").join(CHECKPOINT_DIR)));
            assert_ne!(own, base);
            assert!(!stage(VlmVariant::CrossAttention, CROSS_STAGE).is_empty());
        }
        let run = |v| ablation.runs.iter().find(|r| r.variant == v).unwrap();
        assert_eq!(run(VlmVariant::NoAlign).reused, ["1-clip", "2-lm"]);
        assert_eq!(run(VlmVariant::NoAlign).trained, ["3-align", "4-instruct"]);
        assert!(md.contains("3-align (0 steps)"), "{md}");

        // again: every run is read back, nothing is written but the tables
        let before = files(&out.join(RUNS_DIR));
        let again = vlm_ablate(&out, &settings, Progress::Quiet).unwrap();
        assert!(same(&again, &ablation));
        assert_eq!(std::fs::read_to_string(out.join(TABLE_FILE)).unwrap(), md);
        assert_eq!(files(&out.join(RUNS_DIR)), before);

        // another recipe in the same folder is refused, naming the folder
        let other = VlmAblateConfig {
            scale: 2.0,
            ..settings.clone()
        };
        let e = vlm_ablate(&out, &other, Progress::Quiet)
            .unwrap_err()
            .to_string();
        assert!(e.contains("another recipe"), "{e}");

        // cut short again and again (a failpoint standing for a kill, after
        // every fifth of a whole ablation's checkpoint writes), resumed each
        // time: the same figures as the ablation never cut
        assert!(points > 20, "{points} failpoints");
        let cut = temp("cut");
        let mut cuts = 0;
        let resumed = loop {
            failpoints::fail_at(Some(points / 5), std::io::ErrorKind::Interrupted);
            let result = vlm_ablate(&cut, &settings, Progress::Quiet);
            failpoints::fail_at(None, std::io::ErrorKind::Interrupted);
            match result {
                Ok(resumed) => break resumed,
                Err(e) => assert!(e.to_string().contains("failpoint"), "{e}"),
            }
            cuts += 1;
            assert!(cuts < 20, "no progress after {cuts} cuts");
        };
        assert!(cuts >= 4, "{cuts} cuts of {points} failpoints");
        let named = |a: &VlmAblation| -> Vec<_> {
            a.runs
                .iter()
                .map(|r| (r.variant, r.seed, r.model.clone(), r.blind.clone()))
                .collect()
        };
        assert_eq!(named(&resumed), named(&ablation));
        for dir in [out, cut] {
            std::fs::remove_dir_all(dir).unwrap();
        }
    }
    // ANCHOR_END: micro_test

    #[test]
    fn an_empty_ablation_says_so() {
        let ablation = VlmAblation {
            settings: VlmAblateConfig::default(),
            command: String::new(),
            base: VlmRunConfig::micro(),
            seeds: Vec::new(),
            runs: Vec::new(),
            summary: Vec::new(),
        };
        assert!(table(&ablation).contains("No ablation results"));
    }
}
