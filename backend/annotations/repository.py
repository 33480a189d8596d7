"""Queries over answers."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.models import Annotation, Query, Round


def by_idempotency_key(session: Session, annotator_id: int, key: str) -> Annotation | None:
    return session.scalar(
        select(Annotation).where(Annotation.annotator_id == annotator_id, Annotation.idempotency_key == key)
    )


def by_query_and_annotator(session: Session, query_id: int, annotator_id: int) -> Annotation | None:
    return session.scalar(
        select(Annotation).where(Annotation.query_id == query_id, Annotation.annotator_id == annotator_id)
    )


def sigma_indices(session: Session, query_id: int) -> list[int]:
    return list(
        session.scalars(
            select(Annotation.sigma_index).where(Annotation.query_id == query_id).order_by(Annotation.id)
        )
    )


def answers_for_stats(
    session: Session, project_ids: list[int] | None
) -> list[tuple[int, int, int, float | None]]:
    """(annotator_id, query_id, sigma_index, seconds) of every answer, optionally within some projects."""
    statement = select(
        Annotation.annotator_id, Annotation.query_id, Annotation.sigma_index, Annotation.seconds
    ).order_by(Annotation.id)
    if project_ids is not None:
        statement = (
            statement.join(Query, Query.id == Annotation.query_id)
            .join(Round, Round.id == Query.round_id)
            .where(Round.project_id.in_(project_ids))
        )
    return [(int(a), int(q), int(s), seconds) for a, q, s, seconds in session.execute(statement)]
