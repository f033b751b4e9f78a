//! Scoring answers without the model: normalisation, exact match, accuracy
//! tables split by family, by seen or held-out pairs, by seen or unseen
//! wording, by the number of objects and by turn, and the majority-answer
//! baseline that shows how far language priors alone go.
//!
//! Everything here is a plain function over answers and their
//! [`TurnMeta`], so the same tables serve the model, the blind model (the
//! image replaced by a blank one) and the majority baseline.

use super::questions::{Family, TurnMeta, Wording};
use super::scenes::Pairs;
use std::collections::BTreeMap;
use std::fmt::Write;

// ANCHOR: normalise
/// An answer reduced to what exact match compares: lower case, words
/// separated by single spaces, a comma glued to the word before it, no
/// final `.`, `!` or `?`, and number words up to ten written as digits
/// (`Three.` → `3`).
pub fn normalise(answer: &str) -> String {
    const NUMBERS: [&str; 11] = [
        "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    ];
    let lower = answer.to_lowercase();
    let trimmed = lower.trim().trim_end_matches(['.', '!', '?']);
    let words: Vec<String> = trimmed
        .replace(',', " , ")
        .split_whitespace()
        .map(|w| match NUMBERS.iter().position(|&n| n == w) {
            Some(n) => n.to_string(),
            None => w.to_string(),
        })
        .collect();
    words.join(" ").replace(" ,", ",")
}

/// Whether a predicted answer is the expected one after [`normalise`].
pub fn exact_match(predicted: &str, expected: &str) -> bool {
    normalise(predicted) == normalise(expected)
}
// ANCHOR_END: normalise

/// Right answers out of all.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub correct: usize,
    pub total: usize,
}

impl Tally {
    /// Counts one answer.
    pub fn add(&mut self, correct: bool) {
        self.correct += correct as usize;
        self.total += 1;
    }

    /// `correct / total`, `None` when nothing was counted.
    pub fn accuracy(&self) -> Option<f64> {
        (self.total > 0).then(|| self.correct as f64 / self.total as f64)
    }
}

/// Tallies `(key, correct)` pairs by key: accuracy per family, per answer
/// word, per anything.
pub fn tally_by<K: Ord>(scored: impl IntoIterator<Item = (K, bool)>) -> BTreeMap<K, Tally> {
    let mut out: BTreeMap<K, Tally> = BTreeMap::new();
    for (key, correct) in scored {
        out.entry(key).or_default().add(correct);
    }
    out
}

/// The columns of an [`AccuracyTable`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Column {
    /// Seen pairs in seen wording: what training looked like.
    Seen,
    /// A held-out (shape, colour) pair is involved.
    HeldOut,
    /// Seen pairs asked in a wording training never showed.
    UnseenWording,
}

impl Column {
    pub const ALL: [Column; 3] = [Column::Seen, Column::HeldOut, Column::UnseenWording];

    /// The column a turn counts in.
    pub fn of(meta: &TurnMeta) -> Column {
        match (meta.pairs, meta.wording) {
            (Pairs::HeldOut, _) => Column::HeldOut,
            (Pairs::Seen, Wording::Unseen) => Column::UnseenWording,
            (Pairs::Seen, Wording::Seen) => Column::Seen,
        }
    }

    fn title(self) -> &'static str {
        match self {
            Column::Seen => "seen",
            Column::HeldOut => "held-out pairs",
            Column::UnseenWording => "unseen wording",
        }
    }
}

// ANCHOR: table
/// Exact-match accuracy by row (each family, each number of objects, each
/// turn, and all turns) and by [`Column`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AccuracyTable {
    /// `(row name, one tally per column of Column::ALL)`, in display order.
    pub rows: Vec<(String, [Tally; 3])>,
}

