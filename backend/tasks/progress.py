"""The round's progress on the task view, without summing every query of the round per request."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

# Seconds a process reuses a round's sums (moved on by its own answers meanwhile): the bar on the
# annotation page may lag other processes' answers by this much (the page never moves it backwards).
REFRESH_SECONDS = 1.0


class RoundProgress:
    """(answers given, answers needed) per round, summed over the round's queries at most once per
    REFRESH_SECONDS in this process, and counted forward by this process's own answers in between.

    Summing is a scan of the round's queries (O(queries) per `tasks/next`: ~6 ms of PostgreSQL's CPU
    at 20,000 queries, more than the rest of the request). One per app (`app.state.round_progress`);
    threads share it, hence the lock.
    """

    def __init__(
        self, refresh_seconds: float = REFRESH_SECONDS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.refresh_seconds = refresh_seconds
        self.clock = clock
        self._lock = threading.Lock()
        self._sums: dict[int, tuple[float, int, int]] = {}  # round id -> (summed at, given, needed)

    def get(self, round_id: int, summed: Callable[[], tuple[int, int]]) -> tuple[int, int]:
        """The round's (given, needed): the sums of `summed()` when this process's are stale."""
        now = self.clock()
        with self._lock:
            known = self._sums.get(round_id)
        if known is not None and now - known[0] < self.refresh_seconds:
            return known[1], known[2]
        given, needed = summed()
        with self._lock:
            self._sums[round_id] = (now, given, needed)
        return given, needed

    def count_answer(self, round_id: int, *, one_more_needed: bool = False) -> None:
        """An answer this process just committed (and whether it asked the query for one more)."""
        with self._lock:
            known = self._sums.get(round_id)
            if known is not None:
                self._sums[round_id] = (known[0], known[1] + 1, known[2] + int(one_more_needed))
