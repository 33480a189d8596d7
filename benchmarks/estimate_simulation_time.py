"""Expected run time of an `aqpl simulate` configuration: its work in images over measured throughput.

(a) Work, in images, of every kind, for the whole run (all seeds), enumerated with the loop's own
`chain_plan` and `draws_needed` so the count follows the loop:
  - train: base methods x epochs x training images (SGD); reference: F_o x reference epochs x F_o's
    images (once per run, then cached); finetune: chains x rounds x fine-tuning epochs x images;
  - cat probe: CAT classifies one noisy copy of every example after each epoch;
  - score: per scoring call, training images x (M noisy copies + 1 clean pass); the first round is
    scored once per start for all its chains, later rounds once per chain whose strategy reads scores;
  - evaluate: models evaluated (each base once, each chain after every round) x test images x
    (1 clean + Gaussian severities + corruption sets);
  - oracle (an estimate): examples answered x levels per answer x mean draws per level. Examples: at
    most the training set, and at most seeds x (querying chains x R x 2B + the diagnostic sample);
    answers are shared across chains and seeds, so this is an upper bound;
  - corrupt: the corruption suite, made once on the CPU (then cached).
(b) Throughput measured here for `--seconds` each: training with `train_model` (SGD steps of
`--batch-size` with the configuration's augmentation), classification with `predict` on the fast
path (batch 256 on the CPU, 8192 on CUDA), corruption on a sample of random test images. Images
are random pixels: throughput does not depend on content. All classification kinds use the one
measured rate: evaluation on the CPU runs fp32 at batch 1024, so its row is a little optimistic there.
(c) A table: images, img/s and seconds per kind, and the total; on the CPU also a GPU projection
from the throughputs passed as --gpu-train-img-s / --gpu-infer-img-s (a projection, not measured).

    .venv/bin/python benchmarks/estimate_simulation_time.py --model resnet18 --augment crop-flip \\
        --train-size 50000 --test-size 10000 --budget 100 --rounds 10 --draws 50 --seeds 5 \\
        --epochs 30 --reference-epochs 40 --gpu-train-img-s 20000 --gpu-infer-img-s 100000
    .venv/bin/python benchmarks/estimate_simulation_time.py ... --device cuda      # measured on the GPU
    .venv/bin/python benchmarks/estimate_simulation_time.py ... --seconds 0        # counts only
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import typer

from cli.simulate import parse_names, parse_seeds
from worker.ml.corruptions import (
    SUITE_NAMES,
    build_corruption_suite,
    default_suite_name,
    gaussian_severities_for,
    suite_definition,
)
from worker.ml.device import resolve_device
from worker.ml.evaluation import predict
from worker.ml.models import MODEL_NAMES, build_model, spec_for_images
from worker.ml.simulate.config import AQPL_STRATEGY, METHODS, NO_QUERIES, SimulationConfig
from worker.ml.simulate.loop import chain_plan, draws_needed
from worker.ml.strategies import STRATEGY_NAMES
from worker.ml.training import AUGMENTATIONS, CATConfig, TrainConfig, train_model

DEFAULTS = SimulationConfig()  # the simulate CLI's defaults live there, once
SHAPES = {"small_cnn": (28, 28, 1), "resnet18": (32, 32, 3)}  # (H, W, C) each model is used with
DATASET_KEYS = {"small_cnn": "mnist", "resnet18": "cifar10"}  # picks the Gaussian severities of a suite
# Bisection over the 91-level ladder: clean, top, then ~log2(90) = 6.5 halvings; examples that fail
# clean or pass the top stop after 2 (worker/ml/oracle.py).
ORACLE_LEVELS = 8.0
# Noisy copies per level decided by the sequential test (looks of 32, 64, ... 1024 at τ 0.95): the
# MNIST evidence run's per_seed[].oracle.mean_draws_per_level in results.json, rounded. Pass the
# value of a run closer to yours (it grows with τ and with how often a level sits near τ).
ORACLE_DRAWS_PER_LEVEL = 300.0
INFER_BATCH = {"cpu": 256, "cuda": 8192}  # predict(fast_cpu=True)'s batch; scoring's CUDA batch
CALL_SECONDS = 0.5  # each timed call runs about this long, so per-call overheads stay small
MAX_UNITS = 64  # most batches per timed call (bounds the random images made for it)
MAX_INFER_IMAGES = 65_536  # random images made for classification (200 MB of 32x32x3)
TRAIN_KINDS = ("train", "reference", "finetune")
INFER_KINDS = ("cat probe", "score", "evaluate", "oracle")
CPU_KINDS = ("corrupt",)


@dataclass(frozen=True)
class Work:
    """Images each kind of work processes in one run, all seeds together."""

    train: int  # SGD images of the base methods
    reference: int  # SGD images of F_o (once per run; reused from the cache after that)
    finetune: int  # SGD images of the chains' fine-tuning
    cat_probe: int  # CAT's one noisy copy per example after each epoch
    score: int  # noisy copies plus one clean pass per example, per scoring call
    evaluate: int  # test images classified: clean, Gaussian severities, corruption sets
    oracle: float  # estimated: examples answered x levels x draws per level
    corrupt: int  # corrupted test images made once (CPU)
    oracle_examples: int  # at most this many examples answered (the oracle's estimate uses it)

    def by_kind(self) -> dict[str, float]:
        return {
            "train": self.train,
            "reference": self.reference,
            "finetune": self.finetune,
            "cat probe": self.cat_probe,
            "score": self.score,
            "evaluate": self.evaluate,
            "oracle": self.oracle,
            "corrupt": self.corrupt,
        }


def suite_sizes(config: SimulationConfig) -> tuple[int, int]:
    """(Gaussian severities, corruption sets = names x severities) of the configuration's suite."""
    name = config.suite or default_suite_name(SHAPES[config.model])
    severities = suite_definition(name).corruption_severities
    names = config.corruption_names or tuple(severities)
    return len(gaussian_severities_for(DATASET_KEYS[config.model], name)), sum(
        len(severities[n]) for n in names
    )


