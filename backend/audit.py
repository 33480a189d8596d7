"""Audit events: sign-ins, accounts and tokens, logged to the `aqpl.audit` logger with an `event` field.

Callers pass ids, names and addresses, never a password or a token value (the log formatter also
masks anything shaped like a token). An event about rows a transaction writes is logged when that
transaction commits (`audit_after_commit`), so a rolled-back change leaves no false record; one
about an attempt that changes nothing (a failed login) is logged at once (`audit`).
"""

from __future__ import annotations

import logging
from enum import StrEnum

from sqlalchemy import event
from sqlalchemy.orm import Session

AUDIT_LOGGER = "aqpl.audit"
logger = logging.getLogger(AUDIT_LOGGER)

FieldValue = str | int | bool | list[str] | None
_PENDING = "aqpl_audit_pending"


class AuditEvent(StrEnum):
    LOGIN_FAILED = "login.failed"
    LOGIN_THROTTLED = "login.throttled"
    LOGIN_SUCCEEDED = "login.succeeded"
    TOKEN_CREATED = "token.created"  # noqa: S105  # event names, not secrets
    TOKEN_REVOKED = "token.revoked"  # noqa: S105
    USER_CREATED = "user.created"
    USER_ROLE_CHANGED = "user.role_changed"
    USER_DEACTIVATED = "user.deactivated"
    USER_REACTIVATED = "user.reactivated"
    USER_PASSWORD_RESET = "user.password_reset"  # noqa: S105


def audit(kind: AuditEvent, message: str, **fields: FieldValue) -> None:
    """Log one audit event now."""
    logger.info(message, extra={"event": kind.value, "fields": fields})


def audit_after_commit(session: Session, kind: AuditEvent, message: str, **fields: FieldValue) -> None:
    """Log one audit event when `session`'s transaction commits; forget it if it rolls back."""
    session.info.setdefault(_PENDING, []).append((kind, message, fields))


# On the Session class, so every session (API, worker, CLI, tests) logs its events without wiring.
@event.listens_for(Session, "after_commit")
def _log_pending(session: Session) -> None:
    for kind, message, fields in session.info.pop(_PENDING, []):
        audit(kind, message, **fields)


@event.listens_for(Session, "after_rollback")
def _drop_pending(session: Session) -> None:
    session.info.pop(_PENDING, None)
