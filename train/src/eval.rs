//! Evaluation on seen and held-out combinations: zero-shot classification
//! over every caption the grammar can produce, retrieval both ways, and
//! greedy captions.
//!
//! Every figure is reported twice: for the (shape, colour) pairs training
//! showed, and for the [`crate::data::HELD_OUT`] pairs it never showed. A
//! model that only memorised captions does well on the first and badly on
//! the second; a model that learned shape and colour separately does well
//! on both.

use crate::data::{Object, Scene, ToyData};
use model::{Captioner, Model, Strategy, embed_texts, recall_at_k, similarity, top_k};
use ndarray::{Array2, Axis, s};
use serde::{Deserialize, Serialize};
use tokenizer::Tokenizer;

/// Accuracy of predicted objects against the true ones: all four attributes
/// at once (`exact`) and each alone.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Attributes {
    pub exact: f32,
    pub shape: f32,
    pub colour: f32,
    pub size: f32,
    pub position: f32,
}

impl Attributes {
    /// Scores `predicted` (`None`: not a caption of the grammar, every
    /// attribute wrong) against `truth`.
    pub fn score(predicted: &[Option<Object>], truth: &[Object]) -> Self {
        assert_eq!(predicted.len(), truth.len(), "attributes: length mismatch");
        let n = truth.len().max(1) as f32;
        let frac = |f: &dyn Fn(&Object, &Object) -> bool| {
            predicted
                .iter()
                .zip(truth)
                .filter(|(p, t)| p.as_ref().is_some_and(|p| f(p, t)))
                .count() as f32
                / n
        };
        Attributes {
            exact: frac(&|p, t| p == t),
            shape: frac(&|p, t| p.shape == t.shape),
            colour: frac(&|p, t| p.colour == t.colour),
            size: frac(&|p, t| p.size == t.size),
            position: frac(&|p, t| p.position == t.position),
        }
    }
}

/// The figures of one split (seen or held-out).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct SplitMetrics {
    /// Images evaluated.
    pub images: usize,
    /// Zero-shot top-1 over all captions of the grammar.
    pub zero_shot: Attributes,
    /// Image → text recall@1 and @5 among the split's captions.
    pub image_to_text_r1: f32,
    pub image_to_text_r5: f32,
    /// Text → image recall@1 and @5 among the split's images (one per caption).
    pub text_to_image_r1: f32,
    pub text_to_image_r5: f32,
    /// Greedy captions against the true ones.
    pub caption: Attributes,
}

/// Seen and held-out figures.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct EvalReport {
    pub seen: SplitMetrics,
    pub held_out: SplitMetrics,
}

/// What to evaluate on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EvalConfig {
    /// Images per object for zero-shot and captions (retrieval uses one).
    pub per_object: usize,
    /// Which evaluation stream of the dataset to draw images from.
    pub stream: u64,
}

impl Default for EvalConfig {
    fn default() -> Self {
        EvalConfig {
            per_object: 2,
            stream: 0,
        }
    }
}

// ANCHOR: evaluate
/// Evaluates `model` on seen and held-out objects of `data`.
pub fn evaluate(
    model: &Model,
    tokenizer: &Tokenizer,
    data: &ToyData,
    config: &EvalConfig,
) -> EvalReport {
    // the classes of zero-shot: every caption the grammar can produce in
    // this world
    let classes = data.world.objects();
    let texts: Vec<String> = classes.iter().map(Object::caption).collect();
    let class_embeds = embed_texts(model, tokenizer, &texts); // [K, E]
    let split = |objects: Vec<Object>, stream: u64| {
        evaluate_split(
            model,
            tokenizer,
            data,
            config,
            &objects,
            &classes,
            &class_embeds,
            stream,
        )
    };
    EvalReport {
        seen: split(data.training_objects(), 2 * config.stream),
        held_out: split(data.held_out_objects(), 2 * config.stream + 1),
    }
}
// ANCHOR_END: evaluate

#[allow(clippy::too_many_arguments)]
fn evaluate_split(
    model: &Model,
    tokenizer: &Tokenizer,
    data: &ToyData,
    config: &EvalConfig,
    objects: &[Object],
    classes: &[Object],
    class_embeds: &Array2<f32>,
    stream: u64,
) -> SplitMetrics {
    let per = config.per_object.max(1);
    let images = data.eval_images(objects, per, stream); // [N·per, 3, H, W]
    let truth: Vec<Object> = objects
        .iter()
        .flat_map(|&o| std::iter::repeat_n(o, per))
        .collect();
    let mut image_embeds = Array2::zeros((truth.len(), class_embeds.ncols()));
    let mut captions = Vec::with_capacity(truth.len());
    let captioner = Captioner::new(model, tokenizer);
    for start in (0..truth.len()).step_by(64) {
        let end = (start + 64).min(truth.len());
        let chunk = images.slice(s![start..end, .., .., ..]);
        let (_, embeds) = model.encode_images(&chunk);
        image_embeds.slice_mut(s![start..end, ..]).assign(&embeds);
        captions.extend(captioner.caption(&chunk, &Strategy::Greedy));
    }
    // zero-shot: the nearest caption of all the grammar's
    let scores = similarity(&image_embeds, class_embeds); // [N, K]
    let zero_shot: Vec<Option<Object>> = top_k(&scores, 1)
        .iter()
        .map(|r| Some(classes[r[0].index]))
        .collect();
    // retrieval among the split's own captions, one image per object
    let first: Vec<usize> = (0..objects.len()).map(|i| i * per).collect();
    let split_images = image_embeds.select(Axis(0), &first); // [N, E]
    let split_texts: Vec<String> = objects.iter().map(Object::caption).collect();
    let text_embeds = embed_texts(model, tokenizer, &split_texts); // [N, E]
    let i2t = top_k(&similarity(&split_images, &text_embeds), 5);
    let t2i = top_k(&similarity(&text_embeds, &split_images), 5);
    let relevant: Vec<usize> = (0..objects.len()).collect();
    // greedy captions, read back by the grammar
    let written: Vec<Option<Object>> = captions
        .iter()
        .map(|c| match Scene::parse(&c.text) {
            Some(Scene::Single(o)) => Some(o),
            _ => None,
        })
        .collect();
    SplitMetrics {
        images: truth.len(),
        zero_shot: Attributes::score(&zero_shot, &truth),
        image_to_text_r1: recall_at_k(&i2t, &relevant, 1),
        image_to_text_r5: recall_at_k(&i2t, &relevant, 5),
        text_to_image_r1: recall_at_k(&t2i, &relevant, 1),
        text_to_image_r5: recall_at_k(&t2i, &relevant, 5),
        caption: Attributes::score(&written, &truth),
    }
}

