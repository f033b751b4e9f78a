//! The user's own data: a folder of images and a `captions.tsv` file with
//! one `file<TAB>caption` a line.
//!
//! ```text
//! my-data/
//! ├── captions.tsv     00000.png<TAB>a big red circle in the top left
//! ├── 00000.png
//! └── ...
//! ```
//!
//! Every image is loaded, resized to the model's size and scaled to
//! `[0, 1]` exactly as the toy images are, once, when the folder is read.
//! Every problem is an error naming `captions.tsv` and the line: a line
//! without exactly one tab, an empty file name or caption, a file name
//! that leaves the folder (`../x.png`, `/x.png`), a missing or unreadable
//! image. Blank lines (nothing but spaces; a tab makes a line an item) are
//! the only lines skipped, and [`FolderData::blank_lines`] counts them. A
//! UTF-8 byte order mark at the start of the file, which some editors
//! write, is skipped.
//!
//! Every 10th caption line (the 10th, 20th, …) is the validation split: it
//! never reaches training, and the two splits are reported apart.

use crate::data::{Batch, Tokens, mix};
use ndarray::{Array4, Axis};
use rand::SeedableRng;
use rand::rngs::StdRng;
use std::fmt;
use std::path::{Component, Path, PathBuf};
use tokenizer::{Tokenizer, TokenizerError};
use vision::{ImageError, Preprocess};

/// The captions file inside a data folder.
pub const CAPTIONS_FILE: &str = "captions.tsv";

/// Every `VALIDATION_EVERY`-th caption line is validation data.
pub const VALIDATION_EVERY: usize = 10;

// ANCHOR: preprocess
/// How pixels become model input, for toy and own images alike: resized
/// to `size × size` and scaled to `[0, 1]` with no further normalisation,
/// the range [`crate::data::Scene::render`] draws in.
pub fn preprocess(size: usize) -> Preprocess {
    Preprocess {
        height: size,
        width: size,
        mean: [0.0; 3],
        std: [1.0; 3],
    }
}
// ANCHOR_END: preprocess

/// One line of `captions.tsv`.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    /// The image file, relative to the data folder.
    pub file: String,
    /// The caption, trimmed.
    pub caption: String,
    /// The line number in `captions.tsv` (from 1).
    pub line: usize,
}

/// What is wrong with a data folder.
#[derive(Debug)]
pub enum DataError {
    /// The folder or its `captions.tsv` cannot be read.
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A line is not `file<TAB>caption`.
    Malformed {
        path: PathBuf,
        line: usize,
        why: String,
    },
    /// A line's caption is empty.
    EmptyCaption { path: PathBuf, line: usize },
    /// A line names an image that does not exist.
    MissingImage {
        path: PathBuf,
        line: usize,
        image: PathBuf,
    },
    /// A line names an image that cannot be decoded.
    Image {
        path: PathBuf,
        line: usize,
        source: ImageError,
    },
    /// Too few captions for what was asked.
    TooFew { path: PathBuf, why: String },
    /// A caption needs more tokens than the model reads.
    TooLong {
        path: PathBuf,
        line: usize,
        tokens: usize,
        max: usize,
    },
    /// The tokenizer could not be trained on the captions.
    Tokenizer(TokenizerError),
    /// The folder's images would not fit in memory.
    Memory(crate::memory::MemoryError),
}

impl fmt::Display for DataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DataError::Io { path, source } => write!(f, "{}: {source}", path.display()),
            DataError::Malformed { path, line, why } => {
                write!(f, "{}:{line}: malformed line: {why}", path.display())
            }
            DataError::EmptyCaption { path, line } => {
                write!(f, "{}:{line}: empty caption", path.display())
            }
            DataError::MissingImage { path, line, image } => write!(
                f,
                "{}:{line}: image {} does not exist",
                path.display(),
                image.display()
            ),
            DataError::Image { path, line, source } => {
                write!(f, "{}:{line}: unreadable image: {source}", path.display())
            }
            DataError::TooFew { path, why } => write!(f, "{}: {why}", path.display()),
            DataError::TooLong {
                path,
                line,
                tokens,
                max,
            } => write!(
                f,
                "{}:{line}: the caption needs {tokens} tokens with <|bos|> and <|eos|>; the model reads at most {max}",
                path.display()
            ),
            DataError::Tokenizer(e) => write!(f, "tokenizer: {e}"),
            DataError::Memory(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for DataError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            DataError::Io { source, .. } => Some(source),
            DataError::Image { source, .. } => Some(source),
            DataError::Tokenizer(e) => Some(e),
            _ => None,
        }
    }
}

