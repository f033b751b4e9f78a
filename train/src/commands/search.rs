//! `train search`: rank a folder of images by similarity to a text
//! (`--text "..." --images DIR`), or the lines of a texts file by
//! similarity to an image (`--image FILE --texts FILE`).

use super::{CommandError, bad_arg, load_images, load_run, shown};
use model::{Model, embed_texts, similarity, top_k};
use std::path::{Path, PathBuf};
use tokenizer::Tokenizer;

/// Arguments of `train search`.
#[derive(clap::Args, Debug, Clone)]
pub struct SearchArgs {
    /// The text to search images for (with --images).
    #[arg(long)]
    pub text: Option<String>,
    /// A folder of images (.png, .jpg, .jpeg) to rank by --text.
    #[arg(long)]
    pub images: Option<PathBuf>,
    /// The image to search texts for (with --texts).
    #[arg(long)]
    pub image: Option<PathBuf>,
    /// A file of texts, one a line, to rank by --image.
    #[arg(long)]
    pub texts: Option<PathBuf>,
    /// Show only the best N.
    #[arg(long)]
    pub top: Option<usize>,
    /// The run folder.
    #[arg(long, default_value = "runs/default")]
    pub run: PathBuf,
}

/// What a search found: the items (file names or texts) best first, with
/// their cosine similarity, and the files of the folder that are not images.
#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    pub ranked: Vec<(String, f32)>,
    pub skipped: usize,
    /// Texts longer than the model reads, cut to fit (see [`super::texts_cut`]).
    pub cut: usize,
    /// The model's `max_len`.
    pub max_len: usize,
}

impl SearchArgs {
    /// Runs the command.
    ///
    /// # Errors
    /// A wrong combination of flags, a run folder that is not one, an
    /// unreadable image or texts file.
    pub fn execute(&self) -> Result<String, CommandError> {
        if self.top == Some(0) {
            return Err(bad_arg("top", "must be at least 1"));
        }
        let found = match (&self.text, &self.images, &self.image, &self.texts) {
            (Some(text), Some(dir), None, None) => {
                let run = load_run(&self.run)?;
                search_images(&run.model, &run.tokenizer, text, dir)?
            }
            (None, None, Some(image), Some(texts)) => {
                let run = load_run(&self.run)?;
                search_texts(&run.model, &run.tokenizer, image, texts)?
            }
            _ => {
                return Err(bad_arg(
                    "text",
                    "give either --text and --images, or --image and --texts",
                ));
            }
        };
        Ok(render(&found, self.top))
    }
}

/// The image files of a folder (`.png`, `.jpg`, `.jpeg`, any case), sorted
/// by name, and how many other files it holds.
///
/// # Errors
/// [`CommandError::Io`] if the folder cannot be read,
/// [`CommandError::BadArg`] if it holds no image.
pub fn image_files(dir: &Path) -> Result<(Vec<PathBuf>, usize), CommandError> {
    let io = |source| CommandError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut files = Vec::new();
    let mut skipped = 0;
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        match ext.as_deref() {
            Some("png" | "jpg" | "jpeg") if path.is_file() => files.push(path),
            _ => skipped += 1,
        }
    }
    if files.is_empty() {
        return Err(bad_arg(
            "images",
            format!("{} holds no .png, .jpg or .jpeg file", dir.display()),
        ));
    }
    files.sort();
    Ok((files, skipped))
}

// ANCHOR: search_images
/// The images of `dir` ranked by the cosine between their embeddings and
/// the text's, best first.
///
/// # Errors
/// As [`image_files`]; an unreadable image, named.
pub fn search_images(
    model: &Model,
    tokenizer: &Tokenizer,
    text: &str,
    dir: &Path,
) -> Result<Found, CommandError> {
    if text.trim().is_empty() {
        return Err(bad_arg("text", "the text is empty"));
    }
    let (files, skipped) = image_files(dir)?;
    let image_embeds = super::embed_image_files(model, &files)?; // [N, E]
    let text_embeds = embed_texts(model, tokenizer, &[text.to_string()]); // [1, E]
    let scores = similarity(&text_embeds, &image_embeds); // [1, N]
    let ranked = top_k(&scores, files.len())[0]
        .iter()
        .map(|r| {
            let name = files[r.index]
                .file_name()
                .map(Path::new)
                .unwrap_or(&files[r.index]);
            (shown(name), r.score)
        })
        .collect();
    Ok(Found {
        ranked,
        skipped,
        cut: super::texts_cut(model, tokenizer, &[text.to_string()]),
        max_len: model.config().max_len,
    })
}
// ANCHOR_END: search_images

/// The lines of a texts file: every line must hold a text.
///
/// # Errors
/// [`CommandError::Io`] if unreadable, [`CommandError::BadLine`] for an
/// empty line, naming it.
pub fn read_texts(path: &Path) -> Result<Vec<String>, CommandError> {
    let text = crate::data::folder::read_tsv(path).map_err(|e| match e {
        crate::data::folder::DataError::Io { path, source } => CommandError::Io { path, source },
        other => CommandError::Data(other),
    })?;
    let mut texts = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            return Err(CommandError::BadLine {
                path: path.to_path_buf(),
                line: i + 1,
                why: "empty line; write one text a line".to_string(),
            });
        }
        texts.push(line.trim().to_string());
    }
    if texts.is_empty() {
        return Err(CommandError::BadLine {
            path: path.to_path_buf(),
            line: 1,
            why: "the file holds no text".to_string(),
        });
    }
    Ok(texts)
}

/// The lines of `texts` ranked by the cosine between their embeddings and
/// the image's, best first.
///
/// # Errors
/// As [`read_texts`]; an unreadable image, named.
pub fn search_texts(
    model: &Model,
    tokenizer: &Tokenizer,
    image: &Path,
    texts: &Path,
) -> Result<Found, CommandError> {
    let texts = read_texts(texts)?;
    let images = load_images(model, &[image])?; // [1, 3, S, S]
    let (_, image_embeds) = model.encode_images(&images); // [1, E]
    let text_embeds = super::embed_texts_chunked(model, tokenizer, &texts); // [N, E]
    let scores = similarity(&image_embeds, &text_embeds); // [1, N]
    let ranked = top_k(&scores, texts.len())[0]
        .iter()
        .map(|r| (texts[r.index].clone(), r.score))
        .collect();
    Ok(Found {
        ranked,
        skipped: 0,
        cut: super::texts_cut(model, tokenizer, &texts),
        max_len: model.config().max_len,
    })
}

/// The ranking as a table (the best `top`, or all).
pub fn render(found: &Found, top: Option<usize>) -> String {
    let mut out = String::from("rank  cosine  match\n");
    let n = top.unwrap_or(found.ranked.len()).min(found.ranked.len());
    for (i, (item, score)) in found.ranked.iter().take(n).enumerate() {
        out += &format!("{:>4}  {score:>6.3}  {item}\n", i + 1);
    }
    if n < found.ranked.len() {
        out += &format!("({} more)\n", found.ranked.len() - n);
    }
    out += &super::cut_note(found.cut, found.max_len);
    if found.skipped > 0 {
        out += &format!(
            "skipped {} file(s) that are not .png, .jpg or .jpeg\n",
            found.skipped
        );
    }
    out
}
