"""Annotation task distribution: leases of queries to annotators. Services flush, never commit.

Atomicity: on PostgreSQL `next_task` locks candidate query rows with FOR UPDATE SKIP LOCKED and
re-checks the slot with a fresh read once the lock is held (a statement that started before
another lease committed cannot see it); every change to a query's assignments happens under
that query's row lock. On SQLite every transaction starts with BEGIN IMMEDIATE: one writer at a time.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session

from backend.auth.service import as_utc
from backend.errors import Conflict, NotFound
from backend.models import Assignment, AssignmentState, Query, Round, RoundState, User
from backend.tasks import repository
from backend.tasks.repository import OPEN

# Candidates tried after losing races before a request gives up with "nothing available" (each
# loss means another annotator just took that slot, so the pool really is contended).
MAX_CANDIDATES = 50


def now_utc() -> datetime:
    return datetime.now(UTC)


def is_live(assignment: Assignment, now: datetime) -> bool:
    return assignment.state == AssignmentState.leased and as_utc(assignment.expires_at) > now


def next_task(
    session: Session,
    annotator: User,
    lease_seconds: int,
    project_id: int | None = None,
    exclude_task_id: int | None = None,
) -> Assignment | None:
    """The annotator's current lease, or a new one on a query with a free slot; None if nothing is left.

    `exclude_task_id` is the task on screen: the page asks for a second lease to prefetch while the
    annotator works on it, so an annotator holds at most two live leases.
    """
    now = now_utc()
    repository.lock_annotator(session, annotator.id)
    held = repository.live_lease(session, annotator.id, now, project_id, exclude_task_id)
    if held is not None:
        return held
    expires_at = now + timedelta(seconds=lease_seconds)
    tried: list[int] = []
    for skip_locked in (True, False):
        # First pass skips rows other requests hold; the second waits for them, so that a query
        # briefly locked by someone's submit is not reported as unavailable (204 must mean none left).
        while len(tried) < MAX_CANDIDATES:
            statement = repository.candidate_queries(annotator.id, now, project_id, tried).limit(1)
            statement = statement.with_for_update(of=Query, skip_locked=skip_locked)
            query_id = session.scalar(statement)
            if query_id is None:
                break
            tried.append(query_id)
            assignment = _lease_if_free(session, annotator, query_id, now, expires_at)
            if assignment is not None:
                return assignment
    return None


def _live_leases_of_others(assignments: Iterable[Assignment], annotator_id: int, now: datetime) -> int:
    return sum(
        1
        for assignment in assignments
        if assignment.annotator_id != annotator_id and is_live(assignment, now)
    )


def _lease_if_free(
    session: Session, annotator: User, query_id: int, now: datetime, expires_at: datetime
) -> Assignment | None:
    """With the query row locked: lease it to the annotator if a slot is still free (fresh read)."""
    locked = repository.lock_query_with_round_state(session, query_id)
    if locked is None:
        return None
    query, round_state = locked
    if query.status != OPEN or round_state != RoundState.annotating:
        return None
    assignments = repository.assignments_of_query(session, query_id)
    for assignment in assignments:
        if assignment.state == AssignmentState.leased and not is_live(assignment, now):
            assignment.state = AssignmentState.expired  # it stopped counting already; keep states honest
    own = next((assignment for assignment in assignments if assignment.annotator_id == annotator.id), None)
    if own is not None and own.state in (AssignmentState.answered, AssignmentState.skipped):
        return None
    if query.answer_count + _live_leases_of_others(assignments, annotator.id, now) >= query.required_answers:
        return None
    if own is None:
        own = Assignment(query_id=query_id, annotator_id=annotator.id, expires_at=expires_at, leased_at=now)
        session.add(own)
    else:  # the annotator's own expired lease: the same assignment comes back to them
        own.state = AssignmentState.leased
        own.leased_at = now
        own.expires_at = expires_at
    session.flush()
    return own


def get_own_assignment(session: Session, annotator: User, assignment_id: int) -> Assignment:
    """The annotator's assignment; other people's tasks do not exist for them (404, not 403)."""
    assignment = repository.fresh_assignment(session, assignment_id)
    if assignment is None or assignment.annotator_id != annotator.id:
        raise NotFound(f"task {assignment_id} not found")
    return assignment


def lock_own_task(session: Session, annotator: User, assignment_id: int) -> tuple[Assignment, Query, Round]:
    """Lock the task's round (shared) and query, then re-read the assignment; 404 if it is not theirs."""
    located = repository.locate_own_assignment(session, assignment_id, annotator.id)
    if located is None:
        raise NotFound(f"task {assignment_id} not found")
    query_id, round_id = located
    round_ = repository.lock_round(session, round_id, exclusive=False)
    query = repository.lock_query(session, query_id)
    assert round_ is not None and query is not None  # foreign keys
    assignment = get_own_assignment(session, annotator, assignment_id)
    return assignment, query, round_


def ensure_slot(session: Session, assignment: Assignment, query: Query, round_: Round, now: datetime) -> None:
    """A lease may be used (answered, renewed) if live, or if expired while no one took its slot; else 409."""
    if round_.state != RoundState.annotating:
        raise Conflict(f"round {round_.number} is {round_.state.value}: it takes no more answers")
    if assignment.state == AssignmentState.answered:
        raise Conflict(f"task {assignment.id} is already answered")
    if assignment.state == AssignmentState.skipped:
        raise Conflict(f"task {assignment.id} was skipped")
    if query.status != OPEN:
        raise Conflict(f"the query of task {assignment.id} already has all its answers")
    if is_live(assignment, now):
        return
    others = _live_leases_of_others(
        repository.assignments_of_query(session, query.id), assignment.annotator_id, now
    )
    if query.answer_count + others >= query.required_answers:
        raise Conflict(f"the lease of task {assignment.id} expired and another annotator took its place")


def renew(session: Session, annotator: User, assignment_id: int, lease_seconds: int) -> Assignment:
    """Extend the lease to lease_seconds from now (an expired lease comes back if its slot is free)."""
    now = now_utc()
    assignment, query, round_ = lock_own_task(session, annotator, assignment_id)
    ensure_slot(session, assignment, query, round_, now)
    if assignment.state != AssignmentState.leased:
        assignment.state = AssignmentState.leased
        assignment.leased_at = now
    assignment.expires_at = now + timedelta(seconds=lease_seconds)
    session.flush()
    return assignment


def skip(session: Session, annotator: User, assignment_id: int) -> Assignment:
    """Give the task back for good: the annotator will not be offered that query again."""
    assignment, _query, _round = lock_own_task(session, annotator, assignment_id)
    if assignment.state == AssignmentState.answered:
        raise Conflict(f"task {assignment.id} is already answered")
    assignment.state = AssignmentState.skipped
    session.flush()
    return assignment
