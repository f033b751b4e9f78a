//! Draws the figures of the chapter "Embeddings: from IDs to vectors".
//!
//! ```text
//! cargo run --release -p embedding --example positions
//! ```
//!
//! writes, under `book/src/generated/embedding/`:
//! - `sinusoidal.svg`: the sinusoidal table `PE: [64 positions, 64 channels]`;
//! - `similarity.svg`: the cosine of `PE[t]` and `PE[t']` for every pair of positions, which
//!   depends only on the distance `t − t'`: the table encodes *relative* position;
//! - `one_hot.md`: the one-hot identity checked on numbers.

use std::error::Error;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use embedding::{Embedding, sinusoidal_table};
use ndarray::{Array2, array};

const POSITIONS: usize = 64;
const CHANNELS: usize = 64;

fn main() -> Result<(), Box<dyn Error>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap(); // the workspace
    let out_dir = root.join("book/src/generated/embedding");
    fs::create_dir_all(&out_dir)?;

    let table = sinusoidal_table(POSITIONS, CHANNELS); // [T, C]
    let svg = heatmap(
        &table,
        "Sinusoidal positional encoding",
        "channel c (pairs turn slower to the right)",
        "position t",
    );
    write(&out_dir.join("sinusoidal.svg"), &svg)?;

    // every row has length² = C/2 (one sin² + cos² = 1 per pair), so this is the cosine
    let similarity = table.dot(&table.t()) / (CHANNELS as f32 / 2.0); // [T, T]
    let svg = heatmap(
        &similarity,
        "cosine similarity of PE[t] and PE[t']",
        "position t'",
        "position t",
    );
    write(&out_dir.join("similarity.svg"), &svg)?;

    write(&out_dir.join("one_hot.md"), &one_hot_table())?;
    Ok(())
}

/// A small worked example of `one_hot(id) · W = W[id]`, as a markdown table.
fn one_hot_table() -> String {
    let weight = array![[0.1f32, -0.2], [0.7, 0.3], [-0.5, 0.9], [0.4, 0.0]]; // [V = 4, C = 2]
    let table = Embedding::new(weight.clone());
    let ids = array![[2u32, 0, 2]];
    let (out, _) = table.forward(&ids);
    let mut md = String::from(
        "| id | one-hot row | one-hot · W | W[id] (lookup) |\n| --- | --- | --- | --- |\n",
    );
    for (t, &id) in ids.iter().enumerate() {
        let one_hot: Vec<f32> = (0..weight.nrows())
            .map(|v| (v == id as usize) as u8 as f32)
            .collect();
        let product = Array2::from_shape_vec((1, one_hot.len()), one_hot.clone())
            .unwrap()
            .dot(&weight); // [1, C]
        let lookup = out.slice(ndarray::s![0, t, ..]);
        writeln!(
            md,
            "| {id} | {one_hot:?} | {:?} | {:?} |",
            product.row(0).to_vec(),
            lookup.to_vec()
        )
        .unwrap();
    }
    md
}

/// Writes `text` beside the target, then renames: a reader never sees half a file.
fn write(path: &PathBuf, text: &str) -> Result<(), Box<dyn Error>> {
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, text)?;
    fs::rename(&tmp, path)?;
    println!("wrote {}", path.display());
    Ok(())
}

/// A heatmap of values in [-1, 1] as an SVG: blue for −1, white for 0, red for +1.
fn heatmap(values: &Array2<f32>, title: &str, x_label: &str, y_label: &str) -> String {
    let (rows, cols) = values.dim();
    let cell = 6.0;
    let (left, top) = (60.0, 40.0);
    let width = left + cols as f64 * cell + 90.0;
    let height = top + rows as f64 * cell + 50.0;
    let mut svg = String::new();
    writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">"#
    )
    .unwrap();
    writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#).unwrap();
    writeln!(
        svg,
        r#"<text x="{left}" y="20" font-size="14">{title}</text>"#
    )
    .unwrap();
    for ((r, c), &v) in values.indexed_iter() {
        let (x, y) = (left + c as f64 * cell, top + r as f64 * cell);
        writeln!(
            svg,
            r#"<rect x="{x}" y="{y}" width="{cell}" height="{cell}" fill="{}"/>"#,
            colour(v)
        )
        .unwrap();
    }
    let bottom = top + rows as f64 * cell;
    for tick in (0..cols).step_by(16) {
        let x = left + (tick as f64 + 0.5) * cell;
        writeln!(
            svg,
            r#"<text x="{x}" y="{}" text-anchor="middle">{tick}</text>"#,
            bottom + 14.0
        )
        .unwrap();
    }
    for tick in (0..rows).step_by(16) {
        let y = top + (tick as f64 + 0.5) * cell + 4.0;
        writeln!(
            svg,
            r#"<text x="{}" y="{y}" text-anchor="end">{tick}</text>"#,
            left - 6.0
        )
        .unwrap();
    }
    let mid_x = left + cols as f64 * cell / 2.0;
    writeln!(
        svg,
        r#"<text x="{mid_x}" y="{}" text-anchor="middle">{x_label}</text>"#,
        bottom + 34.0
    )
    .unwrap();
    let mid_y = top + rows as f64 * cell / 2.0;
    writeln!(
        svg,
        r#"<text x="16" y="{mid_y}" text-anchor="middle" transform="rotate(-90 16 {mid_y})">{y_label}</text>"#
    )
    .unwrap();
    // colour bar
    let bar_x = left + cols as f64 * cell + 20.0;
    for i in 0..=20 {
        let v = 1.0 - i as f32 / 10.0;
        let y = top + i as f64 * 8.0;
        writeln!(
            svg,
            r#"<rect x="{bar_x}" y="{y}" width="14" height="8" fill="{}"/>"#,
            colour(v)
        )
        .unwrap();
    }
    for (v, i) in [("+1", 0), ("0", 10), ("−1", 20)] {
        let y = top + i as f64 * 8.0 + 8.0;
        writeln!(svg, r#"<text x="{}" y="{y}">{v}</text>"#, bar_x + 20.0).unwrap();
    }
    svg.push_str("</svg>\n");
    svg
}

/// Diverging colour map on [-1, 1].
fn colour(v: f32) -> String {
    let v = v.clamp(-1.0, 1.0);
    let fade = |t: f32| (255.0 * (1.0 - t)).round() as u8;
    let (r, g, b) = if v >= 0.0 {
        (255, fade(v), fade(v))
    } else {
        (fade(-v), fade(-v), 255)
    };
    format!("#{r:02x}{g:02x}{b:02x}")
}
