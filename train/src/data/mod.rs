//! The toy dataset: generated scenes, their captions, the held-out
//! combinations, the tokenizer trained on the training captions, and
//! batches in the model's convention.
//!
//! Nothing is downloaded and nothing is stored: the batch for step `s` is a
//! pure function of `(seed, s)` ([`ToyData::batch`]), so a resumed run sees
//! exactly the batches the uninterrupted run would have seen.

pub mod answers; // scoring answers: exact match, accuracy tables, the majority baseline
pub mod folder; // own data: a folder of images and captions.tsv (the `use` commands)
pub mod qa_folder; // own questions: a folder of images and questions.tsv
pub mod questions; // questions about pictures, conversations, the chat text
pub mod scenes; // scenes of several objects on a 3×3 grid
pub mod toy;

pub use toy::{Colour, IMAGE_SIZE, Object, Position, Relation, Scene, Shape, Size};

pub use crate::step::Batch;
use model::{ModelConfig, SpecialTokens};
use ndarray::{Array2, Array4, s};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use tokenizer::{Tokenizer, TokenizerError};

// ANCHOR: held_out
/// The (shape, colour) pairs that never appear in training: a diagonal, one
/// per shape and each in another colour, so every shape and every colour is
/// still seen; only these combinations are not. A world with fewer shapes or
/// colours ([`World`]) holds out the pairs that fall inside it.
pub const HELD_OUT: [(Shape, Colour); 6] = [
    (Shape::Circle, Colour::Blue),
    (Shape::Square, Colour::Yellow),
    (Shape::Triangle, Colour::Red),
    (Shape::Cross, Colour::Green),
    (Shape::Diamond, Colour::Magenta),
    (Shape::Ring, Colour::Cyan),
];
// ANCHOR_END: held_out

/// Whether a (shape, colour) pair is held out of training.
pub fn is_held_out(shape: Shape, colour: Colour) -> bool {
    HELD_OUT.contains(&(shape, colour))
}

// ANCHOR: world
/// How much of the toy world a run uses: the first `shapes` of
/// [`Shape::ALL`] and the first `colours` of [`Colour::ALL`]. Sizes and
/// positions are always all there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct World {
    pub shapes: usize,
    pub colours: usize,
}

impl World {
    /// Every shape and colour: 42 seen (shape, colour) pairs, 6 held out.
    pub const FULL: World = World {
        shapes: Shape::ALL.len(),
        colours: Colour::ALL.len(),
    };
    /// Four shapes and five colours: 16 seen pairs, 4 held out. Small enough
    /// for the decoder to memorise which shapes each colour comes in.
    pub const SMALL: World = World {
        shapes: 4,
        colours: 5,
    };
    // ANCHOR_END: world

    /// Checks the counts: at least two shapes and three colours (so the
    /// first held-out pair, a blue circle, is inside and every shape and
    /// colour is still seen), at most all of them.
    ///
    /// # Errors
    /// The name of the count that is out of range (`shapes` or `colours`)
    /// and why.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        let range = |name: &'static str, n: usize, min: usize, max: usize| {
            if (min..=max).contains(&n) {
                Ok(())
            } else {
                Err((name, format!("must be between {min} and {max}, got {n}")))
            }
        };
        range("shapes", self.shapes, 2, Shape::ALL.len())?;
        range("colours", self.colours, 3, Colour::ALL.len())
    }

    /// The shapes of this world.
    ///
    /// # Panics
    /// If `shapes` is more than [`Shape::ALL`] has (see [`World::check`]).
    pub fn shapes(&self) -> &'static [Shape] {
        &Shape::ALL[..self.shapes]
    }

    /// The colours of this world.
    ///
    /// # Panics
    /// If `colours` is more than [`Colour::ALL`] has (see [`World::check`]).
    pub fn colours(&self) -> &'static [Colour] {
        &Colour::ALL[..self.colours]
    }

    /// Whether the world has this shape and this colour.
    pub fn contains(&self, shape: Shape, colour: Colour) -> bool {
        self.shapes().contains(&shape) && self.colours().contains(&colour)
    }

    /// Whether every object of a scene belongs to this world.
    pub fn contains_scene(&self, scene: &Scene) -> bool {
        match *scene {
            Scene::Single(o) => self.contains(o.shape, o.colour),
            Scene::Pair { first, second, .. } => {
                self.contains(first.0, first.1) && self.contains(second.0, second.1)
            }
        }
    }

    /// The held-out pairs inside this world.
    pub fn held_out(&self) -> Vec<(Shape, Colour)> {
        HELD_OUT
            .into_iter()
            .filter(|&(s, c)| self.contains(s, c))
            .collect()
    }

    /// The (shape, colour) pairs training shows.
    pub fn seen_pairs(&self) -> Vec<(Shape, Colour)> {
        self.shapes()
            .iter()
            .flat_map(|&s| self.colours().iter().map(move |&c| (s, c)))
            .filter(|&(s, c)| !is_held_out(s, c))
            .collect()
    }

    /// Every object the grammar can describe in this world, in a fixed order
    /// (shape, colour, size, position): the classes of zero-shot.
    pub fn objects(&self) -> Vec<Object> {
        Object::all()
            .into_iter()
            .filter(|o| self.contains(o.shape, o.colour))
            .collect()
    }

    /// Every single-object scene training may show.
    pub fn training_objects(&self) -> Vec<Object> {
        self.objects()
            .into_iter()
            .filter(|o| !is_held_out(o.shape, o.colour))
            .collect()
    }

    /// Every single-object scene with a held-out (shape, colour) pair.
    pub fn held_out_objects(&self) -> Vec<Object> {
        self.objects()
            .into_iter()
            .filter(|o| is_held_out(o.shape, o.colour))
            .collect()
    }
}

