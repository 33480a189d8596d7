"""Queries of project members."""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from backend.models import ProjectMember, Role, User
from backend.models._types import utcnow


def members(session: Session, project_id: int) -> list[User]:
    """The users listed on the project, by id."""
    statement = (
        select(User)
        .join(ProjectMember, ProjectMember.user_id == User.id)
        .where(ProjectMember.project_id == project_id)
        .order_by(User.id)
    )
    return list(session.scalars(statement))


def member_ids(session: Session, project_id: int) -> set[int]:
    statement = select(ProjectMember.user_id).where(ProjectMember.project_id == project_id)
    return {int(user_id) for user_id in session.scalars(statement)}


def annotator_ids_among(session: Session, user_ids: Collection[int]) -> set[int]:
    """Those of `user_ids` that are annotator accounts."""
    if not user_ids:
        return set()
    statement = select(User.id).where(User.id.in_(list(user_ids)), User.role == Role.annotator)
    return {int(user_id) for user_id in session.scalars(statement)}


def add(session: Session, project_id: int, user_ids: Collection[int]) -> None:
    if user_ids:
        rows = [
            {"project_id": project_id, "user_id": user_id, "created_at": utcnow()} for user_id in user_ids
        ]
        session.execute(insert(ProjectMember), rows)


def remove(session: Session, project_id: int, user_ids: Collection[int]) -> None:
    if user_ids:
        statement = delete(ProjectMember).where(
            ProjectMember.project_id == project_id, ProjectMember.user_id.in_(list(user_ids))
        )
        session.execute(statement.execution_options(synchronize_session=False))
