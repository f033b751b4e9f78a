//! The toy world: coloured shapes on a 32×32 canvas and the sentences that
//! describe them.
//!
//! A [`Scene`] is one object (`a big red circle in the top left`) or two
//! objects side by side (`a red circle left of a blue square`). Its caption
//! comes from a small grammar and parses back ([`Scene::parse`]); its image
//! is drawn by [`Scene::render`] with the position jittered inside its
//! region and light pixel noise, so no two images of one caption are equal.

use ndarray::{Array3, ArrayViewMut3};
use rand::Rng;

/// The shapes the world knows, in a fixed order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Shape {
    Circle,
    Square,
    Triangle,
    Cross,
    Diamond,
    Ring,
}

/// The colours the world knows, in a fixed order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Colour {
    Red,
    Green,
    Blue,
    Yellow,
    Magenta,
    Cyan,
    Orange,
    White,
}

/// How big an object is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Size {
    Small,
    Big,
}

/// The region of the canvas an object sits in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Position {
    TopLeft,
    TopRight,
    Middle,
    BottomLeft,
    BottomRight,
}

/// How the first object of a two-object scene stands to the second.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Relation {
    LeftOf,
    RightOf,
    Above,
    Below,
}

impl Shape {
    pub const ALL: [Shape; 6] = [
        Shape::Circle,
        Shape::Square,
        Shape::Triangle,
        Shape::Cross,
        Shape::Diamond,
        Shape::Ring,
    ];
    /// The word in captions.
    pub fn word(self) -> &'static str {
        match self {
            Shape::Circle => "circle",
            Shape::Square => "square",
            Shape::Triangle => "triangle",
            Shape::Cross => "cross",
            Shape::Diamond => "diamond",
            Shape::Ring => "ring",
        }
    }

    // ANCHOR: inside
    /// Whether the point `(dx, dy)` (pixels from the centre, y down) lies
    /// inside the shape of half-size `r`.
    pub fn contains(self, dx: f32, dy: f32, r: f32) -> bool {
        match self {
            Shape::Circle => dx * dx + dy * dy <= r * r,
            Shape::Square => dx.abs() <= 0.85 * r && dy.abs() <= 0.85 * r,
            // apex at the top, base at the bottom: the width grows with dy
            Shape::Triangle => dy.abs() <= r && dx.abs() <= 0.5 * (dy + r),
            Shape::Cross => {
                let arm = 0.3 * r;
                (dx.abs() <= arm && dy.abs() <= r) || (dy.abs() <= arm && dx.abs() <= r)
            }
            Shape::Diamond => dx.abs() + dy.abs() <= r,
            // a disc with a hole of radius √0.3·r ≈ 0.55 r
            Shape::Ring => (0.3 * r * r..=r * r).contains(&(dx * dx + dy * dy)),
        }
    }
    // ANCHOR_END: inside
}

impl Colour {
    pub const ALL: [Colour; 8] = [
        Colour::Red,
        Colour::Green,
        Colour::Blue,
        Colour::Yellow,
        Colour::Magenta,
        Colour::Cyan,
        Colour::Orange,
        Colour::White,
    ];
    /// The word in captions.
    pub fn word(self) -> &'static str {
        match self {
            Colour::Red => "red",
            Colour::Green => "green",
            Colour::Blue => "blue",
            Colour::Yellow => "yellow",
            Colour::Magenta => "magenta",
            Colour::Cyan => "cyan",
            Colour::Orange => "orange",
            Colour::White => "white",
        }
    }
    /// The RGB value in `[0, 1]`.
    pub fn rgb(self) -> [f32; 3] {
        match self {
            Colour::Red => [0.9, 0.15, 0.1],
            Colour::Green => [0.15, 0.8, 0.2],
            Colour::Blue => [0.15, 0.3, 0.95],
            Colour::Yellow => [0.95, 0.85, 0.1],
            Colour::Magenta => [0.85, 0.2, 0.85],
            Colour::Cyan => [0.1, 0.85, 0.9],
            Colour::Orange => [0.95, 0.5, 0.05],
            Colour::White => [0.95, 0.95, 0.95],
        }
    }
}

impl Size {
    pub const ALL: [Size; 2] = [Size::Small, Size::Big];
    /// The word in captions.
    pub fn word(self) -> &'static str {
        match self {
            Size::Small => "small",
            Size::Big => "big",
        }
    }
    /// The half-size `r` in pixels.
    pub fn radius(self) -> f32 {
        match self {
            Size::Small => 3.5,
            Size::Big => 6.5,
        }
    }
}

