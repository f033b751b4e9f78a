//! `train plot RUN` on a multimodal run (`train vlm`): its figures and
//! tables, written into `RUN/figures/` (or `--out DIR`).
//!
//! - `stages.svg`: the loss of each stage against its step;
//! - `results.md`: exact match per family, seen / held-out / unseen
//!   wording, beside the blind and the majority baselines (from
//!   `metrics.json`, which `train vlm` writes after its evaluation);
//! - `probe.md`: what a linear read-out finds in the vision tower's tokens
//!   of one cell (shape, colour, size, occupied);
//! - `gallery.png` + `gallery.md`: evaluation pictures with their
//!   conversations, the model's answers (right and wrong) and the blind
//!   model's;
//! - `answer_attention.png` + `answer_attention.md`: for pictures of
//!   several objects, "what colour is the …?" asked about each object, and
//!   where the position that writes the answer looks among the image
//!   tokens;
//! - `image_positions.svg` + `image_positions.md`: how alike the language
//!   model's position vectors are where the picture's tokens sit, and how
//!   often the answers that name a cell get its row and its column right;
//! - `wording.md`: each phrasing training never showed against the seen
//!   phrasings of its question, and the wrong answers of another kind
//!   ([`super::wording`]).

use super::charts::{drawn, heatmap_svg_axis};
use super::figures::{PlotError, PlotReport, create_dir, save_png, write_text};
use super::overlay::{normalise_max, overlay, tile_rows, upscale_nearest};
use super::vectors::cosine_matrix;
use crate::data::answers::{AccuracyTable, Column, Tally, exact_match};
use crate::data::questions::{Example, Family, QaData, Split};
use crate::data::scenes::{Cell, GRID};
use crate::run::{self, RunError, checkpoint_dir, read_json};
use crate::vlm_eval::{answer_attention, answer_turns, answer_turns_of, probe_tower};
use crate::vlm_run::{
    ChatHistory, Stage, StageModel, TableRecord, VLM_METRICS_FILE, VLM_RUN_FILE, VlmMetrics,
    VlmRunConfig,
};
use model::Vlm;
use ndarray::{Array3, Array4, ArrayView3, s};
use plotters::prelude::*;
use std::fmt::Write as _;
use std::path::Path;
use tokenizer::{IMAGE, Tokenizer};

/// Pictures in the gallery: the first of each evaluation split's stream.
const GALLERY_PER_SPLIT: usize = 3;
/// Pictures whose objects are each asked about in the attention figure.
const ATTENTION_SCENES: usize = 3;
/// Scenes the probe's read-outs learn from and are tested on.
const PROBE_TRAIN: usize = 1500;
const PROBE_TEST: usize = 500;
/// Pixels per picture pixel in the PNGs.
const SCALE: usize = 3;

impl From<&TableRecord> for AccuracyTable {
    fn from(record: &TableRecord) -> Self {
        let tally = |(correct, total): (usize, usize)| Tally { correct, total };
        AccuracyTable {
            rows: record
                .rows
                .iter()
                .map(|(name, cells)| (name.clone(), cells.map(tally)))
                .collect(),
        }
    }
}

// ANCHOR: plot_vlm_run
/// Writes every figure of the multimodal run in `run` into `out` (default
/// `run/figures`). `link_base` prefixes the PNGs' paths in the Markdown
/// files (the book's folder of them).
///
/// # Errors
/// [`PlotError::Run`] if `run` is not a finished multimodal run of the
/// generated world (an own-data run has no scenes to draw) or a file of it
/// is damaged, a file error naming the figure otherwise.
pub fn plot_vlm_run(
    run: &Path,
    out: Option<&Path>,
    link_base: &str,
) -> Result<PlotReport, PlotError> {
    let config: VlmRunConfig = read_json(&run.join(VLM_RUN_FILE))?;
    if let Some(data) = &config.data {
        return Err(PlotError::Run(RunError::BadValue {
            name: "run",
            why: format!(
                "{} was trained on the folder {}: its figures need the generated world's scenes \
                 (evaluate it with train eval)",
                run.display(),
                data.display()
            ),
        }));
    }
    let metrics: VlmMetrics = read_json(&run.join(VLM_METRICS_FILE))?;
    let last = last_checkpoint(run, Stage::Instruct)?;
    let (vlm, tokenizer) = Vlm::load(&last)?;
    let out = out.map_or_else(|| run.join("figures"), Path::to_path_buf);
    create_dir(&out)?;
    let mut report = PlotReport::default();

    write_text(&out, "stages.svg", &stages_svg(run)?, &mut report)?;
    write_text(&out, "results.md", &results_md(&metrics), &mut report)?;
    write_text(&out, "probe.md", &probe_md(&vlm, &config), &mut report)?;

    let data = config.qa_data();
    let (picture, text) = gallery(&vlm, &tokenizer, &data, link_base);
    save_png(&out.join("gallery.png"), &picture, &mut report)?;
    write_text(&out, "gallery.md", &text, &mut report)?;

    let (picture, text) = attention_figure(&vlm, &tokenizer, &data, link_base)?;
    save_png(&out.join("answer_attention.png"), &picture, &mut report)?;
    write_text(&out, "answer_attention.md", &text, &mut report)?;

    let (svg, text) = image_positions(&vlm, &tokenizer, &metrics, link_base)?;
    write_text(&out, "image_positions.svg", &svg, &mut report)?;
    write_text(&out, "image_positions.md", &text, &mut report)?;

    let text = super::wording::wording_md(&metrics.answered);
    write_text(&out, "wording.md", &text, &mut report)?;
    Ok(report)
}
// ANCHOR_END: plot_vlm_run

