//! The numbers and names the book quotes from the code: defaults, sizes and
//! counts, each computed from the code that holds it, so a sentence of the
//! book cannot drift from main.
//!
//! `cargo run --release -p train --example facts` writes
//! `book/src/generated/facts.txt`: one anchor per value, which a chapter
//! includes inline, e.g. "each image is `{{#include generated/facts.txt:image_size}}`
//! pixels wide" (without the backticks). Part of `tools/book-outputs.sh`, so CI
//! fails when a default changes and the file was not regenerated.
//!
//! Deterministic and quick: it trains the default run's tokenizer (to count
//! the vocabulary and the parameters) but nothing else.

use embedding::Params;
use model::{ImageConfig, ModelConfig};
use std::path::Path;
use train::data::{Colour, HELD_OUT, Position, Shape, Size, World};
use train::data::{folder::VALIDATION_EVERY, toy};
use train::run::{Encoder, RunConfig};

/// Collects `(name, value)` pairs in order.
#[derive(Default)]
struct Facts(Vec<(String, String)>);

impl Facts {
    fn add(&mut self, name: &str, value: impl ToString) {
        let value = value.to_string();
        assert!(
            !value.contains('\n') && !value.is_empty(),
            "fact {name}: one non-empty line"
        );
        assert!(
            self.0.iter().all(|(n, _)| n != name),
            "fact {name} given twice"
        );
        self.0.push((name.to_string(), value));
    }

    fn text(&self) -> String {
        let mut text = String::from(
            "Values the book quotes from the code, one anchor each, included inline\n\
             by the chapters. Written by `cargo run --release -p train --example facts`;\n\
             do not edit by hand.\n",
        );
        for (name, value) in &self.0 {
            text += &train::ablate::anchored(name, value);
        }
        text
    }
}

