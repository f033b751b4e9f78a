//! Attention maps as pictures: a grid of weights over image tokens,
//! upscaled to the image and laid over it, and tiles of such pictures
//! assembled into one PNG.
//!
//! The image tokens of both towers form a square grid: the CNN's final
//! `8×8` feature map read row by row, or the ViT's patches row by row
//! (after its CLS token). A weight on token `i` is a weight on the pixels of
//! cell `(i / side, i % side)`; nearest-neighbour upscaling shows exactly
//! those cells, without inventing a smoother map than the model computed.

use ndarray::{Array2, Array3, ArrayRef1, ArrayRef2, ArrayRef3};

/// Weights over `side²` tokens as a `side × side` grid, row by row.
///
/// # Panics
/// If the number of weights is not a square.
#[track_caller]
pub fn to_grid(weights: &ArrayRef1<f32>) -> Array2<f32> {
    let n = weights.len();
    let side = grid_side(n).unwrap_or_else(|| panic!("to_grid: {n} weights are not a square grid"));
    Array2::from_shape_fn((side, side), |(r, c)| weights[r * side + c])
}

/// The side of a square grid of `n` tokens, if `n` is a square.
pub fn grid_side(n: usize) -> Option<usize> {
    let side = (n as f64).sqrt().round() as usize;
    (side * side == n && n > 0).then_some(side)
}

// ANCHOR: upscale
/// Repeats each cell of `map` over the block of pixels it covers.
///
/// # Shapes
/// - `map: [h, w]` → `[height, width]`; cell `(r, c)` covers rows
///   `r·height/h ..` and columns `c·width/w ..`.
///
/// # Panics
/// If `map` is empty.
#[track_caller]
pub fn upscale_nearest(map: &ArrayRef2<f32>, height: usize, width: usize) -> Array2<f32> {
    let (h, w) = map.dim();
    assert!(h > 0 && w > 0, "upscale: an empty map {:?}", map.dim());
    Array2::from_shape_fn((height, width), |(y, x)| {
        map[[y * h / height, x * w / width]]
    })
}
// ANCHOR_END: upscale

/// Divides by the largest value, so the strongest cell is 1 (a map of
/// zeros stays zero). Attention weights are non-negative, so the result
/// lies in `[0, 1]`.
pub fn normalise_max(map: &ArrayRef2<f32>) -> Array2<f32> {
    let max = map.iter().copied().fold(0.0f32, f32::max);
    if max > 0.0 {
        map.mapv(|a| (a / max).clamp(0.0, 1.0))
    } else {
        map.mapv(|_| 0.0)
    }
}

/// A heat colour for `a ∈ [0, 1]`: black, red, yellow, white.
pub fn heat(a: f32) -> [f32; 3] {
    let a = a.clamp(0.0, 1.0);
    [
        (3.0 * a).min(1.0),
        (3.0 * a - 1.0).clamp(0.0, 1.0),
        (3.0 * a - 2.0).clamp(0.0, 1.0),
    ]
}

// ANCHOR: overlay
/// Lays a heat map over an image: each pixel is a mix of the image
/// (dimmed) and the heat colour, the heat's share growing with its value.
///
/// # Shapes
/// - `image: [3, H, W]` in `[0, 1]`, `map: [h, w]` in `[0, 1]` (upscaled to
///   `H × W`) → `[3, H, W]` in `[0, 1]`
///
/// # Panics
/// If `image` does not have 3 channels.
#[track_caller]
pub fn overlay(image: &ArrayRef3<f32>, map: &ArrayRef2<f32>) -> Array3<f32> {
    let (channels, height, width) = image.dim();
    assert_eq!(channels, 3, "overlay: an image of {:?}", image.dim());
    let map = upscale_nearest(map, height, width);
    Array3::from_shape_fn((3, height, width), |(c, y, x)| {
        let a = map[[y, x]].clamp(0.0, 1.0);
        let mix = 0.75 * a;
        let pixel = image[[c, y, x]].clamp(0.0, 1.0);
        ((1.0 - mix) * 0.6 * pixel + mix * heat(a)[c]).clamp(0.0, 1.0)
    })
}
// ANCHOR_END: overlay

