"""What every project and round step shares: loading arrays by id, progress, and failing cleanly.

A step reads its rows in one short transaction, computes with no transaction open, and writes
its results in another that first re-checks the state (a redelivered task finds the work done
and returns). Progress is committed in its own tiny transactions while the step runs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from celery.exceptions import SoftTimeLimitExceeded
from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.models import Example, ProjectStep, RoundState, Split
from backend.projects import lifecycle as project_lifecycle
from backend.rounds import lifecycle as round_lifecycle
from backend.settings import Settings, get_settings
from worker.ml.device import resolve_device
from worker.runtime import job_session

logger = logging.getLogger("aqpl.worker")

PROGRESS_MIN_FRACTION = 0.02  # commit progress every 2 % of a step ...
PROGRESS_MIN_SECONDS = 0.5  # ... but not more often than twice a second
ERROR_MAX_CHARS = 500  # the error a lead reads on the dashboard: one short paragraph


def settings() -> Settings:
    return get_settings()


@lru_cache(maxsize=1)
def device() -> torch.device:
    return resolve_device(get_settings().device)


def short_error(exc: BaseException) -> str:
    """One line a lead can act on: dataset and checkpoint errors already name the file and problem."""
    if isinstance(exc, SoftTimeLimitExceeded):
        limit = get_settings().job_soft_time_limit
        return f"the step ran past its time limit of {limit} s and was stopped (AQPL_JOB_SOFT_TIME_LIMIT)"
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    message = text if isinstance(exc, ValueError) and text else f"{type(exc).__name__}: {text}".rstrip(": ")
    return message[:ERROR_MAX_CHARS]


@dataclass(frozen=True)
class SplitArrays:
    example_ids: npt.NDArray[np.int64]  # row r of the split is example_ids[r]
    labels: npt.NDArray[np.int64]
    sigma_indices: npt.NDArray[np.int64]


def split_arrays(session: Session, project_id: int, split: Split) -> SplitArrays:
    """The split's examples in dataset order (their rows in the image array)."""
    rows = session.execute(
        select(Example.id, Example.label, Example.sigma_index)
        .where(Example.project_id == project_id, Example.split == split)
        .order_by(Example.dataset_index)
    ).all()
    array = np.asarray(rows, dtype=np.int64).reshape(-1, 3)
    return SplitArrays(array[:, 0].copy(), array[:, 1].copy(), array[:, 2].copy())


class ProgressWriter:
    """A (done, total) callback that commits progress every few percent, in its own transaction."""

    def __init__(self, write: Callable[[Session, int, int], None], *, scale: int = 1) -> None:
        self._write = write
        self._last_done = -1
        self._last_time = 0.0
        self._scale = scale  # callbacks count in units of `scale` (e.g. draws per example)

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        finished = done >= total
        step = max(1, int(total * PROGRESS_MIN_FRACTION))
        if not finished and (done - self._last_done < step or now - self._last_time < PROGRESS_MIN_SECONDS):
            return
        self._last_done, self._last_time = done, now
        try:
            with job_session() as session:
                self._write(session, done // self._scale, max(total // self._scale, 1))
        except SoftTimeLimitExceeded:  # the job's time is up: that ends the step, not just this write
            raise
        except Exception:  # progress is best effort: never fail a step because of it
            logger.warning("could not record progress", exc_info=True)


def round_progress_writer(round_id: int, state: RoundState, **extra: Any) -> ProgressWriter:
    def write(session: Session, done: int, total: int) -> None:
        round_ = round_lifecycle.locked_in(session, round_id, state)
        if round_ is not None:
            round_lifecycle.record_progress(round_, done, total, **extra)

    return ProgressWriter(write)


def project_progress_writer(project_id: int, step: ProjectStep) -> ProgressWriter:
    def write(session: Session, done: int, total: int) -> None:
        project = project_lifecycle.locked_at(session, project_id, step)
        if project is not None:
            project_lifecycle.record_progress(project, done, total)

    return ProgressWriter(write)


Sessions = Callable[[], AbstractContextManager[Session]]


def fail_round(
    round_id: int, state: RoundState, exc: BaseException, *, sessions: Sessions = job_session
) -> None:
    """Mark the round failed at `state` (if it is still there) with a short error."""
    logger.exception("round %s failed while %s", round_id, state.value, exc_info=exc)
    with sessions() as session:
        round_ = round_lifecycle.locked_in(session, round_id, state)
        if round_ is not None:
            round_lifecycle.fail(session, round_, short_error(exc))


def fail_project(
    project_id: int, step: ProjectStep, exc: BaseException, *, sessions: Sessions = job_session
) -> None:
    """Mark the project failed at `step` (if it is still there) with a short error."""
    logger.exception("project %s failed while %s", project_id, step.value, exc_info=exc)
    with sessions() as session:
        project = project_lifecycle.locked_at(session, project_id, step)
        if project is not None:
            project_lifecycle.fail(project, short_error(exc))


@contextmanager
def round_step(round_id: int, state: RoundState) -> Iterator[None]:
    """Any exception inside fails the round at `state`; the task then ends (acknowledged)."""
    try:
        yield
    except Exception as exc:
        fail_round(round_id, state, exc)


@contextmanager
def project_step(project_id: int, step: ProjectStep) -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        fail_project(project_id, step, exc)
