"""Prometheus text exposition: request counters of this process, platform gauges from the database.

Request counts and latencies are kept per API process (Prometheus adds up the instances it
scrapes); project, round and query counts, step durations (from the rounds' timestamps) and the
queue depth are read fresh at every scrape.
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from backend.models import Annotation, Project, ProjectStatus, Query, Round, RoundState
from backend.settings import Settings

# Upper bounds (seconds) of the request latency histogram.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
UNMATCHED_ROUTE = "unmatched"  # 404s by path would make one series per probed URL
# Celery's Redis transport keeps priorities 3, 6 and 9 in sibling lists of the queue's own.
REDIS_PRIORITY_SUFFIXES = ("", "\x06\x163", "\x06\x166", "\x06\x169")


class RequestMetrics:
    """Request counts by (method, route template, status) and latency histograms by route."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: Counter[tuple[str, str, int]] = Counter()
        self._buckets: dict[tuple[str, str], list[int]] = {}
        self._sums: dict[tuple[str, str], float] = {}

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route)
        with self._lock:
            self._requests[(method, route, status)] += 1
            buckets = self._buckets.setdefault(key, [0] * (len(LATENCY_BUCKETS) + 1))
            for position, bound in enumerate(LATENCY_BUCKETS):
                if seconds <= bound:
                    buckets[position] += 1
            buckets[-1] += 1  # +Inf, also the count
            self._sums[key] = self._sums.get(key, 0.0) + seconds

    def lines(self) -> list[str]:
        with self._lock:
            requests = sorted(self._requests.items())
            buckets = {key: list(values) for key, values in sorted(self._buckets.items())}
            sums = dict(self._sums)
        out = [
            "# HELP aqpl_http_requests_total HTTP requests answered by this API process.",
            "# TYPE aqpl_http_requests_total counter",
        ]
        out += [
            f"aqpl_http_requests_total{_labels(method=m, route=r, status=str(s))} {count}"
            for (m, r, s), count in requests
        ]
        out += [
            "# HELP aqpl_http_request_duration_seconds Time to answer an HTTP request.",
            "# TYPE aqpl_http_request_duration_seconds histogram",
        ]
        for (method, route), values in buckets.items():
            bounds = [f"{bound:g}" for bound in LATENCY_BUCKETS] + ["+Inf"]
            name = "aqpl_http_request_duration_seconds_bucket"
            out += [
                f"{name}{_labels(method=method, route=route, le=le)} {value}"
                for le, value in zip(bounds, values, strict=True)
            ]
            labels = _labels(method=method, route=route)
            out.append(f"aqpl_http_request_duration_seconds_sum{labels} {_number(sums[(method, route)])}")
            out.append(f"aqpl_http_request_duration_seconds_count{labels} {values[-1]}")
        return out


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

        try:
            await self.app(scope, receive, send_and_record_status)
        finally:
            self.metrics.observe(
                scope["method"], route_template(scope), status, time.perf_counter() - started
            )


def route_template(scope: Scope) -> str:
    """ "/api/v1/projects/{project_id}" rather than the concrete path: one series per endpoint.

    The matched route knows its template without the prefixes of the routers that include it;
    those are the leading segments of the concrete path (no route here takes a {x:path} parameter).
    """
    route = scope.get("route")
    template = getattr(route, "path_format", None) or getattr(route, "path", None)
    if not isinstance(template, str) or not template.startswith("/"):
        return UNMATCHED_ROUTE
    own = template.strip("/").split("/")
    concrete = str(scope.get("path", "")).strip("/").split("/")
    prefix = concrete[: max(0, len(concrete) - len(own))]
    return "/" + "/".join([*prefix, *own]).strip("/")