/// Rows of equally sized `[3, H, W]` tiles as one RGB picture: each tile
/// scaled up `scale` times (nearest neighbour), with a white gap of `gap`
/// pixels around every tile. Rows may differ in length; the picture is as
/// wide as the longest.
///
/// # Panics
/// If there are no tiles, or the tiles differ in size.
#[track_caller]
pub fn tile_rows(rows: &[Vec<Array3<f32>>], scale: usize, gap: usize) -> image::RgbImage {
    let first = rows.iter().flatten().next().expect("tile_rows: no tiles");
    let (_, h, w) = first.dim();
    let (th, tw) = (h * scale, w * scale);
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let width = gap + columns * (tw + gap);
    let height = gap + rows.len() * (th + gap);
    let mut picture =
        image::RgbImage::from_pixel(width as u32, height as u32, image::Rgb([255; 3]));
    for (r, row) in rows.iter().enumerate() {
        for (c, tile) in row.iter().enumerate() {
            assert_eq!(
                tile.dim(),
                first.dim(),
                "tile_rows: tile ({r}, {c}) differs in size"
            );
            let (x0, y0) = (gap + c * (tw + gap), gap + r * (th + gap));
            for y in 0..th {
                for x in 0..tw {
                    let px = |ch: usize| {
                        (tile[[ch, y / scale, x / scale]].clamp(0.0, 1.0) * 255.0).round() as u8
                    };
                    picture.put_pixel(
                        (x0 + x) as u32,
                        (y0 + y) as u32,
                        image::Rgb([px(0), px(1), px(2)]),
                    );
                }
            }
        }
    }
    picture
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array1, array};

    #[test]
    fn tokens_become_a_grid_row_by_row() {
        let g = to_grid(&Array1::from_iter((0..16).map(|i| i as f32)));
        assert_eq!(g.dim(), (4, 4));
        assert_eq!(g[[1, 2]], 6.0);
        assert_eq!(grid_side(64), Some(8));
        assert_eq!(grid_side(65), None);
        assert_eq!(grid_side(0), None);
    }

    #[test]
    fn upscaling_repeats_each_cell_over_its_block() {
        let map = array![[1.0f32, 2.0], [3.0, 4.0]];
        let up = upscale_nearest(&map, 4, 6);
        assert_eq!(up.dim(), (4, 6));
        assert_eq!(up.row(0).to_vec(), vec![1.0, 1.0, 1.0, 2.0, 2.0, 2.0]);
        assert_eq!(up.row(3).to_vec(), vec![3.0, 3.0, 3.0, 4.0, 4.0, 4.0]);
        // each value covers exactly its share of the pixels
        assert_eq!(up.iter().filter(|&&a| a == 4.0).count(), 6);
    }

    #[test]
    fn overlays_stay_in_range_and_follow_the_map() {
        let image = Array3::from_elem((3, 8, 8), 0.5f32);
        let map = normalise_max(&array![[0.0f32, 0.2], [0.1, 0.4]]);
        assert_eq!(map[[1, 1]], 1.0);
        assert_eq!(map[[0, 0]], 0.0);
        let out = overlay(&image, &map);
        assert_eq!(out.dim(), (3, 8, 8));
        assert!(out.iter().all(|&a| (0.0..=1.0).contains(&a)));
        // the strongest cell is the reddest, the empty one keeps the dimmed image
        let red = |y: usize, x: usize| out[[0, y, x]];
        assert!(red(7, 7) > red(0, 0));
        assert_eq!(out[[1, 0, 0]], 0.3);
        // a map of zeros stays zero
        assert!(
            normalise_max(&Array2::zeros((2, 2)))
                .iter()
                .all(|&a| a == 0.0)
        );
    }

    #[test]
    fn heat_runs_from_black_to_white() {
        assert_eq!(heat(0.0), [0.0, 0.0, 0.0]);
        assert_eq!(heat(1.0), [1.0, 1.0, 1.0]);
        assert_eq!(heat(2.0), heat(1.0));
    }

    #[test]
    fn tiles_are_laid_out_with_gaps() {
        let white = Array3::from_elem((3, 2, 2), 1.0f32);
        let black = Array3::zeros((3, 2, 2));
        let picture = tile_rows(
            &[vec![black.clone(), black.clone(), black], vec![white]],
            3,
            1,
        );
        // 3 columns of 6 px and 4 gaps; 2 rows of 6 px and 3 gaps
        assert_eq!(picture.dimensions(), (22, 15));
        assert_eq!(picture.get_pixel(1, 1).0, [0, 0, 0]); // first tile
        assert_eq!(picture.get_pixel(0, 0).0, [255, 255, 255]); // the gap
        assert_eq!(picture.get_pixel(1, 8).0, [255, 255, 255]); // the white tile
        assert_eq!(picture.get_pixel(10, 10).0, [255, 255, 255]); // past the short row
    }
}