impl Position {
    pub const ALL: [Position; 5] = [
        Position::TopLeft,
        Position::TopRight,
        Position::Middle,
        Position::BottomLeft,
        Position::BottomRight,
    ];
    /// The words in captions, after `in the`.
    pub fn words(self) -> &'static str {
        match self {
            Position::TopLeft => "top left",
            Position::TopRight => "top right",
            Position::Middle => "middle",
            Position::BottomLeft => "bottom left",
            Position::BottomRight => "bottom right",
        }
    }
    /// The region's centre `(x, y)` in pixels on a 32×32 canvas (y down).
    pub fn centre(self) -> (f32, f32) {
        match self {
            Position::TopLeft => (8.0, 8.0),
            Position::TopRight => (24.0, 8.0),
            Position::Middle => (16.0, 16.0),
            Position::BottomLeft => (8.0, 24.0),
            Position::BottomRight => (24.0, 24.0),
        }
    }
}

impl Relation {
    pub const ALL: [Relation; 4] = [
        Relation::LeftOf,
        Relation::RightOf,
        Relation::Above,
        Relation::Below,
    ];
    /// The words in captions.
    pub fn words(self) -> &'static str {
        match self {
            Relation::LeftOf => "left of",
            Relation::RightOf => "right of",
            Relation::Above => "above",
            Relation::Below => "below",
        }
    }
}

/// One object: what the single-object captions describe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Object {
    pub shape: Shape,
    pub colour: Colour,
    pub size: Size,
    pub position: Position,
}

/// What one image shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scene {
    /// `a big red circle in the top left`
    Single(Object),
    /// `a red circle left of a blue square`: two small objects, the first
    /// standing in `relation` to the second.
    Pair {
        first: (Shape, Colour),
        relation: Relation,
        second: (Shape, Colour),
    },
}

/// Side length of the canvas.
pub const IMAGE_SIZE: usize = 32;
/// Largest shift of an object from its region's centre, in pixels, per axis.
pub const JITTER: f32 = 2.0;
/// Amplitude of the uniform pixel noise.
pub const NOISE: f32 = 0.05;
/// The background's grey level.
pub const BACKGROUND: f32 = 0.1;

impl Object {
    // ANCHOR: caption
    /// `a {size} {colour} {shape} in the {position}`
    pub fn caption(&self) -> String {
        format!(
            "a {} {} {} in the {}",
            self.size.word(),
            self.colour.word(),
            self.shape.word(),
            self.position.words()
        )
    }
    // ANCHOR_END: caption

    /// Every object the grammar can describe, in a fixed order (shape,
    /// colour, size, position).
    pub fn all() -> Vec<Object> {
        let mut out = Vec::new();
        for shape in Shape::ALL {
            for colour in Colour::ALL {
                for size in Size::ALL {
                    for position in Position::ALL {
                        out.push(Object {
                            shape,
                            colour,
                            size,
                            position,
                        });
                    }
                }
            }
        }
        out
    }
}

/// The article before a word: `an orange`, `a red`.
pub(crate) fn article(word: &str) -> &'static str {
    if word.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    }
}

fn find<T: Copy>(all: &[T], word: &str, name: impl Fn(T) -> &'static str) -> Option<T> {
    all.iter().copied().find(|&t| name(t) == word)
}

impl Scene {
    /// The caption the grammar gives this scene.
    pub fn caption(&self) -> String {
        match self {
            Scene::Single(object) => object.caption(),
            Scene::Pair {
                first,
                relation,
                second,
            } => format!(
                "{} {} {} {} {} {} {}",
                article(first.1.word()),
                first.1.word(),
                first.0.word(),
                relation.words(),
                article(second.1.word()),
                second.1.word(),
                second.0.word()
            ),
        }
    }

