"""`rounds.aggregate`: answers -> σ per queried example, agreement, histograms; then retraining.

The whole step is one transaction that ends by moving the round to `training`, so a
redelivered task finds the round past `aggregating` and does nothing.
"""

from __future__ import annotations

import logging
from typing import Any

from celery.signals import worker_ready
from sqlalchemy import select

from backend.annotations.aggregation import (
    krippendorff_alpha_interval,
    median_absolute_deviation,
    median_on_ladder,
)
from backend.db import create_db_engine, make_session_factory, unit_of_work
from backend.models import Example, Project, ProjectStatus, Query, Round, RoundState, SigmaChange, SigmaSource
from backend.projects.repository import sigma_histogram
from backend.projects.service import STEP_EVALUATING, STEP_IMPORTING, STEP_PRETRAINING
from backend.queue import TaskSender, enqueue_after_commit, install_outbox
from backend.rounds.repository import answers_by_query
from backend.rounds.service import DEFAULT_SHARD_SIZE, STEP_TASKS, shard_ranges
from backend.settings import get_settings
from worker.celery_app import app
from worker.runtime import task_session
from worker.tasks.steps import round_step

logger = logging.getLogger("aqpl.worker")


@app.task(name="rounds.aggregate")
def aggregate(round_id: int) -> None:
    """aggregating -> training: σ = median of the answers (on the ladder), MAD, alpha, histograms."""
    with round_step(round_id, RoundState.aggregating), task_session() as session:
        round_ = session.scalar(select(Round).where(Round.id == round_id).with_for_update())
        if round_ is None or round_.state != RoundState.aggregating:
            return
        round_.sigma_histogram_before = sigma_histogram(session, round_.project_id)
        answers = answers_by_query(session, round_id)
        queries = session.scalars(select(Query).where(Query.round_id == round_id).order_by(Query.id)).all()
        examples = {
            example.id: example
            for example in session.scalars(
                select(Example).where(Example.id.in_([query.example_id for query in queries]))
            )
        }
        for query in queries:
            values = answers.get(query.id, [])
            if not values:
                continue  # nobody answered before the close: σ stays, a later round may ask again
            query.result_sigma_index = median_on_ladder(values)
            query.result_mad = median_absolute_deviation(values)
            example = examples[query.example_id]
            session.add(
                SigmaChange(
                    example_id=example.id,
                    round_number=round_.number,
                    old_sigma_index=example.sigma_index,
                    new_sigma_index=query.result_sigma_index,
                    source=SigmaSource.queried,
                )
            )
            example.sigma_index = query.result_sigma_index
            example.sigma_source = SigmaSource.queried
            example.sigma_round = round_.number
        session.flush()
        round_.krippendorff_alpha = krippendorff_alpha_interval(
            [answers.get(query.id, []) for query in queries]
        )
        round_.sigma_histogram_after = sigma_histogram(session, round_.project_id)
        round_.state = RoundState.training
        round_.progress = {"step": RoundState.training.value, "done": 0, "total": 1}
        enqueue_after_commit(session, "training.finetune", round_id)


@worker_ready.connect
def _resume_after_restart(**_: Any) -> None:
    # The filesystem broker forgets a message once a worker takes it, so a worker killed mid-step
    # loses its task; Redis hands it out again after the visibility timeout instead.
    if get_settings().is_embedded_broker:
        resume_interrupted_steps()


def resume_interrupted_steps() -> int:
    """Send again the step of every project and round that is mid-way; returns how many were sent.

    Safe to call at any time: each step checks its state first, so one that is queued or running
    already does its work once.
    """
    from worker.celery_app import app

    engine = create_db_engine(get_settings().database_url)
    sent = 0
    try:
        factory = make_session_factory(engine)
        install_outbox(factory, TaskSender(app))
        with unit_of_work(factory) as session:
            for project in session.scalars(
                select(Project).where(
                    Project.status.in_([ProjectStatus.importing, ProjectStatus.pretraining])
                )
            ):
                step = (project.progress or {}).get("step")
                if step == STEP_IMPORTING:
                    enqueue_after_commit(session, "datasets.import", project.id)
                elif step == STEP_PRETRAINING:
                    enqueue_after_commit(session, "training.pretrain", project.id)
                elif step == STEP_EVALUATING:
                    enqueue_after_commit(session, "evaluation.evaluate", project.id, 0)
                else:
                    continue
                sent += 1
            for round_ in session.scalars(select(Round).where(Round.state.in_(list(STEP_TASKS)))):
                if round_.state == RoundState.scoring:
                    owner = session.get(Project, round_.project_id)
                    assert owner is not None
                    shard_size = int(owner.config.get("score_shard_size", DEFAULT_SHARD_SIZE))
                    for start, stop in shard_ranges(owner.num_train, shard_size):
                        enqueue_after_commit(session, "scoring.score", round_.id, start, stop)
                        sent += 1
                elif round_.state == RoundState.evaluating:
                    enqueue_after_commit(session, "evaluation.evaluate", round_.project_id, round_.number)
                    sent += 1
                else:
                    enqueue_after_commit(session, STEP_TASKS[round_.state], round_.id)
                    sent += 1
    finally:
        engine.dispose()
    if sent:
        logger.info("resumed %d interrupted step(s) after a worker restart", sent)
    return sent
