"""`scoring.score`: one shard [start, stop) of a round's training examples; the last shard selects.

Scores of a shard are replaced whole (delete then insert) in the transaction that records them,
so a redelivered shard never double counts. The shard that brings the count of scored rows to
num_train (checked with the round row locked) runs the selection and opens annotation.

Adaptive scoring (the project's `scoring`) stores, per example, the copies it drew and, where it
stopped early, their class counts. The shard that selects then completes its picks to all M draws
(pipeline.select_completed) with no transaction open, and opens annotation in a new one that first
re-checks the state. The round's forward passes are the sum of its rows' draws (so a redelivered
shard does not count twice); its scoring seconds add up the jobs' compute.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import numpy as np
import numpy.typing as npt
from sqlalchemy import Table, bindparam, delete, func, insert, select, update
from sqlalchemy.orm import Session

from aqpl import job_names
from backend import storage
from backend.checkpoints.repository import of_round_number
from backend.gold import repository as gold_repository
from backend.models import Example, Project, Query, QuerySide, Round, RoundState, Score, Split
from backend.projects.config import ProjectConfig
from backend.rounds import lifecycle as round_lifecycle
from backend.rounds.repository import answered_before
from worker import pipeline
from worker.celery_app import app
from worker.jobs.steps import ProgressWriter, device, round_step, settings, split_arrays
from worker.ml.scoring import Scores, ScoringPrecision, resolve_precision
from worker.runtime import job_session


def _shard_progress_writer(round_id: int, start: int, num_train: int) -> ProgressWriter:
    """Each shard records its own count; the round's `done` is their sum, so shards never overwrite."""

    def write(session: Session, done: int, _total: int) -> None:
        round_ = round_lifecycle.locked_in(session, round_id, RoundState.scoring)
        if round_ is not None:
            _record_shard(round_, start, done, num_train)

    return ProgressWriter(write)


def _record_shard(
    round_: Round, start: int, shard_done: int, num_train: int, scored: int | None = None
) -> None:
    """The shard's count in the round's progress; done = `scored` rows if known, else the shards' sum."""
    shards = {**((round_.progress or {}).get("shards") or {}), str(start): shard_done}
    done = min(sum(shards.values()), num_train) if scored is None else scored
    round_lifecycle.record_progress(round_, done, num_train, shards=shards)


