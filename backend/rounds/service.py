"""Query rounds as a lead sees them: open, close, retry, with their checks; the transitions
themselves (and the jobs they send) are backend/rounds/lifecycle.py's."""

from __future__ import annotations

from sqlalchemy import exists, func, select
from sqlalchemy.orm import Session

from backend.errors import Conflict, NotFound
from backend.models import Project, ProjectStatus, Query, Round, RoundState, Score, User
from backend.projects import repository as project_repository
from backend.projects.service import can_manage, ensure_can_manage
from backend.rounds import lifecycle, repository
from backend.tasks.repository import OPEN


def get_round(session: Session, round_id: int, *, for_update: bool = False) -> Round:
    round_ = repository.get(session, round_id, for_update=for_update)
    if round_ is None:
        raise NotFound(f"round {round_id} does not exist")
    return round_


def get_managed_round(session: Session, user: User | None, round_id: int) -> tuple[Round, Project]:
    round_ = get_round(session, round_id)
    project = project_repository.get(session, round_.project_id)
    assert project is not None  # foreign key
    if not can_manage(user, project):  # the 404 of a round that does not exist: nothing disclosed
        raise NotFound(f"round {round_id} does not exist")
    return round_, project


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
    return lifecycle.open_round(session, locked, 1 if latest is None else latest.number + 1)


def close_round(session: Session, round_: Round, closed_by: User | None = None) -> Round:
    """annotating -> aggregating; the worker aggregates the answers and retrains.

    closed_by None is the automatic close (the worker's, when a round has nothing to ask): a round
    that is no longer annotating is then left as it is, so a late duplicate call does no harm.
    """
    if closed_by is not None and round_.state == RoundState.annotating:
        # Wait for answers in flight: each holds its query's row lock from before it reads the round's
        # state until it commits. Lock order: queries (in id order), then the round.
        open_queries = select(Query.id).where(Query.round_id == round_.id, Query.status == OPEN)
        session.execute(open_queries.order_by(Query.id).with_for_update()).all()
    locked = repository.get(session, round_.id, for_update=True)
    if locked is None:
        raise NotFound(f"round {round_.id} does not exist")
    if locked.state != RoundState.annotating:
        if closed_by is None:
            return locked
        raise Conflict(f"round {locked.number} is {locked.state.value}, not annotating: it cannot be closed")
    lifecycle.move(session, locked, RoundState.aggregating)
    return locked


def close_finished_rounds(session: Session, project_id: int | None = None) -> list[int]:
    """Close every annotating round (of the project) that has no open query and closes by itself.

    A safety net for `close_if_complete`, which runs after its answer's commit: had the API process
    died in between, the round would wait in `annotating` with nothing to ask. `tasks/next` calls
    this when it has nothing to hand out.
    """
    open_queries = exists().where(Query.round_id == Round.id, Query.status == OPEN)
    statement = (
        select(Round.id, Project.config)
        .join(Project, Project.id == Round.project_id)
        .where(Round.state == RoundState.annotating, ~open_queries)
    )
    if project_id is not None:
        statement = statement.where(Round.project_id == project_id)
    done = [round_id for round_id, config in session.execute(statement) if config.auto_close]
    return [round_id for round_id in done if lifecycle.close_if_complete(session, round_id)]


def retry_round(session: Session, round_: Round) -> Round:
    """failed -> the step that failed, sent to the worker again."""
    locked = repository.get(session, round_.id, for_update=True)
    if locked is None:
        raise NotFound(f"round {round_.id} does not exist")
    if locked.state != RoundState.failed:
        raise Conflict(f"round {locked.number} has not failed (state {locked.state.value})")
    step = lifecycle.resume_state(locked)
    if step == RoundState.scoring:  # shards scored before the failure keep their scores
        scored = int(session.scalar(select(func.count(Score.id)).where(Score.round_id == locked.id)) or 0)
        project = project_repository.get(session, locked.project_id)
        assert project is not None
        lifecycle.move(session, locked, step, done=scored, total=project.num_train)
    else:
        lifecycle.move(session, locked, step)
    return locked
