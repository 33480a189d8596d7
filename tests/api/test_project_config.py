"""ProjectConfig: its defaults, its validation, and its trip through the projects.config column."""

from __future__ import annotations

import json
from typing import Any

import pytest
import sqlalchemy as sa
from pydantic import ValidationError
from sqlalchemy.exc import StatementError
from sqlalchemy.orm import Session

from backend.models import Project, ProjectStatus, Role
from backend.models._types import JSONType
from backend.projects.config import (
    CONFIG_SCHEMA_VERSION,
    DatasetSpec,
    EvaluationOptions,
    ProjectConfig,
    UnknownConfigVersion,
    dump_config,
    field_defaults,
    load_config,
)
from backend.projects.schemas import ProjectCreate
from tests.api.factories import make_project, make_user

DIGITS = DatasetSpec(format="digits")
raw_projects = sa.table("projects", sa.column("id", sa.Integer()), sa.column("config", JSONType))


def test_defaults() -> None:
    config = ProjectConfig(dataset=DIGITS)
    assert config.model_dump(exclude={"dataset"}) == {
        "model": "small_cnn",
        "method": "gnt",
        "draws": 50,
        "budget": 10,
        "overlap": 2,
        "strategy": "aqpl",
        "initial_sigma": 0.3,
        "epochs": 5,
        "finetune_epochs": 2,
        "batch_size": 64,
        "learning_rate": 0.05,
        "show_class_name": True,
        "show_sigma_marker": False,
        "auto_close": True,
        "disagreement_threshold": None,
        "seed": 0,
        "evaluation": {"corruptions": None, "severities": [1, 2, 3, 4, 5], "test_limit": None},
        "open_first_round": False,
        "score_shard_size": 5000,
        "scoring": "adaptive",
        "oracle_reference": False,
        "gold_rate": 0.0,
        "gold_max_error": 10.0,
        "gold_min_answers": 3,
        "exclude_flagged": False,
        "initial_sigma_index": 30,  # derived from initial_sigma
    }
    assert config.dataset.model_dump() == {
        "format": "digits",
        "path": None,
        "train_limit": None,
        "test_limit": None,
    }
    defaults = field_defaults()  # what the form starts at
    assert "dataset" not in defaults
    assert {**defaults, "evaluation": defaults["evaluation"].model_dump()} == config.model_dump(
        exclude={"dataset", "initial_sigma_index"}
    )


def test_the_request_body_is_the_config_plus_a_name() -> None:
    assert issubclass(ProjectCreate, ProjectConfig)
    assert set(ProjectCreate.model_fields) == set(ProjectConfig.model_fields) | {"name"}
    body = ProjectCreate(name="p", dataset=DIGITS, budget=3)
    assert body.to_config() == ProjectConfig(dataset=DIGITS, budget=3)
    assert type(body.to_config()) is ProjectConfig  # what the column takes (no name)


