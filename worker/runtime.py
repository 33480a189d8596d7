"""Per-process resources of a worker: the engine, sessions and task sender, made on first use."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache

from sqlalchemy.orm import Session, sessionmaker

from backend.db import create_db_engine, make_session_factory, unit_of_work
from backend.queue import JobSender, install_outbox
from backend.settings import get_settings


@lru_cache(maxsize=1)
def _session_factory() -> sessionmaker[Session]:
    # Made in the child process on first use, never in the parent before fork (sockets do not survive it).
    from worker.celery_app import app

    factory = make_session_factory(create_db_engine(get_settings().database_url))
    install_outbox(factory, JobSender(app))
    return factory


@contextmanager
def job_session() -> Iterator[Session]:
    """One short unit of work inside a job: commit on success, roll back on error."""
    with unit_of_work(_session_factory()) as session:
        yield session
