//! Laws of the multimodal model that must hold for any weights and any
//! conversation: what each position may see under either mask, and that
//! generation with the KV cache is generation without it.

use embedding::init;
use model::generate::{GenerationConfig, greedy};
use model::{CachedVlm, Freeze, UncachedVlm, Vlm, VlmConfig, VlmMask};
use ndarray::{Array2, Array4};
use proptest::prelude::*;
use rand::SeedableRng;
use rand::rngs::StdRng;

const VOCAB: usize = 16; // image 11, user 12, assistant 13, end 14, pad 15
const N: usize = 5; // the micro ViT's image tokens: a 2×2 grid and CLS

fn model(mask: VlmMask, seed: u64) -> Vlm {
    let mut vlm = VlmConfig {
        mask,
        ..VlmConfig::micro(VOCAB, 24)
    }
    .init(&mut StdRng::seed_from_u64(seed))
    .unwrap();
    let mut rng = StdRng::seed_from_u64(seed + 1);
    let lm = &mut vlm.language_model;
    lm.token_embedding.weight = init::normal(lm.token_embedding.weight.dim(), 1.0, &mut rng);
    lm.position_embedding.weight = init::normal(lm.position_embedding.weight.dim(), 1.0, &mut rng);
    lm.ln_final.weight *= 4.0; // clear preferences for the generation law
    vlm
}

/// `<|user|> q.. <|image|> q.. <|assistant|> a.. <|end|>` from random words.
fn conversation() -> impl Strategy<Value = (Vec<u32>, usize)> {
    (
        proptest::collection::vec(0u32..11, 0..3),
        proptest::collection::vec(0u32..11, 0..3),
        proptest::collection::vec(0u32..11, 1..4),
    )
        .prop_map(|(before, after, answer)| {
            let mut ids = vec![12];
            ids.extend(&before);
            ids.push(11);
            ids.extend(&after);
            let assistant = ids.len();
            ids.push(13);
            ids.extend(&answer);
            ids.push(14);
            (ids, assistant)
        })
}

/// The spliced position of text position `t`, the image at `p`.
fn spliced(t: usize, p: usize) -> usize {
    if t < p { t } else { t + N - 1 }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    // ANCHOR: no_peeking
    /// Changing text token `k` changes no logit at a position before it,
    /// unless both lie in the prefix-LM's prefix (image and question, which
    /// see each other both ways by design). So no answer position ever sees
    /// a later token, under either mask, and changing an answer token never
    /// changes the logits of the positions before it.
    #[test]
    fn no_position_sees_a_later_token_outside_the_prefix(
        (ids, assistant) in conversation(),
        pick in any::<prop::sample::Index>(),
        new_token in 0u32..11,
        prefix_lm in any::<bool>(),
        seed in 0u64..1000,
    ) {
        let mask = if prefix_lm { VlmMask::PrefixLm } else { VlmMask::Causal };
        let vlm = model(mask, seed);
        let image = init::normal((1, 3, 8, 8), 1.0, &mut StdRng::seed_from_u64(seed));
        let p = ids.iter().position(|&id| id == 11).unwrap();
        // a text token that is not a role or the image
        let words: Vec<usize> = (0..ids.len()).filter(|&t| ids[t] < 11).collect();
        let k = words[pick.index(words.len())];
        prop_assume!(ids[k] != new_token);
        let mut changed = ids.clone();
        changed[k] = new_token;
        let run = |ids: &[u32]| {
            let tokens = Array2::from_shape_vec((1, ids.len()), ids.to_vec()).unwrap();
            vlm.forward(&image, &tokens, Freeze::NONE).0
        };
        let (a, b) = (run(&ids), run(&changed));
        let prefix = spliced(assistant, p); // positions before <|assistant|>
        let kk = spliced(k, p);
        for j in 0..kk {
            let both_in_prefix = prefix_lm && kk < prefix && j < prefix;
            if !both_in_prefix {
                prop_assert_eq!(a.row_at(j), b.row_at(j), "position {} saw token {}", j, k);
            }
        }
        // and the change is seen at its own position and after (the law is not vacuous)
        prop_assert_ne!(a.row_at(kk), b.row_at(kk));
    }
    // ANCHOR_END: no_peeking

    /// Greedy answers with the cache equal those without it, token for token.
    #[test]
    fn cached_and_uncached_generation_agree(
        (ids, assistant) in conversation(),
        prefix_lm in any::<bool>(),
        seed in 0u64..1000,
    ) {
        let mask = if prefix_lm { VlmMask::PrefixLm } else { VlmMask::Causal };
        let vlm = model(mask, seed);
        let image = init::normal((1, 3, 8, 8), 1.0, &mut StdRng::seed_from_u64(seed + 7));
        let prompt = ids[..assistant].to_vec(); // up to the <|assistant|>
        let tokens = Array2::from_shape_vec((1, prompt.len()), prompt.clone()).unwrap();
        let (state, _) = vlm.prefill(&image, &tokens);
        let cfg = GenerationConfig { bos: 13, eos: 14, max_new_tokens: 5 };
        let cached = greedy(&CachedVlm { vlm: &vlm }, state, &cfg);
        let uncached = greedy(&UncachedVlm { vlm: &vlm, image: image.view() }, prompt, &cfg);
        prop_assert_eq!(&cached.ids, &uncached.ids);
        prop_assert!((cached.log_prob - uncached.log_prob).abs() < 1e-3);
    }
}

trait RowAt {
    fn row_at(&self, j: usize) -> Vec<f32>;
}
impl RowAt for ndarray::Array3<f32> {
    fn row_at(&self, j: usize) -> Vec<f32> {
        self.slice(ndarray::s![0, j, ..]).to_vec()
    }
}

#[test]
#[should_panic(expected = "vlm: images are (2, 3, 8, 8), tokens are (1, 4)")]
fn a_batch_of_another_size_is_a_bug_named_with_the_shapes() {
    let vlm = model(VlmMask::Causal, 0);
    let tokens = Array2::from_shape_vec((1, 4), vec![12, 11, 13, 14]).unwrap();
    vlm.forward(&Array4::zeros((2, 3, 8, 8)), &tokens, Freeze::NONE);
}
