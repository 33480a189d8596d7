"""`evaluation.evaluate`: measure a round's trained weights, publish the checkpoint.

Round 0 is the pretrained model (the project becomes ready); round n >= 1 publishes the round.
The checkpoint file is written before the row; a redelivery rewrites the same bytes (evaluation
is deterministic) and finds the row already there.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from aqpl import job_names
from backend import storage
from backend.checkpoints.repository import of_round_number
from backend.models import Checkpoint, Project, ProjectStep, Round, RoundState, Split
from backend.projects import lifecycle as project_lifecycle
from backend.rounds import lifecycle as round_lifecycle
from backend.rounds.service import start_round
from backend.webhooks.events import CHECKPOINT_PUBLISHED, emit
from worker import pipeline
from worker.celery_app import app
from worker.jobs.steps import device, project_step, round_step, settings, split_arrays
from worker.ml.checkpoints import CheckpointInfo
from worker.runtime import job_session


@app.task(name=job_names.EVALUATE)
def evaluate(project_id: int, round_number: int) -> None:
    """Clean, Gaussian and corruption accuracy of the staged weights -> checkpoint -> ready / published."""
    with job_session() as session:
        project = session.get(Project, project_id)
        if project is None:
            return
        if round_number == 0:
            if not project_lifecycle.is_at(project, ProjectStep.evaluating):
                return
            round_id = None
        else:
            round_ = session.scalar(
                select(Round).where(Round.project_id == project_id, Round.number == round_number)
            )
            if round_ is None or round_.state != RoundState.evaluating:
                return
            round_id = round_.id
        config = project.config
        test = split_arrays(session, project_id, Split.test)
        num_train = project.num_train
    step = (
        project_step(project_id, ProjectStep.evaluating)
        if round_id is None
        else round_step(round_id, RoundState.evaluating)
    )
    with step:
        staged = storage.staged_weights_path(settings(), project_id, round_number)
        model, spec, metadata = pipeline.load_model(staged, device())
        images = storage.load_images(settings(), project, writable=True)
        x_test = images[num_train : num_train + len(test.labels)]
        evaluation = pipeline.evaluation_set(
            config, x_test, test.labels, cache_dir=storage.corruption_cache_dir(settings())
        )
        metrics = pipeline.evaluate_model(model, evaluation, device=device())
        path = storage.checkpoint_path(settings(), project_id, round_number)
        document = {key: value for key, value in metadata.items() if key not in ("spec",)}
        document.update(
            {
                "project_id": project_id,
                "metrics": metrics,
                "evaluation": config.evaluation.model_dump(mode="json"),
                # The project's split sizes; metrics["test_examples"] is how many were evaluated.
                "data": {"train_examples": num_train, "test_examples": len(test.labels)},
            }
        )
        info = pipeline.publish_weights(path, model, spec, document)  # + ONNX export beside it
        with job_session() as session:
            if round_id is None:
                project = project_lifecycle.locked_at(session, project_id, ProjectStep.evaluating)
                if project is None:
                    return
                _record_checkpoint(session, project_id, None, round_number, path, info, metrics)
                project_lifecycle.advance(session, project, ProjectStep.ready)
                if config.open_first_round:
                    start_round(session, project, started_by=None)
            else:
                current = round_lifecycle.locked_in(session, round_id, RoundState.evaluating)
                if current is None:
                    return
                _record_checkpoint(session, project_id, round_id, round_number, path, info, metrics)
                round_lifecycle.move(session, current, RoundState.published)
        staged.unlink(missing_ok=True)


def _record_checkpoint(
    session: Session,
    project_id: int,
    round_id: int | None,
    round_number: int,
    path: Path,
    info: CheckpointInfo,
    metrics: dict[str, Any],
) -> None:
    """The checkpoint's row, once: a redelivered evaluation finds it there. Its checkpoint.published
    webhooks are queued with the row (so once), and sent after commit."""
    if of_round_number(session, project_id, round_number) is None:
        checkpoint = Checkpoint(
            project_id=project_id,
            round_id=round_id,
            round_number=round_number,
            file=storage.relative_to_storage(settings(), path),
            sha256=info.sha256,
            size_bytes=info.size_bytes,
            meta=info.metadata,
            metrics=metrics,
        )
        session.add(checkpoint)
        session.flush()
        emit(
            session,
            project_id,
            CHECKPOINT_PUBLISHED,
            {
                "round_id": round_id,
                "round_number": round_number,
                "checkpoint_id": checkpoint.id,
                "sha256": checkpoint.sha256,
                "file_url": f"/api/v1/checkpoints/{checkpoint.id}/file",
            },
        )
