"""Login throttling: a sliding window of failed attempts per username and per client address.

The window lives in the API process (one per app, see `limiter_for`): the embedded deployment
runs one API process, so the limit is exact there; an API run with N processes allows up to N
times the limit per key. Enough to stop password guessing; put a shared store behind this class
if exact limits across processes are ever needed.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

from starlette.datastructures import State

MAX_FAILURES = 10
WINDOW_SECONDS = 300.0  # 10 failures within 5 minutes lock the key until the oldest one ages out


class LoginRateLimiter:
    def __init__(
        self,
        max_failures: int = MAX_FAILURES,
        window_seconds: float = WINDOW_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_failures = max_failures
        self.window_seconds = window_seconds
        self._clock = clock
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> deque[float]:
        failures = self._failures.get(key)
        if failures is None:
            return deque()
        while failures and failures[0] <= now - self.window_seconds:
            failures.popleft()
        if not failures:
            del self._failures[key]
        return failures

    def retry_after(self, *keys: str) -> float:
        """Seconds until every key may try again; 0 when none is locked."""
        with self._lock:
            now = self._clock()
            wait = 0.0
            for key in keys:
                failures = self._recent(key, now)
                if len(failures) >= self.max_failures:
                    wait = max(wait, failures[-self.max_failures] + self.window_seconds - now)
            return wait

    def record_failure(self, *keys: str) -> None:
        with self._lock:
            now = self._clock()
            for key in keys:
                self._recent(key, now)
                self._failures.setdefault(key, deque()).append(now)

    def clear(self, key: str) -> None:
        with self._lock:
            self._failures.pop(key, None)


_create_lock = threading.Lock()


def limiter_for(state: State) -> LoginRateLimiter:
    """The limiter of one app (`request.app.state`): every login route of the app must share it."""
    with _create_lock:
        limiter: LoginRateLimiter | None = getattr(state, "login_limiter", None)
        if limiter is None:
            limiter = LoginRateLimiter()
            state.login_limiter = limiter
        return limiter
