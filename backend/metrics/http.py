"""Request metrics: counts, latencies and requests in flight, by labels drawn from fixed sets.

A label value that a client chooses makes one series per value: 300 requests with invented methods
grew the exposition from 78 KB to 943 KB. So the method is one of `METHODS` or "other", the route
is the template of a route of the app (never the raw path) or "unmatched", and the status is its
class ("2xx", ..., "5xx").
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from fastapi.routing import iter_route_contexts
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.routing import Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
OTHER_METHOD = "other"
UNMATCHED_ROUTE = "unmatched"  # no route of the app: 404s by path would make one series per probed URL
STATUS_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")
# Upper bounds (seconds) of the request latency histogram.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def method_label(method: str) -> str:
    return method if method in METHODS else OTHER_METHOD


def status_label(status: int) -> str:
    """ "4xx" for 404 (and for 499, a client that went away); "5xx" for anything out of range."""
    return STATUS_CLASSES[status // 100 - 1] if 100 <= status < 600 else "5xx"


class RouteTemplates:
    """The template of the route a request matched ("/api/v1/projects/{project_id}"), from the app's routes.

    FastAPI hands the route as it was declared, without the prefixes of the routers that include
    it; the full templates are read once from the app, so a label can only be one of them.
    """

    def __init__(self) -> None:
        self._templates: dict[int, tuple[str, ...]] | None = None
        self._mounts: tuple[str, ...] = ()

    def label(self, scope: Scope) -> str:
        if "app" not in scope:
            return UNMATCHED_ROUTE
        if self._templates is None:  # the app's routes are all added once it serves requests
            self._templates, self._mounts = _templates(scope["app"].routes)
        route = scope.get("route")
        if route is None:
            # A mounted app (the static files) leaves no route, only its path in root_path.
            root_path = str(scope.get("root_path", ""))
            mount = next((path for path in self._mounts if root_path.endswith(path)), None)
            return UNMATCHED_ROUTE if mount is None else f"{mount}/{{path}}"
        templates = self._templates.get(id(route), ())
        if len(templates) == 1:
            return templates[0]
        # One route included under several prefixes: the one whose prefix begins the concrete path.
        path = str(scope.get("path", ""))
        for template in templates:
            prefix = template.split("{", 1)[0]
            if path.startswith(prefix) and path.count("/") == template.count("/"):
                return template
        return UNMATCHED_ROUTE


def _templates(routes: Iterable[Any]) -> tuple[dict[int, tuple[str, ...]], tuple[str, ...]]:
    """The full templates of each route (by identity), and the paths of the mounts."""
    found: dict[int, tuple[str, ...]] = {}
    mounts: list[str] = []
    for context in iter_route_contexts(list(routes)):
        route = context.original_route
        if isinstance(route, Mount):  # static files: one series for the whole mount
            mounts.append(str(context.path).rstrip("/"))
        else:
            found[id(route)] = (*found.get(id(route), ()), str(context.path))
    return found, tuple(mounts)


class RequestMetrics:
    """The request metrics of one app; `registry` is what a single process exposes (multiprocess mode
    reads the files of every process instead, see backend/metrics/multiprocess.py)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.routes = RouteTemplates()
        self.requests = Counter(
            "aqpl_http_requests",
            "HTTP requests answered by the API processes.",
            ("method", "route", "status"),
            registry=self.registry,
        )
        self.duration = Histogram(
            "aqpl_http_request_duration_seconds",
            "Time to answer an HTTP request.",
            ("method", "route"),
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "aqpl_http_requests_in_flight",
            "HTTP requests being answered now (refusals included).",
            multiprocess_mode="livesum",  # live processes only: a crashed one's requests are gone
            registry=self.registry,
        )

    def observe(self, scope: Scope, status: int, seconds: float) -> None:
        method, route = method_label(str(scope.get("method", ""))), self.routes.label(scope)
        self.requests.labels(method, route, status_label(status)).inc()
        self.duration.labels(method, route).observe(seconds)


class RequestMetricsMiddleware:
    """Pure ASGI middleware: times every HTTP request and files it under its route template."""

    def __init__(self, app: ASGIApp, metrics: RequestMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_and_record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                # Server-Timing: the time spent in the app, for browser dev tools and load tests.
                elapsed_ms = (time.perf_counter() - started) * 1000
                headers = list(message.get("headers", []))
                headers.append((b"server-timing", f"app;dur={elapsed_ms:.1f}".encode()))
                message = {**message, "headers": headers}
            await send(message)

        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, send_and_record_status)
        finally:
            self.metrics.in_flight.dec()
            self.metrics.observe(scope, status, time.perf_counter() - started)
