//! The outputs of the chapter "Using the trained model", in two parts.
//!
//! - `cargo run --release -p train --example using` (part of
//!   `tools/book-outputs.sh`, checked by CI): what needs no trained model.
//!   `dataset export` with the exported images, training a micro model on
//!   an own data folder and evaluating it, and the error messages.
//! - `cargo run --release -p train --example using -- runs/default` (run by
//!   `tools/regenerate-figures.sh`, not by CI, which does not train): the
//!   commands on the default run, `tokenize`, `caption`, `classify` and
//!   `search`, and a table of zero-shot accuracy for each prompt template.
//!
//! Each writes the command lines with their output as markdown under
//! `book/src/generated/using/`, running every command exactly as the
//! `train` program does. Seeded and path-free: it works in a scratch folder
//! with relative paths, so the output is the same on every machine.

use model::{PROMPT_TEMPLATES, ZeroShotClassifier};
use ndarray::Axis;
use std::path::{Path, PathBuf};
use train::RunConfig;
use train::commands::caption::CaptionArgs;
use train::commands::classify::ClassifyArgs;
use train::commands::export::ExportArgs;
use train::commands::own::{Progress, eval_own, render_eval, render_train, train_own};
use train::commands::search::SearchArgs;
use train::commands::tokenize::TokenizeArgs;
use train::commands::{CommandError, UseCommand};
use train::data::folder::FolderData;
use train::data::{World, is_held_out};
use train::run;

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

