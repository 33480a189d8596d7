"""Health of the platform's dependencies."""

from __future__ import annotations

import platform
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from celery import Celery
from sqlalchemy import Engine, text

import aqpl


def _package_version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def versions() -> dict[str, str | None]:
    return {
        "aqpl": aqpl.__version__,
        "python": platform.python_version(),
        **{name: _package_version(name) for name in ("fastapi", "sqlalchemy", "celery", "alembic")},
    }


def database_health(engine: Engine) -> dict[str, Any]:
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
            revision = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except Exception as exc:  # any driver error means "down"; the class name tells which
        return {"ok": False, "dialect": engine.dialect.name, "error": type(exc).__name__}
    return {"ok": True, "dialect": engine.dialect.name, "revision": revision}


def broker_health(celery: Celery) -> dict[str, Any]:
    transport = str(celery.conf.broker_url).split(":", 1)[0]
    try:
        with celery.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, interval_start=0, timeout=2)
    except Exception as exc:  # kombu raises many kinds; any of them means "down"
        return {"ok": False, "transport": transport, "error": type(exc).__name__}
    return {"ok": True, "transport": transport}
