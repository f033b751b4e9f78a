//! The multimodal recipe from the command line, as CI runs it: every stage
//! of a micro run, `--resume`, `eval`, `ask`, and `chat` fed from standard
//! input.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn train(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_train"))
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the train program starts");
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn temp() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("train-vlm-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn the_micro_recipe_trains_resumes_answers_and_chats() {
    let dir = temp();
    let out = dir.to_str().unwrap();
    let run = dir.join("m");
    let run_s = run.to_str().unwrap();
    // every stage, then the evaluation
    let first = train(&["vlm", "--micro", "--out", out, "--name", "m"], None);
    assert!(first.status.success(), "{}", text(&first.stderr));
    let stdout = text(&first.stdout);
    assert!(
        stdout.contains("exact match of the answers") && stdout.contains("blind"),
        "{stdout}"
    );
    for stage in ["1-clip", "2-lm", "3-align", "4-instruct"] {
        assert!(run.join(stage).join("checkpoint").is_dir(), "{stage}");
    }
    // a second start is refused; --resume finds every stage done
    let again = train(&["vlm", "--micro", "--out", out, "--name", "m"], None);
    assert!(!again.status.success());
    assert!(
        text(&again.stderr).contains("--resume"),
        "{}",
        text(&again.stderr)
    );
    let resumed = train(&["vlm", "--resume", "--out", out, "--name", "m"], None);
    assert!(resumed.status.success(), "{}", text(&resumed.stderr));
    let eval = train(&["eval", run_s], None);
    assert!(eval.status.success(), "{}", text(&eval.stderr));
    // its figures and tables
    let figures = dir.join("figures");
    let plot = train(
        &[
            "plot",
            run_s,
            "--out",
            figures.to_str().unwrap(),
            "--link-base",
            "x/",
        ],
        None,
    );
    assert!(plot.status.success(), "{}", text(&plot.stderr));
    for name in [
        "stages.svg",
        "probe.md",
        "gallery.png",
        "answer_attention.png",
    ] {
        assert!(figures.join(name).is_file(), "{name}");
    }
    let results = std::fs::read_to_string(figures.join("results.md")).unwrap();
    assert!(
        results.contains("| attribute |") && results.contains("| all |"),
        "{results}"
    );
    let gallery = std::fs::read_to_string(figures.join("gallery.md")).unwrap();
    assert!(gallery.contains("\"x/gallery.png\""), "{gallery}");
    let positions = std::fs::read_to_string(figures.join("image_positions.md")).unwrap();
    assert!(
        positions.contains("\"x/image_positions.svg\"") && positions.contains("in one row: "),
        "{positions}"
    );
    let heatmap = std::fs::read_to_string(figures.join("image_positions.svg")).unwrap();
    assert!(heatmap.contains("top left") && heatmap.contains("bottom right"));
    // the micro run asks in unseen phrasings too: one row per phrasing asked
    let wording = std::fs::read_to_string(figures.join("wording.md")).unwrap();
    assert!(
        wording.contains("| phrasing training never showed |")
            && wording.contains("The largest drop is `"),
        "{wording}"
    );
    assert!(gallery.contains('✓') || gallery.contains('✗'), "{gallery}");
    // a picture to talk about
    let export = train(
        &[
            "dataset",
            "export",
            "--out",
            dir.join("shapes").to_str().unwrap(),
            "--count",
            "2",
        ],
        None,
    );
    assert!(export.status.success(), "{}", text(&export.stderr));
    let image = dir.join("shapes").join("00000.png");
    let image = image.to_str().unwrap();
    let ask = train(
        &["ask", image, "what colour is the circle?", "--run", run_s],
        None,
    );
    assert!(ask.status.success(), "{}", text(&ask.stderr));
    assert_eq!(text(&ask.stdout).lines().count(), 1);
    // chat, scripted: three questions, a reset, a bad image (reported, not fatal), /quit
    let script = "what colour is the circle?\nhow many shapes are there?\n/reset\n/image nowhere.png\nis there a red square?\n/quit\nnever asked\n";
    let chat = train(
        &[
            "chat",
            image,
            "--run",
            run_s,
            "--temperature",
            "0.7",
            "--seed",
            "3",
        ],
        Some(script),
    );
    assert!(chat.status.success(), "{}", text(&chat.stderr));
    assert_eq!(
        text(&chat.stdout).lines().count(),
        3,
        "{}",
        text(&chat.stdout)
    );
    assert!(
        text(&chat.stderr).contains("nowhere.png"),
        "{}",
        text(&chat.stderr)
    );
    // what is not a multimodal run is an error naming it
    let wrong = train(&["ask", image, "what?", "--run", out], None);
    assert!(!wrong.status.success());
    assert!(
        text(&wrong.stderr).contains("not a run folder"),
        "{}",
        text(&wrong.stderr)
    );
    // a damaged tokenizer file is named, with its line
    std::fs::write(
        run.join("tokenizer.txt"),
        "bpe-tokenizer 1\nsplit gpt4\nmerges 1\n97 x\nspecials 0\n",
    )
    .unwrap();
    let damaged = train(&["vlm", "--resume", "--out", out, "--name", "m"], None);
    assert!(!damaged.status.success());
    assert!(
        text(&damaged.stderr).contains("tokenizer.txt: line 4: expected two token ids"),
        "{}",
        text(&damaged.stderr)
    );
    std::fs::remove_dir_all(Path::new(&dir)).unwrap();
}

