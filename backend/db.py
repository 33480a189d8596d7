"""Engine, sessions and the declarative base. Engines are made at start-up, never at import."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, MetaData, create_engine, event
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

# Every constraint gets a predictable name: Alembic's batch mode on SQLite needs them to alter tables.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


POOL_SIZE = 10  # connections a process keeps open (plus up to 20 more under bursts); the API's: settings


def create_db_engine(
    url: str,
    *,
    pool_size: int = POOL_SIZE,
    max_overflow: int = 20,
    pool_timeout: float = 30.0,
    **kwargs: Any,
) -> Engine:
    """An engine for PostgreSQL (psycopg 3) or SQLite, tuned for many short transactions.

    `pool_timeout`: seconds a checkout waits for a free connection before `sqlalchemy.exc.TimeoutError`
    (the API answers it with 503 and Retry-After).
    """
    if url.startswith("sqlite"):
        engine = create_engine(
            url,
            # 30 s: a writer waits for the lock instead of failing while another commits.
            connect_args={"check_same_thread": False, "timeout": 30, "isolation_level": None},
            pool_size=pool_size,
            max_overflow=max_overflow,
            pool_timeout=pool_timeout,
            **kwargs,
        )
        _configure_sqlite(engine)
        return engine
    return create_engine(
        url,
        pool_pre_ping=True,
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_timeout=pool_timeout,
        **kwargs,
    )


def warm_pool(engine: Engine, connections: int = POOL_SIZE) -> bool:
    """Open `connections` connections now, so the first burst of requests does not wait for them.

    False (and nothing raised) when the database is unreachable: the service starts anyway, its
    health check reports the database, and requests connect once it is back.
    """
    opened: list[Connection] = []
    try:
        for _ in range(connections):
            opened.append(engine.connect())
    except OperationalError:
        return False
    finally:
        for connection in opened:
            connection.close()  # back to the pool, still open
    return True


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")  # readers never block the writer
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        # IMMEDIATE takes the write lock up front: SQLite serialises writers, and a deferred
        # transaction that later upgrades to a write can fail with SQLITE_BUSY without waiting.
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def unit_of_work(factory: sessionmaker[Session], bind: Connection | None = None) -> Iterator[Session]:
    """The one commit point: commit when the block succeeds, roll back when it raises.

    `bind`: a connection already checked out, for several units in a row without a checkout each.
    """
    session = factory() if bind is None else factory(bind=bind)
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
