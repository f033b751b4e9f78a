//! Writes the figures and tables of the book's multimodal chapter:
//!
//! - `book/src/generated/multimodal/architecture.svg`: the multimodal LLM,
//!   with the shapes of `VlmConfig::tiny`;
//! - `book/src/generated/multimodal/masks.svg`: the causal and the prefix-LM
//!   mask over one spliced conversation, each cell "may this row see that
//!   column", drawn from `Mask::to_dense` of the mask the model builds;
//! - `book/src/generated/multimodal/sequence.md`: that conversation as
//!   token IDs, spliced positions, targets and weights, from the code that
//!   trains on it (`encode_chat`, `Vlm::targets`);
//! - `book/src/generated/multimodal/parameters.md`: parameters per part for
//!   each projector, read from `Params`.
//!
//! ```sh
//! cargo run --release -p model --example multimodal
//! ```
//!
//! Deterministic, so `tools/book-outputs.sh` can check the committed files.

use std::error::Error;
use std::fmt::Write as _;
use std::fs;
use std::path::Path;

use embedding::Params;
use model::{
    CHAT_SPECIAL_TOKENS, ChatTokens, ImageSlot, ProjectorKind, TokenPool, Turn, Vlm, VlmConfig,
    VlmMask, encode_chat,
};
use ndarray::Array2;
use rand::SeedableRng;
use rand::rngs::StdRng;
use tokenizer::{BOS, EOS, PAD, Tokenizer};

/// The vocabulary size the shapes are shown with (the toy data's order of size).
const VOCAB: usize = 512;

fn main() -> Result<(), Box<dyn Error>> {
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("../book/src/generated/multimodal");
    fs::create_dir_all(&out)?;
    fs::write(
        out.join("architecture.svg"),
        architecture(&VlmConfig::tiny(VOCAB, 64)),
    )?;
    let (vlm, tokenizer, ids, weights) = example()?;
    fs::write(out.join("masks.svg"), masks(&vlm, &tokenizer, &ids))?;
    fs::write(
        out.join("sequence.md"),
        sequence(&vlm, &tokenizer, &ids, &weights)?,
    )?;
    fs::write(out.join("parameters.md"), parameters()?)?;
    println!(
        "wrote architecture.svg, masks.svg, sequence.md and parameters.md to book/src/generated/multimodal/"
    );
    Ok(())
}

/// A small conversation and a model with 4 image tokens to show it with:
/// a 2×2 averaged grid of the tiny CNN would be 16, too many to read.
/// The model, its tokenizer, and the conversation's IDs and weights.
type Example = (Vlm, Tokenizer, Vec<u32>, Vec<f32>);

fn example() -> Result<Example, Box<dyn Error>> {
    let lines = [
        " what colour is the circle?",
        "red",
        " and its size?",
        "big",
    ]; // as they follow <|image|>
    let mut specials = vec![BOS, EOS, PAD];
    specials.extend(CHAT_SPECIAL_TOKENS);
    // each line twice, so every pair of a word repeats and the merges reach
    // whole words: one token per word, as the toy world's tokenizer has
    let twice = lines.iter().chain(&lines);
    let tokenizer = Tokenizer::train_lines(twice, 289)?.with_special_tokens(&specials)?;
    let mut config = VlmConfig::tiny(tokenizer.vocab_size(), 64);
    config.vision = model::ImageConfig::Cnn {
        cnn: vision::CnnConfig {
            channels: vec![32, 64, 64],
            ..vision::CnnConfig::default()
        },
        image_size: 32,
    }; // a 4×4 grid
    config.tokens = ChatTokens::from_tokenizer(&tokenizer)?;
    assert_eq!(config.num_image_tokens(), 4);
    let vlm = config.init(&mut StdRng::seed_from_u64(0))?;
    let turns = [Turn::new("<|image|> what colour is the circle?", "red")];
    let chat = encode_chat(&tokenizer, &config.tokens, &turns, ImageSlot::Required)?;
    Ok((vlm, tokenizer, chat.ids, chat.weights))
}

