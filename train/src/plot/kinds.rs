//! `kinds.md`: how often each kind of question is answered right, run
//! beside run (the seeds of a recipe, or two recipes), on seen pairs in
//! seen wording. A family of the results table holds several kinds
//! (attribute: a colour, a shape, a size, a place); this table takes them
//! apart.
//!
//! Read from each run's `metrics.json`; a file written before the turns
//! recorded their kind gets a line asking for `train eval RUN`.

use crate::data::answers::{Tally, tally_by};
use crate::data::questions::{Family, Kind};
use crate::vlm_ablate::Spread;
use crate::vlm_eval::Answered;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// One run's answers, and how the table names it.
#[derive(Debug, Clone, PartialEq)]
pub struct RunAnswers {
    /// The runs of one recipe share a group (`baseline`); the sentences
    /// under the table speak of each group.
    pub group: String,
    /// The run within its group (`seed 0`); empty when the group is one run.
    pub label: String,
    pub answered: Vec<Answered>,
}

impl RunAnswers {
    /// `baseline, seed 0`, or the group alone.
    pub fn name(&self) -> String {
        if self.label.is_empty() {
            self.group.clone()
        } else {
            format!("{}, {}", self.group, self.label)
        }
    }
}

/// At or above this accuracy (%) a kind counts as solved: the issue's
/// target for attribute, existence and counting on seen pairs.
pub const SOLVED: f64 = 98.0;
/// Runs of one group this many points apart or more on a kind differ on it.
pub const APART: f64 = 25.0;

// ANCHOR: kinds
/// A kind of question, and how often each run answers it right.
#[derive(Debug, Clone, PartialEq)]
pub struct KindRow {
    pub family: Family,
    pub kind: Kind,
    /// The kind's first phrasing that training shows.
    pub question: &'static str,
    /// One tally per run, in the order given.
    pub runs: Vec<Tally>,
}

impl KindRow {
    /// The accuracy (%) of each run of `runs` (indices) that asked it.
    fn percents(&self, runs: &[usize]) -> Vec<f64> {
        (runs.iter())
            .filter_map(|&r| self.runs[r].accuracy())
            .map(|a| 100.0 * a)
            .collect()
    }
}

/// A row per kind any run was asked about (seen pairs, seen wording), in
/// the order of the families and of their kinds.
pub fn kind_rows(runs: &[RunAnswers]) -> Vec<KindRow> {
    let per_run: Vec<BTreeMap<&str, Tally>> = (runs.iter())
        .map(|run| {
            tally_by(
                (run.answered.iter())
                    .filter(|a| !a.held_out && !a.unseen_wording)
                    .map(|a| (a.kind.as_str(), a.correct)),
            )
        })
        .collect();
    let mut rows = Vec::new();
    for family in Family::ALL {
        for &kind in family.kinds() {
            let name = format!("{kind:?}");
            let tallies: Vec<Tally> = (per_run.iter())
                .map(|tallies| tallies.get(name.as_str()).copied().unwrap_or_default())
                .collect();
            if tallies.iter().all(|t| t.total == 0) {
                continue;
            }
            let question = (kind.phrasings().iter())
                .find(|p| !p.unseen)
                .map_or("", |p| p.template);
            rows.push(KindRow {
                family,
                kind,
                question,
                runs: tallies,
            });
        }
    }
    rows
}
// ANCHOR_END: kinds

/// `kinds.md`: the table, then for each group what is solved in every
/// run, where its runs lie far apart, and which of the two lookups of one
/// object (by colour for its shape, by shape for its colour) is ahead.
pub fn kinds_md(runs: &[RunAnswers]) -> String {
    if let Some(run) = runs
        .iter()
        .find(|r| r.answered.iter().any(|a| a.kind.is_empty()))
    {
        return format!(
            "The `metrics.json` of {} does not record the kind of each question: \
             `train eval RUN` evaluates it again and writes it.\n",
            run.name()
        );
    }
    let rows = kind_rows(runs);
    if rows.is_empty() {
        return "No question about seen pairs in seen wording was asked.\n".to_string();
    }
    let mut text = String::from("| family | kind of question (a phrasing training shows) |");
    for run in runs {
        let _ = write!(text, " {} |", run.name());
    }
    text.push_str("\n| --- | --- |");
    text.push_str(&" ---: |".repeat(runs.len()));
    for row in &rows {
        let _ = write!(text, "\n| {} | `{}` |", row.family.name(), row.question);
        for tally in &row.runs {
            let _ = match tally.accuracy() {
                Some(a) => write!(text, " {:.1}% ({}) |", 100.0 * a, tally.total),
                None => write!(text, " – (0) |"),
            };
        }
    }
    text.push_str("\n\nSeen pairs in seen wording; each cell is the share answered right (of so many questions).");
    for group in groups(runs) {
        text.push(' ');
        text.push_str(&group_sentence(&rows, &group));
    }
    text.push('\n');
    text
}