fn last_checkpoint(run: &Path, stage: Stage) -> Result<std::path::PathBuf, PlotError> {
    let dir = run.join(stage.folder());
    checkpoint_dir(&dir).ok_or_else(|| {
        PlotError::Run(RunError::BadValue {
            name: "run",
            why: format!(
                "{} has no checkpoint: has the stage been trained?",
                dir.display()
            ),
        })
    })
}

/// Each stage's loss per step (log scale), one colour a stage, one after
/// the other: 640×360.
fn stages_svg(run: &Path) -> Result<String, PlotError> {
    let mut curves: Vec<(&str, RGBColor, Vec<f32>)> = Vec::new();
    let clip = last_checkpoint(run, Stage::Clip)?;
    let history: run::History = read_json(&clip.join(run::HISTORY_FILE))?;
    let losses = history.steps.iter().map(|r| r.loss).collect();
    curves.push(("1 CLIP (contrastive + captions)", BLUE, losses));
    for (stage, name, colour) in [
        (Stage::Lm, "2 language model (text only)", BLACK),
        (Stage::Align, "3 projector alignment", GREEN),
        (Stage::Instruct, "4 instruction tuning", RED),
    ] {
        let dir = last_checkpoint(run, stage)?;
        let history: ChatHistory = read_json(&dir.join(run::HISTORY_FILE))?;
        curves.push((name, colour, history.steps.iter().map(|r| r.loss).collect()));
    }
    let total: usize = curves.iter().map(|c| c.2.len()).sum();
    let finite = curves
        .iter()
        .flat_map(|c| c.2.iter().copied())
        .filter(|v| v.is_finite() && *v > 0.0);
    let (low, high) = finite.fold((f32::MAX, f32::MIN), |(a, b), v| (a.min(v), b.max(v)));
    let (low, high) = if low <= high {
        (low * 0.8, high * 1.25)
    } else {
        (0.1, 10.0)
    };
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (640, 360)).into_drawing_area();
        drawn(root.fill(&WHITE));
        let mut chart = drawn(
            ChartBuilder::on(&root)
                .caption("loss of each stage (log scale)", ("sans-serif", 18))
                .margin(10)
                .x_label_area_size(30)
                .y_label_area_size(50)
                .build_cartesian_2d(0..total.max(1), (low..high).log_scale()),
        );
        drawn(
            chart
                .configure_mesh()
                .x_desc("step (the stages one after the other)")
                .y_desc("loss")
                .y_label_formatter(&|v| format!("{v:.2}"))
                .draw(),
        );
        let mut start = 0;
        for (name, colour, losses) in &curves {
            let points: Vec<(usize, f32)> = losses
                .iter()
                .enumerate()
                .map(|(i, &v)| (start + i, v))
                .filter(|(_, v)| v.is_finite() && *v > 0.0)
                .collect();
            let colour = *colour;
            drawn(chart.draw_series(LineSeries::new(points, colour)))
                .label(*name)
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], colour));
            start += losses.len();
        }
        drawn(
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .draw(),
        );
        drawn(root.present());
    }
    Ok(svg)
}

