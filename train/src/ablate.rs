//! Ablations: what each loss and each image tower contributes.
//!
//! Four recipes trained with the same seeds, the same data and the same
//! number of steps (by default the default run's, long enough to
//! converge), which differ in one thing each:
//!
//! | variant | image tower | contrastive weight | caption weight | steps |
//! | --- | --- | ---: | ---: | ---: |
//! | `contrastive` | CNN | on | 0 | base |
//! | `caption` | CNN | 0 | on | base |
//! | `caption-long` | CNN | 0 | on | twice the base |
//! | `both` | CNN | on | on | base |
//! | `vit` | ViT | on | on | base |
//!
//! The first three compare the losses; `caption-long` asks whether the
//! captioning loss alone gets where both losses get, given more time; `both`
//! against `vit` compares the towers. Every variant is trained once per seed (3 by default): one run
//! says little when the seeds alone move a figure by a few points, so the
//! table reports each figure's mean over the seeds and its range. Each run
//! is an ordinary run folder `<out>/runs/<variant>/seed-<seed>/` made by
//! [`crate::run`], so `train eval` and the plots work on it too. A finished
//! run whose config matches is reused, not retrained.
//!
//! A variant whose loss is off still gets every metric measured: the part of
//! the model that loss trains is left at its initial weights (plus weight
//! decay), so its figures show what chance looks like, and the table marks
//! them.

use crate::eval::{Attributes, EvalReport, SplitMetrics};
use crate::run::{self, Encoder, Metrics, Progress, RunConfig, RunError};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The markdown table and the JSON file `ablate` writes into its folder.
pub const TABLE_FILE: &str = "ablations.md";
pub const JSON_FILE: &str = "ablations.json";
/// The table's figures one by one, as mdBook anchors a chapter includes
/// inside a sentence (see [`figures`]).
pub const FIGURES_FILE: &str = "ablations.txt";
/// The subfolder of the ablation folder holding the variants' runs.
pub const RUNS_DIR: &str = "runs";

/// One ablation variant: a name and how it changes the base config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Variant {
    /// Contrastive loss only (CNN).
    Contrastive,
    /// Captioning loss only (CNN).
    Caption,
    /// Captioning loss only (CNN), twice as many steps.
    #[serde(rename = "caption-long")]
    CaptionLong,
    /// Both losses (CNN): the default recipe.
    Both,
    /// Both losses with the ViT image tower.
    Vit,
}

impl Variant {
    /// Every variant, in table order.
    pub const ALL: [Variant; 5] = [
        Variant::Contrastive,
        Variant::Caption,
        Variant::CaptionLong,
        Variant::Both,
        Variant::Vit,
    ];

    /// The run folder's name.
    pub fn name(self) -> &'static str {
        match self {
            Variant::Contrastive => "contrastive",
            Variant::Caption => "caption",
            Variant::CaptionLong => "caption-long",
            Variant::Both => "both",
            Variant::Vit => "vit",
        }
    }

    /// What the variant trains, in words.
    pub fn describe(self) -> &'static str {
        match self {
            Variant::Contrastive => "CNN, contrastive loss only",
            Variant::Caption => "CNN, captioning loss only",
            Variant::CaptionLong => "CNN, captioning loss only, twice the steps",
            Variant::Both => "CNN, both losses",
            Variant::Vit => "ViT, both losses",
        }
    }

    // ANCHOR: variant_config
    /// The base config changed in this variant's one respect. The base's
    /// loss weights are the "on" values; its encoder is replaced.
    pub fn config(self, base: &RunConfig) -> RunConfig {
        let (contrastive, caption) = (base.contrastive_weight, base.caption_weight);
        let (encoder, contrastive_weight, caption_weight, steps) = match self {
            Variant::Contrastive => (Encoder::Cnn, contrastive, 0.0, base.steps),
            Variant::Caption => (Encoder::Cnn, 0.0, caption, base.steps),
            Variant::CaptionLong => (Encoder::Cnn, 0.0, caption, 2 * base.steps),
            Variant::Both => (Encoder::Cnn, contrastive, caption, base.steps),
            Variant::Vit => (Encoder::Vit, contrastive, caption, base.steps),
        };
        RunConfig {
            encoder,
            contrastive_weight,
            caption_weight,
            steps,
            ..base.clone()
        }
    }
    // ANCHOR_END: variant_config

    /// Whether the contrastive loss trained the towers' shared space
    /// (zero-shot and retrieval).
    pub fn trains_embeddings(self) -> bool {
        !matches!(self, Variant::Caption | Variant::CaptionLong)
    }

    /// Whether the captioning loss trained the decoder.
    pub fn trains_captions(self) -> bool {
        self != Variant::Contrastive
    }
}

