#!/usr/bin/env bash
# The evidence run (issue 11): does querying the right examples make a model more robust? MNIST
# (../shared/data/mnist), small CNN, 10 seeds, 5,000 test images, 3 rounds of 2B = 100 queries on a
# 3,000-image training subset (300 queries: 10 % of it), M = 50, the mnist-c suite, the oracle of
# Eq. 7 at τ = 0.95 with F_o trained on all 60,000 training images. All 7 methods (with the
# fine-tuning controls GNT-FT and CAT-FT) and the Random and AQPL curves. (The clean- and
# noise-uncertainty curves would add two chains per seed, 40 % more time; add them with
# --strategies random,clean_uncertainty,noise_uncertainty,aqpl.)
#
# PRIMARY CONTRAST, fixed before the run (docs/results.md):
#   AQPL − Random, mean accuracy over the 15 MNIST-C corruptions, at the last query count (300),
#   paired over the 10 seeds, two-sided paired t-test at α = 0.05.
# It isolates what the product sells (which examples are asked about) from the extra fine-tuning and
# from the oracle: both chains start from the same GNT model, fine-tune identically and ask the same
# oracle. Everything else in results.json (AQPL-GNT − GNT-FT, AQPL-CAT − CAT-FT, Gaussian and clean,
# other query counts, the diagnostic) is secondary and read as such.
#
# Run (from anywhere; options appended override the ones below, the last one wins):
#
#   benchmarks/evidence_mnist.sh --jobs 2                         # about an hour on 2 cores
#   OUT=/tmp/pilot benchmarks/evidence_mnist.sh --seeds 2         # the pilot
#   OUT=/tmp/tau08 benchmarks/evidence_mnist.sh --oracle-tau 0.8 --seeds 5 \
#       --methods gnt,gnt-ft,aqpl-gnt --strategies random,aqpl   # the τ sensitivity (docs/results.md)
#
# OUT (default results/evidence-mnist) receives results.json, results.md, the plots and cache/
# (the corruption suite, F_o and the oracle's answers: delete it for a cold run).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
exec "$PYTHON" -m cli.simulate \
    --dataset mnist:../shared/data/mnist \
    --model small_cnn \
    --train-limit 3000 \
    --test-limit 5000 \
    --methods standard,gnt,cat,gnt-ft,cat-ft,aqpl-gnt,aqpl-cat \
    --strategies random,aqpl \
    --rounds 3 \
    --budget 50 \
    --draws 50 \
    --epochs 5 \
    --reference-epochs 3 \
    --finetune-epochs 1 \
    --oracle-tau 0.95 \
    --suite mnist-c \
    --seeds 10 \
    --device cpu \
    --out "${OUT:-results/evidence-mnist}" \
    "$@"
