//! The chat format: how a conversation about a picture becomes one sequence
//! of token IDs, which of them the model learns to predict, and the loss
//! that counts only those.
//!
//! ```text
//! <|user|> <|image|> what colour is the circle ? <|assistant|> red <|end|> <|user|> and its size ? <|assistant|> big <|end|>
//!  ·        ·         ·    ·      ·  ·   ·      ·  ·             ✓    ✓       ·        ·   ·   ·    ·  ·             ✓    ✓
//! ```
//!
//! Roles are special tokens, so no text can forge them: `<|user|>` opens a
//! question, `<|assistant|>` an answer, `<|end|>` closes the answer (it is
//! also what the model emits to stop talking). `<|image|>` marks where the
//! picture goes; the multimodal model replaces it by the projected image
//! tokens ([`crate::Vlm`]). The image may stand anywhere in the first
//! question, and only there.
//!
//! The model is trained on the whole sequence but **learns only the
//! answers**: the weight of a position is 1 where its token is part of an
//! assistant's answer (the `<|end|>` after it included, so the model learns
//! to stop) and 0 elsewhere (questions, roles, the image, padding). A model
//! that also learned to predict the questions would spend its capacity on
//! the user's wording (LLaVA and every instruction-tuned model mask them).
//!
// ANCHOR: answer_loss_doc
//! ## The loss
//! With targets `y` and weights `w ∈ {0, 1}` per position, and `p = softmax(z)`
//! of the logits at each position,
//!
//! $$ L = \frac{\sum_{b,t} w_{b,t} \left(-\log p_{b,t}[y_{b,t}]\right)}{\sum_{b,t} w_{b,t}} , $$
//!
//! the mean over the answer tokens of the batch. Its gradient is the
//! caption loss's, weighted:
//!
//! $$ \frac{\partial L}{\partial z_{b,t,:}} = \frac{w_{b,t}}{\sum w} \big(p_{b,t} - \text{onehot}(y_{b,t})\big) , $$
//!
//! exactly zero where `w = 0`: the questions get no gradient of their own.
// ANCHOR_END: answer_loss_doc

use std::fmt;

use ndarray::{Array2, Array3, ArrayRef2, ArrayRef3, s};
use tokenizer::{AllowedSpecial, IMAGE, PAD, Tokenizer, TokenizerError};

/// Opens a user's turn.
pub const USER: &str = "<|user|>";
/// Opens the assistant's answer.
pub const ASSISTANT: &str = "<|assistant|>";
/// Closes the assistant's answer; the model emits it to stop.
pub const END: &str = "<|end|>";

/// The special tokens a chat model's tokenizer registers, in this order
/// (after `<|bos|>`, `<|eos|>`, `<|pad|>` when it also has those).
pub const CHAT_SPECIAL_TOKENS: [&str; 4] = [IMAGE, USER, ASSISTANT, END];

// ANCHOR: chat_tokens
/// The IDs of the special tokens the chat format uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChatTokens {
    /// `<|image|>`: where the picture's tokens go.
    pub image: u32,
    /// `<|user|>`
    pub user: u32,
    /// `<|assistant|>`
    pub assistant: u32,
    /// `<|end|>`
    pub end: u32,
    /// `<|pad|>`: fills a batch's rows to one length.
    pub pad: u32,
}
// ANCHOR_END: chat_tokens

impl ChatTokens {
    /// Looks the five tokens up in a tokenizer.
    ///
    /// # Errors
    /// [`ChatError::MissingToken`] if it lacks one of them.
    pub fn from_tokenizer(tokenizer: &Tokenizer) -> Result<Self, ChatError> {
        let id = |token: &'static str| {
            tokenizer
                .special_id(token)
                .ok_or(ChatError::MissingToken { token })
        };
        Ok(ChatTokens {
            image: id(IMAGE)?,
            user: id(USER)?,
            assistant: id(ASSISTANT)?,
            end: id(END)?,
            pad: id(PAD)?,
        })
    }

    /// The five IDs with their names, in a fixed order.
    pub fn named(&self) -> [(&'static str, u32); 5] {
        [
            (IMAGE, self.image),
            (USER, self.user),
            (ASSISTANT, self.assistant),
            (END, self.end),
            (PAD, self.pad),
        ]
    }
}

/// One exchange: what the user asks, what the assistant answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Turn {
    /// The question; the first one of an image conversation holds `<|image|>`.
    pub user: String,
    /// The answer.
    pub assistant: String,
}