def epoch_images(examples: int, batch_size: int) -> int:
    """Images one epoch trains on: training drops a last batch of one example (BatchNorm)."""
    return examples - 1 if examples % batch_size == 1 else examples


def count_work(
    config: SimulationConfig,
    *,
    train_size: int,
    test_size: int,
    reference_train_size: int | None = None,
    oracle_levels: float = ORACLE_LEVELS,
    oracle_draws_per_level: float = ORACLE_DRAWS_PER_LEVEL,
) -> Work:
    """The work of `config` on `train_size` training and `test_size` test images (after any limits)."""
    seeds = len(config.seeds)
    bases, chains = chain_plan(config)
    rounds = config.rounds
    per_epoch = epoch_images(train_size, config.batch_size)
    reference_images = train_size if reference_train_size is None else reference_train_size

    # Scoring calls of one seed, as simulate_seed makes them: round 1 once per start with the most
    # draws any of its chains needs, rounds 2..R once per chain whose strategy reads a score.
    first_draws: dict[str, int] = {}
    for start, strategy in chains:
        first_draws[start] = max(first_draws.get(start, 0), draws_needed(strategy, config.draws))
    call_draws = [d for d in first_draws.values() if d > 0]
    call_draws += [d for _, s in chains if (d := draws_needed(s, config.draws)) > 0] * (rounds - 1)

    gaussian, corruption_sets = suite_sizes(config)
    evaluations = len(bases) + len(chains) * rounds
    querying = [strategy for _, strategy in chains if strategy != NO_QUERIES]
    diagnostic = min(config.diagnostic_sample, train_size) if AQPL_STRATEGY in querying else 0
    per_seed_queries = len(querying) * min(rounds * 2 * config.budget, train_size) + diagnostic
    oracle_examples = min(train_size, seeds * per_seed_queries)
    cat_epochs = max(0, config.epochs - CATConfig().warmup_epochs + 1) if "cat" in bases else 0
    return Work(
        train=seeds * len(bases) * config.epochs * per_epoch,
        reference=config.reference_epochs * epoch_images(reference_images, config.batch_size),
        finetune=seeds * len(chains) * rounds * config.finetune_epochs * per_epoch,
        cat_probe=seeds * cat_epochs * train_size,
        score=seeds * sum(train_size * (draws + 1) for draws in call_draws),
        evaluate=seeds * evaluations * test_size * (1 + gaussian + corruption_sets),
        oracle=oracle_examples * oracle_levels * oracle_draws_per_level,
        corrupt=test_size * (gaussian + corruption_sets),
        oracle_examples=oracle_examples,
    )


# ---------------------------------------------------------------------------------------------
# Throughput


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def throughput(
    run: Callable[[int], int], seconds: float, device: torch.device, max_units: int = MAX_UNITS
) -> float:
    """Images/s of `run(units)` (which returns the images it processed) over about `seconds`: one
    untimed warm-up unit (allocator, kernel choice), one timed unit to size the calls, then calls."""
    run(1)
    _synchronize(device)
    started = time.perf_counter()
    images = run(1)
    _synchronize(device)
    elapsed = time.perf_counter() - started
    units = max(1, min(max_units, int(CALL_SECONDS / max(elapsed, 1e-6))))
    while elapsed < seconds:
        started = time.perf_counter()
        images += run(units)
        _synchronize(device)
        elapsed += time.perf_counter() - started
    return images / elapsed


