"""A `limits` storage in a SQLite file: the login throttle's store when there is no Redis.

Every API process of one machine opens the same file, so `aqpl serve --workers N` shares one budget
(limits' own `memory://` store is per process). SQLite's write lock makes each acquisition atomic
across processes and threads. One connection per call: logins are rare, and a connection is then
never shared between threads. Only what the login throttle uses is fast; the rest is complete
enough to honour the `Storage` interface.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path

from limits.storage import MovingWindowSupport, Storage

# Seconds a process waits for another's write lock before the call fails (a busy login, not a hang).
LOCK_TIMEOUT_SECONDS = 5.0

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS entries (key TEXT NOT NULL, at REAL NOT NULL, expires REAL NOT NULL)",
    "CREATE INDEX IF NOT EXISTS entries_key_at ON entries (key, at)",
    "CREATE INDEX IF NOT EXISTS entries_expires ON entries (expires)",
    "CREATE TABLE IF NOT EXISTS counters"
    " (key TEXT PRIMARY KEY, value INTEGER NOT NULL, expires REAL NOT NULL)",
)


class SQLiteFileStorage(Storage, MovingWindowSupport):
    """Moving-window entries (and fixed-window counters) in one SQLite file."""

    STORAGE_SCHEME = None  # made directly with a path, never from a URI

    def __init__(self, path: Path, *, clock: Callable[[], float] = time.time) -> None:
        super().__init__(wrap_exceptions=True)
        self.path = path
        self._clock = clock
        path.parent.mkdir(parents=True, exist_ok=True)
        # Created private before SQLite opens it: it holds which addresses tried which usernames.
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
        with self._transaction() as connection:
            for statement in _SCHEMA:
                connection.execute(statement)

    @property
    def base_exceptions(self) -> type[Exception]:
        return sqlite3.Error

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One connection, one write transaction (BEGIN IMMEDIATE: no upgrade deadlocks), then closed."""
        with closing(sqlite3.connect(self.path, timeout=LOCK_TIMEOUT_SECONDS, isolation_level=None)) as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    # ------------------------------------------------------------------ moving window

    def acquire_entry(self, key: str, limit: int, expiry: int, amount: int = 1) -> bool:
        if amount > limit:
            return False
        now = self._clock()
        with self._transaction() as db:
            db.execute("DELETE FROM entries WHERE expires <= ?", (now,))
            (count,) = db.execute(
                "SELECT count(*) FROM entries WHERE key = ? AND at > ?", (key, now - expiry)
            ).fetchone()
            if count + amount > limit:
                return False
            db.executemany(
                "INSERT INTO entries (key, at, expires) VALUES (?, ?, ?)", [(key, now, now + expiry)] * amount
            )
            return True

    def get_moving_window(self, key: str, limit: int, expiry: int) -> tuple[float, int]:
        """(time of the oldest of the latest `limit` entries in the window, how many there are)."""
        now = self._clock()
        with self._transaction() as db:
            oldest, count = db.execute(
                "SELECT min(at), count(*) FROM ("
                " SELECT at FROM entries WHERE key = ? AND at > ? ORDER BY at DESC LIMIT ?)",
                (key, now - expiry, limit),
            ).fetchone()
        return (float(oldest), int(count)) if count else (now, 0)

    # ------------------------------------------------------------------ fixed window and the rest

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        now = self._clock()
        with self._transaction() as db:
            db.execute("DELETE FROM counters WHERE key = ? AND expires <= ?", (key, now))
            db.execute(
                "INSERT INTO counters (key, value, expires) VALUES (?, ?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = value + excluded.value",
                (key, amount, now + expiry),
            )
            (value,) = db.execute("SELECT value FROM counters WHERE key = ?", (key,)).fetchone()
        return int(value)

    def get(self, key: str) -> int:
        with self._transaction() as db:
            row = db.execute(
                "SELECT value FROM counters WHERE key = ? AND expires > ?", (key, self._clock())
            ).fetchone()
        return int(row[0]) if row else 0

    def get_expiry(self, key: str) -> float:
        with self._transaction() as db:
            row = db.execute("SELECT expires FROM counters WHERE key = ?", (key,)).fetchone()
        return float(row[0]) if row else self._clock()

    def check(self) -> bool:
        try:
            with self._transaction() as db:
                db.execute("SELECT 1").fetchone()
        except sqlite3.Error:
            return False
        return True

    def reset(self) -> int | None:
        with self._transaction() as db:
            removed = db.execute("DELETE FROM entries").rowcount + db.execute("DELETE FROM counters").rowcount
        return int(removed)

    def clear(self, key: str) -> None:
        with self._transaction() as db:
            db.execute("DELETE FROM entries WHERE key = ?", (key,))
            db.execute("DELETE FROM counters WHERE key = ?", (key,))
