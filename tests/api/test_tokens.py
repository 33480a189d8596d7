"""API tokens: shown once, stored hashed, scoped, expiring, revocable."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from backend.models import ApiToken, Role, User
from tests.api.factories import Api, new_user


def create(api: Api, headers: dict[str, str], **body: object) -> dict[str, object]:
    response = api.client.post(
        "/api/v1/tokens", json={"name": "ci", "scopes": ["checkpoints:read"], **body}, headers=headers
    )
    assert response.status_code == 201, response.text
    created: dict[str, object] = response.json()
    return created


def bearer(token: object) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_a_token_is_shown_once_and_stored_as_its_sha256(api: Api) -> None:
    lead = new_user(api, Role.lead)
    headers = api.headers_for(lead)
    created = create(api, headers, name="model puller")
    plain = str(created["token"])
    assert len(plain) > 40
    assert created["scopes"] == ["checkpoints:read"] and created["expires_at"] is None
    listed = api.client.get("/api/v1/tokens", headers=headers).json()
    assert [item["name"] for item in listed] == ["model puller"]  # login sessions are not listed
    assert "token" not in listed[0]
    with api.seed() as session:
        stored = session.scalars(select(ApiToken).where(ApiToken.id == created["id"])).one()
    assert stored.token_hash == hashlib.sha256(plain.encode()).hexdigest()


def test_a_token_can_do_only_what_its_scopes_allow(api: Api) -> None:
    lead = new_user(api, Role.lead)
    token = create(api, api.headers_for(lead), scopes=["checkpoints:read"])["token"]
    me = api.client.get("/api/v1/auth/me", headers=bearer(token))
    assert me.status_code == 200 and me.json()["scopes"] == ["checkpoints:read"]
    assert api.client.post("/api/v1/tasks/next", headers=bearer(token)).status_code == 403
    assert api.client.get("/api/v1/tokens", headers=bearer(token)).status_code == 403
    annotate = create(api, api.headers_for(lead), scopes=["annotate"])["token"]
    assert api.client.post("/api/v1/tasks/next", headers=bearer(annotate)).status_code == 204


def test_a_token_cannot_grant_more_than_itself_or_the_role(api: Api) -> None:
    lead = new_user(api, Role.lead)
    manage_only = create(api, api.headers_for(lead), scopes=["manage"])["token"]
    response = api.client.post(
        "/api/v1/tokens", json={"name": "x", "scopes": ["checkpoints:read"]}, headers=bearer(manage_only)
    )
    assert response.status_code == 403
    assert create(api, bearer(manage_only), scopes=["manage"])["scopes"] == ["manage"]


def test_annotators_cannot_make_tokens(api: Api) -> None:
    annotator = new_user(api, Role.annotator)
    response = api.client.post(
        "/api/v1/tokens", json={"name": "x", "scopes": ["annotate"]}, headers=api.headers_for(annotator)
    )
    assert response.status_code == 403


@pytest.mark.parametrize(
    "body",
    [
        {"name": "x", "scopes": ["root"]},
        {"name": "x", "scopes": []},
        {"name": "", "scopes": ["annotate"]},
        {"name": "login", "scopes": ["annotate"]},
        {"name": "nul\x00byte", "scopes": ["annotate"]},
        {"name": "x", "scopes": ["annotate"], "expires_at": "2001-01-01T00:00:00Z"},
        {"name": "x", "scopes": ["annotate"], "expires_at": "2999-01-01T00:00:00"},  # no time zone
        {"name": "x", "scopes": ["annotate"], "extra": True},
    ],
)
def test_bad_token_requests_are_422(api: Api, body: dict[str, object]) -> None:
    response = api.client.post("/api/v1/tokens", json=body, headers=api.headers_for(new_user(api, Role.lead)))
    assert response.status_code == 422, response.text


def test_a_token_stops_working_when_it_expires(api: Api) -> None:
    lead = new_user(api, Role.lead)
    expires = datetime.now(UTC) + timedelta(hours=1)
    created = create(api, api.headers_for(lead), expires_at=expires.isoformat())
    assert datetime.fromisoformat(str(created["expires_at"])) == expires
    assert api.client.get("/api/v1/auth/me", headers=bearer(created["token"])).status_code == 200
    with api.seed() as session:
        session.execute(
            update(ApiToken)
            .where(ApiToken.id == created["id"])
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    assert api.client.get("/api/v1/auth/me", headers=bearer(created["token"])).status_code == 401


def test_revoked_tokens_are_refused_and_only_owners_or_admins_revoke(api: Api) -> None:
    lead, other_lead, admin = new_user(api, Role.lead), new_user(api, Role.lead), new_user(api, Role.admin)
    created = create(api, api.headers_for(lead))
    path = f"/api/v1/tokens/{created['id']}"
    assert api.client.delete(path, headers=api.headers_for(other_lead)).status_code == 404
    assert api.client.get("/api/v1/auth/me", headers=bearer(created["token"])).status_code == 200
    assert api.client.delete(path, headers=api.headers_for(lead)).status_code == 204
    assert api.client.delete(path, headers=api.headers_for(lead)).status_code == 204  # again: harmless
    assert api.client.get("/api/v1/auth/me", headers=bearer(created["token"])).status_code == 401
    listed = api.client.get("/api/v1/tokens", headers=api.headers_for(lead)).json()
    assert listed[0]["revoked_at"] is not None
    second = create(api, api.headers_for(lead))
    assert (
        api.client.delete(f"/api/v1/tokens/{second['id']}", headers=api.headers_for(admin)).status_code == 204
    )
    assert api.client.delete("/api/v1/tokens/99999", headers=api.headers_for(admin)).status_code == 404


def test_a_token_outlives_a_role_change_only_within_the_new_role(api: Api) -> None:
    lead = new_user(api, Role.lead)
    token = create(api, api.headers_for(lead), scopes=["manage", "annotate"])["token"]
    with api.seed() as session:
        session.execute(update(User).where(User.id == lead.id).values(role=Role.annotator))
    me = api.client.get("/api/v1/auth/me", headers=bearer(token)).json()
    assert me["scopes"] == ["annotate"]
    assert api.client.get("/api/v1/tokens", headers=bearer(token)).status_code == 403
