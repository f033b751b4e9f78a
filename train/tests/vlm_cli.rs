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
    std::fs::remove_dir_all(Path::new(&dir)).unwrap();
}
