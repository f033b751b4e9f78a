//! Training and encoding throughput.
//!
//! The corpus is the file named by `TOKENIZER_CORPUS` if set, else a
//! generated one (2 MB of deterministic pseudo-English), so the benches run
//! in any checkout. The book's figures use the 10 MB corpus:
//!
//! ```text
//! TOKENIZER_CORPUS=../shared/data/corpus-10mb.txt cargo bench -p tokenizer
//! ```
//!
//! Groups (ids name the corpus size and the vocabulary size):
//! - `bpe_train/reference` and `bpe_train/fast` on the first 100 KB, to 512
//!   tokens: the same merges, the speed-up of the fast trainer;
//! - `bpe_train/fast` on the whole corpus to 4096 tokens (counting the
//!   pieces included; 512 in test mode);
//! - `bpe_encode/cold_cache` (the piece cache emptied first) and
//!   `bpe_encode/warm_cache`, in bytes per second;
//! - `pretokenize/split`: the scanner alone.
//!
//! Under `cargo test --benches` (criterion's test mode, one run each) the
//! corpus is a small generated one, so CI stays fast.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use tokenizer::{Split, Tokenizer, WordCounts, split, train_fast, train_reference};

/// A deterministic pseudo-English corpus of about `bytes` bytes: common
/// words drawn with a skewed distribution, punctuation, numbers, contractions,
/// some accented words and emoji, one paragraph per line.
fn generated_corpus(bytes: usize) -> String {
    const WORDS: &[&str] = &[
        "the",
        "of",
        "and",
        "to",
        "a",
        "in",
        "is",
        "that",
        "for",
        "it",
        "as",
        "with",
        "be",
        "on",
        "not",
        "this",
        "by",
        "are",
        "or",
        "from",
        "at",
        "which",
        "an",
        "value",
        "function",
        "type",
        "returns",
        "string",
        "error",
        "file",
        "the",
        "memory",
        "thread",
        "option",
        "trait",
        "method",
        "reference",
        "example",
        "compiler",
        "program",
        "variable",
        "data",
        "vector",
        "iterator",
        "closure",
        "lifetime",
        "borrow",
        "module",
        "crate",
        "test",
        "buffer",
        "stream",
        "event",
        "callback",
        "process",
        "command",
        "branch",
        "commit",
        "café",
        "naïve",
        "Größe",
        "данные",
        "数据",
        "🦀",
        "🎉",
        "it's",
        "don't",
        "we'll",
    ];
    // rarer made-up words from syllables, so the vocabulary has room to grow
    const SYLLABLES: &[&str] = &[
        "ka", "ro", "mi", "sen", "tal", "po", "ver", "lin", "dus", "ex", "qua", "bri", "on", "zel",
        "mu", "ta", "gor", "fi", "nep", "ash",
    ];
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = || {
        // xorshift64*: small, deterministic, good enough for text
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33
    };
    let mut text = String::with_capacity(bytes + 100);
    while text.len() < bytes {
        let sentences = 1 + next() % 5;
        for _ in 0..sentences {
            let words = 3 + next() % 12;
            for w in 0..words {
                // squaring a uniform number favours the first words
                let u = (next() % 1000) as f64 / 1000.0;
                let made_up;
                let word = if next() % 5 == 0 {
                    let n = 2 + next() % 3;
                    made_up = (0..n)
                        .map(|_| SYLLABLES[(next() % SYLLABLES.len() as u64) as usize])
                        .collect::<String>();
                    &made_up
                } else {
                    WORDS[(u * u * WORDS.len() as f64) as usize]
                };
                if w == 0 {
                    let mut c = word.chars();
                    let first = c.next().unwrap().to_uppercase();
                    text.extend(first);
                    text.push_str(c.as_str());
                } else {
                    text.push(' ');
                    text.push_str(word);
                }
                match next() % 40 {
                    0 => text.push(','),
                    1 => text.push_str(&format!(" {}", next() % 100_000)),
                    2 => text.push_str(" ("),
                    3 => text.push(')'),
                    _ => {}
                }
            }
            text.push_str(if next() % 6 == 0 { "? " } else { ". " });
        }
        text.push('\n');
    }
    text
}

