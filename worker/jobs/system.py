from __future__ import annotations

import socket

from backend.models import WorkerHeartbeat
from worker.celery_app import app
from worker.runtime import task_session


@app.task(name="system.ping")
def ping(token: str) -> None:
    """Record that a worker took this message and reached the database."""
    with task_session() as session:
        session.add(WorkerHeartbeat(token=token, hostname=socket.gethostname()))
