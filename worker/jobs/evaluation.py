"""`evaluation.evaluate`: measure a round's trained weights, publish the checkpoint.

Round 0 is the pretrained model (the project becomes ready); round n >= 1 publishes the round.
The checkpoint file is written before the row; a redelivery rewrites the same bytes (evaluation
is deterministic) and finds the row already there.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from backend import storage
from backend.checkpoints.repository import of_round_number
from backend.models import Checkpoint, Project, ProjectStatus, Round, RoundState, Split
from backend.models._types import utcnow
from backend.projects.service import STEP_EVALUATING
from backend.rounds.service import start_round
from worker import pipeline
from worker.celery_app import app
from worker.runtime import task_session
from worker.tasks.steps import device, project_step, round_step, settings, split_arrays


@app.task(name="evaluation.evaluate")
def evaluate(project_id: int, round_number: int) -> None:
    """Clean, Gaussian and corruption accuracy of the staged weights -> checkpoint -> ready / published."""
    with task_session() as session:
        project = session.get(Project, project_id)
        if project is None:
            return
        if round_number == 0:
            if (
                project.status != ProjectStatus.pretraining
                or (project.progress or {}).get("step") != STEP_EVALUATING
            ):
                return
            round_id = None
        else:
            round_ = session.scalar(
                select(Round).where(Round.project_id == project_id, Round.number == round_number)
            )
            if round_ is None or round_.state != RoundState.evaluating:
                return
            round_id = round_.id
        config: dict[str, Any] = dict(project.config)
        test = split_arrays(session, project_id, Split.test)
        num_train = project.num_train
    step = (
        project_step(project_id, STEP_EVALUATING)
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
            {"project_id": project_id, "metrics": metrics, "evaluation": config.get("evaluation")}
        )
        info = pipeline.save_weights(path, model, spec, document)
        with task_session() as session:
            locked = session.scalar(select(Project).where(Project.id == project_id).with_for_update())
            assert locked is not None
            current: Round | None = None
            if round_id is not None:
                current = session.scalar(select(Round).where(Round.id == round_id).with_for_update())
                if current is None or current.state != RoundState.evaluating:
                    return
            elif locked.status != ProjectStatus.pretraining:
                return
            if of_round_number(session, project_id, round_number) is None:
                session.add(
                    Checkpoint(
                        project_id=project_id,
                        round_id=round_id,
                        round_number=round_number,
                        file=storage.relative_to_storage(settings(), path),
                        sha256=info.sha256,
                        size_bytes=info.size_bytes,
                        meta=info.metadata,
                        metrics=metrics,
                    )
                )
            if current is None:
                locked.status = ProjectStatus.ready
                locked.progress = None
                session.flush()
                if config.get("open_first_round"):
                    start_round(session, locked, started_by=None)
            else:
                current.state = RoundState.published
                current.published_at = utcnow()
                current.progress = None
        staged.unlink(missing_ok=True)