/// What each spliced position holds: a label, its kind for colouring, and
/// the token ID (none for an image vector).
fn spliced_labels(
    vlm: &Vlm,
    tokenizer: &Tokenizer,
    ids: &[u32],
    weights: &[f32],
) -> Vec<(String, Kind, Option<u32>)> {
    let t = vlm.config().tokens;
    let mut labels = Vec::new();
    let mut in_answer = false;
    for (&id, &w) in ids.iter().zip(weights) {
        if id == t.image {
            for i in 0..vlm.num_image_tokens() {
                labels.push((format!("img{i}"), Kind::Image, None));
            }
            continue;
        }
        let text = visible(&tokenizer.decode(&[id]).unwrap_or_else(|_| format!("#{id}")));
        if id == t.assistant {
            in_answer = true;
        }
        let kind = if w > 0.0 || (in_answer && id != t.assistant) {
            Kind::Answer
        } else if id == t.user || id == t.assistant || id == t.end {
            Kind::Role
        } else {
            Kind::Question
        };
        labels.push((text, kind, Some(id)));
    }
    labels
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Role,
    Image,
    Question,
    Answer,
}

impl Kind {
    fn colour(self) -> &'static str {
        match self {
            Kind::Role => "#d9d9d9",
            Kind::Image => "#9ecae1",
            Kind::Question => "#a1d99b",
            Kind::Answer => "#fdae6b",
        }
    }
}

/// A token's text with its spaces shown (`␣colour`: BPE tokens carry the
/// space before a word).
fn visible(text: &str) -> String {
    text.replace(' ', "␣")
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Both masks over the example, side by side.
fn masks(vlm: &Vlm, tokenizer: &Tokenizer, ids: &[u32]) -> String {
    let weights = vec![0.0; ids.len()]; // colours by role only here
    let labels = spliced_labels(vlm, tokenizer, ids, &weights);
    let n = labels.len();
    let tokens = Array2::from_shape_vec((1, ids.len()), ids.to_vec()).expect("one row");
    let cell = 18.0f32;
    let (left, top, gap) = (110.0f32, 40.0f32, 60.0f32);
    let width = left + 2.0 * n as f32 * cell + gap + 20.0;
    let height = top + n as f32 * cell + 80.0;
    let mut body = String::new();
    for (panel, (mask_kind, title)) in [
        (VlmMask::Causal, "causal (LLaVA)"),
        (VlmMask::PrefixLm, "prefix-LM (PaliGemma)"),
    ]
    .into_iter()
    .enumerate()
    {
        let mut config = vlm.config().clone();
        config.mask = mask_kind;
        let model = config.init(&mut StdRng::seed_from_u64(0)).expect("valid");
        let dense = model.mask(&tokens).to_dense(1, n, n); // [1, T', T']
        let x0 = left + panel as f32 * (n as f32 * cell + gap);
        let _ = writeln!(
            body,
            r#"<text x="{}" y="20" font-size="13" font-weight="bold" text-anchor="middle">{title}</text>"#,
            x0 + n as f32 * cell / 2.0
        );
        for (i, (label, _, _)) in labels.iter().enumerate() {
            if panel == 0 {
                let _ = writeln!(
                    body,
                    r#"<text x="{}" y="{}" font-size="10" text-anchor="end">{}</text>"#,
                    left - 6.0,
                    top + (i as f32 + 0.7) * cell,
                    escape(label)
                );
            }
            let _ = writeln!(
                body,
                r#"<text transform="translate({},{}) rotate(60)" font-size="10">{}</text>"#,
                x0 + (i as f32 + 0.3) * cell,
                top + n as f32 * cell + 6.0,
                escape(label)
            );
            for j in 0..n {
                let fill = if dense[[0, i, j]] {
                    labels[j].1.colour()
                } else {
                    "#ffffff"
                };
                let _ = writeln!(
                    body,
                    r##"<rect x="{}" y="{}" width="{cell}" height="{cell}" fill="{fill}" stroke="#bbb" stroke-width="0.5"/>"##,
                    x0 + j as f32 * cell,
                    top + i as f32 * cell
                );
            }
        }
    }
    format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" height="{height}" font-family="sans-serif">
<rect width="{width}" height="{height}" fill="#fff"/>
{body}</svg>
"##
    )
}