/// The groups in order of first appearance, each with its runs' indices.
fn groups(runs: &[RunAnswers]) -> Vec<(String, Vec<usize>)> {
    let mut groups: Vec<(String, Vec<usize>)> = Vec::new();
    for (i, run) in runs.iter().enumerate() {
        match groups.iter_mut().find(|(g, _)| *g == run.group) {
            Some((_, members)) => members.push(i),
            None => groups.push((run.group.clone(), vec![i])),
        }
    }
    groups
}

fn quoted(rows: &[&KindRow]) -> String {
    let names: Vec<String> = rows.iter().map(|r| format!("`{}`", r.question)).collect();
    names.join(", ")
}

/// What one group's runs have in common and where they differ.
fn group_sentence(rows: &[KindRow], (group, members): &(String, Vec<usize>)) -> String {
    let asked: Vec<&KindRow> = (rows.iter())
        .filter(|r| !r.percents(members).is_empty())
        .collect();
    let every = if members.len() == 1 {
        ""
    } else {
        " in every run"
    };
    let solved: Vec<&KindRow> = (asked.iter().copied())
        .filter(|r| {
            let p = r.percents(members);
            p.len() == members.len() && p.iter().all(|&p| p >= SOLVED)
        })
        .collect();
    let listed = |list: String| {
        if list.is_empty() {
            list
        } else {
            format!(" ({list})")
        }
    };
    let mut text = format!(
        "**{group}** ({} run{}): {} of {} kinds at {SOLVED:.0}% or more{every}{}",
        members.len(),
        if members.len() == 1 { "" } else { "s" },
        solved.len(),
        asked.len(),
        listed(quoted(&solved)),
    );
    if members.len() > 1 {
        let apart: Vec<(&KindRow, f64, f64)> = (asked.iter().copied())
            .filter_map(|r| {
                let spread = Spread::of(&r.percents(members))?;
                (spread.max - spread.min >= APART).then_some((r, spread.min, spread.max))
            })
            .collect();
        let list: Vec<String> = (apart.iter())
            .map(|(r, lo, hi)| format!("`{}` {lo:.1}–{hi:.1}%", r.question))
            .collect();
        let _ = write!(
            text,
            "; {} kind{} with runs {APART:.0} points or more apart{}",
            apart.len(),
            if apart.len() == 1 { "" } else { "s" },
            listed(list.join(", ")),
        );
    }
    text.push('.');
    if let Some(lookups) = lookups(rows, members) {
        text.push(' ');
        text.push_str(&lookups);
    }
    text
}

