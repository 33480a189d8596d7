"""Queries of annotation task distribution. Lock order everywhere: round, then query, then assignments."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, Select, and_, exists, func, or_, select
from sqlalchemy.orm import Session, aliased

from backend.models import (
    Annotation,
    Assignment,
    AssignmentState,
    Example,
    Project,
    Query,
    Round,
    RoundState,
    User,
)

OPEN = "open"
COMPLETE = "complete"


def _live(now: datetime) -> ColumnElement[bool]:
    """A lease that still holds its slot."""
    return and_(Assignment.state == AssignmentState.leased, Assignment.expires_at > now)


def lock_annotator(session: Session, annotator_id: int) -> None:
    """Serialise one annotator's task requests (two tabs asking at once get one lease, not two).

    FOR NO KEY UPDATE: it does not block the foreign-key checks of the annotator's own inserts.
    """
    session.execute(select(User.id).where(User.id == annotator_id).with_for_update(key_share=True))


def live_lease(
    session: Session, annotator_id: int, now: datetime, project_id: int | None, exclude_id: int | None = None
) -> Assignment | None:
    """The annotator's unexpired lease on an open query of an annotating round, other than `exclude_id`."""
    statement = (
        select(Assignment)
        .join(Query, Query.id == Assignment.query_id)
        .join(Round, Round.id == Query.round_id)
        .where(
            Assignment.annotator_id == annotator_id,
            _live(now),
            Query.status == OPEN,
            Round.state == RoundState.annotating,
        )
        .order_by(Assignment.id)
        .limit(1)
    )
    if project_id is not None:
        statement = statement.where(Round.project_id == project_id)
    if exclude_id is not None:
        statement = statement.where(Assignment.id != exclude_id)
    return session.scalar(statement)


def candidate_queries(
    annotator_id: int, now: datetime, project_id: int | None, exclude: Collection[int]
) -> Select[int]:
    """Open queries with a free slot that this annotator never answered, skipped or holds, oldest first.

    A free slot: answers + unexpired leases < required answers. An annotator's own expired lease
    does not hide the query from them: they may take the same assignment back.
    """
    live_leases = (
        select(func.count(Assignment.id))
        .where(Assignment.query_id == Query.id, _live(now))
        .correlate(Query)
        .scalar_subquery()
    )
    own_blocking = exists().where(
        Assignment.query_id == Query.id,
        Assignment.annotator_id == annotator_id,
        or_(
            Assignment.state.in_([AssignmentState.answered, AssignmentState.skipped]),
            _live(now),
        ),
    )
    statement = (
        select(Query.id)
        .join(Round, Round.id == Query.round_id)
        .where(
            Round.state == RoundState.annotating,
            Query.status == OPEN,
            ~own_blocking,
            Query.answer_count + live_leases < Query.required_answers,
        )
        .order_by(Query.id)
    )
    if project_id is not None:
        statement = statement.where(Round.project_id == project_id)
    if exclude:
        statement = statement.where(Query.id.not_in(exclude))
    return statement


def lock_query(session: Session, query_id: int) -> Query | None:
    """The query row, locked until commit and read fresh (it may have changed while we waited)."""
    return session.scalar(
        select(Query).where(Query.id == query_id).with_for_update().execution_options(populate_existing=True)
    )


def lock_query_with_round_state(session: Session, query_id: int) -> tuple[Query, RoundState] | None:
    """The query row, locked until commit and read fresh, with its round's state, in one statement."""
    round_state = select(Round.state).where(Round.id == Query.round_id).scalar_subquery()
    row = session.execute(
        select(Query, round_state)
        .where(Query.id == query_id)
        .with_for_update(of=Query)
        .execution_options(populate_existing=True)
    ).one_or_none()
    return None if row is None else (row[0], RoundState(row[1]))


def lock_round(session: Session, round_id: int, *, exclusive: bool) -> Round | None:
    """The round row, read fresh. Shared (FOR KEY SHARE) while writing answers, so a close waits for them;
    exclusive (FOR NO KEY UPDATE) to decide whether the round is complete, one writer at a time."""
    statement = select(Round).where(Round.id == round_id).execution_options(populate_existing=True)
    if exclusive:
        statement = statement.with_for_update(key_share=True)
    else:
        statement = statement.with_for_update(read=True, key_share=True)
    return session.scalar(statement)


def fresh_assignment(session: Session, assignment_id: int) -> Assignment | None:
    return session.scalar(
        select(Assignment).where(Assignment.id == assignment_id).execution_options(populate_existing=True)
    )


def locate_own_assignment(session: Session, assignment_id: int, annotator_id: int) -> tuple[int, int] | None:
    """(query id, round id) of the annotator's assignment; None if it does not exist or is someone else's."""
    row = session.execute(
        select(Assignment.query_id, Query.round_id)
        .join(Query, Query.id == Assignment.query_id)
        .where(Assignment.id == assignment_id, Assignment.annotator_id == annotator_id)
    ).one_or_none()
    return None if row is None else (int(row[0]), int(row[1]))


@dataclass(frozen=True)
class TaskRows:
    query: Query
    example: Example
    round_: Round
    project: Project
    answered: int  # answers in the round
    needed: int  # answers the round needs
    mine: int  # this annotator's answers in the round


def task_rows(session: Session, query_id: int, annotator_id: int) -> TaskRows:
    """The query with its example, round, project and the round's progress, in one statement."""
    round_queries = aliased(Query)
    answered, needed = (
        select(func.coalesce(func.sum(column), 0))
        .where(round_queries.round_id == Query.round_id)
        .correlate(Query)
        .scalar_subquery()
        for column in (round_queries.answer_count, round_queries.required_answers)
    )
    mine = (
        select(func.count(Annotation.id))
        .join(round_queries, round_queries.id == Annotation.query_id)
        .where(round_queries.round_id == Query.round_id, Annotation.annotator_id == annotator_id)
        .correlate(Query)
        .scalar_subquery()
    )
    row = session.execute(
        select(Query, Example, Round, Project, answered, needed, mine)
        .join(Example, Example.id == Query.example_id)
        .join(Round, Round.id == Query.round_id)
        .join(Project, Project.id == Round.project_id)
        .where(Query.id == query_id)
    ).one()
    return TaskRows(row[0], row[1], row[2], row[3], int(row[4]), int(row[5]), int(row[6]))


def assignments_of_query(session: Session, query_id: int) -> list[Assignment]:
    """Every assignment of the query, read fresh (a handful: overlap plus leases that lapsed)."""
    return list(
        session.scalars(
            select(Assignment)
            .where(Assignment.query_id == query_id)
            .execution_options(populate_existing=True)
        )
    )


def open_query_count(session: Session, round_id: int) -> int:
    return int(
        session.scalar(
            select(func.count(Query.id)).where(Query.round_id == round_id, Query.status != COMPLETE)
        )
        or 0
    )