/// Greedy captions of a few held-out and seen images: `(truth, written)`.
pub fn sample_captions(
    model: &Model,
    tokenizer: &Tokenizer,
    data: &ToyData,
    n: usize,
) -> Vec<(String, String)> {
    let mut objects = data.held_out_objects();
    objects.truncate(n / 2);
    objects.extend(
        data.training_objects()
            .into_iter()
            .step_by(17)
            .take(n - n / 2),
    );
    let images = data.eval_images(&objects, 1, 1000);
    let captions = Captioner::new(model, tokenizer).caption(&images, &Strategy::Greedy);
    objects
        .iter()
        .zip(captions)
        .map(|(o, c)| (o.caption(), c.text))
        .collect()
}

impl EvalReport {
    /// The report as a markdown table, seen and held-out side by side.
    pub fn table(&self) -> String {
        let pct = |v: f32| format!("{:.1}%", 100.0 * v);
        type Row = (&'static str, fn(&SplitMetrics) -> f32);
        let rows: [Row; 14] = [
            ("zero-shot top-1 exact", |m| m.zero_shot.exact),
            ("zero-shot shape", |m| m.zero_shot.shape),
            ("zero-shot colour", |m| m.zero_shot.colour),
            ("zero-shot size", |m| m.zero_shot.size),
            ("zero-shot position", |m| m.zero_shot.position),
            ("image→text R@1", |m| m.image_to_text_r1),
            ("image→text R@5", |m| m.image_to_text_r5),
            ("text→image R@1", |m| m.text_to_image_r1),
            ("text→image R@5", |m| m.text_to_image_r5),
            ("caption exact match", |m| m.caption.exact),
            ("caption shape", |m| m.caption.shape),
            ("caption colour", |m| m.caption.colour),
            ("caption size", |m| m.caption.size),
            ("caption position", |m| m.caption.position),
        ];
        let mut out = format!(
            "| metric | seen ({} images) | held-out ({} images) |\n| --- | ---: | ---: |\n",
            self.seen.images, self.held_out.images
        );
        for (name, f) in rows {
            out += &format!(
                "| {name} | {} | {} |\n",
                pct(f(&self.seen)),
                pct(f(&self.held_out))
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{Colour, Position, Shape, Size, World};
    use model::ModelConfig;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn attributes_count_each_part() {
        let t = Object {
            shape: Shape::Circle,
            colour: Colour::Red,
            size: Size::Big,
            position: Position::Middle,
        };
        let wrong_colour = Object {
            colour: Colour::Blue,
            ..t
        };
        let a = Attributes::score(&[Some(t), Some(wrong_colour), None, Some(t)], &[t; 4]);
        assert_eq!(a.exact, 0.5);
        assert_eq!(a.colour, 0.5);
        assert_eq!(a.shape, 0.75);
        assert_eq!(a.size, 0.75);
        assert_eq!(a.position, 0.75);
    }

    #[test]
    fn an_untrained_model_is_near_chance_and_the_table_lists_both_splits() {
        let data = ToyData {
            seed: 1,
            two_object: 0.0,
            world: World::SMALL,
        };
        let tok = data.train_tokenizer().unwrap();
        let mut config = ModelConfig::micro(tok.vocab_size());
        config.max_len = 12;
        config.image = model::ImageConfig::Vit(vision::VitConfig {
            image_size: 32,
            patch: 8,
            ..match config.image {
                model::ImageConfig::Vit(v) => v,
                _ => unreachable!("micro is a ViT"),
            }
        });
        let model = config.init(&mut StdRng::seed_from_u64(0)).unwrap();
        let report = evaluate(
            &model,
            &tok,
            &data,
            &EvalConfig {
                per_object: 1,
                stream: 0,
            },
        );
        assert_eq!(report.seen.images, 160);
        assert_eq!(report.held_out.images, 40);
        // 200 classes: an untrained model cannot be right often
        assert!(report.seen.zero_shot.exact < 0.1, "{report:?}");
        assert!(report.seen.image_to_text_r1 <= report.seen.image_to_text_r5);
        let table = report.table();
        assert!(table.contains("| zero-shot top-1 exact |"));
        assert!(table.contains("held-out (40 images)"));
    }
}
