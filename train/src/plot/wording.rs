//! `wording.md` of a multimodal run: each phrasing training never showed
//! beside the phrasings of the same question it did show, and what the
//! wrong answers to it are: answers to the question asked, or to another
//! kind of question.
//!
//! Read from `metrics.json`'s answered turns (seen pairs only, so only the
//! wording differs); a file written before the turns recorded their
//! phrasing gets a line asking for `train eval RUN`.

use crate::data::answers::{Tally, normalise};
use crate::data::scenes::Cell;
use crate::data::{Colour, Shape, Size};
use crate::vlm_eval::Answered;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

/// What kind of thing an answer is, from its words alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum AnswerType {
    YesNo,
    Number,
    Colour,
    Shape,
    Size,
    Place,
    Caption,
    Other,
}

impl AnswerType {
    /// How a sentence names it ("answered with a caption").
    pub fn name(self) -> &'static str {
        match self {
            AnswerType::YesNo => "yes or no",
            AnswerType::Number => "a number",
            AnswerType::Colour => "a colour",
            AnswerType::Shape => "a shape",
            AnswerType::Size => "a size",
            AnswerType::Place => "a place",
            AnswerType::Caption => "a caption",
            AnswerType::Other => "something else",
        }
    }
}

/// The kind of `answer` (after [`normalise`]): one word of the world's,
/// a number, a cell's name, or a caption (`a big red circle in …`).
pub fn answer_type(answer: &str) -> AnswerType {
    let text = normalise(answer);
    let is = |words: &[&str]| words.contains(&text.as_str());
    if text == "yes" || text == "no" {
        AnswerType::YesNo
    } else if text.parse::<u32>().is_ok() {
        AnswerType::Number
    } else if is(&Colour::ALL.map(Colour::word)) {
        AnswerType::Colour
    } else if is(&Shape::ALL.map(Shape::word)) {
        AnswerType::Shape
    } else if is(&Size::ALL.map(Size::word)) {
        AnswerType::Size
    } else if is(&Cell::ALL.map(Cell::words)) {
        AnswerType::Place
    } else if text.starts_with("a ") || text.starts_with("an ") {
        AnswerType::Caption
    } else {
        AnswerType::Other
    }
}

// ANCHOR: wording
/// One phrasing training never showed, against the seen phrasings of the
/// same question (seen pairs in both).
#[derive(Debug, Clone, PartialEq)]
pub struct WordingRow {
    /// The unseen phrasing's template.
    pub phrasing: String,
    /// The same question in the phrasings training shows.
    pub seen: Tally,
    /// The unseen phrasing.
    pub unseen: Tally,
    /// Its wrong answers that are another kind of thing than the expected
    /// answer (a caption where a number was due), by kind.
    pub other_kind: BTreeMap<AnswerType, usize>,
}

impl WordingRow {
    /// Percentage points the unseen phrasing loses (negative: it gains).
    pub fn drop(&self) -> f64 {
        let pc = |t: Tally| 100.0 * t.accuracy().unwrap_or(0.0);
        pc(self.seen) - pc(self.unseen)
    }

    /// Wrong answers of another kind than the expected one.
    pub fn other_kind_total(&self) -> usize {
        self.other_kind.values().sum()
    }
}

/// A row per unseen phrasing asked, the largest drop first.
pub fn wording_rows(answered: &[Answered]) -> Vec<WordingRow> {
    let mut rows: BTreeMap<&str, (String, WordingRow)> = BTreeMap::new();
    for a in answered.iter().filter(|a| a.unseen_wording && !a.held_out) {
        let (_, row) = rows.entry(&a.phrasing).or_insert_with(|| {
            let row = WordingRow {
                phrasing: a.phrasing.clone(),
                seen: Tally::default(),
                unseen: Tally::default(),
                other_kind: BTreeMap::new(),
            };
            (a.kind.clone(), row)
        });
        row.unseen.add(a.correct);
        let got = answer_type(&a.answer);
        if !a.correct && got != answer_type(&a.expected) {
            *row.other_kind.entry(got).or_default() += 1;
        }
    }
    for a in answered.iter().filter(|a| !a.unseen_wording && !a.held_out) {
        for (kind, row) in rows.values_mut() {
            if *kind == a.kind {
                row.seen.add(a.correct);
            }
        }
    }
    let mut rows: Vec<WordingRow> = rows.into_values().map(|(_, row)| row).collect();
    rows.sort_by(|a, b| b.drop().total_cmp(&a.drop()));
    rows
}
// ANCHOR_END: wording