    /// Reads a caption of the grammar back into its scene; `None` for any
    /// other text.
    pub fn parse(text: &str) -> Option<Scene> {
        let words: Vec<&str> = text.split_whitespace().collect();
        let colour = |w: &str| find(&Colour::ALL, w, Colour::word);
        let shape = |w: &str| find(&Shape::ALL, w, Shape::word);
        match words.as_slice() {
            ["a", size, c, s, "in", "the", rest @ ..] => {
                let position = find(&Position::ALL, &rest.join(" "), Position::words)?;
                Some(Scene::Single(Object {
                    shape: shape(s)?,
                    colour: colour(c)?,
                    size: find(&Size::ALL, size, Size::word)?,
                    position,
                }))
            }
            [a1, c1, s1, rel @ .., a2, c2, s2] if *a1 == article(c1) && *a2 == article(c2) => {
                Some(Scene::Pair {
                    first: (shape(s1)?, colour(c1)?),
                    relation: find(&Relation::ALL, &rel.join(" "), Relation::words)?,
                    second: (shape(s2)?, colour(c2)?),
                })
            }
            _ => None,
        }
    }

    // ANCHOR: render
    /// Draws the scene as a `[3, 32, 32]` image in `[0, 1]`: a dark grey
    /// background, each object's centre jittered by up to [`JITTER`] pixels
    /// per axis inside its region, and uniform noise of ±[`NOISE`].
    pub fn render(&self, rng: &mut impl Rng) -> Array3<f32> {
        let mut image = Array3::from_elem((3, IMAGE_SIZE, IMAGE_SIZE), BACKGROUND);
        let mut jitter = |(x, y): (f32, f32)| {
            (
                x + rng.random_range(-JITTER..=JITTER),
                y + rng.random_range(-JITTER..=JITTER),
            )
        };
        match *self {
            Scene::Single(o) => {
                let centre = jitter(o.position.centre());
                draw(image.view_mut(), o.shape, o.colour, centre, o.size.radius());
            }
            Scene::Pair {
                first,
                relation,
                second,
            } => {
                // the first object's region, then the second's on the other side
                let (a, b) = match relation {
                    Relation::LeftOf => ((9.0, 16.0), (23.0, 16.0)),
                    Relation::RightOf => ((23.0, 16.0), (9.0, 16.0)),
                    Relation::Above => ((16.0, 9.0), (16.0, 23.0)),
                    Relation::Below => ((16.0, 23.0), (16.0, 9.0)),
                };
                let r = 4.5;
                let (a, b) = (jitter(a), jitter(b));
                draw(image.view_mut(), first.0, first.1, a, r);
                draw(image.view_mut(), second.0, second.1, b, r);
            }
        }
        image.mapv_inplace(|v| (v + rng.random_range(-NOISE..=NOISE)).clamp(0.0, 1.0));
        image
    }
    // ANCHOR_END: render
}

