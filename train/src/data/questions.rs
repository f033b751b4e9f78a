//! Questions about pictures: families, phrasings, conversations, the chat
//! text the multimodal LLM reads, and the metadata evaluation splits by.
//!
//! Every question belongs to a [`Family`] and is one [`Kind`] of it, asked
//! in one of several [`Phrasing`]s:
//!
//! | family | kinds | answer |
//! | --- | --- | --- |
//! | attribute | what colour / shape / size is the …, where is the … | a word, a cell (`top left`) |
//! | existence | is there a green triangle? (half yes, half no) | `yes` / `no` |
//! | counting | how many circles / red shapes / shapes are there? | a digit |
//! | relations | what shape is closest to / farthest from / left of / above … the red one? | a shape |
//! | comparison | are the circle and the cross the same colour? the red one and the blue one the same shape? | `yes` / `no` |
//! | describe | describe the picture. | the caption |
//! | follow-up | (a later turn) and what colour is it? | a word, a cell |
//!
//! An object is named by its shape ("the circle") only when no other
//! object has that shape, and by its colour ("the red one", "the red
//! circle") only in scenes where no two objects share a colour, so every
//! question has one answer. A follow-up asks about the object the turn
//! before was about (its referent, or the object its answer named) and
//! never for something a turn already said.
//!
//! Held out of training: the (shape, colour) pairs of [`super::HELD_OUT`]
//! (in scenes, questions and answers), and the phrasings marked
//! [`Phrasing::unseen`]. Every unseen phrasing is made of words that seen
//! phrasings use, so it tests new wording, not new words.
//!
//! # The chat text
//!
//! A conversation is a list of turns (user text, assistant text). The first
//! user turn starts with the placeholder [`tokenizer::IMAGE`], where the
//! model splices the image tokens. [`Conversation::transcript`] writes the
//! whole conversation with the role markers:
//!
//! ```text
//! <|user|> <|image|> what colour is the circle? <|assistant|> red <|end|> <|user|> and where is it? <|assistant|> top left <|end|>
//! ```

use super::scenes::{Colours, GridScene, MAX_OBJECTS, Pairs, SceneConfig, sample_scene};
use super::{World, is_held_out, mix};
use crate::data::{Colour, Shape, Size};
use ndarray::{Array4, s};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokenizer::{Tokenizer, TokenizerError};

pub use model::chat::{ASSISTANT, END, USER};

/// The special tokens of a chat tokenizer, in ID order after the merges:
/// `<|bos|>`, `<|eos|>`, `<|pad|>` as for captions, then the chat's
/// [`model::chat::CHAT_SPECIAL_TOKENS`] (`<|image|>`, `<|user|>`,
/// `<|assistant|>`, `<|end|>`).
pub const CHAT_SPECIAL: [&str; 7] = [
    tokenizer::BOS,
    tokenizer::EOS,
    tokenizer::PAD,
    model::chat::CHAT_SPECIAL_TOKENS[0],
    model::chat::CHAT_SPECIAL_TOKENS[1],
    model::chat::CHAT_SPECIAL_TOKENS[2],
    model::chat::CHAT_SPECIAL_TOKENS[3],
];

/// The question families, for evaluation tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    Attribute,
    Existence,
    Counting,
    Relations,
    Comparison,
    Describe,
    FollowUp,
}

impl Family {
    pub const ALL: [Family; 7] = [
        Family::Attribute,
        Family::Existence,
        Family::Counting,
        Family::Relations,
        Family::Comparison,
        Family::Describe,
        Family::FollowUp,
    ];

    /// The family's name in tables and in `questions.tsv`'s fourth column.
    pub fn name(self) -> &'static str {
        match self {
            Family::Attribute => "attribute",
            Family::Existence => "existence",
            Family::Counting => "counting",
            Family::Relations => "relations",
            Family::Comparison => "comparison",
            Family::Describe => "describe",
            Family::FollowUp => "follow-up",
        }
    }

    /// The family of a name from [`Family::name`].
    pub fn from_name(name: &str) -> Option<Family> {
        Family::ALL.into_iter().find(|f| f.name() == name)
    }

    /// The kinds of question of this family.
    pub fn kinds(self) -> &'static [Kind] {
        use Kind::*;
        match self {
            Family::Attribute => &[Colour, Shape, Size, Where],
            Family::Existence => &[Exists],
            Family::Counting => &[CountShape, CountColour, CountAll],
            Family::Relations => &[Nearest, Farthest, Direction],
            Family::Comparison => &[SameColour, SameShape],
            Family::Describe => &[Describe],
            Family::FollowUp => &[FollowColour, FollowShape, FollowSize, FollowWhere],
        }
    }
}

/// One way to ask a question; `{…}` marks are filled in by the generator
/// (`{s}` a shape, `{ps}` its plural, `{c}` a colour, `{a}` its article,
/// `{rel}` a relation, `{s1}`, `{s2}`, `{c1}`, `{c2}` two objects).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Phrasing {
    pub template: &'static str,
    /// Never shown in training: evaluation reports it apart.
    pub unseen: bool,
}

const fn seen(template: &'static str) -> Phrasing {
    Phrasing {
        template,
        unseen: false,
    }
}

const fn unseen(template: &'static str) -> Phrasing {
    Phrasing {
        template,
        unseen: true,
    }
}

/// What a question asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// The colour of the only object of a shape.
    Colour,
    /// The shape of the object of a colour.
    Shape,
    /// The size of the object of a colour and shape.
    Size,
    /// The cell of the object of a colour and shape.
    Where,
    /// Whether an object of a colour and shape is there.
    Exists,
    /// How many objects have a shape.
    CountShape,
    /// How many objects have a colour.
    CountColour,
    /// How many objects there are.
    CountAll,
    /// The shape of the object closest to the one of a colour.
    Nearest,
    /// The shape of the object farthest from the one of a colour.
    Farthest,
    /// The shape of the only object left of / right of / above / below the
    /// one of a colour.
    Direction,
    /// Whether the only objects of two shapes share a colour.
    SameColour,
    /// Whether the objects of two colours share a shape.
    SameShape,
    /// The caption.
    Describe,
    /// The colour of the object the turn before was about.
    FollowColour,
    /// Its shape.
    FollowShape,
    /// Its size.
    FollowSize,
    /// Its cell.
    FollowWhere,
}

