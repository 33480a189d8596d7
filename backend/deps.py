"""Dependency aliases for endpoints: one unit of work per request, and who is asking."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from backend.auth.scopes import ANNOTATE, CHECKPOINTS_READ, MANAGE, effective_scopes
from backend.auth.service import resolve_token
from backend.db import unit_of_work
from backend.errors import Forbidden, Unauthorized
from backend.models import User
from backend.settings import Settings

SESSION_COOKIE = "aqpl_session"
CSRF_COOKIE = "aqpl_csrf"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FORM_FIELD = "csrf_token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


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
    """The CSRF token a cookie-authenticated request sent: the header, or the form field of a page form."""
    header = request.headers.get(CSRF_HEADER)
    if header is not None or request.method in SAFE_METHODS:
        return header
    if request.headers.get("content-type", "").startswith(_FORM_TYPES):
        value = (await request.form()).get(CSRF_FORM_FIELD)
        return value if isinstance(value, str) else None
    return None


def _bearer_token(request: Request) -> str | None:
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    return credentials.strip() if scheme.lower() == "bearer" and credentials.strip() else None


def _current_user(
    request: Request, session: SessionDep, csrf: Annotated[str | None, Depends(_submitted_csrf)]
) -> User:
    bearer = _bearer_token(request)
    plain = bearer or request.cookies.get(SESSION_COOKIE)
    if not plain:
        raise Unauthorized("log in or send an API token (Authorization: Bearer <token>)")
    resolved = resolve_token(session, plain)
    if resolved is None:
        raise Unauthorized("the token is invalid, expired or revoked; log in again")
    user, token = resolved
    if bearer is None and request.method not in SAFE_METHODS:
        # Double-submit: a cross-site form can send the cookie but cannot read it to echo it back.
        expected = request.cookies.get(CSRF_COOKIE, "")
        if not expected or not csrf or not secrets.compare_digest(expected, csrf):
            raise Forbidden(
                f"missing or wrong CSRF token: send the {CSRF_COOKIE} cookie's value as {CSRF_HEADER}"
            )
    request.state.api_token = token
    request.state.scopes = effective_scopes(user.role, token.scopes)
    return user


CurrentUser = Annotated[User, Depends(_current_user)]


class ScopeRequirement:
    """Dependency: the current user, if both the role and the presented token allow `scope` (else 403)."""

    def __init__(self, scope: str) -> None:
        self.scope = scope  # the access-table test reads it from each route's dependencies

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
