//! One function per loader of a file a user can hand the program. Each
//! takes any bytes, runs the loader the way the program does, and checks
//! what a successful load promises (a round trip, finite values, a model
//! that builds). None may panic. [`TARGETS`] lists them with the memory
//! one input may take; the fuzz binaries (`tools/fuzz`, through
//! `fuzz_loaders::check`) and the corpus replay in `cargo test`
//! (`train/tests/fuzz_corpus.rs`) both hold them to it, counting every
//! allocation with `train::memory::Counting`.
//!
//! This file is compiled twice: in the fuzz crate, and included by the
//! replay test. It uses nothing but the workspace's crates and serde_json.

use std::path::Path;
use std::sync::OnceLock;

use model::ModelConfig;
use rand::SeedableRng;

/// A target: its name (the folder of its corpus), its function, and the
/// most memory (MiB) one input may make it use.
pub type Target = (&'static str, fn(&[u8]), u64);

/// Every target. Text loaders read at most a few tens of MiB and must stay
/// near the size of their input; the image decoder may allocate up to
/// [`vision::MAX_DECODE_BYTES`] (256 MiB) for a picture that claims to be
/// large, plus its conversion to 8-bit RGB.
pub const TARGETS: &[Target] = &[
    ("safetensors", safetensors, 64),
    ("weights", weights, 64),
    ("model_config", model_config, 64),
    ("vlm_config", vlm_config, 64),
    ("tokenizer_file", tokenizer_file, 64),
    ("tiktoken", tiktoken, 64),
    ("run_json", run_json, 64),
    ("history_json", history_json, 64),
    ("optimizer_state", optimizer_state, 64),
    ("captions_tsv", captions_tsv, 64),
    ("questions_tsv", questions_tsv, 64),
    ("image", image, 512),
];

fn text(data: &[u8]) -> Option<&str> {
    std::str::from_utf8(data).ok() // the loaders read UTF-8 files; others are errors before parsing
}

/// The micro model every weights target loads into (12 437 parameters).
fn micro() -> &'static model::Model {
    static MODEL: OnceLock<model::Model> = OnceLock::new();
    MODEL.get_or_init(|| {
        ModelConfig::micro(40)
            .init(&mut rand::rngs::StdRng::seed_from_u64(0))
            .expect("the micro config is valid")
    })
}

/// `model.safetensors` and every other tensor file: parsed, then written
/// and parsed again to the same tensors.
pub fn safetensors(data: &[u8]) {
    let Ok(file) = model::safetensors::from_bytes(data) else {
        return;
    };
    let views: Vec<_> = file
        .tensors
        .iter()
        .map(|(name, t)| (name.clone(), t.view()))
        .collect();
    let again =
        model::safetensors::from_bytes(&model::safetensors::to_bytes(&views, &file.metadata))
            .expect("what was written is read back");
    assert_eq!(again.metadata, file.metadata);
    assert_eq!(again.tensors.len(), file.tensors.len());
}

/// Weights loaded into a model: a success leaves only finite values.
pub fn weights(data: &[u8]) {
    let mut model = micro().clone();
    if model::load_weights_from_bytes(data, Path::new("model.safetensors"), &mut model).is_ok() {
        use embedding::Params;
        assert!(
            model
                .params()
                .iter()
                .all(|(_, t)| t.iter().all(|v| v.is_finite()))
        );
    }
}

/// `config.txt` of the CLIP-style model: parsed, validated, counted; a
/// valid config of up to 200 000 parameters is built and has exactly the
/// counted parameters, and its text parses back to itself.
pub fn model_config(data: &[u8]) {
    let Some(text) = text(data) else { return };
    let Ok(config) = model::config_from_text(text) else {
        return;
    };
    assert_eq!(
        model::config_from_text(&model::config_to_text(&config)).as_ref(),
        Ok(&config)
    );
    if config.validate().is_err() {
        return;
    }
    let Some(params) = model::checkpoint::parameter_count(&config) else {
        return;
    };
    if params <= 200_000 {
        let model = config
            .init(&mut rand::rngs::StdRng::seed_from_u64(0))
            .expect("a validated config builds");
        assert_eq!(embedding::Params::num_params(&model) as u64, params);
    }
}

