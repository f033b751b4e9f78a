//! Zero-shot classification and retrieval in the shared space.
//!
//! Once images and texts live in one space, two tasks need no training:
//!
//! - **zero-shot classification**: write every class name into a few prompt
//!   templates ("a photo of a {}"), embed the prompts, average each class's
//!   embeddings (*prompt ensembling*) and re-normalise; an image's class
//!   probabilities are `softmax(s · image · class)`, `s` the model's logit
//!   scale, exactly the logits the contrastive loss was trained on;
//! - **retrieval**: rank all texts for an image (or all images for a text)
//!   by cosine similarity, and measure with recall@k how often the right
//!   answer is among the first `k`.
//!
//! The functions here work on embeddings, so they can be read and tested
//! without a model; [`ZeroShotClassifier`] ties them to one.
//!
//! ## Glossary
//! `B` images, `N` texts, `K` classes, `P` prompt templates, `E` width of the
//! shared space. All embeddings are rows of unit length.

use ndarray::{Array2, ArrayRef2, ArrayRef4, Axis};
use tokenizer::Tokenizer;

use crate::{Model, ModelConfig, SpecialTokens};

// ANCHOR: templates
/// The prompt templates of the book's examples: `{}` is replaced by the
/// class name.
pub const PROMPT_TEMPLATES: [&str; 3] = ["a {}", "a photo of a {}", "an image of a {}"];
// ANCHOR_END: templates

/// `template` with its `{}` replaced by `class` (appended after a space if
/// the template has no `{}`).
pub fn fill_template(template: &str, class: &str) -> String {
    if template.contains("{}") {
        template.replacen("{}", class, 1)
    } else {
        format!("{template} {class}")
    }
}

/// Every prompt, class-major: `[class 0 × template 0, class 0 × template 1,
/// …, class 1 × template 0, …]`, `K·P` strings.
pub fn prompts(classes: &[&str], templates: &[&str]) -> Vec<String> {
    classes
        .iter()
        .flat_map(|c| templates.iter().map(move |t| fill_template(t, c)))
        .collect()
}

/// Each row divided by its L2 norm (rows of zeros stay zero).
pub fn l2_normalize_rows(x: &ArrayRef2<f32>) -> Array2<f32> {
    let mut out = x.to_owned();
    for mut row in out.rows_mut() {
        let norm = row.dot(&row).sqrt();
        if norm > 0.0 {
            row /= norm;
        }
    }
    out
}

// ANCHOR: ensemble
/// Prompt ensembling: the mean of each class's `P` prompt embeddings,
/// re-normalised to unit length.
///
/// # Shapes
/// - `prompt_embeds`: `[K·P, E]`, class-major as [`prompts`] orders them
/// - returns `[K, E]`
///
/// # Panics
/// If `n_templates` is 0 or does not divide the number of rows.
#[track_caller]
pub fn average_prompts(prompt_embeds: &ArrayRef2<f32>, n_templates: usize) -> Array2<f32> {
    let (rows, e) = prompt_embeds.dim();
    assert!(
        n_templates > 0 && rows % n_templates == 0,
        "average_prompts: {rows} prompt embeddings for {n_templates} templates"
    );
    let grouped = prompt_embeds
        .to_shape((rows / n_templates, n_templates, e))
        .expect("a standard-layout copy always reshapes");
    let mean = grouped.mean_axis(Axis(1)).expect("n_templates > 0"); // [K, E]
    l2_normalize_rows(&mean)
}
// ANCHOR_END: ensemble

/// Cosine similarities `a · bᵀ` of unit rows.
///
/// # Shapes
/// `a: [M, E]`, `b: [N, E]` -> `[M, N]`
///
/// # Panics
/// If the widths differ.
#[track_caller]
pub fn similarity(a: &ArrayRef2<f32>, b: &ArrayRef2<f32>) -> Array2<f32> {
    assert_eq!(
        a.ncols(),
        b.ncols(),
        "similarity: widths differ, {:?} vs {:?}",
        a.shape(),
        b.shape()
    );
    a.dot(&b.t())
}

