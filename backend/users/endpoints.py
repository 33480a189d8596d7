from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status

from backend.annotations.service import annotator_stats
from backend.auth.service import as_utc
from backend.deps import Lead, SessionDep
from backend.models import User
from backend.users import service
from backend.users.schemas import AnnotatorRead, UserCreate, UserRead

router = APIRouter(tags=["users"])


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


@router.get("/annotators")
def list_annotators(
    user: Lead,
    session: SessionDep,
    project_id: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
) -> list[AnnotatorRead]:
    """Annotators with their answer counts, median seconds per task and bias against the consensus."""
    return [
        AnnotatorRead(
            id=stats.id,
            username=stats.username,
            answers=stats.answers,
            median_seconds=stats.median_seconds,
            bias=stats.bias,
        )
        for stats in annotator_stats(session, user, project_id)
    ]
