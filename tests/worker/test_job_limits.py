"""A worker job past a limit ends `failed` with its message, with real prefork workers on Redis.

A long pretraining (500 epochs of the digits) stands in for a poisoned job: it is interrupted at
the soft time limit, killed at the hard one, and when its pool process is killed twice it is not
handed out a third time. The policy itself is unit-tested in tests/security/test_job_limits.py.
"""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import DatabaseFactory
from tests.support import wait_until
from tests.worker.test_round_cycle import Platform, platform

pytestmark = pytest.mark.slow

LONG_PRETRAINING: dict[str, Any] = {
    "name": "endless digits",
    "dataset": {"format": "digits"},
    "model": "small_cnn",
    "epochs": 500,  # minutes on 2 cores: far longer than the limits below
    "batch_size": 16,
}


def start_long_project(platform_: Platform) -> int:
    response = platform_.client.post("/api/v1/projects", json=LONG_PRETRAINING, headers=platform_.lead)
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def received(platform_: Platform) -> int:
    """Deliveries of the pretraining job the worker has taken (a lost job is sent again, same id)."""
    return len(re.findall(r"Task training\.pretrain\[[^\]]+\] received", platform_.worker_log.read_text()))


def wait_until_pretraining(platform_: Platform, delivery: int = 1) -> None:
    """Until the worker runs the pretraining job's `delivery`-th delivery, for a few seconds."""
    wait_until(
        lambda: received(platform_) >= delivery, timeout=90, message=f"pretraining delivery {delivery}"
    )
    time.sleep(3)  # the pool's process has taken it and is training


def pool_children(platform_: Platform) -> list[int]:
    """The prefork pool's processes: children of the worker's main process."""
    pid = platform_.worker.pid
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def failed(platform_: Platform, project_id: int, timeout: float = 120) -> dict[str, Any]:
    body = platform_.wait_for(
        f"/api/v1/projects/{project_id}", "status", "failed", timeout, tolerate_failure=True
    )
    assert body["progress"]["step"] == "pretraining"  # retry resumes there
    return body


@pytest.fixture
def running(database_factory: DatabaseFactory, redis_url: str, tmp_path: Path) -> Any:
    def start(**limits: str) -> Any:
        return platform(tmp_path, database_factory.create("sqlite"), redis_url, pool="prefork", **limits)

    return start


def test_a_job_past_its_soft_time_limit_is_interrupted_and_fails_its_step(running: Any) -> None:
    with running(job_soft_time_limit="8", job_time_limit="120") as platform_:
        project_id = start_long_project(platform_)
        started = time.monotonic()
        body = failed(platform_, project_id)
        assert (
            body["error"]
            == "the step ran past its time limit of 8 s and was stopped (AQPL_JOB_SOFT_TIME_LIMIT)"
        )
        assert time.monotonic() - started < 60


def test_a_job_past_its_hard_time_limit_is_killed_and_fails_its_step(running: Any) -> None:
    """A job stuck where the soft limit cannot reach it (here: stopped, as if in native code)."""
    with running(job_soft_time_limit="15", job_time_limit="25") as platform_:
        project_id = start_long_project(platform_)
        wait_until_pretraining(platform_)
        (child,) = pool_children(platform_)
        os.kill(child, signal.SIGSTOP)  # SIGUSR1 (the soft limit) stays pending; only a kill ends it
        body = failed(platform_, project_id)
        assert (
            body["error"] == "training.pretrain was stopped after 25 s, its time limit (AQPL_JOB_TIME_LIMIT)"
        )
        assert "Hard time limit (25" in platform_.worker_log.read_text()
        # The step is marked failed from a delayed thread while Celery kills the child: give the kill time.
        wait_until(lambda: child not in pool_children(platform_), timeout=30)


def test_a_job_whose_worker_dies_each_time_is_handed_out_a_bounded_number_of_times(running: Any) -> None:
    with running(job_max_redeliveries="1") as platform_:
        project_id = start_long_project(platform_)
        for delivery in (1, 2):  # the first delivery and the one redelivery allowed
            wait_until_pretraining(platform_, delivery)
            (child,) = pool_children(platform_)
            os.kill(child, signal.SIGKILL)  # as the kernel's OOM killer would
            wait_until(lambda child=child: child not in pool_children(platform_), timeout=30)
        body = failed(platform_, project_id)
        assert body["error"] == (
            "training.pretrain: its worker process died 2 times (out of memory or a crash?); "
            "not tried again (AQPL_JOB_MAX_REDELIVERIES=1)"
        )
        time.sleep(3)
        assert received(platform_) == 2  # and no third delivery