#[test]
fn own_questions_train_with_captions_or_with_another_runs_tower() {
    let dir = std::env::temp_dir().join(format!("train-vlm-own-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (data, questions_only) = (dir.join("data"), dir.join("questions-only"));
    let exported = train(
        &[
            "dataset",
            "export-questions",
            "--out",
            data.to_str().unwrap(),
            "--count",
            "30",
        ],
        None,
    );
    assert!(exported.status.success(), "{}", text(&exported.stderr));
    std::fs::create_dir_all(&questions_only).unwrap();
    for entry in std::fs::read_dir(&data).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().unwrap() != "captions.tsv" {
            std::fs::copy(&path, questions_only.join(path.file_name().unwrap())).unwrap();
        }
    }
    let out = dir.to_str().unwrap();
    // with captions: every stage on the folder
    let with = train(
        &[
            "vlm",
            "--micro",
            "--data",
            data.to_str().unwrap(),
            "--out",
            out,
            "--name",
            "own",
        ],
        None,
    );
    assert!(with.status.success(), "{}", text(&with.stderr));
    assert!(
        text(&with.stdout).contains("validation lines"),
        "{}",
        text(&with.stdout)
    );
    // questions only: refused without a tower, then with one from the first run
    let args = [
        "vlm",
        "--micro",
        "--data",
        questions_only.to_str().unwrap(),
        "--out",
        out,
        "--name",
        "q",
    ];
    let refused = train(&args, None);
    assert!(!refused.status.success());
    assert!(
        text(&refused.stderr).contains("--vision-from"),
        "{}",
        text(&refused.stderr)
    );
    let own_run = dir.join("own");
    let mut with_tower = args.to_vec();
    with_tower.extend(["--vision-from", own_run.to_str().unwrap()]);
    let q = train(&with_tower, None);
    assert!(q.status.success(), "{}", text(&q.stderr));
    assert!(
        text(&q.stderr).contains("no captions.tsv"),
        "{}",
        text(&q.stderr)
    );
    assert!(!dir.join("q").join("1-clip").exists());
    // the run resumes, evaluates and answers from another directory
    let image = data.join("00000.png");
    let ask = Command::new(env!("CARGO_BIN_EXE_train"))
        .args([
            "ask",
            image.to_str().unwrap(),
            "how many shapes are there?",
            "--run",
            dir.join("q").to_str().unwrap(),
        ])
        .current_dir(std::env::temp_dir())
        .output()
        .unwrap();
    assert!(ask.status.success(), "{}", text(&ask.stderr));
    let eval = train(&["eval", dir.join("q").to_str().unwrap()], None);
    assert!(eval.status.success(), "{}", text(&eval.stderr));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn stage_4_takes_its_own_batch_size_and_a_bad_one_is_named() {
    let dir = std::env::temp_dir().join(format!("train-vlm-batch-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let out = dir.to_str().unwrap();
    let quick = [
        "vlm",
        "--micro",
        "--out",
        out,
        "--clip-steps",
        "1",
        "--lm-steps",
        "1",
        "--align-steps",
        "1",
        "--instruct-steps",
        "2",
        "--eval-count",
        "2",
        "--batch-size",
        "4",
    ];
    let ran = train(
        &[&quick[..], &["--name", "b", "--instruct-batch-size", "3"]].concat(),
        None,
    );
    assert!(ran.status.success(), "{}", text(&ran.stderr));
    let recipe: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("b").join("vlm.json")).unwrap())
            .unwrap();
    assert_eq!(recipe["instruct"]["batch_size"], 3);
    for stage in ["clip", "lm", "align"] {
        assert_eq!(recipe[stage]["batch_size"], 4, "{stage}");
    }
    let bad = train(
        &[&quick[..], &["--name", "c", "--instruct-batch-size", "1"]].concat(),
        None,
    );
    assert!(!bad.status.success());
    let stderr = text(&bad.stderr);
    assert!(
        stderr.contains("batch-size") && stderr.contains("4-instruct"),
        "{stderr}"
    );
    assert!(
        !dir.join("c").join("4-instruct").exists(),
        "nothing trained"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
