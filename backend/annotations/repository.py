"""Queries over answers."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, and_, bindparam, func, insert, select, update
from sqlalchemy.orm import Session, aliased

from backend.auth.service import as_utc
from backend.models import Annotation, Assignment, AssignmentState, Project, Query, Round, RoundState
from backend.models._types import UTCDateTime
from backend.projects.config import ProjectConfig
from backend.tasks.repository import SELECTED


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
    """(annotator_id, query_id, sigma_index, seconds) of every answer to a round's own queries (not
    gold: those measure the annotator, `backend.gold`), optionally within some projects."""
    statement = (
        select(Annotation.annotator_id, Annotation.query_id, Annotation.sigma_index, Annotation.seconds)
        .join(Query, Query.id == Annotation.query_id)
        .where(SELECTED)
        .order_by(Annotation.id)
    )
    if project_ids is not None:
        statement = statement.join(Round, Round.id == Query.round_id).where(Round.project_id.in_(project_ids))
    return [(int(a), int(q), int(s), seconds) for a, q, s, seconds in session.execute(statement)]


# ---------------------------------------------------------------- the submit's hot path: plain rows


@dataclass(frozen=True)
class StoredAnswer:
    """An answer as the API shows it."""

    id: int
    task_id: int
    query_id: int
    sigma_index: int
    seconds: float | None
    created_at: datetime


@dataclass(frozen=True)
class AnswerContext:
    """What deciding a submit needs, read fresh once the task's query is locked."""

    task_state: AssignmentState
    expires_at: datetime
    query_status: str
    answer_count: int
    required_answers: int
    round_number: int
    round_state: RoundState
    project_config: ProjectConfig
    others_live: int  # other annotators' unexpired leases of the query
    earlier: StoredAnswer | None  # the annotator's answer already stored under this Idempotency-Key


def _answer_context_statement() -> Select[*tuple[Any, ...]]:
    others = aliased(Assignment)
    others_live = (
        select(func.count(others.id))
        .where(
            others.query_id == Assignment.query_id,
            others.annotator_id != bindparam("annotator_id"),
            others.state == AssignmentState.leased,
            others.expires_at > bindparam("now", type_=UTCDateTime),
        )
        .correlate(Assignment)
        .scalar_subquery()
    )
    earlier = aliased(Annotation)
    return (
        select(
            Assignment.state,
            Assignment.expires_at,
            Query.status,
            Query.answer_count,
            Query.required_answers,
            Round.number,
            Round.state,
            Project.config,
            others_live,
            earlier.id,
            earlier.assignment_id,
            earlier.query_id,
            earlier.sigma_index,
            earlier.seconds,
            earlier.created_at,
        )
        .join(Query, Query.id == Assignment.query_id)
        .join(Round, Round.id == Query.round_id)
        .join(Project, Project.id == Round.project_id)
        .outerjoin(
            earlier,
            and_(
                earlier.annotator_id == bindparam("annotator_id"),
                earlier.idempotency_key == bindparam("idempotency_key"),
            ),
        )
        .where(Assignment.id == bindparam("assignment_id"))
    )


# Built once: constructing a statement costs more CPU than running it (see backend/tasks/repository.py).
_ANSWER_CONTEXT = _answer_context_statement()
_INSERT_ANSWER = insert(Annotation).returning(Annotation.id)
_MARK_ANSWERED = (
    update(Assignment)
    .where(Assignment.id == bindparam("assignment_id"))
    .values(state=AssignmentState.answered)
)
_COUNT_ANSWER = (
    update(Query).where(Query.id == bindparam("query_id")).values(answer_count=Query.answer_count + 1)
)
_COUNT_ANSWER_ASK_ONE_MORE = _COUNT_ANSWER.values(required_answers=Query.required_answers + 1)


def answer_context(
    session: Session, assignment_id: int, annotator_id: int, idempotency_key: str, now: datetime
) -> AnswerContext:
    """The assignment, its query, round and project, the query's other live leases and any answer
    already given under this key, in one statement (the query's row must be locked by the caller)."""
    parameters = {
        "assignment_id": assignment_id,
        "annotator_id": annotator_id,
        "idempotency_key": idempotency_key,
        "now": now,
    }
    row = session.connection().execute(_ANSWER_CONTEXT, parameters).one()
    stored = None
    if row[9] is not None:
        stored = StoredAnswer(int(row[9]), int(row[10]), int(row[11]), int(row[12]), row[13], as_utc(row[14]))
    return AnswerContext(
        task_state=AssignmentState(row[0]),
        expires_at=row[1],
        query_status=str(row[2]),
        answer_count=int(row[3]),
        required_answers=int(row[4]),
        round_number=int(row[5]),
        round_state=RoundState(row[6]),
        project_config=row[7],
        others_live=int(row[8]),
        earlier=stored,
    )


def insert_answer(
    session: Session,
    query_id: int,
    annotator_id: int,
    assignment_id: int,
    sigma_index: int,
    seconds: float | None,
    idempotency_key: str,
    created_at: datetime,
) -> int:
    parameters = {
        "query_id": query_id,
        "annotator_id": annotator_id,
        "assignment_id": assignment_id,
        "sigma_index": sigma_index,
        "seconds": seconds,
        "idempotency_key": idempotency_key,
        "created_at": created_at,
    }
    return int(session.connection().execute(_INSERT_ANSWER, parameters).scalar_one())


def mark_answered(session: Session, assignment_id: int) -> None:
    session.connection().execute(_MARK_ANSWERED, {"assignment_id": assignment_id})


def count_answer(session: Session, query_id: int, *, ask_one_more: bool = False, **values: Any) -> None:
    """One more answer on the query (an atomic increment); `ask_one_more` raises the answers it needs,
    `values` sets columns (status and result, when it is complete)."""
    statement = _COUNT_ANSWER_ASK_ONE_MORE if ask_one_more else _COUNT_ANSWER
    session.connection().execute(statement, {"query_id": query_id, **values})
