"""A round's lifecycle: the transitions it may make, what each records, and which job runs next.

    scoring -> annotating -> aggregating -> training -> evaluating -> published
    any of the five steps -> failed -> (retry) the step that failed

Every change of a round's state goes through `move` (or `close_if_complete`, its one conditional
UPDATE for the answer path); an illegal transition raises. `move` stamps the step's time, resets
the progress and sends the jobs of the new state (`next_jobs`, after commit). Launch, retry, resume
after a restart and every job's hand-over use these; worker jobs assign no state themselves.
Every change of state also adds the time spent in the state left to the round's timeline
(`_enter`, the one helper; backend/rounds/timeline.py).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

from sqlalchemy import bindparam, exists, select, update
from sqlalchemy.orm import Session

from aqpl import job_names
from backend.errors import Conflict
from backend.models import Assignment, AssignmentState, Project, Query, Round, RoundState
from backend.models._types import utcnow
from backend.queue import enqueue_after_commit
from backend.rounds import repository, timeline
from backend.tasks.repository import OPEN
from backend.webhooks.events import emit_round

# The states in which a job works on the round (retry resumes at one of them).
JOB_STATES: Final = frozenset(
    {RoundState.scoring, RoundState.aggregating, RoundState.training, RoundState.evaluating}
)
TRANSITIONS: Final[dict[RoundState, frozenset[RoundState]]] = {
    RoundState.scoring: frozenset({RoundState.annotating, RoundState.failed}),
    RoundState.annotating: frozenset({RoundState.aggregating, RoundState.failed}),
    RoundState.aggregating: frozenset({RoundState.training, RoundState.failed}),
    RoundState.training: frozenset({RoundState.evaluating, RoundState.failed}),
    RoundState.evaluating: frozenset({RoundState.published, RoundState.failed}),
    RoundState.published: frozenset(),
    RoundState.failed: JOB_STATES,
}


class IllegalTransition(Conflict):
    """A transition the table does not allow (a 409 when it reaches the API)."""


Job = tuple[str, tuple[int, ...]]


def shard_ranges(num_train: int, shard_size: int) -> list[tuple[int, int]]:
    """[start, stop) example ranges of the scoring jobs, covering 0..num_train."""
    shard_size = max(1, shard_size)
    return [(start, min(start + shard_size, num_train)) for start in range(0, num_train, shard_size)]


def next_jobs(round_: Round, project: Project) -> list[Job]:
    """The jobs that carry the round on from its state (none while it waits for people, or at the end)."""
    if round_.state == RoundState.scoring:
        return [
            (job_names.SCORE, (round_.id, start, stop))
            for start, stop in shard_ranges(project.num_train, project.config.score_shard_size)
        ]
    if round_.state == RoundState.aggregating:
        return [(job_names.AGGREGATE, (round_.id,))]
    if round_.state == RoundState.training:
        return [(job_names.FINETUNE, (round_.id,))]
    if round_.state == RoundState.evaluating:
        return [(job_names.EVALUATE, (round_.project_id, round_.number))]
    return []


def send_next_jobs(session: Session, round_: Round, project: Project | None = None) -> int:
    """Send the round's next jobs once this transaction commits; returns how many."""
    if project is None:
        project = session.get(Project, round_.project_id)
        assert project is not None  # foreign key
    jobs = next_jobs(round_, project)
    for name, args in jobs:
        enqueue_after_commit(session, name, *args)
    return len(jobs)


def record_progress(round_: Round, done: int, total: int, **extra: Any) -> None:
    """The one shape of a round's progress: the step it is in, done of total (and job bookkeeping)."""
    round_.progress = {"step": round_.state.value, "done": done, "total": total, **extra}


def open_round(session: Session, project: Project, number: int) -> Round:
    """A new round in `scoring`, its scoring jobs sent after commit."""
    round_ = Round(project_id=project.id, number=number, state=RoundState.scoring)
    record_progress(round_, 0, project.num_train)
    session.add(round_)
    session.flush()
    send_next_jobs(session, round_, project)
    return round_


def move(session: Session, round_: Round, to: RoundState, *, total: int = 1, done: int = 0) -> None:
    """round_ (locked by the caller) -> `to`: checked against the table, stamped, progress reset,
    the next jobs sent after commit. Failing is `fail`, with its error."""
    if to == RoundState.failed:
        raise IllegalTransition("a round fails through lifecycle.fail, with its error")
    _check(round_, to)
    if round_.state == RoundState.failed:
        round_.failed_state = None
        round_.error = None
    now = utcnow()
    _enter(round_, to, now)
    if to == RoundState.annotating:
        round_.annotating_at = now
    elif to == RoundState.aggregating:
        round_.closed_at = now
    if to == RoundState.published:
        round_.published_at = now
        round_.progress = None
    else:
        record_progress(round_, done, total)
    session.flush()
    if to == RoundState.aggregating:
        _expire_leases(session, round_.id)
    send_next_jobs(session, round_)
    emit_round(session, round_)  # the round.annotating / round.published webhooks, sent after commit