/// `a, b and c`
fn words(list: &[&str]) -> String {
    match list {
        [] => String::new(),
        [one] => one.to_string(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// `f32` as written in the book: no trailing zeros (`0.002`, `1`, `14.3`).
fn num(v: f64, decimals: usize) -> String {
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut f = Facts::default();
    let run = RunConfig::default();
    let tokenizer = run.data().train_tokenizer()?;
    let model = run.model_config(&tokenizer)?;

    // ---- the default run's recipe (train::run::RunConfig::default)
    f.add("steps", run.steps);
    f.add("batch_size", run.batch_size);
    f.add("ln_batch", num((run.batch_size as f64).ln(), 2));
    f.add("lr", num(run.lr as f64, 6));
    f.add("min_lr", num(run.min_lr as f64, 6));
    f.add("warmup", run.warmup);
    f.add("seed", run.seed);
    f.add("contrastive_weight", num(run.contrastive_weight as f64, 3));
    f.add("caption_weight", num(run.caption_weight as f64, 3));
    f.add("eval_interval", run.eval_interval);
    f.add("eval_per_object", run.eval_per_object);
    f.add(
        "encoder",
        match run.encoder {
            Encoder::Cnn => "CNN",
            Encoder::Vit => "ViT",
        },
    );

    // ---- the toy world (train::data)
    let world = run.world;
    let shapes: Vec<&str> = world.shapes().iter().map(|s| s.word()).collect();
    let colours: Vec<&str> = world.colours().iter().map(|c| c.word()).collect();
    let positions: Vec<&str> = Position::ALL.iter().map(|p| p.words()).collect();
    let sizes: Vec<&str> = Size::ALL.iter().map(|s| s.word()).collect();
    f.add("shapes", Shape::ALL.len());
    f.add("shape_list", words(&shapes));
    f.add("colours", Colour::ALL.len());
    f.add("colour_list", words(&colours));
    f.add("size_list", words(&sizes));
    f.add("positions", Position::ALL.len());
    f.add("position_list", words(&positions));
    f.add("jitter", num(toy::JITTER as f64, 1));
    f.add("toy_image_size", toy::IMAGE_SIZE);
    f.add("pairs", world.shapes().len() * world.colours().len());
    f.add("seen_pairs", world.seen_pairs().len());
    f.add("held_out_pairs", world.held_out().len());
    f.add("held_out_all", HELD_OUT.len());
    f.add("captions", world.objects().len());
    f.add("seen_captions", world.training_objects().len());
    f.add("held_out_captions", world.held_out_objects().len());
    f.add(
        "seen_eval_images",
        world.training_objects().len() * run.eval_per_object,
    );
    f.add(
        "held_out_eval_images",
        world.held_out_objects().len() * run.eval_per_object,
    );
    let small = World::SMALL;
    f.add("small_shapes", small.shapes);
    f.add("small_colours", small.colours);
    f.add("small_seen_pairs", small.seen_pairs().len());
    f.add("small_held_out_pairs", small.held_out().len());
    f.add("validation_every", VALIDATION_EVERY);
    f.add("own_eval_train", train::commands::own::MAX_EVAL_TRAIN);
    f.add("max_caption_tokens", run.max_caption_tokens);

    // ---- the model (model::ModelConfig::tiny with the run's tokenizer)
    f.add("vocab", model.vocab);
    f.add(
        "merges",
        tokenizer.vocab_size() - 256 - tokenizer.special_tokens().len(),
    );
    f.add("max_len", model.max_len);
    f.add("width", model.text.width);
    f.add("depth", model.text.depth);
    f.add("heads", model.text.n_head);
    f.add("head_dim", model.text.width / model.text.n_head);
    f.add("mlp_hidden", model.text.mlp_hidden);
    f.add("decoder_depth", model.decoder.depth);
    f.add("embed_dim", model.embed_dim);
    f.add(
        "tau_init",
        num(1.0 / (model.logit_scale_init as f64).exp(), 3),
    );
    f.add("s_init", num((model.logit_scale_init as f64).exp(), 1));
    f.add("s_max", num((model.logit_scale_max as f64).exp(), 1));
    f.add("image_size", model.image.image_size());
    f.add("image_channels", model.image.in_channels());
    let side = model.image.image_size();
    f.add("image_pixels", side * side);
    f.add("image_inputs", model.image.in_channels() * side * side);
    let cnn_model = model.clone().init_params()?;
    f.add("params_cnn", cnn_model);
    let vit = ModelConfig {
        image: ImageConfig::tiny_vit(),
        ..model.clone()
    };
    f.add("params_vit", vit.clone().init_params()?);
    let ImageConfig::Cnn { cnn, image_size } = ImageConfig::tiny_cnn() else {
        unreachable!("tiny_cnn is a CNN")
    };
    let channels: Vec<String> = std::iter::once(cnn.in_channels)
        .chain(cnn.channels.iter().copied())
        .map(|c| c.to_string())
        .collect();
    f.add("cnn_channels", channels.join(" → "));
    f.add("cnn_kernel", cnn.kernel);
    f.add("cnn_pool", cnn.pool);
    f.add("cnn_blocks", cnn.channels.len());
    let grid = image_size / cnn.pool.pow(cnn.channels.len() as u32);
    f.add("cnn_grid", grid);
    f.add("cnn_tokens", ImageConfig::tiny_cnn().num_tokens());
    f.add("cnn_width", ImageConfig::tiny_cnn().width());
    f.add("cnn_c1", cnn.channels[0]);
    // receptive field r and jump j: a layer of kernel k, stride s gives
    // r ← r + (k − 1)·j, j ← j·s ("same" 3×3 convolutions, stride-`pool` pooling)
    let (mut r, mut j) = (1, 1);
    for _ in &cnn.channels {
        r += (cnn.kernel - 1) * j;
        r += (cnn.pool - 1) * j;
        j *= cnn.pool;
    }
    f.add("cnn_receptive_field", r);
    f.add("cnn_cell", image_size / grid);
    let ImageConfig::Vit(v) = ImageConfig::tiny_vit() else {
        unreachable!("tiny_vit is a ViT")
    };
    f.add("vit_patch", v.patch);
    f.add("vit_patches", v.num_patches());
    f.add("vit_tokens", v.num_patches() + 1);
    f.add("vit_patch_numbers", v.in_channels * v.patch * v.patch);
    f.add("vit_grid", v.image_size / v.patch);
    f.add("vit_depth", v.depth);

    // ---- the micro model of the whole-model gradient check
    let micro = ModelConfig::micro(32);
    let ImageConfig::Vit(mv) = &micro.image else {
        unreachable!("micro is a ViT")
    };
    f.add("micro_image_size", mv.image_size);
    f.add("micro_max_len", micro.max_len);
    let widths = [micro.text.width, mv.block.width, micro.decoder.width];
    f.add(
        "micro_widths",
        format!(
            "{} to {}",
            widths.iter().min().unwrap_or(&0),
            widths.iter().max().unwrap_or(&0)
        ),
    );

    // ---- the multimodal recipe's batches: how much of a batch is
    // conversation and how much padding, whole and in length groups
    let vlm_run = train::vlm_run::VlmRunConfig::default();
    let vlm_tokenizer = vlm_run
        .qa_data()
        .train_tokenizer(vlm_run.tokenizer_captions)?;
    let tokens = vlm_run.vlm_config(&vlm_tokenizer)?.tokens;
    let data = train::vlm_run::Generated { config: &vlm_run };
    let fill = |stage: train::vlm_run::Stage, first: u64, group: usize| {
        let (mut real, mut computed) = (0, 0);
        for step in first..first + 50 {
            let batch =
                train::vlm_run::VlmData::chat_batch(&data, stage, step, &vlm_tokenizer, &tokens);
            let rows = train::vlm_step::length_groups(&batch.weights, 1);
            real += rows.iter().map(|(_, len)| len).sum::<usize>();
            computed += train::vlm_step::length_groups(&batch.weights, group)
                .iter()
                .map(|(rows, len)| rows.len() * len)
                .sum::<usize>();
        }
        (100.0 * real as f64 / computed as f64).round()
    };
    let group = train::vlm_step::LENGTH_GROUP;
    let lm = train::vlm_run::Stage::Lm;
    let instruct = train::vlm_run::Stage::Instruct;
    let after_curriculum = vlm_run.instruct.curriculum as u64;
    f.add("vlm_length_group", group);
    f.add("vlm_lm_batch", vlm_run.lm.batch_size);
    f.add("vlm_instruct_batch", vlm_run.instruct.batch_size);
    f.add("vlm_batch_fill", fill(lm, 0, usize::MAX));
    f.add("vlm_group_fill", fill(lm, 0, group));
    f.add("vlm_instruct_fill", fill(instruct, after_curriculum, group));

    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("../book/src/generated/facts.txt");
    model::write_atomic(&out, f.text().as_bytes())?;
    println!("wrote book/src/generated/facts.txt ({} values)", f.0.len());
    Ok(())
}

/// `config.init(..).num_params()` without keeping the model.
trait InitParams {
    fn init_params(self) -> Result<usize, model::ConfigError>;
}

impl InitParams for ModelConfig {
    fn init_params(self) -> Result<usize, model::ConfigError> {
        use rand::SeedableRng;
        let model = self.init(&mut rand::rngs::StdRng::seed_from_u64(0))?;
        Ok(model.num_params())
    }
}