/// Builds the table from each turn's metadata and whether it was answered
/// right.
pub fn accuracy_table(scored: &[(TurnMeta, bool)]) -> AccuracyTable {
    let column = |m: &TurnMeta| Column::ALL.iter().position(|&c| c == Column::of(m));
    let mut rows: Vec<(String, [Tally; 3])> = Vec::new();
    let mut add_rows = |name: &dyn Fn(&TurnMeta) -> Option<String>, order: Vec<String>| {
        let mut by: BTreeMap<String, [Tally; 3]> = BTreeMap::new();
        for (meta, correct) in scored {
            if let (Some(row), Some(c)) = (name(meta), column(meta)) {
                by.entry(row).or_default()[c].add(*correct);
            }
        }
        for key in order {
            if let Some(t) = by.remove(&key) {
                rows.push((key, t));
            }
        }
    };
    add_rows(
        &|m| Some(m.family.name().to_string()),
        Family::ALL.iter().map(|f| f.name().to_string()).collect(),
    );
    let objects = |n: usize| format!("{n} object{}", if n == 1 { "" } else { "s" });
    add_rows(
        &|m| Some(objects(m.objects)),
        (1..=9).map(objects).collect(),
    );
    let turn = |t: usize| format!("turn {}", t + 1);
    add_rows(&|m| Some(turn(m.turn)), (0..3).map(turn).collect());
    add_rows(&|_| Some("all".to_string()), vec!["all".to_string()]);
    AccuracyTable { rows }
}
// ANCHOR_END: table

impl AccuracyTable {
    /// The tally of a row and column, if the row exists.
    pub fn get(&self, row: &str, column: Column) -> Option<Tally> {
        let c = Column::ALL.iter().position(|&x| x == column)?;
        self.rows.iter().find(|(r, _)| r == row).map(|(_, t)| t[c])
    }

    /// A Markdown table: `97.5% (200)` a cell, empty where nothing counted.
    pub fn render(&self) -> String {
        let mut out = String::from("| |");
        for c in Column::ALL {
            let _ = write!(out, " {} |", c.title());
        }
        out.push_str("\n| --- | ---: | ---: | ---: |\n");
        for (name, tallies) in &self.rows {
            let _ = write!(out, "| {name} |");
            for t in tallies {
                match t.accuracy() {
                    Some(a) => {
                        let _ = write!(out, " {:.1}% ({}) |", 100.0 * a, t.total);
                    }
                    None => out.push_str(" |"),
                }
            }
            out.push('\n');
        }
        out
    }
}

// ANCHOR: majority
/// The most frequent (normalised) answer of each key in the training
/// answers; ties go to the answer first in sort order, so the baseline is
/// the same every run.
pub fn majority_answers<'a, K: Ord>(
    training: impl IntoIterator<Item = (K, &'a str)>,
) -> BTreeMap<K, String> {
    let mut counts: BTreeMap<K, BTreeMap<String, usize>> = BTreeMap::new();
    for (key, answer) in training {
        *counts
            .entry(key)
            .or_default()
            .entry(normalise(answer))
            .or_default() += 1;
    }
    counts
        .into_iter()
        .filter_map(|(key, answers)| {
            // max_by_key keeps the last maximum: iterate in reverse sort order
            let best = answers.into_iter().rev().max_by_key(|&(_, n)| n)?;
            Some((key, best.0))
        })
        .collect()
}

