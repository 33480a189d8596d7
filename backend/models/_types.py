"""Column types and helpers shared by the models."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Dialect
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.types import TypeDecorator, TypeEngine

from backend.projects.config import ProjectConfig, dump_config, load_config

# JSONB on PostgreSQL (indexable, compact), plain JSON text on SQLite.
JSONType: TypeEngine[Any] = JSON().with_variant(JSONB(), "postgresql")


class UTCDateTimeType(TypeDecorator[datetime]):
    """An instant, stored as UTC on every database and read back as an aware UTC datetime.

    SQLite has no time zone: its DATETIME keeps the wall time it is given and drops the offset, so
    2030-01-01T12:00+14:00 was stored as 12:00 and read back as 12:00 UTC, 14 hours late. Aware
    values are converted to UTC before they are bound; naive ones are refused (their zone is a guess).
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"a timestamp must be a datetime, got {type(value).__name__}")
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"a timestamp needs a time zone (naive {value.isoformat()} refused)")
        utc = value.astimezone(UTC)
        return utc.replace(tzinfo=None) if dialect.name == "sqlite" else utc

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        # SQLite hands back the naive UTC wall time; PostgreSQL an aware one in the session's zone.
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


UTCDateTime = UTCDateTimeType()


class ProjectConfigJSON(TypeDecorator[ProjectConfig]):
    """A ProjectConfig in Python, its JSON with a schema_version in the column (JSONType's types).

    Binding takes a ProjectConfig only, so no unchecked dict is stored; loading validates, and
    refuses a schema_version this code does not know (projects.config.UnknownConfigVersion).
    """

    impl = JSON
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        return dialect.type_descriptor(JSONB() if dialect.name == "postgresql" else JSON())

    def process_bind_param(self, value: ProjectConfig | None, dialect: Dialect) -> dict[str, Any] | None:
        if value is None:
            return None
        if type(value) is not ProjectConfig:  # a subclass (ProjectCreate) would store its extra fields
            raise TypeError(f"a project's config must be a ProjectConfig, got {type(value).__name__}")
        return dump_config(value)

    def process_result_value(self, value: Any | None, dialect: Dialect) -> ProjectConfig | None:
        return None if value is None else load_config(value)


def utcnow() -> datetime:
    return datetime.now(UTC)
