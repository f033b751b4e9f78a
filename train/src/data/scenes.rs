//! Scenes of several objects, the pictures the multimodal LLM is asked
//! about.
//!
//! A [`GridScene`] holds 1 to [`MAX_OBJECTS`] objects of the toy world
//! ([`Shape`], [`Colour`], [`Size`]), each in its own cell of a 3×3 grid:
//!
//! ```text
//! top left     top middle     top right
//! middle left  middle         middle right
//! bottom left  bottom middle  bottom right
//! ```
//!
//! One object a cell means objects never overlap, and "where is …", "what
//! is left of …" and "what is closest to …" always have a clear answer:
//! positions and distances are those of the cells, and the jitter inside a
//! cell ([`GridScene::render`]) is too small to change them.
//!
//! The canvas is larger than the 32×32 of single objects: the objects keep
//! the toy world's sizes (half-sizes 3.5 and 6.5 pixels, where the small
//! cross and ring are still told apart), so a cell must hold a big object
//! (13 pixels) with a pixel to spare on each side: 15 pixels, a side of at
//! least [`MIN_SIDE`] = 45. [`DEFAULT_SIDE`] is 48: cells of 16 pixels, a
//! side that 8×8 patches and three 2×2 poolings both divide (a 6×6 grid of
//! 36 image tokens).

use super::toy::{BACKGROUND, NOISE, article, draw};
use super::{World, is_held_out};
use crate::data::{Colour, Shape, Size};
use ndarray::Array3;
use rand::Rng;
use rand::seq::SliceRandom;

/// Cells per side of the grid.
pub const GRID: usize = 3;
/// Most objects a scene holds.
pub const MAX_OBJECTS: usize = 6;
/// The default side of a scene's canvas in pixels.
pub const DEFAULT_SIDE: usize = 48;
/// The smallest side whose cells hold a big object with a pixel to spare.
pub const MIN_SIDE: usize = 45;
/// The largest side accepted (bounds the memory a flag can ask for).
pub const MAX_SIDE: usize = 256;

/// One cell of the 3×3 grid; row 0 is the top, column 0 the left.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cell {
    pub row: usize,
    pub col: usize,
}

impl Cell {
    /// Every cell in reading order (top row first, left to right).
    pub const ALL: [Cell; 9] = {
        let mut all = [Cell { row: 0, col: 0 }; 9];
        let mut i = 0;
        while i < 9 {
            all[i] = Cell {
                row: i / GRID,
                col: i % GRID,
            };
            i += 1;
        }
        all
    };

    /// The words in captions and answers (`top left`, `middle`, …).
    pub fn words(self) -> &'static str {
        const WORDS: [&str; 9] = [
            "top left",
            "top middle",
            "top right",
            "middle left",
            "middle",
            "middle right",
            "bottom left",
            "bottom middle",
            "bottom right",
        ];
        WORDS[self.row * GRID + self.col]
    }

    /// The squared distance to `other`, in cells (1 for side by side, 2 for
    /// diagonal neighbours, 4 for two apart, …).
    pub fn distance2(self, other: Cell) -> usize {
        self.row.abs_diff(other.row).pow(2) + self.col.abs_diff(other.col).pow(2)
    }

    /// The cell's centre in pixels `(x, y)` on a canvas of side `side`.
    pub fn centre(self, side: usize) -> (f32, f32) {
        let cell = side as f32 / GRID as f32;
        (
            (self.col as f32 + 0.5) * cell,
            (self.row as f32 + 0.5) * cell,
        )
    }
}

/// One object of a scene and the cell it sits in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Placed {
    pub shape: Shape,
    pub colour: Colour,
    pub size: Size,
    pub cell: Cell,
}

impl Placed {
    /// `(shape, colour)`: what is held out or not.
    pub fn pair(&self) -> (Shape, Colour) {
        (self.shape, self.colour)
    }

    /// `a big red circle`: the object without its place.
    pub fn words(&self) -> String {
        format!(
            "{} {} {} {}",
            article(self.size.word()),
            self.size.word(),
            self.colour.word(),
            self.shape.word(),
        )
    }

    /// `a big red circle in the top left`
    pub fn caption(&self) -> String {
        format!(
            "{} {} {} {} in the {}",
            article(self.size.word()),
            self.size.word(),
            self.colour.word(),
            self.shape.word(),
            self.cell.words()
        )
    }
}

/// A picture of 1 to [`MAX_OBJECTS`] objects, each in its own cell, kept
/// in reading order.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GridScene {
    objects: Vec<Placed>,
}

