"""Migration 0003: projects stored before configurations had a schema_version load after the upgrade.

Compares the migrated JSON with what ProjectConfig fills in, so it also checks the migration's
frozen copy of the version-1 defaults against the model's (valid while the head is at version 1).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from backend.db import create_db_engine
from backend.migrate import downgrade_database, upgrade_database
from backend.models import Project
from backend.models._types import JSONType
from backend.projects.config import (
    CONFIG_SCHEMA_VERSION,
    DatasetSpec,
    EvaluationOptions,
    ProjectConfig,
    UnknownConfigVersion,
    dump_config,
)
from tests.conftest import DatabaseFactory

BEFORE = "0002"  # the last revision whose configurations carry no schema_version
users = sa.table(
    "users",
    sa.column("id", sa.Integer()),
    sa.column("username", sa.String()),
    sa.column("password_hash", sa.String()),
    sa.column("role", sa.String()),
    sa.column("is_active", sa.Boolean()),
    sa.column("created_at", sa.DateTime(timezone=True)),
)
projects = sa.table(
    "projects",
    sa.column("id", sa.Integer()),
    sa.column("name", sa.String()),
    sa.column("owner_id", sa.Integer()),
    sa.column("status", sa.String()),
    sa.column("config", JSONType),
    sa.column("noise_seed", sa.Integer()),
    sa.column("num_train", sa.Integer()),
    sa.column("num_test", sa.Integer()),
    sa.column("created_at", sa.DateTime(timezone=True)),
    sa.column("updated_at", sa.DateTime(timezone=True)),
)
# What older code stored: no schema_version; an early row also lacks the keys added later.
OLD_FULL = {
    "dataset": {"format": "npz", "path": "/data/digits.npz", "train_limit": None, "test_limit": 40},
    "model": "small_cnn",
    "method": "cat",
    "draws": 20,
    "budget": 3,
    "overlap": 3,
    "strategy": "random",
    "initial_sigma": 0.25,
    "epochs": 4,
    "finetune_epochs": 1,
    "batch_size": 32,
    "learning_rate": 0.01,
    "show_class_name": False,
    "show_sigma_marker": True,
    "auto_close": False,
    "disagreement_threshold": 1.5,
    "seed": 7,
    "evaluation": {"corruptions": ["fog", "snow"], "severities": [1, 3], "test_limit": 100},
    "open_first_round": True,
    "score_shard_size": 1000,
    "initial_sigma_index": 25,
}
OLD_SPARSE = {"dataset": {"format": "digits"}, "budget": 5, "initial_sigma_index": 30, "initial_sigma": 0.3}


def _insert_old_rows(engine: sa.Engine, configs: list[dict[str, Any]]) -> list[int]:
    now = datetime.now(UTC)
    with engine.begin() as connection:
        owner = connection.execute(
            sa.insert(users).returning(users.c.id),
            [
                {
                    "username": "old-lead",
                    "password_hash": "x",
                    "role": "lead",
                    "is_active": True,
                    "created_at": now,
                }
            ],
        ).scalar_one()
        return [
            connection.execute(
                sa.insert(projects).returning(projects.c.id),
                [
                    {
                        "name": f"old {index}",
                        "owner_id": owner,
                        "status": "ready",
                        "config": config,
                        "noise_seed": 0,
                        "num_train": 0,
                        "num_test": 0,
                        "created_at": now,
                        "updated_at": now,
                    }
                ],
            ).scalar_one()
            for index, config in enumerate(configs)
        ]


def _stored(engine: sa.Engine, project_id: int) -> dict[str, Any]:
    with engine.connect() as connection:
        stored: dict[str, Any] = connection.execute(
            sa.select(projects.c.config).where(projects.c.id == project_id)
        ).scalar_one()
    return stored


def test_unversioned_configs_upgrade_to_version_1_and_back(
    database_factory: DatabaseFactory, database_kind: str
) -> None:
    url = database_factory.create(database_kind)
    downgrade_database(url, BEFORE)
    engine = create_db_engine(url)
    try:
        full_id, sparse_id = _insert_old_rows(engine, [OLD_FULL, OLD_SPARSE])
        upgrade_database(url)

        full = ProjectConfig(
            dataset=DatasetSpec(format="npz", path="/data/digits.npz", test_limit=40),
            method="cat",
            draws=20,
            budget=3,
            overlap=3,
            strategy="random",
            initial_sigma=0.25,
            epochs=4,
            finetune_epochs=1,
            batch_size=32,
            learning_rate=0.01,
            show_class_name=False,
            show_sigma_marker=True,
            auto_close=False,
            disagreement_threshold=1.5,
            seed=7,
            evaluation=EvaluationOptions(corruptions=["fog", "snow"], severities=[1, 3], test_limit=100),
            open_first_round=True,
            score_shard_size=1000,
        )
        sparse = ProjectConfig(dataset=DatasetSpec(format="digits"), budget=5)  # the rest: defaults
        assert _stored(engine, full_id) == dump_config(full)  # every value kept
        assert _stored(engine, sparse_id) == dump_config(sparse)  # missing keys: the model's defaults
        assert _stored(engine, sparse_id)["schema_version"] == CONFIG_SCHEMA_VERSION == 1
        with Session(engine) as session:
            assert session.get(Project, full_id).config == full  # type: ignore[union-attr]
            assert session.get(Project, sparse_id).config == sparse  # type: ignore[union-attr]

        downgrade_database(url, BEFORE)  # the version goes; the filled-in values stay
        assert _stored(engine, full_id) == OLD_FULL
        assert "schema_version" not in _stored(engine, sparse_id)
        upgrade_database(url)
        assert _stored(engine, sparse_id) == dump_config(sparse)
    finally:
        engine.dispose()


def test_a_row_left_unversioned_is_refused_with_a_clear_error(
    database_factory: DatabaseFactory, database_kind: str
) -> None:
    """Code newer than its database (migrations not run) says what to do instead of guessing."""
    url = database_factory.create(database_kind)
    engine = create_db_engine(url)
    try:
        (project_id,) = _insert_old_rows(engine, [OLD_SPARSE])
        with (
            Session(engine) as session,
            pytest.raises(UnknownConfigVersion, match=r"no schema_version.*aqpl db upgrade"),
        ):
            session.get(Project, project_id)
    finally:
        engine.dispose()
