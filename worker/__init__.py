"""Celery workers: thin tasks that load rows by id, call worker.ml, and write results."""
