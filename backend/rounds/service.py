"""Query rounds: open, close, retry. The worker runs the steps; each transition is one transaction.

States: scoring -> annotating -> aggregating -> training -> evaluating -> published, or failed
(failed_state = the step that failed; retry sends that step again).
"""

from __future__ import annotations

from sqlalchemy import bindparam, exists, func, select, update
from sqlalchemy.orm import Session

from backend.errors import Conflict, NotFound
from backend.models import (
    Assignment,
    AssignmentState,
    Project,
    ProjectStatus,
    Query,
    Round,
    RoundState,
    Score,
    User,
)
from backend.models._types import utcnow
from backend.projects import repository as project_repository
from backend.projects.service import ensure_can_manage
from backend.queue import enqueue_after_commit
from backend.rounds import repository
from backend.tasks.repository import COMPLETE

# Where retry resumes for each step that can fail: the task that runs it.
STEP_TASKS = {
    RoundState.scoring: "scoring.score",
    RoundState.aggregating: "rounds.aggregate",
    RoundState.training: "training.finetune",
    RoundState.evaluating: "evaluation.evaluate",
}
DEFAULT_SHARD_SIZE = 5000


def get_round(session: Session, round_id: int, *, for_update: bool = False) -> Round:
    round_ = repository.get(session, round_id, for_update=for_update)
    if round_ is None:
        raise NotFound(f"round {round_id} does not exist")
    return round_


def get_managed_round(session: Session, user: User | None, round_id: int) -> tuple[Round, Project]:
    round_ = get_round(session, round_id)
    project = project_repository.get(session, round_.project_id)
    assert project is not None  # foreign key
    ensure_can_manage(user, project)
    return round_, project


def shard_ranges(num_train: int, shard_size: int) -> list[tuple[int, int]]:
    """[start, stop) example ranges of the scoring tasks, covering 0..num_train."""
    shard_size = max(1, shard_size)
    return [(start, min(start + shard_size, num_train)) for start in range(0, num_train, shard_size)]


def _enqueue_scoring(session: Session, round_: Round, project: Project) -> None:
    shard_size = int(project.config.get("score_shard_size", DEFAULT_SHARD_SIZE))
    for start, stop in shard_ranges(project.num_train, shard_size):
        enqueue_after_commit(session, "scoring.score", round_.id, start, stop)


def start_round(session: Session, project: Project, started_by: User | None = None) -> Round:
    """Open the next round in `scoring`; the worker scores, selects and opens annotation."""
    locked = project_repository.get(session, project.id, for_update=True)
    assert locked is not None
    ensure_can_manage(started_by, locked)
    if locked.status != ProjectStatus.ready:
        raise Conflict(f"project {project.id} is not ready (status {locked.status.value})")
    if locked.num_train == 0:
        raise Conflict(f"project {project.id} has no training examples")
    latest = project_repository.latest_round(session, project.id)
    if latest is not None and latest.state != RoundState.published:
        raise Conflict(
            f"round {latest.number} of project {project.id} is {latest.state.value}: "
            "finish it (or retry it) before opening another"
        )
    number = 1 if latest is None else latest.number + 1
    round_ = Round(
        project_id=project.id,
        number=number,
        state=RoundState.scoring,
        progress={"step": RoundState.scoring.value, "done": 0, "total": locked.num_train},
    )
    session.add(round_)
    session.flush()
    _enqueue_scoring(session, round_, locked)
    return round_


def close_round(session: Session, round_: Round, closed_by: User | None = None) -> Round:
    """annotating -> aggregating; the worker aggregates the answers and retrains.

    closed_by None is the automatic close (the worker's, when a round has nothing to ask): a round
    that is no longer annotating is then left as it is, so a late duplicate call does no harm.
    """
    if closed_by is not None and round_.state == RoundState.annotating:
        # Wait for answers in flight: each holds its query's row lock from before it reads the round's
        # state until it commits. Lock order: queries (in id order), then the round.
        open_queries = select(Query.id).where(Query.round_id == round_.id, Query.status != COMPLETE)
        session.execute(open_queries.order_by(Query.id).with_for_update()).all()
    locked = repository.get(session, round_.id, for_update=True)
    if locked is None:
        raise NotFound(f"round {round_.id} does not exist")
    if locked.state != RoundState.annotating:
        if closed_by is None:
            return locked
        raise Conflict(f"round {locked.number} is {locked.state.value}, not annotating: it cannot be closed")
    locked.state = RoundState.aggregating
    locked.closed_at = utcnow()
    locked.progress = _aggregating_progress()
    session.flush()
    _end_annotation(session, locked.id)
    return locked