// ANCHOR: phrasings
impl Kind {
    /// The phrasings of this kind; the last one or two are unseen.
    pub fn phrasings(self) -> &'static [Phrasing] {
        match self {
            Kind::Colour => {
                const {
                    &[
                        seen("what colour is the {s}?"),
                        seen("what is the colour of the {s}?"),
                        seen("which colour is the {s}?"),
                        unseen("the {s} is what colour?"),
                    ]
                }
            }
            Kind::Shape => {
                const {
                    &[
                        seen("what shape is the {c} one?"),
                        seen("what is the shape of the {c} one?"),
                        seen("which shape is {c}?"),
                        unseen("the {c} one is what shape?"),
                    ]
                }
            }
            Kind::Size => {
                const {
                    &[
                        seen("what size is the {c} {s}?"),
                        seen("is the {c} {s} big or small?"),
                        seen("what is the size of the {c} {s}?"),
                        unseen("the {c} {s} is what size?"),
                    ]
                }
            }
            Kind::Where => {
                const {
                    &[
                        seen("where is the {c} one?"),
                        seen("in which part of the picture is the {c} one?"),
                        seen("where in the picture is the {c} one?"),
                        unseen("the {c} one is where?"),
                    ]
                }
            }
            Kind::Exists => {
                const {
                    &[
                        seen("is there {a} {c} {s}?"),
                        seen("is there {a} {c} {s} in the picture?"),
                        seen("does the picture show {a} {c} {s}?"),
                        unseen("is {a} {c} {s} in the picture?"),
                    ]
                }
            }
            Kind::CountShape => {
                const {
                    &[
                        seen("how many {ps} are there?"),
                        seen("how many {ps} are in the picture?"),
                        seen("what is the number of {ps}?"),
                        unseen("how many {ps} does the picture show?"),
                    ]
                }
            }
            Kind::CountColour => {
                const {
                    &[
                        seen("how many {c} shapes are there?"),
                        seen("how many {c} shapes are in the picture?"),
                        seen("what is the number of {c} shapes?"),
                        unseen("how many {c} shapes does the picture show?"),
                    ]
                }
            }
            Kind::CountAll => {
                const {
                    &[
                        seen("how many shapes are there?"),
                        seen("how many shapes are in the picture?"),
                        seen("what is the number of shapes?"),
                        unseen("how many shapes does the picture show?"),
                    ]
                }
            }
            Kind::Nearest => {
                const {
                    &[
                        seen("what shape is closest to the {c} one?"),
                        seen("what shape is nearest to the {c} one?"),
                        seen("what is the shape closest to the {c} one?"),
                        unseen("which shape is closest to the {c} one?"),
                    ]
                }
            }
            Kind::Farthest => {
                const {
                    &[
                        seen("what shape is farthest from the {c} one?"),
                        seen("what is the shape farthest from the {c} one?"),
                        unseen("which shape is farthest from the {c} one?"),
                    ]
                }
            }
            Kind::Direction => {
                const {
                    &[
                        seen("what shape is {rel} the {c} one?"),
                        seen("which shape is {rel} the {c} one?"),
                        seen("what is the shape {rel} the {c} one?"),
                        unseen("what shape is there {rel} the {c} one?"),
                    ]
                }
            }
            Kind::SameColour => {
                const {
                    &[
                        seen("are the {s1} and the {s2} the same colour?"),
                        seen("do the {s1} and the {s2} have the same colour?"),
                        unseen("is the colour of the {s1} and the {s2} the same?"),
                    ]
                }
            }
            Kind::SameShape => {
                const {
                    &[
                        seen("are the {c1} one and the {c2} one the same shape?"),
                        seen("do the {c1} one and the {c2} one have the same shape?"),
                        unseen("is the shape of the {c1} one and the {c2} one the same?"),
                    ]
                }
            }
            Kind::Describe => {
                const {
                    &[
                        seen("describe the picture."),
                        seen("what is in the picture?"),
                        seen("what does the picture show?"),
                        unseen("describe what is in the picture."),
                    ]
                }
            }
            Kind::FollowColour => {
                const {
                    &[
                        seen("and what colour is it?"),
                        seen("what colour is it?"),
                        unseen("and which colour is it?"),
                    ]
                }
            }
            Kind::FollowShape => {
                const {
                    &[
                        seen("and what shape is it?"),
                        seen("what shape is it?"),
                        unseen("and which shape is it?"),
                    ]
                }
            }
            Kind::FollowSize => {
                const {
                    &[
                        seen("and what size is it?"),
                        seen("and is it big or small?"),
                        unseen("and which size is it?"),
                    ]
                }
            }
            Kind::FollowWhere => {
                const {
                    &[
                        seen("and where is it?"),
                        seen("where is it?"),
                        unseen("and where in the picture is it?"),
                    ]
                }
            }
        }
    }
    // ANCHOR_END: phrasings

    /// The family this kind belongs to.
    pub fn family(self) -> Family {
        Family::ALL
            .into_iter()
            .find(|f| f.kinds().contains(&self))
            .unwrap_or(Family::FollowUp) // every kind is listed by one family
    }

    /// Every kind, family by family.
    pub fn all() -> impl Iterator<Item = Kind> {
        Family::ALL
            .into_iter()
            .flat_map(|f| f.kinds().iter().copied())
    }
}

/// Whether a question's wording is one training shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Wording {
    Seen,
    Unseen,
}

/// Which examples a stream holds: the pairs its questions are about and
/// the wording they are asked in. Training is `Split::TRAIN`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Split {
    pub pairs: Pairs,
    pub wording: Wording,
}

impl Split {
    /// What training sees: seen pairs in seen wording.
    pub const TRAIN: Split = Split {
        pairs: Pairs::Seen,
        wording: Wording::Seen,
    };
    /// The evaluation splits: seen pairs, held-out pairs (seen wording),
    /// unseen wording (seen pairs).
    pub const EVAL: [Split; 3] = [
        Split::TRAIN,
        Split {
            pairs: Pairs::HeldOut,
            wording: Wording::Seen,
        },
        Split {
            pairs: Pairs::Seen,
            wording: Wording::Unseen,
        },
    ];
}

// ANCHOR: meta
/// What evaluation needs to know about one turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TurnMeta {
    pub family: Family,
    pub kind: Kind,
    /// Index into [`Kind::phrasings`].
    pub phrasing: usize,
    /// Whether that phrasing is one training shows.
    pub wording: Wording,
    /// [`Pairs::HeldOut`] if an object the question names, counts,
    /// compares or answers with, or the pair it asks about, is held out.
    pub pairs: Pairs,
    /// Objects in the picture.
    pub objects: usize,
    /// 0 for the first turn of the conversation.
    pub turn: usize,
}
// ANCHOR_END: meta

/// One question and its answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Turn {
    /// The user's text; the first turn's starts with `<|image|> `.
    pub user: String,
    /// The expected answer.
    pub assistant: String,
    pub meta: TurnMeta,
}

/// The turns about one picture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conversation {
    pub turns: Vec<Turn>,
}