def fail(session: Session, round_: Round, error: str) -> None:
    """round_ (locked) -> failed, remembering the step that failed for retry; progress stays as it was.
    The round.failed webhooks are sent after commit."""
    _check(round_, RoundState.failed)
    round_.failed_state = round_.state
    round_.error = error
    _enter(round_, RoundState.failed, utcnow())
    session.flush()
    emit_round(session, round_)


def resume_state(round_: Round) -> RoundState:
    """Where retry takes a failed round: the step that failed (annotation restarts with scoring)."""
    step = round_.failed_state or RoundState.scoring
    return step if step in JOB_STATES else RoundState.scoring


def locked_in(session: Session, round_id: int, state: RoundState) -> Round | None:
    """The round, its row locked, if it is in `state`; None otherwise (a redelivered job's work is done)."""
    round_ = repository.get(session, round_id, for_update=True)
    return round_ if round_ is not None and round_.state == state else None


def resend_interrupted(session: Session) -> int:
    """Send again the jobs of every round mid-way through a job's step; returns how many were sent.
    Safe at any time: each job checks the state first, so one already queued does its work once."""
    rounds = session.scalars(select(Round).where(Round.state.in_(list(JOB_STATES))).order_by(Round.id))
    return sum(send_next_jobs(session, round_) for round_ in rounds)


# Built once (it runs after every answer that completes a query): the open-query probe walks
# ix_queries_round_open, where open queries (fewer answers) come first.
_CLOSE_IF_COMPLETE = (
    update(Round)
    .where(
        Round.id == bindparam("round_id"),
        Round.state == RoundState.annotating,
        ~exists().where(Query.round_id == Round.id, Query.status == OPEN),
    )
    .values(state=RoundState.aggregating)
    .returning(Round.id)
)


def close_if_complete(session: Session, round_id: int) -> bool:
    """annotating -> aggregating if no query of the round is still open; True when this call closed it.

    The answer path's form of `move`: one conditional UPDATE decides, so when several callers see the
    last answer at once exactly one closes (the others wait for its row lock, then find the round no
    longer annotating), and no answer waits on the round's row.
    """
    now = utcnow()
    parameters = {
        "round_id": round_id,
        "closed_at": now,
        "progress": {"step": RoundState.aggregating.value, "done": 0, "total": 1},
    }
    closed = session.connection().execute(_CLOSE_IF_COMPLETE, parameters).scalar()
    if closed is None:
        return False
    _left_annotating(session, round_id, now)
    _expire_leases(session, round_id)
    enqueue_after_commit(session, job_names.AGGREGATE, round_id)
    return True


def _enter(round_: Round, to: RoundState, now: datetime) -> None:
    """The timeline's one helper: the time since the round entered its state is added to that
    state's seconds, and the round enters `to` at `now` (backend/rounds/timeline.py)."""
    round_.state_seconds = timeline.after_leaving(
        round_.state_seconds, round_.state, round_.state_entered_at, now
    )
    round_.state_entered_at = now
    round_.state = to


def _left_annotating(session: Session, round_id: int, now: datetime) -> None:
    """`_enter`'s bookkeeping for close_if_complete's UPDATE, which has just locked the row."""
    state_seconds, entered_at = session.execute(
        select(Round.state_seconds, Round.state_entered_at).where(Round.id == round_id)
    ).one()
    session.execute(
        update(Round)
        .where(Round.id == round_id)
        .values(
            state_seconds=timeline.after_leaving(state_seconds, RoundState.annotating, entered_at, now),
            state_entered_at=now,
        )
        .execution_options(synchronize_session=False)
    )


def _check(round_: Round, to: RoundState) -> None:
    if to not in TRANSITIONS[round_.state]:
        raise IllegalTransition(f"round {round_.number} is {round_.state.value}: it cannot become {to.value}")


def _expire_leases(session: Session, round_id: int) -> None:
    """Leases still held when a round closes die with it (their annotators get other work)."""
    session.execute(
        update(Assignment)
        .where(
            Assignment.state == AssignmentState.leased,
            Assignment.query_id.in_(select(Query.id).where(Query.round_id == round_id)),
        )
        .values(state=AssignmentState.expired)
        .execution_options(synchronize_session=False)
    )
