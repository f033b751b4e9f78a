//! The fuzz targets of `tools/fuzz` (every loader of a user file), run by
//! `cargo test`: on the committed seed corpus and on a few thousand
//! deterministic mutations of it (cut, flipped, spliced, numbers made
//! huge), each input with the memory it takes counted and held to its
//! target's limit. The fuzzer itself runs far longer (see
//! `tools/fuzz/README.md`); this keeps every target compiling and the
//! corpus passing on every CI run, in a few seconds.
//!
//! The memory caps of the other loaders and commands are checked here too,
//! with the same counting allocator.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use train::memory::peak_during;

#[global_allocator]
static ALLOCATOR: train::memory::Counting = train::memory::Counting;

#[path = "../../tools/fuzz/src/targets.rs"]
#[allow(dead_code)]
mod targets;

/// One measurement at a time: the counter is global to the process.
static MEASURING: Mutex<()> = Mutex::new(());

const MIB: u64 = 1 << 20;

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tools/fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect()
}

/// A random change of `seed`, of the kinds that find loader bugs: a cut, a
/// flipped or replaced byte, a copied run, a number made huge, a field
/// repeated.
fn mutate(seed: &[u8], rng: &mut StdRng) -> Vec<u8> {
    let mut out = seed.to_vec();
    for _ in 0..rng.random_range(1..4) {
        let n = out.len().max(1);
        let at = rng.random_range(0..n);
        match rng.random_range(0..7) {
            0 => out.truncate(at),
            1 if !out.is_empty() => {
                let i = at.min(out.len() - 1);
                out[i] ^= 1 << rng.random_range(0..8);
            }
            2 if !out.is_empty() => {
                let i = at.min(out.len() - 1);
                out[i] = rng.random();
            }
            3 => {
                let len = rng.random_range(0..64).min(out.len().saturating_sub(at));
                let copy: Vec<u8> = out[at..at + len].to_vec();
                let to = rng.random_range(0..=out.len());
                out.splice(to..to, copy);
            }
            4 => {
                // the next decimal number becomes a huge one
                if let Some(p) = out[at.min(out.len())..].iter().position(u8::is_ascii_digit) {
                    let start = at + p;
                    let end = out[start..]
                        .iter()
                        .position(|b| !b.is_ascii_digit())
                        .map_or(out.len(), |q| start + q);
                    let huge: &[u8] = match rng.random_range(0..4) {
                        0 => b"18446744073709551615",
                        1 => b"4611686018427387904",
                        2 => b"4294967296",
                        _ => b"0",
                    };
                    out.splice(start..end, huge.iter().copied());
                }
            }
            5 => {
                // a binary length field (little- or big-endian u32/u64) made huge
                if out.len() >= 8 {
                    let at = at.min(out.len() - 8);
                    out[at..at + 4].copy_from_slice(&[0xff, 0xff, 0xff, 0x7f]);
                }
            }
            _ => {
                let line_end = out[at.min(out.len())..]
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(out.len(), |q| at + q + 1);
                let line: Vec<u8> = out[at.min(line_end)..line_end].to_vec();
                out.splice(line_end..line_end, line);
            }
        }
    }
    out
}

/// Runs a target on one input: no panic, and at most `cap_mib` at once.
fn run_one(name: &str, f: fn(&[u8]), cap_mib: u64, what: &str, input: &[u8]) {
    let (result, peak) = peak_during(|| std::panic::catch_unwind(|| f(input)));
    if let Err(panic) = result {
        let message = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        let path = std::env::temp_dir().join(format!("fuzz-crash-{name}"));
        let _ = std::fs::write(&path, input);
        panic!(
            "{name}: {what} panicked ({message}); input written to {}",
            path.display()
        );
    }
    let peak = peak.expect("the counting allocator is installed");
    assert!(
        peak <= cap_mib * MIB,
        "{name}: {what} took {} MiB, more than {cap_mib}",
        peak / MIB
    );
}

// ANCHOR: replay
#[test]
fn every_loader_survives_its_corpus_and_mutations_of_it_within_its_memory() {
    let _one = MEASURING.lock().unwrap_or_else(|e| e.into_inner());
    let mutations: usize = std::env::var("FUZZ_MUTATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    for &(name, f, cap) in targets::TARGETS {
        let seeds = corpus(name);
        assert!(!seeds.is_empty(), "{name}: no corpus");
        for (path, bytes) in &seeds {
            run_one(name, f, cap, &path.display().to_string(), bytes);
        }
        let mut rng = StdRng::seed_from_u64(name.len() as u64);
        for i in 0..mutations {
            let (_, seed) = &seeds[i % seeds.len()];
            let input = mutate(seed, &mut rng);
            run_one(name, f, cap, &format!("mutation {i}"), &input);
        }
    }
}
// ANCHOR_END: replay

