//! Own questions: a folder of images with a `questions.tsv`, one
//! `file<TAB>question<TAB>answer` a line, and optionally a fourth column
//! naming the question's family (any word: `colour`, `counting`, …), which
//! evaluation then reports apart.
//!
//! ```text
//! my-data/
//! ├── questions.tsv    cat.jpg<TAB>what animal is this?<TAB>cat<TAB>attribute
//! │                    cat.jpg<TAB>how many cats are there?<TAB>1<TAB>counting
//! ├── cat.jpg
//! └── ...
//! ```
//!
//! Several lines may name one image; each image is loaded once. The file is
//! read as strictly as `captions.tsv` ([`super::folder`], whose line
//! splitting and errors it shares): a line with the wrong number of tabs,
//! an empty file name, question or answer, or a family with spaces, is an
//! error naming `questions.tsv` and the line; so is an image that is
//! missing or cannot be decoded. Blank lines are the only lines skipped.
//!
//! Every 10th question line is validation data, as every 10th caption
//! line is ([`super::folder::FolderData::is_validation`]).

use super::folder::{
    DataError, FolderData, check_images_fit, is_blank, preprocess, read_tsv, tsv_fields,
};
use ndarray::{Array4, Axis};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The questions file inside a data folder.
pub const QUESTIONS_FILE: &str = "questions.tsv";

/// One line of `questions.tsv`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuestionItem {
    /// The image file, relative to the data folder.
    pub file: String,
    /// The question, trimmed.
    pub question: String,
    /// The expected answer, trimmed.
    pub answer: String,
    /// The family named in the fourth column, if there is one.
    pub family: Option<String>,
    /// The line number in `questions.tsv` (from 1).
    pub line: usize,
}

// ANCHOR: parse_questions
/// Parses the text of a `questions.tsv`: the items and the number of blank
/// lines skipped. `path` names the file in errors.
///
/// # Errors
/// [`DataError::Malformed`] for a line without two or three tabs, with an
/// empty file name, question or answer, or with a family that is empty or
/// has spaces.
pub fn parse_questions(text: &str, path: &Path) -> Result<(Vec<QuestionItem>, usize), DataError> {
    const FORM: &str = "file<TAB>question<TAB>answer[<TAB>family]";
    let mut items = Vec::new();
    let mut blank = 0;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        if is_blank(raw) {
            blank += 1;
            continue;
        }
        let malformed = |why: &str| DataError::Malformed {
            path: path.to_path_buf(),
            line,
            why: why.to_string(),
        };
        // three fields, or four with the family
        let (file, question, answer, family) = match raw.matches('\t').count() {
            3 => {
                let [file, question, answer, family] = tsv_fields(raw, path, line, FORM)?;
                (file, question, answer, Some(family.trim()))
            }
            _ => {
                let [file, question, answer] = tsv_fields(raw, path, line, FORM)?;
                (file, question, answer, None)
            }
        };
        let (question, answer) = (question.trim(), answer.trim());
        if question.is_empty() {
            return Err(malformed("the question is empty"));
        }
        if answer.is_empty() {
            return Err(malformed("the answer is empty"));
        }
        if let Some(f) = family
            && (f.is_empty() || f.contains(char::is_whitespace))
        {
            return Err(malformed("the family (4th column) must be one word"));
        }
        items.push(QuestionItem {
            file: file.to_string(),
            question: question.to_string(),
            answer: answer.to_string(),
            family: family.map(str::to_string),
            line,
        });
    }
    Ok((items, blank))
}
// ANCHOR_END: parse_questions

/// Reads and parses `dir/questions.tsv` (without loading the images).
///
/// # Errors
/// [`DataError::Io`] if it cannot be read, [`DataError::TooFew`] if it has
/// no question line, else as [`parse_questions`].
pub fn read_questions(dir: &Path) -> Result<(Vec<QuestionItem>, usize), DataError> {
    let path = dir.join(QUESTIONS_FILE);
    let text = read_tsv(&path)?;
    let (items, blank) = parse_questions(&text, &path)?;
    if items.is_empty() {
        return Err(DataError::TooFew {
            path,
            why: "no question lines".to_string(),
        });
    }
    Ok((items, blank))
}

/// A folder of images and questions, read and checked: every image loaded
/// once.
#[derive(Debug, Clone)]
pub struct QuestionData {
    /// The folder.
    pub dir: PathBuf,
    /// Every question line, in file order.
    pub items: Vec<QuestionItem>,
    /// `image_of[i]`: the row of `images` that item `i` asks about.
    pub image_of: Vec<usize>,
    /// `[N_images, 3, S, S]`: each distinct file once, in order of first
    /// mention, in `[0, 1]`.
    pub images: Array4<f32>,
    /// Blank lines skipped in `questions.tsv`.
    pub blank_lines: usize,
}

