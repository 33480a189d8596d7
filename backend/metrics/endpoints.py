from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import PlainTextResponse

from backend.auth.scopes import METRICS_READ
from backend.deps import SessionDep, SettingsDep, require_scope
from backend.metrics.http import RequestMetrics, RequestMetricsMiddleware
from backend.metrics.service import render
from backend.models import User

# The Prometheus text exposition format, version 0.0.4 (what generate_latest writes).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

router = APIRouter(tags=["metrics"])

MetricsReader = Annotated[User, Depends(require_scope(METRICS_READ))]


@router.get("/metrics", response_class=PlainTextResponse)
def metrics(
    request: Request, _reader: MetricsReader, session: SessionDep, settings: SettingsDep
) -> PlainTextResponse:
    """Prometheus metrics (needs the metrics:read scope): requests, round steps, projects, rounds, queue."""
    body = render(request.app.state.request_metrics, session, settings)
    return PlainTextResponse(body, media_type=CONTENT_TYPE)


def install_metrics(app: FastAPI) -> None:
    """Count every request of `app` and serve GET /metrics at the root (where scrapers look)."""
    app.state.request_metrics = RequestMetrics()
    app.add_middleware(RequestMetricsMiddleware, metrics=app.state.request_metrics)
    app.include_router(router)
