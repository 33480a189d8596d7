"""`scoring.score`: one shard [start, stop) of a round's training examples; the last shard selects.

Scores of a shard are replaced whole (delete then insert) in the transaction that records them,
so a redelivered shard never double counts. The shard that brings the count of scored rows to
num_train (checked with the round row locked) runs the selection and opens annotation.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sqlalchemy import delete, func, insert, select
from sqlalchemy.orm import Session

from backend import storage
from backend.checkpoints.repository import of_round_number
from backend.models import Example, Project, Query, QuerySide, Round, RoundState, Score, Split
from backend.models._types import utcnow
from backend.rounds.repository import answered_before
from backend.rounds.service import close_round
from worker import pipeline
from worker.celery_app import app
from worker.runtime import task_session
from worker.tasks.steps import ProgressWriter, device, round_step, settings, split_arrays


def _shard_progress_writer(round_id: int, start: int, num_train: int) -> ProgressWriter:
    """Each shard records its own count; the round's `done` is their sum, so shards never overwrite."""

    def write(session: Session, done: int, total: int) -> None:
        round_ = session.scalar(select(Round).where(Round.id == round_id).with_for_update())
        if round_ is None or round_.state != RoundState.scoring:
            return
        progress = dict(round_.progress or {})
        shards = dict(progress.get("shards") or {})
        shards[str(start)] = done
        round_.progress = {
            "step": RoundState.scoring.value,
            "done": min(sum(shards.values()), num_train),
            "total": num_train,
            "shards": shards,
        }

    return ProgressWriter(write)


@app.task(name="scoring.score")
def score(round_id: int, start: int, stop: int) -> None:
    """Score training examples [start, stop) of the round with the previous round's model."""
    with task_session() as session:
        round_ = session.get(Round, round_id)
        if round_ is None or round_.state != RoundState.scoring:
            return
        project = session.get(Project, round_.project_id)
        assert project is not None
        config: dict[str, Any] = dict(project.config)
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
        rows: list[dict[str, object]] = []
        if done_in_range != stop - start:
            model, _, _ = pipeline.load_model(settings().storage_dir / previous.file, device())
            images = storage.load_images(settings(), project, writable=True)[: len(train.labels)]
            draws = int(config.get("draws", 50))
            writer = _shard_progress_writer(round_id, start, len(train.labels))
            scores = pipeline.score_shard(
                model,
                config,
                number,
                images,
                train.sigma_indices,
                start,
                stop,
                device=device(),
                # score_examples counts noisy images; the round counts examples.
                progress=lambda done, total: writer(done // draws, max(total // draws, 1)),
            )
            rows = [
                {
                    "round_id": round_id,
                    "example_id": int(train.example_ids[start + offset]),
                    "entropy": float(scores.entropy[offset]),
                    "clean_uncertainty": float(scores.clean_uncertainty[offset]),
                    "noise_uncertainty": float(scores.noise_uncertainty[offset]),
                }
                for offset in range(stop - start)
            ]
        with task_session() as session:
            locked = session.scalar(select(Round).where(Round.id == round_id).with_for_update())
            if locked is None or locked.state != RoundState.scoring:
                return
            if rows:
                shard_ids = [row["example_id"] for row in rows]
                session.execute(
                    delete(Score).where(Score.round_id == round_id, Score.example_id.in_(shard_ids))
                )
                session.execute(insert(Score), rows)
            scored = int(session.scalar(select(func.count(Score.id)).where(Score.round_id == round_id)) or 0)
            progress = dict(locked.progress or {})
            shards = dict(progress.get("shards") or {})
            shards[str(start)] = stop - start
            locked.progress = {
                "step": RoundState.scoring.value,
                "done": scored,
                "total": len(train.labels),
                "shards": shards,
            }
            if scored >= len(train.labels):
                _select_and_open(session, locked, project, config)


def _select_and_open(session: Session, round_: Round, project: Project, config: dict[str, Any]) -> None:
    """Selection (the strategy over every score of the round) -> queries -> annotating, in one transaction."""
    rows = session.execute(
        select(
            Example.id, Example.sigma_index, Score.entropy, Score.clean_uncertainty, Score.noise_uncertainty
        )
        .join(Score, Score.example_id == Example.id)
        .where(Score.round_id == round_.id, Example.split == Split.train)
        .order_by(Example.dataset_index)
    ).all()
    example_ids = np.array([row[0] for row in rows], dtype=np.int64)
    sigma_before = np.array([row[1] for row in rows], dtype=np.int64)
    values = np.array([row[2:] for row in rows], dtype=np.float64).reshape(-1, 3)
    # Only answered queries exclude their example: one that closed unanswered may be asked again.
    earlier = answered_before(session, project.id, round_.number)
    already_queried = np.array([example_id in earlier for example_id in example_ids.tolist()], dtype=np.bool_)
    chosen = pipeline.select_queries(
        config, round_.number, values[:, 0].copy(), values[:, 1].copy(), values[:, 2].copy(), already_queried
    )
    overlap = int(config.get("overlap", 2))
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
    round_.state = RoundState.annotating
    round_.annotating_at = utcnow()
    round_.progress = {"step": RoundState.annotating.value, "done": 0, "total": overlap * len(chosen)}
    session.flush()
    if not chosen:  # every example was answered before: nothing to ask, go on to retraining
        close_round(session, round_, closed_by=None)
