from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from backend.system import service

router = APIRouter(tags=["system"])


@router.get("/health")
async def health(request: Request) -> JSONResponse:
    """Versions, and whether the database and the broker answer (503 when one does not)."""
    state = request.app.state
    database = await run_in_threadpool(service.database_health, state.engine)
    broker = await run_in_threadpool(service.broker_health, state.celery)
    ok = bool(database["ok"] and broker["ok"])
    body: dict[str, Any] = {
        "status": "ok" if ok else "degraded",
        "versions": service.versions(),
        "database": database,
        "broker": broker,
    }
    return JSONResponse(body, status_code=200 if ok else 503)