/// Scores the majority answer of each turn's family against the expected
/// answers, ready for [`accuracy_table`]. A family training never asked is
/// scored wrong.
pub fn majority_baseline(
    expected: &[(TurnMeta, &str)],
    majority: &BTreeMap<Family, String>,
) -> Vec<(TurnMeta, bool)> {
    expected
        .iter()
        .map(|(meta, answer)| {
            let guess = majority.get(&meta.family).map_or("", String::as_str);
            (*meta, exact_match(guess, answer))
        })
        .collect()
}
// ANCHOR_END: majority

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::questions::{Kind, QaData, Split};

    fn meta(
        family: Family,
        pairs: Pairs,
        wording: Wording,
        objects: usize,
        turn: usize,
    ) -> TurnMeta {
        TurnMeta {
            family,
            kind: family.kinds()[0],
            phrasing: 0,
            wording,
            pairs,
            objects,
            turn,
        }
    }

    #[test]
    fn normalisation_forgives_case_space_punctuation_and_number_words() {
        assert_eq!(normalise("  Red. "), "red");
        assert_eq!(normalise("Three!"), "3");
        assert_eq!(normalise("top   LEFT"), "top left");
        assert_eq!(
            normalise("a red circle in the middle ,a blue ring"),
            "a red circle in the middle, a blue ring"
        );
        assert!(exact_match("Yes.", "yes"));
        assert!(exact_match("two", "2"));
        assert!(!exact_match("red", "green"));
        assert!(!exact_match("top", "top left"));
        assert!(!exact_match("", "no"));
        // one is a number word only as a whole word
        assert_eq!(normalise("the red one"), "the red 1");
        assert_eq!(normalise("none"), "none");
    }

    #[test]
    fn tallies_count_by_key() {
        let t = tally_by([("a", true), ("b", false), ("a", false), ("a", true)]);
        assert_eq!(
            t["a"],
            Tally {
                correct: 2,
                total: 3
            }
        );
        assert_eq!(t["b"].accuracy(), Some(0.0));
        assert_eq!(Tally::default().accuracy(), None);
    }

    #[test]
    fn the_table_splits_by_family_column_objects_and_turn() {
        use Family::*;
        let scored = [
            (meta(Attribute, Pairs::Seen, Wording::Seen, 1, 0), true),
            (meta(Attribute, Pairs::Seen, Wording::Seen, 2, 0), false),
            (meta(Attribute, Pairs::HeldOut, Wording::Seen, 2, 0), true),
            (meta(Counting, Pairs::Seen, Wording::Unseen, 6, 1), true),
            (meta(FollowUp, Pairs::HeldOut, Wording::Unseen, 6, 2), false),
        ];
        let table = accuracy_table(&scored);
        let names: Vec<&str> = table.rows.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "attribute",
                "counting",
                "follow-up",
                "1 object",
                "2 objects",
                "6 objects",
                "turn 1",
                "turn 2",
                "turn 3",
                "all"
            ]
        );
        assert_eq!(
            table.get("attribute", Column::Seen),
            Some(Tally {
                correct: 1,
                total: 2
            })
        );
        assert_eq!(
            table.get("attribute", Column::HeldOut),
            Some(Tally {
                correct: 1,
                total: 1
            })
        );
        assert_eq!(
            table.get("counting", Column::UnseenWording),
            Some(Tally {
                correct: 1,
                total: 1
            })
        );
        // held-out pairs in unseen wording count as held-out
        assert_eq!(
            table.get("follow-up", Column::HeldOut),
            Some(Tally {
                correct: 0,
                total: 1
            })
        );
        assert_eq!(
            table.get("all", Column::Seen),
            Some(Tally {
                correct: 1,
                total: 2
            })
        );
        assert_eq!(table.get("describe", Column::Seen), None);
        let md = table.render();
        assert!(
            md.starts_with("| | seen | held-out pairs | unseen wording |"),
            "{md}"
        );
        assert!(
            md.contains("| attribute | 50.0% (2) | 100.0% (1) | |"),
            "{md}"
        );
    }

    #[test]
    fn the_majority_answer_wins_and_ties_break_by_sort_order() {
        use Family::*;
        let training = [
            (Existence, "yes"),
            (Existence, "No"),
            (Existence, "no."),
            (Counting, "2"),
            (Counting, "1"),
        ];
        let m = majority_answers(training);
        assert_eq!(m[&Existence], "no");
        assert_eq!(m[&Counting], "1");
        let expected = [
            (meta(Existence, Pairs::Seen, Wording::Seen, 1, 0), "no"),
            (meta(Existence, Pairs::Seen, Wording::Seen, 1, 0), "yes"),
            (meta(Counting, Pairs::HeldOut, Wording::Seen, 1, 0), "one"),
            (
                meta(Describe, Pairs::Seen, Wording::Seen, 1, 0),
                "a big red circle",
            ),
        ];
        let scored = majority_baseline(&expected, &m);
        let ok: Vec<bool> = scored.iter().map(|s| s.1).collect();
        assert_eq!(ok, [true, false, true, false]);
    }

    #[test]
    fn on_generated_data_yes_no_families_sit_near_half_for_the_majority() {
        let d = QaData::default();
        let (train, _) = d.batch(0, 400);
        let training: Vec<(Family, &str)> = train
            .iter()
            .flat_map(|e| &e.conversation.turns)
            .map(|t| (t.meta.family, t.assistant.as_str()))
            .collect();
        let majority = majority_answers(training);
        let (eval, _) = d.eval_set(Split::TRAIN, 400);
        let expected: Vec<(TurnMeta, &str)> = eval
            .iter()
            .flat_map(|e| &e.conversation.turns)
            .map(|t| (t.meta, t.assistant.as_str()))
            .collect();
        let table = accuracy_table(&majority_baseline(&expected, &majority));
        let acc = |f: Family| {
            table
                .get(f.name(), Column::Seen)
                .unwrap()
                .accuracy()
                .unwrap()
        };
        assert!(
            (0.35..0.65).contains(&acc(Family::Existence)),
            "{}",
            table.render()
        );
        assert!(acc(Family::Describe) < 0.05, "{}", table.render());
        assert!(acc(Family::Attribute) < 0.5, "{}", table.render());
        assert_eq!(Kind::Exists.family(), Family::Existence);
    }
}
