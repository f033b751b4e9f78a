//! Writes the tables of "Using the model: generation, zero-shot, checkpoints".
//!
//! ```text
//! cargo run --release -p model --example decoding
//! ```
//!
//! writes, under `book/src/generated/model/`:
//! - `bigram.md`: the toy bigram model [`Bigram::myopic`] as a table of
//!   next-token probabilities;
//! - `decoding.md`: what each decoding strategy makes of it: the sequence,
//!   its probability under the model, and the strategy's score;
//! - `config_tiny.txt`: the tiny config in the checkpoint's text format;
//! - `checkpoint_errors.md`: the error a micro checkpoint gives when it is
//!   broken in each of several ways (paths relative to a scratch folder, so
//!   the output does not depend on the machine).

use std::error::Error;
use std::fmt::Write as _;
use std::fs;
use std::path::Path;

use model::generate::log_softmax;
use model::{
    Beam, Bigram, CONFIG_FILE, Generated, GenerationConfig, ModelConfig, Sampling, TOKENIZER_FILE,
    WEIGHTS_FILE, WEIGHTS_VERSION, beam_search, config_to_text, greedy, load_checkpoint, sample,
    save_checkpoint, save_weights,
};
use rand::SeedableRng;
use rand::rngs::StdRng;
use tokenizer::Tokenizer;

// `\|`: a bare `|` would end the table cell, even inside backticks
const WORDS: [&str; 6] = ["<\\|bos\\|>", "<\\|eos\\|>", "the", "a", "cat", "dog"];

fn main() -> Result<(), Box<dyn Error>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap(); // the workspace
    let out_dir = root.join("book/src/generated/model");
    fs::create_dir_all(&out_dir)?;
    let model = Bigram::myopic();
    fs::write(out_dir.join("bigram.md"), bigram_table(&model))?;
    fs::write(out_dir.join("decoding.md"), decoding_table(&model))?;
    fs::write(
        out_dir.join("config_tiny.txt"),
        config_to_text(&ModelConfig::tiny(4099)),
    )?;
    fs::write(out_dir.join("checkpoint_errors.md"), checkpoint_errors()?)?;
    Ok(())
}

/// Saves a micro checkpoint, breaks it one way at a time, and tabulates the
/// error each breakage gives.
fn checkpoint_errors() -> Result<String, Box<dyn Error>> {
    let scratch = std::env::temp_dir().join(format!("model-example-{}", std::process::id()));
    fs::create_dir_all(&scratch)?;
    std::env::set_current_dir(&scratch)?; // errors then name `checkpoint/...`
    let dir = Path::new("checkpoint");
    let corpus = ["a red circle", "a blue square"];
    let specials = [tokenizer::BOS, tokenizer::EOS, tokenizer::PAD];
    let tok = Tokenizer::train_lines(corpus, 260)?.with_special_tokens(&specials)?;
    let model = ModelConfig::micro(tok.vocab_size()).init(&mut StdRng::seed_from_u64(0))?;
    let config_text = config_to_text(model.config());

    type Breakage = Box<dyn Fn(&Path) -> std::io::Result<()>>;
    let cases: Vec<(&str, Breakage)> = vec![
        ("nothing", Box::new(|_| Ok(()))),
        (
            "`tokenizer.txt` deleted",
            Box::new(|d| fs::remove_file(d.join(TOKENIZER_FILE))),
        ),
        (
            "`model.safetensors` cut in half",
            Box::new(|d| {
                let bytes = fs::read(d.join(WEIGHTS_FILE))?;
                fs::write(d.join(WEIGHTS_FILE), &bytes[..bytes.len() / 2])
            }),
        ),
        (
            "`text.width = eight` in `config.txt`",
            Box::new({
                let t = config_text.replace("text.width = 8", "text.width = eight");
                move |d| fs::write(d.join(CONFIG_FILE), &t)
            }),
        ),
        (
            "`text.n_head = 3` in `config.txt`",
            Box::new({
                let t = config_text.replace("text.n_head = 2", "text.n_head = 3");
                move |d| fs::write(d.join(CONFIG_FILE), &t)
            }),
        ),
        (
            "`decoder.mlp_hidden = 24` in `config.txt` (the weights have 16)",
            Box::new({
                let t = config_text.replace("decoder.mlp_hidden = 16", "decoder.mlp_hidden = 24");
                move |d| fs::write(d.join(CONFIG_FILE), &t)
            }),
        ),
        (
            "`text.width = 20000` in `config.txt`",
            Box::new({
                let t = config_text.replace("text.width = 8", "text.width = 20000");
                move |d| fs::write(d.join(CONFIG_FILE), &t)
            }),
        ),
        (
            "one weight set to NaN",
            Box::new({
                let mut broken = model.clone();
                broken.text_projection.weight[[0, 0]] = f32::NAN;
                move |d| {
                    let metadata = [("format_version", WEIGHTS_VERSION)]
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .into();
                    save_weights(&d.join(WEIGHTS_FILE), &broken, &metadata)
                        .map_err(std::io::Error::other)
                }
            }),
        ),
        (
            "a tokenizer with one merge fewer",
            Box::new(move |d| {
                let small = Tokenizer::train_lines(corpus, 259)
                    .and_then(|t| t.with_special_tokens(&specials))
                    .map_err(std::io::Error::other)?;
                fs::write(d.join(TOKENIZER_FILE), small.to_text())
            }),
        ),
    ];

    let mut md = String::from("| broken | `load_checkpoint` says |\n|---|---|\n");
    for (what, breakage) in cases {
        let _ = fs::remove_dir_all(dir);
        save_checkpoint(dir, &model, &tok)?;
        breakage(dir)?;
        let outcome = match load_checkpoint(dir) {
            Ok(_) => "loads".to_string(),
            Err(e) => e.to_string(),
        };
        writeln!(md, "| {what} | {} |", outcome.replace('|', "\\|")).unwrap();
    }
    std::env::set_current_dir(std::env::temp_dir())?;
    fs::remove_dir_all(&scratch)?;
    Ok(md)
}

