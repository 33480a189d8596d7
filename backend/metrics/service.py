"""The Prometheus exposition: request metrics of the API processes, platform gauges from the database.

Request counts, latencies and requests in flight are kept by prometheus-client (backend/metrics/
http.py): under `aqpl serve` in its multiprocess mode, so one scrape shows the sum of every API
process. Project, round and query counts, step durations (from the rounds' timestamps) and the
queue depth are read fresh at every scrape.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from backend.metrics.http import RequestMetrics
from backend.metrics.multiprocess import mark_dead_processes, multiprocess_dir
from backend.metrics.round_timeline import state_seconds_histogram
from backend.models import Annotation, Project, ProjectStatus, Query, Round, RoundState
from backend.settings import Settings

# Celery's Redis transport keeps priorities 3, 6 and 9 in sibling lists of the queue's own.
REDIS_PRIORITY_SUFFIXES = ("", "\x06\x163", "\x06\x166", "\x06\x169")
ROUND_STEPS = ("scoring", "annotating", "retraining")


class PlatformCollector(Collector):
    """Gauges read from the database and the broker at one scrape."""

    def __init__(self, session: Session, settings: Settings) -> None:
        self.session = session
        self.settings = settings

    def collect(self) -> Iterator[Metric]:
        yield _by_label(
            self.session,
            "aqpl_projects",
            "Projects by status.",
            Project.status,
            "status",
            (status.value for status in ProjectStatus),
        )
        yield _by_label(
            self.session,
            "aqpl_rounds",
            "Query rounds by state.",
            Round.state,
            "state",
            (state.value for state in RoundState),
        )
        yield _by_label(
            self.session,
            "aqpl_queries",
            "Queries by status (open: still needs answers).",
            Query.status,
            "status",
            ("open", "complete"),
        )
        answers = int(self.session.scalar(select(func.count(Annotation.id))) or 0)
        yield CounterMetricFamily("aqpl_annotations", "Answers given by annotators.", value=answers)
        yield _step_durations(self.session)
        yield state_seconds_histogram(self.session)
        depth = GaugeMetricFamily(
            "aqpl_queue_depth",
            "Worker tasks waiting in the broker (-1: the broker did not answer).",
            labels=("queue", "transport"),
        )
        depth.add_metric([self.settings.queue, _transport(self.settings)], queue_depth(self.settings))
        yield depth


def _by_label(
    session: Session, name: str, help_text: str, column: Any, label: str, known: Iterable[str]
) -> GaugeMetricFamily:
    values = dict.fromkeys(known, 0)
    for value, count in session.execute(select(column, func.count()).group_by(column)).all():
        values[str(getattr(value, "value", value))] = int(count)
    family = GaugeMetricFamily(name, help_text, labels=(label,))
    for label_value, count in values.items():
        family.add_metric([label_value], count)
    return family


def _step_durations(session: Session) -> SummaryMetricFamily:
    """Seconds spent per round step, from the rounds' timestamps (finished steps only)."""
    rows = session.execute(
        select(Round.created_at, Round.annotating_at, Round.closed_at, Round.published_at)
    ).all()
    spans: dict[str, list[float]] = {step: [] for step in ROUND_STEPS}
    for created, annotating, closed, published in rows:
        for step, begin, end in (
            ("scoring", created, annotating),
            ("annotating", annotating, closed),
            ("retraining", closed, published),  # aggregate + fine-tune + evaluate + publish
        ):
            if begin is not None and end is not None:
                spans[step].append(max(0.0, _seconds_between(begin, end)))
    family = SummaryMetricFamily(
        "aqpl_round_step_duration_seconds",
        "Time rounds spent in each step (from their timestamps).",
        labels=("step",),
    )
    for step, values in spans.items():
        family.add_metric([step], count_value=len(values), sum_value=sum(values))
    return family


def _seconds_between(begin: datetime, end: datetime) -> float:
    return (end - begin).total_seconds()


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


def request_metrics_text(request_metrics: RequestMetrics) -> bytes:
    """The request metrics: of every API process in multiprocess mode, else of this one."""
    folder = multiprocess_dir()
    if folder is None:
        return generate_latest(request_metrics.registry)
    mark_dead_processes(folder)
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(folder))  # type: ignore[no-untyped-call]
    return generate_latest(registry)


def render(request_metrics: RequestMetrics, session: Session, settings: Settings) -> bytes:
    """The whole exposition (Prometheus text format 0.0.4)."""
    platform = CollectorRegistry()
    platform.register(PlatformCollector(session, settings))
    return request_metrics_text(request_metrics) + generate_latest(platform)
