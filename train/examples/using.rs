//! The outputs of the chapter "Using the trained model":
//! `cargo run --release -p train --example using` trains a micro model for
//! a few seconds, runs every command on it exactly as the `train` program
//! does, and writes each command line with its output as markdown under
//! `book/src/generated/using/` (with the exported images the chapter
//! shows). Seeded and path-free: it runs in a scratch folder with relative
//! paths, so `tools/book-outputs.sh` can regenerate it and CI can check it.

use std::path::{Path, PathBuf};
use train::commands::caption::CaptionArgs;
use train::commands::classify::ClassifyArgs;
use train::commands::export::ExportArgs;
use train::commands::own::{Progress, eval_own, render_eval, render_train, train_own};
use train::commands::search::SearchArgs;
use train::commands::tokenize::TokenizeArgs;
use train::commands::{CommandError, UseCommand};
use train::data::World;
use train::data::folder::FolderData;
use train::run::{self, Progress as RunProgress};
use train::{Encoder, ModelSize, RunConfig};

/// The micro model's training: a few seconds in release mode.
fn config(steps: usize) -> RunConfig {
    RunConfig {
        steps,
        batch_size: 32,
        lr: 3e-3,
        min_lr: 1e-4,
        warmup: 20,
        size: ModelSize::Micro,
        encoder: Encoder::Vit,
        eval_interval: 0,
        checkpoint_interval: 0,
        eval_per_object: 1,
        ..RunConfig::default()
    }
}

/// A console block: the command line and what it printed (or its error).
fn console(line: &str, result: Result<String, CommandError>) -> String {
    let out = match result {
        Ok(text) => text,
        Err(e) => format!("error: {e}\n"),
    };
    format!("```text\n$ {line}\n{out}```\n")
}

