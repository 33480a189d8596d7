"""Queries over gold examples, the round's gold queries and the answers given to them.

A gold query is a `queries` row of status "gold" carrying the example's known σ
(`gold_sigma_index`). It is created when its round starts annotating, for each gold example the
round did not select; the task machinery hands it out like any query (tasks/next), but it never
counts towards the round's progress or completion, is never aggregated and never changes σ_i.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session

from backend.models import (
    Annotation,
    Example,
    GoldExample,
    Query,
    QuerySide,
    Round,
    RoundState,
)
from backend.tasks.repository import COMPLETE, GOLD


def of_project(session: Session, project_id: int) -> Sequence[GoldExample]:
    return session.scalars(
        select(GoldExample).where(GoldExample.project_id == project_id).order_by(GoldExample.id)
    ).all()


def get(session: Session, gold_id: int) -> GoldExample | None:
    return session.get(GoldExample, gold_id)


def by_example(session: Session, project_id: int, example_id: int) -> GoldExample | None:
    return session.scalar(
        select(GoldExample).where(GoldExample.project_id == project_id, GoldExample.example_id == example_id)
    )


def agreeing_queries(
    session: Session, project_id: int, max_mad: float, min_answers: int
) -> list[tuple[int, int, int]]:
    """(query id, example id, consensus σ index) of every complete query of the project's rounds past
    annotating whose answers agreed: at least `min_answers` of them, MAD ≤ `max_mad`; the latest
    round's query per example (the one that set its σ)."""
    rows = session.execute(
        select(Query.id, Query.example_id, Query.result_sigma_index)
        .join(Round, Round.id == Query.round_id)
        .where(
            Round.project_id == project_id,
            Round.state.not_in([RoundState.scoring, RoundState.annotating]),
            Query.status == COMPLETE,
            Query.answer_count >= min_answers,
            Query.result_mad <= max_mad,
            Query.result_sigma_index.is_not(None),
        )
        .order_by(Round.number, Query.id)
    ).all()
    latest: dict[int, tuple[int, int, int]] = {}
    for query_id, example_id, sigma_index in rows:
        if sigma_index is not None:  # always, by the WHERE; narrows the type
            latest[int(example_id)] = (int(query_id), int(example_id), int(sigma_index))
    return list(latest.values())


def add_gold_queries(session: Session, round_id: int, project_id: int, selected: Collection[int]) -> int:
    """The round's gold queries: one per gold example of the project that the round did not select
    (`selected`: the example ids of its own queries); how many. At σ_i as it is now, like a selected
    query."""
    if not selected:  # nothing to ask: the round goes straight on, gold alone is never handed out
        return 0
    rows = session.execute(
        select(GoldExample.example_id, GoldExample.sigma_index, Example.sigma_index)
        .join(Example, Example.id == GoldExample.example_id)
        .where(GoldExample.project_id == project_id)
        .order_by(GoldExample.id)
    ).all()
    queries = [
        Query(
            round_id=round_id,
            example_id=int(example_id),
            side=QuerySide.gold,
            score=0.0,
            required_answers=0,  # no slot limit: every annotator may answer it once
            answer_count=0,
            sigma_index_before=int(current),
            gold_sigma_index=int(known),
            status=GOLD,
        )
        for example_id, known, current in rows
        if int(example_id) not in selected
    ]
    session.add_all(queries)
    session.flush()
    return len(queries)


@dataclass(frozen=True)
class GoldScore:
    """One annotator's answers to one project's gold queries, in ladder steps."""

    project_id: int
    annotator_id: int
    answers: int
    absolute_error_sum: float  # sum of |answer - known σ|
    error_sum: float  # sum of (answer - known σ): the sign says which way they lean


def gold_scores(session: Session, project_ids: Collection[int] | None) -> list[GoldScore]:
    """Per project and annotator, their gold answers' count and error sums (SQL sums, one statement)."""
    error = Annotation.sigma_index - Query.gold_sigma_index
    statement = (
        select(
            Round.project_id,
            Annotation.annotator_id,
            func.count(Annotation.id),
            func.sum(func.abs(error)),
            func.sum(error),
        )
        .join(Query, Query.id == Annotation.query_id)
        .join(Round, Round.id == Query.round_id)
        .where(and_(Query.status == GOLD, Query.gold_sigma_index.is_not(None)))
        .group_by(Round.project_id, Annotation.annotator_id)
    )
    if project_ids is not None:
        statement = statement.where(Round.project_id.in_(list(project_ids)))
    return [
        GoldScore(int(project), int(annotator), int(count), float(absolute or 0), float(signed or 0))
        for project, annotator, count, absolute, signed in session.execute(statement)
    ]
