"""Webhook queries and read models."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.models import WebhookDelivery, WebhookEndpoint
from backend.webhooks.schemas import DeliveryAttempt, DeliveryRead, WebhookRead

DELIVERY_LOG_LIMIT = 200  # newest deliveries an endpoint's log shows


def get(session: Session, webhook_id: int) -> WebhookEndpoint | None:
    return session.get(WebhookEndpoint, webhook_id)


def of_project(session: Session, project_id: int) -> Sequence[WebhookEndpoint]:
    return session.scalars(
        select(WebhookEndpoint).where(WebhookEndpoint.project_id == project_id).order_by(WebhookEndpoint.id)
    ).all()


def subscribed(session: Session, project_id: int, event: str) -> list[WebhookEndpoint]:
    """The project's endpoints that asked for `event` (a project has a handful: filtered here)."""
    return [endpoint for endpoint in of_project(session, project_id) if event in endpoint.events]


def deliveries(session: Session, webhook_id: int) -> Sequence[WebhookDelivery]:
    return session.scalars(
        select(WebhookDelivery)
        .where(WebhookDelivery.endpoint_id == webhook_id)
        .order_by(WebhookDelivery.created_at.desc(), WebhookDelivery.id.desc())
        .limit(DELIVERY_LOG_LIMIT)
    ).all()


def get_delivery(session: Session, delivery_id: int, *, for_update: bool = False) -> WebhookDelivery | None:
    statement = select(WebhookDelivery).where(WebhookDelivery.id == delivery_id)
    if for_update:
        statement = statement.with_for_update()
    return session.scalar(statement)


def webhook_read(endpoint: WebhookEndpoint) -> WebhookRead:
    return WebhookRead(
        id=endpoint.id,
        project_id=endpoint.project_id,
        url=endpoint.url,
        events=list(endpoint.events),
        created_at=endpoint.created_at,
    )


def delivery_read(delivery: WebhookDelivery) -> DeliveryRead:
    return DeliveryRead(
        id=delivery.id,
        webhook_id=delivery.endpoint_id,
        event=delivery.event,
        message_id=delivery.message_id,
        status=delivery.status.value,
        attempts=delivery.attempts,
        last_status_code=delivery.last_status_code,
        error=delivery.error,
        history=[DeliveryAttempt.model_validate(entry) for entry in delivery.history or []],
        created_at=delivery.created_at,
        last_attempt_at=delivery.last_attempt_at,
        next_attempt_at=delivery.next_attempt_at,
        delivered_at=delivery.delivered_at,
    )
