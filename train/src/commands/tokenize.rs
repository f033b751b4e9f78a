//! `train tokenize TEXT`: the pieces, IDs and bytes of a text's tokens.

use super::{CommandError, load_run};
use std::path::PathBuf;
use tokenizer::{AllowedSpecial, Tokenizer};

/// Arguments of `train tokenize`.
#[derive(clap::Args, Debug, Clone)]
pub struct TokenizeArgs {
    /// The text.
    pub text: String,
    /// The run whose tokenizer to use.
    #[arg(long, default_value = "runs/default")]
    pub run: PathBuf,
    /// A tokenizer file instead of the run's (tokenizer.txt format).
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
}

/// One token of a text.
#[derive(Debug, Clone, PartialEq)]
pub struct Token {
    pub id: u32,
    /// The bytes the token stands for.
    pub bytes: Vec<u8>,
}

impl TokenizeArgs {
    /// Runs the command.
    ///
    /// # Errors
    /// An unreadable tokenizer file or run folder.
    pub fn execute(&self) -> Result<String, CommandError> {
        let tokenizer = match &self.tokenizer {
            Some(path) => {
                // a regular file of bounded size, as a checkpoint's tokenizer.txt
                let bytes = model::read_limited(path, model::checkpoint::MAX_TEXT_FILE_BYTES)
                    .map_err(|source| CommandError::Io {
                        path: path.clone(),
                        source,
                    })?;
                let text = String::from_utf8(bytes).map_err(|_| CommandError::Io {
                    path: path.clone(),
                    source: std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8 text"),
                })?;
                // from the text, not `Tokenizer::load`, which would name the
                // file a second time: the path is added here, once
                Tokenizer::from_text(&text).map_err(|source| CommandError::Tokenizer {
                    path: path.clone(),
                    source,
                })?
            }
            None => load_run(&self.run)?.tokenizer,
        };
        Ok(render(&tokenize(&tokenizer, &self.text)))
    }
}

// ANCHOR: tokenize
/// The tokens of `text`; special tokens written in the text (`<|eos|>`)
/// become their IDs.
pub fn tokenize(tokenizer: &Tokenizer, text: &str) -> Vec<Token> {
    let ids = tokenizer
        .encode(text, AllowedSpecial::All)
        .expect("every special token is allowed");
    ids.into_iter()
        .map(|id| Token {
            id,
            bytes: tokenizer
                .id_to_bytes(id)
                .expect("encode returns IDs of the vocabulary")
                .to_vec(),
        })
        .collect()
}
// ANCHOR_END: tokenize

/// A table: the piece (as a quoted string; bytes that are not whole UTF-8
/// characters as `\xNN`), the ID and the bytes in hex.
pub fn render(tokens: &[Token]) -> String {
    let mut out = format!(
        "{} tokens\n   #  piece             id  bytes\n",
        tokens.len()
    );
    for (i, t) in tokens.iter().enumerate() {
        let piece = match std::str::from_utf8(&t.bytes) {
            Ok(s) => format!("{s:?}"),
            Err(_) => {
                let esc: String = t.bytes.iter().map(|b| format!("\\x{b:02x}")).collect();
                format!("\"{esc}\"")
            }
        };
        let hex: Vec<String> = t.bytes.iter().map(|b| format!("{b:02x}")).collect();
        out += &format!("{:>4}  {piece:<14} {:>5}  {}\n", i, t.id, hex.join(" "));
    }
    out
}
