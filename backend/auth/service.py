"""Logins and tokens: password checks with throttling, login and API tokens. Services flush, never commit."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

from sqlalchemy import Select, bindparam, select, update
from sqlalchemy.orm import Session

from backend.audit import AuditEvent, audit, audit_after_commit
from backend.auth.ratelimit import LoginGuard, LoginThrottled
from backend.auth.scopes import ALL_SCOPES, ROLE_SCOPES, effective_scopes
from backend.errors import Forbidden, InvalidInput, NotFound, Unauthorized
from backend.models import ApiToken, Role, User
from backend.security import hash_password, new_token, token_digest, verify_password
from backend.users.service import get_user_by_name

logger = logging.getLogger(__name__)

LOGIN_TOKEN_NAME = "login"  # noqa: S105  # a name, not a secret; reserved: API tokens may not take it
LOGIN_TOKEN_LIFETIME = timedelta(hours=12)
# last_used_at is a hint for people, not an audit log: write it at most once a minute per token.
LAST_USED_RESOLUTION = timedelta(minutes=1)


def as_utc(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes; every stored time is UTC."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


@cache
def _dummy_hash() -> str:
    return hash_password("not-a-real-password")


def authenticate(
    session: Session,
    username: str,
    password: str,
    client_address: str,
    *,
    guard: LoginGuard,
) -> User:
    """The active user with these credentials; 401 otherwise, 429 while throttled (ratelimit.py), 503
    when no password check can start in time."""
    try:
        guard.throttle.check(username, client_address)
        user = get_user_by_name(session, username)
        with guard.gate.slot():
            # Asked again with the slot held: other attempts may have failed while this one waited.
            guard.throttle.check(username, client_address)
            # Verify against a dummy hash for unknown users so the answer takes as long either way.
            valid = verify_password(user.password_hash if user else _dummy_hash(), password)
    except LoginThrottled:
        audit(
            AuditEvent.LOGIN_THROTTLED,
            "login refused: too many failures",
            username=username,
            address=client_address,
        )
        raise
    if user is None or not valid or not user.is_active:
        guard.throttle.record_failure(username, client_address)
        reason = "unknown_user" if user is None else "wrong_password" if not valid else "inactive"
        audit(
            AuditEvent.LOGIN_FAILED, "failed login", username=username, address=client_address, reason=reason
        )
        raise Unauthorized("wrong username or password")
    guard.throttle.record_success(username, client_address)
    audit_after_commit(
        session,
        AuditEvent.LOGIN_SUCCEEDED,
        "login",
        user_id=user.id,
        username=user.username,
        address=client_address,
    )
    return user


def create_login_token(session: Session, user: User) -> str:
    """A bearer token for a browser session: every scope of the role, valid 12 hours."""
    plain = new_token()
    session.add(
        ApiToken(
            user_id=user.id,
            name=LOGIN_TOKEN_NAME,
            token_hash=token_digest(plain),
            scopes=sorted(ROLE_SCOPES[user.role]),
            expires_at=datetime.now(UTC) + LOGIN_TOKEN_LIFETIME,
        )
    )
    session.flush()
    return plain


def create_api_token(
    session: Session,
    user: User,
    name: str,
    scopes: list[str],
    expires_at: datetime | None,
    *,
    within_scopes: frozenset[str] | None = None,
) -> tuple[ApiToken, str]:
    """A named token with a subset of the role's scopes (and of `within_scopes`, the caller's token's)."""
    if name.strip().lower() == LOGIN_TOKEN_NAME:
        raise InvalidInput(f"the token name {LOGIN_TOKEN_NAME!r} is reserved for browser sessions")
    unknown = sorted(set(scopes) - set(ALL_SCOPES))
    if unknown:
        raise InvalidInput(f"unknown scopes {unknown}; choose from {list(ALL_SCOPES)}")
    if not scopes:
        raise InvalidInput("a token needs at least one scope")
    allowed = ROLE_SCOPES[user.role] if within_scopes is None else ROLE_SCOPES[user.role] & within_scopes
    refused = sorted(set(scopes) - allowed)
    if refused:
        raise Forbidden(f"you cannot grant the scopes {refused}")
    if expires_at is not None and as_utc(expires_at) <= datetime.now(UTC):
        raise InvalidInput("expires_at must be in the future")
    plain = new_token()
    token = ApiToken(
        user_id=user.id,
        name=name,
        token_hash=token_digest(plain),
        scopes=sorted(set(scopes)),
        # In UTC already here, so the response shows the instant as every later read does.
        expires_at=as_utc(expires_at).astimezone(UTC) if expires_at else None,
    )
    session.add(token)
    session.flush()
    audit_after_commit(
        session,
        AuditEvent.TOKEN_CREATED,
        "API token created",
        token_id=token.id,
        name=name,
        user_id=user.id,
        scopes=token.scopes,
        expires_at=token.expires_at.isoformat() if token.expires_at else None,
    )
    return token, plain