// ANCHOR: results_md
/// The headline table (the model beside both baselines, per family) and
/// the model's full table, from the run's metrics.
fn results_md(metrics: &VlmMetrics) -> String {
    let model = AccuracyTable::from(&metrics.model);
    let blind = AccuracyTable::from(&metrics.blind);
    let majority = AccuracyTable::from(&metrics.majority);
    let cell = |table: &AccuracyTable, row: &str, column| {
        table
            .get(row, column)
            .and_then(|t| t.accuracy())
            .map_or_else(String::new, |a| format!("{:.1}%", 100.0 * a))
    };
    let mut out = String::from(
        "| family | seen | held-out pairs | unseen wording | blind (seen) | majority (seen) |\n\
         | --- | ---: | ---: | ---: | ---: | ---: |\n",
    );
    let rows = Family::ALL
        .iter()
        .map(|f| f.name())
        .chain(std::iter::once("all"));
    for row in rows {
        if model.get(row, Column::Seen).is_none() {
            continue;
        }
        let _ = writeln!(
            out,
            "| {row} | {} | {} | {} | {} | {} |",
            cell(&model, row, Column::Seen),
            cell(&model, row, Column::HeldOut),
            cell(&model, row, Column::UnseenWording),
            cell(&blind, row, Column::Seen),
            cell(&majority, row, Column::Seen),
        );
    }
    let total: f64 = metrics.stage_seconds.iter().sum();
    let _ = write!(
        out,
        "\nThe model has {} parameters and trained for {:.0} s \
         (stage 1: {:.0} s, 2: {:.0} s, 3: {:.0} s, 4: {:.0} s); \
         {} conversations of each split were asked.\n\n\
         Every row of the model, by family, by objects in the picture and by turn \
         (accuracy and the number of answers):\n\n{}",
        metrics.parameters,
        total,
        metrics.stage_seconds[0],
        metrics.stage_seconds[1],
        metrics.stage_seconds[2],
        metrics.stage_seconds[3],
        metrics.config.eval_count,
        model.render(),
    );
    out
}
// ANCHOR_END: results_md

/// The linear probe of the run's tower as a one-row table.
fn probe_md(vlm: &Vlm, config: &VlmRunConfig) -> String {
    let probe = probe_tower(
        &vlm.vision_tower,
        &config.world,
        config.side,
        PROBE_TRAIN,
        PROBE_TEST,
    );
    format!(
        "| shape | colour | size | occupied | shape of held-out pairs |\n\
         | ---: | ---: | ---: | ---: | ---: |\n\
         | {:.1}% | {:.1}% | {:.1}% | {:.1}% | {:.1}% |\n\n\
         Read-outs trained on the tokens of {PROBE_TRAIN} scenes' cells, tested on {PROBE_TEST} \
         other scenes (shape, colour and size on occupied cells; occupied on every cell).\n",
        100.0 * probe.shape,
        100.0 * probe.colour,
        100.0 * probe.size,
        100.0 * probe.occupied,
        100.0 * probe.held_out_shape,
    )
}

fn mark(correct: bool) -> &'static str {
    if correct { "✓" } else { "✗" }
}

/// The question as the reader types it (the `<|image|>` placeholder of
/// the first turn left out).
fn shown(question: &str) -> String {
    question.replace(IMAGE, "").trim().to_string()
}

// ANCHOR: gallery
/// The first pictures of the seen and the held-out evaluation streams, and
/// a table of every turn: the question, the model's answer (✓ or ✗
/// against the expected one), the blind model's answer.
fn gallery(
    vlm: &Vlm,
    tokenizer: &Tokenizer,
    data: &QaData,
    link_base: &str,
) -> (image::RgbImage, String) {
    let mut tiles = Vec::new();
    let mut text = format!(
        "<img src=\"{link_base}gallery.png\" alt=\"the gallery's pictures, numbered from the left\">\n\n\
         | picture | question | answer | expected | blind |\n| ---: | --- | --- | --- | --- |\n"
    );
    for split in &Split::EVAL[..2] {
        let (examples, images) = data.eval_set(*split, GALLERY_PER_SPLIT);
        let answers = answer_turns(vlm, tokenizer, &examples, &images.view());
        let blank = Array4::<f32>::zeros(images.dim());
        let blind = answer_turns(vlm, tokenizer, &examples, &blank.view());
        let mut answers = answers.into_iter().zip(blind);
        for (k, example) in examples.iter().enumerate() {
            tiles.push(images.slice(s![k, .., .., ..]).to_owned());
            let number = tiles.len();
            for turn in &example.conversation.turns {
                let (answer, blind) = answers.next().unwrap_or_default();
                let _ = writeln!(
                    text,
                    "| {number} | {} | {} {answer} | {} | {blind} |",
                    shown(&turn.user),
                    mark(exact_match(&answer, &turn.assistant)),
                    turn.assistant,
                );
            }
        }
    }
    let _ = write!(
        text,
        "\nPictures 1 to {GALLERY_PER_SPLIT} show only pairs training showed; the others hold \
         a pair training never showed.\n"
    );
    (tile_rows(&[tiles], SCALE, 4), text)
}
// ANCHOR_END: gallery

