from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect

from backend.db import Base, create_db_engine
from backend.migrate import alembic_config, downgrade_database, upgrade_database
from tests.conftest import DatabaseFactory


def test_database_is_at_head(engine: Engine) -> None:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    with engine.connect() as connection:
        assert MigrationContext.configure(connection).get_current_revision() == head


def test_models_match_migrations(engine: Engine) -> None:
    """A model changed without a migration would show up here as a difference."""
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, Base.metadata)
    assert differences == []


def test_every_constraint_is_named(engine: Engine) -> None:
    inspector = inspect(engine)
    for table in inspector.get_table_names():
        for foreign_key in inspector.get_foreign_keys(table):
            assert foreign_key["name"], f"unnamed foreign key on {table}"
        for unique in inspector.get_unique_constraints(table):
            assert unique["name"], f"unnamed unique constraint on {table}"


def test_downgrade_and_upgrade_round_trip(database_factory: DatabaseFactory, database_kind: str) -> None:
    url = database_factory.create(database_kind)
    downgrade_database(url, "base")
    engine = create_db_engine(url)
    try:
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
        upgrade_database(url)
        inspector = inspect(engine)
        assert {"users", "projects", "examples", "rounds", "queries", "annotations", "checkpoints"} <= set(
            inspector.get_table_names()
        )
    finally:
        engine.dispose()