/// The next-token probabilities, one row per previous token.
fn bigram_table(model: &Bigram) -> String {
    let mut md = String::from("| after ↓ / next → |");
    for w in &WORDS[1..] {
        write!(md, " `{w}` |").unwrap();
    }
    md.push_str("\n|---|");
    md.push_str(&"---:|".repeat(WORDS.len() - 1));
    md.push('\n');
    for (prev, w) in WORDS.iter().enumerate() {
        if prev == 1 {
            continue; // nothing follows eos
        }
        let p = log_softmax(&model.logits.row(prev)).mapv(f32::exp);
        write!(md, "| `{w}` |").unwrap();
        for next in 1..WORDS.len() {
            if p[next] > 0.0 {
                write!(md, " {:.2} |", p[next]).unwrap();
            } else {
                md.push_str(" · |");
            }
        }
        md.push('\n');
    }
    md
}

fn decoding_table(model: &Bigram) -> String {
    let cfg = GenerationConfig {
        bos: 0,
        eos: 1,
        max_new_tokens: 8,
    };
    let mut rows: Vec<(String, Generated)> = Vec::new();
    rows.push(("greedy".into(), greedy(model, 0, &cfg)));
    for (width, alpha) in [(1, 0.0), (2, 0.0), (3, 1.0)] {
        let hyps = beam_search(
            model,
            0,
            &cfg,
            &Beam {
                width,
                length_penalty: alpha,
            },
        );
        for (rank, h) in hyps.into_iter().enumerate() {
            rows.push((format!("beam W={width}, α={alpha}, #{}", rank + 1), h));
        }
    }
    let settings = [(1.0, None), (1.0, Some(2)), (0.5, None), (2.0, None)];
    for (temperature, top_k) in settings {
        let mut rng = StdRng::seed_from_u64(0);
        let s = Sampling { temperature, top_k };
        for draw in 0..3 {
            let k = top_k.map_or(String::new(), |k| format!(", top-k={k}"));
            rows.push((
                format!("sample T={temperature}{k}, draw {}", draw + 1),
                sample(model, 0, &cfg, &s, &mut rng),
            ));
        }
    }

    let mut md = String::from(
        "| strategy | sequence | P(sequence) | log P | score |\n|---|---|---:|---:|---:|\n",
    );
    for (name, g) in rows {
        let mut words: Vec<&str> = g.ids.iter().map(|&id| WORDS[id as usize]).collect();
        if g.finished {
            words.push(WORDS[1]);
        }
        writeln!(
            md,
            "| {name} | `{}` | {:.3} | {:.3} | {:.3} |",
            words.join(" "),
            g.log_prob.exp(),
            g.log_prob,
            g.score
        )
        .unwrap();
    }
    md
}
