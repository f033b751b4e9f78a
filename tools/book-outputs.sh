#!/bin/sh
# Regenerate every deterministic book output; CI fails if book/src/generated/ then differs.
set -eu
cd "$(dirname "$0")/.."
cargo run --release -p tokenizer --example chapter