impl Turn {
    /// A turn from two strings.
    pub fn new(user: impl Into<String>, assistant: impl Into<String>) -> Self {
        Turn {
            user: user.into(),
            assistant: assistant.into(),
        }
    }
}

/// Whether a conversation must carry a picture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageSlot {
    /// `<|image|>` exactly once, in the first question (the multimodal model).
    Required,
    /// No `<|image|>` at all (the text-only language model).
    Forbidden,
}

// ANCHOR: chat_example
/// A conversation as token IDs, with the weight of each ID as a target.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatExample {
    /// The whole conversation.
    pub ids: Vec<u32>,
    /// `weights[t] = 1` if `ids[t]` is an answer token or the `<|end|>`
    /// closing an answer, `0` otherwise.
    pub weights: Vec<f32>,
}
// ANCHOR_END: chat_example

/// Why a conversation cannot be encoded.
#[derive(Debug)]
pub enum ChatError {
    /// The tokenizer lacks a special token of the chat format.
    MissingToken { token: &'static str },
    /// A conversation without any turn.
    NoTurns,
    /// The image placeholder is missing, repeated, or outside the first question.
    Image { turn: usize, message: &'static str },
    /// The text holds a special token it may not (or is otherwise not encodable).
    Text { turn: usize, source: TokenizerError },
    /// The conversation needs more positions than the model has.
    ContextFull { needed: usize, max_len: usize },
}

impl fmt::Display for ChatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChatError::MissingToken { token } => {
                write!(f, "the tokenizer has no special token {token}")
            }
            ChatError::NoTurns => write!(f, "a conversation needs at least one turn"),
            ChatError::Image { turn, message } => write!(f, "turn {}: {message}", turn + 1),
            ChatError::Text { turn, source } => write!(f, "turn {}: {source}", turn + 1),
            ChatError::ContextFull { needed, max_len } => write!(
                f,
                "the conversation needs {needed} positions, the model reads at most {max_len}: start over"
            ),
        }
    }
}

impl std::error::Error for ChatError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ChatError::Text { source, .. } => Some(source),
            _ => None,
        }
    }
}

// ANCHOR: encode_chat
/// Encodes a conversation: `<|user|> question <|assistant|> answer <|end|>`
/// per turn, with weight 1 on each answer and its `<|end|>`.
///
/// # Errors
/// [`ChatError::NoTurns`]; [`ChatError::Image`] if `<|image|>` is not where
/// `slot` wants it (exactly once in the first question, or nowhere);
/// [`ChatError::Text`] if a text holds another special token.
pub fn encode_chat(
    tokenizer: &Tokenizer,
    tokens: &ChatTokens,
    turns: &[Turn],
    slot: ImageSlot,
) -> Result<ChatExample, ChatError> {
    if turns.is_empty() {
        return Err(ChatError::NoTurns);
    }
    let mut example = ChatExample {
        ids: Vec::new(),
        weights: Vec::new(),
    };
    for (i, turn) in turns.iter().enumerate() {
        let question = encode_question(tokenizer, tokens, i, &turn.user, slot)?;
        let answer = encode_text(tokenizer, i, &turn.assistant, AllowedSpecial::Nothing)?;
        example.push(tokens.user, 0.0);
        for id in question {
            example.push(id, 0.0);
        }
        example.push(tokens.assistant, 0.0);
        for id in answer {
            example.push(id, 1.0); // the model learns these...
        }
        example.push(tokens.end, 1.0); // ...and to stop
    }
    Ok(example)
}
// ANCHOR_END: encode_chat

/// The prompt a model answers next: the earlier turns whole, then
/// `<|user|> question`. Generation then feeds `<|assistant|>` and lets the
/// model write until `<|end|>`.
///
/// # Errors
/// As [`encode_chat`], for the earlier turns and the question (turn
/// `history.len()`).
pub fn encode_prompt(
    tokenizer: &Tokenizer,
    tokens: &ChatTokens,
    history: &[Turn],
    question: &str,
    slot: ImageSlot,
) -> Result<Vec<u32>, ChatError> {
    let mut ids = if history.is_empty() {
        Vec::new()
    } else {
        encode_chat(tokenizer, tokens, history, slot)?.ids
    };
    ids.extend(encode_user(
        tokenizer,
        tokens,
        history.len(),
        question,
        slot,
    )?);
    Ok(ids)
}

