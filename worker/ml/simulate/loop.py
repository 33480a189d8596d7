"""The headless AQPL research loop behind `aqpl simulate` (the paper's Algorithm 1 with an oracle).

Once per run: the dataset subsets, the corruption suite and the oracle's reference classifier F_o
(trained on the whole training split with noise at every ladder level, cached), so every run seed
is evaluated on the same images and asks the same simulated "person". Per seed: train the base
methods (Standard, GNT, CAT), then run query chains: score every training example (H of Eq. 5) ->
select 2B examples -> the oracle answers their levels (Eq. 7) -> σ updated -> fine-tune ->
evaluate, for R rounds. The chains of one seed are *paired*: each starts from the same base model,
and every round's fine-tuning uses the same batch order and training noise (its seed depends on the
start and the round, not the strategy), so two chains differ only in which σ_i changed. The
controls GNT-FT and CAT-FT are chains that ask nothing.

Work is shared where the result is identical: the first round's scores of all chains from one start
(same model, levels and scoring seed), and the oracle's answers (one per example and run, since the
oracle depends only on F_o and the data seed). Seeds can run in parallel processes (`jobs`).

Pure: no database, web or Celery. `run_simulation` returns a JSON-ready dict (report.py turns it
into results.json, results.md and plots) and the per-image scores the comparisons resample.
"""

from __future__ import annotations

import copy
import hashlib
import json
import multiprocessing
import time
import zlib
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn
from tqdm.auto import tqdm

from aqpl.datasets import ImageDataset, load_dataset
from worker.ml.corruptions import CorruptionSuite, build_corruption_suite
from worker.ml.device import resolve_device
from worker.ml.evaluation import evaluate
from worker.ml.models import ModelSpec, build_model, spec_for_dataset
from worker.ml.oracle import (
    REFERENCE_SIGMA_RANGE,
    SequentialTest,
    SimulatedOracle,
    reference_fingerprint,
    train_reference_classifier,
)
from worker.ml.scoring import Scores, complete_draws, score_examples
from worker.ml.simulate.config import (
    AQPL_STARTS,
    AQPL_STRATEGY,
    BASE_METHODS,
    CONTROL_STARTS,
    CURVE_START,
    METRIC_NAMES,
    NO_QUERIES,
    SimulationConfig,
)
from worker.ml.simulate.diagnostics import RoundDiagnostic, round_diagnostic
from worker.ml.strategies import Completion, Selection, select
from worker.ml.training import (
    CATConfig,
    TrainConfig,
    gnt_sigma_index,
    starting_sigma_indices,
    train_cat,
    train_model,
)

ProgressCallback = Callable[[int, int], None]
ChainKey = tuple[str, str]  # (start method, strategy)
# Per-image scores of one evaluation: metric -> (test images,) in [0, 1].
ImageScores = dict[str, npt.NDArray[np.float64]]


@dataclass(frozen=True)
class SeedOutcome:
    """One seed's JSON-ready results, the per-image scores of every evaluation, and what it cost."""

    summary: dict[str, Any]
    # ("method", name, round) or ("curve", strategy, round) -> per-image scores; round 0 = before queries
    images: dict[tuple[str, str, int], ImageScores]
    oracle_answers: dict[int, int]
    seconds_by_kind: dict[str, float]
    wall_seconds: float


@dataclass(frozen=True)
class RunInputs:
    """What every seed of a run shares: the data, its corruptions, the model recipe and the oracle's F_o."""

    config: SimulationConfig
    dataset: ImageDataset
    suite: CorruptionSuite
    spec: ModelSpec
    device: torch.device
    gnt_index: int
    reference: nn.Module
    reference_examples: int  # F_o's training images
    oracle_key: str  # identifies F_o, the training images and the oracle's test: keys the answer cache


