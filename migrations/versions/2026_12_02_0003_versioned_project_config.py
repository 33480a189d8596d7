"""versioned project config: every stored configuration complete and marked schema_version 1

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 16:30:00

Data only (no column changes, so no batch operation): each project's config JSON gets
schema_version 1 and the version-1 default of every key it lacks, which is what
backend/projects/config.py's loader then requires. The defaults are a frozen copy of
ProjectConfig's at version 1, not an import: a migration must keep doing what it did when a later
version changes the model (tests/foundation/test_migrations.py checks the copy against the model
while the head is at version 1).
"""

from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from aqpl.ladder import index_of

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA_VERSION = 1
DATASET_DEFAULTS: dict[str, Any] = {"path": None, "train_limit": None, "test_limit": None}
EVALUATION_DEFAULTS: dict[str, Any] = {"corruptions": None, "severities": [1, 2, 3, 4, 5], "test_limit": None}
SETTING_DEFAULTS: dict[str, Any] = {
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
    "open_first_round": False,
    "score_shard_size": 5000,
}

projects = sa.table(
    "projects",
    sa.column("id", sa.Integer()),
    sa.column("config", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")),
)


def versioned(config: dict[str, Any]) -> dict[str, Any]:
    """An unversioned configuration as version 1: the keys it has, the defaults of those it lacks."""
    filled = {**SETTING_DEFAULTS, **config}
    if isinstance(filled.get("dataset"), dict):
        filled["dataset"] = {**DATASET_DEFAULTS, **filled["dataset"]}
    filled["evaluation"] = {**EVALUATION_DEFAULTS, **(filled.get("evaluation") or {})}
    filled.setdefault("initial_sigma_index", index_of(float(filled["initial_sigma"])))
    return {"schema_version": SCHEMA_VERSION, **filled}


def _rewrite(change: Callable[[dict[str, Any]], dict[str, Any] | None]) -> None:
    """Store change(config) for every project where it is not None."""
    bind = op.get_bind()
    rows = bind.execute(sa.select(projects.c.id, projects.c.config)).all()
    updates = [
        {"row_id": row_id, "new_config": new}
        for row_id, config in rows
        if (new := change(dict(config))) is not None
    ]
    if updates:
        statement = (
            projects.update()
            .where(projects.c.id == sa.bindparam("row_id"))
            .values(config=sa.bindparam("new_config"))
        )
        bind.execute(statement, updates)


def upgrade() -> None:
    _rewrite(lambda config: None if "schema_version" in config else versioned(config))


def downgrade() -> None:
    # The filled-in defaults stay: the code before this revision read the same values for them.
    _rewrite(lambda config: {key: value for key, value in config.items() if key != "schema_version"})
