//! Writes the tables and the figure of the chapter "Tokenizer: from text to IDs".
//!
//! ```text
//! cargo run --release -p tokenizer --example chapter
//! ```
//!
//! The corpus is `../shared/data/corpus-1mb.txt` beside the workspace, or the
//! file named by `TOKENIZER_BOOK_CORPUS`. Its first 80 % of lines train, the
//! rest measure. Everything is deterministic (no timings). Writes, under
//! `book/src/generated/tokenizer/`:
//! - `worked_example.md`: the three merges of `aaabdaaabac`, step by step;
//! - `split_example.md`: a sentence cut by the GPT-4 pre-tokeniser;
//! - `split_hard.md`: words of several scripts, cut as GPT-4 cuts them;
//! - `split_agreement.md`: our pieces against the cl100k regex's on the
//!   multilingual sample, section by section (the regex's pieces come from
//!   the fixture `tools/tokenizer_compare.py fixture` writes);
//! - `first_merges.md` and `later_merges.md`: merges learned on the corpus;
//! - `same_merges.md`: the reference and the fast trainer, compared;
//! - `bytes_per_token.md` and `bytes_per_token.svg`: compression on held-out
//!   text against vocabulary size;
//! - `special_tokens.md`: a caption with `<|bos|>`, `<|image|>` and `<|eos|>`.

use std::error::Error;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use tokenizer::testing::MULTILINGUAL;
use tokenizer::{
    AllowedSpecial, BOS, Bpe, EOS, IMAGE, PAD, Split, Tokenizer, UNICODE_VERSION, WordCounts,
    merge, render_token, split, train_fast, train_reference,
};

const VOCAB_SIZES: [usize; 6] = [256, 512, 1024, 2048, 4096, 8192];

fn main() -> Result<(), Box<dyn Error>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap(); // the workspace
    let out_dir = root.join("book/src/generated/tokenizer");
    fs::create_dir_all(&out_dir)?;

    let corpus_path = std::env::var_os("TOKENIZER_BOOK_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("../shared/data/corpus-1mb.txt"));
    let corpus = fs::read_to_string(&corpus_path).map_err(|e| {
        format!(
            "cannot read the corpus {}: {e} (set TOKENIZER_BOOK_CORPUS)",
            corpus_path.display()
        )
    })?;
    // the first 80 % of the bytes train, whole lines
    let lines: Vec<&str> = corpus.lines().collect();
    let mut cut = 0;
    let mut bytes = 0;
    while cut < lines.len() && bytes < corpus.len() * 8 / 10 {
        bytes += lines[cut].len() + 1;
        cut += 1;
    }
    let (train_lines, test_lines) = lines.split_at(cut);
    let test_text = test_lines.join("\n");

    write(&out_dir.join("worked_example.md"), &worked_example()?)?;
    write(&out_dir.join("split_example.md"), &split_example())?;
    write(&out_dir.join("split_hard.md"), &split_hard())?;
    write(&out_dir.join("split_agreement.md"), &split_agreement())?;

    // one training run to the largest size: smaller vocabularies are prefixes
    let words = WordCounts::from_texts(train_lines, Split::Gpt4);
    let largest = *VOCAB_SIZES.last().unwrap();
    let merges = train_fast(&words, largest)?;
    let pairs: Vec<(u32, u32)> = merges.iter().map(|m| m.pair).collect();
    let bpe = Bpe::from_merges(&pairs)?;
    let show = |id: u32| code(&render_token(bpe.token_bytes(id).unwrap()));
    let merge_table = |range: std::ops::Range<usize>| {
        let mut md = String::from(
            "| id | left | right | new token | count |\n| ---: | --- | --- | --- | ---: |\n",
        );
        for i in range {
            let (l, r) = merges[i].pair;
            let id = (256 + i) as u32;
            writeln!(
                md,
                "| {id} | {} | {} | {} | {} |",
                show(l),
                show(r),
                show(id),
                merges[i].count
            )
            .unwrap();
        }
        md
    };
    write(&out_dir.join("first_merges.md"), &merge_table(0..20))?;
    write(
        &out_dir.join("later_merges.md"),
        &merge_table(4096 - 256 - 10..4096 - 256),
    )?;

    write(&out_dir.join("same_merges.md"), &same_merges(train_lines)?)?;

    // compression on held-out text against vocabulary size
    let mut md =
        String::from("| vocabulary size | tokens | bytes per token |\n| ---: | ---: | ---: |\n");
    let mut points = Vec::new();
    for &v in &VOCAB_SIZES {
        let tok = Tokenizer::new(bpe.truncated(v - 256), Split::Gpt4);
        let n = tok.encode_ordinary(&test_text).len();
        let bpt = test_text.len() as f64 / n as f64;
        writeln!(md, "| {v} | {n} | {bpt:.2} |").unwrap();
        points.push((v, bpt));
    }
    writeln!(
        md,
        "\nHeld-out text: the last {} of {} lines, {} bytes; trained on the others.",
        test_lines.len(),
        lines.len(),
        test_text.len()
    )
    .unwrap();
    write(&out_dir.join("bytes_per_token.md"), &md)?;
    write(&out_dir.join("bytes_per_token.svg"), &line_chart(&points))?;

    let tok = Tokenizer::new(bpe.truncated(4096 - 256), Split::Gpt4)
        .with_special_tokens(&[BOS, EOS, PAD, IMAGE])?;
    write(&out_dir.join("special_tokens.md"), &special_tokens(&tok)?)?;
    Ok(())
}

