//! Draws the figures and tables of the chapter "Attention: letting vectors talk".
//!
//! ```text
//! cargo run --release -p attention --example attention_figures
//! ```
//!
//! writes, under `book/src/generated/attention/`:
//! - `masks.svg`: which keys each query may see under `Mask::Causal`,
//!   `Mask::KeyPadding` and both together (`T = 8`, padding length 5);
//! - `weights.svg`: attention weights of position-only attention
//!   (`k = v = ` sinusoidal position codes `PE`, `q = 3·PE`, `T = 24`, `D = 32`),
//!   without a mask and with the causal mask: each token attends most to
//!   itself and its neighbours, and under the causal mask only to the ones
//!   before it (colour saturates at a weight of 0.5);
//! - `memory.md`: the extra memory of the plain and the tiled kernels at the
//!   bench sizes, computed from the shapes.
//!
//! Deterministic: no randomness, no timings.

use std::error::Error;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use attention::{Mask, Tile, attention_forward};
use embedding::sinusoidal_table;
use ndarray::{Array2, Array4, Axis};

fn main() -> Result<(), Box<dyn Error>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap(); // the workspace
    let out_dir = root.join("book/src/generated/attention");
    fs::create_dir_all(&out_dir)?;

    // masks: 1 where query i may see key j
    let seq = 8;
    let masks = [
        ("Mask::Causal", Mask::Causal),
        ("Mask::KeyPadding([5])", Mask::KeyPadding(vec![5])),
        (
            "Mask::CausalKeyPadding([5])",
            Mask::CausalKeyPadding(vec![5]),
        ),
    ];
    let panels: Vec<(String, Array2<f32>)> = masks
        .iter()
        .map(|(name, mask)| {
            let dense = mask.to_dense(1, seq, seq).index_axis_move(Axis(0), 0);
            (name.to_string(), dense.mapv(|v| v as u8 as f32))
        })
        .collect();
    let svg = panels_svg(&panels, 24.0, "key j", "query i", true, 1.0);
    write(&out_dir.join("masks.svg"), &svg)?;

    // position-only attention: q = k = PE, one head
    let (seq, dim) = (24, 32);
    let pe = sinusoidal_table(seq, dim); // [T, D]
    let kv: Array4<f32> = pe.into_shape_with_order((1, 1, seq, dim))?; // [B=1, H=1, T, D]
    let q = &kv * 3.0; // a sharper query: larger scores, a more peaked softmax
    let mut panels = Vec::new();
    for (name, mask) in [("no mask", Mask::None), ("Mask::Causal", Mask::Causal)] {
        let (_, probs) = attention_forward(&q, &kv, &kv, &mask); // [1, 1, T, T]
        let weights = probs
            .index_axis_move(Axis(0), 0)
            .index_axis_move(Axis(0), 0);
        panels.push((format!("softmax(QKᵀ/√D), {name}"), weights));
    }
    let svg = panels_svg(&panels, 12.0, "key j", "query i", false, 0.5);
    write(&out_dir.join("weights.svg"), &svg)?;

    write(&out_dir.join("memory.md"), &memory_table())?;
    Ok(())
}

/// Extra memory of the two kernels at the bench sizes (B = 1, H = 4, D = 64).
fn memory_table() -> String {
    let (batch, n_head, head_dim) = (1usize, 4usize, 64usize);
    let tile = Tile::default();
    let mut md = format!(
        "| T | plain: scores `[B, H, T, T]` | tiled: one tile (at most `[{}, {}]`) + `m`, `l` per worker | output `[B, H, T, D]` (both) |\n| ---: | ---: | ---: | ---: |\n",
        tile.q, tile.kv
    );
    for seq in [64usize, 256, 1024, 4096] {
        let scores = batch * n_head * seq * seq * 4;
        let output = batch * n_head * seq * head_dim * 4;
        writeln!(
            md,
            "| {seq} | {} | {} | {} |",
            human(scores),
            human(tile.scratch_bytes(seq, seq)),
            human(output)
        )
        .unwrap();
    }
    md
}

