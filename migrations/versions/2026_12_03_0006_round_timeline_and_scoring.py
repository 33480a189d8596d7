"""round timeline and scoring cost: seconds per state, forward passes, scoring seconds, adaptive draws

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 17:30:00

- `rounds`: `state_seconds` (JSON state -> seconds spent in the states the round has left),
  `state_entered_at` (when it entered its current state; rounds that exist already count from
  their last update), `forward_passes` (noisy images classified for the round's selection) and
  `scoring_seconds` (summed over the scoring jobs).
- `scores`: `draws_used` (noisy copies drawn; < the project's draws where adaptive scoring stopped
  early) and `class_counts` (the predicted classes of those copies, kept only where it stopped
  early, so that the selection can complete them).
- Data: every stored project configuration gets `"scoring": "adaptive"` (ProjectConfig's default
  at this revision, frozen here) where it has no `scoring` key, so the stored JSON is complete as
  migration 0003 made it. The JSON stays schema_version 1: a key with a default is compatible.
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
SCORING_KEY = "scoring"
SCORING_DEFAULT = "adaptive"  # a frozen copy: ProjectConfig.scoring's default here

projects = sa.table("projects", sa.column("id", sa.Integer()), sa.column("config", _JSON))


def _rewrite_configs(change: Any) -> None:
    bind = op.get_bind()
    rows = bind.execute(sa.select(projects.c.id, projects.c.config)).all()
    updates = [
        {"row_id": row_id, "new_config": new}
        for row_id, config in rows
        if config is not None and (new := change(dict(config))) is not None
    ]
    if updates:
        statement = (
            projects.update()
            .where(projects.c.id == sa.bindparam("row_id"))
            .values(config=sa.bindparam("new_config"))
        )
        bind.execute(statement, updates)


def upgrade() -> None:
    with op.batch_alter_table("rounds", schema=None) as batch_op:
        batch_op.add_column(sa.Column("state_seconds", _JSON, nullable=True))
        batch_op.add_column(sa.Column("state_entered_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("forward_passes", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("scoring_seconds", sa.Float(), server_default="0", nullable=False))
    with op.batch_alter_table("scores", schema=None) as batch_op:
        batch_op.add_column(sa.Column("draws_used", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("class_counts", _JSON, nullable=True))
    op.execute(sa.text("UPDATE rounds SET state_entered_at = updated_at WHERE state_entered_at IS NULL"))
    _rewrite_configs(
        lambda config: None if SCORING_KEY in config else {**config, SCORING_KEY: SCORING_DEFAULT}
    )


def downgrade() -> None:
    _rewrite_configs(
        lambda config: (
            {key: value for key, value in config.items() if key != SCORING_KEY}
            if SCORING_KEY in config
            else None
        )
    )
    with op.batch_alter_table("scores", schema=None) as batch_op:
        batch_op.drop_column("class_counts")
        batch_op.drop_column("draws_used")
    with op.batch_alter_table("rounds", schema=None) as batch_op:
        batch_op.drop_column("scoring_seconds")
        batch_op.drop_column("forward_passes")
        batch_op.drop_column("state_entered_at")
        batch_op.drop_column("state_seconds")
