//! How well the multimodal LLM answers, and how much of it comes from
//! looking at the picture.
//!
//! Every evaluation split ([`Split::EVAL`]: seen pairs, held-out pairs,
//! unseen wording) is a fixed set of conversations no training step drew.
//! Each turn is asked with the true earlier turns before it (teacher
//! forcing the history, so a wrong first answer does not spoil the
//! second), answered greedily with the KV cache, and scored by exact match
//! after [`normalise`](crate::data::answers::normalise). Three rows of
//! baselines sit beside the model:
//!
//! - **blind**: the same model, the picture replaced by a blank one: what
//!   its language priors alone answer;
//! - **majority**: the most frequent training answer of each family.
//!
//! A model that looks at the picture beats both by far; a model at the
//! blind baseline has learned the questions, not the pictures.

use model::generate::{GenerationConfig, greedy};
use model::{CachedVlm, ChatTokens, ImageSlot, Vlm, encode_prompt};
use ndarray::{Array2, Array4, ArrayView4, Axis, s};
use serde::{Deserialize, Serialize};
use tokenizer::Tokenizer;

use crate::data::answers::{
    AccuracyTable, accuracy_table, exact_match, majority_answers, majority_baseline,
};
use crate::data::questions::{Example, Family, QaData, Split, TurnMeta, Wording};
use crate::data::scenes::Pairs;

/// The most tokens an answer may have (a six-object caption is the longest).
pub const MAX_ANSWER_TOKENS: usize = 80;

/// One turn asked and answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Answered {
    pub question: String,
    pub expected: String,
    pub answer: String,
    pub blind: String,
    pub family: String,
    pub correct: bool,
    /// What the question asks (a [`Kind`](crate::data::questions::Kind)
    /// by name, e.g. `CountColour`); empty in a `metrics.json` written
    /// before it was recorded.
    #[serde(default)]
    pub kind: String,
    /// The phrasing's template (`how many {c} shapes are there?`).
    #[serde(default)]
    pub phrasing: String,
    /// Whether training never shows that phrasing.
    #[serde(default)]
    pub unseen_wording: bool,
    /// Whether the turn is about a held-out (shape, colour) pair.
    #[serde(default)]
    pub held_out: bool,
}

/// The evaluation of a multimodal model.
#[derive(Debug, Clone)]
pub struct VlmReport {
    /// The model, per family / objects / turn, by split.
    pub model: AccuracyTable,
    /// The model with a blank picture.
    pub blind: AccuracyTable,
    /// The majority answer of each family.
    pub majority: AccuracyTable,
    /// Every turn asked, in order (for galleries and failures).
    pub answered: Vec<Answered>,
}

// ANCHOR: answer_turns
/// Answers every turn of `examples` about `images`: turn `k` is asked
/// after the true turns `0..k`. Returns the answers in order.
///
/// # Shapes
/// - `images: [N, 3, H, W]`, one per example
pub fn answer_turns(
    vlm: &Vlm,
    tokenizer: &Tokenizer,
    examples: &[Example],
    images: &ArrayView4<f32>,
) -> Vec<String> {
    let tokens = vlm.config().tokens;
    let mut answers = Vec::new();
    for (example, image) in examples.iter().zip(images.axis_iter(Axis(0))) {
        let image = image.insert_axis(Axis(0)); // [1, 3, H, W]
        let turns = example.conversation.chat_turns();
        for k in 0..turns.len() {
            answers.push(answer_one(
                vlm,
                tokenizer,
                &tokens,
                &image,
                &turns[..k],
                &turns[k].user,
            ));
        }
    }
    answers
}
// ANCHOR_END: answer_turns

/// Answers single questions: `(question, image row)` pairs about the rows
/// of `images`.
pub fn answer_turns_of(
    vlm: &Vlm,
    tokenizer: &Tokenizer,
    questions: &[(String, usize)],
    images: &ArrayView4<f32>,
) -> Vec<String> {
    let tokens = vlm.config().tokens;
    questions
        .iter()
        .map(|(question, row)| {
            let image = images.slice(s![*row..*row + 1, .., .., ..]);
            answer_one(vlm, tokenizer, &tokens, &image, &[], question)
        })
        .collect()
}