// ANCHOR: zero_shot_probs
/// Class probabilities `softmax(logit_scale · image · classᵀ)` per image.
///
/// # Shapes
/// - `image_embeds`: `[B, E]`, `class_embeds`: `[K, E]` (unit rows)
/// - returns `[B, K]`, each row summing to 1
///
/// # Panics
/// If the widths differ.
#[track_caller]
pub fn zero_shot_probs(
    image_embeds: &ArrayRef2<f32>,
    class_embeds: &ArrayRef2<f32>,
    logit_scale: f32,
) -> Array2<f32> {
    let mut logits = similarity(image_embeds, class_embeds) * logit_scale; // [B, K]
    for mut row in logits.rows_mut() {
        let max = row.fold(f32::NEG_INFINITY, |m, &x| m.max(x));
        row.mapv_inplace(|x| (x - max).exp());
        let sum = row.sum();
        row /= sum;
    }
    logits
}
// ANCHOR_END: zero_shot_probs

/// One retrieved item: its index among the candidates and its similarity.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ranked {
    pub index: usize,
    pub score: f32,
}

// ANCHOR: rank
/// For every row of `scores` (a query), the `k` columns (candidates) with
/// the highest scores, best first; equal scores go to the lower index.
///
/// Image → text retrieval is `top_k(&similarity(images, texts), k)`; text →
/// image is the same on the transposed matrix.
///
/// # Shapes
/// `scores: [Q, N]` -> `Q` lists of `min(k, N)` entries
pub fn top_k(scores: &ArrayRef2<f32>, k: usize) -> Vec<Vec<Ranked>> {
    scores
        .rows()
        .into_iter()
        .map(|row| {
            let mut order: Vec<usize> = (0..row.len()).collect();
            order.sort_by(|&a, &b| row[b].total_cmp(&row[a]).then(a.cmp(&b)));
            order
                .into_iter()
                .take(k)
                .map(|index| Ranked {
                    index,
                    score: row[index],
                })
                .collect()
        })
        .collect()
}
// ANCHOR_END: rank

// ANCHOR: recall
/// Recall@k: the fraction of queries whose relevant candidate
/// (`relevant[q]`) is among their first `k` ranked results.
///
/// # Panics
/// If `rankings` and `relevant` differ in length.
#[track_caller]
pub fn recall_at_k(rankings: &[Vec<Ranked>], relevant: &[usize], k: usize) -> f32 {
    assert_eq!(
        rankings.len(),
        relevant.len(),
        "recall_at_k: {} rankings for {} relevant items",
        rankings.len(),
        relevant.len()
    );
    if rankings.is_empty() {
        return 0.0;
    }
    let hits = rankings
        .iter()
        .zip(relevant)
        .filter(|(ranked, want)| ranked.iter().take(k).any(|r| r.index == **want))
        .count();
    hits as f32 / rankings.len() as f32
}
// ANCHOR_END: recall

// ANCHOR: tokenize
/// Texts as a batch for [`Model::encode_texts`]: each row
/// `<|bos|> text <|eos|> <|pad|>…`, and its length `<|bos|>` to `<|eos|>`
/// inclusive. A text longer than `max_len − 2` tokens is cut to fit (its
/// `<|eos|>` is kept).
///
/// # Shapes
/// `N` texts → `tokens: [N, T]` with `T` the longest row, `lengths: [N]`
pub fn tokenize_texts(
    tokenizer: &Tokenizer,
    config: &ModelConfig,
    texts: &[String],
) -> (Array2<u32>, Vec<usize>) {
    let SpecialTokens { bos, eos, pad } = config.special;
    let rows: Vec<Vec<u32>> = texts
        .iter()
        .map(|text| {
            let mut ids = tokenizer.encode_ordinary(text);
            ids.truncate(config.max_len.saturating_sub(2));
            let mut row = vec![bos];
            row.extend(ids);
            row.push(eos);
            row
        })
        .collect();
    let t = rows.iter().map(Vec::len).max().unwrap_or(2);
    let mut tokens = Array2::from_elem((rows.len(), t), pad);
    for (mut out, row) in tokens.rows_mut().into_iter().zip(&rows) {
        for (o, &id) in out.iter_mut().zip(row) {
            *o = id;
        }
    }
    (tokens, rows.iter().map(Vec::len).collect())
}
// ANCHOR_END: tokenize

