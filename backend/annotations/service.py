"""Answers: one per query and annotator, idempotent submits, and the aggregation that follows each.

Services flush, never commit.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from backend.annotations import repository
from backend.annotations.aggregation import annotator_bias, median_absolute_deviation, median_on_ladder
from backend.errors import Conflict
from backend.models import Annotation, AssignmentState, Project, Query, Role, Round, User
from backend.tasks import repository as task_repository
from backend.tasks import service as task_service
from backend.tasks.repository import COMPLETE


@dataclass(frozen=True)
class Submitted:
    annotation: Annotation
    replayed: bool  # True when the Idempotency-Key had already been used for this task


def submit_answer(
    session: Session,
    annotator: User,
    assignment_id: int,
    sigma_index: int,
    seconds: float | None,
    idempotency_key: str,
) -> Submitted:
    """Record the annotator's answer to a task; a replay of the same key returns the first answer."""
    now = task_service.now_utc()
    assignment, query, round_ = task_service.lock_own_task(session, annotator, assignment_id)
    # Looked up under the query lock: a concurrent retry of the same submit waits and then finds it.
    earlier = repository.by_idempotency_key(session, annotator.id, idempotency_key)
    if earlier is not None:
        if earlier.assignment_id != assignment.id:
            raise Conflict(f"this Idempotency-Key was already used for task {earlier.assignment_id}")
        return Submitted(earlier, replayed=True)
    task_service.ensure_slot(session, assignment, query, round_, now)
    completes = query.answer_count + 1 >= query.required_answers
    if completes:
        # Decide "round complete" one writer at a time, before touching assignments (lock order:
        # round, query, assignments — the same as closing a round).
        task_repository.lock_round(session, round_.id, exclusive=True)
    annotation = Annotation(
        query_id=query.id,
        annotator_id=annotator.id,
        assignment_id=assignment.id,
        sigma_index=sigma_index,
        seconds=seconds,
        idempotency_key=idempotency_key,
    )
    session.add(annotation)
    assignment.state = AssignmentState.answered
    query.answer_count += 1
    try:
        session.flush()
    except IntegrityError as error:
        # Only reachable by one annotator reusing a key on two tasks at the same instant.
        raise Conflict("this answer conflicts with another answer of yours; reload the task") from error
    if completes:
        project = session.get(Project, round_.project_id)
        assert project is not None  # foreign key
        _aggregate_query(session, project, query)
        if query.status == COMPLETE:
            _close_round_if_complete(session, project, round_)
    return Submitted(annotation, replayed=False)


def _aggregate_query(session: Session, project: Project, query: Query) -> None:
    """Median and MAD of the answers; disagreeing answers get one more annotator, else the query is done."""
    answers = repository.sigma_indices(session, query.id)
    mad = median_absolute_deviation(answers)
    threshold = project.config.get("disagreement_threshold")
    overlap = int(project.config.get("overlap", query.required_answers))
    if threshold is not None and mad > float(threshold) and query.required_answers <= overlap:
        query.required_answers += 1
    else:
        query.status = COMPLETE
        query.result_sigma_index = median_on_ladder(answers)
        query.result_mad = mad
    session.flush()


def _close_round_if_complete(session: Session, project: Project, round_: Round) -> None:
    """Auto-close: the last answer of the round hands it to aggregation (if the project asks for it)."""
    if not project.config.get("auto_close", True):
        return
    # The round row is locked (exclusive) by the caller, so this count sees every other completion.
    if task_repository.open_query_count(session, round_.id) > 0:
        return
    from backend.rounds.service import close_round  # rounds imports projects; keep this edge lazy

    close_round(session, round_, closed_by=None)


@dataclass(frozen=True)
class AnnotatorStats:
    id: int
    username: str
    answers: int
    median_seconds: float | None
    bias: float | None  # mean (own answer - query median), ladder steps; None without shared queries


def annotator_stats(session: Session, viewer: User, project_id: int | None = None) -> list[AnnotatorStats]:
    """Per annotator: answers, median seconds per task, bias against the consensus.

    Admins see every project's answers; leads only those in projects they own.
    """
    if viewer.role == Role.admin:
        project_ids = None if project_id is None else [project_id]
    else:
        owned = select(Project.id).where(Project.owner_id == viewer.id)
        if project_id is not None:
            owned = owned.where(Project.id == project_id)
        project_ids = list(session.scalars(owned))
    answers = repository.answers_for_stats(session, project_ids)
    counts: dict[int, int] = defaultdict(int)
    seconds: dict[int, list[float]] = defaultdict(list)
    for annotator_id, _query, _sigma, spent in answers:
        counts[annotator_id] += 1
        if spent is not None:
            seconds[annotator_id].append(spent)
    bias = annotator_bias((a, q, s) for a, q, s, _spent in answers)
    # Annotators, plus any lead or admin who answered too.
    shown = or_(User.role == Role.annotator, User.id.in_(list(counts)))
    annotators = session.scalars(select(User).where(shown).order_by(User.username))
    return [
        AnnotatorStats(
            id=user.id,
            username=user.username,
            answers=counts[user.id],
            median_seconds=statistics.median(seconds[user.id]) if seconds[user.id] else None,
            bias=bias.get(user.id),
        )
        for user in annotators
    ]