/// Exports the 24 toy images both parts show (seed 1), into `shapes/` of
/// the current folder; returns the console block and the folder's items.
fn export_shapes() -> Result<(String, FolderData), Box<dyn std::error::Error>> {
    let export = ExportArgs {
        out: "shapes".into(),
        count: 24,
        seed: 1,
        two_object: 0.25,
        shapes: World::FULL.shapes,
        colours: World::FULL.colours,
    };
    let md = run(
        "train dataset export --out shapes --count 24 --seed 1 --two-object 0.25",
        UseCommand::Dataset(train::commands::DatasetCommand::Export(export)),
    );
    let shapes = FolderData::load(Path::new("shapes"), 32)?;
    Ok((md, shapes))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let book = Path::new(env!("CARGO_MANIFEST_DIR")).join("../book/src/generated/using");
    std::fs::create_dir_all(&book)?;
    // the trained run, as an absolute path: the work happens in a scratch folder
    let trained = std::env::args()
        .nth(1)
        .map(|run| std::path::absolute(run).map(|p| p.to_path_buf()))
        .transpose()?;
    let scratch = std::env::temp_dir().join(format!("train-using-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch)?;
    std::env::set_current_dir(&scratch)?;
    let result = match &trained {
        Some(run) => trained_part(&book, run),
        None => untrained_part(&book),
    };
    std::env::set_current_dir(std::env::temp_dir())?;
    std::fs::remove_dir_all(&scratch)?;
    result?;
    println!("wrote {}", book.display());
    Ok(())
}

/// The commands on a trained run (`runs/default`): tokenize, caption,
/// classify, search, and zero-shot accuracy per prompt template.
fn trained_part(book: &Path, run_dir: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let write = |name: &str, text: String| std::fs::write(book.join(name), text);
    let (config, state) = run::open(run_dir)?;
    let r = || run_dir.to_path_buf();
    write(
        "run.md",
        format!(
            "The run the commands read, `runs/default`: {} parameters ({:?} image tower), {} steps of {} toy images \
             (`cargo run --release -p train`, the training chapter's default run).\n",
            embedding::Params::num_params(&state.model),
            config.encoder,
            state.step,
            config.batch_size,
        ),
    )?;

    // tokenize
    write(
        "tokenize.md",
        run(
            "train tokenize \"a big red circle<|eos|>\"",
            UseCommand::Tokenize(TokenizeArgs {
                text: "a big red circle<|eos|>".into(),
                run: r(),
                tokenizer: None,
            }),
        ) + &run(
            "train tokenize \"a café\"",
            UseCommand::Tokenize(TokenizeArgs {
                text: "a café".into(),
                run: r(),
                tokenizer: None,
            }),
        ),
    )?;

    let (_, shapes) = export_shapes()?;
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
    let truth: String = pick
        .iter()
        .map(|&i| format!("{}: {}\n", names[i], shapes.items[i].caption))
        .collect();
    write(
        "caption.md",
        format!("The true captions, from the folder's `captions.tsv`:\n\n```text\n{truth}```\n\n")
            + &run(
                &format!("train caption {list}"),
                caption(None, None, None, 0),
            )
            + &run(
                &format!("train caption {list} --beam 4"),
                caption(Some(4), None, None, 0),
            )
            + &run(
                &format!("train caption {list} --temperature 0.8 --top-k 5 --seed 1"),
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
    let shape_labels = "circle,square,triangle,cross,diamond,ring";
    write(
        "classify.md",
        run(
            &format!("train classify {} --labels \"{labels}\"", names[0]),
            UseCommand::Classify(ClassifyArgs {
                image: files[0].clone(),
                labels: labels.clone(),
                run: r(),
            }),
        ) + &run(
            &format!("train classify {} --labels \"{shape_labels}\"", names[0]),
            UseCommand::Classify(ClassifyArgs {
                image: files[0].clone(),
                labels: shape_labels.into(),
                run: r(),
            }),
        ),
    )?;

    // zero-shot accuracy of each template, and of the three together
    write("templates.md", templates_table(&config, &state)?)?;

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
            &format!("train search --text \"{query}\" --images shapes --top 5"),
            search(Some(query.clone()), Some("shapes".into()), None, None),
        ) + "\n`texts.txt` holds the captions of the first six images, one a line; the reverse search ranks them for the image `shapes/00002.png`:\n\n"
            + &run(
                "train search --image shapes/00002.png --texts texts.txt --top 5",
                search(None, None, Some(files[2].clone()), Some("texts.txt".into())),
            ),
    )?;
    Ok(())
}

// ANCHOR: templates_table
/// Zero-shot classification of colour and shape (`"red circle"`, one class
/// per pair of the run's world) on one evaluation image of every object,
/// with each prompt template alone and with all of them averaged: the share
/// of images whose best class is their own pair, seen and held-out apart.
fn templates_table(
    config: &RunConfig,
    state: &run::State,
) -> Result<String, Box<dyn std::error::Error>> {
    let world = config.world;
    let classes: Vec<String> = world
        .shapes()
        .iter()
        .flat_map(|s| {
            world
                .colours()
                .iter()
                .map(move |c| format!("{} {}", c.word(), s.word()))
        })
        .collect();
    let class_refs: Vec<&str> = classes.iter().map(String::as_str).collect();
    let objects = world.objects();
    let images = config.data().eval_images(&objects, 1, 3000); // [N, 3, H, W]
    let mut image_embeds = Vec::new();
    for start in (0..objects.len()).step_by(64) {
        let end = (start + 64).min(objects.len());
        let (_, e) = state
            .model
            .encode_images(&images.slice(ndarray::s![start..end, .., .., ..]));
        image_embeds.push(e);
    }
    let views: Vec<_> = image_embeds.iter().map(|e| e.view()).collect();
    let image_embeds = ndarray::concatenate(Axis(0), &views)?; // [N, E]
    let mut sets: Vec<(String, Vec<&str>)> = PROMPT_TEMPLATES
        .iter()
        .map(|t| (format!("`{t}` alone"), vec![*t]))
        .collect();
    sets.push(("all three, averaged".to_string(), PROMPT_TEMPLATES.to_vec()));
    let mut md = format!(
        "| prompts | seen ({} images) | held-out ({} images) |\n| --- | ---: | ---: |\n",
        objects
            .iter()
            .filter(|o| !is_held_out(o.shape, o.colour))
            .count(),
        objects
            .iter()
            .filter(|o| is_held_out(o.shape, o.colour))
            .count(),
    );
    for (name, templates) in sets {
        let classifier =
            ZeroShotClassifier::new(&state.model, &state.tokenizer, &class_refs, &templates);
        let probs = classifier.probs(&image_embeds); // [N, K]
        let (mut right, mut total) = ([0usize; 2], [0usize; 2]);
        for (o, row) in objects.iter().zip(probs.rows()) {
            let best = row
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map_or(0, |(k, _)| k);
            let split = usize::from(is_held_out(o.shape, o.colour));
            total[split] += 1;
            right[split] +=
                usize::from(classes[best] == format!("{} {}", o.colour.word(), o.shape.word()));
        }
        let pct = |s: usize| 100.0 * right[s] as f32 / total[s].max(1) as f32;
        md += &format!("| {name} | {:.1}% | {:.1}% |\n", pct(0), pct(1));
    }
    md += &format!(
        "\nThe classes are the {} (colour, shape) pairs of the world, written `\"red circle\"`; one image of \
         every object of the grammar, each size and position.\n",
        classes.len()
    );
    Ok(md)
}
// ANCHOR_END: templates_table

/// What needs no trained model: export, own data, errors.
fn untrained_part(book: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let write = |name: &str, text: String| std::fs::write(book.join(name), text);
    let _ = std::fs::remove_dir_all(book.join("shapes"));
    std::fs::create_dir_all(book.join("shapes"))?;

    // dataset export, and the exported images as a table
    let (mut md, shapes) = export_shapes()?;
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

    // own data: export a bigger folder, train on it (briefly: CI runs this), evaluate on another
    let (steps, batch_size) = (300, 32);
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
    // what `train --steps 300 --batch-size 32` makes of its flags
    let own_cfg = RunConfig {
        steps,
        batch_size,
        ..RunConfig::default()
    };
    let own_run = Path::new("runs/mine");
    md += &console(
        &format!("train --data mine --name mine --steps {steps} --batch-size {batch_size}"),
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
        "train caption missing.png --run runs/mine",
        UseCommand::Caption(CaptionArgs {
            images: vec!["missing.png".into()],
            run: own_run.to_path_buf(),
            beam: None,
            temperature: None,
            top_k: None,
            seed: 0,
        }),
    );
    write("errors.md", md)?;
    Ok(())
}
