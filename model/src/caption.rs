//! Captioning an image: the decoding strategies of [`crate::generate`] on
//! the caption decoder, with and without the KV cache.
//!
//! Generation feeds one token at a time. Without a cache, every step runs
//! the decoder over the whole prefix again, so step `t` costs `O(t)` token
//! passes and a caption of `L` tokens `O(L²)`. With the cache
//! ([`crate::decoder::Decoder::step`]), each block keeps the keys and values
//! of the tokens already seen, and the image's cross-attention keys and
//! values are computed once per image: step `t` processes one token. Both
//! compute the same function, which the tests check.
//!
//! Both paths implement [`NextToken`] for one image at a time, so every
//! strategy (greedy, sampling, beam search) runs unchanged on either.

use ndarray::{Array1, Array2, ArrayRef3, ArrayRef4, ArrayView3, Axis, s};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokenizer::Tokenizer;

use crate::Model;
use crate::decoder::{Decoder, DecoderState};
use crate::generate::{
    Generated, GenerationConfig, NextToken, Strategy, argmax, beam_search, greedy, log_softmax,
    sample,
};

// ANCHOR: cached
/// The decoder with its KV cache, for one image: the state is the cache of
/// every block (and the image's cross-attention keys and values).
#[derive(Debug, Clone, Copy)]
pub struct CachedDecoder<'a> {
    pub decoder: &'a Decoder,
}

impl NextToken for CachedDecoder<'_> {
    type State = DecoderState; // a batch of one sequence

    fn step(&self, state: &mut DecoderState, token: u32) -> Array1<f32> {
        let logits = self.decoder.step(state, &Array2::from_elem((1, 1), token)); // [1, V]
        logits.index_axis_move(Axis(0), 0)
    }
}
// ANCHOR_END: cached

// ANCHOR: uncached
/// The decoder without a cache, for one image: the state is the token prefix,
/// and every step runs the decoder over all of it again.
#[derive(Debug, Clone, Copy)]
pub struct UncachedDecoder<'a> {
    pub decoder: &'a Decoder,
    /// `[1, N_img, C_img]`: the image's tokens.
    pub image_tokens: ArrayView3<'a, f32>,
}

impl NextToken for UncachedDecoder<'_> {
    type State = Vec<u32>; // the tokens fed so far

    fn step(&self, prefix: &mut Vec<u32>, token: u32) -> Array1<f32> {
        prefix.push(token);
        let tokens = Array2::from_shape_vec((1, prefix.len()), prefix.clone())
            .expect("one row of prefix.len() tokens");
        let logits = self.decoder.logits(&self.image_tokens, &tokens); // [1, T, V]
        logits.slice(s![0, prefix.len() - 1, ..]).to_owned() // the last position
    }
}
// ANCHOR_END: uncached

/// One image's caption.
#[derive(Debug, Clone, PartialEq)]
pub struct Caption {
    /// The generated tokens, without `<|bos|>` and `<|eos|>`.
    pub ids: Vec<u32>,
    /// `ids` decoded by the tokenizer (invalid UTF-8 becomes U+FFFD).
    pub text: String,
    /// Whether the decoder emitted `<|eos|>` before the length limit.
    pub finished: bool,
    /// `Σ log p` of the tokens (and `<|eos|>` if finished) under the model.
    pub log_prob: f32,
    /// What the strategy ranked by (see [`Generated::score`]).
    pub score: f32,
}

/// Writes captions for images with a model and its tokenizer.
#[derive(Debug, Clone, Copy)]
pub struct Captioner<'a> {
    pub model: &'a Model,
    pub tokenizer: &'a Tokenizer,
}

impl<'a> Captioner<'a> {
    /// # Panics
    /// If the tokenizer's vocabulary size differs from the model's
    /// ([`crate::load_checkpoint`] checks this for files).
    #[track_caller]
    pub fn new(model: &'a Model, tokenizer: &'a Tokenizer) -> Self {
        assert_eq!(
            tokenizer.vocab_size(),
            model.config().vocab,
            "captioner: the tokenizer's vocabulary differs from the model's"
        );
        Captioner { model, tokenizer }
    }

    /// Where captions start and stop: `<|bos|>` first, `<|eos|>` or
    /// `max_len − 1` generated tokens last (a caption with its `<|bos|>` and
    /// `<|eos|>` fills at most the `max_len` positions the decoder learned).
    pub fn generation_config(&self) -> GenerationConfig {
        let config = self.model.config();
        GenerationConfig {
            bos: config.special.bos,
            eos: config.special.eos,
            max_new_tokens: config.max_len - 1,
        }
    }

