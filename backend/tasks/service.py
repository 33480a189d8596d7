"""Annotation task distribution: leases of queries to annotators. Services flush, never commit.

Atomicity: on PostgreSQL `next_task` locks candidate query rows with FOR UPDATE SKIP LOCKED and
re-checks the slot with a fresh read once the lock is held (a statement that started before
another lease committed cannot see it); every change to a query's assignments happens under
that query's row lock. No request locks the round row to lease or answer: the round's state is
read after the query's lock (see `backend.tasks.repository` for the lock order). On SQLite every
transaction starts with BEGIN IMMEDIATE: one writer at a time.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.auth.service import as_utc
from backend.errors import Conflict, NotFound
from backend.models import Assignment, AssignmentState, Query, Role, Round, RoundState, User
from backend.tasks import repository
from backend.tasks.progress import RoundProgress
from backend.tasks.repository import GOLD, OPEN, Lease

# Candidates tried after losing races before a request gives up with "nothing available" (each
# loss means another annotator just took that slot, so the pool really is contended).
MAX_CANDIDATES = 50


def now_utc() -> datetime:
    return datetime.now(UTC)


def is_live(state: AssignmentState, expires_at: datetime, now: datetime) -> bool:
    """A lease that still holds its slot."""
    return state == AssignmentState.leased and as_utc(expires_at) > now


def next_task(
    session: Session,
    annotator_id: int,
    lease_seconds: int,
    project_id: int | None = None,
    exclude_task_id: int | None = None,
    *,
    annotator_locked: bool = False,
    role: Role = Role.annotator,
    draw: Callable[[], float] = random.random,
) -> int | None:
    """Id of the annotator's live lease, or of a new one on a query with a free slot; None if none is left.

    `exclude_task_id` is the task on screen: the page asks for a second lease to prefetch while the
    annotator works on it, so an annotator holds at most two live leases. The annotator's user row
    is locked first (two tabs asking at once get one lease), unless the caller already did
    (`annotator_locked`: `resolve_caller(..., lock_user=True)` does it with the token's lookup).
    Only projects whose tasks the `role` may take are searched (`repository._may_take_tasks`).

    Gold: where the round of the query found has gold queries, with probability its `gold_rate`
    (`draw()` below it) the lease is on one of them instead, if the annotator has one left
    (`_lease_gold`). Only a free slot of a selected query gets that chance, so gold is never all
    that is left to do; in rounds without gold it costs no statement.
    """
    now = now_utc()
    if not annotator_locked:
        session.connection().execute(
            select(User.id).where(User.id == annotator_id).with_for_update(key_share=True)
        ).all()
    held = repository.live_lease_id(session, annotator_id, now, project_id, exclude_task_id)
    if held is not None:
        return held
    expires_at = now + timedelta(seconds=lease_seconds)
    manager = role != Role.annotator
    tried: list[int] = []
    for skip_locked in (True, False):
        # First pass skips rows other requests hold; the second waits for them, so that a query
        # briefly locked by someone's submit is not reported as unavailable (204 must mean none left).
        while len(tried) < MAX_CANDIDATES:
            query_id = repository.lock_candidate(
                session, annotator_id, now, project_id, tried, skip_locked=skip_locked, manager=manager
            )
            if query_id is None:
                break
            tried.append(query_id)
            lease_id = _lease_if_free(session, annotator_id, query_id, now, expires_at, draw)
            if lease_id is not None:
                return lease_id
    return None


def _live_leases_of_others(leases: list[Lease], annotator_id: int, now: datetime) -> int:
    return sum(
        1
        for lease in leases
        if lease.annotator_id != annotator_id and is_live(lease.state, lease.expires_at, now)
    )


def _lease_if_free(
    session: Session,
    annotator_id: int,
    query_id: int,
    now: datetime,
    expires_at: datetime,
    draw: Callable[[], float],
) -> int | None:
    """With the query row locked: lease it to the annotator if a slot is still free (fresh read), or,
    with probability the round's gold rate, one of the round's gold queries instead."""
    query = repository.locked_query(session, query_id)
    if query.status != OPEN or query.round_state != RoundState.annotating:
        return None
    own = next((lease for lease in query.leases if lease.annotator_id == annotator_id), None)
    if own is not None and own.state in (AssignmentState.answered, AssignmentState.skipped):
        return None
    if query.answer_count + _live_leases_of_others(query.leases, annotator_id, now) >= query.required_answers:
        return None
    if query.gold_rate > 0 and draw() < query.gold_rate:
        gold = _lease_gold(session, annotator_id, query.round_id, now, expires_at)
        if gold is not None:
            return gold
    return _take(session, query_id, query.leases, own, annotator_id, now, expires_at)


def _lease_gold(
    session: Session, annotator_id: int, round_id: int, now: datetime, expires_at: datetime
) -> int | None:
    """A lease on a gold query of the round the annotator has not answered, skipped or held; None when
    none is left to them. Gold queries have no slots: any number of annotators may hold one."""
    gold_id = repository.lock_gold_candidate(session, annotator_id, round_id, now)
    if gold_id is None:
        return None
    gold = repository.locked_query(session, gold_id)
    own = next((lease for lease in gold.leases if lease.annotator_id == annotator_id), None)
    return _take(session, gold_id, gold.leases, own, annotator_id, now, expires_at)


def _take(
    session: Session,
    query_id: int,
    leases: list[Lease],
    own: Lease | None,
    annotator_id: int,
    now: datetime,
    expires_at: datetime,
) -> int:
    """Lease the locked query to the annotator: their own lapsed assignment comes back to them, or a
    new one is made; other lapsed leases are marked expired on the way."""
    lapsed = [
        lease.id
        for lease in leases
        if lease is not own
        and lease.state == AssignmentState.leased
        and not is_live(lease.state, lease.expires_at, now)
    ]
    if lapsed:  # they stopped counting already; keep states honest
        repository.update_assignments(session, lapsed, state=AssignmentState.expired)
    if own is None:
        return repository.insert_lease(session, query_id, annotator_id, now, expires_at)
    # The annotator's own expired lease: the same assignment comes back to them.
    repository.update_assignments(
        session, [own.id], state=AssignmentState.leased, leased_at=now, expires_at=expires_at
    )
    return own.id


@dataclass(frozen=True)
class TaskPage:
    """A task as its page shows it, with the round's progress."""

    view: repository.TaskView
    answered: int  # answers in the round
    needed: int  # answers the round needs


def task_page(
    session: Session, annotator_id: int, assignment_id: int, progress: RoundProgress | None = None
) -> TaskPage:
    """The annotator's task as its page shows it; other people's tasks do not exist for them (404).

    `progress`: where this process keeps rounds' sums (else they are summed now, exactly).
    """
    view = repository.task_view(session, assignment_id, annotator_id)
    if view is None:
        raise NotFound(f"task {assignment_id} not found")

    def summed() -> tuple[int, int]:
        return repository.round_progress(session, view.round_id)

    answered, needed = summed() if progress is None else progress.get(view.round_id, summed)
    return TaskPage(view, answered, needed)


def get_own_assignment(session: Session, annotator_id: int, assignment_id: int) -> Assignment:
    """The annotator's assignment; other people's tasks do not exist for them (404, not 403)."""
    assignment = repository.fresh_assignment(session, assignment_id)
    if assignment is None or assignment.annotator_id != annotator_id:
        raise NotFound(f"task {assignment_id} not found")
    return assignment


def lock_own_task(session: Session, annotator_id: int, assignment_id: int) -> tuple[Assignment, Query, Round]:
    """Lock the task's query, then read it, its round and the assignment fresh; 404 if it is not theirs."""
    located = repository.lock_task_query(session, assignment_id, annotator_id)
    if located is None:
        raise NotFound(f"task {assignment_id} not found")
    query_id, round_id = located
    query = repository.lock_query(session, query_id)  # already ours: read fresh into the session
    round_ = session.scalar(
        select(Round).where(Round.id == round_id).execution_options(populate_existing=True)
    )
    assert round_ is not None and query is not None  # foreign keys
    return get_own_assignment(session, annotator_id, assignment_id), query, round_


def slot_conflict(
    *,
    task_id: int,
    task_state: AssignmentState,
    expires_at: datetime,
    round_number: int,
    round_state: RoundState,
    query_status: str,
    answer_count: int,
    required_answers: int,
    others_live: Callable[[], int],
    now: datetime,
) -> str | None:
    """Why a lease may not be used (answered, renewed), or None: it may if live, or if expired while no
    one took its slot. `others_live` counts the other annotators' live leases of the query."""
    if round_state != RoundState.annotating:
        return f"round {round_number} is {round_state.value}: it takes no more answers"
    if task_state == AssignmentState.answered:
        return f"task {task_id} is already answered"
    if task_state == AssignmentState.skipped:
        return f"task {task_id} was skipped"
    if query_status == GOLD:  # no slots: anyone may answer it once, while the round annotates
        return None
    if query_status != OPEN:
        return f"the query of task {task_id} already has all its answers"
    if is_live(task_state, expires_at, now):
        return None
    if answer_count + others_live() >= required_answers:
        return f"the lease of task {task_id} expired and another annotator took its place"
    return None


def ensure_slot(session: Session, assignment: Assignment, query: Query, round_: Round, now: datetime) -> None:
    """`slot_conflict` for loaded rows: 409 with its reason."""

    def others_live() -> int:
        leases = [
            Lease(other.id, other.annotator_id, other.state, other.expires_at)
            for other in repository.assignments_of_query(session, query.id)
        ]
        return _live_leases_of_others(leases, assignment.annotator_id, now)

    problem = slot_conflict(
        task_id=assignment.id,
        task_state=assignment.state,
        expires_at=assignment.expires_at,
        round_number=round_.number,
        round_state=round_.state,
        query_status=query.status,
        answer_count=query.answer_count,
        required_answers=query.required_answers,
        others_live=others_live,
        now=now,
    )
    if problem is not None:
        raise Conflict(problem)


def renew(session: Session, annotator_id: int, assignment_id: int, lease_seconds: int) -> Assignment:
    """Extend the lease to lease_seconds from now (an expired lease comes back if its slot is free)."""
    now = now_utc()
    assignment, query, round_ = lock_own_task(session, annotator_id, assignment_id)
    ensure_slot(session, assignment, query, round_, now)
    if assignment.state != AssignmentState.leased:
        assignment.state = AssignmentState.leased
        assignment.leased_at = now
    assignment.expires_at = now + timedelta(seconds=lease_seconds)
    session.flush()
    return assignment


def skip(session: Session, annotator_id: int, assignment_id: int) -> Assignment:
    """Give the task back for good: the annotator will not be offered that query again."""
    assignment, _query, _round = lock_own_task(session, annotator_id, assignment_id)
    if assignment.state == AssignmentState.answered:
        raise Conflict(f"task {assignment.id} is already answered")
    assignment.state = AssignmentState.skipped
    session.flush()
    return assignment


def take_back_leases(
    session: Session, annotator_ids: Collection[int], *, project_id: int | None = None, for_good: bool = False
) -> int:
    """Return the annotators' leases (of `project_id`'s rounds only, if given) to the pool now; how many.

    Their slots are free at once. Plain (`expired`): the annotator gets the same assignment back if
    they may take the query again later (a reactivated account). `for_good` (`skipped`): they can
    neither answer nor renew it, even while its slot is free, nor be offered the query again (an
    annotator taken off a project); lapsed leases, which a free slot would revive, go too. The caller
    holds the annotators' user rows already (lock order: users, then queries, then assignments).
    """
    if not annotator_ids:
        return 0
    states = (AssignmentState.leased, AssignmentState.expired) if for_good else (AssignmentState.leased,)
    query_ids = repository.lock_queries_leased_to(session, annotator_ids, states, project_id)
    if not query_ids:
        return 0
    target = AssignmentState.skipped if for_good else AssignmentState.expired
    return repository.set_assignments_state(session, annotator_ids, query_ids, states, target)


def take_back_from_outsiders(session: Session, project_id: int) -> int:
    """After a project's members changed: the leases, live or lapsed, of those who may no longer take
    its tasks go back to the pool for good (`take_back_leases`); how many. The project's row is locked
    by the caller; the holders' user rows are locked here, before their queries."""
    states = (AssignmentState.leased, AssignmentState.expired)
    outsiders = repository.lease_holders_outside(session, project_id, states)
    if not outsiders:
        return 0
    repository.lock_users(session, outsiders)
    return take_back_leases(session, outsiders, project_id=project_id, for_good=True)