class MemoOracle:
    """Asks the simulated oracle about each example once per run and replays the answer after that."""

    def __init__(self, oracle: SimulatedOracle, known: Mapping[int, int] | None = None) -> None:
        self._oracle = oracle
        self.answers: dict[int, int] = dict(known or {})
        self.asked_now: set[int] = set()

    def answer(self, indices: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        unseen = np.array(sorted({i for i in indices.tolist() if i not in self.answers}), dtype=np.int64)
        if unseen.size:
            answers = self._oracle.answer(unseen)
            self.answers.update(zip(unseen.tolist(), answers.tolist(), strict=True))
            self.asked_now.update(unseen.tolist())
        return np.array([self.answers[i] for i in indices.tolist()], dtype=np.int64)

    def summary(self, asked: set[int]) -> dict[str, Any]:
        levels = np.array([self.answers[i] for i in sorted(asked)], dtype=np.float64)
        oracle = self._oracle
        return {
            "examples_answered": int(levels.size),
            "forward_passes": oracle.forward_passes,
            "levels_decided": oracle.levels_decided,
            "mean_draws_per_level": oracle.forward_passes / oracle.levels_decided
            if oracle.levels_decided
            else None,
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


@dataclass
class _SeedContext:
    """What every stage of one seed shares."""

    inputs: RunInputs
    seed: int
    oracle: MemoOracle
    timer: _Timer
    show_progress: bool
    advance: Callable[[str], None]
    asked: set[int] = field(default_factory=set)  # examples this seed asked the oracle about
    # Noisy images classified: "scoring" by score_examples, "completion" by select() completing
    # early-stopped picks of adaptive scoring.
    forward_passes: dict[str, int] = field(default_factory=lambda: {"scoring": 0, "completion": 0})
    images: dict[tuple[str, str, int], ImageScores] = field(default_factory=dict)

    @property
    def config(self) -> SimulationConfig:
        return self.inputs.config

    @property
    def dataset(self) -> ImageDataset:
        return self.inputs.dataset

    def ask(self, indices: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        with self.timer("oracle"):
            answers = self.oracle.answer(indices)
        self.asked.update(indices.tolist())
        return answers


@dataclass
class QueryChain:
    """One chain of query rounds: the model and levels it fine-tunes, and what it has asked so far."""

    start: str
    strategy: str
    model: nn.Module
    sigma_indices: npt.NDArray[np.int64]
    queried: npt.NDArray[np.bool_]
    points: list[dict[str, Any]] = field(default_factory=list)
    images: list[ImageScores] = field(default_factory=list)
    diagnostics: list[RoundDiagnostic] = field(default_factory=list)


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


def draws_needed(strategy: str, draws: int) -> int:
    """Noisy copies per example a strategy's score needs: random and the controls read no score, clean
    uncertainty only the clean pass (one draw is the least `score_examples` makes), the others all M."""
    if strategy in ("random", NO_QUERIES):
        return 0
    return 1 if strategy == "clean_uncertainty" else draws


def _train_config(config: SimulationConfig, *, epochs: int, lr: float, seed: int) -> TrainConfig:
    return TrainConfig(epochs=epochs, lr=lr, batch_size=config.batch_size, seed=seed, augment=config.augment)


def _evaluate(context: _SeedContext, model: nn.Module) -> tuple[dict[str, Any], ImageScores]:
    with context.timer("evaluate"):
        metrics, per_image = evaluate(
            model,
            context.dataset.x_test,
            context.dataset.y_test,
            context.inputs.suite,
            device=context.inputs.device,
            fast_cpu=True,  # every model is evaluated alike; ~3x faster on the CPU (evaluation.predict)
        )
    return dict(metrics), per_image


def _train_base(context: _SeedContext, method: str) -> tuple[nn.Module, npt.NDArray[np.int64]]:
    """Standard (σ = 0), GNT (one σ for all) or CAT (σ_i adapted while training): model and final levels."""
    config = context.config
    dataset = context.dataset
    model = build_model(context.inputs.spec, seed=derived_seed(context.seed, method, "init"))
    train_config = _train_config(
        config, epochs=config.epochs, lr=config.lr, seed=derived_seed(context.seed, method, "train")
    )
    sigma_indices = starting_sigma_indices(method, len(dataset.y_train), gnt_index=context.inputs.gnt_index)
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
                device=context.inputs.device,
                progress=progress,
            )
        else:
            train_model(
                model,
                dataset.x_train,
                dataset.y_train,
                sigma_indices,
                train_config,
                device=context.inputs.device,
                progress=progress,
            )
    return model, sigma_indices


def _scoring_seed(context: _SeedContext, chain: QueryChain, round_index: int) -> int:
    # The start and the round, not the strategy: chains in the same state get the same scores.
    return derived_seed(context.seed, chain.start, "score", round_index)


def _score(context: _SeedContext, chain: QueryChain, round_index: int, draws: int) -> Scores:
    if draws == 0:  # a strategy that reads no score (random, the controls)
        zeros = np.zeros(len(chain.sigma_indices), dtype=np.float64)
        return Scores(entropy=zeros, clean_uncertainty=zeros, noise_uncertainty=zeros, forward_passes=0)
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
            device=context.inputs.device,
            adaptive=context.config.adaptive_scoring,
            int8=context.config.int8_scoring,
            progress=progress,
        )
    context.forward_passes["scoring"] += scores.forward_passes
    return scores


def _completion(context: _SeedContext, chain: QueryChain, round_index: int) -> Completion | None:
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
                device=context.inputs.device,
            )

    return complete


