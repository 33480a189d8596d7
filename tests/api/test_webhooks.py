"""Webhooks over REST: registration (public targets only by default), listing without secrets,
deletion, the delivery log, who may do each; and the lifecycle's events queueing deliveries."""

from __future__ import annotations

import ipaddress

import pytest
from sqlalchemy import select

from aqpl import job_names
from backend.models import DeliveryStatus, Role, RoundState, WebhookDelivery
from backend.rounds import lifecycle as round_lifecycle
from backend.webhooks.targets import TargetRefused, check_target, is_public
from tests.api.factories import Api, make_project, make_round, new_user
from tests.api.platform_support import queued_tasks

PUBLIC_URL = "http://93.184.215.14/hooks/aqpl"  # an IP literal: resolves without DNS
EVENTS = ["round.annotating", "round.published"]


def _create(api: Api, headers: dict[str, str], project_id: int, url: str = PUBLIC_URL) -> dict:  # type: ignore[type-arg]
    response = api.client.post(
        f"/api/v1/projects/{project_id}/webhooks", json={"url": url, "events": EVENTS}, headers=headers
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("93.184.215.14", True),
        ("2606:4700::1111", True),
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),  # cloud metadata: link-local
        ("0.0.0.0", False),  # noqa: S104  # an address judged, not bound
        ("224.0.0.1", False),
        ("240.0.0.1", False),  # reserved
        ("100.64.0.1", False),  # carrier-grade NAT: not global
        ("::1", False),
        ("fe80::1", False),
        ("fd00::1", False),
        ("::ffff:127.0.0.1", False),  # IPv4-mapped loopback
    ],
)
def test_only_public_addresses_are_targets(address: str, public: bool) -> None:
    assert is_public(ipaddress.ip_address(address)) is public


def test_a_host_is_judged_by_every_address_it_resolves_to() -> None:
    with pytest.raises(TargetRefused, match="loopback, private or reserved"):
        check_target("http://localhost:8080/hook", allow_private=False)
    check_target("http://localhost:8080/hook", allow_private=True)
    with pytest.raises(TargetRefused, match="not an http"):
        check_target("ftp://93.184.215.14/", allow_private=True)


def test_register_list_and_delete(api: Api) -> None:
    lead = new_user(api, Role.lead)
    headers = api.headers_for(lead)
    with api.seed() as session:
        project = make_project(session, lead)
    created = _create(api, headers, project.id)
    assert created["url"] == PUBLIC_URL and created["events"] == EVENTS
    assert created["secret"].startswith("whsec_") and len(created["secret"]) > 30

    listed = api.client.get(f"/api/v1/projects/{project.id}/webhooks", headers=headers)
    assert listed.status_code == 200
    assert [item["id"] for item in listed.json()] == [created["id"]]
    assert "secret" not in listed.json()[0]  # shown once, at registration

    log = api.client.get(f"/api/v1/webhooks/{created['id']}/deliveries", headers=headers)
    assert log.status_code == 200 and log.json() == []

    assert api.client.delete(f"/api/v1/webhooks/{created['id']}", headers=headers).status_code == 204
    assert api.client.get(f"/api/v1/projects/{project.id}/webhooks", headers=headers).json() == []
    assert api.client.delete(f"/api/v1/webhooks/{created['id']}", headers=headers).status_code == 404


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000/hook",
        "http://localhost/hook",
        "http://10.0.0.5/hook",
        "http://[::1]/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://0.0.0.0/",
    ],
)
def test_private_and_loopback_targets_are_refused(api: Api, url: str) -> None:
    lead = new_user(api, Role.lead)
    with api.seed() as session:
        project = make_project(session, lead)
    response = api.client.post(
        f"/api/v1/projects/{project.id}/webhooks",
        json={"url": url, "events": ["round.failed"]},
        headers=api.headers_for(lead),
    )
    assert response.status_code == 422, response.text
    assert "AQPL_WEBHOOK_ALLOW_PRIVATE" in response.json()["detail"]
    assert response.json()["errors"][0]["loc"] == ["body", "url"]


@pytest.mark.parametrize(
    "body",
    [
        {"url": "not a url", "events": ["round.failed"]},
        {"url": "ftp://93.184.215.14/", "events": ["round.failed"]},
        {"url": PUBLIC_URL, "events": []},
        {"url": PUBLIC_URL, "events": ["round.deleted"]},
        {"url": PUBLIC_URL, "events": ["round.failed"], "secret": "mine"},
    ],
)
def test_bad_bodies_are_422(api: Api, body: dict) -> None:  # type: ignore[type-arg]
    lead = new_user(api, Role.lead)
    with api.seed() as session:
        project = make_project(session, lead)
    response = api.client.post(
        f"/api/v1/projects/{project.id}/webhooks", json=body, headers=api.headers_for(lead)
    )
    assert response.status_code == 422


