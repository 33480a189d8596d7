"""The worker's Celery app: the API's configuration plus the task modules.

`aqpl worker` runs it; `celery -A worker.celery_app worker` works too.
"""

from __future__ import annotations

from celery.signals import task_failure

from backend.queue import make_celery
from backend.settings import get_settings
from worker.jobs import celery_options, job_failed

TASK_MODULES = [
    "worker.tasks.system",
    "worker.tasks.datasets",
    "worker.tasks.training",
    "worker.tasks.scoring",
    "worker.tasks.rounds",
    "worker.tasks.evaluation",
]

app = make_celery(get_settings())
app.conf.imports = TASK_MODULES
# Time limits and bounded redeliveries for every job; a job ended by one fails its step (worker/jobs.py).
app.conf.update(celery_options(get_settings()))
task_failure.connect(job_failed)