// ANCHOR: parse_captions
/// Splits one non-blank line of a `.tsv` data file into its `N` fields at
/// the tabs, and checks the first, the image's file name, which it trims.
/// `form` names the fields for the error (`file<TAB>caption`). Shared by
/// `captions.tsv` and `questions.tsv` ([`crate::data::qa_folder`]).
///
/// # Errors
/// [`DataError::Malformed`] for a line with another number of tabs or an
/// empty file name.
pub(crate) fn tsv_fields<'a, const N: usize>(
    raw: &'a str,
    path: &Path,
    line: usize,
    form: &str,
) -> Result<[&'a str; N], DataError> {
    let malformed = |why: String| DataError::Malformed {
        path: path.to_path_buf(),
        line,
        why,
    };
    let fields: Vec<&str> = raw.split('\t').collect();
    let Ok(mut fields) = <[&str; N]>::try_from(fields) else {
        let tabs = if N == 2 {
            "exactly one tab".to_string()
        } else {
            format!("exactly {} tabs", N - 1)
        };
        return Err(malformed(format!("want {tabs}: {form}")));
    };
    fields[0] = fields[0].trim();
    if fields[0].is_empty() {
        return Err(malformed("the file name is empty".to_string()));
    }
    // only paths inside the data folder: no `..`, no root
    let inside = Path::new(fields[0])
        .components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    if !inside {
        return Err(malformed(format!(
            "the file name {:?} leaves the data folder (no `..` and no absolute paths)",
            fields[0]
        )));
    }
    Ok(fields)
}

/// Whether a line of a `.tsv` data file is blank: nothing but spaces. A
/// line with a tab is an item even if its fields are empty (and is then an
/// error), so it is never skipped silently, which would move every later
/// line's place in the validation split.
pub(crate) fn is_blank(raw: &str) -> bool {
    !raw.contains('\t') && raw.trim().is_empty()
}

/// The largest `captions.tsv` or `questions.tsv` read: 64 MiB.
pub const MAX_TSV_BYTES: u64 = 64 << 20;

/// Reads a `.tsv` data file: a regular file of at most [`MAX_TSV_BYTES`],
/// UTF-8, without the byte order mark some editors put first.
///
/// # Errors
/// [`DataError::Io`], naming the file.
pub(crate) fn read_tsv(path: &Path) -> Result<String, DataError> {
    let io_error = |source| DataError::Io {
        path: path.to_path_buf(),
        source,
    };
    let bytes = model::read_limited(path, MAX_TSV_BYTES).map_err(io_error)?;
    let text = String::from_utf8(bytes).map_err(|e| {
        io_error(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("not UTF-8 text (byte {})", e.utf8_error().valid_up_to()),
        ))
    })?;
    Ok(match text.strip_prefix('\u{feff}') {
        Some(rest) => rest.to_string(),
        None => text,
    })
}

/// Parses the text of a `captions.tsv`: the items and the number of blank
/// lines skipped. `path` names the file in errors.
///
/// # Errors
/// [`DataError::Malformed`] for a line without exactly one tab or with an
/// empty file name, [`DataError::EmptyCaption`] for an empty caption.
pub fn parse_captions(text: &str, path: &Path) -> Result<(Vec<Item>, usize), DataError> {
    let mut items = Vec::new();
    let mut blank = 0;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        if is_blank(raw) {
            blank += 1;
            continue;
        }
        let [file, caption] = tsv_fields(raw, path, line, "file<TAB>caption")?;
        let caption = caption.trim();
        if caption.is_empty() {
            return Err(DataError::EmptyCaption {
                path: path.to_path_buf(),
                line,
            });
        }
        items.push(Item {
            file: file.to_string(),
            caption: caption.to_string(),
            line,
        });
    }
    Ok((items, blank))
}
// ANCHOR_END: parse_captions