def list_api_tokens(session: Session, user: User) -> list[ApiToken]:
    """The user's API tokens (revoked ones included, login sessions left out), newest first."""
    query = (
        select(ApiToken)
        .where(ApiToken.user_id == user.id, ApiToken.name != LOGIN_TOKEN_NAME)
        .order_by(ApiToken.id.desc())
    )
    return list(session.scalars(query))


def revoke_token(session: Session, user: User, token_id: int) -> ApiToken:
    """Revoke one of the user's tokens (an admin may revoke anyone's); revoking twice is harmless."""
    token = session.get(ApiToken, token_id)
    if token is None or (token.user_id != user.id and user.role != Role.admin):
        raise NotFound(f"token {token_id} not found")
    if token.revoked_at is None:
        token.revoked_at = datetime.now(UTC)
        session.flush()
        audit_after_commit(
            session,
            AuditEvent.TOKEN_REVOKED,
            "token revoked",
            token_id=token.id,
            name=token.name,
            user_id=token.user_id,
            actor_id=user.id,
        )
    return token


def resolve_token(session: Session, plain: str) -> tuple[User, ApiToken] | None:
    """The user and token row behind a presented token, or None if unknown, expired, revoked or inactive."""
    if not plain:
        return None
    row = session.execute(
        select(ApiToken, User)
        .join(User, User.id == ApiToken.user_id)
        .where(ApiToken.token_hash == token_digest(plain))
    ).one_or_none()
    if row is None:
        return None
    token, user = row[0], row[1]
    if token.revoked_at is not None or not user.is_active:
        return None
    now = datetime.now(UTC)
    if token.expires_at is not None and as_utc(token.expires_at) <= now:
        return None
    if token.last_used_at is None or as_utc(token.last_used_at) < now - LAST_USED_RESOLUTION:
        token.last_used_at = now
    return user, token


@dataclass(frozen=True)
class Caller:
    """Who a request comes from, as the hot endpoints need it: ids and scopes, no ORM objects."""

    user_id: int
    role: Role
    scopes: frozenset[str]  # what the token and the user's role both allow


def _caller_statement(*, lock_user: bool) -> Select[*tuple[Any, ...]]:
    statement = (
        select(
            ApiToken.id,
            ApiToken.scopes,
            ApiToken.expires_at,
            ApiToken.revoked_at,
            ApiToken.last_used_at,
            User.id,
            User.role,
            User.is_active,
        )
        .join(User, User.id == ApiToken.user_id)
        .where(ApiToken.token_hash == bindparam("token_hash"))
    )
    return statement.with_for_update(of=User, key_share=True) if lock_user else statement


# Built once: constructing a statement costs more CPU than running it (see backend/tasks/repository.py).
_CALLER = _caller_statement(lock_user=False)
_CALLER_LOCKING_USER = _caller_statement(lock_user=True)
_TOKEN_USED = update(ApiToken).where(ApiToken.id == bindparam("token_id"))


def resolve_caller(session: Session, plain: str, *, lock_user: bool = False) -> Caller | None:
    """`resolve_token` in one statement of plain columns; `lock_user` also locks the user's row
    (FOR NO KEY UPDATE, until commit: one annotator's task requests then run one at a time)."""
    if not plain:
        return None
    statement = _CALLER_LOCKING_USER if lock_user else _CALLER
    row = session.connection().execute(statement, {"token_hash": token_digest(plain)}).one_or_none()
    if row is None:
        return None
    token_id, scopes, expires_at, revoked_at, last_used_at, user_id, role, is_active = row
    if revoked_at is not None or not is_active:
        return None
    now = datetime.now(UTC)
    if expires_at is not None and as_utc(expires_at) <= now:
        return None
    if last_used_at is None or as_utc(last_used_at) < now - LAST_USED_RESOLUTION:
        session.connection().execute(_TOKEN_USED, {"token_id": token_id, "last_used_at": now})
    role = Role(role)
    return Caller(user_id=int(user_id), role=role, scopes=effective_scopes(role, scopes))
