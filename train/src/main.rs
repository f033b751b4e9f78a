//! `cargo run --release -p train`: trains the tiny model on the toy dataset
//! and writes `runs/<name>/`; `train eval runs/<name>` evaluates a saved run.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use train::commands::{note, report};
use train::data::World;
use train::run::{self, Progress, RunConfig};
use train::{Encoder, RunError};

// every allocation counted, so a training step's memory can be measured
// before a large batch is attempted (`run::check_step_memory`)
#[global_allocator]
static ALLOCATOR: train::memory::Counting = train::memory::Counting;

/// Train the multimodal model on the toy dataset of coloured shapes.
///
/// With no arguments: the default run (tiny model, CNN image tower), written
/// to runs/default/.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    train: TrainArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Evaluate a saved run: print the table and write <run>/eval.json.
    Eval {
        /// The run folder (e.g. runs/default).
        run: PathBuf,
        /// Images per object (seen: 160 objects, held-out: 40).
        #[arg(long, default_value_t = 2)]
        per_object: usize,
        /// Evaluate on an own data folder (images + captions.tsv) instead of
        /// the toy data (default for a run on own data: the folder it was
        /// trained on).
        #[arg(long)]
        data: Option<PathBuf>,
    },
    /// Draw a run's figures: loss curves, similarity heatmaps, the shared
    /// space, cross-attention and ViT attention maps.
    Plot {
        /// The run folder (e.g. runs/default).
        run: PathBuf,
        /// Where to write the figures (default: <run>/figures).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Prefix of the pictures' paths in the Markdown files written
        /// (e.g. generated/figures/ when a book chapter includes them;
        /// default: the paths from where the files are written).
        #[arg(long)]
        link_base: Option<String>,
    },
    // the `use` commands: caption, classify, search, tokenize, ask, chat, dataset export
    #[command(flatten)]
    Use(train::commands::UseCommand),
    /// Train the multimodal LLM in LLaVA's four stages (a CLIP vision tower,
    /// a text-only language model, projector alignment, instruction tuning)
    /// into one run folder, then evaluate it; `--resume` continues at any
    /// step of any stage.
    Vlm(VlmArgs),
    /// Runs of the same seeds and steps: contrastive loss only, captioning
    /// loss only (and the same for twice the steps), both (CNN), and both
    /// with the ViT, each once per seed;
    /// writes <out>/ablations.md, <out>/ablations.json and
    /// <out>/runs/<variant>/seed-<seed>/.
    Ablate {
        /// Optimiser steps of each run (default: the default run's).
        #[arg(long)]
        steps: Option<usize>,
        /// Seeds per variant: 0, 1, … (each a full run).
        #[arg(long, default_value_t = train::ablate::SEEDS.len())]
        seeds: usize,
        /// Folder of the ablation.
        #[arg(long, default_value = "runs/ablate")]
        out: PathBuf,
    },
    /// Ablations of the multimodal recipe (`vlm`), each variant with
    /// several seeds: no text-only pretraining, no alignment, everything
    /// from scratch in one stage, the tower unfrozen, the prefix-LM mask,
    /// and the cross-attention decoder on the same conversations. Stages a
    /// variant shares with the baseline are trained once; run it again to
    /// resume. Writes <out>/vlm-ablations.md, <out>/vlm-ablations.json and
    /// <out>/runs/<variant>/seed-<n>/.
    VlmAblate(VlmAblateArgs),
    /// The held-out images of a run whose greedy caption is wrong: writes
    /// <out>/failures.md and the images as <out>/failures/failure-NN.png.
    Failures {
        /// The run folder (e.g. runs/default).
        run: PathBuf,
        /// Where to write (default: the run folder).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Most failures shown in the table (evenly spread).
        #[arg(long, default_value_t = 12)]
        max: usize,
        /// Prefix of the image links in the table (e.g. generated/train/ when
        /// a book chapter includes it).
        #[arg(long, default_value = "")]
        link_base: String,
    },
}

#[derive(Args, Debug)]
struct VlmAblateArgs {
    /// Folder of the ablation.
    #[arg(long, default_value = "runs/vlm-ablate")]
    out: PathBuf,
    /// Seeds per variant (the recipe's seed and the ones after it).
    #[arg(long, default_value_t = 3)]
    seeds: usize,
    /// Multiplies every stage's steps, warmup and curriculum: 0.25 runs
    /// each stage a quarter as long.
    #[arg(long, default_value_t = 1.0)]
    scale: f64,
    /// The variants to run, separated by commas (default: all but
    /// long-instruct, which costs as much as the rest; the baseline always
    /// runs).
    #[arg(long, value_enum, value_delimiter = ',')]
    variants: Vec<train::vlm_ablate::VlmVariant>,
    /// Conversations per evaluation split (default: the recipe's).
    #[arg(long)]
    eval_count: Option<usize>,
    /// Start from the micro recipe, small enough for a test.
    #[arg(long)]
    micro: bool,
}