/// Reads and parses `dir/captions.tsv` (without loading the images).
///
/// # Errors
/// [`DataError::Io`] if it cannot be read, [`DataError::TooFew`] if it has
/// no caption line, else as [`parse_captions`].
pub fn read_captions(dir: &Path) -> Result<(Vec<Item>, usize), DataError> {
    let path = dir.join(CAPTIONS_FILE);
    let text = read_tsv(&path)?;
    let (items, blank) = parse_captions(&text, &path)?;
    if items.is_empty() {
        return Err(DataError::TooFew {
            path,
            why: "no caption lines".to_string(),
        });
    }
    Ok((items, blank))
}

/// The longest caption of a file ([`FolderData::longest`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Longest {
    /// Tokens it needs, `<|bos|>` and `<|eos|>` included.
    pub tokens: usize,
    /// Its line (from 1).
    pub line: usize,
}

/// Refuses a folder whose `count` images, each `size × size` in RGB as
/// `f32`, would not fit in the memory available.
///
/// # Errors
/// [`DataError::Memory`], saying how many images fit.
pub fn check_images_fit(count: usize, size: usize) -> Result<(), DataError> {
    crate::memory::check_items(
        count as u64,
        (3 * size * size * 4) as u64,
        0,
        crate::memory::available_bytes(),
        |n| format!("loading {n} images of {size}×{size}"),
        |n| format!("at most about {n} images fit"),
    )
    .map_err(DataError::Memory)
}

/// A data folder, read and checked: every image loaded.
#[derive(Debug, Clone)]
pub struct FolderData {
    /// The folder.
    pub dir: PathBuf,
    /// Every caption line, in file order.
    pub items: Vec<Item>,
    /// `[N, 3, S, S]`: image `i` of `items[i]`, in `[0, 1]`.
    pub images: Array4<f32>,
    /// Blank lines skipped in `captions.tsv`.
    pub blank_lines: usize,
}

impl FolderData {
    /// Reads `dir/captions.tsv` and every image it names, resized to
    /// `size × size`.
    ///
    /// # Errors
    /// Any [`DataError`], naming `captions.tsv` and the line; a file with no
    /// caption line is [`DataError::TooFew`].
    pub fn load(dir: &Path, size: usize) -> Result<Self, DataError> {
        let (items, blank_lines) = read_captions(dir)?;
        let path = dir.join(CAPTIONS_FILE);
        check_images_fit(items.len(), size)?;
        let pre = preprocess(size);
        let mut images = Array4::zeros((items.len(), 3, size, size));
        for (item, mut out) in items.iter().zip(images.axis_iter_mut(Axis(0))) {
            let image = dir.join(&item.file);
            if !image.is_file() {
                return Err(DataError::MissingImage {
                    path,
                    line: item.line,
                    image,
                });
            }
            let tensor = pre.load(&image).map_err(|source| DataError::Image {
                path: path.clone(),
                line: item.line,
                source,
            })?;
            out.assign(&tensor);
        }
        Ok(FolderData {
            dir: dir.to_path_buf(),
            items,
            images,
            blank_lines,
        })
    }

    /// The captions file's path.
    pub fn captions_path(&self) -> PathBuf {
        self.dir.join(CAPTIONS_FILE)
    }

    // ANCHOR: split
    /// Whether item `i` (0-based, in file order) is validation data: every
    /// [`VALIDATION_EVERY`]-th item.
    pub fn is_validation(i: usize) -> bool {
        (i + 1).is_multiple_of(VALIDATION_EVERY)
    }
    // ANCHOR_END: split

    /// Indices of the training items.
    pub fn train_indices(&self) -> Vec<usize> {
        (0..self.items.len())
            .filter(|&i| !Self::is_validation(i))
            .collect()
    }

    /// Indices of the validation items.
    pub fn validation_indices(&self) -> Vec<usize> {
        (0..self.items.len())
            .filter(|&i| Self::is_validation(i))
            .collect()
    }