/// `<|user|> question` for turn `turn` (counted from 0): what a
/// conversation appends when the user asks again.
///
/// # Errors
/// As [`encode_chat`] for that turn's question.
pub fn encode_user(
    tokenizer: &Tokenizer,
    tokens: &ChatTokens,
    turn: usize,
    question: &str,
    slot: ImageSlot,
) -> Result<Vec<u32>, ChatError> {
    let mut ids = vec![tokens.user];
    ids.extend(encode_question(tokenizer, tokens, turn, question, slot)?);
    Ok(ids)
}

impl ChatExample {
    fn push(&mut self, id: u32, weight: f32) {
        self.ids.push(id);
        self.weights.push(weight);
    }
}

/// A question's IDs: the first may (or must) hold `<|image|>` once.
fn encode_question(
    tokenizer: &Tokenizer,
    tokens: &ChatTokens,
    turn: usize,
    text: &str,
    slot: ImageSlot,
) -> Result<Vec<u32>, ChatError> {
    let image_here = turn == 0 && slot == ImageSlot::Required;
    let allowed = if image_here {
        AllowedSpecial::Only(&[IMAGE])
    } else {
        AllowedSpecial::Nothing
    };
    let ids = encode_text(tokenizer, turn, text, allowed).map_err(|e| match e {
        ChatError::Text { .. } if text.contains(IMAGE) => ChatError::Image {
            turn,
            message: if slot == ImageSlot::Forbidden {
                "this model reads no image, but the text holds <|image|>"
            } else {
                "<|image|> may only stand in the first question"
            },
        },
        e => e,
    })?;
    let images = ids.iter().filter(|&&id| id == tokens.image).count();
    if image_here && images != 1 {
        return Err(ChatError::Image {
            turn,
            message: if images == 0 {
                "the first question must hold <|image|> (where the picture goes)"
            } else {
                "<|image|> may stand only once"
            },
        });
    }
    Ok(ids)
}

fn encode_text(
    tokenizer: &Tokenizer,
    turn: usize,
    text: &str,
    allowed: AllowedSpecial,
) -> Result<Vec<u32>, ChatError> {
    tokenizer
        .encode(text, allowed)
        .map_err(|source| ChatError::Text { turn, source })
}

/// Stacks examples into a batch, each row padded at the end with `pad` and
/// weight 0.
///
/// # Shapes
/// → `tokens: [B, T]`, `weights: [B, T]`, `T` the longest example
pub fn collate(examples: &[ChatExample], pad: u32) -> (Array2<u32>, Array2<f32>) {
    let seq = examples.iter().map(|e| e.ids.len()).max().unwrap_or(0);
    let mut tokens = Array2::from_elem((examples.len(), seq), pad);
    let mut weights = Array2::zeros((examples.len(), seq));
    for (b, example) in examples.iter().enumerate() {
        let n = example.ids.len();
        tokens
            .slice_mut(s![b, ..n])
            .assign(&ndarray::ArrayView1::from(&example.ids));
        weights
            .slice_mut(s![b, ..n])
            .assign(&ndarray::ArrayView1::from(&example.weights));
    }
    (tokens, weights)
}

/// The answer loss and its gradient.
#[derive(Debug, Clone, PartialEq)]
pub struct AnswerLoss {
    /// `L`, the weighted mean cross-entropy.
    pub loss: f32,
    /// `[B, T, V]`: ∂L/∂`logits`, zero where the weight is 0.
    pub dlogits: Array3<f32>,
    /// `Σ w`: the number of answer tokens the mean is over.
    pub weight: f32,
}