@app.task(name=job_names.SCORE)
def score(round_id: int, start: int, stop: int) -> None:
    """Score training examples [start, stop) of the round with the previous round's model."""
    with job_session() as session:
        round_ = session.get(Round, round_id)
        if round_ is None or round_.state != RoundState.scoring:
            return
        project = session.get(Project, round_.project_id)
        assert project is not None
        config = project.config
        number = round_.number
        previous = of_round_number(session, project.id, number - 1)
        train = split_arrays(session, project.id, Split.train)
        done_in_range = int(
            session.scalar(
                select(func.count(Score.id))
                .join(Example, Example.id == Score.example_id)
                .where(
                    Score.round_id == round_id, Example.dataset_index >= start, Example.dataset_index < stop
                )
            )
            or 0
        )
    with round_step(round_id, RoundState.scoring):
        if previous is None:
            raise RuntimeError(f"round {number - 1} has no checkpoint to score with")
        # An impossible setting (int8 on CUDA) fails the step with its message.
        precision = resolve_precision(settings().scoring_precision, device().type)
        checkpoint = settings().storage_dir / previous.file
        rows: list[dict[str, object]] = []
        seconds = 0.0
        if done_in_range != stop - start:
            model, _, _ = pipeline.load_model(checkpoint, device())
            images = storage.load_images(settings(), project, writable=True)[: len(train.labels)]
            writer = _shard_progress_writer(round_id, start, len(train.labels))
            shard_size = stop - start
            began = time.perf_counter()
            scores = pipeline.score_shard(
                model,
                config,
                number,
                images,
                train.sigma_indices,
                start,
                stop,
                device=device(),
                precision=precision,
                # score_examples counts noisy images planned so far (adaptive scoring plans fewer
                # as examples stop); the round counts examples: done's share of the shard.
                progress=lambda done, total: writer(done * shard_size // max(total, 1), shard_size),
            )
            seconds = time.perf_counter() - began
            rows = [
                _score_row(round_id, int(train.example_ids[start + offset]), scores, offset)
                for offset in range(shard_size)
            ]
        with job_session() as session:
            locked = round_lifecycle.locked_in(session, round_id, RoundState.scoring)
            if locked is None:
                return
            if rows:
                shard_ids = [row["example_id"] for row in rows]
                session.execute(
                    delete(Score).where(Score.round_id == round_id, Score.example_id.in_(shard_ids))
                )
                session.execute(insert(Score), rows)
                locked.scoring_seconds = (locked.scoring_seconds or 0.0) + seconds
            scored = int(session.scalar(select(func.count(Score.id)).where(Score.round_id == round_id)) or 0)
            _record_shard(locked, start, stop - start, len(train.labels), scored)
            locked.forward_passes = _drawn(session, round_id, config.draws)
            if scored < len(train.labels):
                return
            if config.scoring == "exact" or not _stopped_early(session, round_id, config.draws):
                _select_and_open(session, locked, project, config)
                return
        _complete_select_and_open(round_id, project.id, checkpoint, precision)


def _score_row(round_id: int, example_id: int, scores: Scores, offset: int) -> dict[str, object]:
    draws_used = int(scores.draws_used[offset]) if scores.draws_used is not None else scores.draws
    stopped_early = scores.draws is not None and draws_used is not None and draws_used < scores.draws
    return {
        "round_id": round_id,
        "example_id": example_id,
        "entropy": float(scores.entropy[offset]),
        "clean_uncertainty": float(scores.clean_uncertainty[offset]),
        "noise_uncertainty": float(scores.noise_uncertainty[offset]),
        "draws_used": draws_used,
        # Kept only where completion may need them (an example that stopped early).
        "class_counts": scores.class_counts[offset].tolist()
        if stopped_early and scores.class_counts is not None
        else None,
    }


def _drawn(session: Session, round_id: int, draws: int) -> int:
    """Noisy copies drawn for the round's scores so far (rows without a count drew all M)."""
    total = session.scalar(
        select(func.coalesce(func.sum(func.coalesce(Score.draws_used, draws)), 0)).where(
            Score.round_id == round_id
        )
    )
    return int(total or 0)


def _stopped_early(session: Session, round_id: int, draws: int) -> bool:
    probe = select(Score.id).where(Score.round_id == round_id, Score.draws_used < draws).limit(1)
    return session.scalar(probe) is not None


@dataclass(frozen=True)
class _SelectionInputs:
    example_ids: npt.NDArray[np.int64]  # training examples in dataset order
    sigma_before: npt.NDArray[np.int64]
    scores: Scores  # with draws_used and class_counts where the rows have them
    already_queried: npt.NDArray[np.bool_]


def _selection_inputs(session: Session, round_: Round, project: Project, draws: int) -> _SelectionInputs:
    rows = session.execute(
        select(
            Example.id,
            Example.sigma_index,
            Score.entropy,
            Score.clean_uncertainty,
            Score.noise_uncertainty,
            Score.draws_used,
            Score.class_counts,
        )
        .join(Score, Score.example_id == Example.id)
        .where(Score.round_id == round_.id, Example.split == Split.train)
        .order_by(Example.dataset_index)
    ).all()
    example_ids = np.array([row[0] for row in rows], dtype=np.int64)
    sigma_before = np.array([row[1] for row in rows], dtype=np.int64)
    values = np.array([row[2:5] for row in rows], dtype=np.float64).reshape(-1, 3)
    draws_used = np.array([draws if row[5] is None else row[5] for row in rows], dtype=np.int64)
    width = max([len(row[6]) for row in rows if row[6]] + [1])
    counts = np.zeros((len(rows), width), dtype=np.int64)
    for position, row in enumerate(rows):
        if row[6]:
            counts[position, : len(row[6])] = row[6]
    scores = Scores(
        values[:, 0].copy(),
        values[:, 1].copy(),
        values[:, 2].copy(),
        forward_passes=int(draws_used.sum()),
        draws_used=draws_used,
        draws=draws,
        class_counts=counts,
    )
    # Only answered queries exclude their example: one that closed unanswered may be asked again.
    earlier = answered_before(session, project.id, round_.number)
    already_queried = np.array([example_id in earlier for example_id in example_ids.tolist()], dtype=np.bool_)
    return _SelectionInputs(example_ids, sigma_before, scores, already_queried)


def _complete_select_and_open(
    round_id: int, project_id: int, checkpoint: Path, precision: ScoringPrecision
) -> None:
    """The adaptive round's selection: its early-stopped picks drawn on to all M copies outside any
    transaction, then the completed scores, the queries and annotating written in one."""
    with job_session() as session:
        round_ = round_lifecycle.locked_in(session, round_id, RoundState.scoring)
        if round_ is None:
            return
        project = session.get(Project, project_id)
        assert project is not None
        config, number = project.config, round_.number
        inputs = _selection_inputs(session, round_, project, config.draws)
    model, _, _ = pipeline.load_model(checkpoint, device())
    images = storage.load_images(settings(), project, writable=True)[: len(inputs.example_ids)]
    began = time.perf_counter()
    complete = pipeline.completion(
        model, config, number, images, inputs.sigma_before, device=device(), precision=precision
    )
    chosen, completed = pipeline.select_completed(
        config, number, inputs.scores, inputs.already_queried, complete
    )
    seconds = time.perf_counter() - began
    assert completed.draws_used is not None
    changed = np.flatnonzero(completed.draws_used != inputs.scores.draws_used)
    with job_session() as session:
        locked = round_lifecycle.locked_in(session, round_id, RoundState.scoring)
        if locked is None:
            return
        if changed.size:
            scores_table = cast(Table, Score.__table__)
            session.execute(
                update(scores_table).where(
                    scores_table.c.round_id == round_id, scores_table.c.example_id == bindparam("row_example")
                ),
                [
                    {
                        "row_example": int(inputs.example_ids[index]),
                        "entropy": float(completed.entropy[index]),
                        "noise_uncertainty": float(completed.noise_uncertainty[index]),
                        "draws_used": int(completed.draws_used[index]),
                        "class_counts": None,
                    }
                    for index in changed.tolist()
                ],
            )
        locked.scoring_seconds = (locked.scoring_seconds or 0.0) + seconds
        locked.forward_passes = _drawn(session, round_id, config.draws)
        _open(session, locked, config, inputs.example_ids, inputs.sigma_before, chosen)


def _select_and_open(session: Session, round_: Round, project: Project, config: ProjectConfig) -> None:
    """Selection (the strategy over every score of the round) -> queries -> annotating, in one transaction."""
    inputs = _selection_inputs(session, round_, project, config.draws)
    chosen, _ = pipeline.select_completed(config, round_.number, inputs.scores, inputs.already_queried)
    _open(session, round_, config, inputs.example_ids, inputs.sigma_before, chosen)


def _open(
    session: Session,
    round_: Round,
    config: ProjectConfig,
    example_ids: npt.NDArray[np.int64],
    sigma_before: npt.NDArray[np.int64],
    chosen: list[pipeline.Selected],
) -> None:
    """The chosen examples become the round's queries and the round moves to annotating; with a gold
    rate, the project's gold examples not chosen become its gold queries (`backend.gold`)."""
    overlap = config.overlap
    session.execute(delete(Query).where(Query.round_id == round_.id))
    session.add_all(
        Query(
            round_id=round_.id,
            example_id=int(example_ids[item.index]),
            side=QuerySide(item.side),
            score=item.score,
            required_answers=overlap,
            answer_count=0,
            sigma_index_before=int(sigma_before[item.index]),
            status="open",
        )
        for item in chosen
    )
    selected = {int(example_ids[item.index]) for item in chosen}
    if config.gold_rate > 0 and gold_repository.add_gold_queries(
        session, round_.id, round_.project_id, selected
    ):
        round_.gold_rate = config.gold_rate
    round_lifecycle.move(session, round_, RoundState.annotating, total=overlap * len(chosen))
    if not chosen:  # every example was answered before: nothing to ask, go on to retraining
        round_lifecycle.move(session, round_, RoundState.aggregating)
