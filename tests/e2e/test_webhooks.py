"""The project page's webhooks in chromium: add one through the form (its secret shown once), and
its delivery log with each delivery's status, attempts, last status code and error."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from backend.db import unit_of_work
from backend.models import DeliveryStatus, User, WebhookDelivery
from tests.api.factories import make_project
from tests.e2e.conftest import BROWSER_TESTS, Server, sign_in, wait_for_js

pytestmark = BROWSER_TESTS

PUBLIC_URL = "http://93.184.215.14/hooks/aqpl"  # an IP literal: no DNS needed, never contacted here


def test_the_project_page_adds_a_webhook_and_shows_its_delivery_log(server: Server, page: Any) -> None:
    with server.database() as sessions:
        with unit_of_work(sessions) as session:
            lead = session.scalars(select(User).where(User.username == "lead1")).one()
            project_id = make_project(session, lead).id  # ready, no data: the page only lists

        sign_in(page, server, "lead1")
        page.goto(f"{server.base_url}/projects/{project_id}")
        wait_for_js(page, "document.querySelector('#webhooks-table')?.textContent.includes('No webhook yet')")
        page.fill("#w-url", "http://127.0.0.1:9/hook")
        page.click("#add-webhook")
        wait_for_js(page, "document.querySelector('#webhook-form .field.invalid')")
        assert "AQPL_WEBHOOK_ALLOW_PRIVATE" in page.text_content("#webhook-form")

        page.fill("#w-url", PUBLIC_URL)
        page.uncheck("input[name=event][value='checkpoint.published']")
        page.click("#add-webhook")
        wait_for_js(page, "!document.getElementById('new-webhook').hidden")
        assert page.text_content("#new-webhook-secret").startswith("whsec_")
        wait_for_js(page, "document.querySelector('#webhooks-table [data-webhook-id]')")
        webhook_id = int(page.get_attribute("#webhooks-table [data-webhook-id]", "data-webhook-id"))
        row = page.text_content("#webhooks-table [data-webhook-id]")
        assert PUBLIC_URL in row and "round.failed" in row and "checkpoint.published" not in row

        now = datetime.now(UTC)
        with unit_of_work(sessions) as session:  # what the worker records after three 500s
            session.add(
                WebhookDelivery(
                    endpoint_id=webhook_id,
                    event="round.failed",
                    message_id="msg_e2e_given_up",
                    payload={"type": "round.failed", "timestamp": now.isoformat(), "data": {}},
                    status=DeliveryStatus.failed,
                    attempts=3,
                    last_status_code=500,
                    error="the receiver answered 500",
                    history=[
                        {"at": now.isoformat(), "status_code": 500, "error": "the receiver answered 500"}
                    ]
                    * 3,
                    last_attempt_at=now,
                )
            )
        page.click("#refresh-deliveries")
        wait_for_js(page, "document.querySelector('#deliveries-table [data-delivery-id]')")
        cells = page.eval_on_selector_all(
            "#deliveries-table [data-delivery-id] td", "cells => cells.map(cell => cell.textContent)"
        )
        assert cells[:5] == ["round.failed", "failed", "3", "500", "the receiver answered 500"]
        assert page.is_visible("#deliveries")

        page.click(f"#webhooks-table [data-webhook-id='{webhook_id}'] button.danger")
        wait_for_js(page, "document.querySelector('#webhooks-table')?.textContent.includes('No webhook yet')")
