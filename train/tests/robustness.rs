//! What a hostile but ordinary user does to the program: closed and full
//! outputs, absurd counts and sizes, files that are not files, broken
//! images, odd caption files, run names that leave `--out`, trainings that
//! are killed or run twice. Each is a clear error or the right behaviour,
//! never a panic, never an exhausted memory, never a lost run.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use train::commands::caption::{CaptionArgs, caption_files};
use train::commands::classify::classify_file;
use train::commands::export::export;
use train::commands::own::{Progress, eval_own, resume_own, train_own};
use train::commands::{CommandError, load_run};
use train::data::World;
use train::data::folder::{CAPTIONS_FILE, FolderData, parse_captions};
use train::run::{self, Progress as RunProgress};
use train::{Encoder, ModelSize, RunConfig, ToyData};

fn micro(steps: usize) -> RunConfig {
    RunConfig {
        steps,
        batch_size: 4,
        warmup: 1,
        size: ModelSize::Micro,
        encoder: Encoder::Vit,
        eval_interval: 0,
        checkpoint_interval: 0,
        eval_per_object: 1,
        ..RunConfig::default()
    }
}

/// A fresh folder for one test, under cargo's scratch folder for
/// integration tests (`target/tmp`): the next run starts by removing it,
/// so runs that fail or are cut short leave nothing behind for long.
fn tmp(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("robust-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn toy(seed: u64) -> ToyData {
    ToyData {
        seed,
        two_object: 0.0,
        world: World::FULL,
    }
}

/// A micro run trained 2 steps, and 12 exported toy images.
fn fixture() -> &'static (PathBuf, PathBuf) {
    static FIXTURE: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let root = tmp("fixture");
        let run = root.join("run");
        let config = micro(2);
        let mut state = run::start(&run, &config).unwrap();
        run::train(&run, &config, &mut state, 2, RunProgress::Quiet).unwrap();
        let images = root.join("images");
        export(&images, 12, &toy(3)).unwrap();
        (run, images)
    })
}

fn image(i: usize) -> PathBuf {
    fixture().1.join(format!("{i:05}.png"))
}

fn err(result: Result<impl std::fmt::Debug, CommandError>) -> String {
    result.unwrap_err().to_string()
}

/// Runs the program; returns (exit code, stdout, stderr).
fn program(args: &[&str]) -> (Option<i32>, String, String) {
    program_with(args, Stdio::piped(), &[])
}

fn program_with(
    args: &[&str],
    stdout: Stdio,
    env: &[(&str, &str)],
) -> (Option<i32>, String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_train"));
    command.args(args).stdout(stdout).stderr(Stdio::piped());
    for (k, v) in env {
        command.env(k, v);
    }
    let out = command.output().unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code(), text(&out.stdout), text(&out.stderr))
}

fn assert_no_panic(stderr: &str) {
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!stderr.contains("memory allocation"), "{stderr}");
}

// ---- panics -------------------------------------------------------------

#[test]
fn a_closed_output_ends_quietly_and_a_full_one_is_an_error() {
    let run = fixture().0.to_str().unwrap();
    // the reader is gone before the program writes a byte (`| head -c0`)
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let (code, _, stderr) = program_with(
        &["tokenize", "a red circle", "--run", run],
        writer.into(),
        &[],
    );
    assert_eq!((code, stderr.as_str()), (Some(0), ""), "{stderr}");
    if Path::new("/dev/full").exists() {
        let full = std::fs::File::create("/dev/full").unwrap();
        let first = image(0);
        let (code, _, stderr) = program_with(
            &["caption", first.to_str().unwrap(), "--run", run],
            full.into(),
            &[],
        );
        assert_no_panic(&stderr);
        assert_eq!(code, Some(1), "{stderr}");
        assert!(
            stderr.contains("error: cannot write the output: No space left on device"),
            "{stderr}"
        );
    }
}

