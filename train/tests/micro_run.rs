//! A seeded micro-run: the whole pipeline (dataset, tokenizer, model,
//! losses, AdamW, the loop, checkpoint, evaluation files) on a micro model,
//! checking that training lowers the loss.

use train::run::{self, Progress};
use train::{Encoder, ModelSize, RunConfig};

#[test]
fn a_micro_run_lowers_the_loss_and_writes_its_files() {
    let config = RunConfig {
        steps: 60,
        batch_size: 16,
        lr: 3e-3,
        warmup: 5,
        size: ModelSize::Micro,
        encoder: Encoder::Vit,
        eval_interval: 0,
        checkpoint_interval: 0,
        eval_per_object: 1,
        ..RunConfig::default()
    };
    let dir = std::env::temp_dir().join(format!("train-micro-run-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut state = run::start(&dir, &config).unwrap();
    run::train(&dir, &config, &mut state, config.steps, Progress::Quiet).unwrap();
    let losses: Vec<f32> = state.history.steps.iter().map(|r| r.loss).collect();
    let mean = |xs: &[f32]| xs.iter().sum::<f32>() / xs.len() as f32;
    let (first, last) = (mean(&losses[..5]), mean(&losses[losses.len() - 5..]));
    // the stated margin: the last five steps' mean loss is at least 20 % below the first five's
    assert!(
        last < 0.8 * first,
        "loss went from {first} to {last}: {losses:?}"
    );
    let metrics = run::finish(&dir, &config, &state).unwrap();
    assert_eq!(metrics.steps_done, 60);
    for file in [
        run::METRICS_FILE,
        run::LOSS_PLOT_FILE,
        run::SAMPLES_FILE,
        run::RUN_FILE,
    ] {
        assert!(dir.join(file).is_file(), "{file} missing");
    }
    assert!(
        std::fs::read_to_string(dir.join(run::LOSS_PLOT_FILE))
            .unwrap()
            .contains("<svg")
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