/// One run's outcome: a variant trained with one seed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AblationResult {
    pub variant: Variant,
    /// The seed of the weights and the batches.
    pub seed: u64,
    /// The run's folder.
    pub run: PathBuf,
    pub config: RunConfig,
    pub parameters: usize,
    pub train_seconds: f64,
    /// Mean total loss over the last tenth of the steps (at least one).
    pub final_loss: f32,
    pub eval: EvalReport,
}

/// The seeds of the ablation runs by default.
pub const SEEDS: [u64; 3] = [0, 1, 2];

/// The base config of the ablations: the default run's recipe for `steps`
/// steps, its warmup shortened to a tenth of the run when that is shorter,
/// no evaluations or checkpoints on the way.
pub fn base_config(steps: usize) -> RunConfig {
    let d = RunConfig::default();
    RunConfig {
        steps,
        warmup: d.warmup.min(steps / 10),
        eval_interval: 0,
        checkpoint_interval: 0,
        ..d
    }
}

/// Trains (or reuses) one variant in `dir` and returns its metrics.
fn run_variant(dir: &Path, config: &RunConfig, progress: Progress) -> Result<Metrics, RunError> {
    let metrics_path = dir.join(run::METRICS_FILE);
    if metrics_path.is_file() {
        let text = std::fs::read_to_string(&metrics_path).map_err(|source| RunError::Io {
            path: metrics_path.clone(),
            source,
        })?;
        let metrics: Metrics = serde_json::from_str(&text).map_err(|source| RunError::Json {
            path: metrics_path.clone(),
            source,
        })?;
        if &metrics.config == config && metrics.steps_done == config.steps {
            if progress == Progress::Bar {
                crate::commands::note(&format!("  reusing the finished run in {}", dir.display()));
            }
            return Ok(metrics);
        }
    }
    if run::holds_run(dir) {
        return Err(RunError::BadValue {
            name: "out",
            why: format!(
                "{} already holds a different or unfinished run; remove it or choose another --out",
                dir.display()
            ),
        });
    }
    let mut state = run::start(dir, config)?;
    run::train(dir, config, &mut state, config.steps, progress)?;
    run::finish(dir, config, &state)
}

// ANCHOR: ablate
/// Runs every [`Variant`] of `base` once per seed, under
/// `out/runs/<variant>/seed-<seed>/`, and writes `out/ablations.md` and
/// `out/ablations.json`, and the figures one by one in `out/ablations.txt`.
///
/// # Errors
/// A bad base config, no seeds, a file that cannot be written, a folder
/// that holds a different run, or a training that met a NaN.
pub fn ablate(
    out: &Path,
    base: &RunConfig,
    seeds: &[u64],
    progress: Progress,
) -> Result<Vec<AblationResult>, RunError> {
    base.validate()?;
    if seeds.is_empty() {
        return Err(RunError::BadValue {
            name: "seeds",
            why: "at least one seed is needed".to_string(),
        });
    }
    let mut results = Vec::new();
    for variant in Variant::ALL {
        for &seed in seeds {
            let config = RunConfig {
                seed,
                ..variant.config(base)
            };
            let dir = out
                .join(RUNS_DIR)
                .join(variant.name())
                .join(format!("seed-{seed}"));
            if progress == Progress::Bar {
                crate::commands::note(&format!(
                    "ablation {}, seed {seed}: {}",
                    variant.name(),
                    variant.describe()
                ));
            }
            let metrics = run_variant(&dir, &config, progress)?;
            let losses = &metrics.history.steps;
            let tail = &losses[losses.len() - (losses.len() / 10).max(1).min(losses.len())..];
            let final_loss = tail.iter().map(|r| r.loss).sum::<f32>() / tail.len().max(1) as f32;
            results.push(AblationResult {
                variant,
                seed,
                run: dir,
                config,
                parameters: metrics.parameters,
                train_seconds: metrics.train_seconds,
                final_loss,
                eval: metrics.final_eval,
            });
        }
    }
    let write = |name: &str, text: &str| {
        let path = out.join(name);
        model::write_atomic(&path, text.as_bytes()).map_err(|source| RunError::Io { path, source })
    };
    write(TABLE_FILE, &table(&results))?;
    write(FIGURES_FILE, &figures(&results))?;
    let json = serde_json::to_string_pretty(&results).map_err(|source| RunError::Json {
        path: out.join(JSON_FILE),
        source,
    })?;
    write(JSON_FILE, &json)?;
    Ok(results)
}
// ANCHOR_END: ablate

/// The mean, the lowest and the highest of `values`, in percent.
fn mean_range(values: &[f32]) -> (f32, f32, f32) {
    let n = values.len().max(1) as f32;
    let mean = values.iter().sum::<f32>() / n;
    let (lo, hi) = values
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        });
    (100.0 * mean, 100.0 * lo, 100.0 * hi)
}

