"""Webhook request and response bodies."""

from __future__ import annotations

from typing import Literal

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, field_validator

from backend.rounds.schemas import UtcDateTime

# The events a project emits; one word each in the API, the delivery's `type` and the UI.
WebhookEvent = Literal["round.annotating", "round.published", "round.failed", "checkpoint.published"]
MAX_URL_CHARS = 2000  # the column's length; longer URLs are not ones a receiver publishes


class WebhookCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: AnyHttpUrl
    events: list[WebhookEvent] = Field(min_length=1, max_length=4)

    @field_validator("url")
    @classmethod
    def _short_enough(cls, value: AnyHttpUrl) -> AnyHttpUrl:
        if len(str(value)) > MAX_URL_CHARS:
            raise ValueError(f"a webhook URL has at most {MAX_URL_CHARS} characters")
        return value

    @field_validator("events")
    @classmethod
    def _unique(cls, value: list[WebhookEvent]) -> list[WebhookEvent]:
        return list(dict.fromkeys(value))


class WebhookRead(BaseModel):
    id: int
    project_id: int
    url: str
    events: list[str]
    created_at: UtcDateTime


class WebhookCreated(WebhookRead):
    """The one answer that shows the signing secret (`whsec_...`): keep it, it is not shown again."""

    secret: str


class DeliveryAttempt(BaseModel):
    at: str  # ISO 8601, UTC
    status_code: int | None  # None: no answer (refused, timed out, target not allowed)
    error: str | None


class DeliveryRead(BaseModel):
    id: int
    webhook_id: int
    event: str
    message_id: str  # the webhook-id header: the same on every attempt, for the receiver to dedupe
    status: str  # pending | delivered | failed
    attempts: int
    last_status_code: int | None
    error: str | None
    history: list[DeliveryAttempt]
    created_at: UtcDateTime
    last_attempt_at: UtcDateTime | None
    next_attempt_at: UtcDateTime | None
    delivered_at: UtcDateTime | None