#[test]
fn an_absurd_export_count_is_an_error() {
    let out = tmp("export-count");
    let target = out.join("data");
    let (code, _, stderr) = program(&[
        "dataset",
        "export",
        "--out",
        target.to_str().unwrap(),
        "--count",
        "18446744073709551615",
    ]);
    assert_no_panic(&stderr);
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("--count") && stderr.contains("1000000"),
        "{stderr}"
    );
    assert!(!target.exists());
    std::fs::remove_dir_all(out).unwrap();
}

#[test]
fn a_non_finite_weight_is_refused_when_the_run_is_loaded() {
    let dir = tmp("nan-run");
    let run = dir.join("run");
    let config = micro(1);
    let mut state = run::start(&run, &config).unwrap();
    run::train(&run, &config, &mut state, 1, RunProgress::Quiet).unwrap();
    drop(state);
    let mut loaded = load_run(&run).unwrap();
    loaded.model.decoder.token_embedding.weight[[3, 1]] = f32::INFINITY;
    let metadata = [("format_version", model::WEIGHTS_VERSION)]
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .into();
    let weights = run.join(run::CHECKPOINT_DIR).join(model::WEIGHTS_FILE);
    model::save_weights(&weights, &loaded.model, &metadata).unwrap();
    let first = image(0);
    for args in [
        vec!["caption", first.to_str().unwrap(), "--beam", "3"],
        vec!["classify", first.to_str().unwrap(), "--labels", "red,blue"],
    ] {
        let (code, _, stderr) = program(&[&args[..], &["--run", run.to_str().unwrap()]].concat());
        assert_no_panic(&stderr);
        assert_eq!(code, Some(1), "{stderr}");
        assert!(
            stderr.contains("decoder.token_embedding.weight holds 1 NaN or infinite"),
            "{stderr}"
        );
    }
    std::fs::remove_dir_all(dir).unwrap();
}

// ---- memory -------------------------------------------------------------

