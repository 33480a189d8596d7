"""Account changes an admin makes: deactivate, reactivate, change a role, reset a password.
Services flush, never commit.

Each change takes effect with its commit. Deactivation revokes every token and browser session of
the account (a 401 on their next request) and returns their leases to the pool; a reactivated user
signs in again. A role change signs the user out of their browser sessions (the next sign-in carries
the new role's scopes) and returns their leases to the pool; their API tokens stay, cut to what the
new role allows. A password reset signs them out of their browser sessions. No change may leave the
platform without an active admin. The actor None is the operator at the command line (`aqpl users`),
who may change any account.

Locks: the active admins' user rows (in id order), then the account's own row, then the queries of
its leases: the lock order of `backend.tasks.repository` (user rows first). A `tasks/next` of the
account holds its user row until it commits, so its lease is either taken back here or never made.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from backend.audit import AuditEvent, FieldValue, audit_after_commit
from backend.auth.service import LOGIN_TOKEN_NAME
from backend.errors import Conflict, Forbidden, InvalidInput, NotFound
from backend.models import ApiToken, Role, User
from backend.security import hash_password
from backend.tasks.service import take_back_leases
from backend.users.service import MIN_PASSWORD_LENGTH

ADMINS_ONLY = "only an admin may change accounts"
LAST_ADMIN = "this would leave no active admin: make another account admin first"


def _lock_active_admins(session: Session) -> list[int]:
    """Lock every active admin's row (in id order: two admins changing each other queue up); their ids."""
    statement = (
        select(User.id)
        .where(User.role == Role.admin, User.is_active.is_(True))
        .order_by(User.id)
        .with_for_update(key_share=True)
    )
    return list(session.scalars(statement))


def _locked_account(session: Session, actor: User | None, user_id: int) -> User:
    """The account `actor` changes, its row locked and read fresh: 404 for an account they may not see
    (a lead sees the annotators and themselves), 403 for anyone but an admin or the operator (None)."""
    statement = (
        select(User)
        .where(User.id == user_id)
        .with_for_update(key_share=True)
        .execution_options(populate_existing=True)
    )
    account = session.scalar(statement)
    if account is None or not (actor is None or _may_see(actor, account)):
        raise NotFound(f"user {user_id} does not exist")
    if actor is not None and actor.role != Role.admin:
        raise Forbidden(ADMINS_ONLY)
    return account


def _may_see(actor: User, account: User) -> bool:
    """As `backend.users.service.list_users`: admins see everyone, leads the annotators and themselves."""
    return actor.role == Role.admin or account.role == Role.annotator or account.id == actor.id


def _revoke_tokens(session: Session, user_id: int, *, sessions_only: bool) -> int:
    """Revoke the user's live tokens (only their browser sessions, with `sessions_only`); how many."""
    statement = (
        update(ApiToken)
        .where(ApiToken.user_id == user_id, ApiToken.revoked_at.is_(None))
        .values(revoked_at=datetime.now(UTC))
        .execution_options(synchronize_session=False)
    )
    if sessions_only:
        statement = statement.where(ApiToken.name == LOGIN_TOKEN_NAME)
    return int(session.execute(statement).rowcount)  # type: ignore[attr-defined]


def change_account(
    session: Session,
    actor: User | None,
    user_id: int,
    *,
    role: Role | None = None,
    is_active: bool | None = None,
) -> User:
    """Set the account's role and/or whether it is active (None: unchanged); admins only."""
    admins = _lock_active_admins(session) if actor is None or actor.role == Role.admin else []
    account = _locked_account(session, actor, user_id)
    new_role = account.role if role is None else role
    new_active = account.is_active if is_active is None else is_active
    stays_admin = new_role == Role.admin and new_active
    if account.id in admins and not stays_admin and len(admins) == 1:
        raise Conflict(LAST_ADMIN)
    fields: dict[str, FieldValue] = {
        "user_id": account.id,
        "username": account.username,
        "actor_id": None if actor is None else actor.id,
    }
    # Either change alters which projects' tasks the account may take (if any): its leases go back.
    leases_go_back = new_role != account.role or (account.is_active and not new_active)
    if new_role != account.role:
        old_role, account.role = account.role, new_role
        _revoke_tokens(session, account.id, sessions_only=True)
        audit_after_commit(
            session,
            AuditEvent.USER_ROLE_CHANGED,
            "role changed",
            old_role=old_role.value,
            role=new_role.value,
            **fields,
        )
    if new_active != account.is_active:
        account.is_active = new_active
        if new_active:
            audit_after_commit(session, AuditEvent.USER_REACTIVATED, "user reactivated", **fields)
        else:
            _revoke_tokens(session, account.id, sessions_only=False)
            audit_after_commit(session, AuditEvent.USER_DEACTIVATED, "user deactivated", **fields)
    session.flush()
    if leases_go_back:
        take_back_leases(session, [account.id])
    return account


def reset_password(session: Session, actor: User | None, user_id: int, password: str) -> User:
    """Give the account a new password and end its browser sessions; admins only."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidInput(
            f"password must be at least {MIN_PASSWORD_LENGTH} characters", loc=("body", "password")
        )
    account = _locked_account(session, actor, user_id)
    account.password_hash = hash_password(password)
    _revoke_tokens(session, account.id, sessions_only=True)
    session.flush()
    audit_after_commit(
        session,
        AuditEvent.USER_PASSWORD_RESET,
        "password reset",
        user_id=account.id,
        username=account.username,
        actor_id=None if actor is None else actor.id,
    )
    return account
