"""How the simulated oracle's answers move with τ (Eq. 7), on the evidence run's F_o and examples.

Usage (after benchmarks/evidence_mnist.sh has cached F_o under OUT/cache):
    .venv/bin/python benchmarks/oracle_tau_sensitivity.py --cache results/evidence-mnist/cache --examples 200

Prints, per τ: the mean and quartiles of σ_o (ladder indices), the shares below / at / above GNT's
level 50, the draws the sequential test spent per level decided, and the seconds it took. The
examples are the first of the evidence run's diagnostic sample (the data seed's permutation).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from aqpl.datasets import load_dataset
from worker.ml.checkpoints import load_checkpoint
from worker.ml.oracle import SequentialTest, SimulatedOracle
from worker.ml.simulate.loop import derived_seed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=Path("results/evidence-mnist/cache"))
    parser.add_argument("--mnist", type=Path, default=Path("../shared/data/mnist"))
    parser.add_argument("--train-limit", type=int, default=3000)
    parser.add_argument("--examples", type=int, default=200)
    parser.add_argument("--taus", default="0.8,0.95,0.997")
    parser.add_argument("--max-draws", type=int, default=2048)
    parser.add_argument("--data-seed", type=int, default=0)
    arguments = parser.parse_args()

    device = torch.device("cpu")
    (checkpoint,) = arguments.cache.glob("reference-*.safetensors")
    reference, _ = load_checkpoint(checkpoint, device=device)
    dataset = load_dataset("mnist", arguments.mnist, train_limit=arguments.train_limit, test_limit=1, seed=0)
    order = np.random.default_rng(derived_seed(arguments.data_seed, "diagnostic")).permutation(
        len(dataset.y_train)
    )
    examples = order[: arguments.examples].astype(np.int64)
    print(f"F_o {checkpoint.name}; {len(examples)} training examples; max draws {arguments.max_draws}")
    print("| τ | mean σ_o | quartiles | below 50 | at 50 | above 50 | draws per level | seconds |")
    print("|---:|---:|---|---:|---:|---:|---:|---:|")
    for tau in (float(t) for t in arguments.taus.split(",")):
        oracle = SimulatedOracle(
            reference,
            dataset.x_train,
            dataset.y_train,
            device=device,
            seed=derived_seed(arguments.data_seed, "oracle"),
            test=SequentialTest(threshold=tau, max_draws=arguments.max_draws),
        )
        started = time.perf_counter()
        answers = oracle.answer(examples)
        seconds = time.perf_counter() - started
        low, middle, high = np.percentile(answers, [25, 50, 75])
        print(
            f"| {tau} | {answers.mean():.1f} | {low:.0f} / {middle:.0f} / {high:.0f} | "
            f"{np.mean(answers < 50):.0%} | {np.mean(answers == 50):.0%} | {np.mean(answers > 50):.0%} | "
            f"{oracle.forward_passes / oracle.levels_decided:.0f} | {seconds:.0f} |"
        )


if __name__ == "__main__":
    main()