/// The text embeddings `[N, E]` of `N` texts (unit rows).
pub fn embed_texts(model: &Model, tokenizer: &Tokenizer, texts: &[String]) -> Array2<f32> {
    let (tokens, lengths) = tokenize_texts(tokenizer, model.config(), texts);
    model.encode_texts(&tokens, &lengths)
}

// ANCHOR: classifier
/// A zero-shot classifier: one embedding per class, from its prompts.
#[derive(Debug, Clone, PartialEq)]
pub struct ZeroShotClassifier {
    /// The class names, in the order of the probabilities.
    pub classes: Vec<String>,
    /// `[K, E]`: each class's prompt embeddings averaged and re-normalised.
    pub class_embeds: Array2<f32>,
    /// `exp(logit_scale)` of the model, the factor on the cosines.
    pub logit_scale: f32,
}

impl ZeroShotClassifier {
    /// Embeds every class name in every template and averages per class.
    ///
    /// # Panics
    /// If `templates` is empty.
    #[track_caller]
    pub fn new(model: &Model, tokenizer: &Tokenizer, classes: &[&str], templates: &[&str]) -> Self {
        assert!(
            !templates.is_empty(),
            "zero-shot: at least one prompt template is needed"
        );
        let prompt_embeds = embed_texts(model, tokenizer, &prompts(classes, templates)); // [K·P, E]
        ZeroShotClassifier {
            classes: classes.iter().map(|c| c.to_string()).collect(),
            class_embeds: average_prompts(&prompt_embeds, templates.len()), // [K, E]
            logit_scale: model.logit_scale_exp(),
        }
    }

    /// Class probabilities `[B, K]` of images already embedded `[B, E]`.
    pub fn probs(&self, image_embeds: &ArrayRef2<f32>) -> Array2<f32> {
        zero_shot_probs(image_embeds, &self.class_embeds, self.logit_scale)
    }