/// The worked example, one row per merge, with the IDs after it.
fn worked_example() -> Result<String, Box<dyn Error>> {
    let text = "aaabdaaabac";
    let merges = train_reference([text], 259, Split::Gpt4)?;
    let mut ids: Vec<u32> = text.bytes().map(u32::from).collect();
    let name = |id: u32| -> String {
        let bpe = Bpe::from_merges(&merges.iter().map(|m| m.pair).collect::<Vec<_>>()).unwrap();
        render_token(bpe.token_bytes(id).unwrap())
    };
    let mut md = String::from(
        "| step | pair (IDs) | pair (text) | count | new ID | IDs after the merge |\n| ---: | --- | --- | ---: | ---: | --- |\n",
    );
    writeln!(md, "| 0 | | | | | `{ids:?}` |").unwrap();
    for (i, m) in merges.iter().enumerate() {
        let new_id = 256 + i as u32;
        ids = merge(&ids, m.pair, new_id);
        writeln!(
            md,
            "| {} | ({}, {}) | {} + {} | {} | {new_id} ({}) | `{ids:?}` |",
            i + 1,
            m.pair.0,
            m.pair.1,
            code(&name(m.pair.0)),
            code(&name(m.pair.1)),
            m.count,
            code(&name(new_id))
        )
        .unwrap();
    }
    Ok(md)
}

/// A sentence cut into pieces, one row per piece with the rule that made it.
fn split_example() -> String {
    let text = "We'll pay $1234.50 for   naïve café-style “quotes”!!\n\n  Done\n\t🎉 ok  \n ";
    let mut md = String::from("| piece | rule |\n| --- | --- |\n");
    let mut rest = text;
    for piece in split(text) {
        rest = &rest[piece.len()..];
        let rule = rule_of(piece, rest);
        writeln!(md, "| {} | {rule} |", code(&render_token(piece.as_bytes()))).unwrap();
    }
    md
}

/// Which of the pre-tokeniser's rules made a piece, given the text after
/// it (for the table; the sentence holds no marks or rare characters).
fn rule_of(piece: &str, rest: &str) -> &'static str {
    let first = piece.chars().next().unwrap();
    let last = piece.chars().last().unwrap();
    if piece.starts_with('\'')
        && piece.len() <= 3
        && piece.chars().skip(1).all(|c| c.is_ascii_alphabetic())
    {
        "1 contraction"
    } else if last.is_alphabetic() {
        "2 word"
    } else if first.is_numeric() {
        "3 numbers"
    } else if !piece.chars().all(char::is_whitespace) {
        "4 punctuation"
    } else if rest.is_empty() {
        "5 whitespace at the end"
    } else if piece.contains(['\n', '\r']) {
        "6 newlines"
    } else if rest.starts_with(char::is_whitespace) || piece.chars().count() > 1 {
        "7 spaces before a word"
    } else {
        "8 lone whitespace"
    }
}

/// Words of several scripts and what the split makes of them.
fn split_hard() -> String {
    let words = [
        ("Hindi", "नमस्ते"),
        ("Hebrew with vowel points", "שָׁלוֹם"),
        ("Arabic with vowel marks", "مَرْحَبًا"),
        ("Thai", "ภาษาไทย"),
        ("Greek, decomposed", "Ελληνικα\u{301}"),
        ("é precomposed / decomposed", "café cafe\u{301}"),
        ("numbers", "x²+½ Ⅻ ٣٤٥٦"),
        ("long s", "it'ſ"),
        ("circled letter", "ⓘ info"),
        ("emoji family (ZWJ)", "hi 👨\u{200d}👩\u{200d}👧"),
    ];
    let mut md = String::from("| text | pieces |\n| --- | --- |\n");
    for (name, text) in words {
        let pieces: Vec<String> = split(text)
            .map(|p| code(&render_token(p.as_bytes())))
            .collect();
        writeln!(md, "| {name}: {} | {} |", code(text), pieces.join(" ")).unwrap();
    }
    md
}