def _random_images(count: int, shape: tuple[int, int, int], seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, *shape), dtype=np.uint8)


def training_throughput(
    model_name: str, device: torch.device, *, batch_size: int, augment: str, seconds: float
) -> float:
    """SGD images/s of `train_model` (half of each batch noisy, as GNT), `units` steps per call."""
    images = _random_images(MAX_UNITS * batch_size, SHAPES[model_name], seed=0)
    labels = np.arange(len(images)) % 10
    model = build_model(spec_for_images(images, 10, model_name), seed=0)
    sigma_indices = np.full(len(images), 10, dtype=np.int64)
    config = TrainConfig(epochs=1, batch_size=batch_size, lr=SimulationConfig().lr, augment=augment)

    def run(units: int) -> int:
        count = units * batch_size
        train_model(model, images[:count], labels[:count], sigma_indices[:count], config, device=device)
        return count

    return throughput(run, seconds, device)


def inference_throughput(model_name: str, device: torch.device, *, seconds: float) -> float:
    """Images/s of `predict` on the fast path, one batch per unit."""
    batch = INFER_BATCH["cuda" if device.type == "cuda" else "cpu"]
    max_units = min(MAX_UNITS, MAX_INFER_IMAGES // batch)
    images = _random_images(max_units * batch, SHAPES[model_name], seed=1)
    model = build_model(spec_for_images(images, 10, model_name), seed=0)

    def run(units: int) -> int:
        count = units * batch
        predict(model, images[:count], device=device, batch_size=batch, fast_cpu=True)
        return count

    return throughput(run, seconds, device, max_units)


def corruption_throughput(config: SimulationConfig, sample: int) -> float:
    """Corrupted images/s of the configuration's suite on `sample` random test images (CPU), after a
    warm-up on two images that pays the one-off costs (imports, frost textures)."""
    name = config.suite or default_suite_name(SHAPES[config.model])
    key = DATASET_KEYS[config.model]
    shape = SHAPES[config.model]
    warm_up = _random_images(2, shape, seed=2)
    build_corruption_suite(warm_up, dataset_key=key, suite=name, corruption_names=config.corruption_names)
    images = _random_images(sample, shape, seed=3)
    started = time.perf_counter()
    built = build_corruption_suite(
        images, dataset_key=key, suite=name, corruption_names=config.corruption_names
    )
    elapsed = time.perf_counter() - started
    return sample * len(list(built.items())) / elapsed


# ---------------------------------------------------------------------------------------------
# Report


def duration(seconds: float) -> str:
    """'1 h 02 min', '3 min 05 s' or '12 s'."""
    if seconds >= 3600:
        return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"
    if seconds >= 60:
        return f"{int(seconds // 60)} min {int(seconds % 60):02d} s"
    return f"{seconds:.0f} s"


def rate_for(kind: str, rates: dict[str, float]) -> float:
    if kind in TRAIN_KINDS:
        return rates["train"]
    if kind in INFER_KINDS:
        return rates["infer"]
    return rates["corrupt"]


def table(work: Work, rates: dict[str, float], device: str, projection: dict[str, float] | None) -> str:
    """Markdown: images, measured img/s and seconds per kind and in total (and the GPU projection)."""
    header = f"| kind | images | img/s measured ({device}) | seconds |"
    rule = "|---|---:|---:|---:|"
    if projection is not None:
        header += " GPU img/s (projection, not measured) | GPU seconds (projection) |"
        rule += "---:|---:|"
    lines = [header, rule]
    total = projected_total = 0.0
    for kind, images in work.by_kind().items():
        rate = rate_for(kind, rates)
        seconds = images / rate if images else 0.0
        total += seconds
        rate_text = "not measured" if math.isinf(rate) else f"{rate:,.0f}"
        row = f"| {kind} | {images:,.0f} | {rate_text} | {seconds:,.0f} ({duration(seconds)}) |"
        if projection is not None:
            gpu_rate = rate_for(kind, projection)
            gpu_seconds = images / gpu_rate if images else 0.0
            projected_total += gpu_seconds
            gpu_text = "not measured" if math.isinf(gpu_rate) else f"{gpu_rate:,.0f}"
            row += f" {gpu_text} | {gpu_seconds:,.0f} ({duration(gpu_seconds)}) |"
        lines.append(row)
    last = f"| **total** | | | **{total:,.0f} ({duration(total)})** |"
    if projection is not None:
        last += f" | **{projected_total:,.0f} ({duration(projected_total)})** |"
    lines.append(last)
    return "\n".join(lines)


def _config(args: argparse.Namespace) -> SimulationConfig:
    try:
        methods = parse_names(args.methods, METHODS, "--methods")
        strategies = parse_names(args.strategies, STRATEGY_NAMES, "--strategies")
        seeds = parse_seeds(args.seeds)
    except typer.BadParameter as error:
        raise SystemExit(f"error: {error.format_message()}") from None
    corruptions = None
    if args.corruptions.strip().lower() != "all":
        corruptions = tuple(n.strip() for n in args.corruptions.split(",") if n.strip())
    return SimulationConfig(
        model=args.model,
        methods=methods,
        strategies=strategies,
        rounds=args.rounds,
        budget=args.budget,
        draws=args.draws,
        seeds=seeds,
        epochs=args.epochs,
        reference_epochs=args.reference_epochs,
        finetune_epochs=args.finetune_epochs,
        batch_size=args.batch_size,
        augment=args.augment,
        suite=None if args.suite == "auto" else args.suite,
        corruption_names=corruptions,
        diagnostic_sample=args.diagnostic_sample,
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add = parser.add_argument
    add("--model", choices=MODEL_NAMES, default=DEFAULTS.model)
    add("--methods", default=",".join(DEFAULTS.methods))
    add("--strategies", default=",".join(DEFAULTS.strategies))
    add("--rounds", type=int, default=DEFAULTS.rounds)
    add("--budget", type=int, default=DEFAULTS.budget, help="B: examples per side and round")
    add("--draws", type=int, default=DEFAULTS.draws, help="M: noisy copies per example")
    add("--seeds", default=str(len(DEFAULTS.seeds)), help="a count or a comma list, as simulate")
    add("--epochs", type=int, default=DEFAULTS.epochs)
    add("--reference-epochs", type=int, default=DEFAULTS.reference_epochs)
    add("--finetune-epochs", type=int, default=DEFAULTS.finetune_epochs)
    add("--batch-size", type=int, default=DEFAULTS.batch_size)
    add("--augment", choices=AUGMENTATIONS, default=DEFAULTS.augment)
    add("--suite", choices=("auto", *SUITE_NAMES), default="auto")
    add("--corruptions", default="all", help="comma list of the suite's corruptions, or 'all'")
    add("--diagnostic-sample", type=int, default=DEFAULTS.diagnostic_sample)
    add("--train-size", type=int, default=50_000, help="training images (after --train-limit)")
    add("--test-size", type=int, default=10_000, help="test images (after --test-limit)")
    add("--reference-train-size", type=int, help="F_o's training images [default: --train-size]")
    add("--oracle-levels", type=float, default=ORACLE_LEVELS, help="levels decided per answer")
    add("--oracle-draws-per-level", type=float, default=ORACLE_DRAWS_PER_LEVEL, help="mean draws per level")
    add("--device", default="cpu", help="cpu, cuda or auto")
    add("--threads", type=int, help="torch CPU threads [default: torch's choice]")
    add("--seconds", type=float, default=5.0, help="measuring time per kind (0: counts only)")
    add("--corrupt-sample", type=int, default=16, help="random test images the suite's speed is measured on")
    add("--gpu-train-img-s", type=float, help="GPU training img/s for the projection (CPU runs)")
    add("--gpu-infer-img-s", type=float, help="GPU classification img/s for the projection (CPU runs)")
    args = parser.parse_args()

    config = _config(args)
    work = count_work(
        config,
        train_size=args.train_size,
        test_size=args.test_size,
        reference_train_size=args.reference_train_size,
        oracle_levels=args.oracle_levels,
        oracle_draws_per_level=args.oracle_draws_per_level,
    )
    print(
        f"{config.model}, {len(config.seeds)} seed(s), {args.train_size:,} train / {args.test_size:,} test "
        f"images; oracle: at most {work.oracle_examples:,} examples x {args.oracle_levels:g} levels x "
        f"{args.oracle_draws_per_level:g} draws (estimate)"
    )
    if args.seconds <= 0:
        for kind, images in work.by_kind().items():
            print(f"{kind:>10}: {images:,.0f} images")
        return
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    rates = {
        "train": training_throughput(
            config.model, device, batch_size=config.batch_size, augment=config.augment, seconds=args.seconds
        ),
        "infer": inference_throughput(config.model, device, seconds=args.seconds),
        "corrupt": corruption_throughput(config, args.corrupt_sample)
        if args.corrupt_sample > 0
        else math.inf,
    }
    projection = None
    if device.type == "cpu" and args.gpu_train_img_s and args.gpu_infer_img_s:
        # The suite is made on the CPU whatever the device: the projection keeps the measured rate.
        projection = {
            "train": args.gpu_train_img_s,
            "infer": args.gpu_infer_img_s,
            "corrupt": rates["corrupt"],
        }
    print(f"measured on {device} with {torch.get_num_threads()} torch thread(s), {args.seconds:g} s per kind")
    print(table(work, rates, str(device), projection))


if __name__ == "__main__":
    main()
