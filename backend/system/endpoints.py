from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from backend.deps import presented_token
from backend.system import service

router = APIRouter(tags=["system"])


@router.get("/health")
async def health(request: Request) -> JSONResponse:
    """Whether the database and the broker answer (503 when one does not); versions for admins."""
    state = request.app.state
    database = await run_in_threadpool(service.database_health, state.engine)
    broker = await run_in_threadpool(service.broker_health, state.celery)
    ok = bool(database["ok"] and broker["ok"])
    body: dict[str, Any] = {"status": "ok" if ok else "degraded", "database": database, "broker": broker}
    # Library versions tell an attacker which published flaws to try: admins only. Anonymous
    # probes (load balancers, monitors) present no credential and cost no token lookup.
    token = presented_token(request)
    if token is not None and await run_in_threadpool(service.is_admin, state.sessions, token):
        body["versions"] = service.versions()
    return JSONResponse(body, status_code=200 if ok else 503)