    // ANCHOR: caption
    /// A caption for each image, decoded with the KV cache.
    ///
    /// [`Strategy::Sample`] seeds one RNG for the whole call, so the same
    /// images and seed give the same captions. [`Strategy::Beam`] returns
    /// each image's best hypothesis.
    ///
    /// # Shapes
    /// - `images: [B, C_in, H, W]` → `B` captions
    ///
    /// # Panics
    /// If the images do not have the configured channels and size, or a beam
    /// width or top-k is 0.
    #[track_caller]
    pub fn caption(&self, images: &ArrayRef4<f32>, strategy: &Strategy) -> Vec<Caption> {
        let (image_tokens, _) = self.model.encode_images(images); // [B, N_img, C_img]
        let model = CachedDecoder {
            decoder: &self.model.decoder,
        };
        let mut rng = rng_for(strategy);
        (0..image_tokens.dim().0)
            .map(|b| {
                let state = self
                    .model
                    .decoder
                    .start(&image_tokens.slice(s![b..b + 1, .., ..]));
                self.finish(decode(
                    &model,
                    state,
                    &self.generation_config(),
                    strategy,
                    &mut rng,
                ))
            })
            .collect()
    }
    // ANCHOR_END: caption

    /// As [`Captioner::caption`], without the KV cache: every step reruns
    /// the decoder on the whole prefix. Slower, and the same captions.
    ///
    /// # Panics
    /// As [`Captioner::caption`].
    #[track_caller]
    pub fn caption_uncached(&self, images: &ArrayRef4<f32>, strategy: &Strategy) -> Vec<Caption> {
        let (image_tokens, _) = self.model.encode_images(images);
        let mut rng = rng_for(strategy);
        (0..image_tokens.dim().0)
            .map(|b| {
                let model = UncachedDecoder {
                    decoder: &self.model.decoder,
                    image_tokens: image_tokens.slice(s![b..b + 1, .., ..]),
                };
                self.finish(decode(
                    &model,
                    Vec::new(),
                    &self.generation_config(),
                    strategy,
                    &mut rng,
                ))
            })
            .collect()
    }

    /// Greedy captions for all images at once with [`greedy_batched`]: the
    /// same captions as `caption(images, &Strategy::Greedy)`, with each
    /// matrix product serving `B` rows instead of one.
    ///
    /// # Panics
    /// If the images do not have the configured channels and size.
    #[track_caller]
    pub fn caption_greedy_batched(&self, images: &ArrayRef4<f32>) -> Vec<Caption> {
        let (image_tokens, _) = self.model.encode_images(images); // [B, N_img, C_img]
        greedy_batched(
            &self.model.decoder,
            &image_tokens,
            &self.generation_config(),
        )
        .into_iter()
        .map(|g| self.finish(g))
        .collect()
    }

    fn finish(&self, g: Generated) -> Caption {
        // ids come from logits over the model's vocabulary, the tokenizer's
        let bytes = self.tokenizer.decode_bytes(&g.ids).unwrap_or_default();
        Caption {
            text: String::from_utf8_lossy(&bytes).into_owned(),
            ids: g.ids,
            finished: g.finished,
            log_prob: g.log_prob,
            score: g.score,
        }
    }
}

fn rng_for(strategy: &Strategy) -> StdRng {
    match strategy {
        Strategy::Sample { seed, .. } => StdRng::seed_from_u64(*seed),
        _ => StdRng::seed_from_u64(0), // unused
    }
}

