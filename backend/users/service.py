"""Users: creation and password checks. Services flush, never commit."""

from __future__ import annotations

import re

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from backend.audit import AuditEvent, audit_after_commit
from backend.errors import Conflict, Forbidden, InvalidInput
from backend.models import Role, User
from backend.security import hash_password

USERNAME_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{2,64}$")
MIN_PASSWORD_LENGTH = 8


def create_user(session: Session, username: str, password: str, role: Role) -> User:
    if not USERNAME_PATTERN.fullmatch(username):
        raise InvalidInput("username must be 2-64 characters of letters, digits, '.', '_' or '-'")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidInput(f"password must be at least {MIN_PASSWORD_LENGTH} characters")
    if session.scalar(select(User.id).where(User.username == username)) is not None:
        raise Conflict(f"user {username!r} already exists")
    user = User(username=username, password_hash=hash_password(password), role=role)
    session.add(user)
    session.flush()
    audit_after_commit(
        session, AuditEvent.USER_CREATED, "user created", user_id=user.id, username=username, role=role.value
    )
    return user


def get_user_by_name(session: Session, username: str) -> User | None:
    return session.scalar(select(User).where(User.username == username))


def create_user_by(session: Session, creator: User, username: str, password: str, role: Role) -> User:
    """Admins create anyone; leads create annotators only."""
    if creator.role != Role.admin and role != Role.annotator:
        raise Forbidden("leads may create annotator accounts only")
    return create_user(session, username, password, role)


def list_users(session: Session, viewer: User) -> list[User]:
    """Admins see everyone; leads see the annotators and themselves."""
    statement = select(User).order_by(User.id)
    if viewer.role != Role.admin:
        statement = statement.where(or_(User.role == Role.annotator, User.id == viewer.id))
    return list(session.scalars(statement))