fn run(line: &str, command: UseCommand) -> String {
    console(line, command.execute())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let book = Path::new(env!("CARGO_MANIFEST_DIR")).join("../book/src/generated/using");
    let _ = std::fs::remove_dir_all(&book);
    std::fs::create_dir_all(book.join("shapes"))?;
    let scratch = std::env::temp_dir().join(format!("train-using-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch)?;
    std::env::set_current_dir(&scratch)?;
    let write = |name: &str, text: String| std::fs::write(book.join(name), text);

    // a micro model trained on the toy data: the run folder the commands read
    let steps = 1200;
    let cfg = config(steps);
    let dir = Path::new("runs/micro");
    let mut state = run::start(dir, &cfg)?;
    run::train(dir, &cfg, &mut state, steps, RunProgress::Quiet)?;
    let r = || PathBuf::from("runs/micro");
    let losses = &state.history.steps;
    write(
        "micro.md",
        format!(
            "The micro model of `runs/micro`: {} parameters ({:?} image tower), {} steps of {} toy images; \
             the loss went from {:.3} to {:.3}.\n",
            embedding::Params::num_params(&state.model),
            cfg.encoder,
            steps,
            cfg.batch_size,
            losses.first().map_or(f32::NAN, |r| r.loss),
            losses.last().map_or(f32::NAN, |r| r.loss),
        ),
    )?;

    // tokenize
    write(
        "tokenize.md",
        run(
            "train tokenize \"a big red circle<|eos|>\" --run runs/micro",
            UseCommand::Tokenize(TokenizeArgs {
                text: "a big red circle<|eos|>".into(),
                run: r(),
                tokenizer: None,
            }),
        ) + &run(
            "train tokenize \"a café\" --run runs/micro",
            UseCommand::Tokenize(TokenizeArgs {
                text: "a café".into(),
                run: r(),
                tokenizer: None,
            }),
        ),
    )?;

    // dataset export, and the exported images as a table
    let export = ExportArgs {
        out: "shapes".into(),
        count: 24,
        seed: 1,
        two_object: 0.25,
        shapes: World::FULL.shapes,
        colours: World::FULL.colours,
    };
    let mut md = run(
        "train dataset export --out shapes --count 24 --seed 1 --two-object 0.25",
        UseCommand::Dataset(train::commands::DatasetCommand::Export(export)),
    );
    let shapes = FolderData::load(Path::new("shapes"), 32)?;
    md += "\n| image | file | caption |\n| --- | --- | --- |\n";
    for item in shapes.items.iter().take(8) {
        std::fs::copy(
            Path::new("shapes").join(&item.file),
            book.join("shapes").join(&item.file),
        )?;
        md += &format!(
            "| <img src=\"generated/using/shapes/{0}\" width=\"64\" height=\"64\" style=\"image-rendering: pixelated\" alt=\"{1}\"> | {0} | {1} |\n",
            item.file, item.caption
        );
    }
    write("export.md", md)?;
    let pick = [0usize, 1, 2, 3];
    let files: Vec<PathBuf> = pick
        .iter()
        .map(|&i| Path::new("shapes").join(&shapes.items[i].file))
        .collect();
    let names: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();

    // caption: greedy, beam, sampling
    let caption = |beam, temperature, top_k, seed| {
        UseCommand::Caption(CaptionArgs {
            images: files.clone(),
            run: r(),
            beam,
            temperature,
            top_k,
            seed,
        })
    };
    let list = names.join(" ");
    write(
        "caption.md",
        run(
            &format!("train caption {list} --run runs/micro"),
            caption(None, None, None, 0),
        ) + &run(
            &format!("train caption {list} --run runs/micro --beam 4"),
            caption(Some(4), None, None, 0),
        ) + &run(
            &format!("train caption {list} --run runs/micro --temperature 0.8 --top-k 5 --seed 1"),
            caption(None, Some(0.8), Some(5), 1),
        ),
    )?;

    // classify the first image among labels that include its own shape and colour
    let words: Vec<&str> = shapes.items[0].caption.split(' ').collect();
    let own = format!("{} {}", words[2], words[3]);
    let mut labels = vec![own.clone()];
    for l in [
        "red circle",
        "blue square",
        "green triangle",
        "yellow cross",
    ] {
        if l != own {
            labels.push(l.to_string());
        }
    }
    let labels = labels.join(",");
    write(
        "classify.md",
        run(
            &format!(
                "train classify {} --labels \"{labels}\" --run runs/micro",
                names[0]
            ),
            UseCommand::Classify(ClassifyArgs {
                image: files[0].clone(),
                labels: labels.clone(),
                run: r(),
            }),
        ),
    )?;

    // search both ways
    let query = shapes.items[1].caption.clone();
    let texts: Vec<&str> = shapes.items[..6]
        .iter()
        .map(|it| it.caption.as_str())
        .collect();
    std::fs::write("texts.txt", texts.join("\n") + "\n")?;
    let search = |text: Option<String>, images, image, texts| {
        UseCommand::Search(SearchArgs {
            text,
            images,
            image,
            texts,
            top: Some(5),
            run: r(),
        })
    };
    write(
        "search.md",
        run(
            &format!("train search --text \"{query}\" --images shapes --top 5 --run runs/micro"),
            search(Some(query.clone()), Some("shapes".into()), None, None),
        ) + "\n`texts.txt` holds the captions of the first six images, one a line; the reverse search ranks them for the image `shapes/00002.png`:\n\n"
            + &run(
                "train search --image shapes/00002.png --texts texts.txt --top 5 --run runs/micro",
                search(None, None, Some(files[2].clone()), Some("texts.txt".into())),
            ),
    )?;

    // own data: export a bigger folder, train on it, evaluate on another
    let mine = ExportArgs {
        out: "mine".into(),
        count: 400,
        seed: 2,
        two_object: 0.25,
        shapes: World::FULL.shapes,
        colours: World::FULL.colours,
    };
    let mut md = run(
        "train dataset export --out mine --count 400 --seed 2 --two-object 0.25",
        UseCommand::Dataset(train::commands::DatasetCommand::Export(mine)),
    );
    let own_cfg = config(steps);
    let own_run = Path::new("runs/mine");
    md += &console(
        "train --data mine --name mine",
        train_own(Path::new("mine"), own_run, &own_cfg, Progress::Quiet)
            .map(|(own, _)| render_train(&own, own_run)),
    );
    md += "\nThe same run on the 24 images exported above (their every 10th line is the validation split):\n\n";
    md += &console(
        "train eval runs/mine --data shapes",
        eval_own(own_run, Path::new("shapes")).map(|(e, d)| render_eval(&e, &d)),
    );
    write("own-data.md", md)?;

    // errors name the file and the line
    std::fs::create_dir_all("broken")?;
    std::fs::copy("shapes/00000.png", "broken/00000.png")?;
    std::fs::write(
        "broken/captions.tsv",
        "00000.png\ta small red circle\n00001.png a big blue square\n",
    )?;
    let mut md = console(
        "train eval runs/mine --data broken",
        eval_own(own_run, Path::new("broken")).map(|(e, d)| render_eval(&e, &d)),
    );
    std::fs::write(
        "broken/captions.tsv",
        "00000.png\ta small red circle\n00001.png\ta big blue square\n",
    )?;
    md += &console(
        "train eval runs/mine --data broken",
        eval_own(own_run, Path::new("broken")).map(|(e, d)| render_eval(&e, &d)),
    );
    md += &run(
        "train caption missing.png --run runs/micro",
        UseCommand::Caption(CaptionArgs {
            images: vec!["missing.png".into()],
            run: r(),
            beam: None,
            temperature: None,
            top_k: None,
            seed: 0,
        }),
    );
    write("errors.md", md)?;

    std::env::set_current_dir(std::env::temp_dir())?;
    std::fs::remove_dir_all(&scratch)?;
    println!("wrote {}", book.display());
    Ok(())
}
