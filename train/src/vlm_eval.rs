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
use crate::data::questions::{Example, Family, QaData, Split, TurnMeta};

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
    let mut scored = Vec::new();
    let mut blind_scored = Vec::new();
    let mut expected: Vec<(TurnMeta, String)> = Vec::new();
    let mut answered = Vec::new();
    for split in Split::EVAL {
        let (examples, images) = data.eval_set(split, count);
        let answers = answer_turns(vlm, tokenizer, &examples, &images.view());
        let blank = Array4::<f32>::zeros(images.dim());
        let blind = answer_turns(vlm, tokenizer, &examples, &blank.view());
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