def _select(context: _SeedContext, chain: QueryChain, round_index: int, scores: Scores) -> Selection:
    if chain.strategy == NO_QUERIES:
        return Selection(np.zeros(0, dtype=np.int64), ())
    rng = np.random.default_rng(
        derived_seed(context.seed, chain.start, chain.strategy, "select", round_index)
    )
    selection = select(
        chain.strategy,
        scores,
        context.config.budget,
        chain.queried,
        rng,
        complete=_completion(context, chain, round_index),
    )
    context.forward_passes["completion"] += selection.completion_passes
    return selection


def finetune_config(config: SimulationConfig, seed: int, start: str, round_index: int) -> TrainConfig:
    """The fine-tuning of one round: shared by every chain from `start` (paired chains)."""
    return _train_config(
        config,
        epochs=config.finetune_epochs,
        lr=config.finetune_lr,
        seed=derived_seed(seed, start, "finetune", round_index),
    )


def _run_round(context: _SeedContext, chain: QueryChain, round_index: int, scores: Scores) -> None:
    """One round of Algorithm 1 after scoring: select 2B -> oracle answers -> σ updated -> fine-tune."""
    selection = _select(context, chain, round_index, scores)
    indices = np.asarray(selection.indices, dtype=np.int64)
    before = chain.sigma_indices.copy()
    if indices.size:
        chain.sigma_indices[indices] = context.ask(indices)
        chain.queried[indices] = True
    if chain.strategy == AQPL_STRATEGY:
        chain.diagnostics.append(_diagnose(context, chain, round_index, scores, selection, before))
    with (
        context.timer("finetune"),
        _task_bar(f"fine-tune {chain.strategy}", context.show_progress) as progress,
    ):
        train_model(
            chain.model,
            context.dataset.x_train,
            context.dataset.y_train,
            chain.sigma_indices,
            finetune_config(context.config, context.seed, chain.start, round_index),
            device=context.inputs.device,
            progress=progress,
        )


def _diagnose(
    context: _SeedContext,
    chain: QueryChain,
    round_index: int,
    scores: Scores,
    selection: Selection,
    before: npt.NDArray[np.int64],
) -> RoundDiagnostic:
    """Corollary 2.1 for one round: the oracle's moves by side, and H against σ_i − σ_o off the queries."""
    # One sample for every run seed (the data seed's): the oracle's answers about it are reused.
    order = np.random.default_rng(derived_seed(context.config.data_seed, "diagnostic")).permutation(
        len(before)
    )
    sample = order[~chain.queried[order]][: context.config.diagnostic_sample].astype(np.int64)
    return round_diagnostic(
        round_index=round_index,
        sides=selection.sides,
        levels_before=before[selection.indices],
        answers=chain.sigma_indices[selection.indices],
        sample_entropy=scores.entropy[sample],
        sample_levels=before[sample],
        sample_answers=context.ask(sample) if sample.size else np.zeros(0, dtype=np.int64),
    )


def point(queries: int, metrics: Mapping[str, Any], sigma_indices: npt.NDArray[np.int64]) -> dict[str, Any]:
    values: dict[str, Any] = {"queries": queries}
    values.update({name: float(metrics[name]) for name in METRIC_NAMES})
    values["mean_sigma_index"] = float(np.mean(sigma_indices))
    return values


def chain_plan(config: SimulationConfig) -> tuple[list[str], list[ChainKey]]:
    """Base methods to train, and the query chains (start, strategy) the methods and curves need."""
    chains: list[ChainKey] = [(CURVE_START, strategy) for strategy in config.strategies]
    for method in config.methods:
        if method in CONTROL_STARTS:
            chains.append((CONTROL_STARTS[method], NO_QUERIES))
        elif method in AQPL_STARTS:
            chains.append((AQPL_STARTS[method], AQPL_STRATEGY))
    chains = list(dict.fromkeys(chains))
    needed = {m for m in config.methods if m in BASE_METHODS} | {start for start, _ in chains}
    return [m for m in BASE_METHODS if m in needed], chains


