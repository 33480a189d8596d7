"""Adaptive scoring: forward passes saved against exact M-draw scoring, and agreement of its AQPL selection.

A small CNN is trained for a few epochs (GNT, half of each batch at σ 0.5) on real data, so that
the entropies are those of a real model. Then every training example is scored:

  exact A   exact M draws, seed 2k+1        exact B   exact M draws, seed 2k+2
  adaptive B  adaptive, seed 2k+2 (pilot + early stop)   adaptive A  adaptive, seed 2k+1
  int8 A    exact M draws with int8 scoring, seed 2k+1

for k = 0 .. pairs-1. Each pair's selections are repeated with --tie-breaks independent
tie-break generators per run (a selection's generator differs between runs, pairs and
repeats), and overlaps are averaged over all of them: most deficient picks are a random draw
from the examples tied at H = 0, so a single tie-break per run measures luck, not agreement.
The ± is the standard deviation of the per-pair means.

The AQPL selection (B highest H = "excessive", B lowest H = "deficient") of each run is
compared with exact A's: overlap = |S ∩ S_A| / B per side. "exact B vs exact A" is the noise
floor (two exact runs disagree too); the target is "adaptive B vs exact A" ≥ that floor.
"adaptive A vs exact A" shares the noise, so it isolates what early stopping alone changes;
"int8 A vs exact A" shares it too and isolates what int8 scoring (score_examples(int8=True))
changes against the default precision (bf16 on CPUs with native bf16, else fp32).
Adaptive selections complete the draws of early-stopped picks (strategies.select's `complete`,
as `aqpl simulate --adaptive-scoring` does); their forward passes include that completion, per
B. "adaptive B, not completed" shows what selecting on the stopped scores alone would give.

    .venv/bin/python benchmarks/bench_adaptive_scoring.py          # digits, ~4 min on 2 idle cores
    .venv/bin/python benchmarks/bench_adaptive_scoring.py --dataset mnist --path ../shared/data/mnist \
        --train-limit 3000
"""

from __future__ import annotations

import argparse
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch

from aqpl.datasets import load_dataset
from worker.ml.device import resolve_device
from worker.ml.models import build_model, spec_for_dataset
from worker.ml.scoring import Scores, complete_draws, score_examples
from worker.ml.strategies import Completion, select
from worker.ml.training import TrainConfig, gnt_sigma_index, train_model


def sides(
    scores: Scores, budget: int, rng_seed: tuple[int, ...], complete: Completion | None = None
) -> tuple[set[int], set[int], int]:
    """AQPL's excessive and deficient picks, and the forward passes spent completing them."""
    selection = select(
        "aqpl",
        scores,
        budget,
        np.zeros(len(scores.entropy), dtype=bool),
        np.random.default_rng(rng_seed),
        complete=complete,
    )
    high = {int(i) for i, side in zip(selection.indices, selection.sides, strict=True) if side == "excessive"}
    low = {int(i) for i, side in zip(selection.indices, selection.sides, strict=True) if side == "deficient"}
    return high, low, selection.completion_passes


