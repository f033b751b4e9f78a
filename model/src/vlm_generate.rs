//! Answering: the decoding strategies of [`crate::generate`] on the
//! multimodal LLM, with the KV cache and without it, and a conversation
//! that keeps its cache from one turn to the next.
//!
//! With the cache, [`Vlm::prefill`] reads the picture and the prompt once;
//! every generated token then costs one position through the language
//! model ([`CachedVlm`]). Without it, every step runs the whole model on
//! the whole sequence again ([`UncachedVlm`], the reference the tests hold
//! the cached path to). A [`Chat`] extends the same cache with each answer
//! and each new question, so a second question never re-reads the picture.

use ndarray::{Array1, Array2, Array4, ArrayRef4, ArrayView4, Axis, s};
use rand::SeedableRng;
use rand::rngs::StdRng;
use tokenizer::{IMAGE, Tokenizer};

use crate::caption::decode;
use crate::chat::{ChatError, ChatTokens, ImageSlot, Turn, encode_user};
use crate::generate::{GenerationConfig, NextToken, Strategy};
use crate::vlm::{Freeze, Vlm, VlmState};

// ANCHOR: cached_vlm
/// The multimodal model with its KV cache, for one conversation: the state
/// is the language model's cache over the picture and the text so far.
#[derive(Debug, Clone, Copy)]
pub struct CachedVlm<'a> {
    pub vlm: &'a Vlm,
}

impl NextToken for CachedVlm<'_> {
    type State = VlmState; // a batch of one conversation

    fn step(&self, state: &mut VlmState, token: u32) -> Array1<f32> {
        let logits = self.vlm.extend(state, &Array2::from_elem((1, 1), token)); // [1, V]
        no_second_image(self.vlm, logits.index_axis_move(Axis(0), 0))
    }
}
// ANCHOR_END: cached_vlm

// ANCHOR: uncached_vlm
/// The multimodal model without a cache: the state is the whole text so
/// far (with its `<|image|>`), and every step runs the model over all of it.
#[derive(Debug, Clone, Copy)]
pub struct UncachedVlm<'a> {
    pub vlm: &'a Vlm,
    /// `[1, C_in, H, W]`: the picture.
    pub image: ArrayView4<'a, f32>,
}

impl NextToken for UncachedVlm<'_> {
    type State = Vec<u32>; // the text fed so far

    fn step(&self, text: &mut Vec<u32>, token: u32) -> Array1<f32> {
        text.push(token);
        let tokens = Array2::from_shape_vec((1, text.len()), text.clone())
            .expect("one row of text.len() tokens");
        let frozen = Freeze {
            vision_tower: true,
            projector: true,
            language_model: true,
        };
        let (logits, _) = self.vlm.forward(&self.image, &tokens, frozen); // [1, T', V]
        let last = logits.dim().1 - 1;
        no_second_image(self.vlm, logits.slice(s![0, last, ..]).to_owned())
    }
}
// ANCHOR_END: uncached_vlm

/// subtle: the model may not write `<|image|>`: a conversation holds one
/// picture, placed by the user. Its logit is set to −∞, so no strategy can
/// pick it, even from a model that has never been trained.
fn no_second_image(vlm: &Vlm, mut logits: Array1<f32>) -> Array1<f32> {
    logits[vlm.config().tokens.image as usize] = f32::NEG_INFINITY;
    logits
}

/// One answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// The generated tokens, without `<|assistant|>` and `<|end|>`.
    pub ids: Vec<u32>,
    /// `ids` decoded (invalid UTF-8 becomes U+FFFD).
    pub text: String,
    /// Whether the model closed its answer with `<|end|>` before the limit.
    pub finished: bool,
    /// `Σ log p` of the tokens (and `<|end|>` if finished) under the model.
    pub log_prob: f32,
}

// ANCHOR: chat
/// A conversation about one picture: questions in, answers out, the KV
/// cache kept between turns.
#[derive(Debug, Clone)]
pub struct Chat<'a> {
    vlm: &'a Vlm,
    tokenizer: &'a Tokenizer,
    tokens: ChatTokens,
    image: Array4<f32>,      // [1, C_in, H, W]
    state: Option<VlmState>, // None before the first question
    history: Vec<Turn>,      // the turns so far
    rng: StdRng,             // for sampled answers
    max_answer: usize,       // the most tokens an answer may have
}