/// The greedy answer to `question` after `history`, about `image`.
fn answer_one(
    vlm: &Vlm,
    tokenizer: &Tokenizer,
    tokens: &ChatTokens,
    image: &ArrayView4<f32>,
    history: &[model::Turn],
    question: &str,
) -> String {
    let Ok(prompt) = encode_prompt(tokenizer, tokens, history, question, ImageSlot::Required)
    else {
        return String::new(); // a question the chat format refuses: scored wrong
    };
    let max_len = vlm.config().lm.max_len;
    let used = prompt.len() + vlm.num_image_tokens() - 1;
    if used + 2 > max_len {
        return String::new(); // no room to answer: scored wrong
    }
    let row = Array2::from_shape_vec((1, prompt.len()), prompt).expect("one row");
    let (state, _) = vlm.prefill(image, &row);
    let cfg = GenerationConfig {
        bos: tokens.assistant,
        eos: tokens.end,
        max_new_tokens: MAX_ANSWER_TOKENS.min(max_len - used),
    };
    let out = greedy(&CachedVlm { vlm }, state, &cfg);
    String::from_utf8_lossy(&tokenizer.decode_bytes(&out.ids).unwrap_or_default()).into_owned()
}

// ANCHOR: evaluate_vlm
/// Evaluates `vlm` on `count` conversations of every split of `data`,
/// with the blind and the majority baselines.
pub fn evaluate_vlm(vlm: &Vlm, tokenizer: &Tokenizer, data: &QaData, count: usize) -> VlmReport {
    evaluate_answers(data, count, |examples, images| {
        answer_turns(vlm, tokenizer, examples, images)
    })
}

/// [`evaluate_vlm`] for any model: `answer` answers every turn of the
/// examples about the images, as [`answer_turns`] does (a blank picture
/// for the blind baseline).
pub fn evaluate_answers(
    data: &QaData,
    count: usize,
    answer: impl Fn(&[Example], &ArrayView4<f32>) -> Vec<String>,
) -> VlmReport {
    let mut scored = Vec::new();
    let mut blind_scored = Vec::new();
    let mut expected: Vec<(TurnMeta, String)> = Vec::new();
    let mut answered = Vec::new();
    for split in Split::EVAL {
        let (examples, images) = data.eval_set(split, count);
        let answers = answer(&examples, &images.view());
        let blank = Array4::<f32>::zeros(images.dim());
        let blind = answer(&examples, &blank.view());
        let turns = examples.iter().flat_map(|e| e.conversation.turns.iter());
        for ((turn, answer), blind) in turns.zip(answers).zip(blind) {
            let correct = exact_match(&answer, &turn.assistant);
            scored.push((turn.meta, correct));
            blind_scored.push((turn.meta, exact_match(&blind, &turn.assistant)));
            expected.push((turn.meta, turn.assistant.clone()));
            answered.push(Answered {
                question: turn.user.clone(),
                expected: turn.assistant.clone(),
                answer,
                blind,
                family: turn.meta.family.name().to_string(),
                correct,
                kind: format!("{:?}", turn.meta.kind),
                phrasing: turn.meta.kind.phrasings()[turn.meta.phrasing]
                    .template
                    .to_string(),
                unseen_wording: turn.meta.wording == Wording::Unseen,
                held_out: turn.meta.pairs == Pairs::HeldOut,
            });
        }
    }
    // the majority answer per family, from training conversations
    let (training, _) = data.batch(u64::MAX / 3, 2000);
    let training_answers: Vec<(Family, String)> = training
        .iter()
        .flat_map(|e| e.conversation.turns.iter())
        .map(|t| (t.meta.family, t.assistant.clone()))
        .collect();
    let majority = majority_answers(training_answers.iter().map(|(f, a)| (*f, a.as_str())));
    let expected_refs: Vec<(TurnMeta, &str)> =
        expected.iter().map(|(m, a)| (*m, a.as_str())).collect();
    VlmReport {
        model: accuracy_table(&scored),
        blind: accuracy_table(&blind_scored),
        majority: accuracy_table(&majority_baseline(&expected_refs, &majority)),
        answered,
    }
}
// ANCHOR_END: evaluate_vlm

/// A one-line check during training: accuracy per family on `count`
/// conversations of seen and of held-out pairs (`seen/held-out`).
pub fn progress_line(vlm: &Vlm, tokenizer: &Tokenizer, data: &QaData, count: usize) -> String {
    let mut scored = Vec::new();
    for split in &Split::EVAL[..2] {
        let (examples, images) = data.eval_set(*split, count);
        let answers = answer_turns(vlm, tokenizer, &examples, &images.view());
        let turns = examples.iter().flat_map(|e| e.conversation.turns.iter());
        for (turn, answer) in turns.zip(answers) {
            scored.push((turn.meta, exact_match(&answer, &turn.assistant)));
        }
    }
    let table = accuracy_table(&scored);
    let mut line = String::new();
    for family in Family::ALL {
        let cell = |c| {
            table
                .get(family.name(), c)
                .and_then(|t| t.accuracy())
                .map_or("-".to_string(), |a| format!("{:.0}", 100.0 * a))
        };
        line.push_str(&format!(
            "{} {}/{}  ",
            family.name(),
            cell(crate::data::answers::Column::Seen),
            cell(crate::data::answers::Column::HeldOut)
        ));
    }
    line
}

