"""A bound on the password checks one API process runs at once.

Argon2id costs ~0.33 s of CPU and 64 MiB per check, on purpose. Unbounded, a burst of logins (an
attacker's, or everyone signing in at nine) would take every core and thread of the process and
starve the requests of people already signed in. So a login waits a moment for one of a few slots;
one that does not get a slot in time is refused at once with 503 and Retry-After, the answer of the
admission control (backend/admission.py), and the client comes back later.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from backend.admission import BUSY_MESSAGE
from backend.errors import DomainError

# Seconds a login waits for a slot: about three checks' time, long enough for a short burst to pass,
# short enough that a flood is refused before its clients time out.
SLOT_WAIT_SECONDS = 1.0


class LoginBusy(DomainError):
    """No password check could start in time (or the throttle's store did not answer): try later."""

    status_code = 503

    def __init__(self, retry_after: int = 1) -> None:
        super().__init__(BUSY_MESSAGE)
        self.retry_after = retry_after


class PasswordCheckGate:
    """At most `limit` password checks at once in this process (request threads share it)."""

    def __init__(
        self, limit: int, *, wait_seconds: float = SLOT_WAIT_SECONDS, retry_after_seconds: int = 1
    ) -> None:
        self.limit = limit
        self.wait_seconds = wait_seconds
        self.retry_after_seconds = retry_after_seconds
        self._slots = threading.BoundedSemaphore(limit)

    @contextmanager
    def slot(self) -> Iterator[None]:
        """Hold one slot for the block; LoginBusy if none frees up within `wait_seconds`."""
        if not self._slots.acquire(timeout=self.wait_seconds):
            raise LoginBusy(self.retry_after_seconds)
        try:
            yield
        finally:
            self._slots.release()