def method_chain(method: str) -> ChainKey | None:
    """The chain whose rounds are `method`'s (None for a base method)."""
    if method in CONTROL_STARTS:
        return CONTROL_STARTS[method], NO_QUERIES
    if method in AQPL_STARTS:
        return AQPL_STARTS[method], AQPL_STRATEGY
    return None


def stage_count(config: SimulationConfig) -> int:
    """Per seed: one per base method, one per chain round (the outer progress bar's total)."""
    bases, chains = chain_plan(config)
    return len(bases) + config.rounds * len(chains)


def _run_chain(
    context: _SeedContext,
    key: ChainKey,
    base: tuple[nn.Module, npt.NDArray[np.int64], dict[str, Any], ImageScores],
    first_scores: Callable[[QueryChain], Scores],
) -> QueryChain:
    start, strategy = key
    start_model, start_sigmas, start_metrics, start_images = base
    chain = QueryChain(
        start=start,
        strategy=strategy,
        model=copy.deepcopy(start_model),
        sigma_indices=start_sigmas.copy(),
        queried=np.zeros(len(start_sigmas), dtype=np.bool_),
    )
    chain.points.append(point(0, start_metrics, chain.sigma_indices))
    chain.images.append(start_images)
    draws = draws_needed(strategy, context.config.draws)
    for round_index in range(context.config.rounds):
        context.advance(f"{strategy} from {start}, round {round_index + 1}/{context.config.rounds}")
        if round_index == 0 and draws > 0:
            scores = first_scores(chain)
        else:
            scores = _score(context, chain, round_index, draws)
        _run_round(context, chain, round_index, scores)
        metrics, per_image = _evaluate(context, chain.model)
        chain.points.append(point(int(chain.queried.sum()), metrics, chain.sigma_indices))
        chain.images.append(per_image)
    return chain


def _mean_over_rounds(chain: QueryChain) -> dict[str, float]:
    """The paper's summary of a query method: each metric's mean over the query rounds 1..R."""
    return {metric: float(np.mean([p[metric] for p in chain.points[1:]])) for metric in METRIC_NAMES}


def simulate_seed(context: _SeedContext) -> dict[str, Any]:
    """Every requested method and strategy curve for one seed (per-image scores go to context.images)."""
    config = context.config
    bases, plan = chain_plan(config)
    trained: dict[str, tuple[nn.Module, npt.NDArray[np.int64], dict[str, Any], ImageScores]] = {}
    for method in bases:
        model, sigma_indices = _train_base(context, method)
        metrics, per_image = _evaluate(context, model)
        trained[method] = (model, sigma_indices, metrics, per_image)

    # Every chain from one start is in the same state in its first round: score once for all of them.
    first_round_draws: dict[str, int] = defaultdict(int)
    for start, strategy in plan:
        first_round_draws[start] = max(first_round_draws[start], draws_needed(strategy, config.draws))
    shared_first_scores: dict[str, Scores] = {}

    def first_scores(chain: QueryChain) -> Scores:
        if chain.start not in shared_first_scores:
            shared_first_scores[chain.start] = _score(context, chain, 0, first_round_draws[chain.start])
        return shared_first_scores[chain.start]

    chains = {key: _run_chain(context, key, trained[key[0]], first_scores) for key in plan}

    methods: dict[str, dict[str, Any]] = {}
    for method in config.methods:
        key = method_chain(method)
        if key is None:
            _, sigma_indices, metrics, per_image = trained[method]
            methods[method] = {**point(0, metrics, sigma_indices), "details": json_ready(metrics)}
            context.images[("method", method, 0)] = per_image
            continue
        chain = chains[key]
        methods[method] = {
            **chain.points[-1],
            "mean_over_rounds": _mean_over_rounds(chain),
            "rounds": chain.points,
        }
        for round_index, per_image in enumerate(chain.images):
            context.images[("method", method, round_index)] = per_image
    for strategy in config.strategies:
        for round_index, per_image in enumerate(chains[(CURVE_START, strategy)].images):
            context.images[("curve", strategy, round_index)] = per_image
    return {
        "seed": context.seed,
        "methods": methods,
        "curves": {strategy: chains[(CURVE_START, strategy)].points for strategy in config.strategies},
        "diagnostics": {
            f"{strategy} from {start}": [d.to_dict() for d in chain.diagnostics]
            for (start, strategy), chain in chains.items()
            if chain.diagnostics
        },
        "oracle": context.oracle.summary(context.asked),
        "forward_passes": dict(context.forward_passes),
    }