/// The attention of the first answer position over the image tokens:
/// every block's weights of the `<|assistant|>` position (which predicts
/// the first answer token) over the image positions, averaged over heads
/// and blocks, as a `side × side` map of the pooled grid.
///
/// # Shapes
/// - `image: [1, 3, H, W]` → `[n, n]`, `n² =` the image tokens
pub fn answer_attention(
    vlm: &Vlm,
    tokenizer: &Tokenizer,
    image: &ArrayView4<f32>,
    question: &str,
) -> Option<Array2<f32>> {
    let tokens = vlm.config().tokens;
    let mut ids = encode_prompt(tokenizer, &tokens, &[], question, ImageSlot::Required).ok()?;
    ids.push(tokens.assistant);
    let image_at = ids.iter().position(|&id| id == tokens.image)?;
    let row = Array2::from_shape_vec((1, ids.len()), ids).ok()?;
    let frozen = model::Freeze {
        vision_tower: true,
        projector: true,
        language_model: true,
    };
    let (_, cache) = vlm.forward(image, &row, frozen);
    let n = vlm.num_image_tokens();
    let side = n.isqrt();
    if side * side != n {
        return None; // a CLS token: no square map
    }
    let mut map = Array2::<f32>::zeros((side, side));
    let mut layers = 0;
    for (_, lm) in cache.language_model() {
        for i in 0..lm.depth() {
            let w = lm.attention_weights(i); // [1, H, T', T']
            let last = w.dim().2 - 1; // the <|assistant|> position
            let over_image = w.slice(s![0, .., last, image_at..image_at + n]); // [H, N]
            let mean = over_image.mean_axis(Axis(0))?; // [N]
            map += &mean.into_shape_with_order((side, side)).ok()?;
            layers += 1;
        }
    }
    Some(map / layers.max(1) as f32)
}

/// How much of each attribute a linear read-out finds in the tower's
/// tokens of one cell (the four grid positions a 2×2 pixel shuffle
/// stacks), on scenes of 1 to 6 objects: accuracy on occupied cells for
/// shape, colour and size, on all cells for occupied or empty.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ProbeReport {
    pub shape: f32,
    pub colour: f32,
    pub size: f32,
    pub occupied: f32,
    /// Shape accuracy on the held-out pairs' objects.
    pub held_out_shape: f32,
}

/// What is in one cell of a scene, as the probe's classes.
#[derive(Debug, Clone, Copy, Default)]
struct CellLabel {
    occupied: bool,
    shape: usize,
    colour: usize,
    size: usize,
    held_out: bool,
}

/// Per-cell features and labels of `count` scenes: `[cells, 4·C]`.
fn cell_features(
    tower: &model::ImageEncoder,
    world: &crate::data::World,
    side: usize,
    count: usize,
    pairs: crate::data::scenes::Pairs,
    seed: u64,
) -> (Array2<f32>, Vec<CellLabel>) {
    use crate::data::scenes::{Cell, Colours, GRID, MAX_OBJECTS, sample_scene};
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut feats = Vec::new();
    let mut labels = Vec::new();
    let chunk = 64;
    let mut done = 0;
    while done < count {
        let n = chunk.min(count - done);
        let mut images = Array4::<f32>::zeros((n, 3, side, side));
        let mut scenes = Vec::new();
        for b in 0..n {
            let k = rng.random_range(1..=MAX_OBJECTS);
            let scene = sample_scene(world, k, Colours::Free, pairs, &mut rng);
            images
                .slice_mut(s![b, .., .., ..])
                .assign(&scene.render(side, &mut rng));
            scenes.push(scene);
        }
        let (out, _) = tower.forward(&images);
        let (_, tokens, width) = out.tokens.dim();
        let grid = tokens.isqrt();
        let per = grid / GRID; // tower positions per cell side
        for (b, scene) in scenes.iter().enumerate() {
            for cell in Cell::ALL {
                let mut f = Vec::with_capacity(per * per * width);
                for dy in 0..per {
                    for dx in 0..per {
                        let t = (cell.row * per + dy) * grid + cell.col * per + dx;
                        f.extend(out.tokens.slice(s![b, t, ..]).iter());
                    }
                }
                feats.push(f);
                let o = scene.objects().iter().find(|o| o.cell == cell);
                labels.push(o.map_or(CellLabel::default(), |o| CellLabel {
                    occupied: true,
                    shape: o.shape as usize,
                    colour: o.colour as usize,
                    size: o.size as usize,
                    held_out: crate::data::is_held_out(o.shape, o.colour),
                }));
            }
        }
        done += n;
    }
    let d = feats[0].len();
    let x = Array2::from_shape_vec((feats.len(), d), feats.concat()).expect("rows of one width");
    (x, labels)
}