def test_only_who_manages_the_project_sees_its_webhooks(api: Api) -> None:
    owner, other_lead = new_user(api, Role.lead), new_user(api, Role.lead)
    annotator, admin = new_user(api, Role.annotator), new_user(api, Role.admin)
    with api.seed() as session:
        project = make_project(session, owner)
    webhook = _create(api, api.headers_for(owner), project.id)
    paths = [
        ("GET", f"/api/v1/projects/{project.id}/webhooks"),
        ("POST", f"/api/v1/projects/{project.id}/webhooks"),
        ("GET", f"/api/v1/webhooks/{webhook['id']}/deliveries"),
        ("DELETE", f"/api/v1/webhooks/{webhook['id']}"),
    ]
    body = {"url": PUBLIC_URL, "events": EVENTS}
    for method, path in paths:
        # Another lead's project is not disclosed: the 404 of one that does not exist.
        response = api.client.request(method, path, json=body, headers=api.headers_for(other_lead))
        assert response.status_code == 404, (method, path, response.text)
        assert (
            api.client.request(method, path, json=body, headers=api.headers_for(annotator)).status_code == 403
        )
        assert api.client.request(method, path, json=body).status_code == 401
    admin_headers = api.headers_for(admin)
    assert api.client.get(paths[0][1], headers=admin_headers).status_code == 200
    assert api.client.get(paths[2][1], headers=admin_headers).status_code == 200
    assert api.client.get("/api/v1/projects/999999/webhooks", headers=admin_headers).status_code == 404
    assert api.client.get("/api/v1/webhooks/999999/deliveries", headers=admin_headers).status_code == 404


def test_round_events_queue_one_delivery_per_subscribed_endpoint(fresh_api: Api) -> None:
    api = fresh_api
    lead = new_user(api, Role.lead)
    with api.seed() as session:
        project = make_project(session, lead)
    headers = api.headers_for(lead)
    annotating = _create(api, headers, project.id)  # annotating and published
    response = api.client.post(
        f"/api/v1/projects/{project.id}/webhooks",
        json={"url": PUBLIC_URL, "events": ["round.failed"]},
        headers=headers,
    )
    failed_hook = response.json()
    with api.seed() as session:
        round_ = make_round(session, project, state=RoundState.scoring)
        round_lifecycle.move(session, round_, RoundState.annotating)
        round_id = round_.id
    with api.seed() as session:
        rows = session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id)).all()
        assert [(row.endpoint_id, row.event, row.status) for row in rows] == [
            (annotating["id"], "round.annotating", DeliveryStatus.pending)
        ]
        payload = rows[0].payload
        first_id = rows[0].id
    assert payload["type"] == "round.annotating" and payload["timestamp"].endswith("Z")
    assert payload["data"] == {
        "project_id": project.id,
        "round_id": round_id,
        "round_number": 1,
        "state": "annotating",
    }
    assert (job_names.WEBHOOK_DELIVER, [first_id]) in queued_tasks(api.settings)

    with api.seed() as session:
        locked = round_lifecycle.locked_in(session, round_id, RoundState.annotating)
        assert locked is not None
        round_lifecycle.fail(session, locked, "the disk is full")
    with api.seed() as session:
        row = session.scalars(select(WebhookDelivery).where(WebhookDelivery.event == "round.failed")).one()
        assert row.endpoint_id == failed_hook["id"]
        assert row.payload["data"]["error"] == "the disk is full"
        assert row.payload["data"]["failed_state"] == "annotating"

    log = api.client.get(f"/api/v1/webhooks/{annotating['id']}/deliveries", headers=headers).json()
    assert [(item["event"], item["status"], item["attempts"]) for item in log] == [
        ("round.annotating", "pending", 0)
    ]


def test_an_event_that_rolls_back_queues_nothing(fresh_api: Api) -> None:
    api = fresh_api
    lead = new_user(api, Role.lead)
    with api.seed() as session:
        project = make_project(session, lead)
    _create(api, api.headers_for(lead), project.id)
    with pytest.raises(RuntimeError), api.seed() as session:
        round_ = make_round(session, project, state=RoundState.scoring)
        round_lifecycle.move(session, round_, RoundState.annotating)
        raise RuntimeError("the request failed after the move")
    with api.seed() as session:
        assert session.scalars(select(WebhookDelivery)).all() == []
    assert not [task for task in queued_tasks(api.settings) if task[0] == job_names.WEBHOOK_DELIVER]
