"""Row factories for API tests: users, a project with its images, examples, a round and its queries.

Rows are flushed, never committed: inside `db_session` they roll back with the test; on a committed
database wrap the calls in `unit_of_work`. Shared by every tests/api module (extend, don't fork).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from backend.app import create_app
from backend.auth.service import create_login_token
from backend.db import unit_of_work
from backend.models import (
    Example,
    Project,
    ProjectStatus,
    Query,
    QuerySide,
    Role,
    Round,
    RoundState,
    Score,
    Split,
    User,
)
from backend.projects.config import ProjectConfig
from backend.security import hash_password
from backend.settings import Settings
from backend.storage import write_images
from backend.tasks.repository import GOLD

PASSWORD = "correct-horse-battery"
_names = itertools.count(1)

DEFAULT_CONFIG: dict[str, Any] = {
    "dataset": {"format": "npz"},
    "model": "small_cnn",
    "method": "gnt",
    "draws": 4,
    "budget": 2,
    "overlap": 2,
    "strategy": "aqpl",
    "initial_sigma": 0.3,
    "epochs": 1,
    "finetune_epochs": 1,
    "batch_size": 8,
    "learning_rate": 0.01,
    "show_class_name": True,
    "show_sigma_marker": False,
    "auto_close": True,
    "disagreement_threshold": None,
    "seed": 0,
}


@cache
def _password_hash() -> str:
    return hash_password(PASSWORD)  # Argon2 is slow on purpose: hash the shared test password once


def make_user(session: Session, role: Role = Role.annotator, username: str | None = None) -> User:
    """A user whose password is PASSWORD."""
    user = User(username=username or f"{role.value}{next(_names)}", password_hash=_password_hash(), role=role)
    session.add(user)
    session.flush()
    return user


def make_project(
    session: Session,
    owner: User,
    *,
    image_shape: tuple[int, int, int] = (6, 5, 3),
    num_train: int = 0,
    num_test: int = 0,
    class_names: Sequence[str] = ("cat", "dog", "bird"),
    **config: Any,
) -> Project:
    project = Project(
        name=f"project {next(_names)}",
        owner_id=owner.id,
        status=ProjectStatus.ready,
        config=ProjectConfig.model_validate({**DEFAULT_CONFIG, **config}),
        noise_seed=7,
        image_shape=list(image_shape),
        class_names=list(class_names),
        num_train=num_train,
        num_test=num_test,
    )
    session.add(project)
    session.flush()
    return project


def make_examples(
    session: Session, project: Project, count: int, split: Split = Split.train
) -> list[Example]:
    """`count` examples of `split` (labels cycle through the classes); updates the project's counts."""
    offset = project.num_train if split == Split.train else project.num_test
    num_classes = len(project.class_names or ["a"])
    examples = [
        Example(
            project_id=project.id,
            dataset_index=offset + i,
            split=split,
            label=(offset + i) % num_classes,
            sigma_index=30,
        )
        for i in range(count)
    ]
    session.add_all(examples)
    if split == Split.train:
        project.num_train += count
    else:
        project.num_test += count
    session.flush()
    return examples


def write_project_images(settings: Settings, project: Project, seed: int = 0) -> np.ndarray:
    """Random uint8 images at the contracted storage path, one row per example of the project."""
    assert project.image_shape is not None
    rows = project.num_train + project.num_test
    images = np.random.default_rng(seed).integers(0, 256, (rows, *project.image_shape), dtype=np.uint8)
    write_images(settings, project.id, images)
    return images


def make_round(
    session: Session, project: Project, number: int = 1, state: RoundState = RoundState.annotating
) -> Round:
    round_ = Round(
        project_id=project.id,
        number=number,
        state=state,
        annotating_at=datetime.now(UTC) if state == RoundState.annotating else None,
    )
    session.add(round_)
    session.flush()
    return round_


def make_scored_round(session: Session, project: Project, number: int, examples: Sequence[Example]) -> Round:
    """Round `number` in scoring with every example scored, H falling with the position in `examples`
    (the first ranks highest: most excessive; the last lowest: most deficient)."""
    round_ = make_round(session, project, number, RoundState.scoring)
    session.add_all(
        Score(
            round_id=round_.id,
            example_id=example.id,
            entropy=1.0 - index / (len(examples) + 1),
            clean_uncertainty=0.0,
            noise_uncertainty=0.0,
        )
        for index, example in enumerate(examples)
    )
    session.flush()
    return round_


def make_queries(
    session: Session, round_: Round, examples: Sequence[Example], required_answers: int | None = None
) -> list[Query]:
    """One open query per example; `required_answers` defaults to the project's overlap."""
    if required_answers is None:
        project = session.get(Project, round_.project_id)
        assert project is not None
        required_answers = project.config.overlap
    queries = [
        Query(
            round_id=round_.id,
            example_id=example.id,
            side=QuerySide.excessive if i % 2 == 0 else QuerySide.deficient,
            score=1.0 - i / max(1, len(examples)),
            required_answers=required_answers,
            sigma_index_before=example.sigma_index,
        )
        for i, example in enumerate(examples)
    ]
    session.add_all(queries)
    session.flush()
    return queries


def make_annotating_round(
    session: Session, owner: User, queries: int = 3, **config: Any
) -> tuple[Project, Round, list[Query]]:
    """A ready project with `queries` training examples, each queried in round 1 (annotating)."""
    project = make_project(session, owner, **config)
    examples = make_examples(session, project, queries)
    round_ = make_round(session, project)
    return project, round_, make_queries(session, round_, examples)


def make_gold_queries(
    session: Session, round_: Round, examples: Sequence[Example], known: int
) -> list[Query]:
    """A gold query of `round_` per example, of known σ index `known` (as the round's start makes them)."""
    queries = [
        Query(
            round_id=round_.id,
            example_id=example.id,
            side=QuerySide.gold,
            score=0.0,
            required_answers=0,
            answer_count=0,
            sigma_index_before=example.sigma_index,
            gold_sigma_index=known,
            status=GOLD,
        )
        for example in examples
    ]
    session.add_all(queries)
    session.flush()
    return queries


@dataclass
class Api:
    """A running app (lifespan started) on a committed database, with a way to seed rows."""

    app: FastAPI
    client: TestClient
    settings: Settings
    sessions: sessionmaker[Session]

    @contextmanager
    def seed(self) -> Iterator[Session]:
        """A committed unit of work on the app's database."""
        with unit_of_work(self.sessions) as session:
            yield session

    def headers_for(self, user: User) -> dict[str, str]:
        """Bearer headers of a fresh login token of `user` (every scope of the role)."""
        with self.seed() as session:
            token = create_login_token(session, user)
        return {"Authorization": f"Bearer {token}"}


def new_user(api: Api, role: Role = Role.annotator) -> User:
    """A committed user of the app's database whose password is PASSWORD."""
    with api.seed() as session:
        return make_user(session, role)


@contextmanager
def running_api(database_url: str, data_dir: Path, **settings: Any) -> Iterator[Api]:
    """create_app on `database_url` (migrated, committed: use database_factory.create) under TestClient."""
    app_settings = Settings(data_dir=data_dir, database_url=database_url, **settings)
    app = create_app(app_settings)
    with TestClient(app) as client:
        yield Api(app, client, app_settings, app.state.sessions)