/// The example as a table: text position, token, ID, spliced position,
/// what that position is trained to predict, and the weight.
fn sequence(
    vlm: &Vlm,
    tokenizer: &Tokenizer,
    ids: &[u32],
    weights: &[f32],
) -> Result<String, Box<dyn Error>> {
    let tokens = Array2::from_shape_vec((1, ids.len()), ids.to_vec())?;
    let w = Array2::from_shape_vec((1, weights.len()), weights.to_vec())?;
    let (targets, target_weights) = vlm.targets(&tokens, &w);
    let labels = spliced_labels(vlm, tokenizer, ids, weights);
    let t = vlm.config().tokens;
    let mut table = String::from(
        "| position | holds | id | predicts | weight |\n| ---: | --- | ---: | --- | ---: |\n",
    );
    for (j, (label, kind, id)) in labels.iter().enumerate() {
        let id = id.map_or("—".to_string(), |id| id.to_string());
        let weight = target_weights[[0, j]];
        let predicts = if weight > 0.0 || j + 1 < labels.len() && targets[[0, j]] != t.pad {
            format!("`{}`", visible(&tokenizer.decode(&[targets[[0, j]]])?))
        } else {
            "—".to_string()
        };
        let holds = match kind {
            Kind::Image => format!("image token {}", &label[3..]),
            _ => format!("`{label}`"),
        };
        writeln!(table, "| {j} | {holds} | {id} | {predicts} | {weight} |")?;
    }
    writeln!(
        table,
        "\nThe text has {} token IDs; `<|image|>` (ID {}) becomes {} image vectors, so the model reads {} positions. Only the answer and its `<|end|>` carry weight.",
        ids.len(),
        t.image,
        vlm.num_image_tokens(),
        labels.len()
    )?;
    Ok(table)
}

/// The architecture diagram, labelled with `config`'s shapes.
fn architecture(config: &VlmConfig) -> String {
    let grid = config.grid();
    let n = config.num_image_tokens();
    let (c_img, c_lm, v, t) = (
        grid.width,
        config.lm.width,
        config.lm.vocab,
        config.lm.max_len,
    );
    let mut body = String::new();
    let mut node = |x: f32, y: f32, w: f32, h: f32, fill: &str, lines: &[String]| {
        let _ = writeln!(
            body,
            r##"<rect x="{x}" y="{y}" width="{w}" height="{h}" rx="6" fill="{fill}" stroke="#444"/>"##
        );
        let top = y + h / 2.0 - 7.0 * (lines.len() as f32 - 1.0) + 4.0;
        for (i, line) in lines.iter().enumerate() {
            let (size, weight) = if i == 0 {
                (13.0, "bold")
            } else {
                (11.0, "normal")
            };
            let _ = writeln!(
                body,
                r#"<text x="{}" y="{}" font-size="{size}" font-weight="{weight}" text-anchor="middle">{}</text>"#,
                x + w / 2.0,
                top + 14.0 * i as f32,
                escape(line)
            );
        }
    };
    let s = |x: &str| x.to_string();
    let pool = match config.projector.pool {
        TokenPool::None => "every cell",
        TokenPool::Average2 => "2×2 averages",
        TokenPool::PixelShuffle2 => "2×2 pixel shuffle",
    };
    let kind = match config.projector.kind {
        ProjectorKind::Linear => "Linear",
        ProjectorKind::Mlp => "Linear → GELU → Linear",
    };
    let side = config.vision.image_size();
    node(
        10.0,
        30.0,
        130.0,
        46.0,
        "#eeeeee",
        &[s("image"), format!("[B, 3, {side}, {side}]")],
    );
    node(
        180.0,
        20.0,
        160.0,
        66.0,
        "#dbe9f6",
        &[
            s("vision_tower"),
            s("CNN or ViT (from CLIP)"),
            format!("{0}×{0} grid, width {c_img}", grid.side),
        ],
    );
    node(
        380.0,
        14.0,
        240.0,
        80.0,
        "#dbe9f6",
        &[
            s("multi_modal_projector"),
            format!("{pool},"),
            s(kind),
            format!("[B, {n}, {c_lm}]"),
        ],
    );
    node(
        10.0,
        140.0,
        250.0,
        66.0,
        "#eeeeee",
        &[
            s("chat tokens"),
            s("<|user|> <|image|> question"),
            s("<|assistant|> answer <|end|>"),
        ],
    );
    node(
        300.0,
        150.0,
        150.0,
        46.0,
        "#dcf0dc",
        &[s("token_embedding"), format!("Wte [{v}, {c_lm}]")],
    );
    node(
        490.0,
        130.0,
        170.0,
        86.0,
        "#fbe5cc",
        &[
            s("splice"),
            s("image vectors replace"),
            s("<|image|>"),
            format!("[B, T + {}, {c_lm}]", n - 1),
        ],
    );
    node(
        300.0,
        260.0,
        360.0,
        70.0,
        "#dcf0dc",
        &[
            s("language_model"),
            format!("+ positions (≤ {t}), blocks: masked self-attention + MLP"),
            s("causal, or prefix-LM over image + question; ln_final"),
        ],
    );
    node(
        300.0,
        370.0,
        170.0,
        50.0,
        "#dcf0dc",
        &[s("head"), s("tied: h · Wteᵀ")],
    );
    node(
        510.0,
        365.0,
        220.0,
        60.0,
        "#ffffff",
        &[
            s("answer loss (train)"),
            format!("logits [B, T + {}, {v}]", n - 1),
            s("weights: the answers only"),
        ],
    );
    let arrows = [
        vec![(140.0, 53.0), (178.0, 53.0)],
        vec![(340.0, 53.0), (378.0, 53.0)],
        vec![(620.0, 53.0), (640.0, 53.0), (640.0, 128.0)],
        vec![(260.0, 173.0), (298.0, 173.0)],
        vec![(450.0, 173.0), (488.0, 173.0)],
        vec![(575.0, 216.0), (575.0, 258.0)],
        vec![(385.0, 330.0), (385.0, 368.0)],
        vec![(470.0, 395.0), (508.0, 395.0)],
    ];
    for points in arrows {
        let path: Vec<String> = points.iter().map(|(x, y)| format!("{x},{y}")).collect();
        let _ = writeln!(
            body,
            r##"<polyline points="{}" fill="none" stroke="#333" stroke-width="1.4" marker-end="url(#head)"/>"##,
            path.join(" ")
        );
    }
    format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 740 440" width="740" height="440" font-family="sans-serif">
<defs><marker id="head" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#333"/></marker></defs>
<rect width="740" height="440" fill="#fff"/>
{body}</svg>
"##
    )
}

