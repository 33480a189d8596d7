"""Issue 13, item 9: admins deactivate, reactivate, change roles and reset passwords, effective at once.

Before the fix an account could only be created: nothing could stop a departed annotator's tokens
short of editing the database, and the leases they held kept their slots until they lapsed.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from backend.auth.scopes import ANNOTATE, MANAGE
from backend.auth.service import create_api_token, create_login_token
from backend.models import ApiToken, Assignment, AssignmentState, Role, User
from tests.api.factories import PASSWORD, Api, make_annotating_round, make_user, running_api
from tests.conftest import DatabaseFactory


@pytest.fixture
def lone_admin_api(database_factory: DatabaseFactory, database_kind: str, tmp_path: Path) -> Iterator[Api]:
    """A database of its own, so that the admins in it are the test's only."""
    with running_api(database_factory.create(database_kind), tmp_path) as api:
        yield api


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def take(api: Api, headers: dict[str, str], project_id: int) -> int | None:
    response = api.client.post("/api/v1/tasks/next", params={"project_id": project_id}, headers=headers)
    assert response.status_code in (200, 204), response.text
    return None if response.status_code == 204 else int(response.json()["id"])


def change(api: Api, admin: User, user_id: int, **body: object) -> dict[str, object]:
    response = api.client.patch(f"/api/v1/users/{user_id}", json=body, headers=api.headers_for(admin))
    assert response.status_code == 200, response.text
    changed: dict[str, object] = response.json()
    return changed


def test_deactivation_stops_every_token_at_once_and_returns_the_lease(api: Api) -> None:
    with api.seed() as session:
        admin, lead = make_user(session, Role.admin), make_user(session, Role.lead)
        alice, bob = make_user(session), make_user(session)
        project, _round, _queries = make_annotating_round(session, lead, queries=1, overlap=1)
        session_token = create_login_token(session, alice)
        _row, api_token = create_api_token(session, alice, "script", [ANNOTATE], None)
    task = take(api, bearer(session_token), project.id)
    assert task is not None
    assert take(api, api.headers_for(bob), project.id) is None  # alice holds the only slot

    body = change(api, admin, alice.id, is_active=False)
    assert body["is_active"] is False

    for token in (session_token, api_token):
        assert api.client.get("/api/v1/auth/me", headers=bearer(token)).status_code == 401
        assert api.client.post("/api/v1/tasks/next", headers=bearer(token)).status_code == 401
    login = api.client.post("/api/v1/auth/login", json={"username": alice.username, "password": PASSWORD})
    assert login.status_code == 401
    # The slot is free at once, not when the lease would have lapsed.
    assert take(api, api.headers_for(bob), project.id) is not None
    with api.seed() as session:
        assert session.get(Assignment, task).state == AssignmentState.expired  # type: ignore[union-attr]


def test_reactivation_lets_the_user_sign_in_again_but_revives_no_old_token(api: Api) -> None:
    with api.seed() as session:
        admin, alice = make_user(session, Role.admin), make_user(session)
        _row, old_token = create_api_token(session, alice, "script", [ANNOTATE], None)
    change(api, admin, alice.id, is_active=False)
    assert change(api, admin, alice.id, is_active=True)["is_active"] is True
    assert api.client.get("/api/v1/auth/me", headers=bearer(old_token)).status_code == 401
    login = api.client.post("/api/v1/auth/login", json={"username": alice.username, "password": PASSWORD})
    assert login.status_code == 200, login.text


def test_a_demotion_takes_effect_on_the_next_request(api: Api) -> None:
    with api.seed() as session:
        admin, lead = make_user(session, Role.admin), make_user(session, Role.lead)
        session_token = create_login_token(session, lead)
        _row, manage_token = create_api_token(session, lead, "automation", [MANAGE, ANNOTATE], None)
    assert api.client.get("/api/v1/projects", headers=bearer(manage_token)).status_code == 200

    assert change(api, admin, lead.id, role="annotator")["role"] == "annotator"

    # Signed out of the browser; the API token keeps only what an annotator may do.
    assert api.client.get("/api/v1/auth/me", headers=bearer(session_token)).status_code == 401
    assert api.client.get("/api/v1/projects", headers=bearer(manage_token)).status_code == 403
    assert api.client.post("/api/v1/tasks/next", headers=bearer(manage_token)).status_code in (200, 204)


def test_a_promotion_takes_effect_at_the_next_sign_in(api: Api) -> None:
    with api.seed() as session:
        admin, alice = make_user(session, Role.admin), make_user(session)
    change(api, admin, alice.id, role="lead")
    login = api.client.post("/api/v1/auth/login", json={"username": alice.username, "password": PASSWORD})
    assert login.status_code == 200 and login.json()["role"] == "lead"
    token = login.json()["access_token"]
    assert api.client.get("/api/v1/projects", headers=bearer(token)).status_code == 200


def test_a_role_change_returns_the_users_leases(api: Api) -> None:
    with api.seed() as session:
        admin, lead, alice = make_user(session, Role.admin), make_user(session, Role.lead), make_user(session)
        project, _round, _queries = make_annotating_round(session, lead, queries=1, overlap=1)
    task = take(api, api.headers_for(alice), project.id)
    change(api, admin, alice.id, role="lead")
    with api.seed() as session:
        assert session.get(Assignment, task).state == AssignmentState.expired  # type: ignore[union-attr]


