#!/usr/bin/env bash
# Regenerates every figure and table under book/src/generated/ that a program
# writes. Each line runs one deterministic example (seeded, no timings, no
# dates, no absolute paths), so CI can run this and then require that
# book/src/generated/ is unchanged. Add one line per generator, in book order.
# Benchmark tables (tools/bench_report.py) are NOT made here: timings differ
# between machines.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

cargo run --release -p train --example facts # the defaults and sizes the chapters quote
cargo run --release -p tokenizer --example chapter
cargo run --release -p embedding --example positions
cargo run --release -p attention --example attention_figures
cargo run --release -p vision --example vision_figures
cargo run --release -p vision --example spectrogram
cargo run --release -p model --example chapter
cargo run --release -p model --example decoding
cargo run --release -p model --example multimodal
cargo run --release -p train --example using # the parts that need no trained model
python3 tools/bench_ladder.py # from the committed benchmark tables
