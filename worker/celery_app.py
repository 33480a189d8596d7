"""The worker's Celery app: the API's configuration plus the task modules.

`aqpl worker` runs it; `celery -A worker.celery_app worker` works too.
"""

from __future__ import annotations

from celery.signals import setup_logging, task_failure

from backend.logging_config import configure_logging
from backend.queue import make_celery
from backend.settings import get_settings
from worker.jobs.limits import celery_options, job_failed

JOB_MODULES = [
    "worker.jobs.system",
    "worker.jobs.datasets",
    "worker.jobs.training",
    "worker.jobs.scoring",
    "worker.jobs.rounds",
    "worker.jobs.evaluation",
    "worker.jobs.webhooks",
]

app = make_celery(get_settings())
app.conf.imports = JOB_MODULES
# Time limits and bounded redeliveries for every job; one ended by a limit fails its step (jobs/limits.py).
app.conf.update(celery_options(get_settings()))
task_failure.connect(job_failed)


@setup_logging.connect
def _configure_logging(**_: object) -> None:
    """Our logging (AQPL_LOG_FORMAT, one line per event on stderr) instead of Celery's own."""
    configure_logging(get_settings())
