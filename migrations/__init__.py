"""Alembic migrations: the only way the schema is made or changed (`aqpl db upgrade`)."""