/// The seen phrasing (of any question) whose last words are most of
/// `phrasing`'s, with how many words they share and what its answers are.
fn nearest_ending<'a>(
    phrasing: &str,
    answered: &'a [Answered],
) -> Option<(&'a str, usize, AnswerType)> {
    let words: Vec<&str> = phrasing.split_whitespace().rev().collect();
    let shared = |other: &str| {
        (other.split_whitespace().rev())
            .zip(&words)
            .take_while(|(a, b)| a == *b)
            .count()
    };
    let mut best: Option<(&str, usize)> = None;
    for a in answered
        .iter()
        .filter(|a| !a.unseen_wording && !a.phrasing.is_empty())
    {
        let n = shared(&a.phrasing);
        if n > best.map_or(0, |(_, m)| m) {
            best = Some((&a.phrasing, n));
        }
    }
    let (seen, n) = best?;
    let mut types: BTreeMap<AnswerType, usize> = BTreeMap::new();
    for a in answered.iter().filter(|a| a.phrasing == seen) {
        *types.entry(answer_type(&a.expected)).or_default() += 1;
    }
    let (&answers, _) = types
        .iter()
        .max_by_key(|&(t, n)| (*n, std::cmp::Reverse(*t)))?;
    Some((seen, n, answers))
}

/// Answers right, wrong of the right kind and of another kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Pooled {
    right: usize,
    wrong_same_kind: usize,
    other_kind: usize,
    total: usize,
}

/// [`Pooled`] over the unseen phrasings, and over the seen phrasings of the
/// questions that have an unseen one (seen pairs in both): `(seen, unseen)`.
fn pooled(answered: &[Answered]) -> (Pooled, Pooled) {
    let asked = |a: &Answered| !a.held_out;
    let kinds: BTreeSet<&str> = (answered.iter())
        .filter(|a| asked(a) && a.unseen_wording)
        .map(|a| a.kind.as_str())
        .collect();
    let (mut seen, mut unseen) = (Pooled::default(), Pooled::default());
    for a in answered.iter().filter(|a| asked(a)) {
        let pool = if a.unseen_wording {
            &mut unseen
        } else if kinds.contains(&a.kind.as_str()) {
            &mut seen
        } else {
            continue;
        };
        pool.total += 1;
        if a.correct {
            pool.right += 1;
        } else if answer_type(&a.answer) == answer_type(&a.expected) {
            pool.wrong_same_kind += 1;
        } else {
            pool.other_kind += 1;
        }
    }
    (seen, unseen)
}

