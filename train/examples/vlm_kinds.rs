//! Each kind of question, run beside run:
//! `cargo run --release -p train --example vlm_kinds -- RUN...` reads the
//! `metrics.json` of each finished multimodal run (`train vlm`, or a run
//! of `train vlm-ablate`) and writes
//! `book/src/generated/multimodal/kinds.md` ([`train::plot::kinds`]).
//!
//! A run folder named `seed-N` is labelled by its parent folder (the
//! ablation's variant) and its seed, so the seeds of one variant form a
//! group; any other folder is a group of its own. Run by
//! `tools/regenerate-figures.sh` after the ablation (it needs trained
//! runs, so CI does not).

use std::path::{Path, PathBuf};
use train::plot::kinds::{RunAnswers, kinds_md};
use train::run::MAX_JSON_BYTES;
use train::vlm_run::{VLM_METRICS_FILE, VlmMetrics};

/// The group and the label of a run folder.
fn names(run: &Path) -> (String, String) {
    let name = |p: &Path| {
        p.file_name().map_or_else(
            || p.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        )
    };
    let own = name(run);
    match (own.strip_prefix("seed-"), run.parent()) {
        (Some(seed), Some(parent)) if !seed.is_empty() && parent.file_name().is_some() => {
            (name(parent), format!("seed {seed}"))
        }
        _ => (own, String::new()),
    }
}

fn read(run: &Path) -> Result<RunAnswers, Box<dyn std::error::Error>> {
    let path = run.join(VLM_METRICS_FILE);
    let bytes = model::read_limited(&path, MAX_JSON_BYTES)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let metrics: VlmMetrics = serde_json::from_slice(&bytes).map_err(|e| {
        format!(
            "{}: not the metrics of a multimodal run: {e}",
            path.display()
        )
    })?;
    let (group, label) = names(run);
    Ok(RunAnswers {
        group,
        label,
        answered: metrics.answered,
    })
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let runs: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    if runs.is_empty() {
        return Err("usage: vlm_kinds RUN... (finished multimodal runs, e.g. \
                    runs/vlm-ablate/runs/baseline/seed-0)"
            .into());
    }
    let answers = runs
        .iter()
        .map(|r| read(r))
        .collect::<Result<Vec<_>, _>>()?;
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("../book/src/generated/multimodal");
    std::fs::create_dir_all(&out)?;
    let file = out.join("kinds.md");
    let tmp = out.join(".kinds.md.tmp");
    std::fs::write(&tmp, kinds_md(&answers))?;
    std::fs::rename(&tmp, &file)?;
    println!("wrote {}", file.display());
    Ok(())
}