// ANCHOR: batched_greedy
/// Greedy decoding of a batch with the KV cache: each decoder step feeds the
/// next token of every sequence as one `[B, 1]` batch. A finished sequence
/// keeps being fed (its `eos`, then its argmaxes) until all are done; what it
/// produces after `eos` is ignored. Row `b` equals [`greedy`] on image `b`
/// alone.
///
/// # Shapes
/// - `image_tokens: [B, N_img, C_img]` → `B` sequences
///
/// # Panics
/// If `cfg.max_new_tokens` exceeds `max_len − 1` of the decoder.
#[track_caller]
pub fn greedy_batched(
    decoder: &Decoder,
    image_tokens: &ArrayRef3<f32>,
    cfg: &GenerationConfig,
) -> Vec<Generated> {
    let batch = image_tokens.dim().0;
    let mut state = decoder.start(image_tokens);
    let mut out = vec![Generated::default(); batch];
    let mut next = Array2::from_elem((batch, 1), cfg.bos); // [B, 1]
    for _ in 0..cfg.max_new_tokens {
        let logits = decoder.step(&mut state, &next); // [B, V]
        for (b, row) in logits.rows().into_iter().enumerate() {
            let logp = log_softmax(&row);
            let token = argmax(&logp) as u32;
            if !out[b].finished {
                out[b].push(token, logp[token as usize], cfg.eos);
            }
            next[[b, 0]] = token;
        }
        if out.iter().all(|g| g.finished) {
            break;
        }
    }
    for g in &mut out {
        g.score = g.log_prob;
    }
    out
}
// ANCHOR_END: batched_greedy

