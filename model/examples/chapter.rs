//! Writes the figure and table of the book's model chapter:
//!
//! - `book/src/generated/model/architecture.svg`: how the parts connect, with
//!   the shapes of the tiny config;
//! - `book/src/generated/model/parameters.md`: the parameter count of each
//!   part, read from `Params`, for both image towers and both head kinds;
//! - `book/src/generated/vision/shapes.md`: the vision chapter's table of
//!   the model's CNN and ViT stage by stage (output shape, receptive field,
//!   parameters), from `ImageConfig::tiny_cnn` and `ImageConfig::tiny_vit`.
//!
//! ```sh
//! cargo run --release -p model --example chapter
//! ```
//!
//! Deterministic (no timings, no randomness that reaches the output), so
//! `tools/book-outputs.sh` can check the committed files are current.

use std::error::Error;
use std::fmt::Write as _;
use std::fs;
use std::path::Path;

use embedding::Params;
use model::{Head, ImageConfig, Model, ModelConfig};
use rand::SeedableRng;
use rand::rngs::StdRng;
use vision::{CnnConfig, VitConfig, conv_output_size};

/// The toy dataset's vocabulary size, for the shapes shown.
const VOCAB: usize = 512;

fn main() -> Result<(), Box<dyn Error>> {
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("../book/src/generated/model");
    fs::create_dir_all(&out)?;
    let config = ModelConfig::tiny(VOCAB);
    fs::write(out.join("architecture.svg"), architecture(&config))?;
    fs::write(out.join("parameters.md"), parameters()?)?;
    println!("wrote architecture.svg and parameters.md to book/src/generated/model/");
    let (ImageConfig::Cnn { cnn, image_size }, ImageConfig::Vit(vit)) =
        (ImageConfig::tiny_cnn(), ImageConfig::tiny_vit())
    else {
        unreachable!("tiny_cnn is a CNN and tiny_vit a ViT")
    };
    let vision = out.join("../vision");
    fs::create_dir_all(&vision)?;
    fs::write(
        vision.join("shapes.md"),
        shapes_table(&cnn, &vit, image_size),
    )?;
    println!("wrote book/src/generated/vision/shapes.md");
    Ok(())
}

/// One row of the shapes table.
fn row(table: &mut String, stage: &str, shape: &str, field: &str, params: usize) {
    let params = if params == 0 {
        "–".to_string()
    } else {
        params.to_string()
    };
    let shape = if shape.is_empty() {
        String::new()
    } else {
        format!("`{shape}`")
    };
    writeln!(table, "| {stage} | {shape} | {field} | {params} |").unwrap();
}

