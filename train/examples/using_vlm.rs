//! The multimodal part of the chapter "Using the trained model":
//! `cargo run --release -p train --example using_vlm -- runs/vlm` (run by
//! `tools/regenerate-figures.sh` after `train vlm`, not by CI, which does
//! not train).
//!
//! It exports a few generated scenes with their questions
//! (`dataset export-questions`), asks the default multimodal run about
//! them with `ask`, and holds a scripted `chat`, exactly as the `train`
//! program runs those commands. It writes the command lines with their
//! output as Markdown, and the pictures, under
//! `book/src/generated/using/vlm/`. It works in a scratch folder with
//! relative paths, so the output is the same on every machine.

use std::path::Path;
use train::commands::ask::{AskArgs, ChatArgs, TalkArgs};
use train::commands::export::ExportQuestionsArgs;
use train::commands::{CommandError, DatasetCommand, UseCommand};
use train::data::qa_folder::QuestionData;

/// Scenes exported; the first `SHOWN` are asked about.
const EXPORTED: usize = 8;
const SHOWN: usize = 3;

fn console(line: &str, result: Result<String, CommandError>) -> String {
    let out = match result {
        Ok(text) => text,
        Err(e) => format!("error: {e}\n"),
    };
    format!("```text\n$ {line}\n{out}```\n")
}

fn talk(run: &Path) -> TalkArgs {
    TalkArgs {
        run: run.to_path_buf(),
        beam: None,
        temperature: None,
        top_k: None,
        seed: 0,
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let run = std::env::args()
        .nth(1)
        .ok_or("usage: using_vlm RUN (a finished train vlm run, e.g. runs/vlm)")?;
    let run = std::path::absolute(run)?;
    let book = Path::new(env!("CARGO_MANIFEST_DIR")).join("../book/src/generated/using/vlm");
    std::fs::create_dir_all(&book)?;
    let scratch = std::env::temp_dir().join(format!("train-using-vlm-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch)?;
    std::env::set_current_dir(&scratch)?;
    let result = write_all(&book, &run);
    std::env::set_current_dir(std::env::temp_dir())?;
    std::fs::remove_dir_all(&scratch)?;
    result?;
    println!("wrote {}", book.display());
    Ok(())
}

fn write_all(book: &Path, run: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let export = ExportQuestionsArgs {
        out: "scenes".into(),
        count: EXPORTED,
        seed: 5,
        side: train::data::scenes::DEFAULT_SIDE,
        max_objects: train::data::scenes::MAX_OBJECTS,
        shapes: train::data::World::FULL.shapes,
        colours: train::data::World::FULL.colours,
    };
    let mut export_md = console(
        &format!("train dataset export-questions --out scenes --count {EXPORTED} --seed 5"),
        UseCommand::Dataset(DatasetCommand::ExportQuestions(export)).execute(),
    );
    let questions = QuestionData::load(Path::new("scenes"), train::data::scenes::DEFAULT_SIDE)?;
    export_md.push_str(&format!(
        "\n```text\n$ head -n {SHOWN} scenes/questions.tsv\n{}```\n",
        std::fs::read_to_string("scenes/questions.tsv")?
            .lines()
            .take(SHOWN)
            .map(|l| format!("{l}\n"))
            .collect::<String>()
    ));
    std::fs::write(book.join("export.md"), export_md)?;

    // ask: each shown scene's own question from the file, then two more
    let mut ask_md = String::new();
    for item in questions.items.iter().take(SHOWN) {
        let file = format!("scenes/{}", item.file);
        std::fs::copy(&file, book.join(&item.file))?;
        ask_md.push_str(&format!(
            "<img src=\"generated/using/vlm/{}\" alt=\"{}\" width=\"144\">\n\n",
            item.file, item.file
        ));
        let mut asked = vec![item.question.clone()];
        for extra in [
            "how many shapes are in the picture?",
            "what is in the picture?",
        ] {
            if !asked.iter().any(|q| q == extra) {
                asked.push(extra.to_string());
            }
        }
        for question in &asked {
            let args = AskArgs {
                image: file.clone().into(),
                question: question.clone(),
                talk: talk(run),
            };
            ask_md.push_str(&console(
                &format!("train ask {file} \"{question}\""),
                UseCommand::Ask(args).execute(),
            ));
        }
        ask_md.push_str(&format!(
            "\n`questions.tsv` says the answer to \"{}\" is **{}**.\n\n",
            item.question, item.answer
        ));
    }
    std::fs::write(book.join("ask.md"), ask_md)?;

    // chat, scripted through standard input as a shell pipe would
    let first = &questions.items[0];
    let other = &questions.items[1];
    let script = format!(
        "how many shapes are in the picture?\nwhat colour is the {shape}?\nand where is it?\n\
         /image scenes/{other}\nwhat is in the picture?\n/reset\nis there a red circle?\n/quit\n",
        shape = shape_in(&first.file).unwrap_or("circle"),
        other = other.file,
    );
    let chat = ChatArgs {
        image: format!("scenes/{}", first.file).into(),
        talk: talk(run),
    };
    let mut out = Vec::new();
    let result = chat
        .converse(script.as_bytes(), &mut out, false)
        .map(|()| String::from_utf8_lossy(&out).into_owned());
    let shown_script: String = script.lines().map(|l| format!("{l}\n")).collect();
    let chat_md = format!(
        "```text\n$ cat questions.txt\n{shown_script}```\n\n{}",
        console(
            &format!("train chat scenes/{} < questions.txt", first.file),
            result
        )
    );
    std::fs::write(book.join("chat.md"), chat_md)?;
    Ok(())
}

/// A shape word of `file`'s caption in `scenes/captions.tsv`, for a
/// question about an object that is there.
fn shape_in(file: &str) -> Option<&'static str> {
    let captions = std::fs::read_to_string("scenes/captions.tsv").ok()?;
    let caption = captions
        .lines()
        .find_map(|line| line.strip_prefix(file)?.strip_prefix('\t'))?
        .to_string();
    train::data::Shape::ALL
        .iter()
        .map(|s| s.word())
        .find(|w| caption.split([' ', ',']).any(|word| word == *w))
}