/// `config.txt` of the multimodal and the text-only language model.
pub fn vlm_config(data: &[u8]) {
    let Some(text) = text(data) else { return };
    if let Ok(config) = model::vlm_checkpoint::vlm_config_from_text(text)
        && config.validate().is_ok()
    {
        let _ = model::vlm_checkpoint::vlm_parameter_count(&config);
    }
    if let Ok((lm, _)) = model::vlm_checkpoint::lm_config_from_text(text)
        && model::vlm::validate_lm(&lm).is_ok()
    {
        let _ = model::vlm_checkpoint::lm_parameter_count(&lm);
    }
}

/// `tokenizer.txt`: a loaded tokenizer encodes and decodes a text back,
/// and writes itself out as the same tokenizer.
pub fn tokenizer_file(data: &[u8]) {
    let Some(text) = text(data) else { return };
    let Ok(tok) = tokenizer::Tokenizer::from_text(text) else {
        return;
    };
    round_trip(&tok);
    let again = tokenizer::Tokenizer::from_text(&tok.to_text()).expect("a saved tokenizer loads");
    assert_eq!(again, tok);
}

/// A tiktoken rank file (`base64(bytes) rank` a line).
pub fn tiktoken(data: &[u8]) {
    let Some(text) = text(data) else { return };
    if let Ok(tok) = tokenizer::Tokenizer::from_tiktoken(text, tokenizer::Split::Gpt4) {
        round_trip(&tok);
    }
}

fn round_trip(tok: &tokenizer::Tokenizer) {
    let sample = "a big red circle in the top left, é ✓ 12";
    let ids = tok.encode_ordinary(sample);
    assert_eq!(
        tok.decode_bytes(&ids).ok().as_deref(),
        Some(sample.as_bytes())
    );
}

/// `run.json` (and `own-data.json`): parsed and checked as `open` does.
pub fn run_json(data: &[u8]) {
    if let Ok(config) = serde_json::from_slice::<train::RunConfig>(data) {
        let _ = config.validate();
    }
    let _ = serde_json::from_slice::<train::commands::own::OwnRun>(data);
}

/// A checkpoint's `history.json`.
pub fn history_json(data: &[u8]) {
    if let Ok(history) = serde_json::from_slice::<train::run::History>(data) {
        let recorded: Vec<usize> = history.steps.iter().map(|r| r.step).collect();
        let _ = train::run::check_history(Path::new("history.json"), &recorded, recorded.len());
    }
}

/// `optimizer.safetensors`: the AdamW moments of the micro model, and the
/// step in their metadata.
pub fn optimizer_state(data: &[u8]) {
    let mut opt = train::AdamWState::new(train::AdamW::default(), micro());
    let path = Path::new("optimizer.safetensors");
    if let Ok(metadata) = model::load_weights_from_bytes(data, path, &mut opt) {
        let steps = train::RunConfig::default().steps;
        if let Ok(step) = train::run::checked_step(&metadata, steps) {
            assert!(step <= steps);
        }
    }
}

/// `captions.tsv` of an own data folder.
pub fn captions_tsv(data: &[u8]) {
    let Some(text) = text(data) else { return };
    let path = Path::new("captions.tsv");
    if let Ok((items, _)) = train::data::folder::parse_captions(text, path) {
        for item in &items {
            assert!(!item.file.is_empty() && !item.caption.is_empty());
            let inside = Path::new(&item.file).components().all(|c| {
                matches!(
                    c,
                    std::path::Component::Normal(_) | std::path::Component::CurDir
                )
            });
            assert!(inside, "{:?} leaves the folder", item.file);
        }
    }
}

/// `questions.tsv` of an own question folder.
pub fn questions_tsv(data: &[u8]) {
    let Some(text) = text(data) else { return };
    let path = Path::new("questions.tsv");
    let _ = train::data::qa_folder::parse_questions(text, path);
}

/// An image file (PNG or JPEG), decoded and turned into the model's input.
pub fn image(data: &[u8]) {
    if let Ok(picture) = vision::load_image_bytes(data, "fuzz.png") {
        let tensor = train::data::folder::preprocess(8).to_tensor(&picture);
        assert!(tensor.iter().all(|v| (0.0..=1.0).contains(v)));
    }
}
