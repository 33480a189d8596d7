"""CSRF tokens bound to the session with the secret key, production cookie names, and the headers
every response carries (issue 13, item 6).

The attack: any matching cookie and field were accepted (cookie `aqpl_csrf=x` with header or field
`x`), so whoever could plant a cookie (a sibling subdomain, a plain-HTTP page on the same host)
could make a signed-in browser change state, or sign it in as the attacker.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from backend.auth.csrf import session_csrf_token
from backend.models import Role
from tests.api.factories import PASSWORD, Api, make_user, running_api
from tests.conftest import DatabaseFactory

SECRET = "k" * 48


@pytest.fixture
def api(database_factory: DatabaseFactory, tmp_path: Path) -> Iterator[Api]:
    with running_api(database_factory.create("sqlite"), tmp_path) as running:
        yield running


def new_lead(api: Api) -> str:
    with api.seed() as session:
        return make_user(session, Role.lead).username


def api_login(client: TestClient, username: str) -> httpx.Response:
    return client.post("/api/v1/auth/login", json={"username": username, "password": PASSWORD})


# ------------------------------------------------------------------ forged pairs


def test_a_planted_csrf_cookie_with_a_matching_header_or_field_is_refused(api: Api) -> None:
    api_login(api.client, new_lead(api))
    api.client.cookies.set("aqpl_csrf", "x")  # what a sibling subdomain can plant
    refused = api.client.post("/api/v1/tasks/next", headers={"X-CSRF-Token": "x"})
    assert refused.status_code == 403 and "CSRF" in refused.json()["detail"]
    assert api.client.post("/api/v1/auth/logout", data={"csrf_token": "x"}).status_code == 403
    # The page's sign-out form: refused too, the session lives on.
    assert (
        api.client.post("/logout", data={"csrf_token": "x"}, follow_redirects=False).headers["location"]
        == "/"
    )
    assert api.client.get("/api/v1/auth/me").status_code == 200


def test_a_csrf_token_works_only_for_the_session_it_was_made_for(api: Api) -> None:
    lead = new_lead(api)
    first = api_login(api.client, lead).json()
    api.client.cookies.clear()
    second = api_login(api.client, lead).json()
    assert first["csrf_token"] != second["csrf_token"]
    assert first["access_token"] not in first["csrf_token"]
    # The browser holds the second session: the first session's token is no good with it.
    stale = api.client.post("/api/v1/tasks/next", headers={"X-CSRF-Token": first["csrf_token"]})
    assert stale.status_code == 403
    fresh = api.client.post("/api/v1/tasks/next", headers={"X-CSRF-Token": second["csrf_token"]})
    assert fresh.status_code == 204


def test_the_token_is_made_with_the_secret_key(database_factory: DatabaseFactory, tmp_path: Path) -> None:
    """Two servers on one database, with different keys: one session, a different token on each."""
    database = database_factory.create("sqlite")
    with running_api(database, tmp_path / "a", secret_key="a" * 40) as first:
        body = api_login(first.client, new_lead(first)).json()
    with running_api(database, tmp_path / "b", secret_key="b" * 40) as second:
        second.client.cookies.set("aqpl_session", body["access_token"])
        other_key = second.client.post("/api/v1/tasks/next", headers={"X-CSRF-Token": body["csrf_token"]})
        assert other_key.status_code == 403
        own = session_csrf_token(second.settings, body["access_token"])
        assert own != body["csrf_token"]
        assert second.client.post("/api/v1/tasks/next", headers={"X-CSRF-Token": own}).status_code == 204


def test_the_sign_in_form_refuses_a_planted_token(api: Api) -> None:
    """Login CSRF: a planted cookie and field would sign the victim's browser in as the attacker."""
    lead = new_lead(api)
    api.client.cookies.set("aqpl_csrf", "x")
    planted = api.client.post(
        "/login", data={"username": lead, "password": PASSWORD, "csrf_token": "x"}, follow_redirects=False
    )
    assert planted.status_code == 403 and "aqpl_session" not in planted.cookies
    # The form the server gave out (and its cookie, both signed) works.
    api.client.cookies.clear()
    page = api.client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token is not None and api.client.cookies["aqpl_csrf"] == token[1]
    signed = api.client.post(
        "/login",
        data={"username": lead, "password": PASSWORD, "csrf_token": token[1]},
        follow_redirects=False,
    )
    assert signed.status_code == 303 and "aqpl_session" in signed.cookies