// ANCHOR: decode
/// Runs `strategy` on `model` from `state`: the one place that maps a
/// [`Strategy`] value to its function. `rng` is used by sampling only.
///
/// # Panics
/// If a beam width or top-k is 0.
#[track_caller]
pub fn decode<M: NextToken, R: Rng + ?Sized>(
    model: &M,
    state: M::State,
    cfg: &GenerationConfig,
    strategy: &Strategy,
    rng: &mut R,
) -> Generated {
    match strategy {
        Strategy::Greedy => greedy(model, state, cfg),
        Strategy::Sample { sampling, .. } => sample(model, state, cfg, sampling, rng),
        Strategy::Beam(beam) => beam_search(model, state, cfg, beam)
            .into_iter()
            .next()
            .unwrap_or_default(), // never taken: beam search returns at least one
    }
}
// ANCHOR_END: decode

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ModelConfig;
    use crate::generate::{Beam, Sampling, sequence_log_prob};
    use embedding::testing::assert_allclose;
    use ndarray::Array4;

    /// A micro model with random weights over a 263-token tokenizer, and a
    /// few images. The decoder's logits are scaled up so the random model
    /// has clear preferences (no near-ties that rounding could flip).
    fn setup(max_len: usize) -> (Model, Tokenizer, Array4<f32>) {
        setup_with_eos(max_len, None)
    }

    /// As [`setup`], with another token playing `<|eos|>` (the weights do
    /// not depend on which id it is).
    fn setup_with_eos(max_len: usize, eos: Option<u32>) -> (Model, Tokenizer, Array4<f32>) {
        let tokenizer = Tokenizer::train_lines(["a red circle", "a blue square"], 260)
            .unwrap()
            .with_special_tokens(&[tokenizer::BOS, tokenizer::EOS, tokenizer::PAD])
            .unwrap();
        let mut config = ModelConfig::micro(tokenizer.vocab_size());
        config.max_len = max_len;
        if let Some(eos) = eos {
            config.special.eos = eos;
        }
        let mut model = config.init(&mut StdRng::seed_from_u64(5)).unwrap();
        model.decoder.token_embedding.weight *= 20.0;
        let images = Array4::from_shape_fn((3, 3, 8, 8), |(b, c, h, w)| {
            (((b + 1) * (c + 2) * (h + 3) * (w + 1)) % 13) as f32 / 6.5 - 1.0
        });
        (model, tokenizer, images)
    }

    #[test]
    fn cached_and_uncached_logits_agree_at_every_step() {
        let (model, _, images) = setup(6);
        let (image_tokens, _) = model.encode_images(&images);
        let one = image_tokens.slice(s![1..2, .., ..]);
        let cached = CachedDecoder {
            decoder: &model.decoder,
        };
        let uncached = UncachedDecoder {
            decoder: &model.decoder,
            image_tokens: one,
        };
        let (mut a, mut b) = (model.decoder.start(&one), Vec::new());
        for (t, token) in [260u32, 97, 12, 200, 5].into_iter().enumerate() {
            let (la, lb) = (cached.step(&mut a, token), uncached.step(&mut b, token));
            assert_allclose(&format!("step {t}"), &la, &lb, 1e-4, 1e-5);
        }
    }

    #[test]
    fn cached_generation_equals_uncached_generation() {
        let (model, tokenizer, images) = setup(8);
        let captioner = Captioner::new(&model, &tokenizer);
        let strategies = [
            Strategy::Greedy,
            Strategy::Sample {
                sampling: Sampling {
                    temperature: 1.0,
                    top_k: Some(20),
                },
                seed: 3,
            },
            Strategy::Beam(Beam {
                width: 3,
                length_penalty: 0.0,
            }),
        ];
        for strategy in &strategies {
            let cached = captioner.caption(&images, strategy);
            let uncached = captioner.caption_uncached(&images, strategy);
            assert_eq!(cached.len(), 3);
            for (a, b) in cached.iter().zip(&uncached) {
                assert_eq!(
                    (&a.ids, a.finished, &a.text),
                    (&b.ids, b.finished, &b.text),
                    "{strategy:?}"
                );
                assert!((a.log_prob - b.log_prob).abs() < 1e-3, "{strategy:?}");
            }
        }
    }

    #[test]
    fn beam_width_one_equals_greedy_on_the_model() {
        let (model, tokenizer, images) = setup(8);
        let captioner = Captioner::new(&model, &tokenizer);
        let greedy = captioner.caption(&images, &Strategy::Greedy);
        let beam = captioner.caption(
            &images,
            &Strategy::Beam(Beam {
                width: 1,
                length_penalty: 0.0,
            }),
        );
        assert_eq!(greedy, beam);
        // and a wider beam never finds a less likely caption than greedy
        let wide = captioner.caption(
            &images,
            &Strategy::Beam(Beam {
                width: 4,
                length_penalty: 0.0,
            }),
        );
        for (g, w) in greedy.iter().zip(&wide) {
            assert!(
                w.log_prob >= g.log_prob - 1e-4,
                "{} < {}",
                w.log_prob,
                g.log_prob
            );
        }
    }

    #[test]
    fn captions_respect_the_length_limit_and_report_their_probability() {
        let (model, tokenizer, images) = setup(6);
        let captioner = Captioner::new(&model, &tokenizer);
        let cfg = captioner.generation_config();
        assert_eq!(cfg.max_new_tokens, 5);
        let captions = captioner.caption(&images, &Strategy::Greedy);
        let (image_tokens, _) = model.encode_images(&images);
        for (b, c) in captions.iter().enumerate() {
            assert!(c.ids.len() + usize::from(c.finished) <= 5);
            assert!(!c.ids.contains(&cfg.eos));
            assert_eq!(
                c.text,
                String::from_utf8_lossy(&tokenizer.decode_bytes(&c.ids).unwrap())
            );
            // the reported log-probability is the decoder's, recomputed uncached
            let one = image_tokens.slice(s![b..b + 1, .., ..]);
            let uncached = UncachedDecoder {
                decoder: &model.decoder,
                image_tokens: one,
            };
            let lp = sequence_log_prob(&uncached, Vec::new(), &cfg, &c.ids, c.finished);
            assert!((lp - c.log_prob).abs() < 1e-3, "{lp} vs {}", c.log_prob);
        }
    }

    #[test]
    fn batched_greedy_equals_one_image_at_a_time() {
        // make a token that some caption first emits after its start the
        // end token, so that captions finish at different steps
        let (model, tokenizer, images) = setup(8);
        let first = Captioner::new(&model, &tokenizer).caption(&images, &Strategy::Greedy);
        let (img, at) = (0..first.len())
            .flat_map(|b| (1..first[b].ids.len()).map(move |i| (b, i)))
            .find(|&(b, i)| !first[b].ids[..i].contains(&first[b].ids[i]))
            .expect("some caption changes token");
        let eos = first[img].ids[at];
        assert!(eos < 260, "an ordinary token, not bos or pad");
        for (max_len, eos) in [(4, None), (8, None), (8, Some(eos))] {
            let (model, tokenizer, images) = setup_with_eos(max_len, eos);
            let captioner = Captioner::new(&model, &tokenizer);
            let one_by_one = captioner.caption(&images, &Strategy::Greedy);
            let batched = captioner.caption_greedy_batched(&images);
            for (a, b) in one_by_one.iter().zip(&batched) {
                assert_eq!((&a.ids, a.finished, &a.text), (&b.ids, b.finished, &b.text));
                assert!((a.log_prob - b.log_prob).abs() < 1e-3);
            }
            if eos.is_some() {
                assert!(batched[img].finished && batched[img].ids.len() == at);
                assert!(
                    batched.iter().any(|c| c.ids.len() > 1),
                    "all finished together"
                );
            }
        }
    }
}