impl Conversation {
    /// The turns as `model::chat` encodes them ([`model::chat::encode_chat`]).
    pub fn chat_turns(&self) -> Vec<model::chat::Turn> {
        self.turns
            .iter()
            .map(|t| model::chat::Turn::new(t.user.as_str(), t.assistant.as_str()))
            .collect()
    }

    /// The whole conversation as the model reads it: `<|user|> text
    /// <|assistant|> answer <|end|>` for each turn, separated by spaces.
    pub fn transcript(&self) -> String {
        self.turns
            .iter()
            .map(|t| format!("{USER} {} {ASSISTANT} {} {END}", t.user, t.assistant))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// A picture, its scene and a conversation about it.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    pub scene: GridScene,
    pub conversation: Conversation,
}

/// The plural of a shape word (`crosses`).
pub fn plural(shape: Shape) -> String {
    match shape {
        Shape::Cross => "crosses".to_string(),
        other => format!("{}s", other.word()),
    }
}

/// The words of a relation in questions (`left of`, `above`, …), and
/// whether a cell stands so to another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    LeftOf,
    RightOf,
    Above,
    Below,
}

impl Direction {
    const ALL: [Direction; 4] = [
        Direction::LeftOf,
        Direction::RightOf,
        Direction::Above,
        Direction::Below,
    ];
    fn words(self) -> &'static str {
        match self {
            Direction::LeftOf => "left of",
            Direction::RightOf => "right of",
            Direction::Above => "above",
            Direction::Below => "below",
        }
    }
    /// Whether `a` is (anywhere) `self` of `b`: left of means a column
    /// further left, whatever the rows.
    fn holds(self, a: super::scenes::Cell, b: super::scenes::Cell) -> bool {
        match self {
            Direction::LeftOf => a.col < b.col,
            Direction::RightOf => a.col > b.col,
            Direction::Above => a.row < b.row,
            Direction::Below => a.row > b.row,
        }
    }
}

/// An attribute a follow-up may ask.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Attr {
    Colour,
    Shape,
    Size,
    Where,
}

/// A question asked about a scene, before it becomes a [`Turn`].
#[derive(Debug, Clone)]
struct Asked {
    kind: Kind,
    phrasing: usize,
    text: String,
    answer: String,
    /// Indices of the objects the question is about.
    involved: Vec<usize>,
    /// The pair an existence question asks about.
    asked_pair: Option<(Shape, Colour)>,
    /// The object a follow-up may call "it".
    referent: Option<usize>,
    /// What the conversation has said about the referent so far.
    known: Vec<Attr>,
}

impl Asked {
    fn pairs(&self, scene: &GridScene) -> Pairs {
        let objects = scene.objects();
        let held = self
            .involved
            .iter()
            .map(|&i| objects[i].pair())
            .chain(self.asked_pair)
            .any(|(s, c)| is_held_out(s, c));
        if held { Pairs::HeldOut } else { Pairs::Seen }
    }
}

/// Draws one phrasing of `kind` of the wanted wording; every kind has at
/// least one of each.
fn phrase(kind: Kind, wording: Wording, rng: &mut impl Rng) -> (usize, &'static str) {
    let options: Vec<usize> = kind
        .phrasings()
        .iter()
        .enumerate()
        .filter(|(_, p)| p.unseen == (wording == Wording::Unseen))
        .map(|(i, _)| i)
        .collect();
    let i = options[rng.random_range(0..options.len())];
    (i, kind.phrasings()[i].template)
}

fn pick<T: Copy, R: Rng + ?Sized>(from: &[T], rng: &mut R) -> Option<T> {
    (!from.is_empty()).then(|| from[rng.random_range(0..from.len())])
}

/// Indices of the objects whose `key` no other object shares.
fn unique_by<K: PartialEq>(
    scene: &GridScene,
    key: impl Fn(&super::scenes::Placed) -> K,
) -> Vec<usize> {
    let objects = scene.objects();
    (0..objects.len())
        .filter(|&i| {
            objects
                .iter()
                .enumerate()
                .all(|(j, o)| j == i || key(o) != key(&objects[i]))
        })
        .collect()
}

/// The generator of scenes and conversations for the multimodal LLM.
///
/// Like [`crate::ToyData`], the batch of step `s` is a pure function of
/// `(seed, s)`: [`QaData::batch`].
#[derive(Debug, Clone, PartialEq)]
pub struct QaData {
    /// Seeds every batch (with the step).
    pub seed: u64,
    /// The shapes and colours scenes are drawn from.
    pub world: World,
    /// The canvas and the number of objects.
    pub scenes: SceneConfig,
    /// The families first turns are drawn from (follow-ups come with
    /// later turns whatever this says).
    pub families: Vec<Family>,
    /// Most turns in a conversation (1 to 3); the number is uniform from 1.
    pub max_turns: usize,
}

impl Default for QaData {
    fn default() -> Self {
        QaData {
            seed: 0,
            world: World::FULL,
            scenes: SceneConfig::default(),
            families: Family::ALL[..6].to_vec(),
            max_turns: 3,
        }
    }
}

/// Which stream evaluation sets come from: far from any training step.
const EVAL_STREAM: u64 = u64::MAX / 2;
/// Tries to find a question that fits a scene before counting the objects.
const TRIES: usize = 50;

