"""The FastAPI application factory."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI

import aqpl
from backend.auth.endpoints import router as auth_router
from backend.checkpoints.endpoints import router as checkpoints_router
from backend.db import create_db_engine, make_session_factory, warm_pool
from backend.errors import install_error_handlers
from backend.examples.endpoints import router as examples_router
from backend.limits import BodySizeLimit
from backend.metrics.endpoints import install_metrics
from backend.projects.endpoints import router as projects_router
from backend.queue import TaskSender, install_outbox, make_celery
from backend.rounds.endpoints import router as rounds_router
from backend.settings import Settings, get_settings
from backend.system.endpoints import router as system_router
from backend.tasks.endpoints import router as tasks_router
from backend.tokens.endpoints import router as tokens_router
from backend.ui.pages import router as ui_router
from backend.ui.pages import static_files
from backend.users.endpoints import router as users_router

API_PREFIX = "/api/v1"


def api_router() -> APIRouter:
    router = APIRouter(prefix=API_PREFIX)
    router.include_router(system_router)
    router.include_router(auth_router)
    router.include_router(users_router)
    router.include_router(tokens_router)
    router.include_router(tasks_router)
    router.include_router(examples_router)
    router.include_router(projects_router)
    router.include_router(rounds_router)
    router.include_router(checkpoints_router)
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
        await asyncio.to_thread(warm_pool, engine)
        # Everything alive now (modules, routes, mappers, schemas) lives as long as the app: keep it
        # out of the collector's full scans, which paused requests for up to ~130 ms (docs/load.md).
        gc.freeze()
        try:
            yield
        finally:
            gc.unfreeze()  # collectable again once the app is gone (tests start many apps)
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
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_upload_bytes)
    app.include_router(api_router())
    install_metrics(app)
    app.include_router(ui_router)
    app.mount("/static", static_files(), name="static")
    return app