# ------------------------------------------------------------------ production cookie names


@pytest.fixture
def production(database_factory: DatabaseFactory, tmp_path: Path) -> Iterator[tuple[Api, TestClient]]:
    """A production app and a browser-like client on HTTPS (Secure cookies travel only there)."""
    with running_api(
        database_factory.create("sqlite"), tmp_path, environment="production", secret_key=SECRET
    ) as api:
        yield api, TestClient(api.app, base_url="https://testserver", follow_redirects=False)


def test_production_cookies_are_host_prefixed_and_secure_from_the_sign_in_form_on(
    production: tuple[Api, TestClient],
) -> None:
    api, browser = production
    lead = new_lead(api)
    page = browser.get("/login")
    form_cookie = page.headers["set-cookie"].lower()
    assert form_cookie.startswith("__host-aqpl_csrf=") and "secure" in form_cookie and "path=/" in form_cookie
    assert "domain" not in form_cookie
    token = browser.cookies["__Host-aqpl_csrf"]
    signed_in = browser.post("/login", data={"username": lead, "password": PASSWORD, "csrf_token": token})
    assert signed_in.status_code == 303
    assert set(browser.cookies.keys()) == {"__Host-aqpl_session", "__Host-aqpl_csrf"}
    assert browser.get("/").status_code == 200
    csrf = browser.cookies["__Host-aqpl_csrf"]
    assert browser.post("/api/v1/tasks/next", headers={"X-CSRF-Token": csrf}).status_code == 204
    signed_out = browser.post("/logout", data={"csrf_token": csrf})
    assert signed_out.headers["location"] == "/login"
    cleared = [header.lower() for header in signed_out.headers.get_list("set-cookie")]
    assert all(header.startswith("__host-") and "secure" in header for header in cleared)


def test_production_ignores_cookies_without_the_host_prefix(production: tuple[Api, TestClient]) -> None:
    """A cookie planted without the prefix (a subdomain can set `aqpl_session`) is no session."""
    api, browser = production
    token = api_login(browser, new_lead(api)).json()["access_token"]
    browser.cookies.clear()
    browser.cookies.set("aqpl_session", token)
    assert browser.get("/api/v1/auth/me").status_code == 401


# ------------------------------------------------------------------ headers


def test_every_response_says_nosniff(api: Api) -> None:
    answers = {
        "json": api.client.get("/api/v1/health"),
        "401": api.client.get("/api/v1/auth/me"),
        "404": api.client.get("/no/such/page"),
        "refused body": api.client.post("/api/v1/projects", content=b"{}"),
        "static": api.client.get("/static/css/app.css"),
        "page": api.client.get("/login"),
        "openapi": api.client.get("/openapi.json"),
    }
    for name, response in answers.items():
        assert response.headers.get("x-content-type-options") == "nosniff", name


def test_responses_that_carry_tokens_are_not_stored(api: Api) -> None:
    lead = new_lead(api)
    login = api_login(api.client, lead)
    assert login.headers["cache-control"] == "no-store"
    created = api.client.post(
        "/api/v1/tokens",
        json={"name": "ci", "scopes": ["checkpoints:read"]},
        headers={"Authorization": f"Bearer {login.json()['access_token']}"},
    )
    assert created.status_code == 201 and created.headers["cache-control"] == "no-store"
    api.client.cookies.clear()
    form = api.client.get("/login")
    assert form.headers["cache-control"] == "no-store"
    signed_in = api.client.post(
        "/login",
        data={"username": lead, "password": PASSWORD, "csrf_token": api.client.cookies["aqpl_csrf"]},
        follow_redirects=False,
    )
    assert signed_in.status_code == 303 and signed_in.headers["cache-control"] == "no-store"
    for page in ("/", "/tokens"):
        assert api.client.get(page).headers["cache-control"] == "no-store", page