def json_ready(value: Any) -> Any:
    """numpy scalars and non-string keys (severities) -> JSON types."""
    if isinstance(value, Mapping):
        return {str(key): json_ready(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(item) for item in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


# ---------------------------------------------------------------------------------------------
# One run: inputs shared by all seeds, seeds in this process or in a pool


def prepare_inputs(config: SimulationConfig, *, progress: bool, timer: _Timer) -> RunInputs:
    """Data, corruption suite, model recipe, GNT level and F_o (each from the cache when it is there)."""
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
            suite=config.suite,
            corruption_names=config.corruption_names,
            progress=progress,
        )
    spec = spec_for_dataset(dataset, config.model)
    gnt_index = (
        gnt_sigma_index(dataset.name, dataset.image_shape[2])
        if config.gnt_sigma_index is None
        else config.gnt_sigma_index
    )
    with timer("train"):
        reference, reference_examples, fingerprint = _train_reference(config, dataset, spec, device, progress)
    digest = hashlib.sha256()
    digest.update(fingerprint.encode())
    digest.update(np.ascontiguousarray(dataset.x_train).tobytes())
    digest.update(np.asarray(dataset.y_train, dtype=np.int64).tobytes())
    digest.update(json.dumps([config.data_seed, *_oracle_test(config).__dict__.values()]).encode())
    return RunInputs(
        config,
        dataset,
        suite,
        spec,
        device,
        gnt_index,
        reference,
        reference_examples,
        digest.hexdigest()[:16],
    )


def _oracle_test(config: SimulationConfig) -> SequentialTest:
    return SequentialTest(
        threshold=config.oracle_tau, confidence=config.oracle_confidence, max_draws=config.oracle_max_draws
    )


def _train_reference(
    config: SimulationConfig, dataset: ImageDataset, spec: ModelSpec, device: torch.device, progress: bool
) -> tuple[nn.Module, int, str]:
    """F_o on the whole training split (or reference_train_limit of it), noise at every level, cached:
    the model, its training images and its fingerprint."""
    if config.reference_train_limit is None and config.train_limit is None:
        full = dataset
    else:
        full = load_dataset(
            config.dataset_format,
            config.dataset_path,
            train_limit=config.reference_train_limit,
            test_limit=1,
            seed=config.data_seed,
        )
    train_config = _train_config(
        config, epochs=config.reference_epochs, lr=config.lr, seed=derived_seed(config.data_seed, "reference")
    )
    checkpoint = None
    if config.cache_dir is not None:
        checkpoint = (
            config.cache_dir / f"reference-{dataset.name}-{config.model}-data{config.data_seed}.safetensors"
        )
        checkpoint.parent.mkdir(parents=True, exist_ok=True)
    with _task_bar(f"train F_o on {len(full.y_train)} images", progress) as callback:
        model = train_reference_classifier(
            spec,
            full.x_train,
            full.y_train,
            train_config,
            device=device,
            progress=callback,
            checkpoint_path=checkpoint,
        )
    fingerprint = reference_fingerprint(spec, full.x_train, full.y_train, train_config, REFERENCE_SIGMA_RANGE)
    return model, len(full.y_train), fingerprint


def _answers_path(inputs: RunInputs) -> Path | None:
    if inputs.config.cache_dir is None:
        return None
    return inputs.config.cache_dir / f"oracle-answers-{inputs.oracle_key}.json"


def _load_answers(inputs: RunInputs) -> dict[int, int]:
    path = _answers_path(inputs)
    if path is None or not path.is_file():
        return {}
    try:
        return {int(k): int(v) for k, v in json.loads(path.read_text()).items()}
    except (ValueError, AttributeError):
        return {}  # a damaged cache is recomputed, not trusted


def _save_answers(inputs: RunInputs, answers: Mapping[int, int]) -> None:
    path = _answers_path(inputs)
    if path is None:
        return
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps({str(k): v for k, v in sorted(answers.items())}))
    temporary.replace(path)


def _make_oracle(inputs: RunInputs, known: Mapping[int, int]) -> MemoOracle:
    oracle = SimulatedOracle(
        inputs.reference,
        inputs.dataset.x_train,
        inputs.dataset.y_train,
        device=inputs.device,
        seed=derived_seed(inputs.config.data_seed, "oracle"),
        test=_oracle_test(inputs.config),
    )
    return MemoOracle(oracle, known)


