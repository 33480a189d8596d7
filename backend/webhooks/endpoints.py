from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response, status

from backend.deps import Lead, SessionDep, SettingsDep
from backend.webhooks import service
from backend.webhooks.schemas import DeliveryRead, WebhookCreate, WebhookCreated, WebhookRead

router = APIRouter(tags=["webhooks"])

# Ids are 32-bit on PostgreSQL: a larger one is a 422, not a database error.
ProjectId = Annotated[int, Path(ge=1, le=2**31 - 1)]
WebhookId = Annotated[int, Path(ge=1, le=2**31 - 1)]


@router.post("/projects/{project_id}/webhooks", status_code=status.HTTP_201_CREATED)
def create_webhook(
    project_id: ProjectId, body: WebhookCreate, user: Lead, session: SessionDep, settings: SettingsDep
) -> WebhookCreated:
    """Register a URL for some of the project's events; the answer shows its signing secret once."""
    return service.create_webhook(session, settings, user, project_id, body)


@router.get("/projects/{project_id}/webhooks")
def list_webhooks(project_id: ProjectId, user: Lead, session: SessionDep) -> list[WebhookRead]:
    """The project's webhooks (without their secrets)."""
    return service.list_webhooks(session, user, project_id)


@router.delete("/webhooks/{webhook_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_webhook(webhook_id: WebhookId, user: Lead, session: SessionDep) -> Response:
    """Delete a webhook and its delivery log."""
    service.delete_webhook(session, user, webhook_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/webhooks/{webhook_id}/deliveries")
def list_deliveries(webhook_id: WebhookId, user: Lead, session: SessionDep) -> list[DeliveryRead]:
    """The webhook's delivery log, newest first: event, attempts, last status code and error."""
    return service.list_deliveries(session, user, webhook_id)
