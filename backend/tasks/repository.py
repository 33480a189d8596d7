"""Queries of annotation task distribution.

Lock order everywhere: the annotator's user row, then query rows (in id order), then the round row,
then assignments. Answers and leases lock their query only and read its round's state with a fresh
statement *after* that lock; a lead's close locks every open query of the round before it changes
the round's state. So either the close waits for an answer in flight, or the answer sees the close
(docs/access-and-tasks.md). The hot paths (`tasks/next`, submits) read plain row tuples: no ORM
objects to build, track and flush.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, fields
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    Integer,
    Select,
    and_,
    bindparam,
    exists,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.orm import InstrumentedAttribute, Session, aliased

from backend.models import (
    Annotation,
    Assignment,
    AssignmentState,
    Example,
    Project,
    ProjectMember,
    Query,
    Role,
    Round,
    RoundState,
    User,
)
from backend.models._types import UTCDateTime
from backend.projects.config import ProjectConfig

OPEN = "open"
COMPLETE = "complete"
# A gold query (backend/gold/): handed out beside a round's open queries, answered once by anyone,
# never counted towards the round. Not `open`: no statement that looks for open queries finds it.
GOLD = "gold"
# The round's own queries (the selected ones, open or complete), not its gold queries: what every
# count, sum and aggregation of a round's queries is over.
SELECTED: ColumnElement[bool] = Query.status != GOLD


def _live(now: Any) -> ColumnElement[bool]:
    """A lease that still holds its slot (`now`: a datetime, or a bound parameter)."""
    return and_(Assignment.state == AssignmentState.leased, Assignment.expires_at > now)


# The hot statements are built once, with bound parameters: building a statement and its cache key
# cost more CPU than executing it (SQLAlchemy memoises the cache key of a statement object).
_ANNOTATOR: BindParameter[int] = bindparam("annotator_id", type_=Integer)
_NOW = bindparam("now", type_=UTCDateTime)
_PROJECT: BindParameter[int] = bindparam("project_id", type_=Integer)


def _may_take_tasks(
    user_id: ColumnElement[int] | InstrumentedAttribute[int], manager: bool | ColumnElement[bool]
) -> ColumnElement[bool]:
    """The project (a `projects` row in the statement's FROM) is one whose tasks the user may take: for
    an annotator, a project open to all annotators or one that lists them; for a lead or an admin
    (`manager`), one they own or one that lists them. The one statement of this rule, used by
    `tasks/next` and by member changes.

    `manager` is a bool when the caller's role is known (tasks/next: one branch in the SQL), else a
    column expression of a joined user row. The member list is a primary-key probe, which OR skips
    for the projects open to all.
    """
    listed = exists().where(ProjectMember.project_id == Project.id, ProjectMember.user_id == user_id)
    if isinstance(manager, bool):
        return or_(Project.owner_id == user_id if manager else Project.all_annotators, listed)
    return or_(and_(manager, Project.owner_id == user_id), and_(~manager, Project.all_annotators), listed)


@cache
def _candidate_statement(
    *, by_project: bool, excluding: bool, skip_locked: bool, manager: bool = False
) -> Select[int]:
    """Open queries with a free slot that the annotator never answered, skipped or holds, oldest first,
    in projects whose tasks they may take (`_may_take_tasks`); the first of them, its row locked until
    commit.

    A free slot: answers + unexpired leases < required answers. An annotator's own expired lease
    does not hide the query from them: they may take the same assignment back.

    The project rule is evaluated once per statement, not per query row: with a project named, as
    an uncorrelated EXISTS (PostgreSQL's one-time filter: a project the caller may not take answers
    nothing without scanning a row); otherwise as the set of allowed projects (a hashed subplan,
    probed per row like the round's state).
    """
    live_leases = (
        select(func.count(Assignment.id))
        .where(Assignment.query_id == Query.id, _live(_NOW))
        .correlate(Query)
        .scalar_subquery()
    )
    own_blocking = exists().where(
        Assignment.query_id == Query.id,
        Assignment.annotator_id == _ANNOTATOR,
        or_(Assignment.state.in_([AssignmentState.answered, AssignmentState.skipped]), _live(_NOW)),
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
        .limit(1)
        .with_for_update(of=Query, skip_locked=skip_locked)
    )
    allowed = _may_take_tasks(_ANNOTATOR, manager)
    if by_project:
        statement = statement.where(
            Round.project_id == _PROJECT, exists().where(Project.id == _PROJECT, allowed)
        )
    else:
        statement = statement.where(Round.project_id.in_(select(Project.id).where(allowed)))
    if excluding:
        statement = statement.where(Query.id.not_in(bindparam("tried", expanding=True)))
    return statement


def lock_query(session: Session, query_id: int) -> Query | None:
    """The query row, locked until commit and read fresh (it may have changed while we waited)."""
    return session.scalar(
        select(Query).where(Query.id == query_id).with_for_update().execution_options(populate_existing=True)
    )


def fresh_assignment(session: Session, assignment_id: int) -> Assignment | None:
    return session.scalar(
        select(Assignment).where(Assignment.id == assignment_id).execution_options(populate_existing=True)
    )


def assignments_of_query(session: Session, query_id: int) -> list[Assignment]:
    """Every assignment of the query, read fresh (a handful: overlap plus leases that lapsed)."""
    return list(
        session.scalars(
            select(Assignment)
            .where(Assignment.query_id == query_id)
            .execution_options(populate_existing=True)
        )
    )


# ---------------------------------------------------------------- hot paths: plain rows


@cache
def _live_lease_statement(*, by_project: bool, excluding: bool) -> Select[int]:
    statement = (
        select(Assignment.id)
        .join(Query, Query.id == Assignment.query_id)
        .join(Round, Round.id == Query.round_id)
        .where(
            Assignment.annotator_id == _ANNOTATOR,
            _live(_NOW),
            Query.status.in_([OPEN, GOLD]),
            Round.state == RoundState.annotating,
        )
        .order_by(Assignment.id)
        .limit(1)
    )
    if by_project:
        statement = statement.where(Round.project_id == _PROJECT)
    if excluding:
        statement = statement.where(Assignment.id != bindparam("exclude_id"))
    return statement


def live_lease_id(
    session: Session, annotator_id: int, now: datetime, project_id: int | None, exclude_id: int | None
) -> int | None:
    """The annotator's unexpired lease on an open or gold query of an annotating round, other than
    `exclude_id`."""
    statement = _live_lease_statement(by_project=project_id is not None, excluding=exclude_id is not None)
    parameters = {
        "annotator_id": annotator_id,
        "now": now,
        "project_id": project_id,
        "exclude_id": exclude_id,
    }
    found = session.connection().execute(statement, parameters).scalar()
    return None if found is None else int(found)


def lock_candidate(
    session: Session,
    annotator_id: int,
    now: datetime,
    project_id: int | None,
    tried: Collection[int],
    *,
    skip_locked: bool,
    manager: bool = False,
) -> int | None:
    """The oldest candidate query, its row locked until commit (skipping rows others hold, or waiting);
    `manager`: the caller is a lead or an admin (see `_may_take_tasks`)."""
    statement = _candidate_statement(
        by_project=project_id is not None, excluding=bool(tried), skip_locked=skip_locked, manager=manager
    )
    parameters = {"annotator_id": annotator_id, "now": now, "project_id": project_id, "tried": list(tried)}
    found = session.connection().execute(statement, parameters).scalar()
    return None if found is None else int(found)


@dataclass(frozen=True)
class Lease:
    """One assignment of a query, as read under the query's lock."""

    id: int
    annotator_id: int
    state: AssignmentState
    expires_at: datetime


@dataclass(frozen=True)
class LockedQuery:
    """A query whose row this transaction holds: counters, its round's state, its assignments."""

    status: str
    answer_count: int
    required_answers: int
    round_id: int
    round_state: RoundState
    gold_rate: float  # the round's share of gold tasks (0: none)
    leases: list[Lease]


_LOCKED_QUERY = (
    select(
        Query.status,
        Query.answer_count,
        Query.required_answers,
        Round.id,
        Round.state,
        Round.gold_rate,
        Assignment.id,
        Assignment.annotator_id,
        Assignment.state,
        Assignment.expires_at,
    )
    .join(Round, Round.id == Query.round_id)
    .outerjoin(Assignment, Assignment.query_id == Query.id)
    .where(Query.id == bindparam("query_id"))
)


def locked_query(session: Session, query_id: int) -> LockedQuery:
    """The locked query as it is now, with its round's state and its assignments, in one fresh
    statement (one that started before another lease committed could not see that lease)."""
    rows = session.connection().execute(_LOCKED_QUERY, {"query_id": query_id}).all()
    first = rows[0]
    return LockedQuery(
        status=str(first[0]),
        answer_count=int(first[1]),
        required_answers=int(first[2]),
        round_id=int(first[3]),
        round_state=RoundState(first[4]),
        gold_rate=float(first[5] or 0.0),
        leases=[
            Lease(int(row[6]), int(row[7]), AssignmentState(row[8]), row[9])
            for row in rows
            if row[6] is not None
        ],
    )


_GOLD_CANDIDATE = (
    select(Query.id)
    .where(
        Query.round_id == bindparam("round_id"),
        Query.status == GOLD,
        ~exists().where(
            Assignment.query_id == Query.id,
            Assignment.annotator_id == _ANNOTATOR,
            or_(Assignment.state.in_([AssignmentState.answered, AssignmentState.skipped]), _live(_NOW)),
        ),
    )
    .order_by(Query.id)
    .limit(1)
    .with_for_update(of=Query, skip_locked=True)
)


def lock_gold_candidate(session: Session, annotator_id: int, round_id: int, now: datetime) -> int | None:
    """A gold query of the round that the annotator never answered, skipped or holds, its row locked
    until commit; None when there is none (or others hold them all this instant)."""
    parameters = {"round_id": round_id, "annotator_id": annotator_id, "now": now}
    found = session.connection().execute(_GOLD_CANDIDATE, parameters).scalar()
    return None if found is None else int(found)


_INSERT_LEASE = insert(Assignment).returning(Assignment.id)


def insert_lease(
    session: Session, query_id: int, annotator_id: int, now: datetime, expires_at: datetime
) -> int:
    parameters = {
        "query_id": query_id,
        "annotator_id": annotator_id,
        "state": AssignmentState.leased,
        "leased_at": now,
        "expires_at": expires_at,
    }
    return int(session.connection().execute(_INSERT_LEASE, parameters).scalar_one())


_UPDATE_ASSIGNMENTS = update(Assignment).where(Assignment.id.in_(bindparam("ids", expanding=True)))


def update_assignments(session: Session, assignment_ids: Collection[int], **values: Any) -> None:
    """Set columns of these assignments (their query's row must be locked by this transaction)."""
    session.connection().execute(_UPDATE_ASSIGNMENTS, {"ids": list(assignment_ids), **values})


_LOCK_TASK_QUERY = (
    select(Query.id, Query.round_id)
    .join(Assignment, Assignment.query_id == Query.id)
    .where(Assignment.id == bindparam("assignment_id"), Assignment.annotator_id == _ANNOTATOR)
    .with_for_update(of=Query)
)


def lock_task_query(session: Session, assignment_id: int, annotator_id: int) -> tuple[int, int] | None:
    """Lock the query of the annotator's assignment until commit: (query id, round id), or None when
    the assignment does not exist or is someone else's. Ids only: the rest of the row may be stale."""
    parameters = {"assignment_id": assignment_id, "annotator_id": annotator_id}
    row = session.connection().execute(_LOCK_TASK_QUERY, parameters).one_or_none()
    return None if row is None else (int(row[0]), int(row[1]))


@dataclass(frozen=True)
class TaskView:
    """What a task's page shows, as plain values."""

    task_id: int
    expires_at: datetime
    query_id: int
    sigma_index_before: int
    example_id: int
    label: int
    round_id: int
    round_number: int
    project_id: int
    project_name: str
    class_names: list[str] | None
    image_shape: list[int] | None
    config: ProjectConfig
    mine: int  # this annotator's answers in the round


def _task_view_statement() -> Select[*tuple[Any, ...]]:
    round_queries = aliased(Query)
    mine = (
        select(func.count(Annotation.id))
        .join(round_queries, round_queries.id == Annotation.query_id)
        .where(round_queries.round_id == Query.round_id, Annotation.annotator_id == _ANNOTATOR)
        .correlate(Query)
        .scalar_subquery()
    )
    return (
        select(
            Assignment.id,
            Assignment.expires_at,
            Query.id,
            Query.sigma_index_before,
            Example.id,
            Example.label,
            Round.id,
            Round.number,
            Project.id,
            Project.name,
            Project.class_names,
            Project.image_shape,
            Project.config,
            mine,
        )
        .join(Query, Query.id == Assignment.query_id)
        .join(Example, Example.id == Query.example_id)
        .join(Round, Round.id == Query.round_id)
        .join(Project, Project.id == Round.project_id)
        .where(Assignment.id == bindparam("assignment_id"), Assignment.annotator_id == _ANNOTATOR)
    )


_TASK_VIEW = _task_view_statement()
_TASK_VIEW_FIELDS = [field.name for field in fields(TaskView)]


def task_view(session: Session, assignment_id: int, annotator_id: int) -> TaskView | None:
    """The annotator's task with its query, example, round, project and their answers in the round, in
    one statement; None when the task does not exist or is someone else's."""
    parameters = {"assignment_id": assignment_id, "annotator_id": annotator_id}
    row = session.connection().execute(_TASK_VIEW, parameters).one_or_none()
    if row is None:
        return None
    view: dict[str, Any] = dict(zip(_TASK_VIEW_FIELDS, row, strict=True))
    view["mine"] = int(view["mine"])
    return TaskView(**view)


_ROUND_PROGRESS = select(
    func.coalesce(func.sum(Query.answer_count), 0), func.coalesce(func.sum(Query.required_answers), 0)
).where(Query.round_id == bindparam("round_id"), SELECTED)


def round_progress(session: Session, round_id: int) -> tuple[int, int]:
    """(answers given, answers needed) in the round: a scan of its queries (O(queries): ~3 ms of
    PostgreSQL's CPU at 20,000), hence `backend.tasks.progress.RoundProgress`."""
    answered, needed = session.connection().execute(_ROUND_PROGRESS, {"round_id": round_id}).one()
    return int(answered), int(needed)


# ---------------------------------------------------------------- leases taken back (accounts, members)


def lock_queries_leased_to(
    session: Session,
    annotator_ids: Collection[int],
    states: Collection[AssignmentState],
    project_id: int | None,
) -> list[int]:
    """Lock (FOR UPDATE, in id order) the queries on which these annotators hold an assignment in one of
    `states` (of `project_id`'s rounds only, if given); their ids. The annotators' user rows come first."""
    statement = (
        select(Query.id)
        .join(Assignment, Assignment.query_id == Query.id)
        .where(Assignment.annotator_id.in_(list(annotator_ids)), Assignment.state.in_(list(states)))
        .order_by(Query.id)
        .with_for_update(of=Query)  # PostgreSQL allows no DISTINCT here: duplicates are dropped below
    )
    if project_id is not None:
        statement = statement.join(Round, Round.id == Query.round_id).where(Round.project_id == project_id)
    return list(dict.fromkeys(int(query_id) for query_id in session.scalars(statement)))


def lease_holders_outside(
    session: Session, project_id: int, states: Collection[AssignmentState]
) -> list[int]:
    """Users holding an assignment in one of `states` on the project's queries who may not take its
    tasks (`_may_take_tasks`, by each one's role), in id order."""
    statement = (
        select(Assignment.annotator_id)
        .join(Query, Query.id == Assignment.query_id)
        .join(Round, Round.id == Query.round_id)
        .join(Project, Project.id == Round.project_id)
        .join(User, User.id == Assignment.annotator_id)
        .where(
            Project.id == project_id,
            Assignment.state.in_(list(states)),
            ~_may_take_tasks(User.id, User.role != Role.annotator),
        )
        .group_by(Assignment.annotator_id)
        .order_by(Assignment.annotator_id)
    )
    return [int(user_id) for user_id in session.scalars(statement)]


def lock_users(session: Session, user_ids: Collection[int]) -> None:
    """Lock these users' rows (FOR NO KEY UPDATE, in id order): their `tasks/next` wait for our commit."""
    statement = (
        select(User.id).where(User.id.in_(list(user_ids))).order_by(User.id).with_for_update(key_share=True)
    )
    session.execute(statement).all()


def set_assignments_state(
    session: Session,
    annotator_ids: Collection[int],
    query_ids: Collection[int],
    states: Collection[AssignmentState],
    state: AssignmentState,
) -> int:
    """Move these annotators' assignments of these (locked) queries from one of `states` to `state`."""
    statement = (
        update(Assignment)
        .where(
            Assignment.annotator_id.in_(list(annotator_ids)),
            Assignment.query_id.in_(list(query_ids)),
            Assignment.state.in_(list(states)),
        )
        .values(state=state)
        .execution_options(synchronize_session=False)
    )
    return int(session.execute(statement).rowcount)  # type: ignore[attr-defined]
