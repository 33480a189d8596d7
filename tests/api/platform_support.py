"""Helpers of the project, round and checkpoint tests: queued tasks, datasets, ready projects, checkpoints."""

from __future__ import annotations

import base64
import gzip
import json
import struct
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from backend import storage
from backend.models import (
    Annotation,
    Assignment,
    AssignmentState,
    Checkpoint,
    Example,
    Project,
    Query,
    Round,
    Split,
    User,
)
from backend.settings import Settings
from tests.api.factories import make_examples, make_project, write_project_images

MNIST_SIDE = 28


@dataclass(frozen=True)
class TinyMnist:
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def _write_idx(path: Path, array: np.ndarray) -> None:
    header = struct.pack(">I", 0x0800 + array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as handle:
        handle.write(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def write_tiny_mnist(folder: Path, *, train: int = 60, test: int = 30, seed: int = 0) -> TinyMnist:
    """MNIST's four idx.gz files with learnable images: class k lights a bar at a k-dependent place."""
    rng = np.random.default_rng(seed)

    def images(labels: np.ndarray) -> np.ndarray:
        out = rng.integers(0, 40, (len(labels), MNIST_SIDE, MNIST_SIDE), dtype=np.uint8)
        for row, label in enumerate(labels.tolist()):
            top = 2 + 2 * label
            out[row, top : top + 4, 4:24] = 230
        return out

    y_train = np.arange(train, dtype=np.uint8) % 10
    y_test = np.arange(test, dtype=np.uint8) % 10
    x_train, x_test = images(y_train), images(y_test)
    folder.mkdir(parents=True, exist_ok=True)
    _write_idx(folder / "train-images-idx3-ubyte.gz", x_train)
    _write_idx(folder / "train-labels-idx1-ubyte.gz", y_train)
    _write_idx(folder / "t10k-images-idx3-ubyte.gz", x_test)
    _write_idx(folder / "t10k-labels-idx1-ubyte.gz", y_test)
    return TinyMnist(x_train[..., None], y_train.astype(np.int64), x_test[..., None], y_test.astype(np.int64))


def queued_tasks(settings: Settings) -> list[tuple[str, list[Any]]]:
    """(task name, args) of every message waiting in the embedded (filesystem) broker, sorted.

    Sorted, not in sending order: the broker's file names order messages to the millisecond only.
    """
    folder = settings.broker_dir / "queue"
    if not folder.is_dir():
        return []
    messages = []
    for path in sorted(folder.glob(f"*.{settings.queue}.msg")):
        envelope = json.loads(path.read_text())
        body = json.loads(base64.b64decode(envelope["body"]))
        messages.append((str(envelope["headers"]["task"]), list(body[0])))
    return sorted(messages)


def make_ready_project(
    session: Session,
    settings: Settings,
    owner: User,
    *,
    num_train: int = 12,
    num_test: int = 4,
    **config: Any,
) -> tuple[Project, list[Example]]:
    """A ready project with images on disk and examples of both splits (train first in the list)."""
    project = make_project(session, owner, image_shape=(8, 8, 1), class_names=("zero", "one"), **config)
    examples = make_examples(session, project, num_train, Split.train)
    examples += make_examples(session, project, num_test, Split.test)
    write_project_images(settings, project)
    return project, examples


def save_tiny_checkpoint(settings: Settings, project: Project, round_number: int) -> tuple[Path, str, int]:
    """A real safetensors checkpoint of a small_cnn for the project's images; (path, sha256, size)."""
    from worker.ml.checkpoints import save_checkpoint
    from worker.ml.models import build_model, spec_for_images

    images = np.zeros((2, 8, 8, 1), dtype=np.uint8)
    images[1] = 255
    spec = spec_for_images(images, 2, "small_cnn", ("zero", "one"))
    path = storage.checkpoint_path(settings, project.id, round_number)
    info = save_checkpoint(path, build_model(spec, seed=round_number), spec, {"round": round_number})
    return path, info.sha256, info.size_bytes


def make_checkpoint(
    session: Session,
    settings: Settings,
    project: Project,
    round_number: int = 0,
    round_: Round | None = None,
    metrics: dict[str, Any] | None = None,
) -> Checkpoint:
    path, sha256, size = save_tiny_checkpoint(settings, project, round_number)
    checkpoint = Checkpoint(
        project_id=project.id,
        round_id=round_.id if round_ is not None else None,
        round_number=round_number,
        file=storage.relative_to_storage(settings, path),
        sha256=sha256,
        size_bytes=size,
        meta={"architecture": "small_cnn", "round": round_number},
        metrics=metrics or {"clean": 0.9, "gaussian": 0.8, "corruptions": 0.7},
    )
    session.add(checkpoint)
    session.flush()
    return checkpoint


def add_answer(session: Session, query: Query, annotator: User, sigma_index: int) -> Annotation:
    """An answered assignment and its annotation (what the tasks API writes), query counters updated
    (a gold query's excepted)."""
    assignment = Assignment(
        query_id=query.id,
        annotator_id=annotator.id,
        state=AssignmentState.answered,
        expires_at=datetime.now(UTC) + timedelta(minutes=5),
    )
    session.add(assignment)
    session.flush()
    annotation = Annotation(
        query_id=query.id,
        annotator_id=annotator.id,
        assignment_id=assignment.id,
        sigma_index=sigma_index,
        seconds=2.0,
        idempotency_key=f"key-{assignment.id}",
    )
    session.add(annotation)
    if query.status != "gold":  # a gold query's answers are not counted (backend.annotations.service)
        query.answer_count += 1
        if query.answer_count >= query.required_answers:
            query.status = "complete"
    session.flush()
    return annotation
