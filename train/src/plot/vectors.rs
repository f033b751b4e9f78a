//! What the learned vectors look like: the pictures behind "words become
//! vectors" and "the same word in another sentence gets another vector".
//!
//! - [`caption_tokens`]: the tokens the training captions use, grouped by
//!   what they name (size, colour, shape, position, the rest);
//! - [`nearest_neighbours`]: each token's nearest tokens by cosine
//!   similarity in an embedding table;
//! - [`contextual_vectors`]: one token's vector after the text tower's
//!   blocks, in several sentences;
//! - [`token_neighbours_table`], [`contextual_table`]: the two as markdown.
//!
//! ## Shapes
//! `V` vocabulary, `C` width of an embedding table, `K` tokens compared,
//! `S` sentences.

use crate::data::{Colour, Position, Shape, Size};
use embedding::Layer;
use model::{Model, tokenize_texts};
use ndarray::{Array2, ArrayRef2, Axis, s};
use std::fmt::Write as _;
use tokenizer::Tokenizer;

/// What a caption word names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum WordKind {
    Size,
    Colour,
    Shape,
    Position,
    Other,
}

impl WordKind {
    /// The kind of a caption word (`"red"`: colour; `"top"`: position).
    pub fn of(word: &str) -> WordKind {
        if Size::ALL.iter().any(|s| s.word() == word) {
            WordKind::Size
        } else if Colour::ALL.iter().any(|c| c.word() == word) {
            WordKind::Colour
        } else if Shape::ALL.iter().any(|s| s.word() == word) {
            WordKind::Shape
        } else if Position::ALL
            .iter()
            .any(|p| p.words().split(' ').any(|w| w == word))
        {
            WordKind::Position
        } else {
            WordKind::Other
        }
    }
}

/// One token of the captions: its ID, its text without the leading space,
/// and what it names.
#[derive(Debug, Clone, PartialEq)]
pub struct CaptionToken {
    pub id: u32,
    pub text: String,
    pub kind: WordKind,
}

// ANCHOR: caption_tokens
/// The distinct tokens of `captions` under `tokenizer`, ordered by kind
/// (sizes, colours, shapes, positions, the rest), then by first use. Only
/// these rows of an embedding table were ever trained: a token the
/// captions never produce (an intermediate merge of the tokenizer's
/// training) keeps its random initial vector.
pub fn caption_tokens(tokenizer: &Tokenizer, captions: &[String]) -> Vec<CaptionToken> {
    let mut tokens: Vec<CaptionToken> = Vec::new();
    for caption in captions {
        for id in tokenizer.encode_ordinary(caption) {
            if tokens.iter().any(|t| t.id == id) {
                continue;
            }
            let bytes = tokenizer.id_to_bytes(id).unwrap_or_default();
            let text = String::from_utf8_lossy(bytes).trim().to_string();
            let kind = WordKind::of(&text);
            tokens.push(CaptionToken { id, text, kind });
        }
    }
    tokens.sort_by_key(|t| t.kind); // stable: first use within a kind
    tokens
}
// ANCHOR_END: caption_tokens

/// Cosine similarities `[K, K]` between the rows `ids` of `table: [V, C]`.
///
/// # Panics
/// If an ID is not a row of `table`.
pub fn cosine_matrix(table: &ArrayRef2<f32>, ids: &[u32]) -> Array2<f32> {
    let rows: Vec<_> = ids.iter().map(|&id| table.row(id as usize)).collect();
    let norm = |v: &ndarray::ArrayView1<f32>| v.dot(v).sqrt().max(1e-12);
    Array2::from_shape_fn((ids.len(), ids.len()), |(i, j)| {
        rows[i].dot(&rows[j]) / (norm(&rows[i]) * norm(&rows[j]))
    })
}

// ANCHOR: nearest_neighbours
/// For each token, the `k` other tokens of `tokens` whose rows of `table`
/// point most nearly the same way (highest cosine similarity first).
pub fn nearest_neighbours(
    table: &ArrayRef2<f32>,
    tokens: &[CaptionToken],
    k: usize,
) -> Vec<Vec<(usize, f32)>> {
    let ids: Vec<u32> = tokens.iter().map(|t| t.id).collect();
    let cos = cosine_matrix(table, &ids); // [K, K]
    (0..tokens.len())
        .map(|i| {
            let mut others: Vec<(usize, f32)> = (0..tokens.len())
                .filter(|&j| j != i)
                .map(|j| (j, cos[[i, j]]))
                .collect();
            others.sort_by(|a, b| b.1.total_cmp(&a.1));
            others.truncate(k);
            others
        })
        .collect()
}
// ANCHOR_END: nearest_neighbours

fn kind_name(kind: WordKind) -> &'static str {
    match kind {
        WordKind::Size => "size",
        WordKind::Colour => "colour",
        WordKind::Shape => "shape",
        WordKind::Position => "position",
        WordKind::Other => "other",
    }
}

