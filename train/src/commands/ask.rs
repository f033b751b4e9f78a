//! `train ask IMAGE QUESTION` and `train chat IMAGE`: talking to the
//! multimodal LLM about a picture.
//!
//! `chat` keeps the conversation, and the model's KV cache, between turns
//! ([`model::Chat`]). On a terminal it prompts; otherwise it reads one
//! question a line from standard input and writes one answer a line, so it
//! can be scripted. Lines starting with `/` are commands: `/image FILE`
//! switches the picture (and starts over), `/reset` starts over, `/quit`
//! ends.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

use model::{Chat, Strategy, Vlm};
use tokenizer::Tokenizer;

use super::caption::strategy;
use super::{CommandError, bad_arg, note, shown};
use crate::data::folder::preprocess;
use crate::vlm_run::{VLM_RUN_FILE, final_checkpoint};

/// The most tokens an answer may have: a six-object caption with room.
pub const MAX_ANSWER_TOKENS: usize = 96;
/// The longest question line `chat` reads (bytes): far above any real one.
pub const MAX_LINE_BYTES: usize = 64 << 10;

/// Flags shared by `ask` and `chat`.
#[derive(clap::Args, Debug, Clone)]
pub struct TalkArgs {
    /// The multimodal run folder (`train vlm`), or a checkpoint folder.
    #[arg(long, default_value = "runs/vlm")]
    pub run: PathBuf,
    /// Beam search with this many beams (instead of greedy decoding).
    #[arg(long)]
    pub beam: Option<usize>,
    /// Sample with this temperature (instead of greedy decoding).
    #[arg(long)]
    pub temperature: Option<f32>,
    /// Sample only among the K most likely tokens (implies sampling).
    #[arg(long)]
    pub top_k: Option<usize>,
    /// Seed of the sampler.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// Arguments of `train ask`.
#[derive(clap::Args, Debug, Clone)]
pub struct AskArgs {
    /// The picture (PNG or JPEG, any size).
    pub image: PathBuf,
    /// The question, e.g. "what colour is the circle?".
    pub question: String,
    #[command(flatten)]
    pub talk: TalkArgs,
}

/// Arguments of `train chat`.
#[derive(clap::Args, Debug, Clone)]
pub struct ChatArgs {
    /// The picture to talk about (`/image FILE` switches it).
    pub image: PathBuf,
    #[command(flatten)]
    pub talk: TalkArgs,
}

/// A trained multimodal model and its tokenizer.
#[derive(Debug)]
pub struct LoadedVlm {
    pub vlm: Vlm,
    pub tokenizer: Tokenizer,
}

/// Reads the final model of a multimodal run folder (stage 4's checkpoint,
/// or the complete copy a crash left), or a checkpoint folder itself.
///
/// # Errors
/// [`CommandError::NotARun`] if it is neither, [`CommandError::Checkpoint`]
/// if the checkpoint is damaged or is not a multimodal model's.
pub fn load_vlm(run: &Path) -> Result<LoadedVlm, CommandError> {
    if !run.is_dir() {
        return Err(CommandError::NotARun {
            path: run.to_path_buf(),
            why: "no such folder".to_string(),
        });
    }
    let dir = final_checkpoint(run);
    if !dir.join(model::CONFIG_FILE).is_file() {
        let why = if run.join(VLM_RUN_FILE).is_file() {
            "its last stage has no checkpoint yet (train it with `train vlm --resume`)"
        } else {
            "neither a multimodal run (train one with `train vlm`) nor a checkpoint folder"
        };
        return Err(CommandError::NotARun {
            path: run.to_path_buf(),
            why: why.to_string(),
        });
    }
    let c = model::load_vlm_checkpoint(&dir).map_err(CommandError::Checkpoint)?;
    Ok(LoadedVlm {
        vlm: c.vlm,
        tokenizer: c.tokenizer,
    })
}

impl TalkArgs {
    fn strategy(&self) -> Result<Strategy, CommandError> {
        strategy(self.beam, self.temperature, self.top_k, self.seed)
    }
}

/// One picture, as the model reads it: `[1, 3, S, S]`.
fn load_image(vlm: &Vlm, path: &Path) -> Result<ndarray::Array4<f32>, CommandError> {
    let size = vlm.config().vision.image_size();
    Ok(preprocess(size).load_batch(&[path])?)
}

impl AskArgs {
    /// Runs the command: the answer, on one line.
    ///
    /// # Errors
    /// A bad flag, a folder that is not a multimodal run, an unreadable
    /// image, a question that holds a role token.
    pub fn execute(&self) -> Result<String, CommandError> {
        let strategy = self.talk.strategy()?;
        let loaded = load_vlm(&self.talk.run)?;
        let image = load_image(&loaded.vlm, &self.image)?;
        let mut chat = Chat::new(&loaded.vlm, &loaded.tokenizer, &image, self.talk.seed)
            .map_err(|e| bad_arg("run", e.to_string()))?
            .with_max_answer(MAX_ANSWER_TOKENS);
        let answer = chat
            .ask(&self.question, &strategy)
            .map_err(|e| bad_arg("question", e.to_string()))?;
        Ok(format!("{}\n", shown_answer(&answer)))
    }
}

fn shown_answer(answer: &model::Answer) -> String {
    let text = answer.text.trim();
    let text = if text.is_empty() { "(no answer)" } else { text };
    if answer.finished {
        text.to_string()
    } else {
        format!("{text} (cut at the length limit)")
    }
}

impl ChatArgs {
    /// Runs the conversation on standard input and output until `/quit` or
    /// the end of the input. Answers go to standard output, one a line;
    /// prompts and notes to standard error.
    ///
    /// # Errors
    /// A bad flag, a folder that is not a multimodal run, an unreadable
    /// first image, or standard input that cannot be read. A question the
    /// model cannot take, or an unreadable `/image`, is reported and the
    /// conversation goes on.
    pub fn execute(&self) -> Result<String, CommandError> {
        let stdin = std::io::stdin();
        let interactive = stdin.is_terminal();
        let mut out = std::io::stdout().lock();
        self.converse(stdin.lock(), &mut out, interactive)?;
        Ok(String::new())
    }

