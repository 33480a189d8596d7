"""Fixtures of the worker's tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy.orm import Session

import worker.jobs.rounds
import worker.jobs.steps


@pytest.fixture
def session(db_session: Session, monkeypatch: pytest.MonkeyPatch) -> Session:
    """The test's session (rolled back after), also handed to every unit of work the worker's steps
    open: the steps run in-process and read and write the rows the factories made."""

    @contextmanager
    def same_session() -> Iterator[Session]:
        yield db_session
        db_session.flush()

    monkeypatch.setattr(worker.jobs.rounds, "job_session", same_session)
    monkeypatch.setattr(worker.jobs.steps, "job_session", same_session)
    return db_session