impl VlmAblateArgs {
    fn config(&self) -> train::vlm_ablate::VlmAblateConfig {
        let d = train::vlm_ablate::VlmAblateConfig::default();
        train::vlm_ablate::VlmAblateConfig {
            seeds: self.seeds,
            scale: self.scale,
            micro: self.micro,
            eval_count: self.eval_count,
            variants: if self.variants.is_empty() {
                d.variants
            } else {
                self.variants.clone()
            },
        }
    }
}

#[derive(Args, Debug)]
struct VlmArgs {
    /// Name of the run: the folder <out>/<name>.
    #[arg(long, default_value = "vlm")]
    name: String,
    /// Folder holding the runs.
    #[arg(long, default_value = "runs")]
    out: PathBuf,
    /// Continue the run in <out>/<name> (its saved recipe is used; the flags
    /// below are ignored).
    #[arg(long, conflicts_with = "force")]
    resume: bool,
    /// Delete the multimodal run already in <out>/<name> and start over.
    #[arg(long)]
    force: bool,
    /// Seed of the weights and the batches.
    #[arg(long)]
    seed: Option<u64>,
    /// Steps of stage 1 (the CLIP vision tower).
    #[arg(long)]
    clip_steps: Option<usize>,
    /// Steps of stage 2 (the text-only language model; 0 skips its training).
    #[arg(long)]
    lm_steps: Option<usize>,
    /// Steps of stage 3 (projector alignment; 0 skips it).
    #[arg(long)]
    align_steps: Option<usize>,
    /// Steps of stage 4 (instruction tuning).
    #[arg(long)]
    instruct_steps: Option<usize>,
    /// Examples per step, in every stage.
    #[arg(long)]
    batch_size: Option<usize>,
    /// Examples per step of stage 4 alone (after --batch-size): the recipe
    /// takes many small steps there.
    #[arg(long)]
    instruct_batch_size: Option<usize>,
    /// How the tower's grid is shrunk into image tokens.
    #[arg(long, value_enum)]
    pool: Option<train::vlm_run::Pool>,
    /// The language model's attention mask.
    #[arg(long, value_enum)]
    mask: Option<train::vlm_run::MaskKind>,
    /// A single Linear projector instead of LLaVA-1.5's MLP.
    #[arg(long)]
    linear_projector: bool,
    /// Train the vision tower in stage 4 too.
    #[arg(long)]
    unfreeze_vision: bool,
    /// Conversations per evaluation split.
    #[arg(long)]
    eval_count: Option<usize>,
    /// A model and run small enough for a test: a few steps of each stage.
    #[arg(long)]
    micro: bool,
    /// Train on own data: a folder with questions.tsv
    /// (`file<TAB>question<TAB>answer[<TAB>family]`) and optionally
    /// captions.tsv; every 10th line is validation.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Take the vision tower from this run (a CLIP run, or a multimodal
    /// run) instead of training one: for own data without captions.tsv.
    #[arg(long)]
    vision_from: Option<PathBuf>,
    /// Side of the square images in pixels (own data is resized to it).
    #[arg(long)]
    side: Option<usize>,
}

impl VlmArgs {
    fn config(&self) -> train::vlm_run::VlmRunConfig {
        let mut c = if self.micro {
            train::vlm_run::VlmRunConfig::micro()
        } else {
            train::vlm_run::VlmRunConfig::default()
        };
        c.seed = self.seed.unwrap_or(c.seed);
        for (stage, steps) in [
            (&mut c.clip, self.clip_steps),
            (&mut c.lm, self.lm_steps),
            (&mut c.align, self.align_steps),
            (&mut c.instruct, self.instruct_steps),
        ] {
            if let Some(steps) = steps {
                stage.steps = steps;
                stage.warmup = stage.warmup.min(steps / 10);
                stage.curriculum = stage.curriculum.min(steps * 3 / 10);
            }
            if let Some(b) = self.batch_size {
                stage.batch_size = b;
            }
        }
        c.instruct.batch_size = self.instruct_batch_size.unwrap_or(c.instruct.batch_size);
        c.pool = self.pool.unwrap_or(c.pool);
        c.mask = self.mask.unwrap_or(c.mask);
        c.mlp_projector = !self.linear_projector;
        c.unfreeze_vision = self.unfreeze_vision;
        c.eval_count = self.eval_count.unwrap_or(c.eval_count);
        c.side = self.side.unwrap_or(c.side);
        // stored absolute, so the run resumes and evaluates from any directory
        let absolute = |p: &PathBuf| std::path::absolute(p).unwrap_or_else(|_| p.clone());
        c.data = self.data.as_ref().map(absolute);
        c.vision_from = self.vision_from.as_ref().map(absolute);
        c
    }
}