def test_a_password_reset_replaces_the_password_and_ends_browser_sessions(api: Api) -> None:
    with api.seed() as session:
        admin, alice = make_user(session, Role.admin), make_user(session)
        session_token = create_login_token(session, alice)
        _row, api_token = create_api_token(session, alice, "script", [ANNOTATE], None)
    new_password = f"new-{uuid.uuid4().hex}"
    response = api.client.post(
        f"/api/v1/users/{alice.id}/password", json={"password": new_password}, headers=api.headers_for(admin)
    )
    assert response.status_code == 200, response.text
    assert new_password not in response.text
    assert api.client.get("/api/v1/auth/me", headers=bearer(session_token)).status_code == 401
    assert api.client.get("/api/v1/auth/me", headers=bearer(api_token)).status_code == 200
    old = api.client.post("/api/v1/auth/login", json={"username": alice.username, "password": PASSWORD})
    assert old.status_code == 401
    new = api.client.post("/api/v1/auth/login", json={"username": alice.username, "password": new_password})
    assert new.status_code == 200


def test_only_admins_change_accounts_and_leads_learn_nothing_of_others(api: Api) -> None:
    with api.seed() as session:
        lead, other_lead, admin = (
            make_user(session, Role.lead),
            make_user(session, Role.lead),
            make_user(session, Role.admin),
        )
        alice = make_user(session)
    headers = api.headers_for(lead)
    annotator_headers = api.headers_for(alice)
    assert (
        api.client.patch(f"/api/v1/users/{alice.id}", json={"is_active": False}, headers=headers).status_code
        == 403
    )
    for hidden in (other_lead.id, admin.id, 999_999):
        response = api.client.patch(f"/api/v1/users/{hidden}", json={"is_active": False}, headers=headers)
        assert response.status_code == 404, (hidden, response.text)
    reset = api.client.post(
        f"/api/v1/users/{alice.id}/password", json={"password": "x" * 12}, headers=headers
    )
    assert reset.status_code == 403
    assert (
        api.client.patch(f"/api/v1/users/{lead.id}", json={"role": "admin"}, headers=headers).status_code
        == 403
    )
    assert (
        api.client.patch(f"/api/v1/users/{alice.id}", json={}, headers=annotator_headers).status_code == 403
    )
    with api.seed() as session:
        assert session.get(User, alice.id).is_active  # type: ignore[union-attr]
        assert session.get(User, lead.id).role == Role.lead  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "body",
    [{"role": "root"}, {"is_active": "maybe"}, {"username": "renamed"}, {"password_hash": "x"}],
)
def test_bad_account_changes_are_422(api: Api, body: dict[str, object]) -> None:
    with api.seed() as session:
        admin, alice = make_user(session, Role.admin), make_user(session)
    response = api.client.patch(f"/api/v1/users/{alice.id}", json=body, headers=api.headers_for(admin))
    assert response.status_code == 422, response.text


def test_a_short_new_password_is_422(api: Api) -> None:
    with api.seed() as session:
        admin, alice = make_user(session, Role.admin), make_user(session)
    response = api.client.post(
        f"/api/v1/users/{alice.id}/password", json={"password": "short"}, headers=api.headers_for(admin)
    )
    assert response.status_code == 422


def test_the_last_active_admin_cannot_deactivate_or_demote_themselves(lone_admin_api: Api) -> None:
    api = lone_admin_api
    with api.seed() as session:
        admin = make_user(session, Role.admin)
        inactive_admin = make_user(session, Role.admin)
        inactive_admin.is_active = False
    headers = api.headers_for(admin)
    for body in ({"is_active": False}, {"role": "lead"}, {"role": "annotator", "is_active": False}):
        response = api.client.patch(f"/api/v1/users/{admin.id}", json=body, headers=headers)
        assert response.status_code == 409, response.text
        assert "no active admin" in response.json()["detail"]
    # With a second active admin, either may step down, but not both.
    change(api, admin, inactive_admin.id, is_active=True)
    assert change(api, admin, admin.id, role="lead")["role"] == "lead"
    response = api.client.patch(
        f"/api/v1/users/{inactive_admin.id}",
        json={"is_active": False},
        headers=api.headers_for(inactive_admin),
    )
    assert response.status_code == 409
    with api.seed() as session:
        admins = session.scalars(select(User.id).where(User.role == Role.admin, User.is_active.is_(True)))
        assert list(admins) == [inactive_admin.id]


def test_deactivation_revokes_the_tokens_for_good(api: Api) -> None:
    with api.seed() as session:
        admin, alice = make_user(session, Role.admin), make_user(session)
        create_login_token(session, alice)
        create_api_token(session, alice, "script", [ANNOTATE], None)
    change(api, admin, alice.id, is_active=False)
    with api.seed() as session:
        tokens = session.scalars(select(ApiToken).where(ApiToken.user_id == alice.id)).all()
        assert tokens and all(token.revoked_at is not None for token in tokens)
