//! The figures and tables of the book's vision chapter.
//!
//! ```text
//! cargo run --release -p vision --example vision_figures
//! ```
//!
//! Writes under `book/src/generated/vision/`:
//! - `scene.png`: a synthetic 32×32 scene (three shapes on a noisy background);
//! - `patch_grid.png`, `patch_sequence.png`: the scene cut into 8×8 patches,
//!   and the same patches laid out as the token sequence a ViT reads;
//! - `edge_maps.png`: three hand-set 3×3 kernels (vertical edges, horizontal
//!   edges, "red") after ReLU, full size and after 2×2 max pooling;
//! - `random_maps.png`: the 32 maps of the first block of a seeded, untrained CNN;
//! - `receptive_field.svg`: the pixels one grid vector of the CNN depends on;
//! - `shapes.md`: every stage of the default CNN and ViT with its output
//!   shape, receptive field and parameter count.
//!
//! Everything is seeded and uses the direct convolution (a fixed order of
//! additions), so the files are identical on every run and machine.

use std::error::Error;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use embedding::init;
use ndarray::{Array2, Array3, Array4, ArrayRef2, Axis, s};
use rand::SeedableRng;
use rand::rngs::StdRng;
use vision::{CnnConfig, Conv2d, MaxPool2d, Preprocess, Relu, conv_output_size, save_png};

const SIDE: usize = 32; // the toy dataset's image size
const PATCH: usize = 8;
const ZOOM: usize = 8; // figures are upscaled so single pixels stay visible

fn out_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../book/src/generated/vision")
}

/// A 32×32 RGB scene in `[0, 1]`: a red disc, a blue square and a yellow
/// triangle on a light, slightly noisy background. `[3, H, W]`.
fn scene() -> Array3<f32> {
    let mut rng = StdRng::seed_from_u64(7);
    let noise: Array2<f32> = init::normal((SIDE, SIDE), 0.03, &mut rng);
    Array3::from_shape_fn((3, SIDE, SIDE), |(c, y, x)| {
        let (fy, fx) = (y as f32 + 0.5, x as f32 + 0.5); // pixel centre
        let disc = (fx - 10.0).powi(2) + (fy - 10.0).powi(2) <= 36.0; // centre (10, 10), radius 6
        let square = (18.0..29.0).contains(&fx) && (4.0..15.0).contains(&fy);
        let triangle = (17.0..=29.0).contains(&fy) && (fx - 16.0).abs() <= (fy - 17.0) * 0.6;
        let colour = if disc {
            [0.9, 0.15, 0.1]
        } else if square {
            [0.15, 0.3, 0.85]
        } else if triangle {
            [0.95, 0.85, 0.1]
        } else {
            [0.92 - 0.004 * fy, 0.93 - 0.004 * fy, 0.95] // a faint vertical gradient
        };
        (colour[c] + noise[[y, x]]).clamp(0.0, 1.0)
    })
}

/// Nearest-neighbour upscaling by `zoom`: `[C, H, W]` → `[C, zoom·H, zoom·W]`.
fn upscale(image: &Array3<f32>, zoom: usize) -> Array3<f32> {
    let (c, h, w) = image.dim();
    Array3::from_shape_fn((c, h * zoom, w * zoom), |(c, y, x)| {
        image[[c, y / zoom, x / zoom]]
    })
}

/// A map scaled to `[0, 1]` by its maximum (all-zero maps stay black). `[1, H, W]`.
fn normalised(map: &ArrayRef2<f32>) -> Array3<f32> {
    let max = map.iter().cloned().fold(0.0f32, f32::max);
    let scale = if max > 0.0 { 1.0 / max } else { 0.0 };
    map.mapv(|v| v * scale).insert_axis(Axis(0))
}

/// Tiles `[C, h, w]` images into a `rows × cols` sheet with `gap` white pixels between.
fn tile(tiles: &[Array3<f32>], cols: usize, gap: usize) -> Array3<f32> {
    let (c, h, w) = tiles[0].dim();
    let rows = tiles.len().div_ceil(cols);
    let mut sheet = Array3::ones((c, rows * (h + gap) - gap, cols * (w + gap) - gap));
    for (i, t) in tiles.iter().enumerate() {
        let (y, x) = ((i / cols) * (h + gap), (i % cols) * (w + gap));
        sheet.slice_mut(s![.., y..y + h, x..x + w]).assign(t);
    }
    sheet
}

