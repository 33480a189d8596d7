"""Project queries: counts and histograms are computed in SQL, never by loading every example."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from aqpl.ladder import LADDER_MAX_INDEX, LADDER_SIZE
from backend.models import (
    Annotation,
    Checkpoint,
    Example,
    Project,
    Query,
    Round,
    SigmaChange,
    SigmaSource,
    Split,
    User,
)
from backend.tasks.repository import SELECTED


def get(session: Session, project_id: int, *, for_update: bool = False) -> Project | None:
    statement = select(Project).where(Project.id == project_id)
    if for_update:
        statement = statement.with_for_update()
    return session.scalar(statement)


def list_visible(session: Session, user: User | None) -> Sequence[Project]:
    """All projects for an admin (user None or admin), a lead's own otherwise."""
    statement = select(Project).order_by(Project.id.desc())
    if user is not None and user.role.value != "admin":
        statement = statement.where(Project.owner_id == user.id)
    return session.scalars(statement).all()


def sigma_source_counts(session: Session, project_id: int) -> dict[str, int]:
    """Training examples by where their σ came from."""
    rows = session.execute(
        select(Example.sigma_source, func.count())
        .where(Example.project_id == project_id, Example.split == Split.train)
        .group_by(Example.sigma_source)
    ).all()
    counts = {source.value: 0 for source in SigmaSource}
    for source, count in rows:
        counts[SigmaSource(source).value] = int(count)
    return counts


def sigma_histogram(session: Session, project_id: int) -> list[int]:
    """Training examples per σ ladder index (91 bins)."""
    rows = session.execute(
        select(Example.sigma_index, func.count())
        .where(Example.project_id == project_id, Example.split == Split.train)
        .group_by(Example.sigma_index)
    ).all()
    histogram = [0] * LADDER_SIZE
    for index, count in rows:
        histogram[min(max(int(index), 0), LADDER_MAX_INDEX)] += int(count)
    return histogram


def latest_round(session: Session, project_id: int) -> Round | None:
    return session.scalar(
        select(Round).where(Round.project_id == project_id).order_by(Round.number.desc()).limit(1)
    )


def latest_checkpoint(session: Session, project_id: int) -> Checkpoint | None:
    return session.scalar(
        select(Checkpoint)
        .where(Checkpoint.project_id == project_id)
        .order_by(Checkpoint.round_number.desc())
        .limit(1)
    )


def examples_query(project_id: int, split: Split | None, sigma_source: SigmaSource | None) -> Select[Example]:
    statement = select(Example).where(Example.project_id == project_id)
    if split is not None:
        statement = statement.where(Example.split == split)
    if sigma_source is not None:
        statement = statement.where(Example.sigma_source == sigma_source)
    return statement


def count_examples(
    session: Session, project_id: int, split: Split | None, sigma_source: SigmaSource | None
) -> int:
    inner = examples_query(project_id, split, sigma_source).with_only_columns(Example.id).subquery()
    return int(session.scalar(select(func.count()).select_from(inner)) or 0)


def page_examples(
    session: Session,
    project_id: int,
    split: Split | None,
    sigma_source: SigmaSource | None,
    offset: int,
    limit: int,
) -> Sequence[Example]:
    statement = (
        examples_query(project_id, split, sigma_source)
        .order_by(Example.split, Example.dataset_index)
        .offset(offset)
        .limit(limit)
    )
    return session.scalars(statement).all()


def rounds_of(session: Session, project_id: int) -> Sequence[Round]:
    return session.scalars(select(Round).where(Round.project_id == project_id).order_by(Round.number)).all()


def checkpoints_by_round(session: Session, project_id: int) -> dict[int, Checkpoint]:
    rows = session.scalars(select(Checkpoint).where(Checkpoint.project_id == project_id)).all()
    return {row.round_number: row for row in rows}


def query_counts_by_round(session: Session, project_id: int) -> dict[int, int]:
    rows = session.execute(
        select(Round.number, func.count(Query.id))
        .join(Query, Query.round_id == Round.id)
        .where(Round.project_id == project_id, SELECTED)
        .group_by(Round.number)
    ).all()
    return {int(number): int(count) for number, count in rows}


def iter_export_rows(session: Session, project_id: int, batch: int = 2000) -> Iterator[dict[str, Any]]:
    """Every example with its σ history, every raw answer and the simulated oracle's σ_o, in dataset
    order, fetched in batches."""
    last_id = 0
    while True:
        examples = session.scalars(
            select(Example)
            .where(Example.project_id == project_id, Example.id > last_id)
            .order_by(Example.id)
            .limit(batch)
        ).all()
        if not examples:
            return
        ids = [example.id for example in examples]
        history: dict[int, list[dict[str, Any]]] = {}
        for change in session.scalars(
            select(SigmaChange).where(SigmaChange.example_id.in_(ids)).order_by(SigmaChange.id)
        ):
            history.setdefault(change.example_id, []).append(
                {
                    "round": change.round_number,
                    "old_sigma_index": change.old_sigma_index,
                    "new_sigma_index": change.new_sigma_index,
                    "source": change.source.value,
                }
            )
        answers: dict[int, list[dict[str, Any]]] = {}
        answer_rows = session.execute(
            select(
                Query.example_id, Round.number, Annotation.annotator_id, Annotation.sigma_index, User.username
            )
            .join(Annotation, Annotation.query_id == Query.id)
            .join(Round, Round.id == Query.round_id)
            .join(User, User.id == Annotation.annotator_id)
            .where(Query.example_id.in_(ids), SELECTED)  # gold answers measure people, not the example
            .order_by(Annotation.id)
        ).all()
        for example_id, round_number, annotator_id, sigma_index, username in answer_rows:
            answers.setdefault(example_id, []).append(
                {
                    "round": round_number,
                    "annotator_id": annotator_id,
                    "annotator": username,
                    "sigma_index": sigma_index,
                }
            )
        # The simulated oracle's σ_o per round the example was queried in (projects with F_o),
        # beside the people's consensus of that query.
        oracle: dict[int, list[dict[str, Any]]] = {}
        oracle_rows = session.execute(
            select(Query.example_id, Round.number, Query.oracle_sigma_index, Query.result_sigma_index)
            .join(Round, Round.id == Query.round_id)
            .where(Query.example_id.in_(ids), Query.oracle_sigma_index.is_not(None))
            .order_by(Round.number)
        ).all()
        for example_id, round_number, oracle_sigma_index, consensus in oracle_rows:
            oracle.setdefault(example_id, []).append(
                {
                    "round": round_number,
                    "oracle_sigma_index": oracle_sigma_index,
                    "consensus_sigma_index": consensus,
                }
            )
        for example in examples:
            yield {
                "example_id": example.id,
                "split": example.split.value,
                "dataset_index": example.dataset_index,
                "label": example.label,
                "sigma_index": example.sigma_index,
                "sigma_source": example.sigma_source.value,
                "sigma_round": example.sigma_round,
                "sigma_history": history.get(example.id, []),
                "answers": answers.get(example.id, []),
                "oracle_answers": oracle.get(example.id, []),
            }
        last_id = ids[-1]
