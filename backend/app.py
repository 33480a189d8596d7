"""The FastAPI application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI

import aqpl
from backend.db import create_db_engine, make_session_factory
from backend.errors import install_error_handlers
from backend.queue import TaskSender, install_outbox, make_celery
from backend.settings import Settings, get_settings
from backend.system.endpoints import router as system_router

API_PREFIX = "/api/v1"


def api_router() -> APIRouter:
    router = APIRouter(prefix=API_PREFIX)
    router.include_router(system_router)
    return router


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app; the engine and the Celery client are made at start-up, per app."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_db_engine(settings.database_url)
        celery = make_celery(settings)
        sessions = make_session_factory(engine)
        install_outbox(sessions, TaskSender(celery))
        app.state.engine = engine
        app.state.sessions = sessions
        app.state.celery = celery
        try:
            yield
        finally:
            engine.dispose()

    app = FastAPI(
        title="AQPL Studio",
        version=aqpl.__version__,
        summary="Actively query per-example perturbation levels and train robust image models.",
        docs_url="/api/docs",
        openapi_url="/openapi.json",
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.settings = settings
    install_error_handlers(app)
    app.include_router(api_router())
    return app
