//! The multimodal recipe on the user's own pictures: a folder with a
//! `questions.tsv` (`file<TAB>question<TAB>answer[<TAB>family]`), and
//! optionally a `captions.tsv` (`file<TAB>caption`).
//!
//! The stages map onto what the folder holds:
//!
//! | stage | with captions.tsv | questions only |
//! | --- | --- | --- |
//! | 1 vision tower | CLIP on the captions | from another run (`--vision-from RUN`) |
//! | 2 language model | the questions, answers and captions as text | the questions and answers |
//! | 3 alignment | "describe the picture" → the caption | skipped (said so) |
//! | 4 instruction tuning | the questions | the questions |
//!
//! Every 10th line of each file is validation data, never trained on.
//! Images of any size are resized to the recipe's side. The evaluation
//! reports exact-match accuracy per answer word and, where the file names
//! one, per question family, for the training and the validation lines.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use model::{ChatTokens, ImageSlot, Turn, Vlm, collate, encode_chat};
use ndarray::{Array4, Axis};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};
use tokenizer::Tokenizer;

use crate::data::answers::{Tally, exact_match, tally_by};
use crate::data::folder::{CAPTIONS_FILE, FolderData};
use crate::data::mix;
use crate::data::qa_folder::{QUESTIONS_FILE, QuestionData};
use crate::data::questions::chat_tokenizer;
use crate::run::RunError;
use crate::vlm_eval::answer_turns_of;
use crate::vlm_run::{AnswerWeights, Stage, VlmData, VlmRunConfig, weighed};
use crate::vlm_step::ChatBatch;
use crate::{Batch, Tokens};

/// The question own captions answer in stage 3.
pub const DESCRIBE: &str = "describe the picture";

/// A folder of the user's pictures with its questions (and captions).
#[derive(Debug)]
pub struct OwnVlmData {
    questions: QuestionData,
    captions: Option<FolderData>,
    seed: u64,
    batch: [usize; 4], // each stage's batch size
    answer_weights: AnswerWeights,
}

impl OwnVlmData {
    /// Reads the folder: `questions.tsv` (required) and `captions.tsv` (if
    /// there), every image resized to the recipe's side.
    ///
    /// # Errors
    /// [`RunError::Data`] naming the file and line of the first problem;
    /// [`RunError::BadValue`] if there is no `questions.tsv`, or no
    /// `captions.tsv` and no `--vision-from` (stage 1 then has nothing to
    /// learn from).
    pub fn load(dir: &Path, config: &VlmRunConfig) -> Result<Self, RunError> {
        if !dir.join(QUESTIONS_FILE).is_file() {
            return Err(RunError::BadValue {
                name: "data",
                why: format!("{} has no {QUESTIONS_FILE}", dir.display()),
            });
        }
        let has_captions = dir.join(CAPTIONS_FILE).is_file();
        if !has_captions && config.vision_from.is_none() {
            return Err(RunError::BadValue {
                name: "vision-from",
                why: format!(
                    "{} has no {CAPTIONS_FILE} to train a vision tower on: take one from another run with --vision-from RUN",
                    dir.display()
                ),
            });
        }
        let questions = QuestionData::load(dir, config.side).map_err(RunError::Data)?;
        let captions = has_captions
            .then(|| FolderData::load(dir, config.side))
            .transpose()
            .map_err(RunError::Data)?;
        Ok(OwnVlmData {
            questions,
            captions,
            seed: config.seed,
            batch: [
                config.clip.batch_size,
                config.lm.batch_size,
                config.align.batch_size,
                config.instruct.batch_size,
            ],
            answer_weights: config.answer_weights,
        })
    }

    /// The training lines (question items) of step `step` of `stage`.
    fn pick(&self, stage: Stage, step: u64, from: &[usize]) -> Vec<usize> {
        let salt = stage as u64 + 1;
        let mut rng = StdRng::seed_from_u64(mix(self.seed ^ (salt << 48), step));
        let n = self.batch[stage as usize].min(from.len());
        rand::seq::index::sample(&mut rng, from.len(), n)
            .into_iter()
            .map(|k| from[k])
            .collect()
    }