/// `mean (min–max)` of `values` as percentages, or just the value for one.
fn spread(values: &[f32]) -> String {
    let (mean, lo, hi) = mean_range(values);
    if values.len() < 2 {
        format!("{mean:.1}")
    } else {
        format!("{mean:.1} ({lo:.1}–{hi:.1})")
    }
}

/// `mean % (min–max)` of `values` as percentages, to stand in a sentence.
fn spread_inline(values: &[f32]) -> String {
    let (mean, lo, hi) = mean_range(values);
    if values.len() < 2 {
        format!("{mean:.1} %")
    } else {
        format!("{mean:.1} % ({lo:.1}–{hi:.1})")
    }
}

/// `value` between mdBook anchor lines named `name`, for a chapter to
/// include inline (`{{#include file:name}}`).
pub fn anchored(name: &str, value: &str) -> String {
    format!("ANCHOR: {name}\n{value}\nANCHOR_END: {name}\n")
}

/// The figures of the tables, one mdBook anchor each, named
/// `<variant>_<figure>` (`caption_long_position`, `vit_zero_shot_held_out`),
/// each `mean % (lowest–highest)` over the seeds, so that a chapter can
/// quote a figure in a sentence by including it rather than typing it.
pub fn figures(results: &[AblationResult]) -> String {
    type Figure = (&'static str, fn(&AblationResult) -> f32);
    const FIGURES: [Figure; 13] = [
        ("zero_shot_seen", |r| r.eval.seen.zero_shot.exact),
        ("zero_shot_held_out", |r| r.eval.held_out.zero_shot.exact),
        ("r1_held_out", |r| r.eval.held_out.image_to_text_r1),
        ("caption_seen", |r| r.eval.seen.caption.exact),
        ("caption_held_out", |r| r.eval.held_out.caption.exact),
        ("shape", |r| r.eval.seen.caption.shape),
        ("colour", |r| r.eval.seen.caption.colour),
        ("size", |r| r.eval.seen.caption.size),
        ("position", |r| r.eval.seen.caption.position),
        ("held_out_shape", |r| r.eval.held_out.caption.shape),
        ("held_out_colour", |r| r.eval.held_out.caption.colour),
        ("held_out_size", |r| r.eval.held_out.caption.size),
        ("held_out_position", |r| r.eval.held_out.caption.position),
    ];
    let mut text = String::from(
        "The figures of ablations.md one by one (mean over the seeds in %, and in brackets \
         the lowest and the highest run), one anchor each, included inline by the chapters. \
         Written by `train ablate`; do not edit by hand.\n",
    );
    for variant in Variant::ALL {
        let runs: Vec<&AblationResult> = results.iter().filter(|r| r.variant == variant).collect();
        if runs.is_empty() {
            continue;
        }
        for (figure, f) in FIGURES {
            let values: Vec<f32> = runs.iter().map(|r| f(r)).collect();
            let name = format!("{}_{figure}", variant.name().replace('-', "_"));
            text += &anchored(&name, &spread_inline(&values));
        }
    }
    text
}

// ANCHOR: table
/// The results as markdown: a sentence on how they were made, one row per
/// variant with each figure's mean over the seeds and its range (in %),
/// and what the marked cells mean.
pub fn table(results: &[AblationResult]) -> String {
    let Some(first) = results.first() else {
        return String::from("No ablation results.\n");
    };
    let c = &first.config;
    let mut seeds: Vec<u64> = results.iter().map(|r| r.seed).collect();
    seeds.sort_unstable();
    seeds.dedup();
    let seed_list = seeds
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let mut md = format!(
        "Each variant: batches of {} images, peak learning rate {}, loss weights (when on) contrastive {} / caption {}, \
         trained once with each of the seeds {seed_list}; `cargo run --release -p train -- ablate --steps {} --seeds {}`. \
         Each cell is the mean over the seeds in %, and in brackets the lowest and the highest run.\n\n",
        c.batch_size,
        c.lr,
        results
            .iter()
            .map(|r| r.config.contrastive_weight)
            .fold(0.0, f32::max),
        results
            .iter()
            .map(|r| r.config.caption_weight)
            .fold(0.0, f32::max),
        results
            .iter()
            .filter(|r| r.variant != Variant::CaptionLong)
            .map(|r| r.config.steps)
            .max()
            .unwrap_or(c.steps),
        seeds.len(),
    );
    md += "| variant | steps | parameters | zero-shot exact, seen | zero-shot exact, held-out | image→text R@1, held-out | caption exact, seen | caption exact, held-out |\n";
    md += "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n";
    for variant in Variant::ALL {
        let runs: Vec<&AblationResult> = results.iter().filter(|r| r.variant == variant).collect();
        let Some(one) = runs.first() else {
            continue;
        };
        let cell = |f: fn(&AblationResult) -> f32, trained: bool| {
            let values: Vec<f32> = runs.iter().map(|r| f(r)).collect();
            let mark = if trained { "" } else { " †" };
            format!("{}{mark}", spread(&values))
        };
        let (emb, cap) = (variant.trains_embeddings(), variant.trains_captions());
        md += &format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |\n",
            variant.describe(),
            one.config.steps,
            one.parameters,
            cell(|r| r.eval.seen.zero_shot.exact, emb),
            cell(|r| r.eval.held_out.zero_shot.exact, emb),
            cell(|r| r.eval.held_out.image_to_text_r1, emb),
            cell(|r| r.eval.seen.caption.exact, cap),
            cell(|r| r.eval.held_out.caption.exact, cap),
        );
    }
    type Split = fn(&AblationResult) -> &SplitMetrics;
    let splits: [(&str, Split); 2] = [
        ("seen combinations", |r| &r.eval.seen),
        ("held-out combinations", |r| &r.eval.held_out),
    ];
    for (i, (split, of)) in splits.into_iter().enumerate() {
        md += &if i == 0 {
            format!(
                "\nThe greedy captions attribute by attribute, {split} (a caption counts for \
                 an attribute when it names that attribute right):\n\n"
            )
        } else {
            format!("\nThe same, {split}:\n\n")
        };
        md += "| variant | steps | shape | colour | size | position |\n\
               | --- | ---: | ---: | ---: | ---: | ---: |\n";
        for variant in Variant::ALL {
            let runs: Vec<&AblationResult> =
                results.iter().filter(|r| r.variant == variant).collect();
            let Some(one) = runs.first() else {
                continue;
            };
            let mark = if variant.trains_captions() {
                ""
            } else {
                " †"
            };
            let cell = |f: fn(&Attributes) -> f32| {
                let values: Vec<f32> = runs.iter().map(|r| f(&of(r).caption)).collect();
                format!("{}{mark}", spread(&values))
            };
            md += &format!(
                "| {} | {} | {} | {} | {} | {} |\n",
                variant.describe(),
                one.config.steps,
                cell(|c| c.shape),
                cell(|c| c.colour),
                cell(|c| c.size),
                cell(|c| c.position),
            );
        }
    }
    let (classes, held_out) = (c.world.objects().len(), c.world.held_out_objects().len());
    let chance = |n: usize| format!("{:.1} %", 100.0 / n.max(1) as f32);
    md += &format!(
        "\n† The loss that trains this ability was off: the text tower and projections \
         (zero-shot, retrieval) or the decoder (captions) kept their random initial weights, \
         shrunk by weight decay. The figure is measured all the same and shows what an untrained \
         part gives: about chance, because with one tower untrained the similarities follow no \
         pattern (chance is {} for zero-shot among {classes} captions and {} for R@1 among \
         {held_out} held-out items), and an untrained decoder does not write a caption of the \
         grammar.\n",
        chance(classes),
        chance(held_out),
    );
    md
}
// ANCHOR_END: table

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_variant_changes_one_thing() {
        let base = base_config(40);
        assert_eq!(base.warmup, 4);
        let both = Variant::Both.config(&base);
        assert_eq!(both, base, "both is the default recipe");
        let vit = Variant::Vit.config(&base);
        assert_eq!(vit.encoder, Encoder::Vit);
        assert_eq!(
            RunConfig {
                encoder: Encoder::Cnn,
                ..vit
            },
            both
        );
        let c = Variant::Contrastive.config(&base);
        assert_eq!((c.contrastive_weight, c.caption_weight), (1.0, 0.0));
        let c = Variant::Caption.config(&base);
        assert_eq!((c.contrastive_weight, c.caption_weight), (0.0, 2.0));
        let long = Variant::CaptionLong.config(&base);
        assert_eq!(
            RunConfig {
                steps: base.steps,
                ..long
            },
            c,
            "caption-long differs from caption in its steps only"
        );
        assert_eq!(long.steps, 2 * base.steps);
        for v in Variant::ALL {
            v.config(&base).validate().unwrap();
        }
    }

    #[test]
    fn a_spread_is_the_mean_and_the_range_in_percent() {
        assert_eq!(spread(&[0.5, 0.75, 1.0]), "75.0 (50.0–100.0)");
        assert_eq!(spread(&[0.25]), "25.0");
    }

    #[test]
    fn an_inline_spread_carries_its_unit() {
        assert_eq!(spread_inline(&[0.5, 0.75, 1.0]), "75.0 % (50.0–100.0)");
        assert_eq!(spread_inline(&[0.25]), "25.0 %");
    }

    #[test]
    fn an_empty_result_list_says_so() {
        assert!(table(&[]).contains("No ablation results"));
    }
}
