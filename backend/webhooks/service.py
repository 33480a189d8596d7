"""Webhooks: who may register, list and delete a project's endpoints and read their delivery log.

The lead who manages the project (admins: all); another's project or endpoint is a 404, as for
one that does not exist. Emitting events is `events.py`; sending them is the worker's
`webhooks.deliver` job.
"""

from __future__ import annotations

import base64
import secrets
from datetime import timedelta

from sqlalchemy.orm import Session

from backend.errors import InvalidInput, NotFound
from backend.models import DeliveryStatus, User, WebhookDelivery, WebhookEndpoint
from backend.models._types import utcnow
from backend.projects.service import can_manage, get_managed_project, get_project
from backend.settings import Settings
from backend.webhooks import repository
from backend.webhooks.schemas import DeliveryRead, WebhookCreate, WebhookCreated, WebhookRead
from backend.webhooks.targets import TargetRefused, check_target

SECRET_BYTES = 24  # 192 bits; Standard Webhooks asks for 24 to 64 bytes
MAX_WEBHOOKS_PER_PROJECT = 20  # each event is one delivery per endpoint: keep a project's fan-out small


def new_secret() -> str:
    """A Standard Webhooks signing secret: `whsec_` and the base64 of random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def create_webhook(
    session: Session, settings: Settings, user: User, project_id: int, body: WebhookCreate
) -> WebhookCreated:
    """A new endpoint of the project; 422 if its host is not a public address (unless allowed)."""
    project = get_managed_project(session, user, project_id)
    url = str(body.url)
    try:
        check_target(url, allow_private=settings.webhook_allow_private)
    except TargetRefused as error:
        raise InvalidInput(str(error), loc=("body", "url")) from None
    if len(repository.of_project(session, project.id)) >= MAX_WEBHOOKS_PER_PROJECT:
        raise InvalidInput(f"a project has at most {MAX_WEBHOOKS_PER_PROJECT} webhooks; delete one first")
    endpoint = WebhookEndpoint(project_id=project.id, url=url, events=list(body.events), secret=new_secret())
    session.add(endpoint)
    session.flush()
    return WebhookCreated(**repository.webhook_read(endpoint).model_dump(), secret=endpoint.secret)


def list_webhooks(session: Session, user: User, project_id: int) -> list[WebhookRead]:
    project = get_managed_project(session, user, project_id)
    return [repository.webhook_read(row) for row in repository.of_project(session, project.id)]


def get_webhook(session: Session, user: User, webhook_id: int) -> WebhookEndpoint:
    endpoint = repository.get(session, webhook_id)
    # Another's endpoint gets the 404 of one that does not exist: its project is not disclosed.
    if endpoint is None or not can_manage(user, get_project(session, endpoint.project_id)):
        raise NotFound(f"webhook {webhook_id} does not exist")
    return endpoint


def delete_webhook(session: Session, user: User, webhook_id: int) -> None:
    """The endpoint and its delivery log; deliveries still queued find no row and stop."""
    session.delete(get_webhook(session, user, webhook_id))
    session.flush()


def list_deliveries(session: Session, user: User, webhook_id: int) -> list[DeliveryRead]:
    endpoint = get_webhook(session, user, webhook_id)
    return [repository.delivery_read(row) for row in repository.deliveries(session, endpoint.id)]


def backoff_seconds(settings: Settings, attempts: int) -> float:
    """Wait before the attempt after `attempts` failed ones: base * 2**(attempts - 1)."""
    return settings.webhook_backoff_seconds * 2.0 ** (attempts - 1)


def record_attempt(
    delivery: WebhookDelivery, settings: Settings, *, status_code: int | None, error: str | None
) -> float | None:
    """One attempt of `delivery` (locked) in its log: delivered on a 2xx, given up after the last
    allowed attempt, else pending again; returns the seconds until the next attempt, if any."""
    now = utcnow()
    delivery.attempts += 1
    delivery.last_attempt_at = now
    delivery.last_status_code = status_code
    delivery.error = error
    delivery.history = [
        *(delivery.history or []),
        {"at": now.isoformat(), "status_code": status_code, "error": error},
    ]
    delivery.next_attempt_at = None
    if status_code is not None and 200 <= status_code < 300:
        delivery.status = DeliveryStatus.delivered
        delivery.delivered_at = now
        return None
    if delivery.attempts >= settings.webhook_max_attempts:
        delivery.status = DeliveryStatus.failed
        return None
    wait = backoff_seconds(settings, delivery.attempts)
    delivery.next_attempt_at = now + timedelta(seconds=wait)
    return wait