def overlap(first: set[int], second: set[int]) -> float:
    return len(first & second) / max(len(first), 1)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dataset", default="digits", help="an aqpl.datasets format (digits needs no path)")
    parser.add_argument("--path", type=Path, default=None)
    parser.add_argument("--train-limit", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--draws", type=int, default=50, help="M of exact scoring")
    parser.add_argument("--budgets", default="10,50", help="B per side, comma-separated")
    parser.add_argument("--pairs", type=int, default=5, help="seed pairs averaged over")
    parser.add_argument("--tie-breaks", type=int, default=20, help="tie-break generators per pair and run")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = resolve_device(args.device)
    budgets = [int(b) for b in args.budgets.split(",")]

    dataset = load_dataset(args.dataset, args.path, train_limit=args.train_limit, seed=0)
    images, labels = dataset.x_train, dataset.y_train
    count = len(images)
    gnt_index = gnt_sigma_index(dataset.name, dataset.image_shape[2])
    model = build_model(spec_for_dataset(dataset, "small_cnn"), seed=0)
    started = time.perf_counter()
    train_model(
        model,
        images,
        labels,
        np.full(count, gnt_index),
        TrainConfig(epochs=args.epochs, batch_size=64, lr=0.05, seed=0),
        device=device,
    )
    seconds = time.perf_counter() - started
    print(f"{dataset.name}: {count} training images {dataset.image_shape}, small_cnn trained {args.epochs}")
    print(
        f"epochs at GNT σ index {gnt_index} in {seconds:.1f} s; {device}, {torch.get_num_threads()} threads"
    )

    settings = {
        f"σ_i = {gnt_index} for all (GNT levels)": np.full(count, gnt_index),
        "σ_i uniform in 20..80 (levels after some queries)": np.random.default_rng(7).integers(20, 81, count),
    }
    for description, sigma_indices in settings.items():
        started = time.perf_counter()
        # pair k: exact A (seed 2k+1), exact B and adaptive B (seed 2k+2), adaptive A (seed 2k+1)
        pairs = [
            {
                name: score_examples(
                    model,
                    images,
                    sigma_indices,
                    draws=args.draws,
                    seed=2 * pair + offset,
                    device=device,
                    adaptive=adaptive,
                    int8=int8,
                )
                for name, offset, adaptive, int8 in (
                    ("exact A", 1, False, False),
                    ("exact B", 2, False, False),
                    ("adaptive B", 2, True, False),
                    ("adaptive A", 1, True, False),
                    ("int8 A", 1, False, True),
                )
            }
            for pair in range(args.pairs)
        ]
        seconds = time.perf_counter() - started
        print(f"\n{description}   ({5 * args.pairs} scoring runs in {seconds:.1f} s)")
        exact = pairs[0]["exact A"]
        zero_share, mean_entropy = np.mean(exact.entropy == 0), exact.entropy.mean()
        print(f"  exact: H = 0 for {zero_share:.1%} of examples, mean H {mean_entropy:.3f} nats")
        adaptive = pairs[0]["adaptive B"]
        assert adaptive.draws_used is not None
        stopped = {int(d): float(np.mean(adaptive.draws_used == d)) for d in np.unique(adaptive.draws_used)}
        print(
            "  adaptive B: share of examples by draws used "
            + ", ".join(f"{d}: {s:.1%}" for d, s in stopped.items())
        )
        exact_passes = np.mean([runs["exact B"].forward_passes for runs in pairs])
        adaptive_passes = np.mean([runs["adaptive B"].forward_passes for runs in pairs])
        print(
            f"  forward passes (mean of {args.pairs} seeds): exact {exact_passes:,.0f}  "
            f"adaptive scoring {adaptive_passes:,.0f}  -> {exact_passes / adaptive_passes:.2f}x fewer"
            f"  ({np.mean(adaptive.draws_used < args.draws):.1%} of examples stopped early)"
        )

        rows = (
            ("exact B", "exact B", None),
            ("adaptive B", "adaptive B", 2),
            ("adaptive A", "adaptive A", 1),
            ("adaptive B, not completed", "adaptive B", None),
            ("int8 A (exact, int8)", "int8 A", None),
        )
        for budget in budgets:
            print(
                f"  B = {budget}: overlap with exact A's selection, mean ± sd over {args.pairs} seed pairs"
                f" x {args.tie_breaks} tie-breaks   excessive (high H) | deficient (low H)"
            )
            references = {
                (pair, repeat): sides(runs["exact A"], budget, rng_seed=(pair, repeat, 0))
                for pair, runs in enumerate(pairs)
                for repeat in range(args.tie_breaks)
            }
            completion_passes = []
            for index, (label, run, seed_offset) in enumerate(rows, start=1):
                pair_means = []
                for pair, runs in enumerate(pairs):
                    complete = (
                        None
                        if seed_offset is None
                        else partial(
                            complete_draws,
                            model,
                            images,
                            sigma_indices,
                            seed=2 * pair + seed_offset,
                            device=device,
                        )
                    )
                    overlaps = []
                    for repeat in range(args.tie_breaks):
                        reference_high, reference_low, _ = references[(pair, repeat)]
                        high, low, passes = sides(
                            runs[run], budget, rng_seed=(pair, repeat, index), complete=complete
                        )
                        overlaps.append((overlap(high, reference_high), overlap(low, reference_low)))
                        if label == "adaptive B":
                            completion_passes.append(passes)
                    pair_means.append(np.mean(overlaps, axis=0))
                mean, spread = np.mean(pair_means, axis=0), np.std(pair_means, axis=0)
                print(
                    f"    {label:<26} vs exact A      {mean[0]:6.1%} ± {spread[0]:4.1%}"
                    f"   | {mean[1]:6.1%} ± {spread[1]:4.1%}"
                )
            total = adaptive_passes + np.mean(completion_passes)
            print(
                f"    forward passes, adaptive B with its completion: {total:,.0f} "
                f"(completion {np.mean(completion_passes):,.0f}) -> {exact_passes / total:.2f}x fewer"
            )


if __name__ == "__main__":
    main()