impl<'a> Chat<'a> {
    /// A new conversation about `image` (`[1, C_in, H, W]`, preprocessed as
    /// in training). `seed` seeds sampled answers.
    ///
    /// # Errors
    /// [`ChatError::MissingToken`] if the tokenizer lacks a chat token.
    ///
    /// # Panics
    /// If the tokenizer's vocabulary is not the model's, or the image is not
    /// one picture.
    #[track_caller]
    pub fn new(
        vlm: &'a Vlm,
        tokenizer: &'a Tokenizer,
        image: &ArrayRef4<f32>,
        seed: u64,
    ) -> Result<Self, ChatError> {
        assert_eq!(
            tokenizer.vocab_size(),
            vlm.config().lm.vocab,
            "chat: the tokenizer's vocabulary differs from the model's"
        );
        assert_eq!(
            image.dim().0,
            1,
            "chat: one picture per conversation, got {:?}",
            image.dim()
        );
        Ok(Chat {
            vlm,
            tokenizer,
            tokens: ChatTokens::from_tokenizer(tokenizer)?,
            image: image.to_owned(),
            state: None,
            history: Vec::new(),
            rng: StdRng::seed_from_u64(seed),
            max_answer: usize::MAX,
        })
    }

    /// Limits every answer to `tokens` tokens (`<|end|>` included); without
    /// it an answer may fill the rest of the model's context.
    pub fn with_max_answer(mut self, tokens: usize) -> Self {
        self.max_answer = tokens.max(1);
        self
    }

    /// The turns so far.
    pub fn history(&self) -> &[Turn] {
        &self.history
    }

    /// Positions of the model's context in use (image tokens included).
    pub fn context_len(&self) -> usize {
        self.state.as_ref().map_or(0, VlmState::len)
    }

    /// Forgets the conversation (keeps the picture).
    pub fn reset(&mut self) {
        self.state = None;
        self.history.clear();
    }

    /// Switches to another picture and starts over.
    ///
    /// # Panics
    /// If the image is not one picture.
    #[track_caller]
    pub fn set_image(&mut self, image: &ArrayRef4<f32>) {
        assert_eq!(
            image.dim().0,
            1,
            "chat: one picture per conversation, got {:?}",
            image.dim()
        );
        self.image = image.to_owned();
        self.reset();
    }

