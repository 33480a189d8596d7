"""A throwaway PostgreSQL database for one benchmark run: created, migrated, dropped."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from backend.migrate import upgrade_database


@contextmanager
def scratch_database(server_url: str, prefix: str, *, keep: bool = False) -> Iterator[str]:
    """A fresh, migrated database `<prefix>_<random>` on the server of `server_url`; yields its URL.

    Dropped on exit (connections still open are cut) unless `keep`.
    """
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    _run_admin(server_url, f'CREATE DATABASE "{name}"')
    try:
        url = make_url(server_url).set(database=name).render_as_string(hide_password=False)
        upgrade_database(url)
        yield url
    finally:
        if not keep:
            _run_admin(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _run_admin(server_url: str, statement: str) -> None:
    """CREATE/DROP DATABASE cannot run in a transaction: an autocommit engine, closed after."""
    engine = create_engine(server_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        with engine.connect() as connection:
            connection.execute(text(statement))
    finally:
        engine.dispose()
