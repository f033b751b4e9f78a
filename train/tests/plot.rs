//! `train plot` on micro run folders: every figure is written, with the
//! shapes and values it promises, and a folder that is not a run is an
//! error naming what is missing.

use std::path::{Path, PathBuf};
use train::plot::figures::{
    attention_objects, initial_model, similarity_matrix, similarity_objects,
};
use train::plot::{cross_attention_maps, plot_run, vit_cls_maps};
use train::run::{self, Progress};
use train::{Encoder, ModelSize, RunConfig};

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("train-plot-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn micro(encoder: Encoder) -> RunConfig {
    RunConfig {
        steps: 3,
        batch_size: 8,
        warmup: 1,
        size: ModelSize::Micro,
        encoder,
        eval_interval: 0,
        checkpoint_interval: 0,
        eval_per_object: 1,
        ..RunConfig::default()
    }
}

/// A finished micro run; returns its folder and the state it started from.
fn micro_run(dir: &Path, encoder: Encoder) -> model::Model {
    let config = micro(encoder);
    let mut state = run::start(dir, &config).unwrap();
    let initial = state.model.clone();
    run::train(dir, &config, &mut state, config.steps, Progress::Quiet).unwrap();
    run::finish(dir, &config, &state).unwrap();
    initial
}

fn png_size(path: &Path) -> (u32, u32) {
    image::image_dimensions(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn plots_every_figure_of_a_cnn_run_and_skips_the_vit_one() {
    let dir = tmp("cnn");
    let initial = micro_run(&dir, Encoder::Cnn);
    let (config, state) = run::open(&dir).unwrap();
    // the start of the run is re-created exactly from its seed
    assert_eq!(initial_model(&config, &state.model).unwrap(), initial);
    assert_ne!(initial, state.model);

    let report = plot_run(&dir, None).unwrap();
    let out = dir.join("figures");
    for svg in [
        "loss.svg",
        "similarity_start.svg",
        "similarity_end.svg",
        "embeddings_pca.svg",
        "embeddings_captions.svg",
        "token_similarity.svg",
    ] {
        let text = std::fs::read_to_string(out.join(svg)).unwrap();
        assert!(
            text.starts_with("<svg") && text.ends_with("</svg>\n"),
            "{svg}"
        );
    }
    // the gallery: one seen image per shape of the world, a held-out one, and
    // up to two held-out images captioned wrongly (an untrained micro model
    // gets them all wrong)
    let shapes = config.world.shapes().len();
    let pictures = shapes + 1 + 2;
    let depth = state.model.decoder.blocks.len() as u32;
    for k in 0..pictures {
        // rows: one per decoder block, tiles of 32·4 px with 4 px gaps
        let (w, h) = png_size(&out.join(format!("cross_attention/{k}.png")));
        assert_eq!(h, 4 + depth * (128 + 4));
        assert_eq!((w - 4) % 132, 0, "whole tiles");
        assert!(w >= 2 * 132 + 4, "the image and at least one word");
    }
    assert!(!out.join(format!("cross_attention/{pictures}.png")).exists());
    let words = std::fs::read_to_string(out.join("cross_attention/words.md")).unwrap();
    assert_eq!(words.matches("cross_attention/").count(), pictures);
    assert!(words.contains("(held out)") && words.contains("(wrong)"));
    let gallery = std::fs::read_to_string(out.join("cross_attention/gallery.md")).unwrap();
    assert_eq!(
        gallery.matches("src=\"../cross_attention/").count(),
        pictures
    );
    assert_eq!(
        gallery.matches(".** held out, captioned wrongly:").count(),
        2
    );
    let focus = std::fs::read_to_string(out.join("cross_attention/focus.md")).unwrap();
    assert!(
        focus.contains("a colour word") && focus.contains("block 1"),
        "{focus}"
    );
    let neighbours = std::fs::read_to_string(out.join("token_neighbours.md")).unwrap();
    for word in ["`red`", "`circle`", "`big`", "`left`"] {
        assert!(neighbours.contains(word), "{word} in {neighbours}");
    }
    let contextual = std::fs::read_to_string(out.join("contextual.md")).unwrap();
    assert_eq!(
        contextual.matches("in the top left").count(),
        4,
        "{contextual}"
    );
    assert!(!out.join("vit_cls_attention.png").exists());
    assert_eq!(report.skipped.len(), 1);
    assert!(report.skipped[0].contains("CNN"), "{report}");
    // 6 SVGs, the pictures, words.md, gallery.md, focus.md, token_neighbours.md, contextual.md
    assert_eq!(report.written.len(), 6 + pictures + 5);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn plots_a_vit_run_with_its_cls_attention_into_another_folder() {
    let dir = tmp("vit");
    micro_run(&dir, Encoder::Vit);
    let out = tmp("vit-out");
    let report = plot_run(&dir, Some(&out)).unwrap();
    assert!(report.skipped.is_empty(), "{report}");
    let (_, state) = run::open(&dir).unwrap();
    // rows: 4 images; columns: the image and one map per block
    let blocks = match &state.model.image {
        model::ImageEncoder::Vit(vit) => vit.blocks.len() as u32,
        _ => unreachable!("a ViT run"),
    };
    assert_eq!(
        png_size(&out.join("vit_cls_attention.png")),
        (4 + (1 + blocks) * 132, 4 + 4 * 132)
    );
    assert!(out.join("cross_attention/3.png").is_file());
    assert!(!dir.join("figures").exists());
    for d in [dir, out] {
        std::fs::remove_dir_all(d).unwrap();
    }
}

#[test]
fn attention_maps_are_distributions_over_the_image_grid() {
    let config = micro(Encoder::Vit);
    let dir = tmp("maps");
    let state = run::start(&dir, &config).unwrap();
    let model = &state.model;
    let images = config
        .data()
        .eval_images(&attention_objects(&config.world), 1, 0); // [4, 3, 32, 32]
    // cross-attention: rows over the 16 patches (the CLS token left out) sum to at most 1
    let caption = [0u32, 1, 2];
    let maps = cross_attention_maps(
        model,
        &images.slice(ndarray::s![0..1, .., .., ..]).to_owned(),
        &caption,
    )
    .unwrap();
    assert_eq!(maps.len(), model.decoder.blocks.len());
    for layer in &maps {
        assert_eq!(layer.len(), caption.len());
        for m in layer {
            assert_eq!(m.dim(), (4, 4)); // 32 px in 8 px patches
            assert!(m.iter().all(|&a| a >= 0.0));
            let sum = m.sum();
            assert!(sum > 0.0 && sum <= 1.0 + 1e-5, "{sum}");
        }
    }
    // the same for the CLS token's attention, one map per block and image
    let cls = vit_cls_maps(model, &images).unwrap();
    assert_eq!(cls.len(), 4);
    for m in cls.iter().flatten() {
        assert_eq!(m.dim(), (4, 4));
        assert!(m.sum() > 0.0 && m.sum() <= 1.0 + 1e-5);
    }
    // a CNN has no CLS token
    let cnn = run::start(&tmp("maps-cnn"), &micro(Encoder::Cnn)).unwrap();
    assert!(vit_cls_maps(&cnn.model, &images).is_none());
    // and its cross-attention covers all 64 tokens of its 8×8 map: each row sums to 1
    let maps = cross_attention_maps(
        &cnn.model,
        &images.slice(ndarray::s![0..1, .., .., ..]).to_owned(),
        &caption,
    )
    .unwrap();
    for m in maps.iter().flatten() {
        assert_eq!(m.dim(), (8, 8));
        assert!((m.sum() - 1.0).abs() < 1e-5);
    }
    // cosine similarities lie in [−1, 1]
    let sims = similarity_matrix(
        model,
        &state.tokenizer,
        &config.data(),
        &similarity_objects(&config.world),
    );
    assert_eq!(sims.dim(), (16, 16));
    assert!(
        sims.iter()
            .all(|&s| (-1.0 - 1e-5..=1.0 + 1e-5).contains(&s))
    );
    for d in [dir, tmp("maps-cnn")] {
        let _ = std::fs::remove_dir_all(d);
    }
}

#[test]
fn a_folder_that_is_not_a_run_is_an_error_naming_it() {
    let missing = tmp("missing");
    let e = plot_run(&missing, None).unwrap_err().to_string();
    assert!(
        e.contains("no such run folder") && e.contains("train-plot"),
        "{e}"
    );
    // a folder without run.json
    let empty = tmp("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let e = plot_run(&empty, None).unwrap_err().to_string();
    assert!(e.contains("run.json"), "{e}");
    // a run whose metrics.json is damaged
    let dir = tmp("damaged");
    micro_run(&dir, Encoder::Cnn);
    std::fs::write(dir.join(run::METRICS_FILE), b"{ nope").unwrap();
    let e = plot_run(&dir, None).unwrap_err().to_string();
    assert!(e.contains("metrics.json"), "{e}");
    for d in [empty, dir] {
        std::fs::remove_dir_all(d).unwrap();
    }
}

#[test]
fn the_plot_command_exits_with_1_naming_a_folder_that_is_not_a_run() {
    let missing = tmp("cli-missing");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_train"))
        .arg("plot")
        .arg(&missing)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("error:")
            && stderr.contains("train-plot")
            && stderr.contains("cli-missing"),
        "{stderr}"
    );
}

#[test]
fn an_unfinished_run_is_plotted_from_its_checkpoint_history() {
    let dir = tmp("unfinished");
    let config = micro(Encoder::Cnn);
    let mut state = run::start(&dir, &config).unwrap();
    run::train(&dir, &config, &mut state, config.steps, Progress::Quiet).unwrap();
    assert!(!dir.join(run::METRICS_FILE).exists());
    plot_run(&dir, None).unwrap();
    let svg = std::fs::read_to_string(dir.join("figures/loss.svg")).unwrap();
    assert_eq!(state.history.steps.len(), 3);
    assert_eq!(svg, train::plot::loss_svg(&state.history.steps));
    std::fs::remove_dir_all(dir).unwrap();
}