impl Default for World {
    fn default() -> Self {
        World::FULL
    }
}

impl Scene {
    /// Whether any object of the scene is a held-out combination.
    pub fn is_held_out(&self) -> bool {
        match *self {
            Scene::Single(o) => is_held_out(o.shape, o.colour),
            Scene::Pair { first, second, .. } => {
                is_held_out(first.0, first.1) || is_held_out(second.0, second.1)
            }
        }
    }
}

/// The SplitMix64 finaliser: mixes a seed and a step into one well-spread
/// RNG seed, so the RNGs of neighbouring steps are unrelated.
pub fn mix(seed: u64, step: u64) -> u64 {
    let mut z = seed
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(step)
        .wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The generator of training and evaluation data.
#[derive(Debug, Clone, PartialEq)]
pub struct ToyData {
    /// Seeds every batch (with the step).
    pub seed: u64,
    /// Fraction of training scenes with two objects (relational captions).
    pub two_object: f32,
    /// The shapes and colours scenes are drawn from.
    pub world: World,
}

/// Which step index the evaluation sets use: far from any training step, so
/// their images are never training images.
const EVAL_STREAM: u64 = u64::MAX / 2;

impl ToyData {
    /// Every single-object scene training may show.
    pub fn training_objects(&self) -> Vec<Object> {
        self.world.training_objects()
    }

    /// Every single-object scene with a held-out (shape, colour) pair.
    pub fn held_out_objects(&self) -> Vec<Object> {
        self.world.held_out_objects()
    }

    /// Every caption training can show: all seen single objects and all
    /// pairs of seen (shape, colour) pairs in every relation. The tokenizer
    /// is trained on these.
    pub fn training_captions(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .training_objects()
            .iter()
            .map(Object::caption)
            .collect();
        let seen = self.world.seen_pairs();
        for &first in &seen {
            for relation in Relation::ALL {
                for &second in &seen {
                    if first != second {
                        out.push(
                            Scene::Pair {
                                first,
                                relation,
                                second,
                            }
                            .caption(),
                        );
                    }
                }
            }
        }
        out
    }

    // ANCHOR: scene
    /// One random training scene: never a held-out combination.
    pub fn sample_scene(&self, rng: &mut impl Rng) -> Scene {
        let (shapes, colours) = (self.world.shapes(), self.world.colours());
        let seen = |rng: &mut dyn rand::RngCore| loop {
            let pair = (
                shapes[rng.random_range(0..shapes.len())],
                colours[rng.random_range(0..colours.len())],
            );
            if !is_held_out(pair.0, pair.1) {
                return pair;
            }
        };
        if rng.random::<f32>() < self.two_object {
            let first = seen(rng);
            let second = loop {
                let p = seen(rng);
                if p != first {
                    break p;
                }
            };
            let relation = Relation::ALL[rng.random_range(0..Relation::ALL.len())];
            Scene::Pair {
                first,
                relation,
                second,
            }
        } else {
            let (shape, colour) = seen(rng);
            Scene::Single(Object {
                shape,
                colour,
                size: Size::ALL[rng.random_range(0..Size::ALL.len())],
                position: Position::ALL[rng.random_range(0..Position::ALL.len())],
            })
        }
    }
    // ANCHOR_END: scene

    /// The scenes and images of training step `step`: a pure function of
    /// `(seed, step)`.
    ///
    /// # Shapes
    /// `images: [B, 3, 32, 32]`
    pub fn scenes(&self, step: u64, batch_size: usize) -> (Vec<Scene>, Array4<f32>) {
        let mut rng = StdRng::seed_from_u64(mix(self.seed, step));
        let scenes: Vec<Scene> = (0..batch_size)
            .map(|_| self.sample_scene(&mut rng))
            .collect();
        let images = render_all(&scenes, &mut rng);
        (scenes, images)
    }

    /// The tokenised batch of training step `step`.
    pub fn batch(&self, step: u64, batch_size: usize, tok: &Tokens) -> Batch {
        let (scenes, images) = self.scenes(step, batch_size);
        let captions: Vec<String> = scenes.iter().map(Scene::caption).collect();
        let (tokens, lengths) = tok.encode(&captions);
        Batch {
            images,
            tokens,
            lengths,
        }
    }

    /// An evaluation set: `per_object` images of each object in `objects`,
    /// drawn from a stream no training step uses.
    pub fn eval_images(&self, objects: &[Object], per_object: usize, stream: u64) -> Array4<f32> {
        let mut rng = StdRng::seed_from_u64(mix(self.seed, EVAL_STREAM + stream));
        let scenes: Vec<Scene> = objects
            .iter()
            .flat_map(|&o| std::iter::repeat_n(Scene::Single(o), per_object))
            .collect();
        render_all(&scenes, &mut rng)
    }

    /// Trains the run's tokenizer on [`ToyData::training_captions`], with as
    /// many merges as the captions support, then adds `<|bos|>`, `<|eos|>`
    /// and `<|pad|>` (the last three IDs).
    ///
    /// # Errors
    /// A [`TokenizerError`] from training (not expected for this grammar).
    pub fn train_tokenizer(&self) -> Result<Tokenizer, TokenizerError> {
        let captions = self.training_captions();
        let tok = match Tokenizer::train_lines(&captions, 1024) {
            Err(TokenizerError::VocabTooLarge { reached, .. }) => {
                Tokenizer::train_lines(&captions, reached)?
            }
            other => other?,
        };
        tok.with_special_tokens(&[tokenizer::BOS, tokenizer::EOS, tokenizer::PAD])
    }
}

fn render_all(scenes: &[Scene], rng: &mut StdRng) -> Array4<f32> {
    let mut images = Array4::zeros((scenes.len(), 3, IMAGE_SIZE, IMAGE_SIZE));
    for (b, scene) in scenes.iter().enumerate() {
        images
            .slice_mut(s![b, .., .., ..])
            .assign(&scene.render(rng));
    }
    images
}

/// A tokenizer with the model's special tokens: turns captions into the
/// rows of a [`Batch`].
#[derive(Debug, Clone)]
pub struct Tokens<'a> {
    pub tokenizer: &'a Tokenizer,
    pub special: SpecialTokens,
    pub max_len: usize,
}

