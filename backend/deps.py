"""Dependency aliases for endpoints: one unit of work per request, and who is asking."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Annotated, TypeVar

from fastapi import Depends, Request
from sqlalchemy import Connection, Engine
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from backend.auth.csrf import CSRF_COOKIE, SESSION_COOKIE, read_cookie, session_csrf_valid
from backend.auth.scopes import ANNOTATE, CHECKPOINTS_READ, MANAGE, effective_scopes
from backend.auth.service import Caller, resolve_caller, resolve_token
from backend.db import unit_of_work
from backend.errors import ClientGone, Forbidden, Unauthorized
from backend.models import User
from backend.settings import Settings
from backend.tasks.progress import RoundProgress

T = TypeVar("T")

CSRF_HEADER = "X-CSRF-Token"
CSRF_FORM_FIELD = "csrf_token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
_PAGE_FORM_TYPE = "application/x-www-form-urlencoded"


def _session(request: Request) -> Iterator[Session]:
    with unit_of_work(request.app.state.sessions) as session:
        yield session


async def _settings(request: Request) -> Settings:  # async: no I/O, so no thread-pool hop
    settings: Settings = request.app.state.settings
    return settings


# scope="function": commit before the response is sent, so a 2xx means the data is durable.
SessionDep = Annotated[Session, Depends(_session, scope="function")]
SettingsDep = Annotated[Settings, Depends(_settings)]


async def _submitted_csrf(request: Request) -> str | None:
    """The CSRF token a cookie-authenticated request sent: the header, or the form field of a page form.

    The body is read for the field only when a session cookie came without a bearer token, and only
    for a URL-encoded page form: an anonymous request, a bearer one or an upload (multipart, whose
    page script sends the header) is never read before its credentials are checked.
    """
    header = request.headers.get(CSRF_HEADER)
    if header is not None or request.method in SAFE_METHODS:
        return header
    if _bearer_token(request) is not None or not read_cookie(request, SESSION_COOKIE):
        return None
    if request.headers.get("content-type", "").startswith(_PAGE_FORM_TYPE):
        value = (await request.form()).get(CSRF_FORM_FIELD)
        return value if isinstance(value, str) else None
    return None


def _bearer_token(request: Request) -> str | None:
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    return credentials.strip() if scheme.lower() == "bearer" and credentials.strip() else None


def presented_token(request: Request) -> str | None:
    """The credential a request presents, unchecked: its bearer token, else its session cookie."""
    return _bearer_token(request) or read_cookie(request, SESSION_COOKIE) or None


NO_TOKEN = "log in or send an API token (Authorization: Bearer <token>)"  # noqa: S105  # a message
INVALID_TOKEN = "the token is invalid, expired or revoked; log in again"  # noqa: S105  # a message
BAD_CSRF = f"missing or wrong CSRF token: send the {CSRF_COOKIE} cookie's value as {CSRF_HEADER}"


def _csrf_ok(request: Request, bearer: str | None, csrf: str | None) -> bool:
    if bearer is not None or request.method in SAFE_METHODS:
        return True
    # The token is the session's HMAC under the secret key (backend/auth/csrf.py): a cross-site form
    # sends the cookies but cannot read the token, and a planted cookie cannot make one.
    settings: Settings = request.app.state.settings
    return session_csrf_valid(settings, read_cookie(request, SESSION_COOKIE), csrf)


def _current_user(
    request: Request, session: SessionDep, csrf: Annotated[str | None, Depends(_submitted_csrf)]
) -> User:
    bearer = _bearer_token(request)
    plain = bearer or read_cookie(request, SESSION_COOKIE)
    if not plain:
        raise Unauthorized(NO_TOKEN)
    resolved = resolve_token(session, plain)
    if resolved is None:
        raise Unauthorized(INVALID_TOKEN)
    user, token = resolved
    if not _csrf_ok(request, bearer, csrf):
        raise Forbidden(BAD_CSRF)
    request.state.api_token = token
    request.state.scopes = effective_scopes(user.role, token.scopes)
    return user


CurrentUser = Annotated[User, Depends(_current_user)]


class ScopeCheck:
    """Base of the dependencies that require a scope; the access-table test reads `scope` from each route."""

    def __init__(self, scope: str) -> None:
        self.scope = scope


class ScopeRequirement(ScopeCheck):
    """Dependency: the current user, if both the role and the presented token allow `scope` (else 403)."""

    async def __call__(self, request: Request, user: CurrentUser) -> User:  # async: no thread-pool hop
        if self.scope not in request.state.scopes:
            raise Forbidden(f"this needs the {self.scope!r} scope, which your role or token does not have")
        return user


def require_scope(scope: str) -> ScopeRequirement:
    """A dependency returning the current user if the role and the token both allow `scope`, else 403."""
    return ScopeRequirement(scope)


Lead = Annotated[User, Depends(require_scope(MANAGE))]
Annotator = Annotated[User, Depends(require_scope(ANNOTATE))]
CheckpointReader = Annotated[User, Depends(require_scope(CHECKPOINTS_READ))]


# ---------------------------------------------------------------- the hot endpoints: one thread hop


@dataclass(frozen=True)
class Credentials:
    """A token the request presents, checked (with `scope`) inside the request's unit of work."""

    token: str
    scope: str
    csrf_ok: bool  # a cookie-authenticated write echoed the CSRF cookie (always true for bearer tokens)

    def caller(self, session: Session, *, lock_user: bool = False) -> Caller:
        """The caller behind the token: 401 if it is not valid, 403 on a bad CSRF token or no scope."""
        caller = resolve_caller(session, self.token, lock_user=lock_user)
        if caller is None:
            raise Unauthorized(INVALID_TOKEN)
        if not self.csrf_ok:
            raise Forbidden(BAD_CSRF)
        if self.scope not in caller.scopes:
            raise Forbidden(f"this needs the {self.scope!r} scope, which your role or token does not have")
        return caller

    def user(self, session: Session) -> User:
        """`caller`, as the user row the services of the lead's endpoints take."""
        user = session.get(User, self.caller(session).user_id)
        assert user is not None  # the token's foreign key
        return user


