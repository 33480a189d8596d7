"""The FastAPI application factory."""

from __future__ import annotations

import asyncio
import gc
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI

import aqpl
from backend.admission import InFlightLimit
from backend.api_docs import install_api_docs
from backend.auth.endpoints import router as auth_router
from backend.auth.gate import CredentialsBeforeBody
from backend.auth.ratelimit import install_login_guard
from backend.checkpoints.endpoints import router as checkpoints_router
from backend.db import create_db_engine, make_session_factory, warm_pool
from backend.errors import install_error_handlers
from backend.examples.endpoints import router as examples_router
from backend.gold.endpoints import router as gold_router
from backend.headers import SecurityHeaders
from backend.limits import BodySizeLimit
from backend.members.endpoints import router as members_router
from backend.metrics.endpoints import install_metrics
from backend.projects.endpoints import router as projects_router
from backend.queue import JobSender, install_outbox, make_celery
from backend.rounds.endpoints import router as rounds_router
from backend.settings import Settings, get_settings
from backend.system.endpoints import router as system_router
from backend.tasks.endpoints import router as tasks_router
from backend.tasks.progress import RoundProgress
from backend.tokens.endpoints import router as tokens_router
from backend.ui.pages import router as ui_router
from backend.ui.pages import static_files
from backend.ui.viewer import install_page_refusals
from backend.users.endpoints import router as users_router
from backend.webhooks.endpoints import router as webhooks_router

API_PREFIX = "/api/v1"
GIL_SWITCH_INTERVAL = 0.001  # seconds; CPython's default is 0.005


def api_router() -> APIRouter:
    router = APIRouter(prefix=API_PREFIX)
    router.include_router(system_router)
    router.include_router(auth_router)
    router.include_router(users_router)
    router.include_router(tokens_router)
    router.include_router(tasks_router)
    router.include_router(examples_router)
    router.include_router(projects_router)
    router.include_router(members_router)
    router.include_router(rounds_router)
    router.include_router(checkpoints_router)
    router.include_router(webhooks_router)
    router.include_router(gold_router)
    return router


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app; the engine and the Celery client are made at start-up, per app."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_db_engine(
            settings.database_url,
            pool_size=settings.database_pool_size,
            max_overflow=settings.database_pool_overflow,
            pool_timeout=settings.database_pool_timeout,
        )
        celery = make_celery(settings)
        sessions = make_session_factory(engine)
        install_outbox(sessions, JobSender(celery))
        app.state.engine = engine
        app.state.sessions = sessions
        app.state.celery = celery
        await asyncio.to_thread(warm_pool, engine, settings.database_pool_size)
        # Everything alive now (modules, routes, mappers, schemas) lives as long as the app: keep it
        # out of the collector's full scans, which paused requests for up to ~130 ms (docs/load.md).
        gc.freeze()
        # The event loop (which reads requests and answers the admission control's refusals) waits
        # for the GIL behind the request threads; CPython lets a thread keep it for 5 ms before
        # handing it on. 1 ms: refusals' p99 at 300 closed-loop annotators 138-163 ms instead of
        # 238-239 ms, throughput no lower (docs/load.md).
        switch_interval = sys.getswitchinterval()
        sys.setswitchinterval(GIL_SWITCH_INTERVAL)
        try:
            yield
        finally:
            sys.setswitchinterval(switch_interval)
            gc.unfreeze()  # collectable again once the app is gone (tests start many apps)
            engine.dispose()

    app = FastAPI(
        title="AQPL Studio",
        version=aqpl.__version__,
        summary="Actively query per-example perturbation levels and train robust image models.",
        docs_url=None,  # served by install_api_docs: no CDN, the pages' CSP
        openapi_url="/openapi.json",
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.round_progress = RoundProgress()  # the rounds' progress sums this process keeps
    install_error_handlers(app)
    install_login_guard(app)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_upload_bytes)
    # Outside the body limit, inside the metrics (which count the refusals too).
    app.add_middleware(
        InFlightLimit,
        limit=settings.max_requests_in_flight,
        retry_after_seconds=settings.retry_after_seconds,
    )
    # Outside the admission control: an anonymous body is refused unread, before it takes a slot.
    app.add_middleware(CredentialsBeforeBody, prefix=API_PREFIX)
    app.include_router(api_router())
    install_metrics(app)
    app.include_router(ui_router)
    install_page_refusals(app)
    install_api_docs(app, settings)
    app.mount("/static", static_files(), name="static")
    # Outermost: every answer, the refusals of the middlewares inside included, gets its headers.
    app.add_middleware(SecurityHeaders)
    return app