/// Paints `shape` in `colour` centred at `(cx, cy)` with half-size `r`,
/// testing each pixel's centre. The canvas `image: [3, H, W]` may have any
/// size (the scenes of [`crate::data::scenes`] are larger).
pub(crate) fn draw(
    mut image: ArrayViewMut3<f32>,
    shape: Shape,
    colour: Colour,
    centre: (f32, f32),
    r: f32,
) {
    let rgb = colour.rgb();
    let (_, height, width) = image.dim();
    for y in 0..height {
        for x in 0..width {
            let (dx, dy) = (x as f32 + 0.5 - centre.0, y as f32 + 0.5 - centre.1);
            if shape.contains(dx, dy, r) {
                for (c, &v) in rgb.iter().enumerate() {
                    image[[c, y, x]] = v;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn every_caption_parses_back() {
        for o in Object::all() {
            assert_eq!(Scene::parse(&o.caption()), Some(Scene::Single(o)));
        }
        for s1 in Shape::ALL {
            for c2 in Colour::ALL {
                for relation in Relation::ALL {
                    let scene = Scene::Pair {
                        first: (s1, Colour::Red),
                        relation,
                        second: (Shape::Square, c2),
                    };
                    assert_eq!(Scene::parse(&scene.caption()), Some(scene));
                }
            }
        }
        assert_eq!(Object::all().len(), 6 * 8 * 2 * 5);
        let orange = Scene::Pair {
            first: (Shape::Ring, Colour::Orange),
            relation: Relation::Above,
            second: (Shape::Circle, Colour::Red),
        };
        assert_eq!(orange.caption(), "an orange ring above a red circle");
        assert_eq!(Scene::parse("a orange ring above a red circle"), None);
        assert_eq!(Scene::parse("a big red circle in the corner"), None);
        assert_eq!(Scene::parse("a huge red circle in the middle"), None);
        assert_eq!(Scene::parse(""), None);
    }

    /// Centroid and mean colour of the pixels that differ from the background.
    fn foreground(image: &Array3<f32>) -> (usize, (f32, f32), [f32; 3]) {
        let (mut n, mut sx, mut sy, mut rgb) = (0, 0.0, 0.0, [0.0f32; 3]);
        for y in 0..IMAGE_SIZE {
            for x in 0..IMAGE_SIZE {
                let px: Vec<f32> = (0..3).map(|c| image[[c, y, x]]).collect();
                if px.iter().any(|&v| (v - BACKGROUND).abs() > 2.0 * NOISE) {
                    n += 1;
                    sx += x as f32 + 0.5;
                    sy += y as f32 + 0.5;
                    for c in 0..3 {
                        rgb[c] += px[c];
                    }
                }
            }
        }
        let k = n as f32;
        (n, (sx / k, sy / k), rgb.map(|v| v / k))
    }

    #[test]
    fn images_show_the_shape_in_its_region_and_colour() {
        let mut rng = StdRng::seed_from_u64(7);
        for o in Object::all() {
            let image = Scene::Single(o).render(&mut rng);
            let (n, (x, y), rgb) = foreground(&image);
            let (cx, cy) = o.position.centre();
            // the triangle's centroid sits a third of r below its box centre
            let tol = JITTER
                + 0.5
                + if o.shape == Shape::Triangle {
                    0.4 * o.size.radius()
                } else {
                    0.0
                };
            assert!(
                (x - cx).abs() <= tol && (y - cy).abs() <= tol,
                "{}: centroid ({x}, {y})",
                o.caption()
            );
            for (got, want) in rgb.iter().zip(o.colour.rgb()) {
                assert!((got - want).abs() < 0.06, "{}: colour {rgb:?}", o.caption());
            }
            let r = o.size.radius();
            assert!(
                n as f32 > 0.25 * r * r && (n as f32) < 5.0 * r * r,
                "{}: {n} px",
                o.caption()
            );
        }
    }

    #[test]
    fn big_is_bigger_and_shapes_differ() {
        let mut rng = StdRng::seed_from_u64(1);
        let count = |o: Object, rng: &mut StdRng| foreground(&Scene::Single(o).render(rng)).0;
        let base = Object {
            shape: Shape::Circle,
            colour: Colour::Blue,
            size: Size::Small,
            position: Position::Middle,
        };
        let big = Object {
            size: Size::Big,
            ..base
        };
        assert!(count(big, &mut rng) > 2 * count(base, &mut rng));
        // a cross covers less than a square of the same size
        let square = Object {
            shape: Shape::Square,
            size: Size::Big,
            ..base
        };
        let cross = Object {
            shape: Shape::Cross,
            size: Size::Big,
            ..base
        };
        assert!(count(square, &mut rng) > count(cross, &mut rng) + 15);
        // a diamond is a square turned by 45° at half its area; a ring is a
        // circle with a hole
        let of = |shape| Object {
            shape,
            size: Size::Big,
            ..base
        };
        assert!(count(of(Shape::Diamond), &mut rng) + 30 < count(square, &mut rng));
        assert!(count(of(Shape::Ring), &mut rng) + 30 < count(of(Shape::Circle), &mut rng));
    }

    #[test]
    fn pairs_put_the_first_object_on_the_named_side() {
        let mut rng = StdRng::seed_from_u64(3);
        for relation in Relation::ALL {
            let scene = Scene::Pair {
                first: (Shape::Square, Colour::Red),
                relation,
                second: (Shape::Square, Colour::Blue),
            };
            let image = scene.render(&mut rng);
            // centroid of the red pixels against that of the blue ones
            let centroid = |channel: usize| {
                let (mut n, mut sx, mut sy) = (0.0, 0.0, 0.0);
                for y in 0..IMAGE_SIZE {
                    for x in 0..IMAGE_SIZE {
                        if image[[channel, y, x]] > 0.7 {
                            n += 1.0;
                            sx += x as f32;
                            sy += y as f32;
                        }
                    }
                }
                (sx / n, sy / n)
            };
            let (red, blue) = (centroid(0), centroid(2));
            let ok = match relation {
                Relation::LeftOf => red.0 < blue.0 - 8.0,
                Relation::RightOf => red.0 > blue.0 + 8.0,
                Relation::Above => red.1 < blue.1 - 8.0,
                Relation::Below => red.1 > blue.1 + 8.0,
            };
            assert!(ok, "{}: red at {red:?}, blue at {blue:?}", scene.caption());
        }
    }
}