fn patch_figures(scene: &Array3<f32>, dir: &Path) -> Result<(), Box<dyn Error>> {
    // the grid: white lines along patch borders on the upscaled scene
    let mut grid = upscale(scene, ZOOM);
    let step = PATCH * ZOOM;
    let side = SIDE * ZOOM;
    for k in (step..side).step_by(step) {
        grid.slice_mut(s![.., k - 1..k + 1, ..]).fill(1.0);
        grid.slice_mut(s![.., .., k - 1..k + 1]).fill(1.0);
    }
    save_png(&grid, dir.join("patch_grid.png"))?;

    // the sequence: patch n = gy·4 + gx, left to right, as the ViT reads them
    let patches: Vec<Array3<f32>> = (0..(SIDE / PATCH).pow(2))
        .map(|n| {
            let (gy, gx) = (n / (SIDE / PATCH), n % (SIDE / PATCH));
            let patch = scene.slice(s![
                ..,
                gy * PATCH..(gy + 1) * PATCH,
                gx * PATCH..(gx + 1) * PATCH
            ]);
            upscale(&patch.to_owned(), 4)
        })
        .collect();
    save_png(
        &tile(&patches, patches.len(), 6),
        dir.join("patch_sequence.png"),
    )?;
    Ok(())
}

/// Three hand-set kernels over RGB: Sobel x and Sobel y on the grey image,
/// and a 1×1 "red minus the rest" in the centre tap. `[3, 3, 3, 3]`.
fn edge_detector() -> Conv2d {
    let sobel_x = [[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]];
    let weight = Array4::from_shape_fn((3, 3, 3, 3), |(o, c, i, j)| match o {
        0 => sobel_x[i][j] / 3.0, // dark → light, left to right
        1 => sobel_x[j][i] / 3.0, // dark → light, top to bottom
        _ if (i, j) == (1, 1) => [1.0, -0.5, -0.5][c], // red, not white
        _ => 0.0,
    });
    Conv2d::new(weight, None, 1, 1)
}

fn feature_maps(scene: &Array3<f32>, dir: &Path) -> Result<(), Box<dyn Error>> {
    // through the real pipeline: 8-bit RGB (as if loaded from a file), then normalised
    let raw = Preprocess {
        mean: [0.0; 3],
        std: [1.0; 3],
        ..Preprocess::default()
    };
    let rgb = raw.to_image(scene);
    let x = Preprocess::default().to_tensor(&rgb).insert_axis(Axis(0)); // [1, 3, 32, 32]

    // hand-set kernels: conv → ReLU (row 1), then 2×2 max pooling (row 2)
    let (maps, _) = edge_detector().forward_direct(&x); // [1, 3, 32, 32]
    let (maps, _) = Relu.forward(&maps);
    let (pooled, _) = MaxPool2d::new(2).forward(&maps); // [1, 3, 16, 16]
    let mut tiles: Vec<Array3<f32>> = (0..3)
        .map(|o| upscale(&normalised(&maps.slice(s![0, o, .., ..])), 4))
        .collect();
    tiles.extend((0..3).map(|o| upscale(&normalised(&pooled.slice(s![0, o, .., ..])), 8)));
    save_png(&tile(&tiles, 3, 8), dir.join("edge_maps.png"))?;

    // a seeded, untrained CNN: its first block's 32 maps (conv → ReLU → pool)
    let cnn = CnnConfig::default().init(&mut StdRng::seed_from_u64(0));
    let block = &cnn.blocks[0];
    let (h, _) = block.conv.forward_direct(&x);
    let (h, _) = Relu.forward(&h);
    let (h, _) = block.pool.forward(&h); // [1, 32, 16, 16]
    let tiles: Vec<Array3<f32>> = (0..h.dim().1)
        .map(|o| upscale(&normalised(&h.slice(s![0, o, .., ..])), 4))
        .collect();
    save_png(&tile(&tiles, 8, 4), dir.join("random_maps.png"))?;
    Ok(())
}

