"""A throwaway PostgreSQL database for one benchmark run: created, migrated, dropped."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from backend.migrate import upgrade_database


@contextmanager
def scratch_database(
    server_url: str, prefix: str, *, keep: bool = False, repo: Path | None = None
) -> Iterator[str]:
    """A fresh, migrated database `<prefix>_<random>` on the server of `server_url`; yields its URL.

    Migrated by this checkout, or by the checkout at `repo` (another worktree, to measure older
    code on its own schema). Dropped on exit (connections still open are cut) unless `keep`.
    """
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    _run_admin(server_url, f'CREATE DATABASE "{name}"')
    try:
        url = make_url(server_url).set(database=name).render_as_string(hide_password=False)
        if repo is None:
            upgrade_database(url)
        else:
            migrate = (
                "import sys; from backend.migrate import upgrade_database; upgrade_database(sys.argv[1])"
            )
            subprocess.run([sys.executable, "-c", migrate, url], cwd=repo, check=True)
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
