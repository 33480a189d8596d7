"""gold questions: examples of known σ, gold queries mixed into tasks, and the settings that use them

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03 22:30:00

- `gold_examples`: an example of a project whose σ (ladder index) is known, taken from an earlier
  round's agreeing answers or typed in by a lead; unique per project and example.
- `queries`: `gold_sigma_index` (nullable ladder index): the known σ of a gold query (status
  "gold"), created beside the round's selected queries when it starts annotating.
- `rounds`: `gold_rate` (0 where the round has no gold queries): the share of tasks that are gold.
- Data: every stored project configuration gets `gold_rate: 0.0`, `gold_max_error: 10.0`,
  `gold_min_answers: 3` and `exclude_flagged: false` (ProjectConfig's defaults at this revision,
  frozen here) where it lacks them, so the stored JSON stays complete as migration 0003 made it.
  The JSON stays schema_version 1: keys with defaults are compatible.
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
# Frozen copies: ProjectConfig's defaults at this revision.
GOLD_DEFAULTS: dict[str, Any] = {
    "gold_rate": 0.0,
    "gold_max_error": 10.0,
    "gold_min_answers": 3,
    "exclude_flagged": False,
}

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


def _with_defaults(config: dict[str, Any]) -> dict[str, Any] | None:
    missing = {key: value for key, value in GOLD_DEFAULTS.items() if key not in config}
    return {**config, **missing} if missing else None


def _without_keys(config: dict[str, Any]) -> dict[str, Any] | None:
    if not any(key in config for key in GOLD_DEFAULTS):
        return None
    return {key: value for key, value in config.items() if key not in GOLD_DEFAULTS}


def upgrade() -> None:
    op.create_table(
        "gold_examples",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("example_id", sa.Integer(), nullable=False),
        sa.Column("sigma_index", sa.Integer(), nullable=False),
        sa.Column(
            "source",
            sa.Enum("agreement", "typed", name="goldsource", native_enum=False, length=16),
            nullable=False,
        ),
        sa.Column("from_query_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_gold_examples_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["example_id"],
            ["examples.id"],
            name=op.f("fk_gold_examples_example_id_examples"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["from_query_id"],
            ["queries.id"],
            name=op.f("fk_gold_examples_from_query_id_queries"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["created_by"], ["users.id"], name=op.f("fk_gold_examples_created_by_users"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_gold_examples")),
        sa.UniqueConstraint("project_id", "example_id", name=op.f("uq_gold_examples_project_id_example_id")),
    )
    with op.batch_alter_table("gold_examples", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_gold_examples_project_id"), ["project_id"], unique=False)
    with op.batch_alter_table("queries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("gold_sigma_index", sa.Integer(), nullable=True))
    with op.batch_alter_table("rounds", schema=None) as batch_op:
        batch_op.add_column(sa.Column("gold_rate", sa.Float(), server_default="0", nullable=False))
    _rewrite_configs(_with_defaults)


def downgrade() -> None:
    _rewrite_configs(_without_keys)
    with op.batch_alter_table("rounds", schema=None) as batch_op:
        batch_op.drop_column("gold_rate")
    # Gold queries have no meaning without the column that marks them; their answers go with them.
    op.execute(sa.text("DELETE FROM queries WHERE status = 'gold'"))
    with op.batch_alter_table("queries", schema=None) as batch_op:
        batch_op.drop_column("gold_sigma_index")
    with op.batch_alter_table("gold_examples", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_gold_examples_project_id"))
    op.drop_table("gold_examples")