/// Evaluation scenes of objects of different shapes (three where there are
/// such scenes): each of up to three objects asked "what colour is the {shape}?", and the answer position's
/// attention over the image tokens laid over the picture.
fn attention_figure(
    vlm: &Vlm,
    tokenizer: &Tokenizer,
    data: &QaData,
    link_base: &str,
) -> Result<(image::RgbImage, String), PlotError> {
    let (examples, images) = data.eval_set(Split::TRAIN, 200);
    // the scenes of most objects (of different shapes, so the question names one)
    let mut chosen: Vec<(usize, &Example)> = examples
        .iter()
        .enumerate()
        .filter(|(_, e)| distinct_shapes(e))
        .collect();
    chosen.sort_by_key(|(_, e)| std::cmp::Reverse(e.scene.len().min(3)));
    chosen.truncate(ATTENTION_SCENES);
    let mut rows = Vec::new();
    let mut text = format!(
        "<img src=\"{link_base}answer_attention.png\" alt=\"each row a picture, then the \
         attention of the answer position when asked about each object\">\n\n\
         | row | question | answer | expected |\n| ---: | --- | --- | --- |\n"
    );
    for (r, (k, example)) in chosen.iter().enumerate() {
        let image = images.slice(s![*k..*k + 1, .., .., ..]);
        let picture = images.slice(s![*k, .., .., ..]);
        let mut row = vec![picture.to_owned()];
        let objects = &example.scene.objects()[..example.scene.len().min(3)];
        let questions: Vec<(String, usize)> = objects
            .iter()
            .map(|o| {
                let q = format!("{IMAGE} what colour is the {}?", o.shape.word());
                (q, 0)
            })
            .collect();
        let answers = answer_turns_of(vlm, tokenizer, &questions, &image);
        for ((question, _), (object, answer)) in questions.iter().zip(objects.iter().zip(answers)) {
            let map =
                answer_attention(vlm, tokenizer, &image, question).ok_or(PlotError::NotAGrid {
                    tokens: vlm.num_image_tokens(),
                })?;
            row.push(laid_over(&picture, &map));
            let expected = object.colour.word();
            let _ = writeln!(
                text,
                "| {} | {} | {} {answer} | {expected} |",
                r + 1,
                shown(question),
                mark(exact_match(&answer, expected)),
            );
        }
        rows.push(row);
    }
    let focus = attention_focus(vlm, tokenizer, &examples, &images)?;
    let _ = write!(
        text,
        "\nOver {} such questions about scenes of two objects or more, the answer position \
         puts on average {:.1}% of its attention over the picture on the cell of the object \
         asked about, {:.1}% on each other object's cell and {:.1}% on each empty cell \
         (a position that did not tell the objects apart would give the first two the same \
         share).\n",
        focus.questions,
        100.0 * focus.asked,
        100.0 * focus.other,
        100.0 * focus.empty,
    );
    if rows.is_empty() {
        return Err(PlotError::Run(RunError::BadValue {
            name: "run",
            why: "no evaluation scene has objects of different shapes to ask about".to_string(),
        }));
    }
    Ok((tile_rows(&rows, SCALE, 4), text))
}

fn distinct_shapes(example: &Example) -> bool {
    let objects = example.scene.objects();
    objects
        .iter()
        .enumerate()
        .all(|(i, a)| objects[..i].iter().all(|b| b.shape != a.shape))
}

/// `map` (a grid of attention weights) scaled to its largest weight,
/// upscaled to the picture and laid over it.
fn laid_over(picture: &ArrayView3<f32>, map: &ndarray::Array2<f32>) -> Array3<f32> {
    let (_, h, w) = picture.dim();
    let map = upscale_nearest(&normalise_max(map), h, w);
    overlay(picture, &map)
}

/// Where the answer position's attention over the picture goes, averaged
/// over questions: the share on the asked object's cell, on each other
/// occupied cell, on each empty cell.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Focus {
    questions: usize,
    asked: f32,
    other: f32,
    empty: f32,
}