impl GridScene {
    /// A scene of these objects, sorted into reading order.
    ///
    /// # Panics
    /// If there are no objects, more than [`MAX_OBJECTS`], or two share a
    /// cell.
    #[track_caller]
    pub fn new(mut objects: Vec<Placed>) -> Self {
        assert!(
            (1..=MAX_OBJECTS).contains(&objects.len()),
            "grid scene: {} objects, want 1 to {MAX_OBJECTS}",
            objects.len()
        );
        objects.sort_by_key(|o| o.cell);
        assert!(
            objects.windows(2).all(|w| w[0].cell != w[1].cell),
            "grid scene: two objects share a cell"
        );
        GridScene { objects }
    }

    /// The objects in reading order.
    pub fn objects(&self) -> &[Placed] {
        &self.objects
    }

    /// The number of objects.
    pub fn len(&self) -> usize {
        self.objects.len()
    }

    /// Always false: a scene has at least one object.
    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }

    /// Whether no two objects share a colour: the condition for naming an
    /// object by its colour ("the red one").
    pub fn colours_distinct(&self) -> bool {
        let mut seen = Vec::with_capacity(self.objects.len());
        self.objects.iter().all(|o| {
            let new = !seen.contains(&o.colour);
            seen.push(o.colour);
            new
        })
    }

    /// Whether any object is a held-out (shape, colour) pair.
    pub fn is_held_out(&self) -> bool {
        self.objects.iter().any(|o| is_held_out(o.shape, o.colour))
    }

    // ANCHOR: grid_caption
    /// Every object's caption in reading order, joined by commas and a
    /// final `and`: `a big red circle in the top left, a small blue square
    /// in the middle and a big green ring in the bottom right`.
    pub fn caption(&self) -> String {
        let parts: Vec<String> = self.objects.iter().map(Placed::caption).collect();
        match parts.split_last() {
            Some((last, [])) => last.clone(),
            Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
            None => String::new(),
        }
    }
    // ANCHOR_END: grid_caption

    // ANCHOR: grid_render
    /// Draws the scene as a `[3, side, side]` image in `[0, 1]`: the toy
    /// world's dark background, each object at its cell's centre moved by
    /// up to `side/6 − r − 1` pixels per axis (so it stays inside its cell
    /// with a pixel to spare), and uniform noise of ±[`NOISE`].
    ///
    /// # Panics
    /// If `side` is below [`MIN_SIDE`].
    #[track_caller]
    pub fn render(&self, side: usize, rng: &mut impl Rng) -> Array3<f32> {
        assert!(side >= MIN_SIDE, "grid scene: side {side} < {MIN_SIDE}");
        let mut image = Array3::from_elem((3, side, side), BACKGROUND);
        let cell = side as f32 / GRID as f32;
        for o in &self.objects {
            let r = o.size.radius();
            let jitter = (cell / 2.0 - r - 1.0).max(0.0);
            let (x, y) = o.cell.centre(side);
            let centre = (
                x + rng.random_range(-jitter..=jitter),
                y + rng.random_range(-jitter..=jitter),
            );
            draw(image.view_mut(), o.shape, o.colour, centre, r);
        }
        image.mapv_inplace(|v| (v + rng.random_range(-NOISE..=NOISE)).clamp(0.0, 1.0));
        image
    }
    // ANCHOR_END: grid_render
}

/// Which (shape, colour) pairs a scene or a question may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Pairs {
    /// Only pairs training may show.
    Seen,
    /// At least one held-out pair (evaluation only); the rest from every
    /// pair of the world.
    HeldOut,
}

/// Whether the objects of a scene must have different colours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Colours {
    /// No two objects share a colour.
    Distinct,
    /// Colours may repeat.
    Free,
}