/// Parameters per part of the tiny multimodal model, for each projector.
fn parameters() -> Result<String, Box<dyn Error>> {
    let variants = [
        ("MLP, 2×2 average", ProjectorKind::Mlp, TokenPool::Average2),
        (
            "MLP, pixel shuffle",
            ProjectorKind::Mlp,
            TokenPool::PixelShuffle2,
        ),
        ("MLP, every cell", ProjectorKind::Mlp, TokenPool::None),
        (
            "Linear, 2×2 average",
            ProjectorKind::Linear,
            TokenPool::Average2,
        ),
    ];
    let mut table = String::from("| part |");
    let mut rule = String::from("| --- |");
    let mut models = Vec::new();
    for (name, kind, pool) in variants {
        let mut config = VlmConfig::tiny(VOCAB, 96);
        config.projector.kind = kind;
        config.projector.pool = pool;
        write!(table, " {name} |")?;
        rule.push_str(" ---: |");
        models.push(config.init(&mut StdRng::seed_from_u64(0))?);
    }
    writeln!(table, "\n{rule}")?;
    let count = |vlm: &Vlm, part: &str| -> usize {
        vlm.params()
            .iter()
            .filter(|(name, _)| name.starts_with(&format!("{part}.")))
            .map(|(_, t)| t.len())
            .sum()
    };
    for part in ["vision_tower", "multi_modal_projector", "language_model"] {
        let cells: Vec<String> = models.iter().map(|m| count(m, part).to_string()).collect();
        writeln!(table, "| `{part}` | {} |", cells.join(" | "))?;
    }
    let tokens: Vec<String> = models
        .iter()
        .map(|m| m.num_image_tokens().to_string())
        .collect();
    writeln!(
        table,
        "| image tokens per picture | {} |",
        tokens.join(" | ")
    )?;
    let totals: Vec<String> = models
        .iter()
        .map(|m| format!("**{}**", m.num_params()))
        .collect();
    writeln!(table, "| total | {} |", totals.join(" | "))?;
    writeln!(
        table,
        "\n`VlmConfig::tiny` with a vocabulary of {VOCAB} tokens (`cargo run --release -p model --example multimodal`)."
    )?;
    Ok(table)
}