// ---- the memory of the other loaders and commands ---------------------------

/// A checkpoint whose config asks for a model 100 000 times its weights
/// file is refused having allocated next to nothing.
#[test]
fn a_huge_config_is_refused_within_a_few_megabytes() {
    let _one = MEASURING.lock().unwrap_or_else(|e| e.into_inner());
    let dir = std::env::temp_dir().join(format!("fuzz-corpus-ckpt-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let tok = tokenizer::Tokenizer::train_lines(["a red circle"], 260)
        .unwrap()
        .with_special_tokens(&[tokenizer::BOS, tokenizer::EOS, tokenizer::PAD])
        .unwrap();
    let config = model::ModelConfig::micro(tok.vocab_size());
    let m = config.init(&mut StdRng::seed_from_u64(0)).unwrap();
    model::save_checkpoint(&dir, &m, &tok).unwrap();
    let text = model::config_to_text(&config).replace("text.width = 8", "text.width = 20000");
    std::fs::write(dir.join(model::CONFIG_FILE), text).unwrap();
    let (result, peak) = peak_during(|| model::load_checkpoint(&dir));
    assert!(result.is_err());
    let peak = peak.unwrap();
    assert!(peak < 4 * MIB, "{} bytes", peak);
    std::fs::remove_dir_all(dir).unwrap();
}

/// A training step's memory is measured, and a batch far too large for
/// the memory available is refused before anything is allocated for it.
#[test]
fn a_training_step_is_measured_and_a_huge_batch_refused() {
    let _one = MEASURING.lock().unwrap_or_else(|e| e.into_inner());
    let config = model::ModelConfig::micro(40);
    let m = config.init(&mut StdRng::seed_from_u64(0)).unwrap();
    let small = train::run::step_bytes(&m, 32).unwrap();
    let large = train::run::step_bytes(&m, 64).unwrap();
    assert!(small > 0 && large > small, "{small} {large}");
    // the estimate holds the real step: a measured step at 64 stays under it
    let tokens = ndarray::Array2::from_elem((64, config.max_len), config.special.pad);
    let images = ndarray::Array4::<f32>::zeros((64, 3, 8, 8));
    let lengths = vec![config.max_len; 64];
    let (_, real) = peak_during(|| {
        let (out, cache) = m.forward(&images, &tokens, &lengths);
        let mut grads = embedding::Params::zeros_like(&m);
        let dout = model::ModelOutputGrads::zeros_like(&out);
        m.backward(&dout, &cache, &mut grads);
    });
    let real = real.unwrap();
    assert!(
        real <= large && large < 4 * real.max(MIB),
        "measured {real}, estimated {large}"
    );
    let huge = train::run::step_bytes(&m, 1 << 40).unwrap();
    assert!(huge > 1 << 50, "{huge}");
}

/// `classify` with a thousand labels works in chunks: its memory does not
/// grow with the prompts it embeds.
#[test]
fn classify_with_a_thousand_labels_stays_small() {
    let _one = MEASURING.lock().unwrap_or_else(|e| e.into_inner());
    let tok = tokenizer::Tokenizer::train_lines(["a red circle", "a blue square"], 270)
        .unwrap()
        .with_special_tokens(&[tokenizer::BOS, tokenizer::EOS, tokenizer::PAD])
        .unwrap();
    let mut config = model::ModelConfig::tiny(tok.vocab_size());
    config.image = model::ImageConfig::tiny_cnn();
    let m = config.init(&mut StdRng::seed_from_u64(0)).unwrap();
    let dir = std::env::temp_dir().join(format!("fuzz-corpus-classify-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let image = dir.join("x.png");
    vision::save_png(&ndarray::Array3::<f32>::zeros((3, 32, 32)), &image).unwrap();
    let labels: Vec<String> = (0..1200).map(|i| format!("a label number {i}")).collect();
    let (ranked, peak) = peak_during(|| {
        train::commands::classify::classify_file(&m, &tok, &image, &labels).unwrap()
    });
    assert_eq!(ranked.len(), 1200);
    // 1200 labels × 3 templates of 16 tokens through the tiny text tower at
    // once hold over 600 MB (5000 labels: 2.6 GB); in chunks of 256
    // prompts, some tens of MB whatever the number of labels
    let peak = peak.unwrap();
    assert!(peak < 128 * MIB, "{} MiB", peak / MIB);
    std::fs::remove_dir_all(dir).unwrap();
}
