//! One error type for everything that can go wrong with user input: files,
//! corpora, vocabulary sizes, token IDs and special tokens.
//!
//! Written by hand (no `thiserror`): a `Display` with lowercase messages, an
//! `Error` impl whose `source()` exposes the underlying I/O error, and a
//! `From<io::Error>` so `?` works on file operations.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// Every recoverable failure of the tokenizer. Bugs in the crate itself panic;
/// bad input (a corrupt file, an unknown ID, an impossible vocabulary size)
/// comes back as one of these.
#[derive(Debug)]
pub enum TokenizerError {
    /// Reading or writing a file failed.
    Io(io::Error),
    /// A file or corpus is not valid UTF-8.
    NotUtf8,
    /// The requested vocabulary is smaller than the 256 byte tokens.
    VocabTooSmall { requested: usize },
    /// The corpus runs out of pairs before the vocabulary is full: every
    /// pre-token piece is already a single token. `reached` is the largest
    /// vocabulary this corpus supports.
    VocabTooLarge { requested: usize, reached: usize },
    /// The corpus has no text to learn from.
    EmptyCorpus,
    /// The distinct pieces of a corpus hold more bytes than training can
    /// index (4 GiB).
    CorpusTooLarge { bytes: usize },
    /// An ID passed to a decoder is not in the vocabulary.
    UnknownId { id: u32, vocab_size: usize },
    /// `encode` met a special token the caller did not allow.
    DisallowedSpecial { token: String, offset: usize },
    /// A special token cannot be registered (empty, whitespace, duplicate).
    InvalidSpecial { token: String, reason: &'static str },
    /// A merge refers to a token that does not exist yet, or repeats a pair.
    InvalidMerge {
        index: usize,
        pair: (u32, u32),
        reason: String,
    },
    /// A vocabulary file is malformed; `line` counts from 1.
    Parse { line: usize, message: String },
    /// A file is larger than a tokenizer file may be.
    FileTooLarge { limit: u64 },
    /// Something went wrong with a file: which file, and what (an `Io`,
    /// `Parse`, `FileTooLarge` or `NotUtf8` error).
    File {
        path: PathBuf,
        error: Box<TokenizerError>,
    },
}

impl TokenizerError {
    /// This error, said of the file at `path`.
    pub fn in_file(self, path: &Path) -> Self {
        TokenizerError::File {
            path: path.to_owned(),
            error: Box::new(self),
        }
    }
}

impl fmt::Display for TokenizerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io(e) => write!(f, "i/o error: {e}"),
            Self::NotUtf8 => write!(f, "text is not valid utf-8"),
            Self::VocabTooSmall { requested } => {
                write!(f, "vocab size {requested} is below the 256 byte tokens")
            }
            Self::VocabTooLarge { requested, reached } => write!(
                f,
                "vocab size {requested} is more than the corpus supports: no pair is left after {reached} tokens"
            ),
            Self::EmptyCorpus => write!(f, "the corpus is empty"),
            Self::CorpusTooLarge { bytes } => write!(
                f,
                "the corpus's distinct pieces hold {bytes} bytes, more than the 4 GiB training can index"
            ),
            Self::UnknownId { id, vocab_size } => {
                write!(
                    f,
                    "token id {id} is not in the vocabulary of {vocab_size} tokens"
                )
            }
            Self::DisallowedSpecial { token, offset } => write!(
                f,
                "special token {token:?} at byte {offset} is not allowed; allow it or use encode_ordinary"
            ),
            Self::InvalidSpecial { token, reason } => {
                write!(f, "invalid special token {token:?}: {reason}")
            }
            Self::InvalidMerge {
                index,
                pair,
                reason,
            } => write!(f, "merge {index} ({} {}): {reason}", pair.0, pair.1),
            Self::Parse { line, message } => write!(f, "line {line}: {message}"),
            Self::FileTooLarge { limit } => write!(
                f,
                "the file is larger than {} MiB, the limit for a tokenizer file",
                limit >> 20
            ),
            Self::File { path, error } => write!(f, "{}: {error}", path.display()),
        }
    }
}

impl std::error::Error for TokenizerError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io(e) => Some(e),
            Self::File { error, .. } => Some(error.as_ref()),
            _ => None,
        }
    }
}

impl From<io::Error> for TokenizerError {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_lowercase_and_name_the_problem() {
        let e = TokenizerError::Parse {
            line: 7,
            message: "expected two token ids".into(),
        };
        assert_eq!(e.to_string(), "line 7: expected two token ids");
        let e = TokenizerError::UnknownId {
            id: 9000,
            vocab_size: 300,
        };
        assert_eq!(
            e.to_string(),
            "token id 9000 is not in the vocabulary of 300 tokens"
        );
        let e = TokenizerError::VocabTooSmall { requested: 10 };
        assert!(e.to_string().starts_with("vocab size 10"));
    }

    #[test]
    fn io_errors_keep_their_source() {
        use std::error::Error;
        let e = TokenizerError::from(io::Error::new(io::ErrorKind::NotFound, "gone"));
        assert!(e.source().is_some());
        assert!(e.to_string().contains("gone"));
    }

    #[test]
    fn file_errors_name_the_file_then_the_line() {
        let e = TokenizerError::Parse {
            line: 4,
            message: "rank 300 is missing".into(),
        }
        .in_file(Path::new("vocab.tiktoken"));
        assert_eq!(e.to_string(), "vocab.tiktoken: line 4: rank 300 is missing");
        use std::error::Error;
        assert!(e.source().unwrap().to_string().starts_with("line 4"));
    }

    #[test]
    fn is_send_and_sync() {
        fn check<T: Send + Sync + 'static>() {}
        check::<TokenizerError>();
    }
}