/// The neighbours of every caption token in the text tower's and the
/// decoder's token embedding, as a markdown table, and a sentence counting
/// how often the nearest neighbour names the same kind of thing.
pub fn token_neighbours_table(model: &Model, tokens: &[CaptionToken], k: usize) -> String {
    let tables = [
        ("text tower", &model.text.token_embedding.weight),
        ("decoder", &model.decoder.token_embedding.weight),
    ];
    let neighbours: Vec<_> = tables
        .iter()
        .map(|(_, t)| nearest_neighbours(t, tokens, k))
        .collect();
    let mut md = format!(
        "| token | kind | nearest {k} in the text tower's embedding | nearest {k} in the decoder's embedding |\n\
         | --- | --- | --- | --- |\n"
    );
    for (i, t) in tokens.iter().enumerate() {
        let cell = |n: &Vec<Vec<(usize, f32)>>| {
            n[i].iter()
                .map(|&(j, c)| format!("`{}` {c:.2}", tokens[j].text))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = writeln!(
            md,
            "| `{}` | {} | {} | {} |",
            t.text,
            kind_name(t.kind),
            cell(&neighbours[0]),
            cell(&neighbours[1])
        );
    }
    let named: Vec<usize> = (0..tokens.len())
        .filter(|&i| tokens[i].kind != WordKind::Other)
        .collect();
    let _ = write!(
        md,
        "\nOf the {} tokens that name a size, colour, shape or position, the nearest neighbour names the same kind of thing for ",
        named.len()
    );
    let counts: Vec<String> = tables
        .iter()
        .zip(&neighbours)
        .map(|((name, _), n)| {
            let same = named
                .iter()
                .filter(|&&i| {
                    n[i].first()
                        .is_some_and(|&(j, _)| tokens[j].kind == tokens[i].kind)
                })
                .count();
            format!("{same} in the {name}")
        })
        .collect();
    let _ = writeln!(
        md,
        "{} (cosine similarity after each name).",
        counts.join(" and ")
    );
    md
}

// ANCHOR: contextual_vectors
/// The vector of `word` in each of `sentences` after the text tower's
/// blocks (before the final LayerNorm), `[S, C]`, and its vector before
/// them (token embedding plus position), for comparison. The tower is
/// causal, so the vector at a token has read that token and the ones
/// before it, never the ones after.
///
/// Returns `None` if `word` is not one token of the tokenizer or is
/// missing from a sentence.
pub fn contextual_vectors(
    model: &Model,
    tokenizer: &Tokenizer,
    sentences: &[String],
    word: &str,
) -> Option<(Array2<f32>, Array2<f32>)> {
    let [id] = tokenizer.encode_ordinary(word)[..] else {
        return None;
    };
    let (tokens, _) = tokenize_texts(tokenizer, model.config(), sentences); // [S, T]
    let at: Vec<usize> = tokens
        .rows()
        .into_iter()
        .map(|row| row.iter().position(|&t| t == id))
        .collect::<Option<_>>()?;
    let text = &model.text;
    let (x, _) = text.token_embedding.forward(&tokens); // [S, T, C]
    let (mut x, ()) = text.position_embedding.forward(&x);
    let pick = |x: &ndarray::Array3<f32>| {
        Array2::from_shape_fn((sentences.len(), x.dim().2), |(b, c)| x[[b, at[b], c]])
    };
    let before = pick(&x);
    for block in &text.blocks {
        x = block.forward_masked(&x, &attention::Mask::Causal).0;
    }
    Some((pick(&x), before))
}
// ANCHOR_END: contextual_vectors

/// Cosine similarities `[S, S]` between the rows of `v: [S, C]`.
pub fn row_cosines(v: &ArrayRef2<f32>) -> Array2<f32> {
    let n = v.nrows();
    let norms: Vec<f32> = v
        .axis_iter(Axis(0))
        .map(|r| r.dot(&r).sqrt().max(1e-12))
        .collect();
    Array2::from_shape_fn((n, n), |(i, j)| {
        v.slice(s![i, ..]).dot(&v.slice(s![j, ..])) / (norms[i] * norms[j])
    })
}

/// The cosine similarities of `word`'s vectors in `sentences`, before and
/// after the text tower, as markdown: the sentences, then the matrix after
/// the tower, then the smallest similarity before it. `None` as for
/// [`contextual_vectors`].
pub fn contextual_table(
    model: &Model,
    tokenizer: &Tokenizer,
    sentences: &[String],
    word: &str,
) -> Option<String> {
    let (after, before) = contextual_vectors(model, tokenizer, sentences, word)?;
    let (after, before) = (row_cosines(&after), row_cosines(&before));
    let mut md = format!("| `{}` in … | ", word.trim());
    md += &(1..=sentences.len())
        .map(|i| format!("({i})"))
        .collect::<Vec<_>>()
        .join(" | ");
    md += " |\n| --- |";
    md += &" ---: |".repeat(sentences.len());
    md += "\n";
    for (i, sentence) in sentences.iter().enumerate() {
        let cells: Vec<String> = (0..sentences.len())
            .map(|j| format!("{:.2}", after[[i, j]]))
            .collect();
        let _ = writeln!(md, "| ({}) `{sentence}` | {} |", i + 1, cells.join(" | "));
    }
    let lowest = before.iter().fold(f32::INFINITY, |m, &v| m.min(v));
    let _ = writeln!(
        md,
        "\nBefore the tower (token embedding plus position) the lowest similarity between two of these vectors is {lowest:.2}."
    );
    Some(md)
}
