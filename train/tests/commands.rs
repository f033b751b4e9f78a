//! The `use` commands on a micro run made here: every command's library
//! function, every kind of user error (named file and line, never a
//! panic), the own-data round trip, and the program itself.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use train::commands::caption::{CaptionArgs, caption_files};
use train::commands::classify::{classify_file, parse_labels};
use train::commands::export::export;
use train::commands::own::{Progress, eval_own, resume_own, start_own, train_own, train_steps};
use train::commands::search::{SearchArgs, read_texts, search_images, search_texts};
use train::commands::tokenize::{TokenizeArgs, tokenize};
use train::commands::{CommandError, Loaded, load_run};
use train::data::World;
use train::data::folder::{CAPTIONS_FILE, FolderData};
use train::run::{self, Progress as RunProgress};
use train::{Encoder, ModelSize, RunConfig, ToyData};

fn micro(steps: usize) -> RunConfig {
    RunConfig {
        steps,
        batch_size: 8,
        warmup: 1,
        size: ModelSize::Micro,
        encoder: Encoder::Vit,
        eval_interval: 0,
        checkpoint_interval: 0,
        eval_per_object: 1,
        ..RunConfig::default()
    }
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("train-commands-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The toy data `dataset export` writes: the full world.
fn toy(seed: u64, two_object: f32) -> ToyData {
    ToyData {
        seed,
        two_object,
        world: World::FULL,
    }
}

/// A micro run trained 3 steps on toy data, and 12 exported toy images:
/// made once for all tests.
fn fixture() -> &'static (PathBuf, PathBuf) {
    static FIXTURE: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let root = tmp("fixture");
        let run = root.join("run");
        let config = micro(3);
        let mut state = run::start(&run, &config).unwrap();
        run::train(&run, &config, &mut state, 3, RunProgress::Quiet).unwrap();
        let images = root.join("images");
        export(&images, 12, &toy(7, 0.0)).unwrap();
        (run, images)
    })
}

fn loaded() -> Loaded {
    load_run(&fixture().0).unwrap()
}

fn image(i: usize) -> PathBuf {
    fixture().1.join(format!("{i:05}.png"))
}

/// Writes a `w × h` PNG of one colour.
fn png(path: &Path, w: usize, h: usize) {
    let mut img = ndarray::Array3::<f32>::zeros((3, h, w));
    img.slice_mut(ndarray::s![0, .., ..]).fill(0.8);
    vision::save_png(&img, path).unwrap();
}

fn err(result: Result<impl std::fmt::Debug, CommandError>) -> String {
    result.unwrap_err().to_string()
}