def run_seed(
    inputs: RunInputs,
    seed: int,
    known_answers: Mapping[int, int],
    *,
    progress: bool,
    advance: Callable[[str], None],
) -> SeedOutcome:
    started = time.perf_counter()
    timer = _Timer()
    oracle = _make_oracle(inputs, known_answers)
    context = _SeedContext(inputs, seed, oracle, timer, progress, advance)
    summary = simulate_seed(context)
    new_answers = {i: oracle.answers[i] for i in oracle.asked_now}
    return SeedOutcome(
        summary, context.images, new_answers, dict(timer.seconds), time.perf_counter() - started
    )


def _seed_in_subprocess(
    config: SimulationConfig, seed: int, known: dict[int, int], threads: int
) -> SeedOutcome:
    """A pool worker: rebuild the shared inputs from the cache and run one seed without progress bars."""
    torch.set_num_threads(threads)
    inputs = prepare_inputs(config, progress=False, timer=_Timer())
    return run_seed(inputs, seed, known, progress=False, advance=lambda _stage: None)


@dataclass(frozen=True)
class RunOutcome:
    results: dict[str, Any]
    images: dict[int, dict[tuple[str, str, int], ImageScores]]  # seed -> per-image scores


def run_simulation(config: SimulationConfig, *, progress: bool = True, jobs: int = 1) -> RunOutcome:
    """Every seed of the simulation (`jobs` seeds at a time, one torch thread each when jobs > 1)."""
    if jobs > 1 and config.cache_dir is None:
        raise ValueError(
            "parallel seeds (jobs > 1) need a cache_dir: the workers read F_o and the suite from it"
        )
    started = time.perf_counter()
    cpu_started = time.process_time()
    timer = _Timer()
    inputs = prepare_inputs(config, progress=progress, timer=timer)
    answers = _load_answers(inputs)
    outcomes: dict[int, SeedOutcome] = {}
    stages = tqdm(
        total=stage_count(config) * len(config.seeds),
        desc="simulate",
        disable=not progress,
        dynamic_ncols=True,
    )
    try:
        if jobs <= 1:
            for seed in config.seeds:

                def advance(stage: str, seed: int = seed) -> None:
                    stages.set_postfix_str(f"seed {seed}: {stage}", refresh=False)
                    stages.update(1)

                outcome = run_seed(inputs, seed, answers, progress=progress, advance=advance)
                answers.update(outcome.oracle_answers)
                _save_answers(inputs, answers)
                outcomes[seed] = outcome
        else:
            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
                futures = {
                    pool.submit(_seed_in_subprocess, config, seed, dict(answers), 1): seed
                    for seed in config.seeds
                }
                for future in as_completed(futures):
                    outcome = future.result()
                    answers.update(outcome.oracle_answers)
                    _save_answers(inputs, answers)
                    outcomes[futures[future]] = outcome
                    stages.set_postfix_str(f"seed {futures[future]} done", refresh=False)
                    stages.update(stage_count(config))
    finally:
        stages.close()
    ordered = [outcomes[seed] for seed in config.seeds]
    for outcome in ordered:
        for kind, seconds in outcome.seconds_by_kind.items():
            timer.seconds[kind] += seconds
    per_seed = [outcome.summary for outcome in ordered]
    dataset = inputs.dataset
    results = {
        "config": config.to_dict(),
        "dataset": {
            "name": dataset.name,
            "train_examples": len(dataset.y_train),
            "test_examples": len(dataset.y_test),
            "image_shape": list(dataset.image_shape),
            "num_classes": dataset.num_classes,
            "gnt_sigma_index": inputs.gnt_index,
            "suite": inputs.suite.name,
            "gaussian_severities": sorted(float(c) for c in inputs.suite.gaussian),
            "corruptions": {name: sorted(levels) for name, levels in inputs.suite.corruptions.items()},
        },
        "oracle": {
            "tau": config.oracle_tau,
            "confidence": config.oracle_confidence,
            "max_draws": config.oracle_max_draws,
            "reference_train_examples": inputs.reference_examples,
            "note": "F_o, a classifier trained on the whole training split with noise at every ladder level, "
            "stands in for a person",
        },
        "per_seed": per_seed,
        "timing": {
            "wall_seconds": time.perf_counter() - started,
            "cpu_seconds": time.process_time() - cpu_started,  # this process only (jobs = 1: all of it)
            "seed_seconds": [outcome.wall_seconds for outcome in ordered],
            "seconds_by_kind": dict(timer.seconds),
            "device": str(inputs.device),
            "torch_threads": torch.get_num_threads() if jobs <= 1 else 1,
            "jobs": jobs,
        },
    }
    return RunOutcome(results, {outcome.summary["seed"]: outcome.images for outcome in ordered})