fn train_vlm(args: &VlmArgs) -> Result<String, RunError> {
    use train::vlm_run;
    let dir = run::run_dir(&args.out, &args.name)?;
    let config = if args.resume {
        None
    } else {
        let config = args.config();
        config.validate()?;
        if args.force {
            vlm_run::clear_vlm(&dir)?;
        }
        Some(config)
    };
    if args.resume && !dir.join(vlm_run::VLM_RUN_FILE).is_file() {
        return Err(RunError::Io {
            path: dir.join(vlm_run::VLM_RUN_FILE),
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no multimodal run to resume",
            ),
        });
    }
    note(&format!(
        "training the multimodal model into {}",
        dir.display()
    ));
    let config = vlm_run::train_vlm(&dir, config.as_ref(), Progress::Bar)?;
    note("evaluating");
    let (_, text) = vlm_run::finish_vlm(&dir, &config)?;
    Ok(format!(
        "{text}
wrote {}
",
        dir.display()
    ))
}

#[derive(Args, Debug)]
struct TrainArgs {
    /// Name of the run: the folder <out>/<name>.
    #[arg(long, default_value = "default")]
    name: String,
    /// Folder holding the runs.
    #[arg(long, default_value = "runs")]
    out: PathBuf,
    /// Continue the run in <out>/<name> from its last checkpoint (its saved
    /// config is used; the flags below are ignored).
    #[arg(long, conflicts_with = "force")]
    resume: bool,
    /// Delete the run already in <out>/<name> (its checkpoint, config and
    /// metrics) and start over; without it an existing run is never touched.
    #[arg(long)]
    force: bool,
    /// Optimiser steps.
    #[arg(long)]
    steps: Option<usize>,
    /// Images per step.
    #[arg(long)]
    batch_size: Option<usize>,
    /// Peak learning rate.
    #[arg(long)]
    lr: Option<f32>,
    /// Steps of linear warmup.
    #[arg(long)]
    warmup: Option<usize>,
    /// Seed of the weights and the batches.
    #[arg(long)]
    seed: Option<u64>,
    /// Image tower.
    #[arg(long, value_enum)]
    encoder: Option<Encoder>,
    /// Weight of the contrastive loss.
    #[arg(long)]
    contrastive_weight: Option<f32>,
    /// Weight of the captioning loss.
    #[arg(long)]
    caption_weight: Option<f32>,
    /// Fraction of two-object scenes in training.
    #[arg(long)]
    two_object: Option<f32>,
    /// Shapes of the toy world: the first N of circle, square, triangle,
    /// cross, diamond, ring (2 to 6).
    #[arg(long)]
    shapes: Option<usize>,
    /// Colours of the toy world: the first N of red, green, blue, yellow,
    /// magenta, cyan, orange, white (3 to 8).
    #[arg(long)]
    colours: Option<usize>,
    /// Evaluate on held-out data every N steps (0: only at the end).
    #[arg(long)]
    eval_interval: Option<usize>,
    /// Write a checkpoint every N steps (0: only at the end).
    #[arg(long)]
    checkpoint_interval: Option<usize>,
    /// Train on an own data folder: images and a captions.tsv of
    /// `file<TAB>caption` lines (every 10th line is validation).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Own data: the most tokens a caption may need (with <|bos|> and
    /// <|eos|>); a longer one is an error naming its line.
    #[arg(long)]
    max_caption_tokens: Option<usize>,
}

impl TrainArgs {
    fn config(&self) -> RunConfig {
        let d = RunConfig::default();
        RunConfig {
            steps: self.steps.unwrap_or(d.steps),
            batch_size: self.batch_size.unwrap_or(d.batch_size),
            lr: self.lr.unwrap_or(d.lr),
            min_lr: self.lr.map_or(d.min_lr, |lr| d.min_lr.min(lr)),
            warmup: self.warmup.unwrap_or(d.warmup),
            seed: self.seed.unwrap_or(d.seed),
            encoder: self.encoder.unwrap_or(d.encoder),
            contrastive_weight: self.contrastive_weight.unwrap_or(d.contrastive_weight),
            caption_weight: self.caption_weight.unwrap_or(d.caption_weight),
            two_object: self.two_object.unwrap_or(d.two_object),
            world: World {
                shapes: self.shapes.unwrap_or(d.world.shapes),
                colours: self.colours.unwrap_or(d.world.colours),
            },
            eval_interval: self.eval_interval.unwrap_or(d.eval_interval),
            checkpoint_interval: self.checkpoint_interval.unwrap_or(d.checkpoint_interval),
            max_caption_tokens: self.max_caption_tokens.unwrap_or(d.max_caption_tokens),
            ..d
        }
    }
}

