"""The limits every worker job runs under, and how a job past one ends: its step `failed`, with a message.

Tasks are `acks_late` with `reject_on_worker_lost`, so a job whose worker dies is delivered again;
a poisoned job (one that kills or hangs its worker every time) would go round for ever. So:

- time: after AQPL_JOB_SOFT_TIME_LIMIT seconds Celery raises SoftTimeLimitExceeded inside the job,
  whose step fails through `project_step` / `round_step` like any error; after AQPL_JOB_TIME_LIMIT
  the pool kills it and its parent process fails the step (`job_failed`).
- redeliveries: a pool child that dies mid-job (out of memory, a crash) has its job sent again with
  its retry count + 1 (the count travels in the message), at most AQPL_JOB_MAX_REDELIVERIES times;
  then the step fails. A message the broker hands out again because a whole worker died (Redis'
  visibility timeout; it arrives marked `redelivered`) is counted in Redis under its task id, with
  the same bound. The embedded filesystem broker never redelivers.

Time limits need the prefork pool (`aqpl worker`'s default); `--pool=solo` (the worker `aqpl serve`
starts) runs jobs in its main process, where Celery enforces none. Wired in worker/celery_app.py.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from billiard.exceptions import TimeLimitExceeded, WorkerLostError
from celery import Task
from sqlalchemy import select
from sqlalchemy.orm import Session

from aqpl import job_names
from backend.db import create_db_engine, make_session_factory, unit_of_work
from backend.models import ProjectStep, Round, RoundState
from backend.queue import JobSender, install_outbox
from backend.settings import Settings, get_settings

logger = logging.getLogger("aqpl.worker")

REDELIVERY_KEY = "aqpl:redeliveries:{task_id}"  # Redis counter of one message's redeliveries
REDELIVERY_KEY_SECONDS = 7 * 24 * 3600  # kept a week: longer than any message waits to come back
KILL_GRACE_SECONDS = 2.0  # after a hard time limit: the pool kills the process within 0.1 s


class JobLimitExceeded(ValueError):
    """A job ended by one of its limits; the message is for the lead as it is (a ValueError, as
    `short_error` wants of errors that speak for themselves)."""


class RedeliveryLimitExceeded(JobLimitExceeded):
    """A job handed out again more often than AQPL_JOB_MAX_REDELIVERIES allows."""


def celery_options(settings: Settings) -> dict[str, Any]:
    """The Celery configuration of the limits (applied to every task through annotations)."""
    return {
        "task_soft_time_limit": settings.job_soft_time_limit,
        "task_time_limit": settings.job_time_limit,
        # A pool child lost mid-job: send the job again with retries + 1 instead of requeueing the
        # same message, so that the count survives; past max_retries the job fails (job_failed).
        "task_retry_on_worker_lost": True,
        "task_annotations": {
            "*": {
                "max_retries": settings.job_max_redeliveries,
                "default_retry_delay": 0,  # seconds before a lost job is sent again
                "before_start": count_delivery,
            }
        },
    }


def redeliveries_exceeded(redeliveries: int, max_redeliveries: int) -> bool:
    """The policy: the first delivery and `max_redeliveries` more may run; the next one fails."""
    return redeliveries > max_redeliveries


@lru_cache(maxsize=1)
def _redis(url: str) -> Any:
    import redis  # kombu's Redis transport depends on it; only needed with a Redis broker

    return redis.Redis.from_url(url)


def broker_redeliveries(task_id: str, settings: Settings) -> int:
    """Count one more broker redelivery of message `task_id` and return how many there have been."""
    client = _redis(settings.broker_url)
    key = REDELIVERY_KEY.format(task_id=task_id)
    count, _ = client.pipeline().incr(key).expire(key, REDELIVERY_KEY_SECONDS).execute()
    return int(count)


def count_delivery(task: Task, task_id: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """`before_start` of every task: refuse a message the broker has redelivered too often."""
    settings = get_settings()
    if not (task.request.delivery_info or {}).get("redelivered") or settings.is_embedded_broker:
        return
    redeliveries = broker_redeliveries(task_id, settings)
    if redeliveries_exceeded(redeliveries, settings.job_max_redeliveries):
        raise RedeliveryLimitExceeded(
            f"{task.name} was handed out {redeliveries + 1} times, its worker dying each time "
            f"(more than AQPL_JOB_MAX_REDELIVERIES={settings.job_max_redeliveries} redeliveries); "
            "not tried again"
        )


# ---------------------------------------------------------------- failing the step of a job


@dataclass(frozen=True)
class Step:
    """The project or round step a job runs: what `fail_project` / `fail_round` need."""

    project_id: int | None = None  # a project step (import, pretraining, evaluation of round 0)
    project_step: ProjectStep = ProjectStep.importing
    round_id: int | None = None  # or a round step
    round_state: RoundState | None = None
    round_of_project: tuple[int, int] | None = None  # (project id, round number): found in the database


STEPS: dict[str, Callable[..., Step]] = {
    job_names.IMPORT_DATASET: lambda project_id: Step(project_id, ProjectStep.importing),
    job_names.PRETRAIN: lambda project_id: Step(project_id, ProjectStep.pretraining),
    job_names.FINETUNE: lambda round_id: Step(round_id=round_id, round_state=RoundState.training),
    job_names.SCORE: lambda round_id, _start, _stop: Step(round_id=round_id, round_state=RoundState.scoring),
    job_names.AGGREGATE: lambda round_id: Step(round_id=round_id, round_state=RoundState.aggregating),
    job_names.EVALUATE: lambda project_id, number: (
        Step(project_id, ProjectStep.evaluating)
        if number == 0
        else Step(round_state=RoundState.evaluating, round_of_project=(project_id, number))
    ),
}


def failure_message(task_name: str, exc: BaseException, settings: Settings) -> BaseException:
    """What the lead reads for a job ended by a limit (other errors speak for themselves)."""
    if isinstance(exc, TimeLimitExceeded):
        return JobLimitExceeded(
            f"{task_name} was stopped after {settings.job_time_limit} s, its time limit (AQPL_JOB_TIME_LIMIT)"
        )
    if isinstance(exc, WorkerLostError):
        return JobLimitExceeded(
            f"{task_name}: its worker process died {settings.job_max_redeliveries + 1} times (out of memory "
            f"or a crash?); not tried again (AQPL_JOB_MAX_REDELIVERIES={settings.job_max_redeliveries})"
        )
    return exc


@contextmanager
def _own_sessions(settings: Settings) -> Iterator[Callable[[], AbstractContextManager[Session]]]:
    """Units of work on an engine of their own: the pool's parent must not create the cached one
    that the children it forks later would inherit."""
    from worker.celery_app import app  # imported here: celery_app imports this module

    engine = create_db_engine(settings.database_url)
    factory = make_session_factory(engine)
    # Failing a round queues its round.failed webhooks: they are sent after commit, as anywhere.
    install_outbox(factory, JobSender(app))
    try:
        yield lambda: unit_of_work(factory)
    finally:
        engine.dispose()


def job_failed(sender: Task | None = None, exception: BaseException | None = None, **details: Any) -> None:
    """`task_failure` receiver: mark the job's step failed with a message (hard time limit, a worker
    lost too often, too many redeliveries, or any error that escaped the step)."""
    if sender is None or exception is None or sender.name not in STEPS:
        return
    args = tuple(details.get("args") or ())
    if isinstance(exception, TimeLimitExceeded):
        # The pool kills the job's process only once this receiver returns, and a row lock the job
        # still held would block the update below (and so the kill) for ever: mark the step from a
        # thread, after the process is gone and its transaction rolled back.
        timer = threading.Timer(KILL_GRACE_SECONDS, mark_step_failed, (sender.name, args, exception))
        timer.start()
        return
    mark_step_failed(sender.name, args, exception)


def mark_step_failed(task_name: str, args: tuple[Any, ...], exception: BaseException) -> None:
    from worker.jobs.steps import fail_project, fail_round

    settings = get_settings()
    error = failure_message(task_name, exception, settings)
    try:
        step = STEPS[task_name](*args)
        with _own_sessions(settings) as sessions:
            if step.round_of_project is not None:
                project_id, number = step.round_of_project
                with sessions() as session:
                    round_id = session.scalar(
                        select(Round.id).where(Round.project_id == project_id, Round.number == number)
                    )
                step = Step(round_id=round_id, round_state=step.round_state)
            if step.project_id is not None:
                fail_project(step.project_id, step.project_step, error, sessions=sessions)
            elif step.round_id is not None and step.round_state is not None:
                fail_round(step.round_id, step.round_state, error, sessions=sessions)
    except Exception:  # a receiver must not take the worker down; the error is in the log
        logger.exception("could not mark the step of %s%s failed", task_name, list(args))
