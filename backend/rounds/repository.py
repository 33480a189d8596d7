"""Round queries, and the read model of a round (counts come from SQL aggregates)."""

from __future__ import annotations

from collections.abc import Collection, Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from backend.gold.quality import kept_answers
from backend.models import Annotation, Checkpoint, Example, Query, Round, RoundState, Split
from backend.models._types import utcnow
from backend.rounds import timeline
from backend.rounds.schemas import QueryRead, RoundCounts, RoundRead
from backend.tasks.repository import COMPLETE, SELECTED


def get(
    session: Session, round_id: int, *, for_update: bool = False, key_share: bool = False
) -> Round | None:
    """The round; for_update locks its row (FOR UPDATE, or FOR NO KEY UPDATE with key_share)."""
    statement = select(Round).where(Round.id == round_id).execution_options(populate_existing=True)
    if for_update:
        statement = statement.with_for_update(key_share=key_share)
    return session.scalar(statement)


def counts(session: Session, round_id: int) -> RoundCounts:
    queries, complete = session.execute(
        select(func.count(Query.id), func.count(Query.id).filter(Query.status == COMPLETE)).where(
            Query.round_id == round_id, SELECTED
        )
    ).one()
    answers, annotators = session.execute(
        select(func.count(Annotation.id), func.count(func.distinct(Annotation.annotator_id)))
        .join(Query, Query.id == Annotation.query_id)
        .where(Query.round_id == round_id, SELECTED)
    ).one()
    return RoundCounts(
        queries=int(queries), complete_queries=int(complete), answers=int(answers), annotators=int(annotators)
    )


def required_answers(session: Session, round_id: int) -> int:
    total = session.scalar(
        select(func.coalesce(func.sum(Query.required_answers), 0)).where(Query.round_id == round_id, SELECTED)
    )
    return int(total or 0)


def checkpoint_id(session: Session, round_id: int) -> int | None:
    return session.scalar(select(Checkpoint.id).where(Checkpoint.round_id == round_id).limit(1))


def round_read(session: Session, round_: Round) -> RoundRead:
    progress = dict(round_.progress) if round_.progress else None
    if progress is not None:
        progress.pop("shards", None)  # per-shard bookkeeping of the scoring tasks
    round_counts = counts(session, round_.id)
    if round_.state == RoundState.annotating:
        # Answers arrive through the tasks API: count them here rather than rewrite the round per answer.
        progress = {
            "step": round_.state.value,
            "done": round_counts.answers,
            "total": required_answers(session, round_.id),
        }
    now = utcnow()
    state_seconds = timeline.state_seconds_now(
        round_.state_seconds, round_.state, round_.state_entered_at, now
    )
    # The progress restarts with each visit of a state: throughput is measured over this visit.
    eta = timeline.eta_seconds(round_.state, progress, timeline.seconds_between(round_.state_entered_at, now))
    return RoundRead(
        id=round_.id,
        project_id=round_.project_id,
        number=round_.number,
        state=round_.state.value,
        failed_state=round_.failed_state.value if round_.failed_state else None,
        error=round_.error,
        progress=progress,
        counts=round_counts,
        krippendorff_alpha=round_.krippendorff_alpha,
        sigma_histogram_before=round_.sigma_histogram_before,
        sigma_histogram_after=round_.sigma_histogram_after,
        created_at=round_.created_at,
        annotating_at=round_.annotating_at,
        closed_at=round_.closed_at,
        published_at=round_.published_at,
        checkpoint_id=checkpoint_id(session, round_.id),
        forward_passes=round_.forward_passes or 0,
        scoring_seconds=round_.scoring_seconds or 0.0,
        state_seconds=state_seconds,
        eta_seconds=eta,
    )


def queries_of(session: Session, round_id: int) -> Sequence[Query]:
    """The round's own queries (not its gold queries), in id order."""
    return session.scalars(select(Query).where(Query.round_id == round_id, SELECTED).order_by(Query.id)).all()


def answers_by_query(
    session: Session, round_id: int, leaving_out: Collection[int] = ()
) -> dict[int, list[int]]:
    """σ indices answered per query of the round (its own, not gold), in the order they came;
    `leaving_out`: annotators whose answers do not count (`backend.gold.quality.kept_answers`)."""
    rows = session.execute(
        select(Annotation.query_id, Annotation.annotator_id, Annotation.sigma_index)
        .join(Query, Query.id == Annotation.query_id)
        .where(Query.round_id == round_id, SELECTED)
        .order_by(Annotation.id)
    ).all()
    by_query: dict[int, list[tuple[int, int]]] = {}
    for query_id, annotator_id, sigma_index in rows:
        by_query.setdefault(int(query_id), []).append((int(annotator_id), int(sigma_index)))
    return {query_id: kept_answers(answers, leaving_out) for query_id, answers in by_query.items()}


def query_reads(session: Session, round_id: int) -> list[QueryRead]:
    answers = answers_by_query(session, round_id)
    return [
        QueryRead(
            id=query.id,
            example_id=query.example_id,
            side=query.side.value,
            score=query.score,
            status=query.status,
            required_answers=query.required_answers,
            answer_count=query.answer_count,
            answers=answers.get(query.id, []),
            result_sigma_index=query.result_sigma_index,
            result_mad=query.result_mad,
            oracle_sigma_index=query.oracle_sigma_index,
            sigma_index_before=query.sigma_index_before,
            image_url=f"/api/v1/examples/{query.example_id}/image.png",
        )
        for query in queries_of(session, round_id)
    ]


def answered_before(session: Session, project_id: int, before_number: int) -> set[int]:
    """Example ids answered in the project's rounds numbered below `before_number`.

    A query closed with no annotation gave its example no σ (aggregation leaves it alone), so the
    example is not counted: a later round may ask it again.
    """
    answered = select(Annotation.id).where(Annotation.query_id == Query.id).exists()
    rows = session.scalars(
        select(Query.example_id)
        .join(Round, Round.id == Query.round_id)
        .where(Round.project_id == project_id, Round.number < before_number, answered, SELECTED)
    ).all()
    return set(rows)


def train_examples(session: Session, project_id: int) -> Sequence[Example]:
    """Training examples in dataset order (their row in the image array)."""
    return session.scalars(
        select(Example)
        .where(Example.project_id == project_id, Example.split == Split.train)
        .order_by(Example.dataset_index)
    ).all()


def oracle_pairs(session: Session, project_id: int) -> list[tuple[int, int, int]]:
    """(round number, consensus σ index, σ_o index) of every query of the project that has both."""
    rows = session.execute(
        select(Round.number, Query.result_sigma_index, Query.oracle_sigma_index)
        .join(Round, Round.id == Query.round_id)
        .where(
            Round.project_id == project_id,
            Query.result_sigma_index.is_not(None),
            Query.oracle_sigma_index.is_not(None),
        )
        .order_by(Round.number, Query.id)
    ).all()
    return [
        (number, consensus, oracle)
        for number, consensus, oracle in rows
        if consensus is not None and oracle is not None  # always, by the WHERE; narrows the types
    ]