fn train(args: &TrainArgs) -> Result<String, RunError> {
    let dir = run::run_dir(&args.out, &args.name)?;
    let (config, mut state) = if args.resume {
        let (config, state) = run::resume(&dir)?;
        note(&format!(
            "resuming {} at step {}",
            dir.display(),
            state.step
        ));
        (config, state)
    } else {
        let config = args.config();
        config.validate()?;
        if args.force {
            run::clear(&dir)?;
        }
        let state = run::start(&dir, &config)?;
        (config, state)
    };
    note(&format!(
        "training {} parameters ({:?} image tower) for {} steps of {} images into {}",
        embedding::Params::num_params(&state.model),
        config.encoder,
        config.steps,
        config.batch_size,
        dir.display()
    ));
    let steps = config.steps;
    run::train(&dir, &config, &mut state, steps, Progress::Bar)?;
    let metrics = run::finish(&dir, &config, &state)?;
    Ok(format!(
        "{} steps in {:.0} s\n\n{}\nwrote {}\n",
        metrics.steps_done,
        metrics.train_seconds,
        metrics.final_eval.table(),
        dir.display()
    ))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    train::memory::keep_freed_memory(); // a step's arrays are reused, not returned to the OS
    // own data (`use`): train --data DIR, eval RUN --data DIR, and the `use` commands
    match (&cli.command, &cli.train.data) {
        (Some(Command::Use(command)), _) => return train::commands::run_command(command),
        (Some(Command::Eval { run, data, .. }), _) => {
            // a run on own data is evaluated on its data folder, never on the toy data
            let data = data
                .clone()
                .or_else(|| train::commands::own::recorded_data(run));
            if let Some(data) = data {
                return train::commands::own::eval_cli(run, &data);
            }
        }
        (None, data) => {
            let run = match run::run_dir(&cli.train.out, &cli.train.name) {
                Ok(run) => run,
                Err(e) => return report::<RunError>(Err(e)),
            };
            let resume_own = cli.train.resume && train::commands::own::is_own_run(&run);
            if data.is_some() || resume_own {
                let config = cli.train.config();
                let data = data.as_deref();
                return train::commands::own::train_cli(
                    data,
                    &run,
                    &config,
                    cli.train.resume,
                    cli.train.force,
                );
            }
        }
        _ => {}
    }
    let result: Result<String, Box<dyn std::error::Error>> = match &cli.command {
        Some(Command::Use(_)) => unreachable!("handled above"),
        Some(Command::Eval { run, .. }) if train::vlm_run::holds_vlm_run(run) => {
            train::vlm_run::eval_vlm_run(run).map_err(Into::into)
        }
        Some(Command::Eval {
            run, per_object, ..
        }) => run::eval_run(run, *per_object)
            .map(|report| {
                format!(
                    "{}\nwrote {}\n",
                    report.table(),
                    run.join("eval.json").display()
                )
            })
            .map_err(Into::into),
        Some(Command::Vlm(args)) => train_vlm(args).map_err(Into::into),
        Some(Command::Plot {
            run,
            out,
            link_base,
        }) if train::vlm_run::holds_vlm_run(run) => {
            train::plot::vlm::plot_vlm_run(run, out.as_deref(), link_base.as_deref().unwrap_or(""))
                .map(|report| report.to_string())
                .map_err(Into::into)
        }
        Some(Command::Plot {
            run,
            out,
            link_base,
        }) => {
            train::plot::plot_run_linked(run, out.as_deref(), link_base.as_deref().unwrap_or("../"))
                .map(|report| report.to_string())
                .map_err(Into::into)
        }
        Some(Command::Ablate { steps, seeds, out }) => {
            let steps = steps.unwrap_or(RunConfig::default().steps);
            let seeds: Vec<u64> = (0..*seeds as u64).collect();
            train::ablate::ablate(
                out,
                &train::ablate::base_config(steps),
                &seeds,
                Progress::Bar,
            )
            .map(|_| format!("wrote {}\n", out.join(train::ablate::TABLE_FILE).display()))
            .map_err(Into::into)
        }
        Some(Command::VlmAblate(args)) => {
            train::vlm_ablate::vlm_ablate(&args.out, &args.config(), Progress::Bar)
                .map(|ablation| {
                    format!(
                        "{}\nwrote {}\n",
                        train::vlm_ablate::table(&ablation),
                        args.out.join(train::vlm_ablate::TABLE_FILE).display()
                    )
                })
                .map_err(Into::into)
        }
        Some(Command::Failures {
            run,
            out,
            max,
            link_base,
        }) => train::failures::write_failures(run, out.as_ref().unwrap_or(run), link_base, *max)
            .map(|f| {
                format!(
                    "{} of {} held-out images wrong; wrote {}\n",
                    f.failures,
                    f.images,
                    f.table.display()
                )
            })
            .map_err(Into::into),
        None => train(&cli.train).map_err(Into::into),
    };
    report(result)
}
