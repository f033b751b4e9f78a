//! Writes what `tools/tokenizer_compare.py measure` needs to run tiktoken
//! and Hugging Face `tokenizers` on exactly the text our benches use.
//!
//! ```text
//! cargo run --release -p tokenizer --example side_by_side -- \
//!     --out DIR [--vocab 4096] [--english ../shared/data/corpus-10mb.txt]
//! ```
//!
//! The corpora are those of `cargo bench -p tokenizer`: the English file
//! (or, without `--english`, the same 2 MB of generated English the benches
//! fall back to), 3 MB of generated multilingual text, 34 words of 10,000
//! letters and one word of 200,000 letters. For each, under `DIR`:
//! - `<name>.txt`: the text (generated corpora only; English is read in place);
//! - `<name>.pieces`: the byte lengths of our pieces, one per line;
//! - `<name>.tiktoken`: our vocabulary trained on the text, as a rank file;
//! - `<name>.ids`: our encoding of the text, little-endian `u32`s;
//!
//! and `corpora.json`, which lists them with the criterion bench id of each.
//! No timings here: ours come from criterion, theirs from the script.

use std::error::Error;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use tokenizer::Tokenizer;
use tokenizer::testing::{english, long_words, multilingual};

fn size_label(bytes: usize) -> String {
    if bytes >= 1_000_000 {
        format!("{}MB", (bytes as f64 / 1e6).round())
    } else {
        format!("{}KB", (bytes as f64 / 1e3).round())
    }
}

fn main() -> Result<(), Box<dyn Error>> {
    let mut out: Option<PathBuf> = None;
    let mut english_path: Option<PathBuf> = None;
    let mut vocab = 4096;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--out" => out = Some(value()?.into()),
            "--english" => english_path = Some(value()?.into()),
            "--vocab" => vocab = value()?.parse()?,
            _ => return Err(format!("unknown argument {arg:?}; see the example's doc").into()),
        }
    }
    let out = out.ok_or("--out DIR is required")?;
    fs::create_dir_all(&out)?;

    // (name, text, the file it is read from if it is not generated here)
    let mut corpora: Vec<(String, String, Option<PathBuf>)> = Vec::new();
    let english = match &english_path {
        Some(path) => fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?,
        None => english(2_000_000),
    };
    let name = format!("english_{}", size_label(english.len()));
    corpora.push((name, english, english_path));
    let m = multilingual(3_000_000);
    corpora.push((format!("multilingual_{}", size_label(m.len())), m, None));
    corpora.push(("long_words_34x10000".into(), long_words(34, 10_000), None));
    corpora.push(("one_word_200000".into(), long_words(1, 200_000), None));

    let mut json = String::from("[\n");
    for (k, (name, text, path)) in corpora.iter().enumerate() {
        eprintln!("{name}: {} bytes", text.len());
        let file = match path {
            Some(p) => p.canonicalize()?,
            None => {
                let p = out.join(format!("{name}.txt"));
                write(&p, text.as_bytes())?;
                p
            }
        };
        let pieces: String = Tokenizer::bytes_only(tokenizer::Split::Gpt4)
            .split()
            .pieces(text)
            .fold(String::new(), |mut s, p| {
                writeln!(s, "{}", p.len()).unwrap(); // writing to a String cannot fail
                s
            });
        write(&out.join(format!("{name}.pieces")), pieces.as_bytes())?;
        let tok = Tokenizer::train(text, vocab)?;
        tok.save_tiktoken(out.join(format!("{name}.tiktoken")))?;
        let ids: Vec<u8> = tok
            .encode_ordinary(text)
            .iter()
            .flat_map(|id| id.to_le_bytes())
            .collect();
        write(&out.join(format!("{name}.ids")), &ids)?;
        writeln!(
            json,
            "  {{\"name\": \"{name}\", \"file\": {:?}, \"pieces\": \"{name}.pieces\", \"ranks\": \"{name}.tiktoken\", \
             \"ids\": \"{name}.ids\", \"bench_id\": \"{name}_V{vocab}\"}}{}",
            file.display().to_string(),
            if k + 1 < corpora.len() { "," } else { "" }
        )?;
    }
    json.push_str("]\n");
    write(&out.join("corpora.json"), json.as_bytes())?;
    Ok(())
}

/// Writes beside the target, then renames: a reader never sees half a file.
fn write(path: &Path, bytes: &[u8]) -> Result<(), Box<dyn Error>> {
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, bytes).map_err(|e| format!("{}: {e}", tmp.display()))?;
    fs::rename(&tmp, path)?;
    Ok(())
}