    /// The user's question with the picture before it, as the model reads it.
    fn with_image(question: &str) -> String {
        if question.contains(tokenizer::IMAGE) {
            question.to_string()
        } else {
            format!("{} {question}", tokenizer::IMAGE)
        }
    }
}

impl VlmData for OwnVlmData {
    fn train_tokenizer(&self) -> Result<Tokenizer, RunError> {
        let mut lines: Vec<String> = Vec::new();
        for i in self.questions.train_indices() {
            let item = &self.questions.items[i];
            lines.push(item.question.clone());
            lines.push(item.answer.clone());
        }
        if let Some(captions) = &self.captions {
            lines.push(DESCRIBE.to_string());
            for i in captions.train_indices() {
                lines.push(captions.items[i].caption.clone());
            }
        }
        chat_tokenizer(&lines).map_err(RunError::Tokenizer)
    }

    fn clip_batch(&self, step: u64, tokens: &Tokens) -> Batch {
        let captions = self
            .captions
            .as_ref()
            .expect("stage 1 trains only with captions.tsv");
        captions.batch(self.seed, step, self.batch[0], tokens)
    }

    fn chat_batch(
        &self,
        stage: Stage,
        step: u64,
        tokenizer: &Tokenizer,
        tokens: &ChatTokens,
    ) -> ChatBatch {
        let (turns, images, slot, all_tokens): (Vec<Turn>, Array4<f32>, _, _) = match stage {
            Stage::Clip | Stage::Lm => {
                // the text alone: questions and answers (and captions as answers to DESCRIBE)
                let picked = self.pick(Stage::Lm, step, &self.questions.train_indices());
                let mut turns: Vec<Turn> = picked
                    .iter()
                    .map(|&i| {
                        let item = &self.questions.items[i];
                        Turn::new(
                            item.question.replace(tokenizer::IMAGE, ""),
                            item.answer.as_str(),
                        )
                    })
                    .collect();
                if let Some(captions) = &self.captions {
                    let picked = self.pick(Stage::Align, step, &captions.train_indices());
                    turns.extend(
                        picked
                            .iter()
                            .take(turns.len() / 4 + 1)
                            .map(|&i| Turn::new(DESCRIBE, captions.items[i].caption.as_str())),
                    );
                }
                (
                    turns,
                    Array4::zeros((0, 3, 1, 1)),
                    ImageSlot::Forbidden,
                    true,
                )
            }
            Stage::Align => {
                let captions = self
                    .captions
                    .as_ref()
                    .expect("stage 3 runs only with captions.tsv");
                let picked = self.pick(Stage::Align, step, &captions.train_indices());
                let turns = picked
                    .iter()
                    .map(|&i| {
                        Turn::new(
                            Self::with_image(DESCRIBE),
                            captions.items[i].caption.as_str(),
                        )
                    })
                    .collect();
                (
                    turns,
                    captions.images.select(Axis(0), &picked),
                    ImageSlot::Required,
                    false,
                )
            }
            Stage::Instruct => {
                let q = &self.questions;
                let picked = self.pick(Stage::Instruct, step, &q.train_indices());
                let turns = picked
                    .iter()
                    .map(|&i| {
                        Turn::new(
                            Self::with_image(&q.items[i].question),
                            q.items[i].answer.as_str(),
                        )
                    })
                    .collect();
                let rows: Vec<usize> = picked.iter().map(|&i| q.image_of[i]).collect();
                (
                    turns,
                    q.images.select(Axis(0), &rows),
                    ImageSlot::Required,
                    false,
                )
            }
        };
        let encoded: Vec<_> = turns
            .iter()
            .map(|turn| {
                // the files were checked for role tokens when the tokenizer learnt them; a
                // line that still does not encode (a forged role) is cut to its answer
                let chat = encode_chat(tokenizer, tokens, std::slice::from_ref(turn), slot)
                    .unwrap_or_else(|_| model::ChatExample {
                        ids: vec![tokens.user, tokens.assistant, tokens.end],
                        weights: vec![0.0, 0.0, 1.0],
                    });
                weighed(chat, all_tokens, self.answer_weights)
            })
            .collect();
        let (ids, weights) = collate(&encoded, tokens.pad);
        ChatBatch {
            images,
            tokens: ids,
            weights,
        }
    }