/// Our pieces against the regex's (from the fixture) on the multilingual
/// sample: per section, how many of the regex's pieces we produce exactly.
fn split_agreement() -> String {
    let fixture = include_str!("../tests/data/multilingual.pieces");
    let lengths: Vec<usize> = fixture
        .lines()
        .filter(|l| !l.starts_with('#'))
        .flat_map(|l| l.split_whitespace())
        .map(|n| n.parse().expect("the fixture holds numbers"))
        .collect();
    let spans = |lengths: &mut dyn Iterator<Item = usize>| {
        let mut pos = 0;
        lengths
            .map(|n| {
                pos += n;
                (pos - n, pos)
            })
            .collect::<Vec<_>>()
    };
    let theirs = spans(&mut lengths.iter().copied());
    let ours: std::collections::HashSet<(usize, usize)> =
        spans(&mut split(MULTILINGUAL).map(str::len))
            .into_iter()
            .collect();
    // sections start at lines "## name"
    let mut starts: Vec<(usize, &str)> = Vec::new();
    let mut pos = 0;
    for line in MULTILINGUAL.split_inclusive('\n') {
        if let Some(name) = line.strip_prefix("## ") {
            starts.push((pos, name.trim_end()));
        }
        pos += line.len();
    }
    let mut md = String::from("| section | pieces | same as the regex |\n| --- | ---: | ---: |\n");
    let (mut all, mut all_same) = (0, 0);
    for (k, &(start, name)) in starts.iter().enumerate() {
        let end = starts.get(k + 1).map_or(MULTILINGUAL.len(), |s| s.0);
        let in_section: Vec<_> = theirs
            .iter()
            .filter(|s| s.0 >= start && s.0 < end)
            .collect();
        let same = in_section.iter().filter(|s| ours.contains(s)).count();
        writeln!(md, "| {name} | {} | {same} |", in_section.len()).unwrap();
        all += in_section.len();
        all_same += same;
    }
    writeln!(md, "| **all** | **{all}** | **{all_same}** |").unwrap();
    let (major, minor, update) = UNICODE_VERSION;
    writeln!(
        md,
        "\nThe sample is {} bytes (`tokenizer/tests/data/multilingual.txt`). Our classes come from \
         Unicode {major}.{minor}.{update}; the regex's pieces from tiktoken 0.14's cl100k pattern \
         with the letters and numbers of the same version, run by Python's `regex` module \
         (`tools/tokenizer_compare.py fixture`).",
        MULTILINGUAL.len()
    )
    .unwrap();
    md
}

/// Both trainers on the first 50 KB of the training lines.
fn same_merges(train_lines: &[&str]) -> Result<String, Box<dyn Error>> {
    let mut texts = Vec::new();
    let mut size = 0;
    for line in train_lines {
        if size >= 50_000 {
            break;
        }
        size += line.len();
        texts.push(*line);
    }
    let vocab = 512;
    let reference = train_reference(&texts, vocab, Split::Gpt4)?;
    let fast = train_fast(&WordCounts::from_texts(&texts, Split::Gpt4), vocab)?;
    let same = reference.iter().zip(&fast).filter(|(a, b)| a == b).count();
    let words = WordCounts::from_texts(&texts, Split::Gpt4);
    Ok(format!(
        "| | reference | fast |\n| --- | ---: | ---: |\n\
         | corpus | {size} bytes | {size} bytes |\n\
         | pieces (with repeats) | {} | {} |\n\
         | distinct pieces | | {} |\n\
         | merges learned | {} | {} |\n\
         | identical merges (pair and count) | {same} of {} | |\n",
        words.total(),
        words.total(),
        words.len(),
        reference.len(),
        fast.len(),
        vocab - 256,
    ))
}

