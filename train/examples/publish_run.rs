//! Copies the results of a finished run into the book:
//! `cargo run --release -p train --example publish_run [runs/default [runs/small-world]]`
//! writes `book/src/generated/train/{results.md, samples.md}` from the
//! run's `metrics.json` and `samples.md`, so the chapter
//! shows the figures the run measured, not typed-in numbers. Given a second
//! run (the same recipe in a smaller world), it also writes `worlds.md`,
//! the two runs side by side.
//!
//! It needs a finished run, so it is not part of `tools/book-outputs.sh`.

use std::path::{Path, PathBuf};
use train::run::{METRICS_FILE, Metrics, SAMPLES_FILE};

fn read_metrics(run: &Path) -> Result<Metrics, Box<dyn std::error::Error>> {
    let path = run.join(METRICS_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let metrics: Metrics =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    metrics
        .config
        .validate()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(metrics)
}

/// `6 shapes × 8 colours (42 seen pairs, 6 held out)`
fn world(m: &Metrics) -> String {
    let w = m.config.world;
    format!(
        "{} shapes × {} colours ({} seen pairs, {} held out)",
        w.shapes,
        w.colours,
        w.seen_pairs().len(),
        w.held_out().len()
    )
}

/// The runs side by side: the same recipe in worlds of different sizes.
fn worlds_table(runs: &[(PathBuf, Metrics)]) -> String {
    let mut md = String::from(
        "| world | run | zero-shot exact, seen / held-out | caption exact, seen / held-out | caption shape, held-out |\n\
         | --- | --- | ---: | ---: | ---: |\n",
    );
    let pct = |v: f32| format!("{:.1}%", 100.0 * v);
    for (dir, m) in runs {
        let (s, h) = (&m.final_eval.seen, &m.final_eval.held_out);
        md += &format!(
            "| {} | `{}` | {} / {} | {} / {} | {} |\n",
            world(m),
            dir.display(),
            pct(s.zero_shot.exact),
            pct(h.zero_shot.exact),
            pct(s.caption.exact),
            pct(h.caption.exact),
            pct(h.caption.shape),
        );
    }
    md
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let run = PathBuf::from(std::env::args().nth(1).unwrap_or("runs/default".into()));
    let small = std::env::args().nth(2).map(PathBuf::from);
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("../book/src/generated/train");
    std::fs::create_dir_all(&out)?;
    let read = |file: &str| {
        std::fs::read_to_string(run.join(file))
            .map_err(|e| format!("{}: {e}", run.join(file).display()))
    };
    let metrics = read_metrics(&run)?;
    let c = &metrics.config;
    let first = metrics.history.steps.first().map_or(f32::NAN, |r| r.loss);
    let last = metrics.history.steps.last().map_or(f32::NAN, |r| r.loss);
    let mut md = format!(
        "Run: `cargo run --release -p train` — a world of {}, {} image tower, {} parameters, {} steps of {} images, \
         peak learning rate {} ({} warmup steps, cosine to {}), loss weights contrastive {} / caption {}, seed {}. \
         Training, with its periodic evaluations and checkpoints, took {:.0} s on the machine that measured it; the loss went from {:.3} to {:.3}.\n\n",
        world(&metrics),
        format!("{:?}", c.encoder).to_lowercase(),
        metrics.parameters,
        metrics.steps_done,
        c.batch_size,
        c.lr,
        c.warmup,
        c.min_lr,
        c.contrastive_weight,
        c.caption_weight,
        c.seed,
        metrics.train_seconds,
        first,
        last,
    );
    md += &metrics.final_eval.table();
    if !metrics.history.evals.is_empty() {
        md += "\nDuring training (one image per object):\n\n| step | zero-shot seen | zero-shot held-out | caption exact seen | caption exact held-out |\n| ---: | ---: | ---: | ---: | ---: |\n";
        for e in &metrics.history.evals {
            let r = &e.report;
            md += &format!(
                "| {} | {:.1}% | {:.1}% | {:.1}% | {:.1}% |\n",
                e.step,
                100.0 * r.seen.zero_shot.exact,
                100.0 * r.held_out.zero_shot.exact,
                100.0 * r.seen.caption.exact,
                100.0 * r.held_out.caption.exact
            );
        }
    }
    std::fs::write(out.join("results.md"), md)?;
    std::fs::write(out.join("samples.md"), read(SAMPLES_FILE)?)?;
    if let Some(small) = small {
        let small_metrics = read_metrics(&small)?;
        let table = worlds_table(&[(run.clone(), metrics), (small, small_metrics)]);
        std::fs::write(out.join("worlds.md"), table)?;
    }
    println!("wrote {}", out.display());
    Ok(())
}