/// `receptive_field.svg`: one row of cells per stage of the default CNN
/// (along one axis), with the cells that output 3 of the last map depends on
/// filled in. Walking back through a layer with kernel `k`, stride `s` and
/// padding `p`, outputs `a..=b` read inputs `a·s − p ..= b·s − p + k − 1`.
fn receptive_field_svg(dir: &Path) -> Result<(), Box<dyn Error>> {
    let cnn = CnnConfig::default().init(&mut StdRng::seed_from_u64(0));
    // (label, length, kernel, stride, padding) of each stage, input first
    let mut stages: Vec<(String, usize, usize, usize, usize)> = Vec::new();
    let mut len = SIDE;
    for (i, block) in cnn.blocks.iter().enumerate() {
        let (k, _) = block.conv.kernel_size();
        let (s, p) = (block.conv.stride, block.conv.padding);
        stages.push((format!("conv {i} ({k}×{k})"), len, k, s, p));
        len = conv_output_size(len, k, s, p);
        let pk = block.pool.kernel;
        stages.push((
            format!("pool {i} ({pk}×{pk})"),
            len,
            pk,
            block.pool.stride,
            0,
        ));
        len = conv_output_size(len, pk, block.pool.stride, 0);
    }
    // walk back from output 3 of the last map
    let mut rows = vec![(String::new(), len, (3isize, 3isize))];
    let (mut a, mut b) = (3isize, 3isize);
    for (label, in_len, k, s, p) in stages.iter().rev() {
        let (s, p, k) = (*s as isize, *p as isize, *k as isize);
        a = (a * s - p).max(0);
        b = (b * s - p + k - 1).min(*in_len as isize - 1);
        rows.push((label.clone(), *in_len, (a, b)));
    }
    rows.reverse(); // input first
    // name each row by the stage that produced it
    for (row, (label, ..)) in rows.iter_mut().skip(1).zip(&stages) {
        row.0 = format!("after {label}");
    }
    rows[0].0 = "input pixels".to_string();
    let (cell, gap, left, top) = (18, 30, 120, 20);
    let width = left + SIDE * cell + 10;
    let height = top + rows.len() * (cell + gap);
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {width} {height}\" width=\"100%\" \
         style=\"max-width: {width}px; font-family: sans-serif; font-size: 12px;\" role=\"img\" \
         aria-label=\"The receptive field of one output of the CNN, stage by stage\">\n"
    );
    for (r, (label, len, (a, b))) in rows.iter().enumerate() {
        let y = top + r * (cell + gap);
        // a map of `len` cells spans the same width as the input: each cell is SIDE/len pixels wide
        let w = SIDE * cell / len;
        let label = if r == 0 {
            "input pixels".to_string()
        } else {
            label.clone()
        };
        writeln!(
            svg,
            "<text x=\"0\" y=\"{}\" fill=\"currentColor\">{label}</text>",
            y + cell - 5
        )?;
        for i in 0..*len {
            let fill = if (*a..=*b).contains(&(i as isize)) {
                "#e4572e"
            } else {
                "none"
            };
            writeln!(
                svg,
                "<rect x=\"{}\" y=\"{y}\" width=\"{w}\" height=\"{cell}\" fill=\"{fill}\" stroke=\"currentColor\" stroke-width=\"0.5\"/>",
                left + i * w
            )?;
        }
        let count = b - a + 1;
        writeln!(
            svg,
            "<text x=\"{}\" y=\"{}\" fill=\"currentColor\">{count} of {len}</text>",
            left,
            y + cell + 14
        )?;
    }
    svg.push_str("</svg>\n");
    std::fs::write(dir.join("receptive_field.svg"), svg)?;
    Ok(())
}

fn main() -> Result<(), Box<dyn Error>> {
    let dir = out_dir();
    std::fs::create_dir_all(&dir)?;
    let scene = scene();
    save_png(&upscale(&scene, ZOOM), dir.join("scene.png"))?;
    patch_figures(&scene, &dir)?;
    feature_maps(&scene, &dir)?;
    receptive_field_svg(&dir)?;
    // the sizes the chapter quotes about these pictures, so its text follows the code
    let facts = [
        ("scene_size", SIDE),
        ("patch", PATCH),
        ("patch_grid", SIDE / PATCH),
        ("patches", (SIDE / PATCH).pow(2)),
        ("patch_numbers", 3 * PATCH * PATCH),
    ];
    let mut text =
        String::from("Sizes of the vision chapter's pictures, included inline by the chapter.\n");
    for (name, value) in facts {
        text += &format!("ANCHOR: {name}\n{value}\nANCHOR_END: {name}\n");
    }
    std::fs::write(dir.join("figure_facts.txt"), text)?;
    println!(
        "wrote book/src/generated/vision/{{scene,patch_grid,patch_sequence,edge_maps,random_maps}}.png, receptive_field.svg and figure_facts.txt"
    );
    Ok(())
}