    /// Answers `question` about the picture, in the context of the turns so
    /// far. The first question gets the picture in front of it (`<|image|>
    /// question`) unless it places `<|image|>` itself.
    ///
    /// # Errors
    /// [`ChatError::Text`] if the question holds a special token it may not,
    /// [`ChatError::ContextFull`] if the conversation no longer fits the
    /// model's positions.
    pub fn ask(&mut self, question: &str, strategy: &Strategy) -> Result<Answer, ChatError> {
        let first = self.state.is_none();
        let question = if first && !question.contains(IMAGE) {
            format!("{IMAGE} {question}")
        } else {
            question.to_string()
        };
        // the new text: `<|user|> question`; the earlier turns are in the cache
        let turn = self.history.len();
        let new = encode_user(
            self.tokenizer,
            &self.tokens,
            turn,
            &question,
            ImageSlot::Required,
        )?;
        let max_len = self.vlm.config().lm.max_len;
        let spliced_new = new.len()
            + if first {
                self.vlm.num_image_tokens() - 1
            } else {
                0
            };
        let needed = self.context_len() + spliced_new + 3; // + <|assistant|>, a token, <|end|>
        if needed > max_len {
            return Err(ChatError::ContextFull { needed, max_len });
        }
        let new = Array2::from_shape_vec((1, new.len()), new).expect("one row");
        let mut state = match self.state.take() {
            None => self.vlm.prefill(&self.image, &new).0,
            Some(mut state) => {
                self.vlm.extend(&mut state, &new);
                state
            }
        };
        // generate from a copy; the conversation then takes the answer as written
        let cfg = GenerationConfig {
            bos: self.tokens.assistant,
            eos: self.tokens.end,
            // <|assistant|> and all but the last token are fed
            max_new_tokens: (max_len - state.len()).min(self.max_answer),
        };
        let generated = decode(
            &CachedVlm { vlm: self.vlm },
            state.clone(),
            &cfg,
            strategy,
            &mut self.rng,
        );
        let mut transcript = vec![self.tokens.assistant];
        transcript.extend(&generated.ids);
        transcript.push(self.tokens.end);
        let room = max_len - state.len();
        transcript.truncate(room); // an answer cut by the limit keeps what fits
        self.vlm.extend(
            &mut state,
            &Array2::from_shape_vec((1, transcript.len()), transcript).expect("one row"),
        );
        self.state = Some(state);
        let text = String::from_utf8_lossy(
            &self
                .tokenizer
                .decode_bytes(&generated.ids)
                .unwrap_or_default(),
        )
        .into_owned();
        self.history.push(Turn::new(question, text.clone()));
        Ok(Answer {
            ids: generated.ids,
            text,
            finished: generated.finished,
            log_prob: generated.log_prob,
        })
    }
}
// ANCHOR_END: chat

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::{ASSISTANT, END, USER, encode_prompt};
    use crate::generate::{Beam, Sampling, greedy, sequence_log_prob};
    use crate::vlm::tests::{VOCAB, micro};
    use crate::vlm::{VlmConfig, VlmMask};
    use embedding::init;
    use embedding::testing::assert_allclose;
    use tokenizer::{BOS, EOS, PAD};

    /// A tokenizer of exactly `VOCAB` (16) tokens: 9 bytes-and-merges would be
    /// too few for text, so the micro model is driven by IDs directly, and the
    /// tokenizer (for `Chat`) is a separate, larger one below.
    fn prompt_ids() -> Vec<u32> {
        vec![12, 3, 11, 4, 5] // <|user|> a <|image|> b c
    }

    fn scaled(mask: VlmMask, seed: u64) -> Vlm {
        let mut vlm = micro(
            &VlmConfig {
                mask,
                ..VlmConfig::micro(VOCAB, 24)
            },
            seed,
        );
        // clear preferences: no near-ties that rounding could flip
        vlm.language_model.ln_final.weight *= 4.0;
        vlm
    }

    // ANCHOR: cached_equals_uncached
    #[test]
    fn cached_generation_equals_the_uncached_reference_step_by_step() {
        for mask in [VlmMask::Causal, VlmMask::PrefixLm] {
            let vlm = scaled(mask, 1);
            let image = init::normal((1, 3, 8, 8), 1.0, &mut rand::rngs::StdRng::seed_from_u64(2));
            let prompt = Array2::from_shape_vec((1, 5), prompt_ids()).unwrap();
            let (state, _) = vlm.prefill(&image, &prompt);
            let cfg = GenerationConfig {
                bos: 13,
                eos: 14,
                max_new_tokens: 8,
            };
            let cached = CachedVlm { vlm: &vlm };
            let uncached = UncachedVlm {
                vlm: &vlm,
                image: image.view(),
            };
            let a = greedy(&cached, state.clone(), &cfg);
            let b = greedy(&uncached, prompt_ids(), &cfg);
            assert_eq!(a.ids, b.ids, "{mask:?}");
            assert!((a.log_prob - b.log_prob).abs() < 1e-4, "{mask:?}");
            // and the logits along the way
            let (mut s, mut t) = (state.clone(), prompt_ids());
            for &token in std::iter::once(&13).chain(&a.ids) {
                let mut x = cached.step(&mut s, token);
                let mut y = uncached.step(&mut t, token);
                assert_eq!((x[11], y[11]), (f32::NEG_INFINITY, f32::NEG_INFINITY));
                (x[11], y[11]) = (0.0, 0.0); // −∞ − −∞ is NaN
                assert_allclose("logits", &x, &y, 1e-4, 1e-4);
            }
            // beam search and sampling agree too
            let beam = Beam {
                width: 3,
                length_penalty: 0.0,
            };
            let a = crate::generate::beam_search(&cached, state.clone(), &cfg, &beam);
            let b = crate::generate::beam_search(&uncached, prompt_ids(), &cfg, &beam);
            assert_eq!(a[0].ids, b[0].ids);
            let sampling = Sampling {
                temperature: 0.8,
                top_k: Some(4),
            };
            let mut r1 = rand::rngs::StdRng::seed_from_u64(5);
            let mut r2 = rand::rngs::StdRng::seed_from_u64(5);
            let a = crate::generate::sample(&cached, state.clone(), &cfg, &sampling, &mut r1);
            let b = crate::generate::sample(&uncached, prompt_ids(), &cfg, &sampling, &mut r2);
            assert_eq!(a.ids, b.ids);
            let lp = sequence_log_prob(&uncached, prompt_ids(), &cfg, &a.ids, a.finished);
            assert!((lp - a.log_prob).abs() < 1e-3);
        }
    }
    // ANCHOR_END: cached_equals_uncached

    #[test]
    fn the_model_never_writes_a_second_image() {
        let mut vlm = scaled(VlmMask::Causal, 3);
        // make <|image|> by far the likeliest next token
        vlm.language_model
            .token_embedding
            .weight
            .row_mut(11)
            .fill(50.0);
        let image = Array4::zeros((1, 3, 8, 8));
        let prompt = Array2::from_shape_vec((1, 5), prompt_ids()).unwrap();
        let (state, _) = vlm.prefill(&image, &prompt);
        let cfg = GenerationConfig {
            bos: 13,
            eos: 14,
            max_new_tokens: 6,
        };
        let out = greedy(&CachedVlm { vlm: &vlm }, state, &cfg);
        assert!(!out.ids.contains(&11));
    }

    fn chat_setup(mask: VlmMask) -> (Vlm, Tokenizer) {
        let tok =
            Tokenizer::train_lines(["what colour is it? red blue and its size? big small"], 280)
                .unwrap()
                .with_special_tokens(&[BOS, EOS, PAD, IMAGE, USER, ASSISTANT, END])
                .unwrap();
        let vocab = tok.vocab_size();
        let mut config = VlmConfig::micro(vocab, 96);
        config.mask = mask;
        config.tokens = ChatTokens::from_tokenizer(&tok).unwrap();
        let mut vlm = micro(&config, 4);
        vlm.language_model.ln_final.weight *= 4.0;
        (vlm, tok)
    }

    // ANCHOR: chat_test
    #[test]
    fn a_conversation_reuses_its_cache_and_equals_the_uncached_model() {
        for mask in [VlmMask::Causal, VlmMask::PrefixLm] {
            let (vlm, tok) = chat_setup(mask);
            let image = init::normal((1, 3, 8, 8), 1.0, &mut rand::rngs::StdRng::seed_from_u64(6));
            let mut chat = Chat::new(&vlm, &tok, &image, 0).unwrap().with_max_answer(8);
            let first = chat.ask("what colour is it?", &Strategy::Greedy).unwrap();
            let used = chat.context_len();
            let second = chat.ask("and its size?", &Strategy::Greedy).unwrap();
            assert!(chat.context_len() > used);
            // the uncached model, given the whole transcript, answers the same
            let tokens = ChatTokens::from_tokenizer(&tok).unwrap();
            let history = &chat.history()[..1];
            assert_eq!(history[0].user, "<|image|> what colour is it?");
            let prompt =
                encode_prompt(&tok, &tokens, &[], &history[0].user, ImageSlot::Required).unwrap();
            let cfg = GenerationConfig {
                bos: tokens.assistant,
                eos: tokens.end,
                max_new_tokens: 8,
            };
            let uncached = UncachedVlm {
                vlm: &vlm,
                image: image.view(),
            };
            let again = greedy(&uncached, prompt.clone(), &cfg);
            assert_eq!(again.ids, first.ids, "{mask:?}");
            let mut transcript = prompt;
            transcript.push(tokens.assistant);
            transcript.extend(&first.ids);
            transcript.push(tokens.end);
            transcript.extend(
                encode_user(&tok, &tokens, 1, "and its size?", ImageSlot::Required).unwrap(),
            );
            let again = greedy(&uncached, transcript, &cfg);
            assert_eq!(again.ids, second.ids, "{mask:?}");
            // reset forgets; a question placing the image itself keeps it there
            chat.reset();
            assert_eq!(chat.context_len(), 0);
            chat.ask("what colour <|image|> is it?", &Strategy::Greedy)
                .unwrap();
            assert_eq!(chat.history()[0].user, "what colour <|image|> is it?");
        }
    }
    // ANCHOR_END: chat_test

    #[test]
    fn a_conversation_that_outgrows_the_model_is_an_error() {
        let (vlm, tok) = chat_setup(VlmMask::Causal);
        let image = Array4::zeros((1, 3, 8, 8));
        let mut chat = Chat::new(&vlm, &tok, &image, 0).unwrap();
        let long = "what colour is it? ".repeat(40);
        let err = chat.ask(&long, &Strategy::Greedy).unwrap_err();
        assert!(
            err.to_string().starts_with("the conversation needs "),
            "{err}"
        );
        assert!(chat.ask("<|end|>", &Strategy::Greedy).is_err()); // a forged role
        chat.ask("what colour is it?", &Strategy::Greedy).unwrap(); // still usable
    }

    use rand::SeedableRng;
}