/// A caption with special tokens, token by token.
fn special_tokens(tok: &Tokenizer) -> Result<String, Box<dyn Error>> {
    let text = "<|bos|><|image|>a big red circle in the top left<|eos|>";
    let ids = tok.encode(text, AllowedSpecial::All)?;
    let mut md = String::from("| position | ID | token |\n| ---: | ---: | --- |\n");
    for (t, &id) in ids.iter().enumerate() {
        let kind = if tok
            .special_tokens()
            .iter()
            .any(|s| tok.special_id(s) == Some(id))
        {
            " (special)"
        } else {
            ""
        };
        writeln!(
            md,
            "| {t} | {id} | {}{kind} |",
            code(&render_token(tok.id_to_bytes(id).unwrap()))
        )
        .unwrap();
    }
    writeln!(
        md,
        "\nVocabulary: {} ordinary tokens + {} special = {}. Encoded with `AllowedSpecial::All`; \
         `AllowedSpecial::Nothing` gives the error \"{}\".",
        tok.bpe().len(),
        tok.special_tokens().len(),
        tok.vocab_size(),
        tok.encode(text, AllowedSpecial::Nothing).unwrap_err()
    )
    .unwrap();
    Ok(md)
}

/// A small SVG line chart: bytes per token against log2(vocabulary size).
fn line_chart(points: &[(usize, f64)]) -> String {
    let (w, h) = (560.0, 340.0);
    let (left, right, top, bottom) = (60.0, 45.0, 40.0, 50.0);
    let x_min = (points[0].0 as f64).log2();
    let x_max = (points.last().unwrap().0 as f64).log2();
    let y_max = points.iter().map(|p| p.1).fold(0.0, f64::max).ceil();
    let x = |v: usize| left + ((v as f64).log2() - x_min) / (x_max - x_min) * (w - left - right);
    let y = |b: f64| top + (1.0 - b / y_max) * (h - top - bottom);
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"{w}\" height=\"{h}\" fill=\"white\"/>\n\
         <text x=\"{}\" y=\"22\" text-anchor=\"middle\" font-size=\"14\">Bytes per token on held-out text</text>\n",
        w / 2.0
    );
    // axes, grid and labels
    for k in 0..=(y_max as usize) {
        let yy = y(k as f64);
        writeln!(
            svg,
            "<line x1=\"{left}\" y1=\"{yy:.1}\" x2=\"{:.1}\" y2=\"{yy:.1}\" stroke=\"#ddd\"/>",
            w - right
        )
        .unwrap();
        writeln!(
            svg,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{k}</text>",
            left - 6.0,
            yy + 4.0
        )
        .unwrap();
    }
    for &(v, _) in points {
        let xx = x(v);
        writeln!(
            svg,
            "<line x1=\"{xx:.1}\" y1=\"{top}\" x2=\"{xx:.1}\" y2=\"{:.1}\" stroke=\"#eee\"/>",
            h - bottom
        )
        .unwrap();
        writeln!(
            svg,
            "<text x=\"{xx:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{v}</text>",
            h - bottom + 16.0
        )
        .unwrap();
    }
    writeln!(
        svg,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">vocabulary size (log scale)</text>",
        (left + w - right) / 2.0,
        h - 12.0
    )
    .unwrap();
    writeln!(svg, "<text x=\"16\" y=\"{:.1}\" text-anchor=\"middle\" transform=\"rotate(-90 16 {:.1})\">bytes per token</text>", (top + h - bottom) / 2.0, (top + h - bottom) / 2.0).unwrap();
    let path: Vec<String> = points
        .iter()
        .map(|&(v, b)| format!("{:.1},{:.1}", x(v), y(b)))
        .collect();
    writeln!(
        svg,
        "<polyline points=\"{}\" fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"2\"/>",
        path.join(" ")
    )
    .unwrap();
    for &(v, b) in points {
        writeln!(
            svg,
            "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3.5\" fill=\"#1f77b4\"/>",
            x(v),
            y(b)
        )
        .unwrap();
        writeln!(
            svg,
            "<text x=\"{:.1}\" y=\"{:.1}\">{b:.2}</text>",
            x(v) + 5.0,
            y(b) - 7.0
        )
        .unwrap();
    }
    svg.push_str("</svg>\n");
    svg
}

/// `text` as inline code for a markdown table cell: a backtick inside needs
/// a longer fence, and `|` must be escaped even inside code.
fn code(text: &str) -> String {
    let text = text.replace('|', "\\|");
    if text.contains('`') {
        format!("`` {text} ``")
    } else {
        format!("`{text}`")
    }
}

/// Writes `text` beside the target, then renames: a reader never sees half a file.
fn write(path: &Path, text: &str) -> Result<(), Box<dyn Error>> {
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, text)?;
    fs::rename(&tmp, path)?;
    Ok(())
}