// ANCHOR: attention_focus
/// "What colour is the {shape}?" about every object of every scene of two
/// objects or more with distinct shapes in `examples`: the answer
/// position's attention map (summing to 1 over the image tokens), each
/// token counted in the grid cell it covers.
fn attention_focus(
    vlm: &Vlm,
    tokenizer: &Tokenizer,
    examples: &[Example],
    images: &Array4<f32>,
) -> Result<Focus, PlotError> {
    let (mut asked, mut other, mut empty) = ((0.0, 0), (0.0, 0), (0.0, 0));
    for (k, example) in examples.iter().enumerate() {
        if example.scene.len() < 2 || !distinct_shapes(example) {
            continue;
        }
        let image = images.slice(s![k..k + 1, .., .., ..]);
        for object in example.scene.objects() {
            let question = format!("{IMAGE} what colour is the {}?", object.shape.word());
            let map =
                answer_attention(vlm, tokenizer, &image, &question).ok_or(PlotError::NotAGrid {
                    tokens: vlm.num_image_tokens(),
                })?;
            let n = map.nrows();
            let mut per_cell = [0.0f32; GRID * GRID];
            for ((r, c), &w) in map.indexed_iter() {
                per_cell[(r * GRID / n) * GRID + c * GRID / n] += w;
            }
            let total: f32 = per_cell.iter().sum::<f32>().max(f32::MIN_POSITIVE);
            for cell in Cell::ALL {
                let share = per_cell[cell.row * GRID + cell.col] / total;
                let slot = if cell == object.cell {
                    &mut asked
                } else if example.scene.objects().iter().any(|o| o.cell == cell) {
                    &mut other
                } else {
                    &mut empty
                };
                slot.0 += share;
                slot.1 += 1;
            }
        }
    }
    let mean = |(sum, count): (f32, usize)| if count == 0 { 0.0 } else { sum / count as f32 };
    Ok(Focus {
        questions: asked.1,
        asked: mean(asked),
        other: mean(other),
        empty: mean(empty),
    })
}
// ANCHOR_END: attention_focus

// ANCHOR: image_positions
/// The CNN tower's tokens say what is in a cell, hardly where: a cell's
/// place reaches the language model through the position vector added at
/// the token's slot. The cosine similarity of those vectors between every
/// two image tokens (a heatmap), their mean over pairs in one row, in one
/// column and in neither, and how often the evaluation's answers that name
/// a cell get its row word and its column word right.
fn image_positions(
    vlm: &Vlm,
    tokenizer: &Tokenizer,
    metrics: &VlmMetrics,
    link_base: &str,
) -> Result<(String, String), PlotError> {
    let tokens = vlm.config().tokens;
    let question = format!("{IMAGE} where is it?");
    let prompt = model::encode_prompt(
        tokenizer,
        &tokens,
        &[],
        &question,
        model::ImageSlot::Required,
    )
    .map_err(|e| {
        PlotError::Run(RunError::BadValue {
            name: "run",
            why: e.to_string(),
        })
    })?;
    let row = ndarray::Array2::from_shape_vec((1, prompt.len()), prompt).expect("one row");
    let first = vlm.image_positions(&row)[0]; // the spliced slot of image token 0
    let n = vlm.num_image_tokens();
    let cls = usize::from(vlm.config().projector.keep_cls);
    let side = (n - cls).isqrt();
    if side * side != n - cls {
        return Err(PlotError::NotAGrid { tokens: n });
    }
    let slots: Vec<u32> = (first + cls..first + n).map(|t| t as u32).collect();
    let cosine = cosine_matrix(&vlm.language_model.position_embedding.weight, &slots); // [side², side²]
    let labels: Vec<String> = (0..side * side)
        .map(|i| {
            if side == GRID {
                Cell::ALL[i].words().to_string()
            } else {
                format!("row {}, column {}", i / side + 1, i % side + 1)
            }
        })
        .collect();
    let svg = heatmap_svg_axis(
        &cosine,
        &labels,
        "cosine of the position vectors at the image tokens",
        "image token",
    );
    // mean cosine over pairs in one row, in one column, in neither
    let mut sums = [(0.0f32, 0usize); 3];
    for i in 0..side * side {
        for j in i + 1..side * side {
            let kind = if i / side == j / side {
                0
            } else if i % side == j % side {
                1
            } else {
                2
            };
            sums[kind].0 += cosine[[i, j]];
            sums[kind].1 += 1;
        }
    }
    let mean = |(sum, count): (f32, usize)| sum / count.max(1) as f32;
    let (in_row, in_col) = (mean(sums[0]), mean(sums[1]));
    let mut text = format!(
        "<img src=\"{link_base}image_positions.svg\" alt=\"the cosine similarity of the \
         language model's position vectors between every two image tokens\">\n\n\
         Mean cosine of the position vectors of two image tokens in one row: {in_row:.2}; \
         in one column: {in_col:.2}; in neither: {:.2}. {}\n",
        mean(sums[2]),
        alike_clause(in_row, in_col),
    );
    let places = cell_answers(&metrics.answered);
    if places.answers > 0 {
        let pc = |k: usize| 100.0 * k as f64 / places.answers as f64;
        let _ = write!(
            text,
            "\nOf the {} evaluation answers that should name a cell (\"where is …?\" and its \
             follow-ups, every split), {:.1}% are right; the row word is right in {:.1}%, \
             the column word in {:.1}%. ",
            places.answers,
            pc(places.both),
            pc(places.row),
            pc(places.col),
        );
        text.push_str(match places.row.cmp(&places.col) {
            std::cmp::Ordering::Greater => "The row is found more often than the column.\n",
            std::cmp::Ordering::Less => "The column is found more often than the row.\n",
            std::cmp::Ordering::Equal => "The row and the column are found equally often.\n",
        });
    }
    Ok((svg, text))
}
// ANCHOR_END: image_positions