// ANCHOR: answer_loss
/// Next-token cross-entropy counted only where `weights` says: the logits
/// at position `t` score `targets[t]` with weight `weights[t]`.
///
/// A batch without any weight has loss 0 and a zero gradient.
///
/// # Shapes
/// - `logits: [B, T, V]`, `targets: [B, T]`, `weights: [B, T]` → `dlogits: [B, T, V]`
///
/// # Panics
/// If the shapes disagree, a weight is negative or not finite, or a
/// weighted target is outside the vocabulary.
#[track_caller]
pub fn answer_loss(
    logits: &ArrayRef3<f32>,
    targets: &ArrayRef2<u32>,
    weights: &ArrayRef2<f32>,
) -> AnswerLoss {
    let (batch, seq, vocab) = logits.dim();
    assert!(
        targets.dim() == (batch, seq) && weights.dim() == (batch, seq),
        "answer_loss: logits are {:?}, targets {:?}, weights {:?} (want [B, T, V], [B, T], [B, T])",
        logits.dim(),
        targets.dim(),
        weights.dim()
    );
    assert!(
        weights.iter().all(|w| w.is_finite() && *w >= 0.0),
        "answer_loss: weights must be finite and non-negative"
    );
    let total_weight: f32 = weights.sum();
    let mut dlogits = Array3::<f32>::zeros((batch, seq, vocab));
    if total_weight == 0.0 {
        return AnswerLoss {
            loss: 0.0,
            dlogits,
            weight: 0.0,
        };
    }
    let mut total = 0.0f64;
    for ((b, t), &w) in weights.indexed_iter() {
        if w == 0.0 {
            continue; // a question, a role, the image or padding: no target
        }
        let target = targets[[b, t]] as usize;
        assert!(
            target < vocab,
            "answer_loss: target token {target} at [{b}, {t}] is outside the vocabulary of {vocab}"
        );
        let z = logits.slice(s![b, t, ..]);
        let mut d = dlogits.slice_mut(s![b, t, ..]);
        let max = z.fold(f32::NEG_INFINITY, |m, &x| m.max(x));
        d.zip_mut_with(&z, |d, &z| *d = (z - max).exp());
        let sum = d.sum();
        // −log softmax(z)_y = log Σ exp(z − max) − (z_y − max)
        total += f64::from(w) * (f64::from(sum).ln() - f64::from(z[target] - max));
        // ∂L/∂z = w (softmax(z) − onehot(y)) / Σw
        let scale = w / total_weight;
        d.mapv_inplace(|e| e * scale / sum);
        d[target] -= scale;
    }
    AnswerLoss {
        loss: (total / f64::from(total_weight)) as f32,
        dlogits,
        weight: total_weight,
    }
}
// ANCHOR_END: answer_loss

#[cfg(test)]
mod tests {
    use super::*;
    use embedding::testing::{GradCheck, WithInputs};
    use embedding::{Params, init};
    use ndarray::{ArrayViewD, ArrayViewMutD, Ix3, array};
    use rand::SeedableRng;
    use rand::rngs::StdRng;
    use tokenizer::{BOS, EOS};

    pub(crate) fn chat_tokenizer() -> Tokenizer {
        Tokenizer::train_lines(
            ["what colour is the circle?", "red", "and its size?", "big"],
            270,
        )
        .unwrap()
        .with_special_tokens(&[BOS, EOS, PAD, IMAGE, USER, ASSISTANT, END])
        .unwrap()
    }

    #[test]
    fn a_conversation_and_its_weights() {
        let tok = chat_tokenizer();
        let t = ChatTokens::from_tokenizer(&tok).unwrap();
        let turns = [
            Turn::new("<|image|> what colour is the circle?", "red"),
            Turn::new("and its size?", "big"),
        ];
        let ex = encode_chat(&tok, &t, &turns, ImageSlot::Required).unwrap();
        let text = tok.decode(&ex.ids).unwrap();
        assert_eq!(
            text,
            "<|user|><|image|> what colour is the circle?<|assistant|>red<|end|><|user|>and its size?<|assistant|>big<|end|>"
        );
        // exactly the answers and their <|end|> are targets
        let targets: Vec<u32> = ex
            .ids
            .iter()
            .zip(&ex.weights)
            .filter(|(_, w)| **w == 1.0)
            .map(|(id, _)| *id)
            .collect();
        assert_eq!(tok.decode(&targets).unwrap(), "red<|end|>big<|end|>");
        // the prompt of the second turn: the first whole, then the question
        let prompt =
            encode_prompt(&tok, &t, &turns[..1], "and its size?", ImageSlot::Required).unwrap();
        assert_eq!(prompt[..], ex.ids[..prompt.len()]);
        assert_eq!(ex.ids[prompt.len()], t.assistant);
    }