impl QaData {
    /// Checks the world, the scene config, the families and the turns.
    ///
    /// # Errors
    /// The name of what is out of range and why.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        self.world.check()?;
        self.scenes.check()?;
        if self.families.is_empty() || self.families == [Family::FollowUp] {
            return Err((
                "families",
                "need at least one family besides follow-up".to_string(),
            ));
        }
        if !(1..=3).contains(&self.max_turns) {
            return Err((
                "max-turns",
                format!("must be between 1 and 3, got {}", self.max_turns),
            ));
        }
        Ok(())
    }

    /// The examples and images of training step `step`: a pure function of
    /// `(seed, step)`, never a held-out pair or an unseen phrasing.
    ///
    /// # Shapes
    /// `images: [B, 3, side, side]`
    ///
    /// # Panics
    /// If the config is out of range ([`QaData::check`]).
    pub fn batch(&self, step: u64, batch_size: usize) -> (Vec<Example>, Array4<f32>) {
        self.stream(mix(self.seed, step), batch_size, Split::TRAIN)
    }

    /// `count` examples of an evaluation split, drawn from a stream no
    /// training step uses, the same for every call.
    ///
    /// # Shapes
    /// `images: [count, 3, side, side]`
    pub fn eval_set(&self, split: Split, count: usize) -> (Vec<Example>, Array4<f32>) {
        let index = Split::EVAL.iter().position(|&s| s == split).unwrap_or(3) as u64;
        self.stream(mix(self.seed, EVAL_STREAM + index), count, split)
    }

    fn stream(&self, seed: u64, count: usize, split: Split) -> (Vec<Example>, Array4<f32>) {
        let mut rng = StdRng::seed_from_u64(seed);
        let side = self.scenes.side;
        let mut images = Array4::zeros((count, 3, side, side));
        let mut examples = Vec::with_capacity(count);
        for b in 0..count {
            let example = self.example(split, &mut rng);
            images
                .slice_mut(s![b, .., .., ..])
                .assign(&example.scene.render(side, &mut rng));
            examples.push(example);
        }
        (examples, images)
    }

    // ANCHOR: example
    /// One scene and a conversation about it: a first question of a random
    /// family that fits the scene (for held-out splits, one about a
    /// held-out pair), then up to `max_turns − 1` more, most of them
    /// follow-ups about what the turn before was about.
    ///
    /// # Panics
    /// If the config is out of range ([`QaData::check`]).
    pub fn example(&self, split: Split, rng: &mut impl Rng) -> Example {
        let first_kinds: Vec<Kind> = self
            .families
            .iter()
            .filter(|&&f| f != Family::FollowUp)
            .flat_map(|f| f.kinds().iter().copied())
            .collect();
        let (scene, first) = (0..TRIES)
            .find_map(|_| {
                let kind = pick(&first_kinds, rng)?;
                let (scene, want) = self.scene_for(kind, split.pairs, rng);
                let asked = self.ask(kind, &scene, split, want, rng)?;
                let wanted = split.pairs == Pairs::Seen || asked.pairs(&scene) == Pairs::HeldOut;
                wanted.then_some((scene, asked))
            })
            .unwrap_or_else(|| {
                // counting every object fits every scene, and involves the
                // held-out object of a held-out scene
                let (scene, _) = self.scene_for(Kind::CountAll, split.pairs, rng);
                let asked = self.ask(Kind::CountAll, &scene, split, None, rng);
                (scene, asked.expect("count-all fits every scene"))
            });
        let turns = rng.random_range(1..=self.max_turns);
        let mut asked = vec![first];
        while asked.len() < turns {
            let last = asked.last().expect("one turn at least");
            let next = if rng.random::<f32>() < 0.7 {
                self.follow_up(last, &scene, split.wording, rng)
            } else {
                None
            };
            let next = next.or_else(|| {
                (0..TRIES)
                    .find_map(|_| self.ask(pick(&first_kinds, rng)?, &scene, split, None, rng))
            });
            match next {
                Some(n) => asked.push(n),
                None => break,
            }
        }
        let turns = asked
            .iter()
            .enumerate()
            .map(|(turn, a)| Turn {
                user: if turn == 0 {
                    format!("{} {}", tokenizer::IMAGE, a.text)
                } else {
                    a.text.clone()
                },
                assistant: a.answer.clone(),
                meta: TurnMeta {
                    family: a.kind.family(),
                    kind: a.kind,
                    phrasing: a.phrasing,
                    wording: if a.kind.phrasings()[a.phrasing].unseen {
                        Wording::Unseen
                    } else {
                        Wording::Seen
                    },
                    pairs: a.pairs(&scene),
                    objects: scene.len(),
                    turn,
                },
            })
            .collect();
        Example {
            scene,
            conversation: Conversation { turns },
        }
    }
    // ANCHOR_END: example

    /// A scene that suits `kind`: distinct colours where the question names
    /// objects by colour, two objects at least for relations and
    /// comparisons (when the config allows two), and for half the
    /// comparisons a pair that shares the compared attribute.
    ///
    /// For comparisons it also returns the answer the scene was made for:
    /// yes (two objects made to agree) or no, half each.
    fn scene_for(&self, kind: Kind, pairs: Pairs, rng: &mut impl Rng) -> (GridScene, Option<bool>) {
        let (lo, hi) = (self.scenes.min_objects, self.scenes.max_objects);
        let mut n = rng.random_range(lo..=hi);
        let pairwise = matches!(
            kind,
            Kind::Nearest | Kind::Farthest | Kind::Direction | Kind::SameColour | Kind::SameShape
        );
        if pairwise {
            n = n.max(2).min(hi);
        }
        let by_colour = matches!(
            kind,
            Kind::Shape
                | Kind::Size
                | Kind::Where
                | Kind::Nearest
                | Kind::Farthest
                | Kind::Direction
                | Kind::SameShape
        );
        let colours = if by_colour || rng.random::<bool>() {
            Colours::Distinct
        } else {
            Colours::Free
        };
        let scene = sample_scene(&self.world, n, colours, pairs, rng);
        if !matches!(kind, Kind::SameColour | Kind::SameShape) {
            return (scene, None);
        }
        if rng.random::<bool>() {
            return (scene, Some(false));
        }
        // make two objects agree, if the world allows the new pair
        let mut objects = scene.objects().to_vec();
        let allowed = |s: Shape, c: Colour| pairs == Pairs::HeldOut || !is_held_out(s, c);
        let candidates = if kind == Kind::SameColour {
            unique_by(&scene, |o| o.shape)
        } else {
            (0..objects.len()).collect()
        };
        if let [a, b, ..] = candidates[..] {
            let (x, y) = (objects[a], objects[b]);
            if kind == Kind::SameColour && allowed(y.shape, x.colour) {
                objects[b].colour = x.colour;
            } else if kind == Kind::SameShape && allowed(x.shape, y.colour) {
                objects[b].shape = x.shape;
            }
        }
        (GridScene::new(objects), Some(true))
    }

    /// A question of `kind` about `scene`, or `None` if the scene has no
    /// object the question could name without ambiguity. In held-out
    /// splits the held-out object is the one named where it can be.
    fn ask(
        &self,
        kind: Kind,
        scene: &GridScene,
        split: Split,
        want: Option<bool>,
        rng: &mut impl Rng,
    ) -> Option<Asked> {
        let objects = scene.objects();
        let held: Vec<usize> = (0..objects.len())
            .filter(|&i| {
                split.pairs == Pairs::HeldOut && is_held_out(objects[i].shape, objects[i].colour)
            })
            .collect();
        // prefer a held-out object among the candidates
        let choose = |cands: &[usize], rng: &mut dyn rand::RngCore| -> Option<usize> {
            let preferred: Vec<usize> =
                cands.iter().copied().filter(|i| held.contains(i)).collect();
            pick(
                if preferred.is_empty() {
                    cands
                } else {
                    &preferred
                },
                rng,
            )
        };
        let (phrasing, template) = phrase(kind, split.wording, rng);
        let all: Vec<usize> = (0..objects.len()).collect();
        let distinct = scene.colours_distinct();
        let mut asked = Asked {
            kind,
            phrasing,
            text: String::new(),
            answer: String::new(),
            involved: Vec::new(),
            asked_pair: None,
            referent: None,
            known: Vec::new(),
        };
        let fill = |o: &super::scenes::Placed| {
            template
                .replace("{s}", o.shape.word())
                .replace("{c}", o.colour.word())
        };
        match kind {
            Kind::Colour => {
                let i = choose(&unique_by(scene, |o| o.shape), rng)?;
                asked.text = fill(&objects[i]);
                asked.answer = objects[i].colour.word().to_string();
                asked.involved = vec![i];
                asked.referent = Some(i);
                asked.known = vec![Attr::Shape, Attr::Colour];
            }
            Kind::Shape | Kind::Size | Kind::Where => {
                if !distinct {
                    return None;
                }
                let i = choose(&all, rng)?;
                let o = objects[i];
                asked.text = fill(&o);
                asked.answer = match kind {
                    Kind::Shape => o.shape.word().to_string(),
                    Kind::Size => o.size.word().to_string(),
                    _ => o.cell.words().to_string(),
                };
                asked.involved = vec![i];
                asked.referent = Some(i);
                asked.known = match kind {
                    Kind::Shape => vec![Attr::Colour, Attr::Shape],
                    Kind::Size => vec![Attr::Colour, Attr::Shape, Attr::Size],
                    _ => vec![Attr::Colour, Attr::Where],
                };
            }
            Kind::Exists => {
                let (pair, answer) = if rng.random::<bool>() {
                    let i = choose(&all, rng)?;
                    asked.involved = vec![i];
                    asked.referent = Some(i);
                    asked.known = vec![Attr::Colour, Attr::Shape];
                    (objects[i].pair(), "yes")
                } else {
                    let absent: Vec<(Shape, Colour)> = self
                        .pair_pool(split.pairs)
                        .into_iter()
                        .filter(|p| objects.iter().all(|o| o.pair() != *p))
                        .collect();
                    let held_absent: Vec<(Shape, Colour)> = absent
                        .iter()
                        .copied()
                        .filter(|&(s, c)| is_held_out(s, c))
                        .collect();
                    let from = if held_absent.is_empty() {
                        &absent
                    } else {
                        &held_absent
                    };
                    (pick(from, rng)?, "no")
                };
                asked.asked_pair = Some(pair);
                asked.text = template
                    .replace("{a}", super::toy::article(pair.1.word()))
                    .replace("{c}", pair.1.word())
                    .replace("{s}", pair.0.word());
                asked.answer = answer.to_string();
            }
            Kind::CountShape | Kind::CountColour => {
                let anchor = choose(&held, rng).or_else(|| {
                    if rng.random::<f32>() < 0.6 {
                        pick(&all, rng)
                    } else {
                        None
                    }
                });
                let (shape, colour) = match anchor {
                    Some(i) => objects[i].pair(),
                    None => (
                        pick(self.world.shapes(), rng)?,
                        pick(self.world.colours(), rng)?,
                    ),
                };
                asked.involved = all
                    .iter()
                    .copied()
                    .filter(|&i| {
                        if kind == Kind::CountShape {
                            objects[i].shape == shape
                        } else {
                            objects[i].colour == colour
                        }
                    })
                    .collect();
                asked.text = template
                    .replace("{ps}", &plural(shape))
                    .replace("{c}", colour.word());
                asked.answer = asked.involved.len().to_string();
            }
            Kind::CountAll => {
                asked.text = template.to_string();
                asked.answer = objects.len().to_string();
                asked.involved = all;
            }
            Kind::Nearest | Kind::Farthest | Kind::Direction => {
                if !distinct || objects.len() < 2 {
                    return None;
                }
                // (reference, answer object, relation) triples with one answer
                let mut triples: Vec<(usize, usize, Option<Direction>)> = Vec::new();
                for i in 0..objects.len() {
                    let others: Vec<usize> = all.iter().copied().filter(|&j| j != i).collect();
                    if kind == Kind::Direction {
                        for d in Direction::ALL {
                            let hits: Vec<usize> = others
                                .iter()
                                .copied()
                                .filter(|&j| d.holds(objects[j].cell, objects[i].cell))
                                .collect();
                            if let [j] = hits[..] {
                                triples.push((i, j, Some(d)));
                            }
                        }
                    } else {
                        let mut by: Vec<(usize, usize)> = others
                            .iter()
                            .map(|&j| (objects[i].cell.distance2(objects[j].cell), j))
                            .collect();
                        by.sort();
                        if kind == Kind::Farthest {
                            by.reverse();
                        }
                        let clear = by.len() == 1 || by[0].0 != by[1].0;
                        if clear {
                            triples.push((i, by[0].1, None));
                        }
                    }
                }
                let preferred: Vec<usize> = (0..triples.len())
                    .filter(|&t| held.contains(&triples[t].0) || held.contains(&triples[t].1))
                    .collect();
                let t = pick(
                    if preferred.is_empty() {
                        &all[..0]
                    } else {
                        &preferred
                    },
                    rng,
                )
                .or_else(|| pick(&(0..triples.len()).collect::<Vec<_>>(), rng))?;
                let (i, j, d) = triples[t];
                asked.text = template
                    .replace("{rel}", d.map_or("", Direction::words))
                    .replace("{c}", objects[i].colour.word());
                asked.answer = objects[j].shape.word().to_string();
                asked.involved = vec![i, j];
                asked.referent = Some(j);
                asked.known = vec![Attr::Shape];
            }
            Kind::SameColour | Kind::SameShape => {
                let cands = if kind == Kind::SameColour {
                    unique_by(scene, |o| o.shape)
                } else if distinct {
                    all.clone()
                } else {
                    Vec::new()
                };
                if cands.len() < 2 {
                    return None;
                }
                let same = |a: usize, b: usize| {
                    if kind == Kind::SameColour {
                        objects[a].colour == objects[b].colour
                    } else {
                        objects[a].shape == objects[b].shape
                    }
                };
                let mut couples: Vec<(usize, usize)> = Vec::new();
                for (k, &a) in cands.iter().enumerate() {
                    for &b in &cands[k + 1..] {
                        couples.push((a, b));
                    }
                }
                // half the answers yes, half no
                let want = want.unwrap_or_else(|| rng.random::<bool>());
                let matching: Vec<(usize, usize)> = couples
                    .iter()
                    .copied()
                    .filter(|&(a, b)| same(a, b) == want)
                    .collect();
                // none of the wanted answer: let the caller draw another
                // scene, so yes and no stay balanced
                let from = &matching;
                let with_held: Vec<(usize, usize)> = from
                    .iter()
                    .copied()
                    .filter(|(a, b)| held.contains(a) || held.contains(b))
                    .collect();
                let (mut a, mut b) = pick(
                    if with_held.is_empty() {
                        from
                    } else {
                        &with_held
                    },
                    rng,
                )?;
                if rng.random::<bool>() {
                    std::mem::swap(&mut a, &mut b);
                }
                asked.text = template
                    .replace("{s1}", objects[a].shape.word())
                    .replace("{s2}", objects[b].shape.word())
                    .replace("{c1}", objects[a].colour.word())
                    .replace("{c2}", objects[b].colour.word());
                asked.answer = if same(a, b) { "yes" } else { "no" }.to_string();
                asked.involved = vec![a, b];
            }
            Kind::Describe => {
                asked.text = template.to_string();
                asked.answer = scene.caption();
                asked.involved = all;
            }
            Kind::FollowColour | Kind::FollowShape | Kind::FollowSize | Kind::FollowWhere => {
                return None; // follow-ups come from `follow_up`
            }
        }
        Some(asked)
    }

    /// Asks about what `last` was about an attribute no turn has named yet.
    fn follow_up(
        &self,
        last: &Asked,
        scene: &GridScene,
        wording: Wording,
        rng: &mut impl Rng,
    ) -> Option<Asked> {
        let i = last.referent?;
        let open: Vec<Attr> = [Attr::Colour, Attr::Shape, Attr::Size, Attr::Where]
            .into_iter()
            .filter(|a| !last.known.contains(a))
            .collect();
        let attr = pick(&open, rng)?;
        let o = scene.objects()[i];
        let (kind, answer) = match attr {
            Attr::Colour => (Kind::FollowColour, o.colour.word()),
            Attr::Shape => (Kind::FollowShape, o.shape.word()),
            Attr::Size => (Kind::FollowSize, o.size.word()),
            Attr::Where => (Kind::FollowWhere, o.cell.words()),
        };
        let (phrasing, template) = phrase(kind, wording, rng);
        let mut known = last.known.clone();
        known.push(attr);
        Some(Asked {
            kind,
            phrasing,
            text: template.to_string(),
            answer: answer.to_string(),
            involved: vec![i],
            asked_pair: None,
            referent: Some(i),
            known,
        })
    }

    /// The pairs an existence question may ask about.
    fn pair_pool(&self, pairs: Pairs) -> Vec<(Shape, Colour)> {
        match pairs {
            Pairs::Seen => self.world.seen_pairs(),
            Pairs::HeldOut => self
                .world
                .shapes()
                .iter()
                .flat_map(|&s| self.world.colours().iter().map(move |&c| (s, c)))
                .collect(),
        }
    }

    // ANCHOR: corpus
    /// The world's language as lines of text, what the chat tokenizer and a
    /// text-only language model learn from: every phrasing training shows
    /// filled with every shape, colour, relation and object it can name,
    /// the answers (words, cells, digits, yes/no) and the captions of
    /// `captions` training scenes. Held-out pairs and unseen phrasings
    /// never appear.
    pub fn training_text(&self, captions: usize) -> Vec<String> {
        let mut lines = Vec::new();
        let shapes = self.world.shapes();
        let colours = self.world.colours();
        let seen = self.world.seen_pairs();
        for kind in Kind::all() {
            for p in kind.phrasings().iter().filter(|p| !p.unseen) {
                for &(s1, c1) in &seen {
                    let (s2, c2) = (
                        shapes[(s1 as usize + 1) % shapes.len()],
                        colours[(c1 as usize + 1) % colours.len()],
                    );
                    for d in Direction::ALL {
                        let line = p
                            .template
                            .replace("{a}", super::toy::article(c1.word()))
                            .replace("{ps}", &plural(s1))
                            .replace("{rel}", d.words())
                            .replace("{s1}", s1.word())
                            .replace("{s2}", s2.word())
                            .replace("{c1}", c1.word())
                            .replace("{c2}", c2.word())
                            .replace("{s}", s1.word())
                            .replace("{c}", c1.word());
                        if !lines.contains(&line) {
                            lines.push(line);
                        }
                    }
                }
            }
        }
        lines.extend(["yes", "no"].map(String::from));
        lines.extend((0..=MAX_OBJECTS).map(|n| n.to_string()));
        lines.extend(
            super::scenes::Cell::ALL
                .iter()
                .map(|c| c.words().to_string()),
        );
        lines.extend(Size::ALL.iter().map(|s| s.word().to_string()));
        let mut rng = StdRng::seed_from_u64(mix(self.seed, EVAL_STREAM - 1));
        for _ in 0..captions {
            let n = rng.random_range(self.scenes.min_objects..=self.scenes.max_objects);
            let scene = sample_scene(&self.world, n, Colours::Free, Pairs::Seen, &mut rng);
            lines.push(scene.caption());
        }
        lines
    }
    // ANCHOR_END: corpus

    /// A byte-level BPE tokenizer trained on [`QaData::training_text`] (as
    /// many merges as it supports, at most 1024 tokens), then the chat's
    /// special tokens [`CHAT_SPECIAL`].
    ///
    /// # Errors
    /// A [`TokenizerError`] from training.
    pub fn train_tokenizer(&self, captions: usize) -> Result<Tokenizer, TokenizerError> {
        chat_tokenizer(&self.training_text(captions))
    }
}