/// Solves `(XᵀX + λI) W = XᵀY` by Cholesky (X with a column of ones).
fn ridge(x: &Array2<f32>, y: &Array2<f32>, lambda: f64) -> Array2<f64> {
    let (n, d) = x.dim();
    let mut xa = Array2::<f64>::ones((n, d + 1));
    xa.slice_mut(s![.., ..d]).assign(&x.mapv(f64::from));
    let mut a = xa.t().dot(&xa);
    for i in 0..d {
        a[[i, i]] += lambda * n as f64;
    }
    let mut b = xa.t().dot(&y.mapv(f64::from));
    // Cholesky: a = L Lᵀ
    let m = d + 1;
    let mut l = Array2::<f64>::zeros((m, m));
    for i in 0..m {
        for j in 0..=i {
            let mut sum = a[[i, j]];
            for k in 0..j {
                sum -= l[[i, k]] * l[[j, k]];
            }
            if i == j {
                l[[i, i]] = sum.max(1e-12).sqrt();
            } else {
                l[[i, j]] = sum / l[[j, j]];
            }
        }
    }
    // forward then back substitution, column by column of b
    for c in 0..b.ncols() {
        for i in 0..m {
            let mut sum = b[[i, c]];
            for k in 0..i {
                sum -= l[[i, k]] * b[[k, c]];
            }
            b[[i, c]] = sum / l[[i, i]];
        }
        for i in (0..m).rev() {
            let mut sum = b[[i, c]];
            for k in i + 1..m {
                sum -= l[[k, i]] * b[[k, c]];
            }
            b[[i, c]] = sum / l[[i, i]];
        }
    }
    b
}

/// Accuracy of a ridge read-out of `classes` trained on `(xa, ya)` rows
/// where `keep`, tested on `(xb, yb)` rows where `keep_test`.
fn probe_accuracy(
    train: (&Array2<f32>, &[usize], &[bool]),
    test: (&Array2<f32>, &[usize], &[bool]),
    classes: usize,
    mean: &ndarray::Array1<f32>,
    std: &ndarray::Array1<f32>,
) -> f32 {
    let pick = |x: &Array2<f32>, keep: &[bool]| -> Array2<f32> {
        let rows: Vec<usize> = (0..x.nrows()).filter(|&i| keep[i]).collect();
        let mut out = x.select(Axis(0), &rows);
        out -= mean;
        out /= std;
        out
    };
    let xa = pick(train.0, train.2);
    let ya_labels: Vec<usize> = (0..train.1.len())
        .filter(|&i| train.2[i])
        .map(|i| train.1[i])
        .collect();
    let mut ya = Array2::<f32>::zeros((xa.nrows(), classes));
    for (i, &c) in ya_labels.iter().enumerate() {
        ya[[i, c]] = 1.0;
    }
    let w = ridge(&xa, &ya, 1e-3);
    let xb = pick(test.0, test.2);
    let yb: Vec<usize> = (0..test.1.len())
        .filter(|&i| test.2[i])
        .map(|i| test.1[i])
        .collect();
    if yb.is_empty() {
        return 0.0;
    }
    let d = xb.ncols();
    let scores = xb.mapv(f64::from).dot(&w.slice(s![..d, ..])) + w.row(d);
    let right = scores
        .rows()
        .into_iter()
        .zip(&yb)
        .filter(|(row, y)| {
            let best = row
                .iter()
                .enumerate()
                .fold(
                    (0, f64::NEG_INFINITY),
                    |m, (i, &v)| if v > m.1 { (i, v) } else { m },
                );
            best.0 == **y
        })
        .count();
    right as f32 / yb.len() as f32
}