/// Draws a scene of `n` objects in `n` distinct random cells.
///
/// With [`Pairs::Seen`] every (shape, colour) pair is one training may
/// show; with [`Pairs::HeldOut`] one object (in a random cell) is a
/// held-out pair of the world and the others are any pairs of the world.
///
/// # Panics
/// If `n` is 0 or more than [`MAX_OBJECTS`], or the world is out of range
/// ([`World::check`]).
#[track_caller]
pub fn sample_scene(
    world: &World,
    n: usize,
    colours: Colours,
    pairs: Pairs,
    rng: &mut impl Rng,
) -> GridScene {
    assert!((1..=MAX_OBJECTS).contains(&n), "sample_scene: n = {n}");
    let mut cells = Cell::ALL;
    cells.shuffle(rng);
    let all: Vec<(Shape, Colour)> = world
        .shapes()
        .iter()
        .flat_map(|&s| world.colours().iter().map(move |&c| (s, c)))
        .collect();
    let pool = match pairs {
        Pairs::Seen => world.seen_pairs(),
        Pairs::HeldOut => all,
    };
    let held_out = world.held_out();
    let mut objects: Vec<Placed> = Vec::with_capacity(n);
    for (i, &cell) in cells.iter().take(n).enumerate() {
        let (shape, colour) = if pairs == Pairs::HeldOut && i == 0 {
            held_out[rng.random_range(0..held_out.len())]
        } else {
            // every world has at least 3 colours per shape and n ≤ 6 < 8,
            // but a small world may run out of distinct colours: then repeat
            let fresh: Vec<(Shape, Colour)> = match colours {
                Colours::Distinct => pool
                    .iter()
                    .copied()
                    .filter(|p| objects.iter().all(|o| o.colour != p.1))
                    .collect(),
                Colours::Free => Vec::new(),
            };
            let from = if fresh.is_empty() { &pool } else { &fresh };
            from[rng.random_range(0..from.len())]
        };
        let size = Size::ALL[rng.random_range(0..Size::ALL.len())];
        objects.push(Placed {
            shape,
            colour,
            size,
            cell,
        });
    }
    GridScene::new(objects)
}

/// The canvas and how many objects scenes hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SceneConfig {
    /// Side of the square canvas in pixels ([`MIN_SIDE`] to [`MAX_SIDE`]).
    pub side: usize,
    /// Fewest objects in a scene (at least 1).
    pub min_objects: usize,
    /// Most objects in a scene (at most [`MAX_OBJECTS`]).
    pub max_objects: usize,
}

impl Default for SceneConfig {
    fn default() -> Self {
        SceneConfig {
            side: DEFAULT_SIDE,
            min_objects: 1,
            max_objects: MAX_OBJECTS,
        }
    }
}

