"""Emitting an event: one delivery row per subscribed endpoint, each sent by the worker after commit.

Called from the one place each event happens: `rounds/lifecycle.py` (a round becomes annotating,
published or failed) and the evaluation job where a checkpoint's row is recorded. The body is fixed
here, in the transaction that made the change, so every attempt sends the same bytes.
"""

from __future__ import annotations

import uuid
from typing import Any, Final

from sqlalchemy.orm import Session

from aqpl import job_names
from backend.models import Round, RoundState, WebhookDelivery
from backend.models._types import utcnow
from backend.queue import enqueue_after_commit
from backend.webhooks import repository

ROUND_ANNOTATING: Final = "round.annotating"
ROUND_PUBLISHED: Final = "round.published"
ROUND_FAILED: Final = "round.failed"
CHECKPOINT_PUBLISHED: Final = "checkpoint.published"
EVENTS: Final = (ROUND_ANNOTATING, ROUND_PUBLISHED, ROUND_FAILED, CHECKPOINT_PUBLISHED)
# The round states that are events, and their names.
ROUND_EVENTS: Final[dict[RoundState, str]] = {
    RoundState.annotating: ROUND_ANNOTATING,
    RoundState.published: ROUND_PUBLISHED,
    RoundState.failed: ROUND_FAILED,
}


def emit(session: Session, project_id: int, event: str, data: dict[str, Any]) -> int:
    """Queue `event` for the project's endpoints that want it; returns how many deliveries."""
    endpoints = repository.subscribed(session, project_id, event)
    if not endpoints:
        return 0
    body = {
        "type": event,
        "timestamp": utcnow().isoformat().replace("+00:00", "Z"),
        "data": {"project_id": project_id, **data},
    }
    rows = [
        WebhookDelivery(
            endpoint_id=endpoint.id,
            event=event,
            message_id=f"msg_{uuid.uuid4().hex}",
            payload=body,
            history=[],
        )
        for endpoint in endpoints
    ]
    session.add_all(rows)
    session.flush()
    for row in rows:
        enqueue_after_commit(session, job_names.WEBHOOK_DELIVER, row.id)
    return len(rows)


def emit_round(session: Session, round_: Round) -> int:
    """The round's state as an event, if it is one (annotating, published, failed)."""
    event = ROUND_EVENTS.get(round_.state)
    if event is None:
        return 0
    data: dict[str, Any] = {"round_id": round_.id, "round_number": round_.number, "state": round_.state.value}
    if round_.state == RoundState.failed:
        data["failed_state"] = round_.failed_state.value if round_.failed_state else None
        data["error"] = round_.error
    return emit(session, round_.project_id, event, data)
