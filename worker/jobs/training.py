"""`training.pretrain` (project, round 0) and `training.finetune` (after a round's answers).

Both write trained weights to a staged file; `evaluation.evaluate` measures them and publishes
the checkpoint. Training is deterministic on CPU, so a redelivered task rewrites the same file.
"""

from __future__ import annotations

import numpy as np
from sqlalchemy import update

from aqpl import job_names
from backend import storage
from backend.checkpoints.repository import of_round_number
from backend.models import Example, Project, ProjectStep, Round, RoundState, SigmaChange, SigmaSource, Split
from backend.projects import lifecycle as project_lifecycle
from backend.rounds import lifecycle as round_lifecycle
from worker import pipeline
from worker.celery_app import app
from worker.jobs.steps import (
    device,
    project_progress_writer,
    project_step,
    round_progress_writer,
    round_step,
    settings,
    split_arrays,
)
from worker.runtime import job_session


@app.task(name=job_names.PRETRAIN)
def pretrain(project_id: int) -> None:
    """Train from fresh weights with the initial σ (GNT) or adapting it (CAT); then evaluate round 0."""
    with job_session() as session:
        project = session.get(Project, project_id)
        if project is None or not project_lifecycle.is_at(project, ProjectStep.pretraining):
            return
        config = project.config
        class_names = list(project.class_names or [])
        train = split_arrays(session, project_id, Split.train)
    with project_step(project_id, ProjectStep.pretraining):
        images = storage.load_images(settings(), project, writable=True)[: len(train.labels)]
        trained = pipeline.pretrain(
            config,
            images,
            train.labels,
            class_names,
            train.sigma_indices,
            device=device(),
            progress=project_progress_writer(project_id, ProjectStep.pretraining),
        )
        metadata = pipeline.training_metadata(
            config, 0, trained.train_config, trained.result, trained.sigma_indices
        )
        pipeline.save_weights(
            storage.staged_weights_path(settings(), project_id, 0), trained.model, trained.spec, metadata
        )
        if config.oracle_reference:  # Eq. 7's F_o, for σ_o beside the people's answers (rounds.aggregate)
            pipeline.train_reference(
                config,
                images,
                train.labels,
                class_names,
                device=device(),
                path=storage.reference_path(settings(), project_id),
            )
        with job_session() as session:
            project = project_lifecycle.locked_at(session, project_id, ProjectStep.pretraining)
            if project is None:
                return
            changed = np.flatnonzero(trained.sigma_indices != train.sigma_indices)
            if changed.size:  # CAT adapted these examples' σ while training
                session.execute(
                    update(Example),
                    [
                        {
                            "id": int(train.example_ids[row]),
                            "sigma_index": int(trained.sigma_indices[row]),
                            "sigma_source": SigmaSource.adapted,
                            "sigma_round": 0,
                        }
                        for row in changed.tolist()
                    ],
                )
                session.add_all(
                    SigmaChange(
                        example_id=int(train.example_ids[row]),
                        round_number=0,
                        old_sigma_index=int(train.sigma_indices[row]),
                        new_sigma_index=int(trained.sigma_indices[row]),
                        source=SigmaSource.adapted,
                    )
                    for row in changed.tolist()
                )
            project_lifecycle.advance(session, project, ProjectStep.evaluating)


@app.task(name=job_names.FINETUNE)
def finetune(round_id: int) -> None:
    """training -> evaluating: continue the previous checkpoint's model on the updated σ."""
    with job_session() as session:
        round_ = session.get(Round, round_id)
        if round_ is None or round_.state != RoundState.training:
            return
        project = session.get(Project, round_.project_id)
        assert project is not None
        previous = of_round_number(session, project.id, round_.number - 1)
        config = project.config
        number = round_.number
        train = split_arrays(session, project.id, Split.train)
    with round_step(round_id, RoundState.training):
        if previous is None:
            raise RuntimeError(f"round {number - 1} has no checkpoint to fine-tune from")
        model, spec, _ = pipeline.load_model(settings().storage_dir / previous.file, device())
        images = storage.load_images(settings(), project, writable=True)[: len(train.labels)]
        result, train_config = pipeline.finetune(
            model,
            config,
            number,
            images,
            train.labels,
            train.sigma_indices,
            device=device(),
            progress=round_progress_writer(round_id, RoundState.training),
        )
        metadata = pipeline.training_metadata(
            config,
            number,
            train_config,
            result,
            train.sigma_indices,
            {"parent_checkpoint_sha256": previous.sha256},
        )
        pipeline.save_weights(
            storage.staged_weights_path(settings(), project.id, number), model, spec, metadata
        )
        with job_session() as session:
            locked = round_lifecycle.locked_in(session, round_id, RoundState.training)
            if locked is not None:
                round_lifecycle.move(session, locked, RoundState.evaluating)