    /// The conversation loop, over any input and output (tested with both
    /// in memory).
    ///
    /// # Errors
    /// As [`ChatArgs::execute`]; also a failed write of an answer (a closed
    /// pipe ends the conversation quietly).
    pub fn converse(
        &self,
        input: impl BufRead,
        out: &mut impl Write,
        interactive: bool,
    ) -> Result<(), CommandError> {
        let strategy = self.talk.strategy()?;
        let loaded = load_vlm(&self.talk.run)?;
        let image = load_image(&loaded.vlm, &self.image)?;
        let mut chat = Chat::new(&loaded.vlm, &loaded.tokenizer, &image, self.talk.seed)
            .map_err(|e| bad_arg("run", e.to_string()))?
            .with_max_answer(MAX_ANSWER_TOKENS);
        if interactive {
            note(&format!(
                "talking about {} (/image FILE, /reset, /quit)",
                shown(&self.image)
            ));
        }
        let mut lines = LimitedLines::new(input);
        loop {
            if interactive {
                eprint!("you> ");
            }
            let line = match lines.next_line() {
                Ok(Some(line)) => line,
                Ok(None) => break,
                Err(e) => {
                    return Err(CommandError::Io {
                        path: PathBuf::from("<standard input>"),
                        source: e,
                    });
                }
            };
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let reply = match line.split_once(' ').unwrap_or((line, "")) {
                ("/quit", _) | ("/exit", _) => break,
                ("/reset", _) => {
                    chat.reset();
                    note("(the conversation starts over)");
                    continue;
                }
                ("/image", file) if !file.trim().is_empty() => {
                    match load_image(&loaded.vlm, Path::new(file.trim())) {
                        Ok(image) => {
                            chat.set_image(&image);
                            note(&format!("(now talking about {})", file.trim()));
                        }
                        Err(e) => note(&format!("error: {e}")),
                    }
                    continue;
                }
                (command, _) if command.starts_with('/') => {
                    note(&format!(
                        "unknown command {command}: /image FILE, /reset or /quit"
                    ));
                    continue;
                }
                _ => match chat.ask(line, &strategy) {
                    Ok(answer) => shown_answer(&answer),
                    Err(e) => {
                        note(&format!("error: {e}"));
                        continue;
                    }
                },
            };
            let written = if interactive {
                writeln!(out, "model> {reply}")
            } else {
                writeln!(out, "{reply}")
            };
            match written.and_then(|()| out.flush()) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => break,
                Err(e) => {
                    return Err(CommandError::Io {
                        path: PathBuf::from("<standard output>"),
                        source: e,
                    });
                }
            }
        }
        Ok(())
    }
}

/// Lines of a reader, none longer than [`MAX_LINE_BYTES`] (a longer one is
/// cut, and the rest of it skipped): a stream without line breaks cannot
/// grow a line without bound.
struct LimitedLines<R> {
    input: R,
}

impl<R: BufRead> LimitedLines<R> {
    fn new(input: R) -> Self {
        LimitedLines { input }
    }

    fn next_line(&mut self) -> std::io::Result<Option<String>> {
        let mut bytes = Vec::new();
        let mut any = false;
        loop {
            let buf = self.input.fill_buf()?;
            if buf.is_empty() {
                return Ok(any.then(|| String::from_utf8_lossy(&bytes).into_owned()));
            }
            any = true;
            let (take, done) = match buf.iter().position(|&b| b == b'\n') {
                Some(i) => (i + 1, true),
                None => (buf.len(), false),
            };
            let room = MAX_LINE_BYTES.saturating_sub(bytes.len());
            bytes.extend_from_slice(&buf[..take.min(room)]);
            self.input.consume(take);
            if done {
                return Ok(Some(String::from_utf8_lossy(&bytes).into_owned()));
            }
        }
    }
}