/// `wording.md`: the table and what it says.
pub fn wording_md(answered: &[Answered]) -> String {
    if answered.iter().any(|a| a.phrasing.is_empty()) {
        return "This run's `metrics.json` does not record the phrasing of each question: \
                `train eval RUN` evaluates it again and writes it.\n"
            .to_string();
    }
    let rows = wording_rows(answered);
    if rows.is_empty() {
        return "No question was asked in a phrasing training never showed.\n".to_string();
    }
    let pc = |t: Tally| match t.accuracy() {
        Some(a) => format!("{:.1}% ({})", 100.0 * a, t.total),
        None => "– (0)".to_string(),
    };
    let mut text = String::from(
        "| phrasing training never showed | the same question, seen phrasings | \
         the unseen phrasing | drop (points) | wrong answers of another kind |\n\
         | --- | ---: | ---: | ---: | --- |\n",
    );
    for row in &rows {
        let wrong = row.unseen.total - row.unseen.correct;
        let mut kinds: Vec<(AnswerType, usize)> = row.other_kind.clone().into_iter().collect();
        kinds.sort_by_key(|&(t, n)| (std::cmp::Reverse(n), t)); // the most first
        let kinds: Vec<String> = (kinds.iter())
            .map(|(t, n)| format!("{} {n}", t.name()))
            .collect();
        let other = if row.other_kind_total() == 0 {
            format!("0 of {wrong}")
        } else {
            format!(
                "{} of {wrong}: {}",
                row.other_kind_total(),
                kinds.join(", ")
            )
        };
        let _ = writeln!(
            text,
            "| `{}` | {} | {} | {:.1} | {other} |",
            row.phrasing,
            pc(row.seen),
            pc(row.unseen),
            row.drop(),
        );
    }
    let (seen, unseen) = pooled(answered);
    let share = |n: usize, of: Pooled| 100.0 * n as f64 / of.total.max(1) as f64;
    let (other, same) = (
        share(unseen.other_kind, unseen) - share(seen.other_kind, seen),
        share(unseen.wrong_same_kind, unseen) - share(seen.wrong_same_kind, seen),
    );
    let _ = write!(
        text,
        "\nSeen pairs only. The unseen phrasings are answered right in {:.1}% ({}), the seen \
         phrasings of the same questions in {:.1}% ({}). Answers of another kind than the one \
         due are {:.1}% of the answers to unseen phrasings and {:.1}% of those to seen ones; \
         wrong answers of the right kind, {:.1}% and {:.1}%: {}. The largest drop is `{}`.",
        share(unseen.right, unseen),
        unseen.total,
        share(seen.right, seen),
        seen.total,
        share(unseen.other_kind, unseen),
        share(seen.other_kind, seen),
        share(unseen.wrong_same_kind, unseen),
        share(seen.wrong_same_kind, seen),
        if same > other {
            "more of the lost points are wrong answers of the right kind than answers of another kind"
        } else {
            "more of the lost points are answers of another kind than wrong answers of the right kind"
        },
        rows[0].phrasing,
    );
    let most = rows
        .iter()
        .max_by_key(|r| r.other_kind_total())
        .expect("rows");
    if let Some((&kind, &n)) = most
        .other_kind
        .iter()
        .max_by_key(|&(t, n)| (*n, std::cmp::Reverse(*t)))
    {
        let _ = write!(
            text,
            " The most answers of another kind go to `{}`: {n} of them {}",
            most.phrasing,
            kind.name(),
        );
        match nearest_ending(&most.phrasing, answered) {
            Some((seen, words, answers)) if answers == kind => {
                let last = match words {
                    1 => "its last word ends".to_string(),
                    n => format!("its last {n} words end"),
                };
                let _ = write!(
                    text,
                    "; {last} the seen phrasing `{seen}` as well, which is answered with {}.",
                    answers.name()
                );
            }
            _ => text.push('.'),
        }
    }
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn turn(kind: &str, phrasing: &str, unseen: bool, expected: &str, answer: &str) -> Answered {
        Answered {
            question: phrasing.to_string(),
            expected: expected.to_string(),
            answer: answer.to_string(),
            blind: String::new(),
            family: "counting".to_string(),
            correct: crate::data::answers::exact_match(answer, expected),
            kind: kind.to_string(),
            phrasing: phrasing.to_string(),
            unseen_wording: unseen,
            held_out: false,
        }
    }

    #[test]
    fn answers_are_sorted_into_kinds_by_their_words() {
        assert_eq!(answer_type("Yes."), AnswerType::YesNo);
        assert_eq!(answer_type("three"), AnswerType::Number);
        assert_eq!(answer_type("4"), AnswerType::Number);
        assert_eq!(answer_type("magenta"), AnswerType::Colour);
        assert_eq!(answer_type("ring"), AnswerType::Shape);
        assert_eq!(answer_type("big"), AnswerType::Size);
        assert_eq!(answer_type("middle"), AnswerType::Place);
        assert_eq!(answer_type("Bottom Right"), AnswerType::Place);
        assert_eq!(
            answer_type("a big red circle in the middle and a small blue ring in the top left"),
            AnswerType::Caption
        );
        assert_eq!(answer_type("an"), AnswerType::Other);
        assert_eq!(answer_type(""), AnswerType::Other);
        assert_eq!(answer_type("top red"), AnswerType::Other);
    }

    #[test]
    fn an_unseen_phrasing_is_compared_with_the_seen_phrasings_of_its_question() {
        let count = "how many {c} shapes does the picture show?";
        let (seen_count, number) = (
            "how many {c} shapes are there?",
            "what is the number of {c} shapes?",
        );
        let describe = "what does the picture show?";
        let caption = "a big red circle in the middle";
        #[rustfmt::skip]
        let turns = [
            // the question in two seen phrasings: 3 of 4 right
            ("CountColour", seen_count, false, "2", "2"),
            ("CountColour", seen_count, false, "1", "1"),
            ("CountColour", number, false, "1", "1"),
            ("CountColour", number, false, "3", "2"),
            // unseen: 1 of 4 right; two captions and a wrong number
            ("CountColour", count, true, "2", "2"),
            ("CountColour", count, true, "1", caption),
            ("CountColour", count, true, "1", "a small red ring in the top left"),
            ("CountColour", count, true, "3", "1"),
            // another question: seen 2 of 2, unseen 2 of 2
            ("Colour", "what colour is the {s}?", false, "red", "red"),
            ("Colour", "what colour is the {s}?", false, "blue", "blue"),
            ("Colour", "the {s} is what colour?", true, "red", "red"),
            ("Colour", "the {s} is what colour?", true, "cyan", "cyan"),
            // the describe question whose ending the unseen one shares
            ("Describe", describe, false, caption, caption),
        ];
        let mut answered: Vec<Answered> = (turns.iter())
            .map(|&(k, p, u, e, a)| turn(k, p, u, e, a))
            .collect();
        // a held-out pair counts nowhere
        answered.push(Answered {
            held_out: true,
            ..turn("Colour", "what colour is the {s}?", false, "red", "blue")
        });
        let rows = wording_rows(&answered);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].phrasing, count, "the largest drop first");
        assert_eq!(
            rows[0].seen,
            Tally {
                correct: 3,
                total: 4
            }
        );
        assert_eq!(
            rows[0].unseen,
            Tally {
                correct: 1,
                total: 4
            }
        );
        assert_eq!(
            rows[0].other_kind,
            BTreeMap::from([(AnswerType::Caption, 2)])
        );
        assert!((rows[0].drop() - 50.0).abs() < 1e-9);
        assert_eq!(
            rows[1].seen,
            Tally {
                correct: 2,
                total: 2
            }
        );
        assert_eq!(
            rows[1].unseen,
            Tally {
                correct: 2,
                total: 2
            }
        );
        assert_eq!(rows[1].drop(), 0.0);

        let text = wording_md(&answered);
        assert!(text.contains("| 2 of 3: a caption 2 |"), "{text}");
        assert!(
            text.contains(
                "right in 50.0% (6), the seen phrasings of the same questions in 83.3% (6)"
            ),
            "{text}"
        );
        // unseen: 2 captions of 6 answers, 1 wrong number; seen: 1 wrong number of 6
        assert!(
            text.contains(
                "another kind than the one due are 33.3% of the answers to unseen \
                 phrasings and 0.0% of those to seen ones; wrong answers of the right kind, \
                 16.7% and 16.7%: more of the lost points are answers of another kind"
            ),
            "{text}"
        );
        assert!(
            text.contains("its last 4 words end the seen phrasing `what does the picture show?` as well, which is answered with a caption."),
            "{text}"
        );
    }

    #[test]
    fn a_shared_ending_of_one_word_is_one_word() {
        let answered = [
            turn("CountAll", "how many shapes?", false, "2", "2"),
            turn("CountAll", "the count of shapes, please?", true, "2", "yes"),
            turn("Exists", "is there a {c} {s} please?", false, "yes", "yes"),
        ];
        let text = wording_md(&answered);
        assert!(
            text.contains("its last word ends the seen phrasing `is there a {c} {s} please?`"),
            "{text}"
        );
    }

    #[test]
    fn old_metrics_and_runs_without_unseen_wording_get_a_sentence() {
        let mut old = turn("", "", false, "red", "red");
        old.kind.clear();
        assert!(wording_md(&[old]).contains("train eval RUN"));
        let seen = turn("Colour", "what colour is the {s}?", false, "red", "red");
        assert!(wording_md(&[seen]).starts_with("No question was asked"));
    }
}