def platform_lines(session: Session, settings: Settings) -> list[str]:
    out = _gauge(
        "aqpl_projects",
        "Projects by status.",
        _by_label(session, Project.status, "status", (status.value for status in ProjectStatus)),
    )
    out += _gauge(
        "aqpl_rounds",
        "Query rounds by state.",
        _by_label(session, Round.state, "state", (state.value for state in RoundState)),
    )
    out += _gauge(
        "aqpl_queries",
        "Queries by status (open: still needs answers).",
        _by_label(session, Query.status, "status", ("open", "complete")),
    )
    answers = int(session.scalar(select(func.count(Annotation.id))) or 0)
    out += [
        "# HELP aqpl_annotations_total Answers given by annotators.",
        "# TYPE aqpl_annotations_total counter",
        f"aqpl_annotations_total {answers}",
    ]
    out += _step_durations(session)
    depth = queue_depth(settings)
    out += [
        "# HELP aqpl_queue_depth Worker tasks waiting in the broker (-1: the broker did not answer).",
        "# TYPE aqpl_queue_depth gauge",
        f"aqpl_queue_depth{_labels(queue=settings.queue, transport=_transport(settings))} {depth}",
    ]
    return out


def _by_label(session: Session, column: Any, label: str, known: Iterable[str]) -> dict[str, int]:
    values = {value: 0 for value in known}
    for value, count in session.execute(select(column, func.count()).group_by(column)).all():
        values[str(getattr(value, "value", value))] = int(count)
    return {f"{label}={name}": count for name, count in values.items()}


def _gauge(name: str, help_text: str, values: dict[str, int]) -> list[str]:
    out = [f"# HELP {name} {help_text}", f"# TYPE {name} gauge"]
    for label_pair, value in values.items():
        key, _, label_value = label_pair.partition("=")
        out.append(f"{name}{_labels(**{key: label_value})} {value}")
    return out


def _step_durations(session: Session) -> list[str]:
    """Seconds spent per round step, from the rounds' timestamps (finished steps only)."""
    rows = session.execute(
        select(Round.created_at, Round.annotating_at, Round.closed_at, Round.published_at)
    ).all()
    spans: dict[str, list[float]] = {"scoring": [], "annotating": [], "retraining": []}
    for created, annotating, closed, published in rows:
        for step, begin, end in (
            ("scoring", created, annotating),
            ("annotating", annotating, closed),
            ("retraining", closed, published),  # aggregate + fine-tune + evaluate + publish
        ):
            if begin is not None and end is not None:
                spans[step].append(max(0.0, _seconds_between(begin, end)))
    out = [
        "# HELP aqpl_round_step_duration_seconds Time rounds spent in each step (from their timestamps).",
        "# TYPE aqpl_round_step_duration_seconds summary",
    ]
    for step, values in spans.items():
        out.append(f"aqpl_round_step_duration_seconds_sum{_labels(step=step)} {_number(sum(values))}")
        out.append(f"aqpl_round_step_duration_seconds_count{_labels(step=step)} {len(values)}")
    return out


def _seconds_between(begin: datetime, end: datetime) -> float:
    # SQLite returns naive UTC datetimes, PostgreSQL aware ones: compare them alike.
    return (end.replace(tzinfo=None) - begin.replace(tzinfo=None)).total_seconds()


def _transport(settings: Settings) -> str:
    return "filesystem" if settings.is_embedded_broker else settings.broker_url.split(":", 1)[0]


def queue_depth(settings: Settings) -> int:
    """Messages waiting in the worker queue: LLEN on Redis, message files for the filesystem broker."""
    if settings.is_embedded_broker:
        folder = settings.broker_dir / "queue"
        return sum(1 for _ in folder.glob(f"*.{settings.queue}.msg")) if folder.is_dir() else 0
    if not settings.broker_url.startswith(("redis://", "rediss://")):
        return -1
    import redis

    try:
        client = redis.Redis.from_url(settings.broker_url, socket_timeout=2, socket_connect_timeout=2)
        try:
            return sum(int(client.llen(settings.queue + suffix)) for suffix in REDIS_PRIORITY_SUFFIXES)
        finally:
            client.close()
    except redis.RedisError:
        return -1


def _labels(**labels: str) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{key}="{_escape(value)}"' for key, value in labels.items()) + "}"


def _escape(value: str) -> str:
    """A label value as the exposition format wants it: backslash, quote and newline escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    return "NaN" if math.isnan(value) else repr(float(value))


def render(request_metrics: RequestMetrics, session: Session, settings: Settings) -> str:
    return "\n".join([*request_metrics.lines(), *platform_lines(session, settings)]) + "\n"