/// Bytes as KiB/MiB.
fn human(bytes: usize) -> String {
    if bytes >= 1 << 20 {
        format!("{:.1} MiB", bytes as f64 / (1 << 20) as f64)
    } else {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    }
}

/// Writes `text` beside the target, then renames: a reader never sees half a file.
fn write(path: &PathBuf, text: &str) -> Result<(), Box<dyn Error>> {
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, text)?;
    fs::rename(&tmp, path)?;
    println!("wrote {}", path.display());
    Ok(())
}

/// Side-by-side heatmaps: white for 0, dark blue for `vmax` and above.
/// `grid` draws cell borders and prints 0/1 in the cells (for masks).
fn panels_svg(
    panels: &[(String, Array2<f32>)],
    cell: f64,
    x_label: &str,
    y_label: &str,
    grid: bool,
    vmax: f32,
) -> String {
    let (rows, cols) = panels[0].1.dim();
    let (left, top, gap) = (50.0, 40.0, 40.0);
    let panel_w = cols as f64 * cell;
    let width = left + panels.len() as f64 * (panel_w + gap) + 10.0;
    let height = top + rows as f64 * cell + 50.0;
    let mut svg = String::new();
    writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">"#
    )
    .unwrap();
    writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#).unwrap();
    for (p, (title, values)) in panels.iter().enumerate() {
        let x0 = left + p as f64 * (panel_w + gap);
        writeln!(
            svg,
            r#"<text x="{x0}" y="24" font-size="13">{title}</text>"#
        )
        .unwrap();
        for ((r, c), &v) in values.indexed_iter() {
            let (x, y) = (x0 + c as f64 * cell, top + r as f64 * cell);
            let stroke = if grid {
                r##" stroke="#999" stroke-width="0.5""##
            } else {
                ""
            };
            writeln!(
                svg,
                r#"<rect x="{x}" y="{y}" width="{cell}" height="{cell}" fill="{}"{stroke}/>"#,
                colour(v / vmax)
            )
            .unwrap();
            if grid {
                let text = if v > 0.5 { "white" } else { "#555" };
                let label = if v > 0.5 { "1" } else { "−∞" };
                writeln!(
                    svg,
                    r#"<text x="{}" y="{}" text-anchor="middle" font-size="9" fill="{text}">{label}</text>"#,
                    x + cell / 2.0,
                    y + cell / 2.0 + 3.0
                )
                .unwrap();
            }
        }
        let bottom = top + rows as f64 * cell;
        let step = if cols > 12 { 4 } else { 1 };
        for tick in (0..cols).step_by(step) {
            let x = x0 + (tick as f64 + 0.5) * cell;
            writeln!(
                svg,
                r#"<text x="{x}" y="{}" text-anchor="middle" font-size="10">{tick}</text>"#,
                bottom + 13.0
            )
            .unwrap();
        }
        if p == 0 {
            for tick in (0..rows).step_by(step) {
                let y = top + (tick as f64 + 0.5) * cell + 4.0;
                writeln!(
                    svg,
                    r#"<text x="{}" y="{y}" text-anchor="end" font-size="10">{tick}</text>"#,
                    x0 - 5.0
                )
                .unwrap();
            }
        }
        writeln!(
            svg,
            r#"<text x="{}" y="{}" text-anchor="middle">{x_label}</text>"#,
            x0 + panel_w / 2.0,
            bottom + 32.0
        )
        .unwrap();
    }
    let mid_y = top + rows as f64 * cell / 2.0;
    writeln!(
        svg,
        r#"<text x="14" y="{mid_y}" text-anchor="middle" transform="rotate(-90 14 {mid_y})">{y_label}</text>"#
    )
    .unwrap();
    svg.push_str("</svg>\n");
    svg
}

/// White (0) to dark blue (1).
fn colour(v: f32) -> String {
    let v = v.clamp(0.0, 1.0);
    let (r, g, b) = (
        255.0 - v * (255.0 - 8.0),
        255.0 - v * (255.0 - 48.0),
        255.0 - v * (255.0 - 107.0),
    );
    format!(
        "rgb({},{},{})",
        r.round() as u8,
        g.round() as u8,
        b.round() as u8
    )
}
