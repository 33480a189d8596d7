"""Celery tasks, named "domain.event", taking ids only, idempotent (acks_late redelivers)."""