/// Which of the two lookups of one object is ahead in the group's runs:
/// `what shape is the {c} one?` finds it by its colour and names its
/// shape, `what colour is the {s}?` finds it by its shape and names its
/// colour. The same two facts, looked up the other way round.
fn lookups(rows: &[KindRow], members: &[usize]) -> Option<String> {
    let row = |kind| rows.iter().find(|r| r.kind == kind);
    let (by_colour, by_shape) = (row(Kind::Shape)?, row(Kind::Colour)?);
    let (mut colour_first, mut shape_first, mut even) = (0, 0, 0);
    for &r in members {
        let (Some(a), Some(b)) = (by_colour.runs[r].accuracy(), by_shape.runs[r].accuracy()) else {
            continue;
        };
        match a.total_cmp(&b) {
            std::cmp::Ordering::Greater => colour_first += 1,
            std::cmp::Ordering::Less => shape_first += 1,
            std::cmp::Ordering::Equal => even += 1,
        }
    }
    let n = colour_first + shape_first + even;
    if n == 0 {
        return None;
    }
    let runs = |k: usize| {
        if n == 1 {
            "its run".to_string()
        } else {
            format!("{k} of {n} runs")
        }
    };
    let even = if even > 0 {
        format!(", even in {even}")
    } else {
        String::new()
    };
    let colour = format!("lookup by colour (`{}`)", by_colour.question);
    let shape = format!("lookup by shape (`{}`)", by_shape.question);
    Some(match (colour_first, shape_first) {
        (0, 0) => format!("The {colour} and the {shape} are even in {}.", runs(n)),
        (c, 0) => format!("The {colour} is ahead of the {shape} in {}{even}.", runs(c)),
        (0, s) => format!("The {shape} is ahead of the {colour} in {}{even}.", runs(s)),
        (c, s) => format!(
            "The {colour} is ahead of the {shape} in {}, behind in {}{even}: \
             the runs do not learn the two in the same order.",
            runs(c),
            runs(s),
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn turn(kind: Kind, correct: bool, held_out: bool, unseen: bool) -> Answered {
        Answered {
            question: String::new(),
            expected: "red".to_string(),
            answer: if correct { "red" } else { "blue" }.to_string(),
            blind: String::new(),
            family: kind.family().name().to_string(),
            correct,
            kind: format!("{kind:?}"),
            phrasing: kind.phrasings()[0].template.to_string(),
            unseen_wording: unseen,
            held_out,
        }
    }

    /// `right` of `n` answers of `kind` right, seen pairs and wording.
    fn answers(kind: Kind, right: usize, n: usize) -> Vec<Answered> {
        (0..n)
            .map(|i| turn(kind, i < right, false, false))
            .collect()
    }

    fn run(group: &str, label: &str, answered: Vec<Answered>) -> RunAnswers {
        RunAnswers {
            group: group.to_string(),
            label: label.to_string(),
            answered,
        }
    }

    #[test]
    fn rows_count_seen_pairs_in_seen_wording_per_kind_and_run() {
        let mut first = answers(Kind::Colour, 3, 4);
        first.extend(answers(Kind::CountAll, 2, 2));
        first.push(turn(Kind::Colour, false, true, false)); // held-out: not counted
        first.push(turn(Kind::Colour, false, false, true)); // unseen wording: not counted
        let second = answers(Kind::Shape, 1, 2);
        let rows = kind_rows(&[run("a", "seed 0", first), run("a", "seed 1", second)]);
        // the families' order: attribute (colour, shape) before counting
        let kinds: Vec<Kind> = rows.iter().map(|r| r.kind).collect();
        assert_eq!(kinds, [Kind::Colour, Kind::Shape, Kind::CountAll]);
        assert_eq!(
            rows[0].runs[0],
            Tally {
                correct: 3,
                total: 4
            }
        );
        assert_eq!(rows[0].runs[1], Tally::default());
        assert_eq!(
            rows[1].runs[1],
            Tally {
                correct: 1,
                total: 2
            }
        );
        assert_eq!(rows[0].question, "what colour is the {s}?");
        assert_eq!(rows[2].family, Family::Counting);
    }

    #[test]
    fn the_sentences_say_what_is_solved_what_lies_apart_and_which_lookup_leads() {
        let seed = |shape: usize, colour: usize| {
            let mut a = answers(Kind::Shape, shape, 100);
            a.extend(answers(Kind::Colour, colour, 100));
            a.extend(answers(Kind::CountAll, 99, 100));
            a
        };
        let runs = [
            run("baseline", "seed 0", seed(100, 75)),
            run("baseline", "seed 1", seed(58, 100)),
            run("long", "seed 0", seed(100, 100)),
        ];
        let md = kinds_md(&runs);
        assert!(md.contains("| family | kind of question (a phrasing training shows) | baseline, seed 0 | baseline, seed 1 | long, seed 0 |"), "{md}");
        assert!(md.contains("| attribute | `what colour is the {s}?` | 75.0% (100) | 100.0% (100) | 100.0% (100) |"), "{md}");
        // solved in both baseline runs: counting only; apart: shape 42 points and colour 25
        assert!(md.contains("**baseline** (2 runs): 1 of 3 kinds at 98% or more in every run (`how many shapes are there?`); 2 kinds with runs 25 points or more apart (`what colour is the {s}?` 75.0–100.0%, `what shape is the {c} one?` 58.0–100.0%)."), "{md}");
        assert!(md.contains("is ahead of the lookup by shape (`what colour is the {s}?`) in 1 of 2 runs, behind in 1 of 2 runs: the runs do not learn the two in the same order."), "{md}");
        // one run: no "apart", no "in every run", the lookups even
        assert!(md.contains("**long** (1 run): 3 of 3 kinds at 98% or more (`what colour is the {s}?`, `what shape is the {c} one?`, `how many shapes are there?`). The lookup by colour (`what shape is the {c} one?`) and the lookup by shape (`what colour is the {s}?`) are even in its run."), "{md}");
    }

    #[test]
    fn one_lookup_ahead_in_every_run_is_said_so() {
        let seed = || {
            let mut a = answers(Kind::Shape, 90, 100);
            a.extend(answers(Kind::Colour, 60, 100));
            a
        };
        let md = kinds_md(&[run("b", "seed 0", seed()), run("b", "seed 1", seed())]);
        assert!(md.contains("| b, seed 0 | b, seed 1 |"), "{md}");
        let alone = kinds_md(&[run("vlm", "", seed())]);
        assert!(
            alone.contains("(a phrasing training shows) | vlm |"),
            "{alone}"
        );
        assert!(md.contains("The lookup by colour (`what shape is the {c} one?`) is ahead of the lookup by shape (`what colour is the {s}?`) in 2 of 2 runs."), "{md}");
        assert!(md.contains("0 of 2 kinds at 98% or more in every run; 0 kinds with runs 25 points or more apart."), "{md}");
    }

    #[test]
    fn old_metrics_and_empty_runs_get_a_sentence() {
        let mut old = answers(Kind::Colour, 1, 1);
        old[0].kind.clear();
        let md = kinds_md(&[run("x", "seed 2", old)]);
        assert!(md.contains("x, seed 2 does not record the kind") && md.contains("train eval RUN"));
        assert_eq!(
            kinds_md(&[run(
                "x",
                "seed 0",
                vec![turn(Kind::Colour, true, true, false)]
            )]),
            "No question about seen pairs in seen wording was asked.\n"
        );
        assert!(kinds_md(&[]).starts_with("No question"));
    }
}