class DeferredScopeRequirement(ScopeCheck):
    """Dependency of the endpoints annotators call in a loop: the credentials, checked later in the
    request's one unit of work (`OneHop`) instead of in dependencies of their own (each a thread hop)."""

    async def __call__(
        self, request: Request, csrf: Annotated[str | None, Depends(_submitted_csrf)]
    ) -> Credentials:
        bearer = _bearer_token(request)
        plain = bearer or read_cookie(request, SESSION_COOKIE)
        if not plain:
            raise Unauthorized(NO_TOKEN)
        return Credentials(plain, self.scope, _csrf_ok(request, bearer, csrf))


AnnotatorCredentials = Annotated[Credentials, Depends(DeferredScopeRequirement(ANNOTATE))]
# An endpoint that reads its body itself (an upload) checks these first, in a unit of work that
# commits before a byte of the body is read: no transaction (on SQLite, the write lock) stays open
# while a client sends its file.
ManagerCredentials = Annotated[Credentials, Depends(DeferredScopeRequirement(MANAGE))]


class OneHop:
    """What a request's work has on its worker thread: units of work and the settings.

    A unit of work started here commits before the thread is handed back, so a transaction never
    waits — holding its row locks — for a thread that requests blocked on those locks occupy (the
    convoy of docs/load.md). When the client has gone away, no unit starts, and one that is open
    rolls back instead of committing (`ClientGone`): nobody would read the answer. The units of a
    hop share one pooled connection, checked out (and pinged) once.
    """

    def __init__(
        self,
        engine: Engine,
        sessions: sessionmaker[Session],
        settings: Settings,
        progress: RoundProgress | None = None,
    ) -> None:
        self.engine = engine
        self.sessions = sessions
        self.settings = settings
        self.progress = progress or RoundProgress()
        self.gone = threading.Event()
        self._connection: Connection | None = None

    @contextmanager
    def unit_of_work(self, *, stop_if_gone: bool = True) -> Iterator[Session]:
        """A unit of work; with `stop_if_gone`, none when the client has gone, and no commit if it goes."""
        if stop_if_gone and self.gone.is_set():
            raise ClientGone()
        if self._connection is None:
            self._connection = self.engine.connect()
        with unit_of_work(self.sessions, bind=self._connection) as session:
            yield session
            if stop_if_gone and self.gone.is_set():
                raise ClientGone()

    def run(self, work: Callable[[OneHop], T]) -> T:
        try:
            return work(self)
        finally:
            if self._connection is not None:
                self._connection.close()  # back to the pool


async def in_one_hop(request: Request, work: Callable[[OneHop], T]) -> T:
    """Run `work` on one thread-pool thread (one hop per request), watching for the client going away."""
    state = request.app.state
    hop = OneHop(state.engine, state.sessions, state.settings, state.round_progress)

    async def watch() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass  # the (empty, or already read) request body
        hop.gone.set()

    watcher = asyncio.ensure_future(watch())
    try:
        return await run_in_threadpool(hop.run, work)
    finally:
        watcher.cancel()
