//! `cargo run --release -p train`: trains the tiny model on the toy dataset
//! and writes `runs/<name>/`; `train eval runs/<name>` evaluates a saved run.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use train::data::World;
use train::run::{self, Progress, RunConfig};
use train::{Encoder, RunError};

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
        /// Evaluate on an own data folder (images + captions.tsv) instead of the toy data.
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
    },
    // the `use` commands: caption, classify, search, tokenize, dataset export
    #[command(flatten)]
    Use(train::commands::UseCommand),
    /// Short runs of the same seed and steps: contrastive loss only,
    /// captioning loss only, both (CNN), and both with the ViT; writes
    /// <out>/ablations.md, <out>/ablations.json and <out>/runs/<variant>/.
    Ablate {
        /// Optimiser steps of each variant.
        #[arg(long, default_value_t = 400)]
        steps: usize,
        /// Folder of the ablation.
        #[arg(long, default_value = "runs/ablate")]
        out: PathBuf,
    },
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
struct TrainArgs {
    /// Name of the run: the folder <out>/<name>.
    #[arg(long, default_value = "default")]
    name: String,
    /// Folder holding the runs.
    #[arg(long, default_value = "runs")]
    out: PathBuf,
    /// Continue the run in <out>/<name> from its last checkpoint (its saved
    /// config is used; the flags below are ignored).
    #[arg(long)]
    resume: bool,
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
            ..d
        }
    }
}

fn train(args: &TrainArgs) -> Result<(), RunError> {
    let dir = args.out.join(&args.name);
    let (config, mut state) = if args.resume {
        let (config, state) = run::open(&dir)?;
        eprintln!("resuming {} at step {}", dir.display(), state.step);
        (config, state)
    } else {
        let config = args.config();
        config.validate()?;
        if dir.join(run::CHECKPOINT_DIR).exists() {
            return Err(RunError::BadValue {
                name: "name",
                why: format!(
                    "{} already holds a run; pass --resume to continue it or choose another --name",
                    dir.display()
                ),
            });
        }
        let state = run::start(&dir, &config)?;
        (config, state)
    };
    eprintln!(
        "training {} parameters ({:?} image tower) for {} steps of {} images into {}",
        embedding::Params::num_params(&state.model),
        config.encoder,
        config.steps,
        config.batch_size,
        dir.display()
    );
    let steps = config.steps;
    run::train(&dir, &config, &mut state, steps, Progress::Bar)?;
    let metrics = run::finish(&dir, &config, &state)?;
    println!(
        "{} steps in {:.0} s\n\n{}",
        metrics.steps_done,
        metrics.train_seconds,
        metrics.final_eval.table()
    );
    println!("wrote {}", dir.display());
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    train::memory::keep_freed_memory(); // a step's arrays are reused, not returned to the OS
    // own data (`use`): train --data DIR, eval RUN --data DIR, and the `use` commands
    match (&cli.command, &cli.train.data) {
        (Some(Command::Use(command)), _) => return train::commands::run_command(command),
        (
            Some(Command::Eval {
                run,
                data: Some(data),
                ..
            }),
            _,
        ) => {
            return train::commands::own::eval_cli(run, data);
        }
        (None, data) => {
            let run = cli.train.out.join(&cli.train.name);
            let resume_own = cli.train.resume && train::commands::own::is_own_run(&run);
            if data.is_some() || resume_own {
                let config = cli.train.config();
                let data = data.as_deref();
                return train::commands::own::train_cli(data, &run, &config, cli.train.resume);
            }
        }
        _ => {}
    }
    let result: Result<(), Box<dyn std::error::Error>> = match &cli.command {
        Some(Command::Use(_)) | Some(Command::Eval { data: Some(_), .. }) => {
            unreachable!("handled above")
        }
        Some(Command::Eval {
            run, per_object, ..
        }) => run::eval_run(run, *per_object)
            .map(|report| {
                println!("{}", report.table());
                println!("wrote {}", run.join("eval.json").display());
            })
            .map_err(Into::into),
        Some(Command::Plot { run, out }) => train::plot::plot_run(run, out.as_deref())
            .map(|report| print!("{report}"))
            .map_err(Into::into),
        Some(Command::Ablate { steps, out }) => {
            train::ablate::ablate(out, &train::ablate::base_config(*steps), Progress::Bar)
                .map(|_| println!("wrote {}", out.join(train::ablate::TABLE_FILE).display()))
                .map_err(Into::into)
        }
        Some(Command::Failures {
            run,
            out,
            max,
            link_base,
        }) => train::failures::write_failures(run, out.as_ref().unwrap_or(run), link_base, *max)
            .map(|f| {
                println!(
                    "{} of {} held-out images wrong; wrote {}",
                    f.failures,
                    f.images,
                    f.table.display()
                )
            })
            .map_err(Into::into),
        None => train(&cli.train).map_err(Into::into),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
