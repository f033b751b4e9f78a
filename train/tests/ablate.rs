//! The ablation command and the failure cases on micro runs of 2 steps:
//! every variant's run folder, the table and the JSON, reuse of finished
//! variants, and the failure table with its images.

use std::path::PathBuf;
use train::ablate::{self, AblationResult, Variant};
use train::failures::{self, FAILURES_DIR, FAILURES_FILE};
use train::run::{self, Progress};
use train::{Encoder, ModelSize, RunConfig};

fn micro() -> RunConfig {
    RunConfig {
        steps: 2,
        batch_size: 8,
        warmup: 0,
        size: ModelSize::Micro,
        eval_interval: 0,
        checkpoint_interval: 0,
        eval_per_object: 1,
        ..RunConfig::default()
    }
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("train-ablate-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[test]
fn ablate_runs_every_variant_and_writes_the_table() {
    let out = tmp("all");
    let results = ablate::ablate(&out, &micro(), &[0, 1], Progress::Quiet).unwrap();
    let variants: Vec<(Variant, u64)> = results.iter().map(|r| (r.variant, r.seed)).collect();
    let want: Vec<(Variant, u64)> = Variant::ALL
        .iter()
        .flat_map(|&v| [(v, 0), (v, 1)])
        .collect();
    assert_eq!(variants, want);
    for r in &results {
        let dir = out
            .join(ablate::RUNS_DIR)
            .join(r.variant.name())
            .join(format!("seed-{}", r.seed));
        assert_eq!(r.run, dir);
        assert_eq!(r.config.seed, r.seed);
        assert!(dir.join(run::METRICS_FILE).is_file(), "{}", dir.display());
        assert_eq!(r.eval.held_out.images, 60);
        assert!(r.final_loss.is_finite());
    }
    let by = |v: Variant| results.iter().find(|r| r.variant == v).unwrap();
    assert_eq!(by(Variant::Vit).config.encoder, Encoder::Vit);
    assert_eq!(by(Variant::Both).config.encoder, Encoder::Cnn);
    assert_eq!(by(Variant::Contrastive).config.caption_weight, 0.0);
    assert_eq!(by(Variant::Caption).config.contrastive_weight, 0.0);
    assert_ne!(
        by(Variant::Vit).parameters,
        by(Variant::Both).parameters,
        "the towers differ"
    );

    let md = std::fs::read_to_string(out.join(ablate::TABLE_FILE)).unwrap();
    for v in Variant::ALL {
        assert!(md.contains(&format!("| {} |", v.describe())), "{md}");
    }
    // the cells a switched-off loss cannot have trained are marked
    // (zero-shot and R@1 of both captioning-only variants, captions of the
    // contrastive one; and its four attributes in each attribute table)
    assert_eq!(md.matches(" †").count(), 3 + 3 + 2 + 4 + 4, "{md}");
    assert!(md.contains("The same, held-out combinations"), "{md}");
    assert!(md.contains("| shape | colour | size | position |"), "{md}");
    assert!(md.contains("seeds 0, 1"), "{md}");
    // the same figures one by one, as anchors a chapter includes in a sentence
    let txt = std::fs::read_to_string(out.join(ablate::FIGURES_FILE)).unwrap();
    assert_eq!(
        txt.matches("ANCHOR: ").count(),
        13 * Variant::ALL.len(),
        "{txt}"
    );
    let both: Vec<f32> = results
        .iter()
        .filter(|r| r.variant == Variant::Both)
        .map(|r| r.eval.seen.zero_shot.exact)
        .collect();
    let (lo, hi) = (100.0 * both[0].min(both[1]), 100.0 * both[0].max(both[1]));
    let want = format!(
        "ANCHOR: both_zero_shot_seen\n{:.1} % ({lo:.1}–{hi:.1})\nANCHOR_END: both_zero_shot_seen\n",
        100.0 * ((both[0] + both[1]) / 2.0)
    );
    assert!(txt.contains(&want), "{want}\n{txt}");
    assert!(txt.contains("ANCHOR: caption_long_position\n"), "{txt}");
    assert!(txt.contains("ANCHOR: vit_held_out_shape\n"), "{txt}");
    // two seeds give different runs of the same variant
    assert_ne!(results[0].final_loss, results[1].final_loss);
    let json: Vec<AblationResult> =
        serde_json::from_str(&std::fs::read_to_string(out.join(ablate::JSON_FILE)).unwrap())
            .unwrap();
    // JSON keeps f64 seconds to about 15 digits only: compare them apart
    let without_seconds = |rs: &[AblationResult]| {
        rs.iter()
            .map(|r| AblationResult {
                train_seconds: 0.0,
                ..r.clone()
            })
            .collect::<Vec<_>>()
    };
    let close = |a: &[AblationResult], b: &[AblationResult]| {
        assert_eq!(without_seconds(a), without_seconds(b));
        for (x, y) in a.iter().zip(b) {
            assert!((x.train_seconds - y.train_seconds).abs() < 1e-9);
        }
    };
    close(&json, &results);

    // a second call reuses the finished variants: same figures, same seconds
    let again = ablate::ablate(&out, &micro(), &[0, 1], Progress::Quiet).unwrap();
    close(&again, &results);

    // the failure cases of one variant: an untrained decoder gets most wrong
    let fail_out = out.join("fail");
    let files = failures::write_failures(&results[0].run, &fail_out, "x/", 5).unwrap();
    assert_eq!(files.images, 60);
    assert!(files.failures >= 5, "{files:?}");
    assert_eq!(files.shown, 5);
    let md = std::fs::read_to_string(fail_out.join(FAILURES_FILE)).unwrap();
    assert!(md.contains("| image | true caption |"), "{md}");
    assert!(md.contains("src=\"x/failures/failure-05.png\""), "{md}");
    for n in 1..=5 {
        let png = fail_out
            .join(FAILURES_DIR)
            .join(format!("failure-{n:02}.png"));
        let img = image::open(&png).unwrap();
        assert_eq!((img.width(), img.height()), (128, 128));
    }
    // fewer shown on a second call: the stale images go
    failures::write_failures(&results[0].run, &fail_out, "", 2).unwrap();
    assert!(!fail_out.join(FAILURES_DIR).join("failure-03.png").exists());
    std::fs::remove_dir_all(out).unwrap();
}

#[test]
fn a_folder_holding_another_run_is_an_error() {
    let out = tmp("other");
    let dir = out
        .join(ablate::RUNS_DIR)
        .join(Variant::Contrastive.name())
        .join("seed-0");
    let other = RunConfig {
        steps: 1,
        ..micro()
    };
    let mut state = run::start(&dir, &other).unwrap();
    run::train(&dir, &other, &mut state, 1, Progress::Quiet).unwrap();
    let e = ablate::ablate(&out, &micro(), &[0], Progress::Quiet)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("contrastive") && e.contains("already holds"),
        "{e}"
    );
    std::fs::remove_dir_all(out).unwrap();
}

#[test]
fn failures_of_a_folder_that_is_not_a_run_name_it() {
    let out = tmp("notrun");
    std::fs::create_dir_all(&out).unwrap();
    let e = failures::write_failures(&out, &out, "", 3)
        .unwrap_err()
        .to_string();
    assert!(e.contains("run.json"), "{e}");
    let missing = out.join("missing");
    let e = failures::write_failures(&missing, &out, "", 3)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("missing") && e.contains("no such run folder"),
        "{e}"
    );
    std::fs::remove_dir_all(out).unwrap();
}

#[test]
fn the_commands_exit_with_1_and_name_what_is_wrong() {
    let out = tmp("cli");
    let missing = out.join("no-such-run");
    let run = |args: &[&std::ffi::OsStr]| {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_train"))
            .args(args)
            .output()
            .unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let (code, err) = run(&["failures".as_ref(), missing.as_os_str()]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("no-such-run"), "{err}");
    let (code, err) = run(&[
        "ablate".as_ref(),
        "--steps".as_ref(),
        "0".as_ref(),
        "--out".as_ref(),
        out.as_os_str(),
    ]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("steps"), "{err}");
    assert!(!out.join(ablate::RUNS_DIR).exists(), "nothing trained");
}
