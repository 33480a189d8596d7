"""Worker jobs have time limits and a bounded number of redeliveries; a job past one fails its step.

The policy and the failure path on a real database (and Redis for the redelivery counter); the real
worker processes (a job interrupted, killed, its worker lost) are in tests/worker/test_job_limits.py.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from billiard.exceptions import TimeLimitExceeded, WorkerLostError
from celery.exceptions import SoftTimeLimitExceeded
from sqlalchemy import select

from backend.db import create_db_engine, make_session_factory, unit_of_work
from backend.models import Project, ProjectStatus, ProjectStep, Role, Round, RoundState
from backend.settings import Settings
from tests.api.factories import make_project, make_round, make_user
from tests.conftest import DatabaseFactory
from tests.support import wait_until
from worker.jobs import limits as jobs
from worker.jobs import steps


@pytest.fixture
def settings(database_factory: DatabaseFactory, database_kind: str, tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path,
        database_url=database_factory.create(database_kind),
        job_soft_time_limit=30,
        job_time_limit=40,
        job_max_redeliveries=1,
    )


@pytest.fixture
def worker_settings(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """`settings` as the worker process's own (get_settings) for the code under test."""
    monkeypatch.setattr(jobs, "get_settings", lambda: settings)
    monkeypatch.setattr(steps, "get_settings", lambda: settings)
    return settings


@pytest.fixture
def rows(settings: Settings) -> Iterator[dict[str, int]]:
    """A project mid-pretraining and one mid-scoring with round 1, 2 evaluating; their ids."""
    engine = create_db_engine(settings.database_url)
    with unit_of_work(make_session_factory(engine)) as session:
        lead = make_user(session, Role.lead)
        pretraining = make_project(session, lead)
        pretraining.status = ProjectStatus.pretraining
        pretraining.progress = {"step": "pretraining", "done": 3, "total": 9}
        ready = make_project(session, lead)
        scoring = make_round(session, ready, 1, RoundState.scoring)
        evaluating = make_round(session, ready, 2, RoundState.evaluating)
        session.flush()
        ids = {
            "pretraining": pretraining.id,
            "ready": ready.id,
            "scoring": scoring.id,
            "evaluating": evaluating.id,
        }
    yield ids
    engine.dispose()


def read(settings: Settings, model: Any, row_id: int) -> Any:
    engine = create_db_engine(settings.database_url)
    try:
        with unit_of_work(make_session_factory(engine)) as session:
            row = session.scalar(select(model).where(model.id == row_id))
            session.expunge(row)
            return row
    finally:
        engine.dispose()


def test_the_redelivery_policy_allows_the_first_delivery_and_max_more() -> None:
    assert [jobs.redeliveries_exceeded(count, 2) for count in range(5)] == [False, False, False, True, True]
    assert jobs.redeliveries_exceeded(1, 0)


def test_the_hard_limit_must_be_longer_than_the_soft_one() -> None:
    with pytest.raises(ValueError, match="AQPL_JOB_TIME_LIMIT must be longer than AQPL_JOB_SOFT_TIME_LIMIT"):
        Settings(job_soft_time_limit=60, job_time_limit=60)


def test_every_task_gets_the_limits_from_settings() -> None:
    options = jobs.celery_options(Settings(job_soft_time_limit=11, job_time_limit=22, job_max_redeliveries=3))
    assert options["task_soft_time_limit"] == 11 and options["task_time_limit"] == 22
    assert options["task_retry_on_worker_lost"] is True
    assert options["task_annotations"]["*"]["max_retries"] == 3
    from worker.celery_app import app

    app.loader.import_default_modules()
    defaults = Settings()
    for name in jobs.STEPS:
        task = app.tasks[name]
        assert (task.soft_time_limit, task.time_limit) == (
            defaults.job_soft_time_limit,
            defaults.job_time_limit,
        )
        assert (
            task.acks_late and task.retry_on_worker_lost and task.max_retries == defaults.job_max_redeliveries
        )
        assert task.before_start.__func__ is jobs.count_delivery
    assert defaults.job_soft_time_limit < defaults.job_time_limit < defaults.broker_visibility_timeout


def test_a_soft_time_limit_fails_the_step_with_its_limit(
    worker_settings: Settings, rows: dict[str, int]
) -> None:
    """What project_step does with the SoftTimeLimitExceeded that Celery raises inside a job."""
    with jobs._own_sessions(worker_settings) as sessions:
        steps.fail_project(
            rows["pretraining"], ProjectStep.pretraining, SoftTimeLimitExceeded(), sessions=sessions
        )
    project = read(worker_settings, Project, rows["pretraining"])
    assert project.status == ProjectStatus.failed
    assert (
        project.error == "the step ran past its time limit of 30 s and was stopped (AQPL_JOB_SOFT_TIME_LIMIT)"
    )


