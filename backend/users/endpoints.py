from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, status

from backend.annotations.service import annotator_stats
from backend.auth.service import as_utc
from backend.deps import Lead, SessionDep
from backend.models import User
from backend.users import accounts, service
from backend.users.schemas import AnnotatorRead, PasswordReset, UserCreate, UserRead, UserUpdate

router = APIRouter(tags=["users"])

# Ids are 32-bit on PostgreSQL: a larger one is a 422, not a database error.
UserId = Annotated[int, Path(ge=1, le=2**31 - 1)]


def user_read(user: User) -> UserRead:
    return UserRead(
        id=user.id,
        username=user.username,
        role=user.role,
        is_active=user.is_active,
        created_at=as_utc(user.created_at),
    )


@router.post("/users", status_code=status.HTTP_201_CREATED)
def create_user(body: UserCreate, user: Lead, session: SessionDep) -> UserRead:
    """Create an account (leads may create annotators only)."""
    return user_read(service.create_user_by(session, user, body.username, body.password, body.role))


@router.get("/users")
def list_users(user: Lead, session: SessionDep) -> list[UserRead]:
    """Accounts you may see: everyone for admins, the annotators and yourself for leads."""
    return [user_read(item) for item in service.list_users(session, user)]


@router.patch("/users/{user_id}")
def update_user(user_id: UserId, body: UserUpdate, user: Lead, session: SessionDep) -> UserRead:
    """Change an account's role or deactivate/reactivate it (admins; deactivation ends its tokens)."""
    changed = accounts.change_account(session, user, user_id, role=body.role, is_active=body.is_active)
    return user_read(changed)


@router.post("/users/{user_id}/password")
def reset_password(user_id: UserId, body: PasswordReset, user: Lead, session: SessionDep) -> UserRead:
    """Set a new password for an account and sign it out of its browser sessions (admins)."""
    return user_read(accounts.reset_password(session, user, user_id, body.password))


@router.get("/annotators")
def list_annotators(
    user: Lead,
    session: SessionDep,
    project_id: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
) -> list[AnnotatorRead]:
    """Annotators: answer counts, median seconds per task, bias against the consensus, error vs gold."""
    return [
        AnnotatorRead(
            id=stats.id,
            username=stats.username,
            answers=stats.answers,
            median_seconds=stats.median_seconds,
            bias=stats.bias,
            gold_answers=stats.gold_answers,
            gold_error=stats.gold_error,
            gold_bias=stats.gold_bias,
            flagged=stats.flagged,
        )
        for stats in annotator_stats(session, user, project_id)
    ]
