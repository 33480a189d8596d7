"""The headless AQPL research loop behind `aqpl simulate` (issue 3, item 8).

For each seed: train the simulated oracle's reference classifier F_o, train the baselines
(Standard, GNT, CAT), then correct perturbation levels by queries (the paper's Algorithm 1):
score every training example (H of Eq. 5) -> select 2B examples -> the oracle answers their
levels (Eq. 7) -> σ updated -> fine-tune -> evaluate. The strategy curves (the paper's
Figures 4 and 5) all start from the GNT model and levels with the same budget; AQPL-GNT is
the last point of the `aqpl` curve and AQPL-CAT the same chain started from CAT.

Work is shared where the result would be identical: the dataset and its corruption suite
are made once (a fixed data seed, so every run seed is scored on the same test images); the
first round's scores of all strategies from GNT are computed once (same model, levels and
scoring seed); the oracle answers each example once per seed (every strategy gets the same
answer for the same image, as one consistent annotator would give).

Pure: no database, web or Celery. `run_simulation` returns a JSON-ready dict; `write_results`
turns it into results.json, results.md and PNG plots.
"""

from __future__ import annotations

import copy
import json
import time
import zlib
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn
from tqdm.auto import tqdm

from worker.ml.corruptions import CorruptionSuite, build_corruption_suite
from worker.ml.datasets import ImageDataset, load_dataset
from worker.ml.device import resolve_device
from worker.ml.evaluation import evaluate
from worker.ml.models import ModelSpec, build_model, spec_for_dataset
from worker.ml.oracle import DEFAULT_DRAWS, DEFAULT_THRESHOLD, SimulatedOracle, train_reference_classifier
from worker.ml.scoring import Scores, complete_draws, score_examples
from worker.ml.strategies import STRATEGY_NAMES, Completion, select
from worker.ml.training import (
    METHODS,
    CATConfig,
    TrainConfig,
    gnt_sigma_index,
    starting_sigma_indices,
    train_cat,
    train_model,
)

METRIC_NAMES = ("clean", "gaussian", "corruptions")
BASE_METHODS = ("standard", "gnt", "cat")
# The base run each AQPL method continues from (its weights and levels).
AQPL_STARTS = {"aqpl-gnt": "gnt", "aqpl-cat": "cat"}
AQPL_STRATEGY = "aqpl"  # the strategy AQPL methods query with
CURVE_START = "gnt"  # every strategy curve starts from the GNT model, as in the paper's Figures 4-5
ProgressCallback = Callable[[int, int], None]

# Completing adaptive picks (scoring.complete_draws) classifies with the full-precision model.
INT8_WITH_ADAPTIVE = "int8 scoring and adaptive scoring cannot be combined: pick one"


