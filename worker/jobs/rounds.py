"""`rounds.aggregate`: answers -> σ per queried example, agreement, histograms; then retraining.

The whole step is one transaction that ends by moving the round to `training`, so a
redelivered task finds the round past `aggregating` and does nothing. Where the project trains
the reference classifier F_o (`oracle_reference`), the simulated oracle's σ_o of the round's
queries is computed first, with no transaction open (thousands of forward passes), and written
in that same transaction: a redelivery computes the same answers again (fixed noise seeds).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from celery.signals import worker_ready
from sqlalchemy import select

from aqpl import job_names
from backend import storage
from backend.annotations.aggregation import (
    krippendorff_alpha_interval,
    median_absolute_deviation,
    median_on_ladder,
)
from backend.db import create_db_engine, make_session_factory, unit_of_work
from backend.gold.quality import flagged_annotators
from backend.models import Example, Project, Round, RoundState, SigmaChange, SigmaSource, Split
from backend.projects import lifecycle as project_lifecycle
from backend.projects.repository import sigma_histogram
from backend.queue import JobSender, install_outbox
from backend.rounds import lifecycle as round_lifecycle
from backend.rounds.repository import answers_by_query, queries_of
from backend.settings import get_settings
from worker import pipeline
from worker.celery_app import app
from worker.jobs.steps import device, round_step, settings, split_arrays
from worker.runtime import job_session

logger = logging.getLogger("aqpl.worker")


@app.task(name=job_names.AGGREGATE)
def aggregate(round_id: int) -> None:
    """aggregating -> training: σ = median of the answers (on the ladder), MAD, alpha, histograms."""
    with round_step(round_id, RoundState.aggregating):
        oracle = _oracle_answers(round_id)
        _aggregate(round_id, oracle)


def _oracle_answers(round_id: int) -> dict[int, int]:
    """σ_o per query id of the round, where the project has F_o; empty otherwise."""
    with job_session() as session:
        round_ = session.get(Round, round_id)
        if round_ is None or round_.state != RoundState.aggregating:
            return {}
        project = session.get(Project, round_.project_id)
        assert project is not None
        if not project.config.oracle_reference:
            return {}
        config = project.config
        train = split_arrays(session, project.id, Split.train)
        queried = [(query.id, query.example_id) for query in queries_of(session, round_id)]
    if not queried:
        return {}
    path = storage.reference_path(settings(), project.id)
    if not path.exists():  # the people's answers still count; only the comparison is missing
        logger.warning("project %d has no reference classifier at %s: no σ_o this round", project.id, path)
        return {}
    row_of = {int(example_id): row for row, example_id in enumerate(train.example_ids.tolist())}
    rows = np.array([row_of[int(example_id)] for _, example_id in queried], dtype=np.int64)
    images = storage.load_images(settings(), project, writable=True)[: len(train.labels)]
    answers = pipeline.oracle_sigma(config, path, images, train.labels, rows, device=device())
    return {int(query_id): int(level) for (query_id, _), level in zip(queried, answers.tolist(), strict=True)}


def _aggregate(round_id: int, oracle: dict[int, int]) -> None:
    with job_session() as session:
        round_ = round_lifecycle.locked_in(session, round_id, RoundState.aggregating)
        if round_ is None:
            return
        round_.sigma_histogram_before = sigma_histogram(session, round_.project_id)
        project = session.get(Project, round_.project_id)
        assert project is not None  # foreign key
        config = project.config
        flagged = flagged_annotators(session, project.id, config) if config.exclude_flagged else set()
        answers = answers_by_query(session, round_id, leaving_out=flagged)
        queries = queries_of(session, round_id)
        examples = {
            example.id: example
            for example in session.scalars(
                select(Example).where(Example.id.in_([query.example_id for query in queries]))
            )
        }
        for query in queries:
            if query.id in oracle:
                query.oracle_sigma_index = oracle[query.id]
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
        round_lifecycle.move(session, round_, RoundState.training)


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
        install_outbox(factory, JobSender(app))
        with unit_of_work(factory) as session:
            sent = project_lifecycle.resend_interrupted(session) + round_lifecycle.resend_interrupted(session)
    finally:
        engine.dispose()
    if sent:
        logger.info("resumed %d interrupted step(s) after a worker restart", sent)
    return sent