    fn has_captions(&self) -> bool {
        self.captions.is_some()
    }
}

/// Accuracy on own questions: all, per answer word, per family.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OwnScores {
    pub all: (usize, usize),
    pub by_answer: BTreeMap<String, (usize, usize)>,
    pub by_family: BTreeMap<String, (usize, usize)>,
}

/// The training lines (at most this many) and every validation line are
/// evaluated.
pub const MAX_EVAL_TRAIN: usize = 200;

/// Evaluates a model on own questions: the validation lines, and up to
/// [`MAX_EVAL_TRAIN`] training lines (evenly spread).
pub fn evaluate_own(
    vlm: &Vlm,
    tokenizer: &Tokenizer,
    dir: &Path,
    side: usize,
) -> Result<(OwnScores, OwnScores), RunError> {
    let data = QuestionData::load(dir, side).map_err(RunError::Data)?;
    let train = data.train_indices();
    let step = train.len().div_ceil(MAX_EVAL_TRAIN).max(1);
    let train: Vec<usize> = train.into_iter().step_by(step).collect();
    let score = |indices: &[usize]| {
        let questions: Vec<(String, usize)> = indices
            .iter()
            .map(|&i| {
                (
                    OwnVlmData::with_image(&data.items[i].question),
                    data.image_of[i],
                )
            })
            .collect();
        let answers = answer_turns_of(vlm, tokenizer, &questions, &data.images.view());
        let scored: Vec<(usize, bool)> = indices
            .iter()
            .zip(&answers)
            .map(|(&i, a)| (i, exact_match(a, &data.items[i].answer)))
            .collect();
        let pairs = |t: Tally| (t.correct, t.total);
        let all = tally_by(scored.iter().map(|&(_, ok)| ((), ok)));
        OwnScores {
            all: all.get(&()).copied().map_or((0, 0), pairs),
            by_answer: tally_by(
                scored
                    .iter()
                    .map(|&(i, ok)| (crate::data::answers::normalise(&data.items[i].answer), ok)),
            )
            .into_iter()
            .map(|(k, t)| (k, pairs(t)))
            .collect(),
            by_family: tally_by(
                scored
                    .iter()
                    .filter_map(|&(i, ok)| data.items[i].family.clone().map(|f| (f, ok))),
            )
            .into_iter()
            .map(|(k, t)| (k, pairs(t)))
            .collect(),
        }
    };
    Ok((score(&train), score(&data.validation_indices())))
}

/// The scores as Markdown tables.
pub fn render_own(train: &OwnScores, validation: &OwnScores) -> String {
    let pct = |(c, t): (usize, usize)| {
        if t == 0 {
            String::new()
        } else {
            format!("{:.1}% ({t})", 100.0 * c as f64 / t as f64)
        }
    };
    let mut out = String::from("| | training lines | validation lines |\n| --- | ---: | ---: |\n");
    out += &format!("| all | {} | {} |\n", pct(train.all), pct(validation.all));
    let mut table = |title: &str,
                     a: &BTreeMap<String, (usize, usize)>,
                     b: &BTreeMap<String, (usize, usize)>| {
        let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
        for key in keys {
            let get = |m: &BTreeMap<String, (usize, usize)>| m.get(key).copied().unwrap_or((0, 0));
            out += &format!("| {title} `{key}` | {} | {} |\n", pct(get(a)), pct(get(b)));
        }
    };
    table("family", &train.by_family, &validation.by_family);
    table("answer", &train.by_answer, &validation.by_answer);
    out
}

/// The data folder of an own-data run, as its recipe records it.
pub fn recorded_data(config: &VlmRunConfig) -> Option<&PathBuf> {
    config.data.as_ref()
}