@dataclass(frozen=True)
class SimulationConfig:
    """Everything one simulation depends on; stored verbatim in results.json."""

    dataset_format: str = "digits"
    dataset_path: Path | None = None
    model: str = "small_cnn"
    methods: tuple[str, ...] = METHODS
    strategies: tuple[str, ...] = STRATEGY_NAMES
    rounds: int = 3
    budget: int = 25  # B: examples per side and round, so a round asks the oracle 2B levels
    draws: int = 20  # M: noisy copies per example for H (Eq. 5); the paper's 50 costs 2.5x the time
    adaptive_scoring: bool = False  # stop drawing where the draws so far agree (scoring.AdaptiveConfig)
    int8_scoring: bool = False  # classify noisy copies with an int8 copy of the model (CPU only)
    seeds: tuple[int, ...] = (0,)
    train_limit: int | None = None  # stratified subset of the training split (None: all of it)
    test_limit: int | None = None  # stratified subset of the test split, which every corruption copies
    # The subsets and the corruption suite are drawn once with this seed, so every run seed is
    # evaluated on the same images (paired comparisons); run seeds vary weights, noise and queries.
    data_seed: int = 0
    device: str = "auto"
    epochs: int = 8  # training epochs of Standard, GNT, CAT
    reference_epochs: int = 8  # training epochs of the oracle's reference classifier F_o
    finetune_epochs: int = 1  # epochs over the whole training set after each round's answers
    lr: float = 0.05  # peak SGD learning rate of full training (cosine to 0, as TrainConfig)
    finetune_lr: float = 0.01  # peak rate of fine-tuning: a fifth of lr, so it adjusts, not retrains
    batch_size: int = 128
    gnt_sigma_index: int | None = None  # GNT's one level as a ladder index (None: per dataset family)
    oracle_threshold: float = DEFAULT_THRESHOLD  # τ of Eq. 7: share of noisy copies F_o must get right
    oracle_draws: int = DEFAULT_DRAWS  # K: noisy copies per level the oracle tests
    corruption_names: tuple[str, ...] | None = None  # subset of the 15 common corruptions (None: all)
    cache_dir: Path | None = None  # corruption suites and F_o checkpoints, reused across runs (None: none)

    def __post_init__(self) -> None:
        unknown_methods = [m for m in self.methods if m not in METHODS]
        if unknown_methods:
            raise ValueError(f"unknown method(s) {unknown_methods}; choose from {list(METHODS)}")
        unknown_strategies = [s for s in self.strategies if s not in STRATEGY_NAMES]
        if unknown_strategies:
            raise ValueError(
                f"unknown strategy(ies) {unknown_strategies}; choose from {list(STRATEGY_NAMES)}"
            )
        if not self.methods and not self.strategies:
            raise ValueError("nothing to simulate: give at least one method or one strategy")
        if not self.seeds:
            raise ValueError("give at least one seed")
        if self.int8_scoring and self.adaptive_scoring:
            raise ValueError(INT8_WITH_ADAPTIVE)
        for name in ("rounds", "budget", "draws", "epochs", "reference_epochs", "finetune_epochs"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: paths as strings, tuples as lists."""
        return {
            key: (
                str(value) if isinstance(value, Path) else list(value) if isinstance(value, tuple) else value
            )
            for key, value in asdict(self).items()
        }


class _MemoOracle:
    """Asks the simulated oracle about each example once per seed and replays the answer after that."""

    def __init__(self, oracle: SimulatedOracle) -> None:
        self._oracle = oracle
        self._answers: dict[int, int] = {}

    def answer(self, indices: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        unseen = np.array([i for i in indices.tolist() if i not in self._answers], dtype=np.int64)
        if unseen.size:
            answers = self._oracle.answer(unseen)
            self._answers.update(zip(unseen.tolist(), answers.tolist(), strict=True))
        return np.array([self._answers[i] for i in indices.tolist()], dtype=np.int64)

    def summary(self) -> dict[str, Any]:
        levels = np.array(list(self._answers.values()), dtype=np.float64)
        return {
            "examples_answered": int(levels.size),
            "forward_passes": self._oracle.forward_passes,
            "mean_answer_sigma_index": float(levels.mean()) if levels.size else None,
            "answer_sigma_index_quartiles": np.percentile(levels, [25, 50, 75]).tolist()
            if levels.size
            else None,
        }


@dataclass
class _Timer:
    """Wall seconds per kind of work (train, score, oracle, fine-tune, evaluate), summed."""

    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))

    @contextmanager
    def __call__(self, kind: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[kind] += time.perf_counter() - started


@dataclass(frozen=True)
class _SeedContext:
    """What every stage of one seed shares."""

    config: SimulationConfig
    seed: int
    dataset: ImageDataset
    suite: CorruptionSuite
    spec: ModelSpec
    device: torch.device
    gnt_index: int
    oracle: _MemoOracle
    timer: _Timer
    show_progress: bool
    advance: Callable[[str], None]
    # Noisy images classified: "scoring" by score_examples, "completion" by select() completing
    # early-stopped picks of adaptive scoring.
    forward_passes: dict[str, int] = field(default_factory=lambda: {"scoring": 0, "completion": 0})


@dataclass
class _QueryChain:
    """One chain of query rounds: the model and levels it fine-tunes, and what it has asked so far."""

    start: str
    strategy: str
    model: nn.Module
    sigma_indices: npt.NDArray[np.int64]
    queried: npt.NDArray[np.bool_]
    points: list[dict[str, Any]] = field(default_factory=list)


def derived_seed(seed: int, *parts: str | int) -> int:
    """A 31-bit seed for one stage of one run (stable across processes, unlike hash())."""
    entropy = [seed, *(zlib.crc32(str(part).encode()) for part in parts)]
    return int(np.random.SeedSequence(entropy).generate_state(1)[0] >> 1)


@contextmanager
def _task_bar(description: str, enabled: bool) -> Iterator[ProgressCallback]:
    """A transient tqdm bar driven by the (done, total) callbacks of worker/ml functions."""
    bar = tqdm(desc=description, total=None, leave=False, disable=not enabled, dynamic_ncols=True)

    def update(done: int, total: int) -> None:
        if bar.total != total:
            bar.total = total
        bar.update(done - bar.n)

    try:
        yield update
    finally:
        bar.close()


def _draws_needed(strategy: str, draws: int) -> int:
    """Noisy copies per example a strategy's score needs: random reads no score, clean uncertainty
    only the clean pass (one draw is the least `score_examples` makes), the others all M."""
    if strategy == "random":
        return 0
    return 1 if strategy == "clean_uncertainty" else draws


def _train_config(config: SimulationConfig, *, epochs: int, lr: float, seed: int) -> TrainConfig:
    return TrainConfig(epochs=epochs, lr=lr, batch_size=config.batch_size, seed=seed)


def _evaluate(context: _SeedContext, model: nn.Module) -> dict[str, Any]:
    with context.timer("evaluate"):
        metrics = evaluate(
            model, context.dataset.x_test, context.dataset.y_test, context.suite, device=context.device
        )
    return dict(metrics)


def _train_base(context: _SeedContext, method: str) -> tuple[nn.Module, npt.NDArray[np.int64]]:
    """Standard (σ = 0), GNT (one σ for all) or CAT (σ_i adapted while training): model and final levels."""
    config = context.config
    dataset = context.dataset
    model = build_model(context.spec, seed=derived_seed(context.seed, method, "init"))
    train_config = _train_config(
        config, epochs=config.epochs, lr=config.lr, seed=derived_seed(context.seed, method, "train")
    )
    sigma_indices = starting_sigma_indices(method, len(dataset.y_train), gnt_index=context.gnt_index)
    context.advance(f"train {method}")
    with context.timer("train"), _task_bar(f"train {method}", context.show_progress) as progress:
        if method == "cat":
            _, sigma_indices = train_cat(
                model,
                dataset.x_train,
                dataset.y_train,
                sigma_indices,
                train_config,
                CATConfig(),
                device=context.device,
                progress=progress,
            )
        else:
            train_model(
                model,
                dataset.x_train,
                dataset.y_train,
                sigma_indices,
                train_config,
                device=context.device,
                progress=progress,
            )
    return model, sigma_indices


def _score(context: _SeedContext, chain: _QueryChain, round_index: int, draws: int) -> Scores:
    if draws == 0:  # a strategy that reads no score (random)
        zeros = np.zeros(len(chain.sigma_indices), dtype=np.float64)
        return Scores(entropy=zeros, clean_uncertainty=zeros, noise_uncertainty=zeros, forward_passes=0)
    # The scoring seed depends on the chain's start and the round, not on the strategy, so chains
    # in the same state (every strategy's first round from GNT) get the same scores.
    with (
        context.timer("score"),
        _task_bar(f"score round {round_index + 1}", context.show_progress) as progress,
    ):
        scores = score_examples(
            chain.model,
            context.dataset.x_train,
            chain.sigma_indices,
            draws=draws,
            seed=_scoring_seed(context, chain, round_index),
            device=context.device,
            adaptive=context.config.adaptive_scoring,
            int8=context.config.int8_scoring,
            progress=progress,
        )
    context.forward_passes["scoring"] += scores.forward_passes
    return scores


def _scoring_seed(context: _SeedContext, chain: _QueryChain, round_index: int) -> int:
    return derived_seed(context.seed, chain.start, "score", round_index)


def _completion(context: _SeedContext, chain: _QueryChain, round_index: int) -> Completion | None:
    """Adaptive scores: how select() draws the rest of an early-stopped pick's copies (None: exact scores)."""
    if not context.config.adaptive_scoring:
        return None

    def complete(scores: Scores, examples: npt.NDArray[np.int64]) -> Scores:
        with context.timer("score"):
            return complete_draws(
                chain.model,
                context.dataset.x_train,
                chain.sigma_indices,
                scores,
                examples,
                seed=_scoring_seed(context, chain, round_index),
                device=context.device,
            )

    return complete


def _run_round(context: _SeedContext, chain: _QueryChain, round_index: int, scores: Scores) -> None:
    """One round of Algorithm 1 after scoring: select 2B -> oracle answers -> σ updated -> fine-tune."""
    config = context.config
    rng = np.random.default_rng(
        derived_seed(context.seed, chain.start, chain.strategy, "select", round_index)
    )
    selection = select(
        chain.strategy,
        scores,
        config.budget,
        chain.queried,
        rng,
        complete=_completion(context, chain, round_index),
    )
    context.forward_passes["completion"] += selection.completion_passes
    indices = np.asarray(selection.indices, dtype=np.int64)
    if indices.size:
        with context.timer("oracle"):
            chain.sigma_indices[indices] = context.oracle.answer(indices)
        chain.queried[indices] = True
    finetune = _train_config(
        config,
        epochs=config.finetune_epochs,
        lr=config.finetune_lr,
        seed=derived_seed(context.seed, chain.start, chain.strategy, "finetune", round_index),
    )
    with (
        context.timer("finetune"),
        _task_bar(f"fine-tune {chain.strategy}", context.show_progress) as progress,
    ):
        train_model(
            chain.model,
            context.dataset.x_train,
            context.dataset.y_train,
            chain.sigma_indices,
            finetune,
            device=context.device,
            progress=progress,
        )


def _point(queries: int, metrics: Mapping[str, Any], sigma_indices: npt.NDArray[np.int64]) -> dict[str, Any]:
    point: dict[str, Any] = {"queries": queries}
    point.update({name: float(metrics[name]) for name in METRIC_NAMES})
    point["mean_sigma_index"] = float(np.mean(sigma_indices))
    return point


def _plan(config: SimulationConfig) -> tuple[list[str], list[tuple[str, str, bool]]]:
    """Base methods to train, and query chains (start, strategy, evaluate after every round)."""
    needed = {m for m in config.methods if m in BASE_METHODS}
    needed |= {AQPL_STARTS[m] for m in config.methods if m in AQPL_STARTS}
    if config.strategies:
        needed.add(CURVE_START)
    chains = [(CURVE_START, strategy, True) for strategy in config.strategies]
    for method in config.methods:
        start = AQPL_STARTS.get(method)
        if start is not None and (start, AQPL_STRATEGY, True) not in chains:
            chains.append((start, AQPL_STRATEGY, False))  # only its last round is reported
    return [m for m in BASE_METHODS if m in needed], chains


def _stage_count(config: SimulationConfig) -> int:
    """Per seed: F_o, one per base method, one per chain round (the outer progress bar's total)."""
    bases, chains = _plan(config)
    return 1 + len(bases) + config.rounds * len(chains)


def _simulate_seed(context: _SeedContext) -> dict[str, Any]:
    """Every requested method and strategy curve for one seed."""
    config = context.config
    bases, chain_plan = _plan(config)
    trained: dict[str, tuple[nn.Module, npt.NDArray[np.int64], dict[str, Any]]] = {}
    for method in bases:
        model, sigma_indices = _train_base(context, method)
        trained[method] = (model, sigma_indices, _evaluate(context, model))

    chains: dict[tuple[str, str], _QueryChain] = {}
    shared_first_scores: dict[str, Scores] = {}
    # Every chain from one start is in the same state in its first round: score once for all of them.
    first_round_draws: dict[str, int] = defaultdict(int)
    for start, strategy, _ in chain_plan:
        first_round_draws[start] = max(first_round_draws[start], _draws_needed(strategy, config.draws))
    for start, strategy, evaluate_every_round in chain_plan:
        start_model, start_sigmas, start_metrics = trained[start]
        chain = _QueryChain(
            start=start,
            strategy=strategy,
            model=copy.deepcopy(start_model),
            sigma_indices=start_sigmas.copy(),
            queried=np.zeros(len(start_sigmas), dtype=np.bool_),
        )
        chain.points.append(_point(0, start_metrics, chain.sigma_indices))
        for round_index in range(config.rounds):
            context.advance(f"{strategy} from {start}, round {round_index + 1}/{config.rounds}")
            draws = _draws_needed(strategy, config.draws)
            if round_index == 0 and draws > 0:
                if start not in shared_first_scores:
                    shared_first_scores[start] = _score(context, chain, 0, first_round_draws[start])
                scores = shared_first_scores[start]
            else:
                scores = _score(context, chain, round_index, draws)
            _run_round(context, chain, round_index, scores)
            if evaluate_every_round or round_index == config.rounds - 1:
                metrics = _evaluate(context, chain.model)
                chain.points.append(_point(int(chain.queried.sum()), metrics, chain.sigma_indices))
        chains[(start, strategy)] = chain

    methods: dict[str, dict[str, Any]] = {}
    for method in config.methods:
        if method in BASE_METHODS:
            _, sigma_indices, metrics = trained[method]
            methods[method] = {**_point(0, metrics, sigma_indices), "details": _json_ready(metrics)}
        else:
            methods[method] = dict(chains[(AQPL_STARTS[method], AQPL_STRATEGY)].points[-1])
    return {
        "seed": context.seed,
        "methods": methods,
        "curves": {strategy: chains[(CURVE_START, strategy)].points for strategy in config.strategies},
        "oracle": context.oracle.summary(),
        "forward_passes": dict(context.forward_passes),
    }


def _json_ready(value: Any) -> Any:
    """numpy scalars and non-string keys (severities) -> JSON types."""
    if isinstance(value, Mapping):
        return {str(key): _json_ready(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_ready(item) for item in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof 1) over seeds; 0 for a single seed."""
    array = np.asarray(values, dtype=np.float64)
    return float(array.mean()), float(array.std(ddof=1)) if array.size > 1 else 0.0


def _summarise(points: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One entry per metric (mean over seeds) and `<metric>_std` beside it."""
    summary: dict[str, Any] = {"queries": round(float(np.mean([p["queries"] for p in points])))}
    for metric in (*METRIC_NAMES, "mean_sigma_index"):
        summary[metric], summary[f"{metric}_std"] = _mean_std([p[metric] for p in points])
    return summary


def _aggregate(
    per_seed: Sequence[Mapping[str, Any]], config: SimulationConfig
) -> tuple[dict[str, Any], dict[str, Any]]:
    methods = {
        method: _summarise([seed["methods"][method] for seed in per_seed]) for method in config.methods
    }
    curves = {
        strategy: [
            _summarise([seed["curves"][strategy][round_index] for seed in per_seed])
            for round_index in range(config.rounds + 1)
        ]
        for strategy in config.strategies
    }
    return methods, curves


def run_simulation(config: SimulationConfig, *, progress: bool = True) -> dict[str, Any]:
    """Every seed of the simulation; returns the results dict that `write_results` writes."""
    started = time.perf_counter()
    cpu_started = time.process_time()  # all threads of this process: contention-free cost on a shared machine
    timer = _Timer()
    device = resolve_device(config.device)
    with timer("data"):
        dataset = load_dataset(
            config.dataset_format,
            config.dataset_path,
            train_limit=config.train_limit,
            test_limit=config.test_limit,
            seed=config.data_seed,
        )
        suite = build_corruption_suite(
            dataset.x_test,
            dataset_key=dataset.name,
            seed=config.data_seed,
            cache_dir=config.cache_dir,
            corruption_names=config.corruption_names,
            progress=progress,
        )
    spec = spec_for_dataset(dataset, config.model)
    gnt_index = (
        gnt_sigma_index(dataset.name, dataset.image_shape[2])
        if config.gnt_sigma_index is None
        else config.gnt_sigma_index
    )
    per_seed: list[dict[str, Any]] = []
    seed_seconds: list[float] = []
    stages = tqdm(
        total=_stage_count(config) * len(config.seeds),
        desc="simulate",
        disable=not progress,
        dynamic_ncols=True,
    )
    try:
        for seed in config.seeds:
            seed_started = time.perf_counter()

            def advance(stage: str, seed: int = seed) -> None:
                stages.set_postfix_str(f"seed {seed}: {stage}", refresh=False)
                stages.update(1)

            advance("train F_o")
            with timer("train"):
                reference = _train_reference(config, dataset, spec, device, seed, progress)
            oracle = SimulatedOracle(
                reference,
                dataset.x_train,
                dataset.y_train,
                device=device,
                seed=derived_seed(seed, "oracle"),
                threshold=config.oracle_threshold,
                draws=config.oracle_draws,
            )
            context = _SeedContext(
                config,
                seed,
                dataset,
                suite,
                spec,
                device,
                gnt_index,
                _MemoOracle(oracle),
                timer,
                progress,
                advance,
            )
            per_seed.append(_simulate_seed(context))
            seed_seconds.append(time.perf_counter() - seed_started)
    finally:
        stages.close()
    methods, curves = _aggregate(per_seed, config)
    return {
        "methods": methods,
        "curves": curves,
        "config": config.to_dict(),
        "dataset": {
            "name": dataset.name,
            "train_examples": len(dataset.y_train),
            "test_examples": len(dataset.y_test),
            "image_shape": list(dataset.image_shape),
            "num_classes": dataset.num_classes,
            "gnt_sigma_index": gnt_index,
            "gaussian_severities": sorted(float(c) for c in suite.gaussian),
            "corruptions": list(suite.corruptions),
        },
        "per_seed": per_seed,
        "timing": {
            "wall_seconds": time.perf_counter() - started,
            "cpu_seconds": time.process_time() - cpu_started,
            "seed_seconds": seed_seconds,
            "seconds_by_kind": dict(timer.seconds),
            "device": str(device),
            "torch_threads": torch.get_num_threads(),
        },
    }


def _train_reference(
    config: SimulationConfig,
    dataset: ImageDataset,
    spec: ModelSpec,
    device: torch.device,
    seed: int,
    progress: bool,
) -> nn.Module:
    """F_o (clean data, strong noise augmentation), checkpointed in the cache dir and reused if it matches."""
    train_config = _train_config(
        config, epochs=config.reference_epochs, lr=config.lr, seed=derived_seed(seed, "reference")
    )
    checkpoint = None
    if config.cache_dir is not None:
        checkpoint = config.cache_dir / f"reference-{dataset.name}-{config.model}-seed{seed}.safetensors"
        checkpoint.parent.mkdir(parents=True, exist_ok=True)
    with _task_bar("train F_o", progress) as callback:
        return train_reference_classifier(
            spec,
            dataset.x_train,
            dataset.y_train,
            train_config,
            device=device,
            progress=callback,
            checkpoint_path=checkpoint,
        )


# ---------------------------------------------------------------------------------------------
# Writers

METHOD_LABELS = {
    "standard": "Standard",
    "gnt": "GNT",
    "cat": "CAT",
    "aqpl-gnt": "AQPL-GNT",
    "aqpl-cat": "AQPL-CAT",
}
STRATEGY_LABELS = {
    "aqpl": "AQPL",
    "random": "Random",
    "clean_uncertainty": "Clean uncertainty",
    "noise_uncertainty": "Noise uncertainty",
}
# Marker and line style per strategy, so the plots read without colour.
STRATEGY_STYLES = {
    "aqpl": ("o", "-"),
    "random": ("s", "--"),
    "clean_uncertainty": ("^", ":"),
    "noise_uncertainty": ("D", "-."),
}
METRIC_TITLES = {"clean": "Clean", "gaussian": "Gaussian noise", "corruptions": "Common corruptions"}


def _percent(mean: float, std: float) -> str:
    return f"{100 * mean:.2f} ± {100 * std:.2f}"


def results_markdown(results: Mapping[str, Any]) -> str:
    """The paper's Table 1 (method x clean / Gaussian / corruptions, mean ± std over seeds) and the curves."""
    config = results["config"]
    dataset = results["dataset"]
    seeds = config["seeds"]
    lines = [
        "## Accuracy by method",
        "",
        f"Top-1 accuracy (%) on {dataset['name']} ({dataset['train_examples']} training, "
        f"{dataset['test_examples']} test images), mean ± std over {len(seeds)} seed(s); "
        f"AQPL rows after {config['rounds']} round(s) of {2 * config['budget']} queries. "
        f"Gaussian: mean over σ = {', '.join(f'{c:g}' for c in dataset['gaussian_severities'])}; "
        f"corruptions: mean over {len(dataset['corruptions'])} corruption(s) x 5 severities.",
        "",
        "| Method | Clean | Gaussian | Corruptions | mean σ_i |",
        "|---|---:|---:|---:|---:|",
    ]
    for method, row in results["methods"].items():
        cells = " | ".join(_percent(row[m], row[f"{m}_std"]) for m in METRIC_NAMES)
        lines.append(
            f"| {METHOD_LABELS.get(method, method)} | {cells} | {row['mean_sigma_index'] / 100:.3f} |"
        )
    if results["curves"]:
        lines += [
            "",
            "## Accuracy against queries, by strategy (all start from the GNT model)",
            "",
            "| Strategy | Queries | Clean | Gaussian | Corruptions |",
            "|---|---:|---:|---:|---:|",
        ]
        for strategy, points in results["curves"].items():
            for point in points:
                cells = " | ".join(_percent(point[m], point[f"{m}_std"]) for m in METRIC_NAMES)
                lines.append(f"| {STRATEGY_LABELS.get(strategy, strategy)} | {point['queries']} | {cells} |")
    return "\n".join(lines) + "\n"


def write_curve_plots(results: Mapping[str, Any], out_dir: Path) -> list[Path]:
    """curves_<metric>.png: accuracy against queries, one line per strategy (the paper's Figures 4-5)."""
    from matplotlib.figure import Figure  # no pyplot: no global state; PNGs go through the Agg canvas

    if not results["curves"]:
        return []
    paths = []
    curves = results["curves"]
    # Strategies share their query counts: shift each a little sideways so the error bars stay apart.
    dodge = 0.012 * max(max(p["queries"] for p in points) for points in curves.values())
    for metric in METRIC_NAMES:
        figure = Figure(figsize=(4.8, 3.6), dpi=100, layout="constrained")
        axes = figure.add_subplot()
        for position, (strategy, points) in enumerate(curves.items()):
            marker, linestyle = STRATEGY_STYLES.get(strategy, ("x", "-"))
            shift = (position - (len(curves) - 1) / 2) * dodge
            axes.errorbar(
                [p["queries"] + shift for p in points],
                [100 * p[metric] for p in points],
                yerr=[100 * p[f"{metric}_std"] for p in points],
                marker=marker,
                linestyle=linestyle,
                capsize=3,
                markersize=5,
                label=STRATEGY_LABELS.get(strategy, strategy),
            )
        axes.set_xlabel("number of queries")
        axes.set_ylabel("top-1 accuracy (%)")
        axes.set_title(f"{METRIC_TITLES[metric]} ({results['dataset']['name']})")
        axes.grid(alpha=0.3)
        axes.legend(fontsize="small")
        path = out_dir / f"curves_{metric}.png"
        figure.savefig(path)
        paths.append(path)
    return paths


def write_results(results: Mapping[str, Any], out_dir: Path) -> list[Path]:
    """results.json, results.md and curves_{clean,gaussian,corruptions}.png under out_dir."""
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / "results.json"
    json_path.write_text(json.dumps(_json_ready(results), indent=2, allow_nan=False) + "\n")
    markdown_path = out_dir / "results.md"
    markdown_path.write_text(results_markdown(results))
    return [json_path, markdown_path, *write_curve_plots(results, out_dir)]
