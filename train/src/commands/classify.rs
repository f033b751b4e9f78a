//! `train classify IMAGE --labels "red circle,blue square"`: zero-shot
//! classification with prompt templates.

use super::{CommandError, bad_arg, load_images, load_run};
use model::{Model, PROMPT_TEMPLATES, ZeroShotClassifier, prompts};
use std::path::{Path, PathBuf};
use tokenizer::Tokenizer;

/// Arguments of `train classify`.
#[derive(clap::Args, Debug, Clone)]
pub struct ClassifyArgs {
    /// The image file (PNG or JPEG, any size).
    pub image: PathBuf,
    /// The labels, separated by commas.
    #[arg(long)]
    pub labels: String,
    /// The run folder.
    #[arg(long, default_value = "runs/default")]
    pub run: PathBuf,
}

impl ClassifyArgs {
    /// Runs the command.
    ///
    /// # Errors
    /// Bad labels, a run folder that is not one, an unreadable image.
    pub fn execute(&self) -> Result<String, CommandError> {
        let labels = parse_labels(&self.labels)?;
        let run = load_run(&self.run)?;
        let ranked = classify_file(&run.model, &run.tokenizer, &self.image, &labels)?;
        let classes: Vec<&str> = labels.iter().map(String::as_str).collect();
        let cut = super::texts_cut(
            &run.model,
            &run.tokenizer,
            &prompts(&classes, &PROMPT_TEMPLATES),
        );
        Ok(render(&ranked) + &super::cut_note(cut, run.model.config().max_len))
    }
}

/// Splits `"red circle, blue square"` into trimmed labels.
///
/// # Errors
/// [`CommandError::BadArg`] for an empty label, a repeated one, or fewer
/// than two.
pub fn parse_labels(text: &str) -> Result<Vec<String>, CommandError> {
    let labels: Vec<String> = text.split(',').map(|l| l.trim().to_string()).collect();
    if let Some(i) = labels.iter().position(String::is_empty) {
        return Err(bad_arg(
            "labels",
            format!("label {} is empty in {text:?}", i + 1),
        ));
    }
    for (i, l) in labels.iter().enumerate() {
        if labels[..i].contains(l) {
            return Err(bad_arg("labels", format!("{l:?} is given twice")));
        }
    }
    if labels.len() < 2 {
        return Err(bad_arg(
            "labels",
            "give at least two labels, separated by commas",
        ));
    }
    Ok(labels)
}

// ANCHOR: classify
/// The labels ranked by zero-shot probability for one image file: each
/// label is put into every template of [`PROMPT_TEMPLATES`] ("a {}", …),
/// the prompts' embeddings are averaged per label, and a softmax over the
/// scaled cosines gives the probabilities.
///
/// # Errors
/// The image's [`vision::ImageError`], naming it.
pub fn classify_file(
    model: &Model,
    tokenizer: &Tokenizer,
    image: &Path,
    labels: &[String],
) -> Result<Vec<(String, f32)>, CommandError> {
    let images = load_images(model, &[image])?; // [1, 3, S, S]
    // every label in every template: embedded a chunk of labels at a time,
    // so thousands of labels cost the memory of one chunk
    let per_chunk = (super::TEXT_CHUNK / PROMPT_TEMPLATES.len()).max(1);
    let mut class_embeds = ndarray::Array2::zeros((labels.len(), model.config().embed_dim));
    for (i, chunk) in labels.chunks(per_chunk).enumerate() {
        let classes: Vec<&str> = chunk.iter().map(String::as_str).collect();
        let part = ZeroShotClassifier::new(model, tokenizer, &classes, &PROMPT_TEMPLATES);
        let start = i * per_chunk;
        class_embeds
            .slice_mut(ndarray::s![start..start + chunk.len(), ..])
            .assign(&part.class_embeds);
    }
    let classifier = ZeroShotClassifier {
        classes: labels.to_vec(),
        class_embeds,
        logit_scale: model.logit_scale_exp(),
    };
    let probs = classifier.classify(model, &images); // [1, K]
    let mut ranked: Vec<(String, f32)> =
        labels.iter().cloned().zip(probs.row(0).to_vec()).collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
    Ok(ranked)
}
// ANCHOR_END: classify

/// The ranking as a table.
pub fn render(ranked: &[(String, f32)]) -> String {
    let mut out = String::from("rank  probability  label\n");
    for (i, (label, p)) in ranked.iter().enumerate() {
        out += &format!("{:>4}  {:>10.1} %  {label}\n", i + 1, 100.0 * p);
    }
    out
}
