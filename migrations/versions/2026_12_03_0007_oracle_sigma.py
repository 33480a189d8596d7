"""people against the simulated oracle: σ_o per query, and the project option that asks for it

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03 18:00:00

- `queries`: `oracle_sigma_index` (nullable ladder index): the simulated oracle's answer σ_o
  (Eq. 7, reference classifier F_o) for the query's example, recorded by the aggregation job of a
  project with `oracle_reference` on; NULL otherwise.
- Data: every stored project configuration gets `"oracle_reference": false` (ProjectConfig's
  default at this revision, frozen here) where it has no such key, so the stored JSON stays complete
  as migration 0003 made it. The JSON stays schema_version 1: a key with a default is compatible.
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
ORACLE_KEY = "oracle_reference"
ORACLE_DEFAULT = False  # a frozen copy: ProjectConfig.oracle_reference's default here

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
    with op.batch_alter_table("queries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("oracle_sigma_index", sa.Integer(), nullable=True))
    _rewrite_configs(lambda config: None if ORACLE_KEY in config else {**config, ORACLE_KEY: ORACLE_DEFAULT})


def downgrade() -> None:
    _rewrite_configs(
        lambda config: (
            {key: value for key, value in config.items() if key != ORACLE_KEY}
            if ORACLE_KEY in config
            else None
        )
    )
    with op.batch_alter_table("queries", schema=None) as batch_op:
        batch_op.drop_column("oracle_sigma_index")
