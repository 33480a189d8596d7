"""The AQPL Studio web platform: FastAPI app, database models and domain services.

Never imports torch or the worker package: heavy work is sent to Celery by task name.
"""