#[test]
fn requests_too_large_for_memory_are_refused_saying_what_fits() {
    let dir = tmp("memory");
    let out = dir.to_str().unwrap();
    // a training step of a million images (the tiny model: some 700 GB)
    let four_gb = [("TRAIN_MEMORY_MB", "4096")];
    let (code, _, stderr) = program_with(
        &[
            "--batch-size",
            "1000000",
            "--steps",
            "1",
            "--out",
            out,
            "--name",
            "big",
        ],
        Stdio::piped(),
        &four_gb,
    );
    assert_no_panic(&stderr);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("a training step of 1000000 examples needs about"),
        "{stderr}"
    );
    assert!(
        stderr.contains("a --batch-size of at most about"),
        "{stderr}"
    );
    // the same batch size written into run.json, then resumed
    let run = dir.join("edited");
    let config = micro(2);
    drop(run::start(&run, &config).unwrap());
    let mut edited = config.clone();
    edited.batch_size = 1_000_000;
    std::fs::write(
        run.join(run::RUN_FILE),
        serde_json::to_string(&edited).unwrap(),
    )
    .unwrap();
    let state_config = micro(2);
    let mut state = run::start(&dir.join("donor"), &state_config).unwrap();
    run::train(
        &dir.join("donor"),
        &state_config,
        &mut state,
        1,
        RunProgress::Quiet,
    )
    .unwrap();
    run::save_state(&run, &state).unwrap();
    drop(state);
    let (code, _, stderr) = program_with(
        &["--resume", "--out", out, "--name", "edited"],
        Stdio::piped(),
        &four_gb,
    );
    assert_no_panic(&stderr);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("a training step of 1000000 examples"),
        "{stderr}"
    );
    // an evaluation of 480 objects × 100 million images
    let (code, _, stderr) = program_with(
        &[
            "eval",
            fixture().0.to_str().unwrap(),
            "--per-object",
            "100000000",
        ],
        Stdio::piped(),
        &four_gb,
    );
    assert_no_panic(&stderr);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("an evaluation on 48000000000 images"),
        "{stderr}"
    );
    assert!(stderr.contains("--per-object"), "{stderr}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_caption_longer_than_the_limit_names_its_line() {
    let dir = tmp("long-caption");
    let data = dir.join("data");
    export(&data, 12, &toy(1)).unwrap();
    let mut tsv = std::fs::read_to_string(data.join(CAPTIONS_FILE)).unwrap();
    tsv = tsv.replacen(
        "00003.png\t",
        &format!("00003.png\t{} ", "long ".repeat(2000)),
        1,
    );
    std::fs::write(data.join(CAPTIONS_FILE), &tsv).unwrap();
    let e = err(train_own(
        &data,
        &dir.join("run"),
        &micro(1),
        Progress::Quiet,
    ));
    assert!(e.contains("captions.tsv:4: the caption needs"), "{e}");
    assert!(e.contains("reads at most 64"), "{e}");
    assert!(
        !run::holds_run(&dir.join("run")),
        "nothing is written for a refused run"
    );
    // the limit is a flag
    let (code, _, stderr) = program(&[
        "--data",
        data.to_str().unwrap(),
        "--max-caption-tokens",
        "2",
        "--steps",
        "1",
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("--max-caption-tokens") || stderr.contains("max-caption-tokens"),
        "{stderr}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn classify_with_thousands_of_labels_works_in_chunks() {
    let loaded = load_run(&fixture().0).unwrap();
    let labels: Vec<String> = (0..600).map(|i| format!("label {i}")).collect();
    let ranked = classify_file(&loaded.model, &loaded.tokenizer, &image(0), &labels).unwrap();
    assert_eq!(ranked.len(), 600);
    let total: f32 = ranked.iter().map(|r| r.1).sum();
    assert!((total - 1.0).abs() < 1e-4, "{total}");
    // the chunked embeddings are the ones of a single pass
    let few = &labels[..3];
    let one_pass = classify_file(&loaded.model, &loaded.tokenizer, &image(0), few).unwrap();
    let classes: Vec<&str> = few.iter().map(String::as_str).collect();
    let whole = model::ZeroShotClassifier::new(
        &loaded.model,
        &loaded.tokenizer,
        &classes,
        &model::PROMPT_TEMPLATES,
    );
    let images = train::commands::load_images(&loaded.model, &[image(0)]).unwrap();
    let probs = whole.classify(&loaded.model, &images);
    for (label, p) in one_pass {
        let k = few.iter().position(|l| *l == label).unwrap();
        assert!((probs[[0, k]] - p).abs() < 1e-6, "{label}");
    }
}

// ---- files that are not what they seem -------------------------------------

#[test]
fn devices_fifos_and_broken_jpegs_are_errors_naming_them() {
    let loaded = load_run(&fixture().0).unwrap();
    let caption = |path: &Path| {
        caption_files(
            &loaded.model,
            &loaded.tokenizer,
            &[path],
            &model::Strategy::Greedy,
        )
    };
    if Path::new("/dev/zero").exists() {
        let e = err(caption(Path::new("/dev/zero")));
        assert!(e.contains("/dev/zero: not a regular file"), "{e}");
    }
    let dir = tmp("not-files");
    let fifo = dir.join("pipe.png");
    if Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .is_ok_and(|s| s.success())
    {
        let e = err(caption(&fifo));
        assert!(e.contains("pipe.png: not a regular file"), "{e}");
    }
    // a JPEG cut short is an error, not a grey caption
    let picture = vision::load_image(image(0)).unwrap();
    let jpeg = dir.join("photo.jpg");
    picture.save(&jpeg).unwrap();
    let bytes = std::fs::read(&jpeg).unwrap();
    std::fs::write(&jpeg, &bytes[..bytes.len() * 2 / 3]).unwrap();
    let e = err(caption(&jpeg));
    assert!(e.contains("photo.jpg: corrupt or truncated image"), "{e}");
    // the tokenizer file of `tokenize --tokenizer` is read the same way
    if Path::new("/dev/zero").exists() {
        let (code, _, stderr) = program(&["tokenize", "x", "--tokenizer", "/dev/zero"]);
        assert_eq!(code, Some(1), "{stderr}");
        assert!(stderr.contains("/dev/zero: not a regular file"), "{stderr}");
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn captions_files_with_a_bom_a_lone_tab_or_paths_outside_are_handled() {
    let p = Path::new("d/captions.tsv");
    // a byte order mark is not part of the first file name
    let (items, _) = parse_captions("\u{feff}a.png\tred\n", p).unwrap();
    assert_eq!(items[0].file, "a.png");
    // a line holding only a tab is an error, not a blank line skipped
    let e = parse_captions("a.png\tred\n\t\nb.png\tblue\n", p)
        .unwrap_err()
        .to_string();
    assert!(e.contains("captions.tsv:2: malformed line"), "{e}");
    let (_, blank) = parse_captions("a.png\tred\n   \nb.png\tblue\n", p).unwrap();
    assert_eq!(blank, 1);
    // file names must stay inside the folder
    for name in ["../secret.png", "/etc/x.png", "a/../../b.png"] {
        let e = parse_captions(&format!("{name}\tred\n"), p)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("captions.tsv:1:") && e.contains("leaves the data folder"),
            "{e}"
        );
    }
    assert!(parse_captions("sub/a.png\tred\n./b.png\tblue\n", p).is_ok());
    // and the loader reads a BOM file from disk the same way
    let dir = tmp("bom");
    std::fs::copy(image(0), dir.join("a.png")).unwrap();
    std::fs::write(dir.join(CAPTIONS_FILE), "\u{feff}a.png\tred circle\n").unwrap();
    assert_eq!(FolderData::load(&dir, 32).unwrap().items.len(), 1);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn run_names_that_leave_out_are_refused() {
    let dir = tmp("names");
    let out = dir.join("runs");
    for name in ["", "..", "../escaped", "/tmp/absolute", "a/b"] {
        let (code, _, stderr) = program(&[
            "--name",
            name,
            "--out",
            out.to_str().unwrap(),
            "--steps",
            "1",
        ]);
        assert_no_panic(&stderr);
        assert_eq!(code, Some(1), "{name:?}: {stderr}");
        assert!(stderr.contains("bad value for name"), "{name:?}: {stderr}");
    }
    assert!(!dir.join("escaped").exists() && !out.exists());
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn export_into_a_folder_that_is_not_empty_is_refused() {
    let dir = tmp("export-twice");
    let data = dir.join("data");
    export(&data, 5, &toy(0)).unwrap();
    let before = std::fs::read(data.join(CAPTIONS_FILE)).unwrap();
    let e = err(export(&data, 3, &toy(1)));
    assert!(e.contains("--out") && e.contains("not empty"), "{e}");
    assert_eq!(std::fs::read(data.join(CAPTIONS_FILE)).unwrap(), before);
    assert_eq!(std::fs::read_dir(&data).unwrap().count(), 6);
    // an empty folder is fine
    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    assert_eq!(export(&empty, 2, &toy(0)).unwrap().len(), 2);
    std::fs::remove_dir_all(dir).unwrap();
}

// ---- own data -------------------------------------------------------------

#[test]
fn an_own_data_run_is_evaluated_and_resumed_on_its_own_data_from_anywhere() {
    let dir = tmp("own-anywhere");
    let data = dir.join("data");
    export(&data, 12, &toy(2)).unwrap();
    let runs = dir.join("runs");
    let (own, _) = train_own(&data, &runs.join("own"), &micro(2), Progress::Quiet).unwrap();
    assert!(Path::new(&own.data).is_absolute(), "{}", own.data);
    // `eval RUN` without --data evaluates on the run's data, not on the toy data
    let (code, stdout, stderr) = program(&["eval", runs.join("own").to_str().unwrap()]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.contains("| metric | train | validation |"),
        "{stdout}"
    );
    let (eval, _) = eval_own(&runs.join("own"), &data).unwrap();
    assert!(stdout.contains(&format!(
        "| items | {} | {} |",
        eval.train.items, eval.validation.items
    )));
    // a relative --data, resumed from another working directory
    let rel = dir.join("rel");
    std::fs::create_dir_all(&rel).unwrap();
    let status = Command::new(env!("CARGO_BIN_EXE_train"))
        .current_dir(&rel)
        .args([
            "--data",
            "../data",
            "--steps",
            "2",
            "--batch-size",
            "2",
            "--name",
            "r",
            "--out",
            "runs",
        ])
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    // finished: resuming from elsewhere finds the data and has nothing left to do
    let (code, _, stderr) = program(&[
        "--resume",
        "--name",
        "r",
        "--out",
        rel.join("runs").to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    let (resumed, _) = resume_own(&rel.join("runs/r"), None, Progress::Quiet).unwrap();
    assert_eq!(Path::new(&resumed.data), data.canonicalize().unwrap());
    std::fs::remove_dir_all(dir).unwrap();
}

// ---- decoding --------------------------------------------------------------

#[test]
fn a_tiny_temperature_samples_the_greedy_caption() {
    let loaded = load_run(&fixture().0).unwrap();
    let args = CaptionArgs {
        images: vec![image(0), image(1)],
        run: fixture().0.clone(),
        beam: None,
        temperature: Some(1e-45),
        top_k: None,
        seed: 0,
    };
    let sampled = caption_files(
        &loaded.model,
        &loaded.tokenizer,
        &args.images,
        &args.strategy().unwrap(),
    )
    .unwrap();
    let greedy = caption_files(
        &loaded.model,
        &loaded.tokenizer,
        &args.images,
        &model::Strategy::Greedy,
    )
    .unwrap();
    for (s, g) in sampled.iter().zip(&greedy) {
        assert_eq!(s.ids, g.ids);
        assert!(!s.text.contains('\0'), "{:?}", s.text);
    }
}

#[test]
fn an_overflowing_loss_weight_is_refused_by_name() {
    let dir = tmp("weight");
    let (code, _, stderr) = program(&[
        "--caption-weight",
        "1e38",
        "--steps",
        "1",
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert_no_panic(&stderr);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("bad value for caption-weight"), "{stderr}");
    assert!(!stderr.contains("non-finite"), "{stderr}");
    std::fs::remove_dir_all(dir).unwrap();
}

// ---- losing a run -----------------------------------------------------------

/// The `train` program killed (SIGKILL) at some moment while it writes a
/// checkpoint after every step: the run opens, `--resume` finishes it, and
/// starting it again without `--force` deletes nothing.
#[test]
fn a_killed_training_resumes_and_is_never_deleted() {
    let dir = tmp("killed");
    let out = dir.to_str().unwrap();
    let args = [
        "--name",
        "k",
        "--out",
        out,
        "--steps",
        "40",
        "--batch-size",
        "2",
        "--checkpoint-interval",
        "1",
        "--eval-interval",
        "0",
        "--shapes",
        "2",
        "--colours",
        "3",
    ];
    let run = dir.join("k");
    let mut child = Command::new(env!("CARGO_BIN_EXE_train"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // wait for the first checkpoint, then kill it in the middle of its work
    let started = std::time::Instant::now();
    while run::checkpoint_dir(&run).is_none() && started.elapsed().as_secs() < 120 {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    std::thread::sleep(std::time::Duration::from_millis(37));
    child.kill().unwrap();
    child.wait().unwrap();
    let (_, state) = run::open(&run).expect("a complete checkpoint survives the kill");
    assert!(state.step >= 1);
    // starting over without --force is refused and deletes nothing
    let (code, _, stderr) = program(&args);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("already holds a run"), "{stderr}");
    assert!(run::open(&run).is_ok());
    // the lock died with the process: --resume finishes the run
    let (code, stdout, stderr) = program(&["--resume", "--name", "k", "--out", out]);
    assert_no_panic(&stderr);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("40 steps in"), "{stdout}");
    // and --force starts it over
    let mut again = args.to_vec();
    again[5] = "1"; // --steps 1
    again.push("--force");
    let (code, _, stderr) = program(&again);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(run::open(&run).unwrap().1.step, 1);
    std::fs::remove_dir_all(dir).unwrap();
}