#[test]
fn captions_of_any_size_with_every_strategy() {
    let m = loaded();
    let dir = tmp("caption");
    let big = dir.join("big.png");
    png(&big, 50, 37);
    let paths = [image(0), big.clone()];
    let args = |beam, temperature, top_k| CaptionArgs {
        images: paths.to_vec(),
        run: fixture().0.clone(),
        beam,
        temperature,
        top_k,
        seed: 3,
    };
    for a in [
        args(None, None, None),
        args(Some(3), None, None),
        args(None, Some(0.7), Some(4)),
    ] {
        let strategy = a.strategy().unwrap();
        let captions = caption_files(&m.model, &m.tokenizer, &paths, &strategy).unwrap();
        assert_eq!(captions.len(), 2);
        for c in &captions {
            assert!(c.ids.len() < m.model.config().max_len);
            assert_eq!(m.tokenizer.decode(&c.ids).unwrap(), c.text);
        }
        // the same flags give the same captions (sampling is seeded)
        assert_eq!(
            caption_files(&m.model, &m.tokenizer, &paths, &strategy).unwrap(),
            captions
        );
        let out = a.execute().unwrap();
        assert!(out.contains("big.png: "), "{out}");
    }
    for (a, flag) in [
        (args(Some(0), None, None), "--beam"),
        (args(Some(1_000_000_000), None, None), "--beam"),
        (args(Some(2), Some(1.0), None), "--beam"),
        (args(None, Some(-1.0), None), "--temperature"),
        (args(None, Some(f32::NAN), None), "--temperature"),
        (args(None, None, Some(0)), "--top-k"),
    ] {
        let e = err(a.strategy());
        assert!(e.contains(flag), "{e}");
    }
    let missing = dir.join("missing.png");
    let e = err(caption_files(
        &m.model,
        &m.tokenizer,
        &[missing],
        &model::Strategy::Greedy,
    ));
    assert!(e.contains("missing.png"), "{e}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn classify_ranks_every_label_with_probabilities() {
    let m = loaded();
    let labels = parse_labels(" red circle, blue square ,green cross").unwrap();
    assert_eq!(labels, ["red circle", "blue square", "green cross"]);
    let ranked = classify_file(&m.model, &m.tokenizer, &image(1), &labels).unwrap();
    assert_eq!(ranked.len(), 3);
    let total: f32 = ranked.iter().map(|r| r.1).sum();
    assert!((total - 1.0).abs() < 1e-5, "{total}");
    assert!(ranked.windows(2).all(|w| w[0].1 >= w[1].1));
    let mut names: Vec<&str> = ranked.iter().map(|r| r.0.as_str()).collect();
    names.sort();
    assert_eq!(names, ["blue square", "green cross", "red circle"]);
    assert!(err(parse_labels("red,,blue")).contains("label 2 is empty"));
    assert!(err(parse_labels("red, red")).contains("twice"));
    assert!(err(parse_labels("red")).contains("at least two"));
}

#[test]
fn search_ranks_images_by_text_and_texts_by_image() {
    let m = loaded();
    let dir = tmp("search");
    for i in 0..3 {
        std::fs::copy(image(i), dir.join(format!("{i}.png"))).unwrap();
    }
    std::fs::write(dir.join("notes.txt"), "not an image").unwrap();
    let found = search_images(&m.model, &m.tokenizer, "a big red circle", &dir).unwrap();
    assert_eq!(found.skipped, 1);
    assert_eq!(found.ranked.len(), 3);
    assert!(found.ranked.windows(2).all(|w| w[0].1 >= w[1].1));
    assert!(found.ranked.iter().all(|r| (-1.0..=1.0).contains(&r.1)));

    let texts = dir.join("texts.txt");
    std::fs::write(&texts, "a red circle\na blue square\na green cross\n").unwrap();
    let found = search_texts(&m.model, &m.tokenizer, &image(0), &texts).unwrap();
    assert_eq!(found.ranked.len(), 3);
    assert_eq!(found.cut, 0);
    // a text longer than the model reads is cut, and the output says so
    std::fs::write(&texts, format!("a red circle\n{}\n", "red ".repeat(30))).unwrap();
    let found = search_texts(&m.model, &m.tokenizer, &image(0), &texts).unwrap();
    assert_eq!(found.cut, 1);
    assert!(train::commands::search::render(&found, None).contains("note: 1 text(s)"));
    assert!(found.ranked.windows(2).all(|w| w[0].1 >= w[1].1));

    // errors: a texts file with an empty line, a missing one, a folder without images,
    // a corrupt image, flags that do not go together
    std::fs::write(&texts, "a red circle\n\na green cross\n").unwrap();
    assert!(err(read_texts(&texts)).ends_with("texts.txt:2: empty line; write one text a line"));
    assert!(err(read_texts(&dir.join("nope.txt"))).contains("nope.txt"));
    let empty = tmp("search-empty");
    assert!(
        err(search_images(&m.model, &m.tokenizer, "x", &empty)).contains("no .png, .jpg or .jpeg")
    );
    std::fs::write(dir.join("3.png"), b"\x89PNG\r\n\x1a\n broken").unwrap();
    let e = err(search_images(&m.model, &m.tokenizer, "x", &dir));
    assert!(e.contains("3.png"), "{e}");
    let args = SearchArgs {
        text: Some("x".into()),
        images: None,
        image: Some(image(0)),
        texts: None,
        top: None,
        run: fixture().0.clone(),
    };
    assert!(err(args.execute()).contains("either --text and --images"));
    for d in [dir, empty] {
        std::fs::remove_dir_all(d).unwrap();
    }
}

#[test]
fn tokenize_shows_pieces_that_spell_the_text() {
    let m = loaded();
    let text = "a big red circle<|eos|> é";
    let tokens = tokenize(&m.tokenizer, text);
    let bytes: Vec<u8> = tokens.iter().flat_map(|t| t.bytes.clone()).collect();
    assert_eq!(bytes, text.as_bytes());
    assert!(
        tokens
            .iter()
            .any(|t| Some(t.id) == m.tokenizer.special_id(tokenizer::EOS))
    );
    // a tokenizer file instead of the run's
    let dir = tmp("tokenize");
    let file = dir.join("tok.txt");
    m.tokenizer.save(&file).unwrap();
    let args = |tokenizer| TokenizeArgs {
        text: "a red circle".into(),
        run: PathBuf::from("no/such/run"),
        tokenizer,
    };
    let out = args(Some(file.clone())).execute().unwrap();
    assert!(out.starts_with(&format!(
        "{} tokens",
        tokenize(&m.tokenizer, "a red circle").len()
    )));
    // a bad file is named once, with the line and what was wrong there
    std::fs::write(&file, "junk").unwrap();
    let message = err(args(Some(file.clone())).execute());
    assert_eq!(message.matches("tok.txt").count(), 1, "{message}");
    assert!(
        message.contains("line 1: expected \"bpe-tokenizer ...\""),
        "{message}"
    );
    std::fs::write(
        &file,
        "bpe-tokenizer 1\nsplit gpt4\nmerges 1\n97 x\nspecials 0\n",
    )
    .unwrap();
    let message = err(args(Some(file)).execute());
    assert_eq!(message.matches("tok.txt").count(), 1, "{message}");
    assert!(
        message.contains("line 4: expected two token ids"),
        "{message}"
    );
    assert!(err(args(None).execute()).contains("no/such/run: not a run folder"));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn folders_that_are_not_runs_are_named() {
    let dir = tmp("not-a-run");
    assert!(err(load_run(&dir.join("x"))).contains("no such folder"));
    assert!(err(load_run(&dir)).contains("no checkpoint/"));
    std::fs::create_dir_all(dir.join("checkpoint")).unwrap();
    let e = err(load_run(&dir));
    assert!(e.starts_with("bad checkpoint"), "{e}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn exported_data_round_trips_as_own_data() {
    let dir = tmp("round-trip");
    let data = dir.join("data");
    let scenes = export(&data, 20, &toy(1, 0.5)).unwrap();
    // the files hold the toy images (to 8 bits) and their captions
    let folder = FolderData::load(&data, 32).unwrap();
    assert_eq!(folder.items.len(), 20);
    for (item, scene) in folder.items.iter().zip(&scenes) {
        assert_eq!(item.caption, scene.caption());
    }
    let (_, toy_images) = toy(1, 0.5).scenes(0, 64);
    let diff = (&folder.images - &toy_images.slice(ndarray::s![..20, .., .., ..]))
        .iter()
        .fold(0.0f32, |m, v| m.max(v.abs()));
    assert!(diff <= 0.5 / 255.0 + 1e-6, "{diff}");
    assert_eq!(
        (
            folder.train_indices().len(),
            folder.validation_indices().len()
        ),
        (18, 2)
    );

    let run = dir.join("run");
    let (own, state) = train_own(&data, &run, &micro(3), Progress::Quiet).unwrap();
    assert_eq!(state.step, 3);
    assert_eq!((own.train_items, own.validation_items), (18, 2));
    assert_eq!(own.eval.unwrap().validation.items, 2);
    for file in [run::RUN_FILE, run::LOSS_PLOT_FILE, "own-data.json"] {
        assert!(run.join(file).is_file(), "{file}");
    }
    // the tokenizer learned the captions' words, the run opens like any other
    assert_eq!(state.tokenizer.encode_ordinary(" magenta").len(), 1);
    let (eval, _) = eval_own(&run, &data).unwrap();
    assert_eq!(Some(eval), own.eval);
    for m in [eval.train, eval.validation] {
        for v in [
            m.image_to_text_r1,
            m.image_to_text_r5,
            m.text_to_image_r1,
            m.text_to_image_r5,
            m.caption_exact,
            m.token_accuracy,
        ] {
            assert!((0.0..=1.0).contains(&v), "{m:?}");
        }
        assert!(m.image_to_text_r1 <= m.image_to_text_r5);
    }
    // impossible export settings
    assert!(err(export(&dir.join("x"), 0, &toy(1, 0.0))).contains("--count"));
    assert!(err(export(&dir.join("x"), 3, &toy(1, 1.5))).contains("--two-object"));
    let too_many = ToyData {
        world: World {
            shapes: 7,
            colours: 8,
        },
        ..toy(1, 0.0)
    };
    let e = err(export(&dir.join("x"), 3, &too_many));
    assert!(e.contains("--shapes") && e.contains("got 7"), "{e}");
    std::fs::write(dir.join("file"), "").unwrap();
    assert!(err(export(&dir.join("file"), 3, &toy(1, 0.0))).contains("file"));
    // resuming from a checkpoint gives the weights of the uninterrupted run
    let cfg = micro(6);
    let (_, straight) = train_own(&data, &dir.join("straight"), &cfg, Progress::Quiet).unwrap();
    let halves = dir.join("halves");
    let (folder, mut half) = start_own(&data, &halves, &cfg).unwrap();
    train_steps(&halves, &cfg, &folder, &mut half, 3, Progress::Quiet).unwrap();
    run::save_state(&halves, &half).unwrap();
    // while the first training holds the folder, a second one is refused
    let e = err(resume_own(&halves, None, Progress::Quiet));
    assert!(e.contains("being written by another training"), "{e}");
    drop(half);
    let (resumed_own, resumed) = resume_own(&halves, None, Progress::Quiet).unwrap();
    assert_eq!(resumed.step, 6);
    assert_eq!(
        resumed.model, straight.model,
        "weights differ after resuming"
    );
    assert!(resumed_own.eval.is_some());
    assert!(err(resume_own(&fixture().0, None, Progress::Quiet)).contains("own-data.json"));
    // the second time the run folder is taken
    assert!(err(train_own(&data, &run, &micro(3), Progress::Quiet)).contains("already holds"));
    std::fs::remove_dir_all(dir).unwrap();
}

/// Writes a data folder with two good images and `tsv` as captions.tsv.
fn folder(name: &str, tsv: &str) -> PathBuf {
    let dir = tmp(name);
    std::fs::copy(image(0), dir.join("a.png")).unwrap();
    std::fs::copy(image(1), dir.join("b.png")).unwrap();
    std::fs::write(dir.join("broken.png"), b"\x89PNG\r\n\x1a\n broken").unwrap();
    std::fs::write(dir.join(CAPTIONS_FILE), tsv).unwrap();
    dir
}

#[test]
fn every_bad_line_of_own_data_is_an_error_with_file_and_line() {
    let cases = [
        ("a.png\tred\nb.png blue\n", ":2: malformed line"),
        ("a.png\tred\tcircle\n", ":1: malformed line"),
        (
            "a.png\tred\n\tblue\n",
            ":2: malformed line: the file name is empty",
        ),
        ("a.png\tred\nb.png\t \n", ":2: empty caption"),
        ("a.png\tred\nc.png\tblue\n", ":2: image"),
        ("a.png\tred\nbroken.png\tblue\n", ":2: unreadable image"),
        ("\n\n", "no caption lines"),
    ];
    for (i, (tsv, want)) in cases.iter().enumerate() {
        let dir = folder(&format!("bad-{i}"), tsv);
        let e = FolderData::load(&dir, 32).unwrap_err().to_string();
        assert!(
            e.contains(CAPTIONS_FILE) && e.contains(want),
            "{tsv:?}: {e}"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
    // a missing captions file
    let dir = tmp("no-captions");
    let e = FolderData::load(&dir, 32).unwrap_err().to_string();
    assert!(e.contains("captions.tsv"), "{e}");
    // blank lines are counted, not silently dropped
    let dir = folder("blank", "a.png\tred\n\nb.png\tblue\n\n");
    let data = FolderData::load(&dir, 32).unwrap();
    assert_eq!((data.items.len(), data.blank_lines), (2, 2));
    // too few captions to train; no validation split to evaluate
    std::fs::write(dir.join(CAPTIONS_FILE), "a.png\tred\n").unwrap();
    let e = err(train_own(
        &dir,
        &dir.join("run"),
        &micro(3),
        Progress::Quiet,
    ));
    assert!(e.contains("training needs at least 2"), "{e}");
    let e = err(eval_own(&fixture().0, &dir));
    assert!(e.contains("validation split"), "{e}");
    // a caption longer than the model reads
    let long = format!("a.png\t{}\n", "red ".repeat(40));
    std::fs::write(dir.join(CAPTIONS_FILE), long.repeat(10)).unwrap();
    let e = err(eval_own(&fixture().0, &dir));
    assert!(e.contains("captions.tsv:1: the caption needs"), "{e}");
    std::fs::remove_dir_all(dir).unwrap();
}

// ---- the program itself ----

fn program(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_train"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn every_command_has_help() {
    for cmd in [
        &["caption", "--help"][..],
        &["classify", "--help"],
        &["search", "--help"],
        &["tokenize", "--help"],
        &["dataset", "export", "--help"],
        &["eval", "--help"],
    ] {
        let (ok, out, _) = program(cmd);
        assert!(ok && out.contains("Usage: train"), "{cmd:?}: {out}");
    }
    let (_, out, _) = program(&["--help"]);
    assert!(out.contains("--data"), "{out}");
}

#[test]
fn the_program_runs_the_commands_and_exits_1_on_errors() {
    let (run, images) = fixture();
    let run = run.to_str().unwrap();
    let first = image(0);
    let first = first.to_str().unwrap();
    let (ok, out, err) = program(&["caption", first, "--run", run]);
    assert!(ok, "{err}");
    assert!(out.starts_with(&format!("{first}: ")), "{out}");
    let (ok, out, err) = program(&["classify", first, "--labels", "red,blue", "--run", run]);
    assert!(ok && out.contains("probability"), "{err}");
    let (ok, out, err) = program(&[
        "search",
        "--text",
        "a red circle",
        "--images",
        images.to_str().unwrap(),
        "--top",
        "2",
        "--run",
        run,
    ]);
    assert!(ok && out.contains("(10 more)"), "{out}{err}");
    let (ok, out, _) = program(&["tokenize", "a red circle", "--run", run]);
    assert!(ok && out.contains("\" red\""), "{out}");
    let dir = tmp("program");
    let data = dir.join("data");
    let (ok, out, _) = program(&[
        "dataset",
        "export",
        "--out",
        data.to_str().unwrap(),
        "--count",
        "3",
    ]);
    assert!(ok && out.starts_with("wrote 3 images"), "{out}");
    // train on the exported folder, then resume the finished run (nothing left to train)
    let data12 = dir.join("data12");
    export(&data12, 12, &toy(0, 0.0)).unwrap();
    let (d, o) = (data12.to_str().unwrap(), dir.to_str().unwrap());
    let base = [
        "--steps",
        "2",
        "--batch-size",
        "2",
        "--name",
        "own",
        "--out",
        o,
    ];
    let (ok, out, err) = program(&[&["--data", d][..], &base].concat());
    assert!(
        ok && out.contains("11 training, 1 validation"),
        "{out}{err}"
    );
    let (ok, out, err) = program(&[&["--resume"][..], &base].concat());
    assert!(
        ok && err.contains("resuming") && out.contains("| validation |"),
        "{out}{err}"
    );
    // errors: a message naming the file and exit code 1
    let out_dir = dir.to_str().unwrap();
    for (args, want) in [
        (vec!["caption", "missing.png", "--run", run], "missing.png"),
        (
            vec!["caption", first, "--run", "no-run-here"],
            "no-run-here: not a run folder",
        ),
        (
            vec!["classify", first, "--labels", "red", "--run", run],
            "--labels",
        ),
        (
            vec!["eval", run, "--data", data.to_str().unwrap()],
            "validation split",
        ),
        (
            vec!["--data", "no-data-here", "--steps", "1", "--out", out_dir],
            "no-data-here/captions.tsv",
        ),
    ] {
        let (ok, _, err) = program(&args);
        assert!(
            !ok && err.contains("error: ") && err.contains(want),
            "{args:?}: {err}"
        );
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn exported_questions_round_trip_as_own_questions() {
    use train::commands::export::export_questions;
    use train::data::qa_folder::QuestionData;
    use train::data::questions::{Family, QaData};
    let dir = tmp("questions");
    let data = dir.join("data");
    let qa = QaData {
        seed: 4,
        ..QaData::default()
    };
    let examples = export_questions(&data, 70, &qa).unwrap();
    let folder = QuestionData::load(&data, 48).unwrap();
    assert_eq!(folder.items.len(), 70);
    assert_eq!(folder.images.dim(), (70, 3, 48, 48));
    for (item, example) in folder.items.iter().zip(&examples) {
        let turn = &example.conversation.turns[0];
        assert_eq!(example.conversation.turns.len(), 1);
        assert_eq!(format!("<|image|> {}", item.question), turn.user);
        assert_eq!(item.answer, turn.assistant);
        assert_eq!(item.family.as_deref(), Some(turn.meta.family.name()));
        assert!(Family::from_name(item.family.as_deref().unwrap()).is_some());
    }
    // the images are the generator's, to 8 bits
    let (_, images) = QaData {
        max_turns: 1,
        ..qa.clone()
    }
    .batch(0, 64);
    let diff = (&folder.images.slice(ndarray::s![..64, .., .., ..]) - &images)
        .iter()
        .fold(0.0f32, |m, v| m.max(v.abs()));
    assert!(diff <= 0.5 / 255.0 + 1e-6, "{diff}");
    // the same folder has the captions
    let captions = FolderData::load(&data, 48).unwrap();
    assert_eq!(captions.items[3].caption, examples[3].scene.caption());
    // impossible settings name their flag; a used folder is refused
    assert!(err(export_questions(&dir.join("x"), 0, &qa)).contains("--count"));
    let small = QaData {
        scenes: train::data::scenes::SceneConfig {
            side: 32,
            ..Default::default()
        },
        ..qa.clone()
    };
    assert!(err(export_questions(&dir.join("x"), 3, &small)).contains("--side"));
    assert!(err(export_questions(&data, 3, &qa)).contains("not empty"));
    std::fs::remove_dir_all(dir).unwrap();
}