/// Which of the two groups of image tokens has the more alike position
/// vectors (a tie within 0.05 is called one).
fn alike_clause(in_row: f32, in_col: f32) -> &'static str {
    if (in_row - in_col).abs() < 0.05 {
        "Tokens of one row and tokens of one column are about as alike."
    } else if in_row > in_col {
        "Tokens of one row are more alike than tokens of one column: \
         the position vectors tell the rows apart better than the columns of a row."
    } else {
        "Tokens of one column are more alike than tokens of one row: \
         the position vectors tell the columns apart better than the rows of a column."
    }
}

/// How the answers whose expected answer is a cell's words did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct CellAnswers {
    answers: usize,
    row: usize,
    col: usize,
    both: usize,
}

/// The cell a text names (`top left`, `middle`, …), if it names one.
fn named_cell(text: &str) -> Option<Cell> {
    Cell::ALL.into_iter().find(|c| exact_match(text, c.words()))
}

/// Counts, over the answers that should name a cell, those whose row and
/// whose column are right (an answer that names no cell gets neither).
fn cell_answers(answered: &[crate::vlm_eval::Answered]) -> CellAnswers {
    let mut out = CellAnswers::default();
    for a in answered {
        let Some(expected) = named_cell(&a.expected) else {
            continue;
        };
        out.answers += 1;
        if let Some(got) = named_cell(&a.answer) {
            out.row += usize::from(got.row == expected.row);
            out.col += usize::from(got.col == expected.col);
            out.both += usize::from(got == expected);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vlm_eval::Answered;

    fn answered(expected: &str, answer: &str) -> Answered {
        Answered {
            question: "where is the red one?".to_string(),
            expected: expected.to_string(),
            answer: answer.to_string(),
            blind: String::new(),
            family: "attribute".to_string(),
            correct: exact_match(answer, expected),
            kind: "Where".to_string(),
            phrasing: "where is the {c} one?".to_string(),
            unseen_wording: false,
            held_out: false,
        }
    }

    #[test]
    fn answers_naming_a_cell_are_scored_by_row_and_by_column() {
        let places = cell_answers(&[
            answered("top left", "top left"),        // both
            answered("top left", "top middle"),      // row only
            answered("middle", "bottom middle"),     // column only ("middle" is the centre)
            answered("bottom right", "circle"),      // names no cell: neither
            answered("red", "red"),                  // not about a place: not counted
            answered("Middle Right", "middle left"), // row only, case aside
        ]);
        assert_eq!(
            places,
            CellAnswers {
                answers: 5,
                row: 3,
                col: 2,
                both: 1
            }
        );
        assert_eq!(named_cell("middle"), Some(Cell { row: 1, col: 1 }));
        assert_eq!(named_cell("left"), None);
    }

    #[test]
    fn the_clause_names_the_more_alike_group_or_none() {
        assert!(alike_clause(0.3, -0.1).starts_with("Tokens of one row are more alike"));
        assert!(alike_clause(-0.1, 0.3).starts_with("Tokens of one column are more alike"));
        assert!(alike_clause(0.1, 0.12).contains("about as alike"));
    }
}
