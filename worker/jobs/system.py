from __future__ import annotations

import socket

from aqpl import job_names
from backend.models import WorkerHeartbeat
from worker.celery_app import app
from worker.runtime import job_session


@app.task(name=job_names.PING)
def ping(token: str) -> None:
    """Record that a worker took this message and reached the database."""
    with job_session() as session:
        session.add(WorkerHeartbeat(token=token, hostname=socket.gethostname()))