impl SceneConfig {
    /// Checks the side and the object counts.
    ///
    /// # Errors
    /// The name of the field out of range (`side`, `min-objects`,
    /// `max-objects`, as the command-line flags are named) and why.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        if !(MIN_SIDE..=MAX_SIDE).contains(&self.side) {
            return Err((
                "side",
                format!(
                    "must be between {MIN_SIDE} and {MAX_SIDE} pixels (3 cells that hold a big object), got {}",
                    self.side
                ),
            ));
        }
        if !(1..=MAX_OBJECTS).contains(&self.min_objects) {
            return Err((
                "min-objects",
                format!(
                    "must be between 1 and {MAX_OBJECTS}, got {}",
                    self.min_objects
                ),
            ));
        }
        if !(self.min_objects..=MAX_OBJECTS).contains(&self.max_objects) {
            return Err((
                "max-objects",
                format!(
                    "must be between min-objects ({}) and {MAX_OBJECTS}, got {}",
                    self.min_objects, self.max_objects
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn placed(shape: Shape, colour: Colour, size: Size, row: usize, col: usize) -> Placed {
        Placed {
            shape,
            colour,
            size,
            cell: Cell { row, col },
        }
    }

    #[test]
    fn cells_name_the_grid_in_reading_order() {
        let words: Vec<&str> = Cell::ALL.iter().map(|c| c.words()).collect();
        assert_eq!(words[0], "top left");
        assert_eq!(words[4], "middle");
        assert_eq!(words[7], "bottom middle");
        assert_eq!(Cell::ALL[5], Cell { row: 1, col: 2 });
        let (a, b) = (Cell { row: 0, col: 0 }, Cell { row: 2, col: 1 });
        assert_eq!(a.distance2(b), 5);
        assert_eq!(b.distance2(a), 5);
        assert_eq!(Cell::ALL[4].centre(48), (24.0, 24.0));
    }

    #[test]
    fn captions_list_the_objects_in_reading_order() {
        let scene = GridScene::new(vec![
            placed(Shape::Ring, Colour::Green, Size::Big, 2, 2),
            placed(Shape::Circle, Colour::Red, Size::Big, 0, 0),
            placed(Shape::Square, Colour::Orange, Size::Small, 1, 1),
        ]);
        assert_eq!(
            scene.caption(),
            "a big red circle in the top left, a small orange square in the middle \
             and a big green ring in the bottom right"
        );
        let one = GridScene::new(vec![placed(Shape::Cross, Colour::Blue, Size::Small, 0, 1)]);
        assert_eq!(one.caption(), "a small blue cross in the top middle");
        assert!(
            one.colours_distinct() && one.is_held_out() == is_held_out(Shape::Cross, Colour::Blue)
        );
    }

    #[test]
    #[should_panic(expected = "share a cell")]
    fn two_objects_in_one_cell_are_refused() {
        GridScene::new(vec![
            placed(Shape::Ring, Colour::Green, Size::Big, 1, 1),
            placed(Shape::Circle, Colour::Red, Size::Big, 1, 1),
        ]);
    }

    /// Pixels of each colour: their count and bounding box.
    fn boxes(image: &Array3<f32>, colour: Colour) -> (usize, [usize; 4]) {
        let rgb = colour.rgb();
        let (_, h, w) = image.dim();
        let (mut n, mut b) = (0, [usize::MAX, usize::MAX, 0, 0]);
        for y in 0..h {
            for x in 0..w {
                if (0..3).all(|c| (image[[c, y, x]] - rgb[c]).abs() <= NOISE + 1e-6) {
                    n += 1;
                    b = [b[0].min(x), b[1].min(y), b[2].max(x), b[3].max(y)];
                }
            }
        }
        (n, b)
    }

    #[test]
    fn every_object_is_drawn_whole_inside_its_own_cell() {
        let mut rng = StdRng::seed_from_u64(11);
        for side in [MIN_SIDE, DEFAULT_SIDE, 64] {
            for _ in 0..30 {
                let scene = sample_scene(&World::FULL, 6, Colours::Distinct, Pairs::Seen, &mut rng);
                let image = scene.render(side, &mut rng);
                assert_eq!(image.dim(), (3, side, side));
                let cell = side as f32 / GRID as f32;
                for o in scene.objects() {
                    let (n, [x0, y0, x1, y1]) = boxes(&image, o.colour);
                    let r = o.size.radius();
                    assert!(n as f32 > 0.25 * r * r, "{}: {n} px", o.caption());
                    // inside the cell, a pixel from its border
                    let (cx0, cy0) = (o.cell.col as f32 * cell, o.cell.row as f32 * cell);
                    assert!(
                        x0 as f32 >= cx0 + 0.5
                            && y0 as f32 >= cy0 + 0.5
                            && (x1 + 1) as f32 <= cx0 + cell - 0.5
                            && (y1 + 1) as f32 <= cy0 + cell - 0.5,
                        "side {side}: {} spans {x0}..={x1} × {y0}..={y1}",
                        o.caption()
                    );
                }
            }
        }
    }

    #[test]
    fn sampled_scenes_respect_pairs_colours_and_counts() {
        let mut rng = StdRng::seed_from_u64(2);
        let world = World::FULL;
        let mut repeats = 0;
        for i in 0..400 {
            let n = 1 + i % MAX_OBJECTS;
            let seen = sample_scene(&world, n, Colours::Free, Pairs::Seen, &mut rng);
            assert_eq!(seen.len(), n);
            assert!(!seen.is_held_out(), "{}", seen.caption());
            repeats += !seen.colours_distinct() as usize;
            let distinct = sample_scene(&world, n, Colours::Distinct, Pairs::Seen, &mut rng);
            assert!(distinct.colours_distinct(), "{}", distinct.caption());
            let held = sample_scene(&world, n, Colours::Distinct, Pairs::HeldOut, &mut rng);
            assert!(
                held.is_held_out() && held.colours_distinct(),
                "{}",
                held.caption()
            );
        }
        assert!(
            repeats > 50,
            "free colours repeat sometimes ({repeats} of 400)"
        );
        // the smallest world still fills six cells with distinct colours when it can
        let small = World {
            shapes: 2,
            colours: 3,
        };
        let s = sample_scene(&small, 3, Colours::Distinct, Pairs::Seen, &mut rng);
        assert!(s.colours_distinct());
        assert!(
            s.objects()
                .iter()
                .all(|o| small.contains(o.shape, o.colour))
        );
        // six objects and three colours: colours repeat rather than fail
        let s = sample_scene(&small, 6, Colours::Distinct, Pairs::Seen, &mut rng);
        assert_eq!(s.len(), 6);
    }

    #[test]
    fn configs_out_of_range_name_their_flag() {
        assert_eq!(SceneConfig::default().check(), Ok(()));
        let bad = |c: SceneConfig| c.check().unwrap_err().0;
        let d = SceneConfig::default();
        assert_eq!(bad(SceneConfig { side: 32, ..d }), "side");
        assert_eq!(bad(SceneConfig { side: 100_000, ..d }), "side");
        assert_eq!(
            bad(SceneConfig {
                min_objects: 0,
                ..d
            }),
            "min-objects"
        );
        assert_eq!(
            bad(SceneConfig {
                min_objects: 3,
                max_objects: 2,
                ..d
            }),
            "max-objects"
        );
        assert_eq!(
            bad(SceneConfig {
                max_objects: 7,
                ..d
            }),
            "max-objects"
        );
    }
}