/// A linear probe of the tower: least-squares read-outs of each cell's
/// tokens, trained on `train` scenes of seen pairs, tested on `test` others
/// (and on scenes holding a held-out pair).
pub fn probe_tower(
    tower: &model::ImageEncoder,
    world: &crate::data::World,
    side: usize,
    train: usize,
    test: usize,
) -> ProbeReport {
    use crate::data::scenes::Pairs;
    let (xa, la) = cell_features(tower, world, side, train, Pairs::Seen, 1);
    let (xb, lb) = cell_features(tower, world, side, test, Pairs::Seen, 2);
    let (xh, lh) = cell_features(tower, world, side, test, Pairs::HeldOut, 3);
    let mean = xa.mean_axis(Axis(0)).expect("rows");
    let std = xa.std_axis(Axis(0), 0.0).mapv(|s| s.max(1e-6));
    let col =
        |l: &[CellLabel], f: fn(&CellLabel) -> usize| -> Vec<usize> { l.iter().map(f).collect() };
    let occ = |l: &[CellLabel]| -> Vec<bool> { l.iter().map(|x| x.occupied).collect() };
    let all = |l: &[CellLabel]| vec![true; l.len()];
    let (oa, ob) = (occ(&la), occ(&lb));
    let acc = |f: fn(&CellLabel) -> usize, classes| {
        probe_accuracy(
            (&xa, &col(&la, f), &oa),
            (&xb, &col(&lb, f), &ob),
            classes,
            &mean,
            &std,
        )
    };
    let held: Vec<bool> = lh.iter().map(|x| x.occupied && x.held_out).collect();
    ProbeReport {
        shape: acc(|x| x.shape, world.shapes),
        colour: acc(|x| x.colour, world.colours),
        size: acc(|x| x.size, 2),
        occupied: probe_accuracy(
            (&xa, &col(&la, |x| usize::from(x.occupied)), &all(&la)),
            (&xb, &col(&lb, |x| usize::from(x.occupied)), &all(&lb)),
            2,
            &mean,
            &std,
        ),
        held_out_shape: probe_accuracy(
            (&xa, &col(&la, |x| x.shape), &oa),
            (&xh, &col(&lh, |x| x.shape), &held),
            world.shapes,
            &mean,
            &std,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    #[test]
    fn ridge_recovers_a_linear_map_and_its_offset() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let x = Array2::from_shape_fn((200, 5), |_| rng.random_range(-1.0f32..1.0));
        let w = Array2::from_shape_fn((5, 3), |(i, j)| (i as f32 - 2.0) * 0.5 + j as f32);
        let y = x.dot(&w) + 0.25;
        let fit = ridge(&x, &y, 1e-9);
        for ((i, j), &v) in w.indexed_iter() {
            assert!((fit[[i, j]] - f64::from(v)).abs() < 1e-3, "w[{i},{j}]");
        }
        for j in 0..3 {
            assert!((fit[[5, j]] - 0.25).abs() < 1e-3, "offset {j}");
        }
    }

    #[test]
    fn a_probe_reads_classes_a_linear_map_separates() {
        // one-hot class features with noise: a linear read-out finds them all
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let make = |n: usize, rng: &mut rand::rngs::StdRng| {
            let labels: Vec<usize> = (0..n).map(|i| i % 4).collect();
            let x = Array2::from_shape_fn((n, 6), |(i, j)| {
                f32::from(u8::from(labels[i] == j)) + rng.random_range(-0.1f32..0.1)
            });
            (x, labels)
        };
        let (xa, la) = make(200, &mut rng);
        let (xb, lb) = make(100, &mut rng);
        let keep_a = vec![true; 200];
        let keep_b = vec![true; 100];
        let mean = xa.mean_axis(Axis(0)).expect("rows");
        let std = xa.std_axis(Axis(0), 0.0).mapv(|s| s.max(1e-6));
        let acc = probe_accuracy((&xa, &la, &keep_a), (&xb, &lb, &keep_b), 4, &mean, &std);
        assert_eq!(acc, 1.0);
        // labels the features do not hold are read at about chance
        let shuffled: Vec<usize> = (0..200).map(|i| (i * 7 / 3) % 4).collect();
        let test: Vec<usize> = (0..100).map(|i| (i * 5 / 2) % 4).collect();
        let acc = probe_accuracy(
            (&xa, &shuffled, &keep_a),
            (&xb, &test, &keep_b),
            4,
            &mean,
            &std,
        );
        assert!(acc < 0.6, "{acc}");
    }
}