    /// Class probabilities `[B, K]` of images `[B, C_in, H, W]`.
    ///
    /// # Panics
    /// If the images do not have the model's channels and size.
    #[track_caller]
    pub fn classify(&self, model: &Model, images: &ArrayRef4<f32>) -> Array2<f32> {
        let (_, image_embeds) = model.encode_images(images);
        self.probs(&image_embeds)
    }
}
// ANCHOR_END: classifier

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array2, array};
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    fn random_unit_rows(rows: usize, cols: usize, seed: u64) -> Array2<f32> {
        let mut rng = StdRng::seed_from_u64(seed);
        l2_normalize_rows(&Array2::from_shape_fn((rows, cols), |_| {
            rng.random_range(-1.0f32..1.0)
        }))
    }

    #[test]
    fn templates_fill_class_major() {
        assert_eq!(fill_template("a photo of a {}", "cat"), "a photo of a cat");
        assert_eq!(fill_template("cat:", "tabby"), "cat: tabby");
        let p = prompts(&["cat", "dog"], &["a {}", "the {}"]);
        assert_eq!(p, ["a cat", "the cat", "a dog", "the dog"]);
    }

    #[test]
    fn one_template_averages_to_the_embedding_itself() {
        let e = random_unit_rows(5, 8, 0);
        let avg = average_prompts(&e, 1);
        approx::assert_abs_diff_eq!(avg, e, epsilon = 1e-6);
    }

    #[test]
    fn averaging_is_per_class_and_renormalised() {
        // class 0: two orthogonal unit vectors -> their bisector
        let e = array![[1.0f32, 0.0], [0.0, 1.0], [0.6, 0.8], [0.6, 0.8]];
        let avg = average_prompts(&e, 2);
        let h = std::f32::consts::FRAC_1_SQRT_2;
        approx::assert_abs_diff_eq!(avg, array![[h, h], [0.6, 0.8]], epsilon = 1e-6);
    }

    #[test]
    fn probabilities_are_a_softmax_of_scaled_cosines() {
        let images = random_unit_rows(3, 6, 1);
        let classes = random_unit_rows(4, 6, 2);
        let p = zero_shot_probs(&images, &classes, 10.0);
        assert_eq!(p.dim(), (3, 4));
        for b in 0..3 {
            let logits: Vec<f64> = (0..4)
                .map(|k| 10.0 * f64::from(images.row(b).dot(&classes.row(k))))
                .collect();
            let z: f64 = logits.iter().map(|l| l.exp()).sum();
            for k in 0..4 {
                assert!((f64::from(p[[b, k]]) - logits[k].exp() / z).abs() < 1e-6);
            }
        }
        // a larger scale sharpens: the argmax gains probability
        let sharp = zero_shot_probs(&images, &classes, 100.0);
        for b in 0..3 {
            let best = top_k(&p.slice(ndarray::s![b..b + 1, ..]), 1)[0][0].index;
            assert!(sharp[[b, best]] > p[[b, best]]);
        }
    }

    #[test]
    fn ranking_equals_a_brute_force_selection() {
        let images = random_unit_rows(6, 8, 3);
        let texts = random_unit_rows(9, 8, 4);
        let sim = similarity(&images, &texts);
        for (scores, ranked) in [
            (sim.clone(), top_k(&sim, 4)),
            (sim.t().to_owned(), top_k(&sim.t(), 4)),
        ] {
            for (q, got) in ranked.iter().enumerate() {
                // repeatedly take the best candidate not yet taken, scoring
                // each pair afresh from the embeddings
                let mut taken = vec![false; scores.ncols()];
                for r in got {
                    let mut best = None::<(usize, f32)>;
                    for j in (0..scores.ncols()).filter(|&j| !taken[j]) {
                        let s = scores[[q, j]];
                        if best.is_none_or(|(_, b)| s > b) {
                            best = Some((j, s));
                        }
                    }
                    let (j, s) = best.unwrap();
                    taken[j] = true;
                    assert_eq!((r.index, r.score), (j, s));
                }
            }
        }
        // the similarity matrix is the brute-force dot product
        for i in 0..6 {
            for j in 0..9 {
                let dot: f32 = images
                    .row(i)
                    .iter()
                    .zip(texts.row(j))
                    .map(|(a, b)| a * b)
                    .sum();
                assert!((sim[[i, j]] - dot).abs() < 1e-6);
            }
        }
    }

    #[test]
    fn recall_counts_hits_in_the_first_k() {
        let scores = array![[0.9f32, 0.1, 0.5], [0.2, 0.3, 0.8], [0.7, 0.6, 0.1]];
        let ranked = top_k(&scores, 3);
        assert_eq!(ranked[1][0].index, 2);
        // relevant: the diagonal; query 0 hits at rank 1, query 1 at rank 2,
        // query 2 at rank 3
        let diag = [0, 1, 2];
        assert_eq!(recall_at_k(&ranked, &diag, 1), 1.0 / 3.0);
        assert_eq!(recall_at_k(&ranked, &diag, 2), 2.0 / 3.0);
        assert_eq!(recall_at_k(&ranked, &diag, 3), 1.0);
        // identical embeddings retrieve each other first
        let e = random_unit_rows(7, 5, 9);
        let r = top_k(&similarity(&e, &e), 1);
        assert_eq!(recall_at_k(&r, &[0, 1, 2, 3, 4, 5, 6], 1), 1.0);
    }

    // --- on a model ----------------------------------------------------------

    use crate::ModelConfig;
    use ndarray::Array4;

    fn micro() -> (Model, Tokenizer) {
        let tokenizer = Tokenizer::train_lines(["a red circle", "a blue square"], 260)
            .unwrap()
            .with_special_tokens(&[tokenizer::BOS, tokenizer::EOS, tokenizer::PAD])
            .unwrap();
        let config = ModelConfig::micro(tokenizer.vocab_size());
        (
            config.init(&mut StdRng::seed_from_u64(2)).unwrap(),
            tokenizer,
        )
    }

    fn images(b: usize) -> Array4<f32> {
        let mut rng = StdRng::seed_from_u64(11);
        Array4::from_shape_fn((b, 3, 8, 8), |_| rng.random_range(-1.0f32..1.0))
    }

    #[test]
    fn texts_become_bos_text_eos_pad_rows() {
        let (model, tokenizer) = micro();
        let config = model.config();
        let texts = ["a red circle".to_string(), "a".to_string(), "x".repeat(40)];
        let (tokens, lengths) = tokenize_texts(&tokenizer, config, &texts);
        let SpecialTokens { bos, eos, pad } = config.special;
        assert_eq!(tokens.ncols(), config.max_len); // the long text is cut
        for (row, &len) in tokens.rows().into_iter().zip(&lengths) {
            assert_eq!((row[0], row[len - 1]), (bos, eos));
            assert!(row.iter().skip(len).all(|&t| t == pad));
        }
        let a = tokenizer.encode_ordinary("a");
        assert_eq!(lengths[1], a.len() + 2);
        assert_eq!(tokens[[1, 1]], a[0]);
    }

    #[test]
    fn one_template_gives_the_plain_text_embedding() {
        let (model, tokenizer) = micro();
        let classes = ["circle", "square", "red triangle"];
        let zs = ZeroShotClassifier::new(&model, &tokenizer, &classes, &["a {}"]);
        let plain = embed_texts(
            &model,
            &tokenizer,
            &[
                "a circle".into(),
                "a square".into(),
                "a red triangle".into(),
            ],
        );
        approx::assert_abs_diff_eq!(zs.class_embeds, plain, epsilon = 1e-5);
    }

    #[test]
    fn classification_shapes_and_consistency() {
        let (model, tokenizer) = micro();
        let classes = ["circle", "square", "triangle", "star"];
        let zs = ZeroShotClassifier::new(&model, &tokenizer, &classes, &PROMPT_TEMPLATES);
        assert_eq!(zs.class_embeds.dim(), (4, model.config().embed_dim));
        for row in zs.class_embeds.rows() {
            assert!((row.dot(&row) - 1.0).abs() < 1e-5); // re-normalised
        }
        // the ensemble is the normalised mean of the three prompts' embeddings
        let each = embed_texts(
            &model,
            &tokenizer,
            &prompts(&classes[1..2], &PROMPT_TEMPLATES),
        );
        let mean = l2_normalize_rows(&each.mean_axis(Axis(0)).unwrap().insert_axis(Axis(0)));
        approx::assert_abs_diff_eq!(zs.class_embeds.row(1), mean.row(0), epsilon = 1e-5);

        let x = images(5);
        let p = zs.classify(&model, &x);
        assert_eq!(p.dim(), (5, 4));
        for row in p.rows() {
            assert!((row.sum() - 1.0).abs() < 1e-5);
        }
        // the most probable class is the most similar one
        let (_, image_embeds) = model.encode_images(&x);
        let by_sim = top_k(&similarity(&image_embeds, &zs.class_embeds), 4);
        let by_prob = top_k(&p, 4);
        for (s, q) in by_sim.iter().zip(&by_prob) {
            let a: Vec<usize> = s.iter().map(|r| r.index).collect();
            let b: Vec<usize> = q.iter().map(|r| r.index).collect();
            assert_eq!(a, b);
        }
    }

    #[test]
    fn retrieval_on_the_model_ranks_by_cosine() {
        let (model, tokenizer) = micro();
        let (_, image_embeds) = model.encode_images(&images(4));
        let texts: Vec<String> = ["a red circle", "a blue square", "red", "blue circle", "a"]
            .iter()
            .map(|t| t.to_string())
            .collect();
        let text_embeds = embed_texts(&model, &tokenizer, &texts);
        let i2t = top_k(&similarity(&image_embeds, &text_embeds), 5);
        let t2i = top_k(&similarity(&text_embeds, &image_embeds), 4);
        assert_eq!(
            (i2t.len(), i2t[0].len(), t2i.len(), t2i[0].len()),
            (4, 5, 5, 4)
        );
        // both directions read the same matrix: the score of (image i, text j)
        for (i, ranked) in i2t.iter().enumerate() {
            for r in ranked {
                let t = t2i[r.index].iter().find(|x| x.index == i).unwrap();
                assert_eq!(t.score, r.score);
            }
        }
    }
}
