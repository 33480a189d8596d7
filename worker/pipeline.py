"""The ML steps of the platform, composed from worker/ml: no database, no Celery.

The tasks in worker/tasks/ load rows, call these functions outside any transaction, and write
the results back. Every function is deterministic for its inputs and the project seed (on CPU),
so a step that runs twice after a redelivery writes the same results.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from aqpl.corruption_names import CORRUPTION_NAMES, CORRUPTION_SEVERITIES
from aqpl.ladder import LADDER_SIZE
from worker.ml.checkpoints import CheckpointInfo, load_checkpoint, save_checkpoint
from worker.ml.corruptions import FALLBACK_SUITE, CorruptionSuite, build_corruption_suite
from worker.ml.datasets import DatasetLimits, ImageDataset, load_dataset, stratified_subset
from worker.ml.evaluation import evaluate
from worker.ml.models import ModelSpec, build_model, spec_for_images
from worker.ml.noise import derive_seed
from worker.ml.scoring import Scores, score_examples
from worker.ml.strategies import select
from worker.ml.training import CATConfig, TrainConfig, TrainResult, train_cat, train_model

Progress = Callable[[int, int], None]

# Independent random streams of a project, mixed with the project seed and the round number.
_STREAM_INIT = 1
_STREAM_PRETRAIN = 2
_STREAM_SCORE = 3
_STREAM_SELECT = 4
_STREAM_FINETUNE = 5
_STREAM_EVALUATION = 6
EVALUATION_BATCH = 256  # images per forward pass when measuring accuracy


def stream_seed(seed: int, stream: int, round_number: int = 0) -> int:
    """A 31-bit seed for one step of one round (numpy's default_rng and torch both accept it)."""
    return derive_seed(seed, stream, round_number) & 0x7FFFFFFF


# ---------------------------------------------------------------------------------------------
# Import


def import_dataset(config: Mapping[str, Any], *, limits: DatasetLimits | None = None) -> ImageDataset:
    """Read the project's dataset (format, path, subset sizes) as uint8 NHWC arrays, within `limits`."""
    dataset = config["dataset"]
    path = Path(dataset["path"]) if dataset.get("path") else None
    return load_dataset(
        dataset["format"],
        path,
        train_limit=dataset.get("train_limit"),
        test_limit=dataset.get("test_limit"),
        seed=int(config.get("seed", 0)),
        limits=limits,
    )


def dataset_key(config: Mapping[str, Any]) -> str:
    """The name worker/ml keys per-dataset defaults on (Gaussian severities)."""
    return str(config["dataset"]["format"])


def stacked_images(dataset: ImageDataset) -> npt.NDArray[np.uint8]:
    """Train rows then test rows: the layout of the project's images.npy."""
    return np.concatenate([dataset.x_train, dataset.x_test]).astype(np.uint8, copy=False)


# ---------------------------------------------------------------------------------------------
# Training


def train_config(config: Mapping[str, Any], *, epochs: int, seed: int) -> TrainConfig:
    return TrainConfig(
        epochs=epochs,
        batch_size=int(config.get("batch_size", 64)),
        lr=float(config.get("learning_rate", 0.05)),
        seed=seed,
    )


@dataclass(frozen=True)
class Pretrained:
    model: nn.Module
    spec: ModelSpec
    sigma_indices: npt.NDArray[np.int64]  # σ per training example after pretraining (CAT adapts them)
    result: TrainResult
    train_config: TrainConfig


def pretrain(
    config: Mapping[str, Any],
    x_train: npt.NDArray[np.uint8],
    y_train: npt.NDArray[np.int64],
    class_names: Sequence[str],
    sigma_indices: npt.NDArray[np.int64],
    *,
    device: torch.device,
    progress: Progress | None = None,
) -> Pretrained:
    """GNT (every example at its σ) or CAT (σ adapted while training) from fresh weights."""
    seed = int(config.get("seed", 0))
    spec = spec_for_images(
        x_train, len(class_names), str(config.get("model", "small_cnn")), tuple(class_names)
    )
    model = build_model(spec, seed=stream_seed(seed, _STREAM_INIT))
    settings = train_config(
        config, epochs=int(config.get("epochs", 5)), seed=stream_seed(seed, _STREAM_PRETRAIN)
    )
    if config.get("method", "gnt") == "cat":
        result, adapted = train_cat(
            model, x_train, y_train, sigma_indices, settings, CATConfig(), device=device, progress=progress
        )
        return Pretrained(model, spec, np.asarray(adapted, dtype=np.int64), result, settings)
    result = train_model(model, x_train, y_train, sigma_indices, settings, device=device, progress=progress)
    return Pretrained(model, spec, np.asarray(sigma_indices, dtype=np.int64).copy(), result, settings)


def finetune(
    model: nn.Module,
    config: Mapping[str, Any],
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
        epochs=int(config.get("finetune_epochs", 2)),
        seed=stream_seed(int(config.get("seed", 0)), _STREAM_FINETUNE, round_number),
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
    config: Mapping[str, Any],
    round_number: int,
    settings: TrainConfig,
    result: TrainResult,
    sigma_indices: npt.NDArray[np.int64],
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "round": round_number,
        "method": config.get("method", "gnt"),
        "dataset": {key: value for key, value in config["dataset"].items() if key != "path"},
        "training": {**asdict(settings), "final_loss": result.final_loss, "seconds": result.seconds},
        "sigma": sigma_summary(sigma_indices),
        **(extra or {}),
    }


def save_weights(
    path: Path, model: nn.Module, spec: ModelSpec, metadata: Mapping[str, Any]
) -> CheckpointInfo:
    return save_checkpoint(path, model, spec, metadata)


# ---------------------------------------------------------------------------------------------
# Scoring and selection


def score_shard(
    model: nn.Module,
    config: Mapping[str, Any],
    round_number: int,
    x_train: npt.NDArray[np.uint8],
    sigma_indices: npt.NDArray[np.int64],
    start: int,
    stop: int,
    *,
    device: torch.device,
    progress: Progress | None = None,
) -> Scores:
    """Eq. 5's H and the baseline scores of training examples [start, stop); shards merge exactly."""
    return score_examples(
        model,
        x_train,
        sigma_indices,
        draws=int(config.get("draws", 50)),
        seed=stream_seed(int(config.get("seed", 0)), _STREAM_SCORE, round_number),
        device=device,
        start=start,
        stop=stop,
        progress=progress,
    )


@dataclass(frozen=True)
class Selected:
    index: int  # row among the training examples
    side: str
    score: float  # the value the strategy ranked by


def select_queries(
    config: Mapping[str, Any],
    round_number: int,
    entropy: npt.NDArray[np.float64],
    clean_uncertainty: npt.NDArray[np.float64],
    noise_uncertainty: npt.NDArray[np.float64],
    already_queried: npt.NDArray[np.bool_],
) -> list[Selected]:
    """Up to 2B examples not answered before, by the project's strategy (deterministic per round)."""
    strategy = str(config.get("strategy", "aqpl"))
    scores = Scores(entropy, clean_uncertainty, noise_uncertainty, forward_passes=0)
    rng = np.random.default_rng(stream_seed(int(config.get("seed", 0)), _STREAM_SELECT, round_number))
    selection = select(strategy, scores, int(config.get("budget", 10)), already_queried, rng)
    ranked_by = {
        "clean_uncertainty": clean_uncertainty,
        "noise_uncertainty": noise_uncertainty,
    }.get(strategy, entropy)
    return [
        Selected(int(index), side, float(ranked_by[index]))
        for index, side in zip(selection.indices.tolist(), selection.sides, strict=True)
    ]


# ---------------------------------------------------------------------------------------------
# Evaluation


@dataclass(frozen=True)
class EvaluationSet:
    images: npt.NDArray[np.uint8]  # the clean test images evaluated (a stratified subset if limited)
    labels: npt.NDArray[np.int64]
    rows: npt.NDArray[np.int64]  # which test examples (dataset_index) they are
    suite: CorruptionSuite


def evaluation_set(
    config: Mapping[str, Any],
    x_test: npt.NDArray[np.uint8],
    y_test: npt.NDArray[np.int64],
    *,
    cache_dir: Path | None,
) -> EvaluationSet:
    """The test images (limited per the project's evaluation options) and their corrupted copies."""
    options = dict(config.get("evaluation") or {})
    seed = int(config.get("seed", 0))
    limit = options.get("test_limit")
    rows = np.arange(len(y_test), dtype=np.int64)
    if limit is not None and limit < len(y_test):
        rows = stratified_subset(
            y_test, int(limit), np.random.default_rng(stream_seed(seed, _STREAM_EVALUATION))
        )
    images = np.ascontiguousarray(x_test[rows])
    labels = np.asarray(y_test[rows], dtype=np.int64)
    names = tuple(options.get("corruptions") or CORRUPTION_NAMES)
    severities = tuple(int(level) for level in options.get("severities") or CORRUPTION_SEVERITIES)
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
    metrics = evaluate(
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