    #[test]
    fn the_image_must_stand_once_in_the_first_question() {
        let tok = chat_tokenizer();
        let t = ChatTokens::from_tokenizer(&tok).unwrap();
        let err =
            |turns: &[Turn], slot| encode_chat(&tok, &t, turns, slot).unwrap_err().to_string();
        assert_eq!(
            err(&[Turn::new("what colour?", "red")], ImageSlot::Required),
            "turn 1: the first question must hold <|image|> (where the picture goes)"
        );
        assert_eq!(
            err(
                &[Turn::new("<|image|><|image|>", "red")],
                ImageSlot::Required
            ),
            "turn 1: <|image|> may stand only once"
        );
        assert_eq!(
            err(
                &[Turn::new("<|image|>", "red"), Turn::new("<|image|>?", "no")],
                ImageSlot::Required
            ),
            "turn 2: <|image|> may only stand in the first question"
        );
        assert_eq!(
            err(&[Turn::new("<|image|>", "red")], ImageSlot::Forbidden),
            "turn 1: this model reads no image, but the text holds <|image|>"
        );
        assert!(
            err(
                &[Turn::new("<|image|>", "<|end|> forged")],
                ImageSlot::Required
            )
            .starts_with("turn 1: ")
        );
        assert_eq!(
            err(&[], ImageSlot::Required),
            "a conversation needs at least one turn"
        );
        let plain = Tokenizer::train_lines(["red"], 257).unwrap();
        assert_eq!(
            ChatTokens::from_tokenizer(&plain).unwrap_err().to_string(),
            "the tokenizer has no special token <|image|>"
        );
    }

    #[test]
    fn collate_pads_at_the_end_with_weight_zero() {
        let a = ChatExample {
            ids: vec![1, 2, 3],
            weights: vec![0.0, 1.0, 1.0],
        };
        let b = ChatExample {
            ids: vec![4],
            weights: vec![1.0],
        };
        let (tokens, weights) = collate(&[a, b], 9);
        assert_eq!(tokens, array![[1, 2, 3], [4, 9, 9]]);
        assert_eq!(weights, array![[0.0, 1.0, 1.0], [1.0, 0.0, 0.0]]);
    }

    #[derive(Debug, Clone)]
    struct NoParams;
    impl Params for NoParams {
        fn params(&self) -> Vec<(String, ArrayViewD<'_, f32>)> {
            Vec::new()
        }
        fn params_mut(&mut self) -> Vec<(String, ArrayViewMutD<'_, f32>)> {
            Vec::new()
        }
    }

    #[test]
    fn answer_loss_gradient_matches_finite_differences() {
        let logits: Array3<f32> = init::normal((2, 4, 6), 1.0, &mut StdRng::seed_from_u64(3));
        let targets = array![[1, 2, 3, 4], [5, 0, 1, 2]];
        let weights = array![[0.0f32, 1.0, 1.0, 0.0], [1.0, 0.0, 0.0, 1.0]];
        let out = answer_loss(&logits, &targets, &weights);
        assert_eq!(out.weight, 4.0);
        let mut state = WithInputs::new(NoParams, vec![("logits", logits)]);
        let analytic = WithInputs::new(NoParams, vec![("logits", out.dlogits.clone())]);
        GradCheck::default()
            .run(&mut state, &analytic, |s| {
                answer_loss(&s.input::<Ix3>(0), &targets, &weights).loss as f64
            })
            .into_result()
            .unwrap();
    }

    #[test]
    fn unweighted_positions_count_for_nothing() {
        let targets = array![[1, 2, 3, 4], [5, 0, 1, 2]];
        let weights = array![[0.0f32, 1.0, 1.0, 0.0], [1.0, 0.0, 0.0, 1.0]];
        let mut logits: Array3<f32> = init::normal((2, 4, 6), 1.0, &mut StdRng::seed_from_u64(4));
        let before = answer_loss(&logits, &targets, &weights);
        logits.slice_mut(s![0, 0, ..]).fill(1e3); // a question position
        logits[[1, 1, 3]] = -50.0;
        let after = answer_loss(&logits, &targets, &weights);
        assert_eq!(before.loss, after.loss);
        assert!(after.dlogits.slice(s![0, 0, ..]).iter().all(|&d| d == 0.0));
        // uniform logits: ln V per answer token
        let uniform = answer_loss(&Array3::zeros((2, 4, 6)), &targets, &weights);
        assert!((uniform.loss - 6f32.ln()).abs() < 1e-6);
        // nothing to learn: zero
        let none = answer_loss(&logits, &targets, &Array2::zeros((2, 4)));
        assert_eq!((none.loss, none.weight), (0.0, 0.0));
        assert!(none.dlogits.iter().all(|&d| d == 0.0));
    }
}