fn shapes_table(cnn: &CnnConfig, vit_config: &VitConfig, side_px: usize) -> String {
    let mut rng = StdRng::seed_from_u64(0);
    let mut t = String::new();
    writeln!(
        t,
        "| stage | output shape (B = 1) | receptive field | parameters |"
    )
    .unwrap();
    writeln!(t, "| --- | --- | --- | --- |").unwrap();

    // CNN: track the receptive field r and the jump j (input pixels between neighbouring outputs):
    // a layer with kernel k and stride s gives r ← r + (k − 1)·j, j ← j·s
    let cnn = cnn.init(&mut rng);
    let (mut side, mut field, mut jump) = (side_px, 1, 1);
    row(
        &mut t,
        "**CNN** input image",
        &format!("[1, 3, {side_px}, {side_px}]"),
        "1×1",
        0,
    );
    for (i, block) in cnn.blocks.iter().enumerate() {
        let (k, _) = block.conv.kernel_size();
        side = conv_output_size(side, k, block.conv.stride, block.conv.padding);
        field += (k - 1) * jump;
        jump *= block.conv.stride;
        let c = block.conv.c_out();
        let stage = format!("block {i}: conv {k}×{k} + ReLU");
        row(
            &mut t,
            &stage,
            &format!("[1, {c}, {side}, {side}]"),
            &format!("{field}×{field}"),
            block.conv.num_params(),
        );
        let p = block.pool.kernel;
        side = conv_output_size(side, p, block.pool.stride, 0);
        field += (p - 1) * jump;
        jump *= block.pool.stride;
        let stage = format!("block {i}: max pool {p}×{p}");
        row(
            &mut t,
            &stage,
            &format!("[1, {c}, {side}, {side}]"),
            &format!("{field}×{field}"),
            0,
        );
    }
    let c = cnn.dim();
    row(
        &mut t,
        "grid (positions as tokens)",
        &format!("[1, {}, {c}]", side * side),
        &format!("{field}×{field}"),
        0,
    );
    row(
        &mut t,
        "pooled (mean of the grid)",
        &format!("[1, {c}]"),
        &format!("{side_px}×{side_px} (all)"),
        0,
    );
    row(&mut t, "**CNN total**", "", "", cnn.num_params());

    let config = vit_config;
    let vit = config.init(&mut rng);
    let (n, c, p) = (config.num_patches(), vit.dim(), config.patch);
    row(
        &mut t,
        "**ViT** input image",
        &format!("[1, 3, {side_px}, {side_px}]"),
        "1×1",
        0,
    );
    row(
        &mut t,
        &format!("patch embedding {p}×{p}"),
        &format!("[1, {n}, {c}]"),
        &format!("{p}×{p} (a patch)"),
        vit.patch_embed.num_params(),
    );
    row(
        &mut t,
        "prepend CLS token",
        &format!("[1, {}, {c}]", n + 1),
        &format!("{p}×{p} (a patch)"),
        vit.cls_token.len(),
    );
    row(
        &mut t,
        "+ learned positions",
        &format!("[1, {}, {c}]", n + 1),
        &format!("{p}×{p} (a patch)"),
        vit.pos_embed.num_params(),
    );
    for (i, block) in vit.blocks.iter().enumerate() {
        let stage = format!("block {i}: attention + MLP");
        row(
            &mut t,
            &stage,
            &format!("[1, {}, {c}]", n + 1),
            &format!("{side_px}×{side_px} (all)"),
            block.num_params(),
        );
    }
    row(
        &mut t,
        "final LayerNorm → tokens",
        &format!("[1, {}, {c}]", n + 1),
        &format!("{side_px}×{side_px} (all)"),
        vit.norm.num_params(),
    );
    row(
        &mut t,
        "cls = tokens[:, 0]",
        &format!("[1, {c}]"),
        &format!("{side_px}×{side_px} (all)"),
        0,
    );
    row(&mut t, "**ViT total**", "", "", vit.num_params());
    t
}

/// A small SVG writer: boxes, arrows and text, nothing else.
struct Svg {
    body: String,
}

impl Svg {
    fn text(&mut self, x: f32, y: f32, size: f32, anchor: &str, s: &str) {
        let s = s
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;");
        let _ = writeln!(
            self.body,
            r#"<text x="{x}" y="{y}" font-size="{size}" text-anchor="{anchor}">{s}</text>"#
        );
    }

    /// A box with a bold title and lines of detail, centred.
    fn node(&mut self, x: f32, y: f32, w: f32, h: f32, fill: &str, lines: &[&str]) {
        let _ = writeln!(
            self.body,
            r##"<rect x="{x}" y="{y}" width="{w}" height="{h}" rx="6" fill="{fill}" stroke="#444"/>"##
        );
        let top = y + h / 2.0 - 7.0 * (lines.len() as f32 - 1.0) + 4.0;
        for (i, line) in lines.iter().enumerate() {
            let size = if i == 0 { 13.0 } else { 11.0 };
            let weight = if i == 0 { "bold" } else { "normal" };
            let line = line
                .replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;");
            let _ = writeln!(
                self.body,
                r#"<text x="{}" y="{}" font-size="{size}" font-weight="{weight}" text-anchor="middle">{line}</text>"#,
                x + w / 2.0,
                top + 14.0 * i as f32
            );
        }
    }