/// `cargo bench` passes `--bench`; `cargo test --benches` does not.
fn bench_mode() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// The vocabulary of the whole-corpus benches: 4096, or 512 in test mode.
fn vocab() -> usize {
    if bench_mode() { 4096 } else { 512 }
}

/// The corpus and a label for its size, e.g. `"10MB"`.
fn corpus() -> (String, String) {
    let bench_mode = bench_mode();
    let text = match std::env::var("TOKENIZER_CORPUS") {
        Ok(path) if bench_mode => std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("TOKENIZER_CORPUS={path}: {e}")),
        _ if bench_mode => generated_corpus(2_000_000),
        _ => generated_corpus(20_000), // criterion's test mode: one quick run
    };
    let label = size_label(text.len());
    (text, label)
}

fn size_label(bytes: usize) -> String {
    if bytes >= 1_000_000 {
        format!("{}MB", (bytes as f64 / 1e6).round())
    } else {
        format!("{}KB", (bytes as f64 / 1e3).round())
    }
}

/// The largest char boundary at or below `n`.
fn prefix(text: &str, n: usize) -> &str {
    let mut n = n.min(text.len());
    while !text.is_char_boundary(n) {
        n -= 1;
    }
    &text[..n]
}

fn train(c: &mut Criterion) {
    let (text, label) = corpus();

    // the plain and the fast trainer on the same small slice
    let small = prefix(&text, 100_000.min(text.len() / 2)); // half of the test-mode corpus
    let id = format!("{}_V512", size_label(small.len()));
    for name in ["reference", "fast"] {
        let mut group = c.benchmark_group(format!("bpe_train/{name}"));
        group.sample_size(10);
        group.throughput(Throughput::Bytes(small.len() as u64));
        group.bench_function(BenchmarkId::from_parameter(&id), |b| {
            b.iter(|| {
                if name == "reference" {
                    train_reference([black_box(small)], 512, Split::Gpt4).unwrap()
                } else {
                    train_fast(
                        &WordCounts::from_texts([black_box(small)], Split::Gpt4),
                        512,
                    )
                    .unwrap()
                }
            })
        });
        group.finish();
    }

    // the fast trainer on everything, counting the pieces included
    let mut group = c.benchmark_group("bpe_train/fast");
    group.sample_size(10);
    group.throughput(Throughput::Bytes(text.len() as u64));
    group.bench_function(
        BenchmarkId::from_parameter(format!("{label}_V{}", vocab())),
        |b| b.iter(|| Tokenizer::train(black_box(&text), vocab()).unwrap()),
    );
    group.finish();
}

fn encode(c: &mut Criterion) {
    let (text, label) = corpus();
    let tok = Tokenizer::train(&text, vocab()).unwrap();
    let id = format!("{label}_V{}", vocab());

    let mut group = c.benchmark_group("bpe_encode/cold_cache");
    group.sample_size(10);
    group.throughput(Throughput::Bytes(text.len() as u64));
    group.bench_function(BenchmarkId::from_parameter(&id), |b| {
        b.iter(|| {
            tok.clear_cache();
            tok.encode_ordinary(black_box(&text))
        })
    });
    group.finish();

    let mut group = c.benchmark_group("bpe_encode/warm_cache");
    group.sample_size(10);
    group.throughput(Throughput::Bytes(text.len() as u64));
    tok.encode_ordinary(&text);
    group.bench_function(BenchmarkId::from_parameter(&id), |b| {
        b.iter(|| tok.encode_ordinary(black_box(&text)))
    });
    group.finish();

    let mut group = c.benchmark_group("pretokenize/split");
    group.sample_size(10);
    group.throughput(Throughput::Bytes(text.len() as u64));
    group.bench_function(BenchmarkId::from_parameter(&label), |b| {
        b.iter(|| split(black_box(&text)).count())
    });
    group.finish();
}

criterion_group!(benches, train, encode);
criterion_main!(benches);
