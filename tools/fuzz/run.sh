#!/usr/bin/env bash
# Runs every fuzz target in turn (or the ones named) with libFuzzer:
#   tools/fuzz/run.sh                      # each for 3 million inputs or 25 minutes
#   RUNS=100000 tools/fuzz/run.sh image    # one target, fewer inputs
# Needs cargo-fuzz (`cargo install cargo-fuzz`) and a nightly compiler, or
# the stable one with RUSTC_BOOTSTRAP=1 as here. New inputs go to
# $WORK/<target> (not to the committed corpus), crashes to $WORK/artifacts,
# each target's whole log to $WORK/<target>.log.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
RUNS=${RUNS:-3000000}
SECONDS_EACH=${SECONDS_EACH:-1500}
WORK=${WORK:-target/fuzz-work}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target/fuzz}
RUSTC_BOOTSTRAP=1 cargo fuzz build --fuzz-dir tools/fuzz -O --sanitizer none
bin=$CARGO_TARGET_DIR/x86_64-unknown-linux-gnu/release
targets=("$@")
if [[ ${#targets[@]} -eq 0 ]]; then
    mapfile -t targets < <(ls tools/fuzz/fuzz_targets | sed 's/\.rs$//')
fi
mkdir -p "$WORK/artifacts"
for t in "${targets[@]}"; do
    mkdir -p "$WORK/$t"
    "$bin/$t" "$WORK/$t" "tools/fuzz/corpus/$t" -runs="$RUNS" -max_total_time="$SECONDS_EACH" \
        -rss_limit_mb=2048 -artifact_prefix="$WORK/artifacts/$t-" -print_final_stats=1 \
        >"$WORK/$t.log" 2>&1 || true
    echo "== $t"
    grep -E "^stat::|ERROR|panicked|DONE|Done" "$WORK/$t.log" || true
done