    /// A tokenizer trained on the training captions of `items` (as many
    /// merges as they support, at most 1024), then `<|bos|>`, `<|eos|>`,
    /// `<|pad|>`.
    ///
    /// # Errors
    /// [`DataError::Tokenizer`].
    pub fn train_tokenizer(items: &[Item]) -> Result<Tokenizer, DataError> {
        let captions: Vec<&str> = items
            .iter()
            .enumerate()
            .filter(|&(i, _)| !Self::is_validation(i))
            .map(|(_, it)| it.caption.as_str())
            .collect();
        let tok = match Tokenizer::train_lines(&captions, 1024) {
            Err(TokenizerError::VocabTooLarge { reached, .. }) => {
                Tokenizer::train_lines(&captions, reached)
            }
            other => other,
        }
        .map_err(DataError::Tokenizer)?;
        tok.with_special_tokens(&[tokenizer::BOS, tokenizer::EOS, tokenizer::PAD])
            .map_err(DataError::Tokenizer)
    }

    /// The caption that needs the most tokens with `<|bos|>` and `<|eos|>`
    /// (the first of them): its line and token count.
    pub fn longest(items: &[Item], tokenizer: &Tokenizer) -> Longest {
        items
            .iter()
            .map(|it| Longest {
                tokens: tokenizer.encode_ordinary(&it.caption).len() + 2,
                line: it.line,
            })
            .reduce(|a, b| if b.tokens > a.tokens { b } else { a })
            .unwrap_or(Longest { tokens: 2, line: 0 })
    }

    /// Checks that every caption fits in `max_len` tokens.
    ///
    /// # Errors
    /// [`DataError::TooLong`] naming the first line that does not.
    pub fn check_lengths(&self, tokenizer: &Tokenizer, max_len: usize) -> Result<(), DataError> {
        for item in &self.items {
            let tokens = tokenizer.encode_ordinary(&item.caption).len() + 2;
            if tokens > max_len {
                return Err(DataError::TooLong {
                    path: self.captions_path(),
                    line: item.line,
                    tokens,
                    max: max_len,
                });
            }
        }
        Ok(())
    }

    /// The batch of training step `step`: `min(batch_size, training items)`
    /// distinct training items drawn by an RNG seeded with `(seed, step)`,
    /// so a step's batch is the same in every run. Word dropout as in
    /// [`crate::ToyData::batch`].
    ///
    /// # Panics
    /// If a caption is longer than `tok.max_len` (see
    /// [`FolderData::check_lengths`]) or there are no training items.
    #[track_caller]
    pub fn batch(&self, seed: u64, step: u64, batch_size: usize, tok: &Tokens) -> Batch {
        let train = self.train_indices();
        assert!(!train.is_empty(), "folder batch: no training items");
        let mut rng = StdRng::seed_from_u64(mix(seed, step));
        let picked: Vec<usize> =
            rand::seq::index::sample(&mut rng, train.len(), batch_size.min(train.len()))
                .into_iter()
                .map(|k| train[k])
                .collect();
        let images = self.images.select(Axis(0), &picked);
        let captions: Vec<String> = picked
            .iter()
            .map(|&i| self.items[i].caption.clone())
            .collect();
        let (tokens, lengths) = tok.encode(&captions);
        Batch {
            images,
            tokens,
            lengths,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_parse_and_every_bad_line_is_named() {
        let p = Path::new("d/captions.tsv");
        let (items, blank) = parse_captions("a.png\ta red circle\n\n b.png \t blue \n", p).unwrap();
        assert_eq!(blank, 1);
        assert_eq!(items.len(), 2);
        assert_eq!(items[1].file, "b.png");
        assert_eq!(items[1].caption, "blue");
        assert_eq!(items[1].line, 3);
        let err = |text: &str| parse_captions(text, p).unwrap_err().to_string();
        assert_eq!(
            err("a.png\tok\nb.png no tab\n"),
            "d/captions.tsv:2: malformed line: want exactly one tab: file<TAB>caption"
        );
        assert!(err("a\tb\tc").contains(":1: malformed"));
        assert!(err("\tcaption").contains("file name is empty"));
        assert_eq!(err("x\nb.png\t  \n").split(':').nth(1), Some("1"));
        assert_eq!(
            err("a.png\tx\nb.png\t  \n"),
            "d/captions.tsv:2: empty caption"
        );
    }

    #[test]
    fn every_tenth_line_is_validation() {
        let val: Vec<usize> = (0..25).filter(|&i| FolderData::is_validation(i)).collect();
        assert_eq!(val, vec![9, 19]);
    }
}