@pytest.mark.parametrize(
    ("exception", "message"),
    [
        (
            TimeLimitExceeded(40),
            "training.pretrain was stopped after 40 s, its time limit (AQPL_JOB_TIME_LIMIT)",
        ),
        (
            WorkerLostError("Worker exited prematurely: signal 9 (SIGKILL)"),
            "training.pretrain: its worker process died 2 times (out of memory or a crash?); not tried again "
            "(AQPL_JOB_MAX_REDELIVERIES=1)",
        ),
    ],
    ids=["hard time limit", "worker lost"],
)
def test_a_job_ended_by_a_limit_fails_its_project_step(
    worker_settings: Settings, rows: dict[str, int], exception: BaseException, message: str
) -> None:
    jobs.mark_step_failed("training.pretrain", (rows["pretraining"],), exception)
    project = read(worker_settings, Project, rows["pretraining"])
    assert project.status == ProjectStatus.failed and project.error == message
    assert project.progress["step"] == "pretraining"  # retry resumes there


def test_a_job_ended_by_a_limit_fails_its_round_step(worker_settings: Settings, rows: dict[str, int]) -> None:
    jobs.mark_step_failed("scoring.score", (rows["scoring"], 0, 32), TimeLimitExceeded(40))
    round_ = read(worker_settings, Round, rows["scoring"])
    assert round_.state == RoundState.failed and round_.failed_state == RoundState.scoring
    assert round_.error == "scoring.score was stopped after 40 s, its time limit (AQPL_JOB_TIME_LIMIT)"
    # evaluation.evaluate takes (project id, round number): the round is found by its number.
    jobs.mark_step_failed("evaluation.evaluate", (rows["ready"], 2), TimeLimitExceeded(40))
    assert read(worker_settings, Round, rows["evaluating"]).failed_state == RoundState.evaluating


def test_a_step_no_longer_running_is_left_alone(worker_settings: Settings, rows: dict[str, int]) -> None:
    """A redelivered job's late failure must not fail a step that has moved on (or another step)."""
    jobs.mark_step_failed("rounds.aggregate", (rows["scoring"],), TimeLimitExceeded(40))
    assert read(worker_settings, Round, rows["scoring"]).state == RoundState.scoring
    jobs.job_failed(sender=SimpleNamespace(name="system.ping"), exception=TimeLimitExceeded(1), args=["x"])  # type: ignore[arg-type]


def test_a_hard_time_limit_is_marked_after_the_pool_has_killed_the_process(
    worker_settings: Settings, rows: dict[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The receiver returns at once (the kill comes after it); the step is marked from a thread."""
    monkeypatch.setattr(jobs, "KILL_GRACE_SECONDS", 0.2)
    task = SimpleNamespace(name="training.pretrain")
    jobs.job_failed(sender=task, exception=TimeLimitExceeded(40), args=[rows["pretraining"]])  # type: ignore[arg-type]
    assert read(worker_settings, Project, rows["pretraining"]).status == ProjectStatus.pretraining
    wait_until(
        lambda: read(worker_settings, Project, rows["pretraining"]).status == ProjectStatus.failed,
        timeout=10,
        message="the step marked failed",
    )


def redelivered_task(name: str) -> Any:
    return SimpleNamespace(name=name, request=SimpleNamespace(delivery_info={"redelivered": True}))


def test_a_message_redelivered_by_the_broker_too_often_is_refused(
    worker_settings: Settings, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(worker_settings, "broker_url", redis_url)
    task_id = f"test-{uuid.uuid4().hex}"
    task = redelivered_task("training.pretrain")
    jobs.count_delivery(task, task_id, (1,), {})  # the first redelivery: max_redeliveries is 1
    with pytest.raises(
        jobs.RedeliveryLimitExceeded, match=r"handed out 3 times.*AQPL_JOB_MAX_REDELIVERIES=1"
    ):
        jobs.count_delivery(task, task_id, (1,), {})
    first = SimpleNamespace(
        name="training.pretrain", request=SimpleNamespace(delivery_info={"redelivered": False})
    )
    jobs.count_delivery(first, f"test-{uuid.uuid4().hex}", (1,), {})  # a first delivery is not counted


def test_the_redelivery_refusal_fails_the_step_with_its_message(
    worker_settings: Settings, rows: dict[str, int]
) -> None:
    refusal = jobs.RedeliveryLimitExceeded("training.pretrain was handed out 3 times ...")
    jobs.job_failed(
        sender=SimpleNamespace(name="training.pretrain"), exception=refusal, args=[rows["pretraining"]]
    )  # type: ignore[arg-type]
    project = read(worker_settings, Project, rows["pretraining"])
    assert project.status == ProjectStatus.failed
    assert project.error == "training.pretrain was handed out 3 times ..."
