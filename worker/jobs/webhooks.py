"""`webhooks.deliver`: one attempt at one webhook delivery, signed per Standard Webhooks.

The row is read in one short transaction, the HTTP request runs with none open, and the attempt is
recorded in another. A failed attempt (no answer, or not 2xx) is sent again after an exponential
backoff, once its record has committed, until AQPL_WEBHOOK_MAX_ATTEMPTS; then the delivery is
`failed`. The target's addresses are checked again before every attempt (DNS rebinding).
Receivers get at-least-once delivery: a redelivered job may repeat an attempt, with the same
`webhook-id`, which is what receivers deduplicate on.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

import httpx
from standardwebhooks import Webhook

from aqpl import job_names
from backend.models import DeliveryStatus, WebhookEndpoint
from backend.models._types import utcnow
from backend.settings import Settings, get_settings
from backend.webhooks.repository import get_delivery
from backend.webhooks.service import record_attempt
from backend.webhooks.targets import TargetRefused, check_target
from worker.celery_app import app
from worker.runtime import job_session

logger = logging.getLogger("aqpl.worker")

ERROR_MAX_CHARS = 300  # one line of the delivery log
USER_AGENT = "AQPL-Studio-Webhooks/1"


@dataclass(frozen=True)
class Attempt:
    url: str
    secret: str
    message_id: str
    payload: dict[str, Any]
    number: int  # 1 for the first attempt


@dataclass(frozen=True)
class Outcome:
    status_code: int | None  # None: no HTTP answer
    error: str | None

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def signed_request(attempt: Attempt) -> tuple[bytes, dict[str, str]]:
    """The body and the Standard Webhooks headers of one attempt (signed now: a fresh timestamp)."""
    body = json.dumps(attempt.payload, separators=(",", ":"), ensure_ascii=False)
    now = utcnow()
    headers = {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "webhook-id": attempt.message_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(attempt.secret).sign(attempt.message_id, now, body),
    }
    return body.encode(), headers


def send(attempt: Attempt, settings: Settings) -> Outcome:
    """POST the delivery once; the target is checked first, redirects are not followed."""
    try:
        check_target(attempt.url, allow_private=settings.webhook_allow_private)
    except TargetRefused as error:
        return Outcome(None, str(error)[:ERROR_MAX_CHARS])
    body, headers = signed_request(attempt)
    try:
        response = httpx.post(
            attempt.url,
            content=body,
            headers=headers,
            timeout=settings.webhook_timeout_seconds,
            follow_redirects=False,
        )
    except httpx.HTTPError as error:
        return Outcome(None, f"{type(error).__name__}: {error}"[:ERROR_MAX_CHARS])
    if 200 <= response.status_code < 300:
        return Outcome(response.status_code, None)
    return Outcome(response.status_code, f"the receiver answered {response.status_code}")


@app.task(name=job_names.WEBHOOK_DELIVER)
def deliver(delivery_id: int) -> None:
    """Send the delivery once; record the attempt; schedule the next one after a failure."""
    settings = get_settings()
    with job_session() as session:
        delivery = get_delivery(session, delivery_id)
        if delivery is None or delivery.status != DeliveryStatus.pending:
            return  # delivered, given up, or its webhook deleted
        endpoint = session.get(WebhookEndpoint, delivery.endpoint_id)
        if endpoint is None:
            return
        attempt = Attempt(
            endpoint.url, endpoint.secret, delivery.message_id, delivery.payload, delivery.attempts + 1
        )
    outcome = send(attempt, settings)
    with job_session() as session:
        delivery = get_delivery(session, delivery_id, for_update=True)
        if (
            delivery is None
            or delivery.status != DeliveryStatus.pending
            or delivery.attempts >= attempt.number
        ):
            return  # a duplicate of this job recorded the attempt first
        retry_in = record_attempt(delivery, settings, status_code=outcome.status_code, error=outcome.error)
    if retry_in is not None:  # only now that the attempt's record has committed
        logger.info(
            "webhook delivery %s: attempt %s failed (%s); next in %g s",
            delivery_id,
            attempt.number,
            outcome.error,
            retry_in,
        )
        deliver.apply_async(args=[delivery_id], countdown=retry_in)