# Built once (it runs after every answer that completes a query): the open-query probe walks
# ix_queries_round_open, where open queries (fewer answers) come first.
_CLOSE_IF_COMPLETE = (
    update(Round)
    .where(
        Round.id == bindparam("round_id"),
        Round.state == RoundState.annotating,
        ~exists().where(Query.round_id == Round.id, Query.status != COMPLETE),
    )
    .values(state=RoundState.aggregating)
    .returning(Round.id)
)


def close_if_complete(session: Session, round_id: int) -> bool:
    """The automatic close: annotating -> aggregating if no query of the round is still open.

    Called after the commit of each answer that completed a query, in a transaction of its own:
    answers never wait for each other on the round's row, and the last of them (committed after
    every other completion) sees no open query. One conditional UPDATE decides, so when several
    see it at once exactly one closes: the others wait for its row lock, then find the round no
    longer annotating. True when this call closed the round.
    """
    parameters = {"round_id": round_id, "closed_at": utcnow(), "progress": _aggregating_progress()}
    closed = session.connection().execute(_CLOSE_IF_COMPLETE, parameters).scalar()
    if closed is None:
        return False
    _end_annotation(session, round_id)
    return True


def close_finished_rounds(session: Session, project_id: int | None = None) -> list[int]:
    """Close every annotating round (of the project) that has no open query and closes by itself.

    A safety net for `close_if_complete`, which runs after its answer's commit: had the API process
    died in between, the round would wait in `annotating` with nothing to ask. `tasks/next` calls
    this when it has nothing to hand out.
    """
    open_queries = exists().where(Query.round_id == Round.id, Query.status != COMPLETE)
    statement = (
        select(Round.id, Project.config)
        .join(Project, Project.id == Round.project_id)
        .where(Round.state == RoundState.annotating, ~open_queries)
    )
    if project_id is not None:
        statement = statement.where(Round.project_id == project_id)
    done = [round_id for round_id, config in session.execute(statement) if config.get("auto_close", True)]
    return [round_id for round_id in done if close_if_complete(session, round_id)]


def _aggregating_progress() -> dict[str, object]:
    return {"step": RoundState.aggregating.value, "done": 0, "total": 1}


def _end_annotation(session: Session, round_id: int) -> None:
    """What follows a close: leases still held die with the round (their annotators get other work),
    and the aggregation is sent once this transaction commits."""
    session.execute(
        update(Assignment)
        .where(
            Assignment.state == AssignmentState.leased,
            Assignment.query_id.in_(select(Query.id).where(Query.round_id == round_id)),
        )
        .values(state=AssignmentState.expired)
        .execution_options(synchronize_session=False)
    )
    enqueue_after_commit(session, "rounds.aggregate", round_id)


def retry_round(session: Session, round_: Round) -> Round:
    """failed -> the step that failed, sent to the worker again."""
    locked = repository.get(session, round_.id, for_update=True)
    if locked is None:
        raise NotFound(f"round {round_.id} does not exist")
    if locked.state != RoundState.failed:
        raise Conflict(f"round {locked.number} has not failed (state {locked.state.value})")
    step = locked.failed_state or RoundState.scoring
    if step not in STEP_TASKS:
        step = RoundState.scoring if step == RoundState.annotating else step
    project = project_repository.get(session, locked.project_id)
    assert project is not None
    locked.state = step
    locked.failed_state = None
    locked.error = None
    if step == RoundState.scoring:
        scored = int(session.scalar(select(func.count(Score.id)).where(Score.round_id == locked.id)) or 0)
        locked.progress = {"step": step.value, "done": scored, "total": project.num_train}
        _enqueue_scoring(session, locked, project)
    elif step == RoundState.evaluating:
        locked.progress = {"step": step.value, "done": 0, "total": 1}
        enqueue_after_commit(session, STEP_TASKS[step], project.id, locked.number)
    else:
        locked.progress = {"step": step.value, "done": 0, "total": 1}
        enqueue_after_commit(session, STEP_TASKS[step], locked.id)
    session.flush()
    return locked
