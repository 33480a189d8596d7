from __future__ import annotations

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import PlainTextResponse

from backend.deps import SessionDep, SettingsDep
from backend.metrics.service import RequestMetrics, RequestMetricsMiddleware, render

# The Prometheus text exposition format, version 0.0.4.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

router = APIRouter(tags=["metrics"])


@router.get("/metrics", response_class=PlainTextResponse)
def metrics(request: Request, session: SessionDep, settings: SettingsDep) -> PlainTextResponse:
    """Prometheus metrics: requests, round step durations, projects and rounds by state, queue depth."""
    body = render(request.app.state.request_metrics, session, settings)
    return PlainTextResponse(body, media_type=CONTENT_TYPE)


def install_metrics(app: FastAPI) -> None:
    """Count every request of `app` and serve GET /metrics at the root (where scrapers look)."""
    app.state.request_metrics = RequestMetrics()
    app.add_middleware(RequestMetricsMiddleware, metrics=app.state.request_metrics)
    app.include_router(router)