    /// A dashed box: something the `train` crate computes from the outputs.
    fn loss(&mut self, x: f32, y: f32, w: f32, h: f32, lines: &[&str]) {
        let _ = writeln!(
            self.body,
            r##"<rect x="{x}" y="{y}" width="{w}" height="{h}" rx="6" fill="#fff" stroke="#888" stroke-dasharray="5 3"/>"##
        );
        for (i, line) in lines.iter().enumerate() {
            self.text(
                x + w / 2.0,
                y + 18.0 + 14.0 * i as f32,
                11.0,
                "middle",
                line,
            );
        }
    }

    fn arrow(&mut self, points: &[(f32, f32)], label: Option<(&str, f32, f32)>) {
        let path: Vec<String> = points.iter().map(|(x, y)| format!("{x},{y}")).collect();
        let _ = writeln!(
            self.body,
            r##"<polyline points="{}" fill="none" stroke="#333" stroke-width="1.4" marker-end="url(#head)"/>"##,
            path.join(" ")
        );
        if let Some((s, x, y)) = label {
            self.text(x, y, 10.5, "middle", s);
        }
    }
}

/// The architecture diagram, labelled with `config`'s shapes.
fn architecture(config: &ModelConfig) -> String {
    let n_img = config.image.num_tokens();
    let (c_img, c_text, c_dec) = (
        config.image.width(),
        config.text.width,
        config.decoder.width,
    );
    let (e, t, v) = (config.embed_dim, config.max_len, config.vocab);
    let mut svg = Svg {
        body: String::new(),
    };
    let (blue, green, orange, grey) = ("#dbe9f6", "#dcf0dc", "#fbe5cc", "#eeeeee");

    // inputs
    svg.node(10.0, 40.0, 120.0, 46.0, grey, &["images", "[B, 3, 32, 32]"]);
    svg.node(
        10.0,
        200.0,
        120.0,
        46.0,
        grey,
        &["tokens", &format!("[B, T ≤ {t}]")],
    );

    // image tower and head
    svg.node(
        160.0,
        30.0,
        140.0,
        66.0,
        blue,
        &[
            "image encoder",
            "ViT (pooled = CLS)",
            "or CNN (pooled = mean)",
        ],
    );
    svg.arrow(&[(130.0, 63.0), (158.0, 63.0)], None);
    svg.node(
        395.0,
        40.0,
        132.0,
        46.0,
        blue,
        &["image_projection", &format!("[{e}, {c_img}]")],
    );
    svg.arrow(
        &[(300.0, 63.0), (393.0, 63.0)],
        Some((&format!("pooled [B, {c_img}]"), 346.0, 56.0)),
    );
    svg.node(560.0, 40.0, 70.0, 46.0, blue, &["L2", "normalise"]);
    svg.arrow(&[(527.0, 63.0), (558.0, 63.0)], None);

    // text tower and head
    svg.node(
        160.0,
        190.0,
        140.0,
        66.0,
        green,
        &["text encoder", "causal blocks", "vector at <|eos|>"],
    );
    svg.arrow(&[(130.0, 223.0), (158.0, 223.0)], None);
    svg.node(
        395.0,
        200.0,
        132.0,
        46.0,
        green,
        &["text_projection", &format!("[{e}, {c_text}]")],
    );
    svg.arrow(
        &[(300.0, 223.0), (393.0, 223.0)],
        Some((&format!("pooled [B, {c_text}]"), 346.0, 216.0)),
    );
    svg.node(560.0, 200.0, 70.0, 46.0, green, &["L2", "normalise"]);
    svg.arrow(&[(527.0, 223.0), (558.0, 223.0)], None);

    // the shared space and the contrastive loss
    svg.loss(
        670.0,
        105.0,
        170.0,
        76.0,
        &[
            "contrastive loss (train)",
            "exp(logit_scale) ·",
            "image_embeds · text_embedsᵀ",
            "[B, B]",
        ],
    );
    svg.arrow(
        &[(630.0, 63.0), (755.0, 63.0), (755.0, 103.0)],
        Some((&format!("image_embeds [B, {e}]"), 700.0, 56.0)),
    );
    svg.arrow(
        &[(630.0, 223.0), (755.0, 223.0), (755.0, 183.0)],
        Some((&format!("text_embeds [B, {e}]"), 700.0, 240.0)),
    );
    svg.node(
        520.0,
        120.0,
        130.0,
        46.0,
        grey,
        &["logit_scale", "ln(1/0.07), ≤ ln 100"],
    );
    svg.arrow(&[(650.0, 143.0), (668.0, 143.0)], None);

    // the decoder
    svg.node(
        170.0,
        310.0,
        260.0,
        80.0,
        orange,
        &[
            "caption decoder",
            &format!("embeddings (Wte [{v}, {c_dec}]) + positions"),
            "causal self-attention → cross-attention",
            "→ MLP, × depth; ln_final",
        ],
    );
    svg.arrow(
        &[(70.0, 246.0), (70.0, 350.0), (168.0, 350.0)],
        Some(("tokens[:, ..T−1]", 112.0, 343.0)),
    );
    // image tokens into every block's cross-attention
    svg.arrow(
        &[
            (175.0, 96.0),
            (175.0, 150.0),
            (145.0, 150.0),
            (145.0, 285.0),
            (230.0, 285.0),
            (230.0, 308.0),
        ],
        None,
    );
    svg.text(
        240.0,
        282.0,
        10.5,
        "start",
        &format!("image tokens [B, {n_img}, {c_img}]"),
    );
    svg.text(
        240.0,
        296.0,
        10.5,
        "start",
        "(keys and values of cross-attention)",
    );
    svg.node(
        480.0,
        320.0,
        130.0,
        60.0,
        orange,
        &["head", "tied: h · Wteᵀ", "or lm_head"],
    );
    svg.arrow(&[(430.0, 350.0), (478.0, 350.0)], None);
    svg.loss(
        660.0,
        312.0,
        180.0,
        76.0,
        &[
            "captioning loss (train)",
            &format!("logits [B, T−1, {v}]"),
            "targets tokens[:, 1..]",
            "(padding ignored)",
        ],
    );
    svg.arrow(&[(610.0, 350.0), (658.0, 350.0)], None);

    format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 850 400" width="850" height="400" font-family="sans-serif">
<defs><marker id="head" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#333"/></marker></defs>
<rect width="850" height="400" fill="#fff"/>
{}</svg>
"##,
        svg.body
    )
}