def test_the_ladder_index_follows_sigma() -> None:
    assert ProjectConfig(dataset=DIGITS, initial_sigma=0.57).initial_sigma_index == 57
    assert ProjectConfig(dataset=DIGITS, initial_sigma=0.0).initial_sigma_index == 0


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"draws": 0}, "draws"),
        ({"draws": 201}, "draws"),
        ({"overlap": 11}, "overlap"),
        ({"initial_sigma": 0.95}, "initial_sigma"),
        ({"learning_rate": 0.0}, "learning_rate"),
        ({"batch_size": 1}, "batch_size"),
        ({"model": "vgg"}, "model"),
        ({"strategy": "greedy"}, "strategy"),
        ({"score_shard_size": 0}, "score_shard_size"),
        ({"evaluation": {"corruptions": ["rain"]}}, "evaluation.corruptions"),
        ({"evaluation": {"severities": [0]}}, "evaluation.severities"),
        ({"dataset": {"format": "parquet"}}, "dataset.format"),
        ({"budgett": 3}, "budgett"),  # a misspelt setting is refused, not ignored
        ({"initial_sigma_index": 40}, "initial_sigma_index"),  # derived, never given
    ],
)
def test_invalid_settings_are_refused(change: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as raised:
        ProjectConfig.model_validate({"dataset": {"format": "digits"}, **change})
    assert [".".join(str(part) for part in error["loc"]) for error in raised.value.errors()] == [field]


def test_a_config_is_frozen() -> None:
    config = ProjectConfig(dataset=DIGITS)
    with pytest.raises(ValidationError, match="frozen"):
        config.draws = 3  # type: ignore[misc]
    assert config.model_copy(update={"draws": 3}).draws == 3 and config.draws == 50


def test_stored_json_round_trip() -> None:
    config = ProjectConfig(
        dataset=DatasetSpec(format="npz", path="/data/x.npz", train_limit=100),
        budget=4,
        initial_sigma=0.42,
        disagreement_threshold=2.0,
        evaluation=EvaluationOptions(corruptions=["fog"], severities=[5, 2], test_limit=50),
    )
    stored = dump_config(config)
    assert stored["schema_version"] == CONFIG_SCHEMA_VERSION == 1
    assert stored["initial_sigma_index"] == 42 and stored["evaluation"]["severities"] == [2, 5]
    assert load_config(json.loads(json.dumps(stored))) == config


@pytest.mark.parametrize("version", [None, 0, 2, "1"])
def test_an_unknown_schema_version_is_refused(version: object) -> None:
    stored = dump_config(ProjectConfig(dataset=DIGITS))
    if version is None:
        del stored["schema_version"]
    else:
        stored["schema_version"] = version
    with pytest.raises(UnknownConfigVersion, match="reads schema_version 1 only"):
        load_config(stored)


def _raw_config(session: Session, project_id: int) -> dict[str, Any]:
    value = session.execute(
        sa.select(raw_projects.c.config).where(raw_projects.c.id == project_id)
    ).scalar_one()
    return value if isinstance(value, dict) else json.loads(value)


def test_the_column_stores_versioned_json_and_loads_the_model(db_session: Session) -> None:
    """On SQLite and on PostgreSQL (JSONB)."""
    config = ProjectConfig(
        dataset=DatasetSpec(format="npz", path="/data/x.npz"),
        budget=4,
        evaluation=EvaluationOptions(severities=[1, 3]),
    )
    owner = make_user(db_session, Role.lead)
    project = Project(name="typed", owner_id=owner.id, status=ProjectStatus.ready, config=config)
    db_session.add(project)
    db_session.flush()
    assert _raw_config(db_session, project.id) == dump_config(config)

    db_session.expire_all()
    loaded = db_session.get(Project, project.id)
    assert loaded is not None and isinstance(loaded.config, ProjectConfig) and loaded.config == config
    # Column reads outside the ORM (the task and answer statements) get the model too.
    selected = db_session.execute(sa.select(Project.config).where(Project.id == project.id)).scalar_one()
    assert selected == config

    # A change is a new object, which is what SQLAlchemy sees.
    loaded.config = loaded.config.model_copy(update={"budget": 9})
    db_session.flush()
    db_session.expire_all()
    reloaded = db_session.get(Project, project.id)
    assert reloaded is not None and reloaded.config.budget == 9
    assert _raw_config(db_session, project.id)["budget"] == 9


def test_the_column_refuses_a_plain_dict(db_session: Session) -> None:
    owner = make_user(db_session, Role.lead)
    db_session.add(Project(name="untyped", owner_id=owner.id, config={"dataset": {"format": "digits"}}))
    with pytest.raises(StatementError, match="must be a ProjectConfig"):
        db_session.flush()


def test_loading_an_unknown_schema_version_from_the_database_fails_clearly(db_session: Session) -> None:
    project = make_project(db_session, make_user(db_session, Role.lead))
    newer = {**dump_config(project.config), "schema_version": 2}
    db_session.execute(sa.update(raw_projects).where(raw_projects.c.id == project.id).values(config=newer))
    db_session.expire_all()
    with pytest.raises(UnknownConfigVersion, match="schema_version 2"):
        db_session.get(Project, project.id)
