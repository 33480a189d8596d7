"""Checkpoints as the evaluation job publishes them: safetensors + ONNX export + full metadata.

The files come from the worker's own `pipeline.publish_weights` (a real export, a few seconds);
they are made once per round number and copied into each test's storage dir.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import asdict
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from backend import storage
from backend.models import Checkpoint, Project, Round
from backend.settings import Settings
from worker import pipeline
from worker.ml.models import build_model, spec_for_images
from worker.ml.onnx_export import onnx_path_beside
from worker.ml.training import TrainConfig

METRICS: dict[str, Any] = {
    "clean": 0.875,
    "gaussian": 0.75,
    "corruptions": 0.5,
    "per_gaussian": {"0.04": 0.8, "0.1": 0.7},
    "per_corruption": {"fog": {"1": 0.6, "3": 0.4}},
    "test_examples": 4,
}


@cache
def _published(round_number: int) -> tuple[bytes, bytes, str, int, str]:
    """(safetensors bytes, ONNX bytes, sha256, size, metadata JSON) of a small_cnn for 8x8 grey images."""
    images = np.zeros((2, 8, 8, 1), dtype=np.uint8)
    images[1] = 255
    spec = spec_for_images(images, 2, "small_cnn", ("zero", "one"))
    training = TrainConfig(epochs=1, batch_size=8, lr=0.01, seed=round_number)
    metadata = {
        "round": round_number,
        "method": "gnt",
        "dataset": {"format": "npz", "train_limit": None, "test_limit": None},
        "training": {**asdict(training), "final_loss": 0.5, "seconds": 1.5},
        "sigma": pipeline.sigma_summary(np.array([20, 30, 30, 40] * 3)),
        "metrics": METRICS,
        "data": {"train_examples": 12, "test_examples": 4},
    }
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"round_{round_number:03d}.safetensors"  # as storage.checkpoint_path names it
        info = pipeline.publish_weights(path, build_model(spec, seed=round_number), spec, metadata)
        return (
            path.read_bytes(),
            onnx_path_beside(path).read_bytes(),
            info.sha256,
            info.size_bytes,
            json.dumps(info.metadata),
        )


def make_published_checkpoint(
    session: Session,
    settings: Settings,
    project: Project,
    round_number: int = 0,
    round_: Round | None = None,
) -> Checkpoint:
    """A checkpoint row whose files (weights and ONNX export) are in the project's storage."""
    weights, onnx, sha256, size, metadata = _published(round_number)
    path = storage.checkpoint_path(settings, project.id, round_number)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(weights)
    meta = json.loads(metadata)
    (path.parent / meta["onnx"]["file"]).write_bytes(onnx)
    checkpoint = Checkpoint(
        project_id=project.id,
        round_id=round_.id if round_ is not None else None,
        round_number=round_number,
        file=storage.relative_to_storage(settings, path),
        sha256=sha256,
        size_bytes=size,
        meta=meta,
        metrics=METRICS,
    )
    session.add(checkpoint)
    session.flush()
    return checkpoint