/// Parameters per part for each tower and head kind, read from `Params`.
fn parameters() -> Result<String, Box<dyn Error>> {
    let parts = [
        "image",
        "text",
        "image_projection",
        "text_projection",
        "logit_scale",
        "decoder",
    ];
    let mut table = String::from(
        "| part | ViT, tied head | CNN, tied head | ViT, separate head |\n| --- | ---: | ---: | ---: |\n",
    );
    let mut models: Vec<Model> = Vec::new();
    for (image, head) in [
        (ImageConfig::tiny_vit(), Head::Tied),
        (ImageConfig::tiny_cnn(), Head::Tied),
        (ImageConfig::tiny_vit(), Head::Separate),
    ] {
        let mut config = ModelConfig::tiny(VOCAB);
        config.image = image;
        config.decoder.head = head;
        models.push(config.init(&mut StdRng::seed_from_u64(0))?);
    }
    let count = |model: &Model, part: &str| -> usize {
        model
            .params()
            .iter()
            .filter(|(name, _)| name == part || name.starts_with(&format!("{part}.")))
            .map(|(_, t)| t.len())
            .sum()
    };
    for part in parts {
        let cells: Vec<String> = models.iter().map(|m| count(m, part).to_string()).collect();
        writeln!(table, "| `{part}` | {} |", cells.join(" | "))?;
    }
    let totals: Vec<String> = models
        .iter()
        .map(|m| format!("**{}**", m.num_params()))
        .collect();
    writeln!(table, "| total | {} |", totals.join(" | "))?;
    writeln!(
        table,
        "\nThe tiny config with a vocabulary of {VOCAB} tokens (`cargo run --release -p model --example chapter`)."
    )?;
    Ok(table)
}
