"""The Celery client side: configuration shared with the worker, and sending jobs after commit.

The API sends jobs by name (it never imports the worker or torch) and only once the
transaction that made their rows has committed; a rollback drops them.
"""

from __future__ import annotations

from typing import Any

from celery import Celery
from sqlalchemy import event
from sqlalchemy.orm import Session, sessionmaker

from backend.settings import Settings

_OUTBOX = "aqpl_outbox"


def make_celery(settings: Settings) -> Celery:
    """A Celery app for `settings`: Redis in production, a filesystem broker for one machine."""
    app = Celery("aqpl")
    # Redis redelivers an unacknowledged message after this many seconds: longer than any step.
    visibility_timeout = settings.broker_visibility_timeout
    options: dict[str, Any] = {
        "visibility_timeout": visibility_timeout,
        # Workers sweep for messages past their visibility timeout this often (seconds); one
        # cheap Redis range query per sweep, so a dead worker's task is back within a sweep.
        "unacked_restore_interval": max(1, min(10, visibility_timeout // 2)),
        "unacked_restore_throttle": 1,
    }
    if settings.is_embedded_broker:
        queue_dir = settings.broker_dir / "queue"
        control_dir = settings.broker_dir / "control"
        for folder in (queue_dir, control_dir):
            folder.mkdir(parents=True, exist_ok=True)
        # Producer and consumer share one folder: what the API writes, the worker reads.
        # The control folder defaults to ./control in the working directory: keep it under data_dir.
        options = {
            "data_folder_in": str(queue_dir),
            "data_folder_out": str(queue_dir),
            "control_folder": str(control_dir),
        }
    app.conf.update(
        broker_url=settings.broker_url,
        broker_transport_options=options,
        broker_connection_retry_on_startup=True,
        task_default_queue=settings.queue,
        # Results live in the database rows a task writes, never in a result backend.
        task_ignore_result=True,
        # A task is acknowledged when it finishes: a killed worker's task is delivered again,
        # and every task is written to be idempotent for that.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_serializer="json",
        accept_content=["json"],
        worker_hijack_root_logger=False,
    )
    return app


class JobSender:
    """Sends jobs by name (aqpl.job_names) with id arguments; owned by the app (API) or the worker."""

    def __init__(self, celery: Celery) -> None:
        self.celery = celery

    def send(self, name: str, *args: int | str) -> None:
        self.celery.send_task(name, args=list(args))


def enqueue_after_commit(session: Session, name: str, *args: int | str) -> None:
    """Send job `name` once this session's transaction commits; forget it on rollback."""
    session.info.setdefault(_OUTBOX, []).append((name, args))


def install_outbox(factory: sessionmaker[Session], sender: JobSender) -> None:
    """Wire `enqueue_after_commit` for sessions made by `factory`."""

    @event.listens_for(factory, "after_commit")
    def _send_outbox(session: Session) -> None:
        for name, args in session.info.pop(_OUTBOX, []):
            sender.send(name, *args)

    @event.listens_for(factory, "after_rollback")
    def _drop_outbox(session: Session) -> None:
        session.info.pop(_OUTBOX, None)
