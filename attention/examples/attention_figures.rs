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
//!   bench sizes, computed from the shapes;
//! - `worked_example.md`: attention on three tokens of width 2, every
//!   number of `Q Kᵀ/√D`, the softmax and `P V` printed, the weights and
//!   outputs taken from `attention_forward` itself.
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
    write(&out_dir.join("worked_example.md"), &worked_example())?;
    Ok(())
}

/// `(0.500, 1.000)`
fn vector(v: &[f32]) -> String {
    let parts: Vec<String> = v.iter().map(|x| format!("{x:.3}")).collect();
    format!("({})", parts.join(", "))
}

/// `(0, 2)`, `(1, 0.5)`: a hand-chosen input as written.
fn input(v: &[f32]) -> String {
    let parts: Vec<String> = v.iter().map(|x| format!("{x}")).collect();
    format!("({})", parts.join(", "))
}

/// One number of a table cell: 3 decimals, `0` for an exact zero.
fn cell(x: f32) -> String {
    if x == 0.0 {
        "0".to_string()
    } else {
        format!("{x:.3}")
    }
}

/// Attention by hand on three tokens of width 2: scores, softmax, output.
/// The weights and outputs printed are those of `attention_forward`; the
/// scores and exponentials are recomputed here to show the steps, and
/// checked against the kernel's weights.
fn worked_example() -> String {
    let tokens = ["a", "red", "circle"];
    // chosen by hand: `circle` asks for what `red` offers
    let q = [[0.0f32, 0.0], [1.0, 0.0], [0.0, 2.0]];
    let k = [[1.0f32, 0.0], [0.0, 1.0], [1.0, 0.5]];
    let v = [[1.0f32, 0.0], [0.0, 1.0], [1.0, 1.0]];
    let (t, d) = (tokens.len(), q[0].len());
    let as4 = |m: &[[f32; 2]; 3]| {
        Array4::from_shape_fn((1, 1, t, d), |(_, _, i, j)| m[i][j]) // [B=1, H=1, T, D]
    };
    let (q4, k4, v4) = (as4(&q), as4(&k), as4(&v));
    let scale = 1.0 / (d as f32).sqrt();
    let mut md = format!(
        "Three tokens, one head of width $D = {d}$. The numbers are chosen by hand so \
         that `circle`'s query points the way `red`'s key does:\n\n\
         | token | query $q$ | key $k$ | value $v$ |\n| --- | --- | --- | --- |\n"
    );
    for i in 0..t {
        let _ = writeln!(
            md,
            "| `{}` | {} | {} | {} |",
            tokens[i],
            input(&q[i]),
            input(&k[i]),
            input(&v[i])
        );
    }

    // 1. scores
    let s = Array2::from_shape_fn((t, t), |(i, j)| {
        (q[i][0] * k[j][0] + q[i][1] * k[j][1]) * scale
    });
    let header = |first: &str| {
        let mut h = format!("| {first} |");
        for tok in tokens {
            let _ = write!(h, " key `{tok}` |");
        }
        h + "\n| --- |" + &" ---: |".repeat(t) + "\n"
    };
    let _ = write!(
        md,
        "\n**1. Scores.** $S = Q K^\\top / \\sqrt{{{d}}}$: row $i$ is query $i$, column \
         $j$ is key $j$, each cell one dot product divided by $\\sqrt{{{d}}} = {:.3}$.\n\n{}",
        (d as f32).sqrt(),
        header("")
    );
    for i in 0..t {
        let row: Vec<String> = (0..t).map(|j| cell(s[[i, j]])).collect();
        let _ = writeln!(md, "| query `{}` | {} |", tokens[i], row.join(" | "));
    }
    let (i, j) = (2, 1);
    let _ = writeln!(
        md,
        "\nFor example $S_{{\\text{{{}}},\\,\\text{{{}}}}} = ({} \\cdot {} + {} \\cdot {}) / {:.3} = {:.3}$.",
        tokens[i],
        tokens[j],
        q[i][0],
        k[j][0],
        q[i][1],
        k[j][1],
        (d as f32).sqrt(),
        s[[i, j]]
    );

    // 2. softmax, the kernel's weights
    let (out, probs) = attention_forward(&q4, &k4, &v4, &Mask::None); // [1, 1, T, D], [1, 1, T, T]
    let _ = write!(
        md,
        "\n**2. Softmax of each row.** Every score becomes $e^{{s}}$, and each is divided \
         by its row's sum, so a row of weights is positive and sums to one:\n\n\
         | query | $e^{{s}}$ for the keys | row sum | weights $P$ for `{}`, `{}`, `{}` |\n\
         | --- | --- | ---: | --- |\n",
        tokens[0], tokens[1], tokens[2]
    );
    for i in 0..t {
        let e: Vec<f32> = (0..t).map(|j| s[[i, j]].exp()).collect();
        let sum: f32 = e.iter().sum();
        for j in 0..t {
            let by_hand = e[j] / sum;
            assert!(
                (by_hand - probs[[0, 0, i, j]]).abs() < 1e-6,
                "the kernel's softmax differs from the hand computation"
            );
        }
        let p: Vec<f32> = (0..t).map(|j| probs[[0, 0, i, j]]).collect();
        let _ = writeln!(
            md,
            "| `{}` | {} | {:.3} | {} |",
            tokens[i],
            vector(&e),
            sum,
            vector(&p)
        );
    }

    // 3. output
    let _ = write!(
        md,
        "\n**3. Output.** $O = P V$: each token's output is its weights times the values, \
         a weighted average of the three value vectors:\n\n\
         | token | $o = \\sum_j p_j v_j$ |\n| --- | --- |\n"
    );
    for i in 0..t {
        let terms: Vec<String> = (0..t)
            .map(|j| format!("{:.3}·{}", probs[[0, 0, i, j]], input(&v[j])))
            .collect();
        let o: Vec<f32> = (0..d).map(|c| out[[0, 0, i, c]]).collect();
        let _ = writeln!(
            md,
            "| `{}` | {} = **{}** |",
            tokens[i],
            terms.join(" + "),
            vector(&o)
        );
    }

    // the same with the causal mask
    let (out_c, probs_c) = attention_forward(&q4, &k4, &v4, &Mask::Causal);
    let _ = write!(
        md,
        "\n**With the causal mask** each query sees only the keys up to its own position \
         (the others' scores are $-\\infty$, their $e^{{s}}$ is 0):\n\n\
         | token | weights $P$ | output $o$ |\n| --- | --- | --- |\n"
    );
    for i in 0..t {
        let p: Vec<f32> = (0..t).map(|j| probs_c[[0, 0, i, j]]).collect();
        let o: Vec<f32> = (0..d).map(|c| out_c[[0, 0, i, c]]).collect();
        let _ = writeln!(md, "| `{}` | {} | {} |", tokens[i], vector(&p), vector(&o));
    }
    md
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
