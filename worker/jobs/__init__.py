"""The worker's jobs (Celery tasks): named in aqpl.job_names, ids as arguments, idempotent."""
