#!/usr/bin/env bash
# The documented quick configuration of `aqpl simulate` on MNIST (docs/results.md):
# small CNN, 2,000 training / 200 test images, 3 seeds, all 5 methods and 4 strategies,
# 3 rounds of 2B = 100 queries, M = 10 draws, oracle K = 16. Target: under 15 minutes on 2 CPU cores.
#
#   benchmarks/quick_mnist_simulation.sh [OUT_DIR] [extra aqpl simulate options...]
#
# OUT_DIR defaults to /tmp/aqpl-quick-mnist; its cache/ holds the corruption suite and the oracle's
# reference classifiers, so delete it to time a cold run. MNIST is read from ../shared/data/mnist
# (override with MNIST_DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-/tmp/aqpl-quick-mnist}"
shift || true
PYTHON="${PYTHON:-.venv/bin/python}"
MNIST_DIR="${MNIST_DIR:-../shared/data/mnist}"

start=$(date +%s)
"$PYTHON" -m aqpl.simulate_command \
    --dataset "mnist:${MNIST_DIR}" \
    --model small_cnn \
    --train-limit 2000 \
    --test-limit 200 \
    --methods standard,gnt,cat,aqpl-gnt,aqpl-cat \
    --strategies random,clean_uncertainty,noise_uncertainty,aqpl \
    --rounds 3 \
    --budget 50 \
    --draws 10 \
    --epochs 5 \
    --reference-epochs 5 \
    --finetune-epochs 1 \
    --oracle-draws 16 \
    --seeds 3 \
    --device cpu \
    --out "$OUT" \
    "$@"
end=$(date +%s)
echo "quick MNIST simulation: $((end - start)) s wall on $(nproc) CPU core(s), load average now: $(cut -d' ' -f1-3 /proc/loadavg)"
