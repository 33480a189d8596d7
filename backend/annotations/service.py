"""Answers: one per query and annotator, idempotent submits, and the aggregation that follows each.

Services flush, never commit.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from backend.annotations import repository
from backend.annotations.aggregation import annotator_bias, median_absolute_deviation, median_on_ladder
from backend.annotations.repository import StoredAnswer
from backend.errors import Conflict, NotFound
from backend.gold import repository as gold_repository
from backend.gold.quality import GoldQuality, quality_by_annotator
from backend.models import Project, Role, User
from backend.projects.config import ProjectConfig
from backend.tasks import repository as task_repository
from backend.tasks import service as task_service
from backend.tasks.repository import COMPLETE, GOLD


@dataclass(frozen=True)
class Submitted:
    annotation: StoredAnswer
    replayed: bool  # True when the Idempotency-Key had already been used for this task
    round_id: int
    gold: bool = False  # an answer to a gold query: it measures the annotator, the round does not count it
    asked_one_more: bool = False  # the answers disagreed: the query now needs one more
    # The round of the query this answer completed, when its project closes rounds by itself: once
    # this transaction has committed, `backend.rounds.lifecycle.close_if_complete` closes it if done.
    completed_round_id: int | None = None


def submit_answer(
    session: Session,
    annotator_id: int,
    assignment_id: int,
    sigma_index: int,
    seconds: float | None,
    idempotency_key: str,
) -> Submitted:
    """Record the annotator's answer to a task; a replay of the same key returns the first answer.

    Locks the task's query row only (never the round's or the project's): answers to different
    queries never wait for each other. The round's state is read after that lock, so an answer
    either lands before a lead's close (which locks the round's open queries first) or sees it.
    """
    now = task_service.now_utc()
    located = task_repository.lock_task_query(session, assignment_id, annotator_id)
    if located is None:
        raise NotFound(f"task {assignment_id} not found")
    query_id, round_id = located
    # Read under the query lock: a concurrent retry of the same submit waits and then finds its answer.
    context = repository.answer_context(session, assignment_id, annotator_id, idempotency_key, now)
    if context.earlier is not None:
        if context.earlier.task_id != assignment_id:
            raise Conflict(f"this Idempotency-Key was already used for task {context.earlier.task_id}")
        return Submitted(context.earlier, replayed=True, round_id=round_id)
    problem = task_service.slot_conflict(
        task_id=assignment_id,
        task_state=context.task_state,
        expires_at=context.expires_at,
        round_number=context.round_number,
        round_state=context.round_state,
        query_status=context.query_status,
        answer_count=context.answer_count,
        required_answers=context.required_answers,
        others_live=lambda: context.others_live,
        now=now,
    )
    if problem is not None:
        raise Conflict(problem)
    try:
        answer_id = repository.insert_answer(
            session, query_id, annotator_id, assignment_id, sigma_index, seconds, idempotency_key, now
        )
    except IntegrityError as error:
        # Only reachable by one annotator reusing a key on two tasks at the same instant.
        raise Conflict("this answer conflicts with another answer of yours; reload the task") from error
    repository.mark_answered(session, assignment_id)
    answer = StoredAnswer(answer_id, assignment_id, query_id, sigma_index, seconds, now)
    if context.query_status == GOLD:
        return Submitted(answer, replayed=False, round_id=round_id, gold=True)
    completed = asked_one_more = False
    if context.answer_count + 1 >= context.required_answers:
        answers = [sigma_index] if context.answer_count == 0 else repository.sigma_indices(session, query_id)
        decided = _aggregate_query(context.project_config, context.required_answers, answers)
        completed = decided.get("status") == COMPLETE
        asked_one_more = bool(decided.get("ask_one_more"))
        repository.count_answer(session, query_id, **decided)
    else:
        repository.count_answer(session, query_id)
    closes = completed and context.project_config.auto_close
    return Submitted(
        answer,
        replayed=False,
        round_id=round_id,
        asked_one_more=asked_one_more,
        completed_round_id=round_id if closes else None,
    )


def _aggregate_query(config: ProjectConfig, required_answers: int, answers: list[int]) -> dict[str, Any]:
    """Median and MAD of a query's answers once it has them all: the columns to set on the query.
    Disagreeing answers get one more annotator (once); otherwise the query is complete."""
    mad = median_absolute_deviation(answers)
    threshold = config.disagreement_threshold
    if threshold is not None and mad > threshold and required_answers <= config.overlap:
        return {"ask_one_more": True}
    return {"status": COMPLETE, "result_sigma_index": median_on_ladder(answers), "result_mad": mad}


NO_GOLD = GoldQuality(answers=0, mean_absolute_error=None, mean_error=None, flagged=False)


@dataclass(frozen=True)
class AnnotatorStats:
    id: int
    username: str
    answers: int
    median_seconds: float | None
    bias: float | None  # mean (own answer - query median), ladder steps; None without shared queries
    gold_answers: int  # answers to gold queries (never counted in `answers` nor `bias`)
    gold_error: float | None  # mean |answer - known σ| over gold answers, ladder steps
    gold_bias: float | None  # mean (answer - known σ), ladder steps: positive tolerates more noise
    flagged: bool  # past a project's gold_max_error on at least its gold_min_answers


def annotator_stats(session: Session, viewer: User, project_id: int | None = None) -> list[AnnotatorStats]:
    """Per annotator: answers, median seconds per task, bias against the consensus, and the errors
    against gold with whether a project flags them.

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
    gold_scores = gold_repository.gold_scores(session, project_ids)
    scored = {score.project_id for score in gold_scores}
    configs = {
        int(project): config
        for project, config in session.execute(
            select(Project.id, Project.config).where(Project.id.in_(scored))
        )
    }
    gold = quality_by_annotator(gold_scores, configs)
    # Annotators, plus any lead or admin who answered too.
    shown = or_(User.role == Role.annotator, User.id.in_([*counts, *gold]))
    annotators = session.scalars(select(User).where(shown).order_by(User.username))
    return [
        AnnotatorStats(
            id=user.id,
            username=user.username,
            answers=counts[user.id],
            median_seconds=statistics.median(seconds[user.id]) if seconds[user.id] else None,
            bias=bias.get(user.id),
            gold_answers=(quality := gold.get(user.id, NO_GOLD)).answers,
            gold_error=quality.mean_absolute_error,
            gold_bias=quality.mean_error,
            flagged=quality.flagged,
        )
        for user in annotators
    ]
