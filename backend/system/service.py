"""Health of the platform's dependencies."""

from __future__ import annotations

import platform
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from celery import Celery
from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

import aqpl
from backend.auth.scopes import MANAGE
from backend.auth.service import resolve_caller
from backend.db import unit_of_work
from backend.models import Role


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


def is_admin(sessions: sessionmaker[Session], token: str) -> bool:
    """Whether `token` is a valid token of an admin with the manage scope (False if the database is down)."""
    try:
        with unit_of_work(sessions) as session:
            caller = resolve_caller(session, token)
    except SQLAlchemyError:
        return False
    return caller is not None and caller.role == Role.admin and MANAGE in caller.scopes


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
