"""Shared fixtures: databases built by the migrations, rolled back per test, on SQLite and PostgreSQL.

Every test that uses `db_session` runs on SQLite, and again on PostgreSQL when
AQPL_TEST_DATABASE_URL points at one (CI sets it). Each test session makes its own
PostgreSQL database, so parallel runs on one server never see each other's rows.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from backend.db import create_db_engine
from backend.migrate import upgrade_database

POSTGRES_URL = os.environ.get("AQPL_TEST_DATABASE_URL", "")
REDIS_URL = os.environ.get("AQPL_TEST_REDIS_URL", "")
# Real data for tests that want it (skipped when absent): ../shared/data, or AQPL_TEST_SHARED_DATA.
SHARED_DATA = Path(
    os.environ.get("AQPL_TEST_SHARED_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data"
)


class DatabaseFactory:
    """Makes migrated, empty databases: SQLite files, or PostgreSQL databases dropped at the end."""

    def __init__(self, tmp_dir: Path) -> None:
        self.tmp_dir = tmp_dir
        self._postgres_databases: list[str] = []

    def create(self, kind: str) -> str:
        name = f"aqpl_test_{uuid.uuid4().hex[:12]}"
        if kind == "sqlite":
            url = f"sqlite:///{self.tmp_dir / (name + '.sqlite3')}"
        else:
            if not POSTGRES_URL:
                pytest.skip("AQPL_TEST_DATABASE_URL is not set: PostgreSQL tests skipped")
            _run_admin(f'CREATE DATABASE "{name}"')
            self._postgres_databases.append(name)
            url = make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
        upgrade_database(url)
        return url

    def drop_all(self) -> None:
        if not self._postgres_databases:
            return
        for name in self._postgres_databases:
            _run_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _run_admin(statement: str) -> None:
    """CREATE/DROP DATABASE cannot run in a transaction: use an autocommit engine, then close it."""
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        with admin.connect() as connection:
            connection.execute(text(statement))
    finally:
        admin.dispose()


@pytest.fixture(scope="session")
def database_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DatabaseFactory]:
    factory = DatabaseFactory(tmp_path_factory.mktemp("databases"))
    yield factory
    factory.drop_all()


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def database_kind(request: pytest.FixtureRequest) -> str:
    kind: str = request.param
    if kind == "postgresql" and not POSTGRES_URL:
        pytest.skip("AQPL_TEST_DATABASE_URL is not set: PostgreSQL tests skipped")
    return kind


@pytest.fixture(scope="session")
def database_url(database_factory: DatabaseFactory, database_kind: str) -> str:
    """A migrated database shared by the session's tests, which roll back their changes."""
    return database_factory.create(database_kind)


@pytest.fixture(scope="session")
def engine(database_url: str) -> Iterator[Engine]:
    engine = create_db_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def db_session(engine: Engine) -> Iterator[Session]:
    """A session inside a transaction that is rolled back after the test; commits become savepoints."""
    with engine.connect() as connection:
        transaction = connection.begin()
        session = Session(bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False)
        try:
            yield session
        finally:
            session.close()
            transaction.rollback()


@pytest.fixture
def redis_url() -> str:
    if not REDIS_URL:
        pytest.skip("AQPL_TEST_REDIS_URL is not set: Redis tests skipped")
    return REDIS_URL
