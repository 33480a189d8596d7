"""Login throttling: failed sign-ins counted in a store that every API process shares.

The counts live where all the API processes of a deployment see them (the `limits` library's
moving window): in Redis when the broker is Redis (`redis://`, `rediss://`), else in a SQLite file
in the data folder, which every process of the one machine opens (`throttle_store.py`).

The policy (docs/access-and-tasks.md), over a moving window of 15 minutes:
- one client address may fail 5 times on one username (`per_pair`): a guesser at one account;
- one client address may fail 20 times whatever the usernames (`per_address`): password spraying;
- one username may fail 10 times from all addresses together (`per_username`). Past that, only a
  client that has not itself failed on the username in the window may still try: a botnet gets one
  guess per address per window, and the owner, who has not failed, still signs in. A stranger's
  failures never lock the owner out.
Over a budget a login is refused with 429 and Retry-After before its password is checked. A success
clears that client's count on that username only: signing in to one's own account buys no guesses
at another, and the owner signing in does not end an attack on their account.

The client address is what uvicorn reports: the peer's, or X-Forwarded-For when the peer is one of
AQPL_FORWARDED_ALLOW_IPS. An IPv6 address counts by its /64, the block one subscriber is given.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from limits import RateLimitItem, RateLimitItemPerSecond
from limits.errors import StorageError
from limits.storage import RedisStorage, Storage
from limits.strategies import MovingWindowRateLimiter
from starlette.datastructures import State

from backend.auth.hash_gate import LoginBusy, PasswordCheckGate
from backend.auth.throttle_store import SQLiteFileStorage
from backend.errors import TooManyRequests
from backend.settings import Settings

# Seconds a Redis call may take before the login is refused as busy (a dead Redis must not hang it).
REDIS_TIMEOUT_SECONDS = 2.0


@dataclass(frozen=True)
class LoginPolicy:
    """How many failed logins each key may have in one moving window."""

    window_seconds: int = 15 * 60
    per_pair: int = 5  # one client address on one username: 480 guesses a day at most
    per_address: int = 20  # one client address, any usernames: a shared office NAT's typos fit
    per_username: int = 10  # one username, all addresses: past it, clients that failed on it wait


class LoginThrottled(TooManyRequests):
    """Too many failed logins for this client; `retry_after` seconds until it may try again."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"too many failed logins; try again in {retry_after} seconds")
        self.retry_after = retry_after


def _address_key(address: str) -> str:
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address  # not an IP (a test client, a Unix socket): counted as it is
    if parsed.version == 6:
        return str(ipaddress.ip_network(f"{parsed}/64", strict=False))
    return str(parsed)


def _username_key(username: str) -> str:
    # Hashed: usernames (tried ones too) are not kept in the store, and any text makes a clean key.
    return hashlib.sha256(username.strip().lower().encode()).hexdigest()[:32]


class LoginThrottle:
    """The policy above, on a `limits` storage that every API process of the deployment shares."""

    def __init__(
        self,
        storage: Storage,
        policy: LoginPolicy | None = None,
        *,
        namespace: str = "login",
        clock: Callable[[], float] = time.time,
    ) -> None:
        policy = policy or LoginPolicy()
        self._limiter = MovingWindowRateLimiter(storage)
        self._clock = clock

        def item(amount: int, kind: str) -> RateLimitItem:
            return RateLimitItemPerSecond(amount, policy.window_seconds, namespace=f"{namespace}-{kind}")

        self._pair = item(policy.per_pair, "pair")
        self._address = item(policy.per_address, "address")
        self._username = item(policy.per_username, "username")

    def check(self, username: str, address: str) -> None:
        """Raise LoginThrottled unless this client may try this username now."""
        user, client = _username_key(username), _address_key(address)
        try:
            over = [
                (limit, keys)
                for limit, keys in ((self._address, (client,)), (self._pair, (client, user)))
                if not self._limiter.test(limit, *keys)
            ]
            if not over and not self._limiter.test(self._username, user) and self._has_failed(client, user):
                over.append((self._username, (user,)))
            if over:
                now = self._clock()
                resets = [self._limiter.get_window_stats(limit, *keys).reset_time for limit, keys in over]
                raise LoginThrottled(max(1, math.ceil(max(resets) - now)))
        except StorageError as error:
            raise LoginBusy() from error

    def _has_failed(self, client: str, user: str) -> bool:
        return self._limiter.get_window_stats(self._pair, client, user).remaining < self._pair.amount

    def record_failure(self, username: str, address: str) -> None:
        user, client = _username_key(username), _address_key(address)
        try:
            self._limiter.hit(self._pair, client, user)
            self._limiter.hit(self._address, client)
            self._limiter.hit(self._username, user)
        except StorageError as error:
            raise LoginBusy() from error

    def record_success(self, username: str, address: str) -> None:
        try:
            self._limiter.clear(self._pair, _address_key(address), _username_key(username))
        except StorageError as error:
            raise LoginBusy() from error


def throttle_storage(settings: Settings) -> Storage:
    """Redis when the broker is Redis (every API host sees it); else a SQLite file in the data folder."""
    if settings.broker_url.startswith(("redis://", "rediss://")):
        return RedisStorage(
            settings.broker_url,
            wrap_exceptions=True,
            # Deployments may share one Redis (a queue each): so may they share it here.
            key_prefix=f"aqpl:{settings.queue}:throttle",
            socket_timeout=REDIS_TIMEOUT_SECONDS,
            socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
        )
    return SQLiteFileStorage(settings.data_dir / "login-throttle.sqlite3")


@dataclass
class LoginGuard:
    """What stands before a password check: the shared throttle and this process's hashing slots."""

    throttle: LoginThrottle
    gate: PasswordCheckGate


_create_lock = threading.Lock()


def login_guard(state: State) -> LoginGuard:
    """The guard of one app (`request.app.state`), made at its first login: every login route shares it."""
    with _create_lock:
        guard: LoginGuard | None = getattr(state, "login_guard", None)
        if guard is None:
            settings: Settings = state.settings
            guard = LoginGuard(
                throttle=LoginThrottle(throttle_storage(settings)),
                gate=PasswordCheckGate(
                    settings.max_concurrent_password_hashes, retry_after_seconds=settings.retry_after_seconds
                ),
            )
            state.login_guard = guard
        return guard


def retry_later_headers(error: LoginThrottled | LoginBusy) -> dict[str, str]:
    return {"Retry-After": str(error.retry_after)}


def install_login_guard(app: FastAPI) -> None:
    """Answer a throttled login 429 and a login that found no hashing slot 503, both with Retry-After."""

    @app.exception_handler(LoginThrottled)
    @app.exception_handler(LoginBusy)
    async def _retry_later(_request: Request, exc: LoginThrottled | LoginBusy) -> JSONResponse:
        return JSONResponse(
            {"detail": exc.message}, status_code=exc.status_code, headers=retry_later_headers(exc)
        )