impl<'a> Tokens<'a> {
    /// The tokenizer with the special tokens and length of `config`.
    pub fn new(tokenizer: &'a Tokenizer, config: &ModelConfig) -> Self {
        Tokens {
            tokenizer,
            special: config.special,
            max_len: config.max_len,
        }
    }

    /// Captions as rows `<|bos|> ids <|eos|> <|pad|>…` and their lengths.
    ///
    /// # Panics
    /// If a caption needs more than `max_len` tokens (the grammar's longest
    /// needs 10).
    #[track_caller]
    pub fn encode(&self, captions: &[String]) -> (Array2<u32>, Vec<usize>) {
        let SpecialTokens { bos, eos, pad } = self.special;
        let rows: Vec<Vec<u32>> = captions
            .iter()
            .map(|c| {
                let mut row = vec![bos];
                row.extend(self.tokenizer.encode_ordinary(c));
                row.push(eos);
                assert!(
                    row.len() <= self.max_len,
                    "tokens: caption {c:?} needs {} tokens, max_len is {}",
                    row.len(),
                    self.max_len
                );
                row
            })
            .collect();
        let t = rows.iter().map(Vec::len).max().unwrap_or(2);
        let mut tokens = Array2::from_elem((rows.len(), t), pad);
        for (b, row) in rows.iter().enumerate() {
            for (i, &id) in row.iter().enumerate() {
                tokens[[b, i]] = id;
            }
        }
        (tokens, rows.iter().map(Vec::len).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data() -> ToyData {
        ToyData {
            seed: 5,
            two_object: 0.3,
            world: World::FULL,
        }
    }

    #[test]
    fn the_batch_of_a_step_depends_on_seed_and_step_only() {
        let d = data();
        let (s1, i1) = d.scenes(17, 8);
        let (s2, i2) = d.scenes(17, 8);
        assert_eq!((&s1, &i1), (&s2, &i2));
        let (s3, i3) = d.scenes(18, 8);
        assert!(s1 != s3 && i1 != i3);
        let other = ToyData { seed: 6, ..d };
        assert_ne!(other.scenes(17, 8).1, i1);
    }

    #[test]
    fn held_out_pairs_never_appear_in_training() {
        let d = data();
        let mut pairs = 0;
        for step in 0..200 {
            for scene in d.scenes(step, 16).0 {
                assert!(!scene.is_held_out(), "step {step}: {}", scene.caption());
                pairs += matches!(scene, Scene::Pair { .. }) as usize;
            }
        }
        assert!(pairs > 600, "two-object scenes appear ({pairs} of 3200)");
        for c in d.training_captions() {
            assert!(!Scene::parse(&c).unwrap().is_held_out(), "{c}");
        }
        assert_eq!(d.held_out_objects().len(), 6 * 2 * 5);
        assert_eq!(d.training_objects().len(), 42 * 2 * 5);
        let small = World::SMALL;
        assert_eq!(small.held_out_objects().len(), 4 * 2 * 5);
        assert_eq!(small.training_objects().len(), 16 * 2 * 5);
    }

    #[test]
    fn every_shape_and_colour_of_every_world_is_trained() {
        for shapes in 2..=Shape::ALL.len() {
            for colours in 3..=Colour::ALL.len() {
                let world = World { shapes, colours };
                assert_eq!(world.check(), Ok(()));
                let objects = world.training_objects();
                for &s in world.shapes() {
                    assert!(objects.iter().any(|o| o.shape == s), "{world:?}");
                }
                for &c in world.colours() {
                    assert!(objects.iter().any(|o| o.colour == c), "{world:?}");
                }
                assert!(!world.held_out().is_empty(), "{world:?}");
                assert_eq!(
                    world.seen_pairs().len() + world.held_out().len(),
                    shapes * colours
                );
            }
        }
    }

    #[test]
    fn a_world_out_of_range_is_refused_with_its_count() {
        for (world, name, got) in [((7, 5), "shapes", "got 7"), ((4, 2), "colours", "got 2")] {
            let (shapes, colours) = world;
            let (n, why) = World { shapes, colours }.check().unwrap_err();
            assert_eq!(n, name);
            assert!(why.contains(got), "{why}");
        }
    }

    #[test]
    fn a_smaller_world_draws_only_its_shapes_and_colours() {
        let d = ToyData {
            world: World::SMALL,
            ..data()
        };
        for step in 0..50 {
            for scene in d.scenes(step, 16).0 {
                assert!(World::SMALL.contains_scene(&scene), "{}", scene.caption());
            }
        }
        for c in d.training_captions() {
            assert!(
                World::SMALL.contains_scene(&Scene::parse(&c).unwrap()),
                "{c}"
            );
        }
    }

    #[test]
    fn batches_follow_the_model_convention_and_decode_back() {
        let d = data();
        let tok = d.train_tokenizer().unwrap();
        let config = ModelConfig::tiny(tok.vocab_size());
        let tokens = Tokens::new(&tok, &config);
        assert_eq!(SpecialTokens::from_tokenizer(&tok).unwrap(), config.special);
        let batch = d.batch(3, 12, &tokens);
        let (scenes, _) = d.scenes(3, 12);
        assert_eq!(batch.images.dim(), (12, 3, 32, 32));
        for (b, scene) in scenes.iter().enumerate() {
            let row = batch.tokens.row(b);
            let len = batch.lengths[b];
            assert_eq!(row[0], config.special.bos);
            assert_eq!(row[len - 1], config.special.eos);
            assert!(row.iter().skip(len).all(|&t| t == config.special.pad));
            let ids: Vec<u32> = row.iter().take(len - 1).skip(1).copied().collect();
            let text = tok.decode(&ids).unwrap();
            assert_eq!(Scene::parse(&text), Some(*scene));
        }
        // the tokenizer merged every word: one token per word
        assert_eq!(
            tok.encode_ordinary("a big red circle in the top left")
                .len(),
            8
        );
    }

    #[test]
    fn mixing_spreads_neighbouring_steps() {
        assert_ne!(mix(0, 0), mix(0, 1));
        assert_ne!(mix(0, 1), mix(1, 0));
        assert!((mix(1, 2) ^ mix(1, 3)).count_ones() > 10);
    }
}