impl QuestionData {
    /// Reads `dir/questions.tsv` and every image it names, resized to
    /// `size × size`.
    ///
    /// # Errors
    /// Any [`DataError`], naming `questions.tsv` and the first line that
    /// names a missing or unreadable image.
    pub fn load(dir: &Path, size: usize) -> Result<Self, DataError> {
        let (items, blank_lines) = read_questions(dir)?;
        let path = dir.join(QUESTIONS_FILE);
        let mut first: HashMap<&str, usize> = HashMap::new();
        let mut files: Vec<&QuestionItem> = Vec::new();
        let image_of: Vec<usize> = items
            .iter()
            .map(|item| {
                *first.entry(item.file.as_str()).or_insert_with(|| {
                    files.push(item);
                    files.len() - 1
                })
            })
            .collect();
        check_images_fit(files.len(), size)?;
        let pre = preprocess(size);
        let mut images = Array4::zeros((files.len(), 3, size, size));
        for (item, mut out) in files.iter().zip(images.axis_iter_mut(Axis(0))) {
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
        Ok(QuestionData {
            dir: dir.to_path_buf(),
            items,
            image_of,
            images,
            blank_lines,
        })
    }

    /// Indices of the training items (every item but each 10th).
    pub fn train_indices(&self) -> Vec<usize> {
        (0..self.items.len())
            .filter(|&i| !FolderData::is_validation(i))
            .collect()
    }

    /// Indices of the validation items (each 10th).
    pub fn validation_indices(&self) -> Vec<usize> {
        (0..self.items.len())
            .filter(|&i| FolderData::is_validation(i))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_parse_with_and_without_a_family() {
        let p = Path::new("d/questions.tsv");
        let text = "a.png\twhat colour is it?\tred\n\n b.png \t how many? \t 2 \tcounting\n";
        let (items, blank) = parse_questions(text, p).unwrap();
        assert_eq!(blank, 1);
        assert_eq!(
            items[1],
            QuestionItem {
                file: "b.png".into(),
                question: "how many?".into(),
                answer: "2".into(),
                family: Some("counting".into()),
                line: 3,
            }
        );
        assert_eq!(items[0].family, None);
    }

    #[test]
    fn every_bad_line_is_named_like_captions_tsv() {
        let p = Path::new("d/questions.tsv");
        let err = |text: &str| parse_questions(text, p).unwrap_err().to_string();
        assert_eq!(
            err("a.png\tq?\ta\nb.png\tonly a question\n"),
            "d/questions.tsv:2: malformed line: want exactly 2 tabs: \
             file<TAB>question<TAB>answer[<TAB>family]"
        );
        assert!(err("a\tq\ta\tf\textra").contains(":1: malformed line: want exactly 2 tabs"));
        assert!(err("no tabs at all").contains(":1: malformed"));
        assert!(err("\tq\ta").contains("file name is empty"));
        assert_eq!(
            err("a.png\tq\ta\nb.png\t \ta\n"),
            "d/questions.tsv:2: malformed line: the question is empty"
        );
        assert!(err("a.png\tq\t  ").contains("the answer is empty"));
        assert!(err("a.png\tq\ta\ttwo words").contains("must be one word"));
        assert!(err("a.png\tq\ta\t ").contains("must be one word"));
    }

    #[test]
    fn each_image_is_loaded_once_and_missing_ones_are_named() {
        let dir = std::env::temp_dir().join(format!("qa-folder-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let image = ndarray::Array3::from_elem((3, 8, 8), 0.5f32);
        vision::save_png(&image, dir.join("x.png")).unwrap();
        let tsv = "x.png\tq1\ta\nx.png\tq2\tb\tcolour\n";
        std::fs::write(dir.join(QUESTIONS_FILE), tsv).unwrap();
        let data = QuestionData::load(&dir, 16).unwrap();
        assert_eq!(data.images.dim(), (1, 3, 16, 16));
        assert_eq!(data.image_of, vec![0, 0]);
        std::fs::write(dir.join(QUESTIONS_FILE), format!("{tsv}\ny.png\tq\ta\n")).unwrap();
        let err = QuestionData::load(&dir, 16).unwrap_err().to_string();
        assert!(
            err.contains("questions.tsv:4: image") && err.contains("y.png"),
            "{err}"
        );
        std::fs::write(dir.join(QUESTIONS_FILE), "\n\n").unwrap();
        let err = QuestionData::load(&dir, 16).unwrap_err().to_string();
        assert!(err.contains("no question lines"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
