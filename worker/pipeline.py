"""The ML steps of the platform, composed from worker/ml: no database, no Celery.

The tasks in worker/jobs/ load rows, call these functions outside any transaction, and write
the results back. Every function is deterministic for its inputs and the project seed (on CPU),
so a step that runs twice after a redelivery writes the same results.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from aqpl.corruption_names import CORRUPTION_NAMES
from aqpl.datasets import DatasetLimits, ImageDataset, load_dataset, stratified_subset
from aqpl.ladder import LADDER_SIZE
from backend.projects.config import ProjectConfig
from worker.ml.checkpoints import CheckpointInfo, load_checkpoint, save_checkpoint
from worker.ml.corruptions import FALLBACK_SUITE, CorruptionSuite, build_corruption_suite
from worker.ml.evaluation import evaluate
from worker.ml.models import ModelSpec, build_model, spec_for_images
from worker.ml.noise import derive_seed
from worker.ml.onnx_export import export_onnx, failure_reason, onnx_path_beside
from worker.ml.oracle import SimulatedOracle, train_reference_classifier
from worker.ml.scoring import Scores, ScoringPrecision, complete_draws, score_examples
from worker.ml.strategies import Completion, select
from worker.ml.training import CATConfig, TrainConfig, TrainResult, train_cat, train_model

Progress = Callable[[int, int], None]
logger = logging.getLogger("aqpl.worker")

# Independent random streams of a project, mixed with the project seed and the round number.
_STREAM_INIT = 1
_STREAM_PRETRAIN = 2
_STREAM_SCORE = 3
_STREAM_SELECT = 4
_STREAM_FINETUNE = 5
_STREAM_EVALUATION = 6
_STREAM_REFERENCE = 7  # F_o's weights, levels and batches (Eq. 7's reference classifier)
_STREAM_ORACLE = 8  # the simulated oracle's noise fields: the same in every round, so σ_o is the example's
EVALUATION_BATCH = 256  # images per forward pass when measuring accuracy


def stream_seed(seed: int, stream: int, round_number: int = 0) -> int:
    """A 31-bit seed for one step of one round (numpy's default_rng and torch both accept it)."""
    return derive_seed(seed, stream, round_number) & 0x7FFFFFFF


# ---------------------------------------------------------------------------------------------
# Import


def import_dataset(config: ProjectConfig, *, limits: DatasetLimits | None = None) -> ImageDataset:
    """Read the project's dataset (format, path, subset sizes) as uint8 NHWC arrays, within `limits`."""
    dataset = config.dataset
    return load_dataset(
        dataset.format,
        Path(dataset.path) if dataset.path else None,
        train_limit=dataset.train_limit,
        test_limit=dataset.test_limit,
        seed=config.seed,
        limits=limits,
    )


def dataset_key(config: ProjectConfig) -> str:
    """The name worker/ml keys per-dataset defaults on (Gaussian severities)."""
    return config.dataset.format


def stacked_images(dataset: ImageDataset) -> npt.NDArray[np.uint8]:
    """Train rows then test rows: the layout of the project's images.npy."""
    return np.concatenate([dataset.x_train, dataset.x_test]).astype(np.uint8, copy=False)


# ---------------------------------------------------------------------------------------------
# Training


def train_config(config: ProjectConfig, *, epochs: int, seed: int) -> TrainConfig:
    return TrainConfig(epochs=epochs, batch_size=config.batch_size, lr=config.learning_rate, seed=seed)


@dataclass(frozen=True)
class Pretrained:
    model: nn.Module
    spec: ModelSpec
    sigma_indices: npt.NDArray[np.int64]  # σ per training example after pretraining (CAT adapts them)
    result: TrainResult
    train_config: TrainConfig


def pretrain(
    config: ProjectConfig,
    x_train: npt.NDArray[np.uint8],
    y_train: npt.NDArray[np.int64],
    class_names: Sequence[str],
    sigma_indices: npt.NDArray[np.int64],
    *,
    device: torch.device,
    progress: Progress | None = None,
) -> Pretrained:
    """GNT (every example at its σ) or CAT (σ adapted while training) from fresh weights."""
    spec = spec_for_images(x_train, len(class_names), config.model, tuple(class_names))
    model = build_model(spec, seed=stream_seed(config.seed, _STREAM_INIT))
    settings = train_config(config, epochs=config.epochs, seed=stream_seed(config.seed, _STREAM_PRETRAIN))
    if config.method == "cat":
        result, adapted = train_cat(
            model, x_train, y_train, sigma_indices, settings, CATConfig(), device=device, progress=progress
        )
        return Pretrained(model, spec, np.asarray(adapted, dtype=np.int64), result, settings)
    result = train_model(model, x_train, y_train, sigma_indices, settings, device=device, progress=progress)
    return Pretrained(model, spec, np.asarray(sigma_indices, dtype=np.int64).copy(), result, settings)


def finetune(
    model: nn.Module,
    config: ProjectConfig,
    round_number: int,
    x_train: npt.NDArray[np.uint8],
    y_train: npt.NDArray[np.int64],
    sigma_indices: npt.NDArray[np.int64],
    *,
    device: torch.device,
    progress: Progress | None = None,
) -> tuple[TrainResult, TrainConfig]:
    """Continue training the previous round's model on the updated σ (Eq. 2)."""
    settings = train_config(
        config,
        epochs=config.finetune_epochs,
        seed=stream_seed(config.seed, _STREAM_FINETUNE, round_number),
    )
    result = train_model(model, x_train, y_train, sigma_indices, settings, device=device, progress=progress)
    return result, settings


def load_model(path: Path, device: torch.device) -> tuple[nn.Module, ModelSpec, dict[str, Any]]:
    model, metadata = load_checkpoint(path, device=device)
    return model, ModelSpec.from_dict(metadata["spec"]), metadata


def sigma_summary(sigma_indices: npt.NDArray[np.int64]) -> dict[str, Any]:
    """What a checkpoint says about the σ it was trained with (ladder indices)."""
    values = np.asarray(sigma_indices, dtype=np.int64)
    if values.size == 0:
        return {"count": 0}
    return {
        "count": int(values.size),
        "mean_index": float(values.mean()),
        "median_index": float(np.median(values)),
        "min_index": int(values.min()),
        "max_index": int(values.max()),
        "histogram": np.bincount(values, minlength=LADDER_SIZE)[:LADDER_SIZE].tolist(),
    }


def training_metadata(
    config: ProjectConfig,
    round_number: int,
    settings: TrainConfig,
    result: TrainResult,
    sigma_indices: npt.NDArray[np.int64],
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "round": round_number,
        "method": config.method,
        "dataset": config.dataset.model_dump(mode="json", exclude={"path"}),
        "training": {**asdict(settings), "final_loss": result.final_loss, "seconds": result.seconds},
        "sigma": sigma_summary(sigma_indices),
        **(extra or {}),
    }


def save_weights(
    path: Path, model: nn.Module, spec: ModelSpec, metadata: Mapping[str, Any]
) -> CheckpointInfo:
    return save_checkpoint(path, model, spec, metadata)


def publish_weights(
    path: Path, model: nn.Module, spec: ModelSpec, metadata: Mapping[str, Any]
) -> CheckpointInfo:
    """The published checkpoint: its ONNX export beside `path` first, then the safetensors file,
    whose metadata records the export (opset, sha256, size, input contract) under "onnx".

    A failed export does not stop the publish (the safetensors file is the checkpoint; ONNX is a
    second format): the metadata records "onnx": null and the reason as "onnx_error", the worker
    logs a warning, and the API answers 404 with that reason for the ONNX file.
    """
    onnx_path = onnx_path_beside(path)
    onnx: dict[str, Any] | None = None
    reason: dict[str, str] = {}
    try:
        onnx = export_onnx(model, spec, onnx_path).to_metadata()
    except Exception as error:  # any exporter failure: the publish goes on without ONNX
        with contextlib.suppress(OSError):  # tidiness only: the API serves what the metadata names
            onnx_path.unlink(missing_ok=True)
        reason = {"onnx_error": failure_reason(error)}
        logger.warning("ONNX export of %s failed, publishing without it: %s", path.name, reason["onnx_error"])
    return save_checkpoint(path, model, spec, {**metadata, "onnx": onnx, **reason})


# ---------------------------------------------------------------------------------------------
# The simulated oracle (Eq. 7): people's answers against a reference classifier's


def train_reference(
    config: ProjectConfig,
    x_train: npt.NDArray[np.uint8],
    y_train: npt.NDArray[np.int64],
    class_names: Sequence[str],
    *,
    device: torch.device,
    path: Path,
    progress: Progress | None = None,
) -> None:
    """F_o saved at `path`: the project's model trained at levels drawn from the whole ladder, as many
    epochs as pretraining, on its own seed stream. A file made from the same data and settings is
    kept (its fingerprint matches), so a redelivered pretraining does not train it twice."""
    spec = spec_for_images(x_train, len(class_names), config.model, tuple(class_names))
    settings = train_config(config, epochs=config.epochs, seed=stream_seed(config.seed, _STREAM_REFERENCE))
    train_reference_classifier(
        spec, x_train, y_train, settings, device=device, progress=progress, checkpoint_path=path
    )


def oracle_sigma(
    config: ProjectConfig,
    reference_path: Path,
    x_train: npt.NDArray[np.uint8],
    y_train: npt.NDArray[np.int64],
    rows: npt.NDArray[np.int64],
    *,
    device: torch.device,
) -> npt.NDArray[np.int64]:
    """σ_o (ladder index) of training rows `rows`, answered by the simulated oracle with F_o from
    `reference_path` and the engine's sequential test (its defaults: τ = 0.95, δ = 0.05)."""
    reference, _ = load_checkpoint(reference_path, device=device)
    oracle = SimulatedOracle(
        reference, x_train, y_train, device=device, seed=stream_seed(config.seed, _STREAM_ORACLE)
    )
    return oracle.answer(np.asarray(rows, dtype=np.int64))


# ---------------------------------------------------------------------------------------------
# Scoring and selection


def score_shard(
    model: nn.Module,
    config: ProjectConfig,
    round_number: int,
    x_train: npt.NDArray[np.uint8],
    sigma_indices: npt.NDArray[np.int64],
    start: int,
    stop: int,
    *,
    device: torch.device,
    precision: ScoringPrecision,
    progress: Progress | None = None,
) -> Scores:
    """Eq. 5's H and the baseline scores of training examples [start, stop); shards merge exactly.

    The project's `scoring` picks exact (all M draws) or adaptive scoring (early stopping; the
    selection then completes its picks, `completion`); `precision` is the worker's arithmetic.
    """
    return score_examples(
        model,
        x_train,
        sigma_indices,
        draws=config.draws,
        seed=stream_seed(config.seed, _STREAM_SCORE, round_number),
        device=device,
        start=start,
        stop=stop,
        progress=progress,
        adaptive=config.scoring == "adaptive",
        mixed_precision=precision.mixed_precision,
        channels_last=precision.channels_last,
        int8=precision.int8,
    )


def completion(
    model: nn.Module,
    config: ProjectConfig,
    round_number: int,
    x_train: npt.NDArray[np.uint8],
    sigma_indices: npt.NDArray[np.int64],
    *,
    device: torch.device,
    precision: ScoringPrecision,
) -> Completion:
    """Draws chosen examples on to all M copies with the round's noise: the copies exact scoring
    would have drawn, so a completed pick reads exact scoring's H (int8 scores complete in fp32)."""
    seed = stream_seed(config.seed, _STREAM_SCORE, round_number)

    def complete(scores: Scores, examples: npt.NDArray[np.int64]) -> Scores:
        return complete_draws(
            model,
            x_train,
            sigma_indices,
            scores,
            examples,
            seed=seed,
            device=device,
            **precision.completion_arguments(),
        )

    return complete


@dataclass(frozen=True)
class Selected:
    index: int  # row among the training examples
    side: str
    score: float  # the value the strategy ranked by


def select_queries(
    config: ProjectConfig,
    round_number: int,
    entropy: npt.NDArray[np.float64],
    clean_uncertainty: npt.NDArray[np.float64],
    noise_uncertainty: npt.NDArray[np.float64],
    already_queried: npt.NDArray[np.bool_],
) -> list[Selected]:
    """Up to 2B examples not answered before, by the project's strategy (deterministic per round)."""
    scores = Scores(entropy, clean_uncertainty, noise_uncertainty, forward_passes=0)
    chosen, _ = select_completed(config, round_number, scores, already_queried)
    return chosen


def select_completed(
    config: ProjectConfig,
    round_number: int,
    scores: Scores,
    already_queried: npt.NDArray[np.bool_],
    complete: Completion | None = None,
) -> tuple[list[Selected], Scores]:
    """`select_queries` on Scores that may have stopped early: with `complete`, picks that stopped
    early get all M draws and the choice is made again (strategies.select). Returns the picks and
    the scores as completed (the same object when nothing needed completing)."""
    completed = scores

    def complete_and_keep(current: Scores, examples: npt.NDArray[np.int64]) -> Scores:
        nonlocal completed
        assert complete is not None
        completed = complete(current, examples)
        return completed

    rng = np.random.default_rng(stream_seed(config.seed, _STREAM_SELECT, round_number))
    selection = select(
        config.strategy,
        scores,
        config.budget,
        already_queried,
        rng,
        complete=None if complete is None else complete_and_keep,
    )
    ranked_by = {
        "clean_uncertainty": completed.clean_uncertainty,
        "noise_uncertainty": completed.noise_uncertainty,
    }.get(config.strategy, completed.entropy)
    chosen = [
        Selected(int(index), side, float(ranked_by[index]))
        for index, side in zip(selection.indices.tolist(), selection.sides, strict=True)
    ]
    return chosen, completed


# ---------------------------------------------------------------------------------------------
# Evaluation


@dataclass(frozen=True)
class EvaluationSet:
    images: npt.NDArray[np.uint8]  # the clean test images evaluated (a stratified subset if limited)
    labels: npt.NDArray[np.int64]
    rows: npt.NDArray[np.int64]  # which test examples (dataset_index) they are
    suite: CorruptionSuite


def evaluation_set(
    config: ProjectConfig,
    x_test: npt.NDArray[np.uint8],
    y_test: npt.NDArray[np.int64],
    *,
    cache_dir: Path | None,
) -> EvaluationSet:
    """The test images (limited per the project's evaluation options) and their corrupted copies."""
    options = config.evaluation
    seed = config.seed
    limit = options.test_limit
    rows = np.arange(len(y_test), dtype=np.int64)
    if limit is not None and limit < len(y_test):
        rows = stratified_subset(y_test, limit, np.random.default_rng(stream_seed(seed, _STREAM_EVALUATION)))
    images = np.ascontiguousarray(x_test[rows])
    labels = np.asarray(y_test[rows], dtype=np.int64)
    names = tuple(options.corruptions or CORRUPTION_NAMES)  # None: all of them
    severities = tuple(options.severities)
    suite = build_corruption_suite(
        images,
        dataset_key=dataset_key(config),
        seed=seed,
        cache_dir=cache_dir,
        suite=FALLBACK_SUITE,  # a project's corruption names are the imagenet-c-lowres ones
        corruption_names=names,
        corruption_severities=severities,
    )
    return EvaluationSet(images, labels, rows, suite)


def evaluate_model(model: nn.Module, evaluation: EvaluationSet, *, device: torch.device) -> dict[str, Any]:
    """Clean, Gaussian and corruption accuracy as JSON-ready floats (fractions in [0, 1])."""
    metrics, _per_image = evaluate(
        model,
        evaluation.images,
        evaluation.labels,
        evaluation.suite,
        device=device,
        batch_size=EVALUATION_BATCH,
    )
    result: dict[str, Any] = _json_ready(dict(metrics))
    result["test_examples"] = len(evaluation.labels)
    return result


def _json_ready(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(key): _json_ready(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_ready(item) for item in value]
    if isinstance(value, np.generic):
        return value.item()
    return value