/// A byte-level BPE tokenizer trained on `lines` (as many merges as they
/// support, at most 1024 tokens), then the chat's special tokens
/// [`CHAT_SPECIAL`]: the world's tokenizer, and an own-data run's.
///
/// # Errors
/// A [`TokenizerError`] from training.
pub fn chat_tokenizer(lines: &[String]) -> Result<Tokenizer, TokenizerError> {
    let tok = match Tokenizer::train_lines(lines, 1024) {
        Err(TokenizerError::VocabTooLarge { reached, .. }) => {
            Tokenizer::train_lines(lines, reached)?
        }
        other => other?,
    };
    tok.with_special_tokens(&CHAT_SPECIAL)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, BTreeSet};

    fn data() -> QaData {
        QaData {
            seed: 3,
            ..QaData::default()
        }
    }

    fn words(text: &str) -> Vec<String> {
        text.replace(['?', '.', ','], " ")
            .split_whitespace()
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn a_step_s_batch_depends_on_seed_and_step_only() {
        let d = data();
        let (e1, i1) = d.batch(5, 6);
        let (e2, i2) = d.batch(5, 6);
        assert_eq!((&e1, &i1), (&e2, &i2));
        assert_eq!(i1.dim(), (6, 3, 48, 48));
        assert_ne!(d.batch(6, 6).0, e1);
        assert_ne!(
            QaData {
                seed: 4,
                ..d.clone()
            }
            .batch(5, 6)
            .0,
            e1
        );
        assert_eq!(d.eval_set(Split::EVAL[1], 4), d.eval_set(Split::EVAL[1], 4));
    }

    #[test]
    fn training_never_shows_a_held_out_pair_or_an_unseen_phrasing() {
        let d = data();
        let held: Vec<String> = crate::data::HELD_OUT
            .iter()
            .map(|(s, c)| format!("{} {}", c.word(), s.word()))
            .collect();
        for step in 0..40 {
            for ex in d.batch(step, 16).0 {
                assert!(!ex.scene.is_held_out(), "{}", ex.scene.caption());
                for t in &ex.conversation.turns {
                    assert_eq!(t.meta.wording, Wording::Seen);
                    assert_eq!(t.meta.pairs, Pairs::Seen);
                    for h in &held {
                        assert!(!t.user.contains(h.as_str()), "{}", t.user);
                    }
                }
            }
        }
        for line in d.training_text(200) {
            for h in &held {
                assert!(!line.contains(h.as_str()), "{line}");
            }
        }
    }

    #[test]
    fn evaluation_splits_hold_what_they_say() {
        let d = data();
        let (held, _) = d.eval_set(Split::EVAL[1], 200);
        for ex in &held {
            let first = &ex.conversation.turns[0];
            assert_eq!(first.meta.pairs, Pairs::HeldOut, "{}", first.user);
            assert_eq!(first.meta.wording, Wording::Seen);
        }
        let (unseen, _) = d.eval_set(Split::EVAL[2], 200);
        for ex in &unseen {
            assert!(!ex.scene.is_held_out());
            for t in &ex.conversation.turns {
                assert_eq!(t.meta.wording, Wording::Unseen, "{}", t.user);
                assert!(t.meta.kind.phrasings()[t.meta.phrasing].unseen);
            }
        }
        // every family of first turns appears in the held-out split
        let families: BTreeSet<Family> = held
            .iter()
            .map(|e| e.conversation.turns[0].meta.family)
            .collect();
        assert_eq!(families.len(), 6, "{families:?}");
    }

    #[test]
    fn every_family_kind_and_phrasing_comes_up() {
        let d = data();
        let mut kinds = BTreeMap::new();
        let mut turns = [0; 3];
        for step in 0..60 {
            for ex in d.batch(step, 32).0 {
                turns[ex.conversation.turns.len() - 1] += 1;
                for t in &ex.conversation.turns {
                    kinds
                        .entry(t.meta.kind)
                        .or_insert_with(BTreeSet::new)
                        .insert(t.meta.phrasing);
                    assert_eq!(t.meta.family, t.meta.kind.family());
                    assert_eq!(t.meta.objects, ex.scene.len());
                }
            }
        }
        for kind in Kind::all() {
            let seen = kind.phrasings().iter().filter(|p| !p.unseen).count();
            assert_eq!(kinds.get(&kind).map(BTreeSet::len), Some(seen), "{kind:?}");
        }
        assert!(
            turns.iter().all(|&n| n > 300),
            "turns per conversation {turns:?}"
        );
    }

    #[test]
    fn every_kind_has_seen_and_unseen_wording_of_known_words() {
        let d = data();
        let known: BTreeSet<String> = d.training_text(100).iter().flat_map(|l| words(l)).collect();
        for kind in Kind::all() {
            let ps = kind.phrasings();
            assert!(
                ps.iter().any(|p| p.unseen) && ps.iter().any(|p| !p.unseen),
                "{kind:?}"
            );
            for p in ps.iter().filter(|p| p.unseen) {
                for w in words(p.template).iter().filter(|w| !w.starts_with('{')) {
                    assert!(
                        known.contains(w),
                        "{kind:?}: {w:?} of {:?} is new",
                        p.template
                    );
                }
            }
        }
    }

    /// Answers the question again from the scene alone, by a second,
    /// independent reading of the text; `None` if it cannot be read.
    fn answer(scene: &GridScene, text: &str) -> Option<String> {
        let objs = scene.objects();
        let w = words(text);
        let shape_of = |w: &str| Shape::ALL.into_iter().find(|s| s.word() == w);
        let colour_of = |w: &str| Colour::ALL.into_iter().find(|c| c.word() == w);
        let shapes: Vec<Shape> = w.iter().filter_map(|x| shape_of(x)).collect();
        let colours: Vec<Colour> = w.iter().filter_map(|x| colour_of(x)).collect();
        let the = |s: Option<Shape>, c: Option<Colour>| {
            let hits: Vec<_> = objs
                .iter()
                .filter(|o| s.is_none_or(|s| o.shape == s) && c.is_none_or(|c| o.colour == c))
                .collect();
            assert_eq!(hits.len(), 1, "{text}: ambiguous in {}", scene.caption());
            *hits[0]
        };
        let has = |x: &str| w.iter().any(|y| y == x);
        if has("many") || has("number") {
            let n = objs
                .iter()
                .filter(|o| {
                    let plural_hit = Shape::ALL.iter().any(|s| has(&plural(*s)) && o.shape == *s);
                    let colour_hit = colours.first().is_some_and(|c| o.colour == *c);
                    plural_hit
                        || colour_hit
                        || (colours.is_empty() && !Shape::ALL.iter().any(|s| has(&plural(*s))))
                })
                .count();
            return Some(n.to_string());
        }
        if has("same") {
            let (a, b) = if has("colour") {
                (the(Some(shapes[0]), None), the(Some(shapes[1]), None))
            } else {
                (the(None, Some(colours[0])), the(None, Some(colours[1])))
            };
            let same = if has("colour") {
                a.colour == b.colour
            } else {
                a.shape == b.shape
            };
            return Some(if same { "yes" } else { "no" }.to_string());
        }
        if has("closest")
            || has("nearest")
            || has("farthest")
            || has("left")
            || has("right")
            || has("above")
            || has("below")
        {
            let r = the(None, Some(colours[0]));
            let others: Vec<_> = objs.iter().filter(|o| o.cell != r.cell).collect();
            let pick: Vec<_> = if has("left") || has("right") || has("above") || has("below") {
                others
                    .into_iter()
                    .filter(|o| {
                        (has("left") && o.cell.col < r.cell.col)
                            || (has("right") && o.cell.col > r.cell.col)
                            || (has("above") && o.cell.row < r.cell.row)
                            || (has("below") && o.cell.row > r.cell.row)
                    })
                    .collect()
            } else {
                let key = |o: &&super::super::scenes::Placed| o.cell.distance2(r.cell);
                let best = if has("farthest") {
                    others.iter().map(key).max()
                } else {
                    others.iter().map(key).min()
                };
                others
                    .into_iter()
                    .filter(|o| Some(key(o)) == best)
                    .collect()
            };
            assert_eq!(
                pick.len(),
                1,
                "{text}: not one answer in {}",
                scene.caption()
            );
            return Some(pick[0].shape.word().to_string());
        }
        if has("there")
            || has("show")
            || (has("is")
                && has("in")
                && colours.len() == 1
                && shapes.len() == 1
                && !has("where")
                && !has("part"))
        {
            let there = objs
                .iter()
                .any(|o| o.shape == shapes[0] && o.colour == colours[0]);
            return Some(if there { "yes" } else { "no" }.to_string());
        }
        let s = shapes.first().copied();
        let c = colours.first().copied();
        let o = the(s, c);
        if has("where") || has("part") {
            Some(o.cell.words().to_string())
        } else if has("size") || has("big") {
            Some(o.size.word().to_string())
        } else if has("colour") {
            Some(o.colour.word().to_string())
        } else if has("shape") {
            Some(o.shape.word().to_string())
        } else {
            None
        }
    }

    #[test]
    fn every_first_answer_is_the_one_the_picture_gives() {
        let d = data();
        let mut checked = 0;
        for split in Split::EVAL {
            for ex in d.eval_set(split, 300).0 {
                let first = &ex.conversation.turns[0];
                let text = first.user.trim_start_matches(tokenizer::IMAGE);
                if first.meta.family == Family::Describe {
                    assert_eq!(first.assistant, ex.scene.caption());
                    continue;
                }
                if let Some(want) = answer(&ex.scene, text) {
                    assert_eq!(first.assistant, want, "{text} in {}", ex.scene.caption());
                    checked += 1;
                }
            }
        }
        assert!(checked > 700, "{checked}");
    }

    #[test]
    fn yes_and_no_are_balanced_and_follow_ups_refer_back() {
        let d = data();
        let mut yes_no: BTreeMap<Family, (usize, usize)> = BTreeMap::new();
        let mut follow_ups = 0;
        for step in 0..40 {
            for ex in d.batch(step, 32).0 {
                let turns = &ex.conversation.turns;
                for (k, t) in turns.iter().enumerate() {
                    if k > 0 {
                        assert!(!t.user.contains(tokenizer::IMAGE));
                    }
                    if t.meta.family == Family::FollowUp {
                        follow_ups += 1;
                        assert!(k > 0);
                        // never the attribute the previous turn said
                        let prev = &turns[k - 1];
                        assert!(
                            !words(&prev.user).contains(&t.assistant)
                                && prev.assistant != t.assistant,
                            "{} {} / {} {}",
                            prev.user,
                            prev.assistant,
                            t.user,
                            t.assistant
                        );
                    }
                    if t.assistant == "yes" || t.assistant == "no" {
                        let e = yes_no.entry(t.meta.family).or_default();
                        if t.assistant == "yes" {
                            e.0 += 1
                        } else {
                            e.1 += 1
                        }
                    }
                }
            }
        }
        assert!(follow_ups > 200, "{follow_ups}");
        for (family, (yes, no)) in yes_no {
            let share = yes as f32 / (yes + no) as f32;
            assert!(
                (0.4..0.6).contains(&share),
                "{family:?}: {yes} yes, {no} no"
            );
        }
    }

    #[test]
    fn transcripts_use_the_chat_markers() {
        let d = data();
        let (examples, _) = d.batch(0, 8);
        let ex = examples
            .iter()
            .find(|e| e.conversation.turns.len() == 2)
            .unwrap();
        let t = &ex.conversation.turns;
        assert_eq!(
            ex.conversation.transcript(),
            format!(
                "<|user|> {} <|assistant|> {} <|end|> <|user|> {} <|assistant|> {} <|end|>",
                t[0].user, t[0].assistant, t[1].user, t[1].assistant
            )
        );
        assert!(t[0].user.starts_with("<|image|> "));
    }

    #[test]
    fn one_object_scenes_ask_only_what_one_object_can_answer() {
        let d = QaData {
            scenes: SceneConfig {
                max_objects: 1,
                ..SceneConfig::default()
            },
            ..data()
        };
        for ex in d.batch(0, 200).0 {
            assert_eq!(ex.scene.len(), 1);
            for t in &ex.conversation.turns {
                assert!(
                    !matches!(t.meta.family, Family::Relations | Family::Comparison),
                    "{}",
                    t.user
                );
            }
        }
    }

    #[test]
    fn the_chat_tokenizer_knows_every_word_and_marker() {
        let d = QaData {
            world: World::SMALL,
            ..data()
        };
        let tok = d.train_tokenizer(50).unwrap();
        for m in CHAT_SPECIAL {
            assert!(tok.special_id(m).is_some(), "{m}");
        }
        // the IDs model::chat and the captioning model look up
        assert!(model::chat::ChatTokens::from_tokenizer(&tok).is_ok());
        assert!(model::SpecialTokens::from_tokenizer(&tok).is_ok());
        let v = tok.vocab_size() as u32;
        assert_eq!(tok.special_id(tokenizer::BOS), Some(v - 7));
        assert_eq!(tok.special_id(END), Some(v - 1));
        // the world's words are single tokens
        let question = "which shape is closest to the magenta one in the picture?";
        assert_eq!(tok.encode_ordinary(question).len(), 12, "{question}");
        let ex = d.batch(1, 1).0.remove(0);
        let text = ex.conversation.transcript();
        let ids = tok.encode(&text, tokenizer::AllowedSpecial::All).unwrap();
        assert_eq!(tok.decode(&ids).unwrap(), text);
        // model::chat reads every generated conversation, learning only the
        // answers and their <|end|>
        let chat = model::chat::ChatTokens::from_tokenizer(&tok).unwrap();
        for ex in d.batch(2, 50).0 {
            let turns = ex.conversation.chat_turns();
            let encoded =
                model::chat::encode_chat(&tok, &chat, &turns, model::chat::ImageSlot::Required)
                    .unwrap();
            let answer_tokens: usize = turns
                .iter()
                .map(|t| tok.encode_ordinary(&t.assistant).len() + 1)
                .sum();
            assert_eq!(encoded.weights.iter().sum::<f32>(), answer_tokens as f32);
        }
    }

    #[test]
    fn checks_name_their_flag() {
        assert_eq!(QaData::default().check(), Ok(()));
        let bad = |d: QaData| d.check().unwrap_err().0;
        assert_eq!(
            bad(QaData {
                max_turns: 0,
                ..data()
            }),
            "max-turns"
        );
        assert_eq!(
            bad(QaData {
                families: vec![],
                ..data()
            }),
            "families"
        );
        assert_eq!(
            bad(QaData {
                families: vec![Family::FollowUp],
                ..data()
            }),
            "families"
        );
    }
}
