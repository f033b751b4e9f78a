#!/usr/bin/env bash
# Regenerates the book's figures and tables that come from a trained model:
# the default run's results, the same recipe in the small world, the failure
# cases, the ablation table, the plots of the model's insides, the
# multimodal LLM's results and the outputs of the chapter "Using the
# trained model". Unlike
# tools/book-outputs.sh (deterministic, run by CI) this trains, so CI never
# runs it; run it from a fresh clone before publishing the book, then commit
# book/src/generated/.
#
#   tools/regenerate-figures.sh
#   ABLATION_STEPS=1000 ABLATION_SEEDS=2 tools/regenerate-figures.sh   # shorter ablations
#
# On a quiet 2-core machine the default run takes under two minutes and the
# multimodal LLM's about five; the ablations take most of the time: the
# CLIP ones, 5 variants × 3 seeds of the default run's length (one variant
# twice as long, the ViT's steps slower), about as long as twenty default
# runs; the multimodal ones (step 7b) about two hours and three quarters at
# full length, and the short ones besides. An interrupted ablation starts
# again where it stopped: its finished runs are reused; for the CLIP ones
# delete the folder of the run that was cut short
# (runs/ablate/runs/<variant>/seed-<s>) first, the multimodal ones resume it.
#
# A finished run is reused, not retrained: delete runs/default,
# runs/small-world, runs/ablate, runs/vlm, runs/vlm-ablate or
# runs/vlm-ablate-short to train them again.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

ABLATION_STEPS="${ABLATION_STEPS:-2000}"
ABLATION_SEEDS="${ABLATION_SEEDS:-3}"
VLM_ABLATION_SCALE="${VLM_ABLATION_SCALE:-1}"
VLM_SHORT_SCALE="${VLM_SHORT_SCALE:-0.3}"
TRAIN_OUT=book/src/generated/train

# 1. The default run (runs/default): the model the book describes.
if [ -f runs/default/metrics.json ]; then
    echo "reusing the finished run in runs/default"
else
    cargo run --release -p train
fi

# 1b. The same recipe in the small world of 4 shapes and 5 colours
#     (runs/small-world), for the training chapter's comparison of worlds.
if [ -f runs/small-world/metrics.json ]; then
    echo "reusing the finished run in runs/small-world"
else
    cargo run --release -p train -- --name small-world --shapes 4 --colours 5
fi

# 2. Its results table and sample captions, and the two worlds
#    side by side.
cargo run --release -p train --example publish_run -- runs/default runs/small-world

# 3. What it gets wrong: held-out images with wrong greedy captions, as PNG.
cargo run --release -p train -- failures runs/default \
    --out "$TRAIN_OUT" --link-base generated/train/ --max 12

# 4. The ablations: contrastive only, caption only (and twice as long),
#    both (CNN), both (ViT), each with every seed; the tables, and their
#    figures one by one for the sentences that quote them.
cargo run --release -p train -- ablate --steps "$ABLATION_STEPS" --seeds "$ABLATION_SEEDS" --out runs/ablate
cp runs/ablate/ablations.md runs/ablate/ablations.txt "$TRAIN_OUT/"

# 5. The pictures of the model's insides: loss parts, similarity matrices,
#    embedding space, cross-attention gallery, token neighbours and
#    contextual vectors from the default (CNN) run, and the ViT's attention
#    from the ablation's first ViT run.
cargo run --release -p train -- plot runs/default --out book/src/generated/figures \
    --link-base generated/figures/
cargo run --release -p train -- plot runs/ablate/runs/vit/seed-0 --out target/vit-figures
cp target/vit-figures/vit_cls_attention.png book/src/generated/figures/

# 6. The chapter "Using the trained model": every command on the default run.
cargo run --release -p train --example using -- runs/default

# 7. The multimodal LLM (runs/vlm): the four stages, its results beside the
#    blind and majority baselines, the tower's probe, the gallery and the
#    answer attention, the image positions, the unseen wording; then ask
#    and chat in the chapter "Using the trained model". A finished run is
#    evaluated again (seconds; the same answers), so that its metrics.json
#    holds every field the figures read, whichever version wrote it.
if [ -f runs/vlm/metrics.json ]; then
    echo "reusing the finished run in runs/vlm"
    cargo run --release -p train -- eval runs/vlm
else
    cargo run --release -p train -- vlm
fi
cargo run --release -p train -- plot runs/vlm --out book/src/generated/multimodal/trained \
    --link-base generated/multimodal/trained/
cargo run --release -p train --example using_vlm -- runs/vlm

# 7b. Its ablations, each variant with every seed: at VLM_ABLATION_SCALE of
#     the default run's length (1, the full length, by default: about two
#     hours on two cores, and 45 minutes more for stage 4 three times as
#     long), the tables and their figures one by one for the sentences that
#     quote them; and at VLM_SHORT_SCALE (a third, the default variants
#     only), where the chapter shows what a too-short ablation does not
#     tell apart.
cargo run --release -p train -- vlm-ablate --scale "$VLM_ABLATION_SCALE" --seeds "$ABLATION_SEEDS" \
    --variants no-lm,no-align,scratch,unfrozen-tower,prefix-lm,cross-attention,long-instruct \
    --out runs/vlm-ablate
cp runs/vlm-ablate/vlm-ablations.md runs/vlm-ablate/vlm-ablations.txt book/src/generated/multimodal/
# 7c. Each kind of question, seed by seed, for the baseline and the long
#     stage 4: their runs are evaluated again first (seconds each; the
#     same answers), so that metrics.json records each question's kind.
for run in runs/vlm-ablate/runs/baseline/seed-* runs/vlm-ablate/runs/long-instruct/seed-*; do
    cargo run --release -p train -- eval "$run" > /dev/null
done
cargo run --release -p train --example vlm_kinds -- \
    runs/vlm-ablate/runs/baseline/seed-* runs/vlm-ablate/runs/long-instruct/seed-*
cargo run --release -p train -- vlm-ablate --scale "$VLM_SHORT_SCALE" --seeds "$ABLATION_SEEDS" \
    --out runs/vlm-ablate-short
cp runs/vlm-ablate-short/vlm-ablations.md book/src/generated/multimodal/vlm-ablations-short.md

# 8. The book still builds with what was written.
python3 tools/check_book.py --book book
echo "regenerated; review and commit book/src/generated/"
