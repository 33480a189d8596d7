"""Logins, cookies and CSRF, token checks, throttling, and what never reaches clients or logs."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.cookies import SimpleCookie
from pathlib import Path

import httpx
import pytest
from fastapi import APIRouter
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from backend.auth.hash_gate import PasswordCheckGate
from backend.auth.ratelimit import LoginGuard, LoginThrottle
from backend.auth.service import authenticate, create_api_token, resolve_token
from backend.auth.throttle_store import SQLiteFileStorage
from backend.db import create_db_engine, make_session_factory, unit_of_work
from backend.errors import TooManyRequests, Unauthorized
from backend.models import ApiToken, Role, User
from tests.api.factories import PASSWORD, Api, make_user, new_user, running_api
from tests.conftest import DatabaseFactory


@pytest.fixture
def sqlite_session(database_factory: DatabaseFactory) -> Iterator[Session]:
    """For throttling tests: Argon2 makes each attempt slow on purpose, and the database kind is beside
    the point there, so they run once."""
    engine = create_db_engine(database_factory.create("sqlite"))
    try:
        with unit_of_work(make_session_factory(engine)) as session:
            yield session
    finally:
        engine.dispose()


def login(client: TestClient, username: str, password: str = PASSWORD) -> httpx.Response:
    return client.post("/api/v1/auth/login", json={"username": username, "password": password})


def set_cookies(response: httpx.Response) -> dict[str, str]:
    """The raw Set-Cookie header of each cookie the response sets, by name."""
    cookies = {}
    for header in response.headers.get_list("set-cookie"):
        name = next(iter(SimpleCookie(header)))
        cookies[name] = header.lower()
    return cookies


def test_login_returns_a_bearer_token_and_the_session_cookies(api: Api) -> None:
    lead = new_user(api, Role.lead)
    response = login(api.client, lead.username)
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["role"] == "lead"
    cookies = set_cookies(response)
    assert "httponly" in cookies["aqpl_session"] and "samesite=lax" in cookies["aqpl_session"]
    assert "httponly" not in cookies["aqpl_csrf"] and "samesite=strict" in cookies["aqpl_csrf"]
    assert "secure" not in cookies["aqpl_session"]  # development: plain http on localhost
    assert api.client.cookies["aqpl_csrf"] == body["csrf_token"]
    assert api.client.cookies["aqpl_session"] == body["access_token"]
    me = api.client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert me.json() == {
        "id": lead.id,
        "username": lead.username,
        "role": "lead",
        "scopes": ["annotate", "checkpoints:read", "manage"],
    }


def test_production_cookies_are_secure_and_host_only(
    database_factory: DatabaseFactory, tmp_path: Path
) -> None:
    with running_api(
        database_factory.create("sqlite"), tmp_path, environment="production", secret_key="s" * 40
    ) as api:
        user = new_user(api)
        cookies = set_cookies(login(api.client, user.username))
    # __Host-: set over HTTPS by this origin only, Path=/ and no Domain (backend/auth/csrf.py).
    for name in ("__Host-aqpl_session", "__Host-aqpl_csrf"):
        assert "secure" in cookies[name] and "path=/" in cookies[name] and "domain" not in cookies[name]


def test_passwords_are_stored_as_argon2id(api: Api) -> None:
    with api.seed() as session:
        user = make_user(session)
        stored = session.scalar(select(User.password_hash).where(User.id == user.id))
    assert stored is not None and stored.startswith("$argon2id$")
    assert PASSWORD not in stored


@pytest.mark.parametrize("username", ["nobody", "wrong-password"])
def test_wrong_credentials_are_401_without_saying_which_part_was_wrong(api: Api, username: str) -> None:
    user = new_user(api)
    response = login(api.client, user.username if username == "wrong-password" else "nobody", "not-it-at-all")
    assert response.status_code == 401
    assert response.json() == {"detail": "wrong username or password"}


@pytest.mark.parametrize("username", ["nul\x00byte", "x" * 65, ""])
def test_odd_usernames_are_refused_without_a_server_error(api: Api, username: str) -> None:
    assert login(api.client, username, "whatever").status_code in (401, 422)


def test_inactive_users_cannot_log_in_and_their_tokens_stop_working(api: Api) -> None:
    user = new_user(api)
    headers = api.headers_for(user)
    with api.seed() as session:
        session.execute(update(User).where(User.id == user.id).values(is_active=False))
    assert login(api.client, user.username).status_code == 401
    assert api.client.get("/api/v1/auth/me", headers=headers).status_code == 401


def clocked_guard(tmp_path: Path, now: list[float]) -> LoginGuard:
    """The app's guard on a throttle file of its own, whose time is `now[0]` (the policy's defaults)."""
    storage = SQLiteFileStorage(tmp_path / "throttle.sqlite3", clock=lambda: now[0])
    return LoginGuard(throttle=LoginThrottle(storage, clock=lambda: now[0]), gate=PasswordCheckGate(2))


def test_five_failures_lock_that_client_out_of_that_username_then_the_window_slides(
    sqlite_session: Session, tmp_path: Path
) -> None:
    db_session = sqlite_session
    user = make_user(db_session)
    now = [1000.0]
    guard = clocked_guard(tmp_path, now)
    for _ in range(5):
        with pytest.raises(Unauthorized):
            authenticate(db_session, user.username, "wrong", "10.0.0.1", guard=guard)
    # Locked for that client: even the right password is refused until the window slides.
    with pytest.raises(TooManyRequests, match="try again in 900 seconds"):
        authenticate(db_session, user.username, PASSWORD, "10.0.0.1", guard=guard)
    # Another client (the owner) is not: a stranger's failures never lock the owner out.
    assert authenticate(db_session, user.username, PASSWORD, "10.9.9.9", guard=guard).id == user.id
    now[0] += 899.0
    with pytest.raises(TooManyRequests):
        authenticate(db_session, user.username, PASSWORD, "10.0.0.1", guard=guard)
    now[0] += 1.5
    assert authenticate(db_session, user.username, PASSWORD, "10.0.0.1", guard=guard).id == user.id


def test_twenty_failures_from_one_address_lock_that_address(sqlite_session: Session, tmp_path: Path) -> None:
    db_session = sqlite_session
    user = make_user(db_session)
    guard = clocked_guard(tmp_path, [1000.0])
    for attempt in range(20):
        with pytest.raises(Unauthorized):
            authenticate(db_session, f"guess{attempt}", "wrong", "203.0.113.5", guard=guard)
    with pytest.raises(TooManyRequests):
        authenticate(db_session, user.username, PASSWORD, "203.0.113.5", guard=guard)
    assert authenticate(db_session, user.username, PASSWORD, "198.51.100.7", guard=guard).id == user.id


def test_the_login_endpoint_answers_429_with_retry_after_after_five_failures(
    database_factory: DatabaseFactory, tmp_path: Path
) -> None:
    with running_api(database_factory.create("sqlite"), tmp_path) as api:
        user = new_user(api)
        statuses = [login(api.client, user.username, "bad-password").status_code for _ in range(5)]
        locked = login(api.client, user.username)
    assert statuses == [401] * 5
    assert locked.status_code == 429
    assert "try again" in locked.json()["detail"]
    assert 1 <= int(locked.headers["retry-after"]) <= 900


def test_cookie_requests_that_change_state_need_the_csrf_token(api: Api) -> None:
    user = new_user(api)
    body = login(api.client, user.username).json()
    # The TestClient now holds both cookies, like a browser.
    assert api.client.get("/api/v1/auth/me").status_code == 200
    refused = api.client.post("/api/v1/tasks/next")
    assert refused.status_code == 403
    assert "CSRF" in refused.json()["detail"]
    wrong = api.client.post("/api/v1/tasks/next", headers={"X-CSRF-Token": "forged"})
    assert wrong.status_code == 403
    accepted = api.client.post("/api/v1/tasks/next", headers={"X-CSRF-Token": body["csrf_token"]})
    assert accepted.status_code == 204  # authorised; there is simply no work
    # A page form sends the token as a field instead of a header.
    form = api.client.post("/api/v1/auth/logout", data={"csrf_token": body["csrf_token"]})
    assert form.status_code == 204


def test_bearer_requests_need_no_csrf_token(api: Api) -> None:
    user = new_user(api)
    response = api.client.post("/api/v1/tasks/next", headers=api.headers_for(user))
    assert response.status_code == 204


def test_logout_revokes_the_session_and_clears_the_cookies(api: Api) -> None:
    user = new_user(api)
    token = login(api.client, user.username).json()["access_token"]
    api.client.cookies.clear()
    headers = {"Authorization": f"Bearer {token}"}
    response = api.client.post("/api/v1/auth/logout", headers=headers)
    assert response.status_code == 204
    cleared = set_cookies(response)
    assert 'aqpl_session=""' in cleared["aqpl_session"] and "max-age=0" in cleared["aqpl_session"]
    assert api.client.get("/api/v1/auth/me", headers=headers).status_code == 401


@pytest.mark.parametrize(
    "authorization",
    ["Bearer not-a-token", "Bearer ", "Basic dXNlcjpwYXNz", "bearer", "Token abc"],
)
def test_malformed_or_unknown_credentials_are_401(api: Api, authorization: str) -> None:
    response = api.client.get("/api/v1/auth/me", headers={"Authorization": authorization})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


def test_expired_and_revoked_tokens_resolve_to_nothing(db_session: Session) -> None:
    user = make_user(db_session, Role.lead)
    token, plain = create_api_token(db_session, user, "ci", ["checkpoints:read"], None)
    resolved = resolve_token(db_session, plain)
    assert resolved is not None and resolved[0].id == user.id
    assert token.token_hash != plain and plain not in token.token_hash
    token.expires_at = datetime.now(UTC) - timedelta(seconds=1)
    db_session.flush()
    assert resolve_token(db_session, plain) is None
    token.expires_at = None
    token.revoked_at = datetime.now(UTC)
    db_session.flush()
    assert resolve_token(db_session, plain) is None
    assert db_session.scalar(select(ApiToken.id).where(ApiToken.token_hash == plain)) is None


def test_secrets_never_reach_the_logs(api: Api, caplog: pytest.LogCaptureFixture) -> None:
    user = new_user(api)
    caplog.set_level(logging.DEBUG)
    login(api.client, user.username, "a-wrong-password-123")
    token = login(api.client, user.username).json()["access_token"]
    api.client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "a-wrong-password-123" not in logged
    assert PASSWORD not in logged
    assert token not in logged


def test_unexpected_errors_are_a_generic_500_with_the_trace_in_the_server_log(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    broken = APIRouter()

    @broken.get("/api/v1/broken")
    def _boom() -> None:
        raise RuntimeError("secret detail: password=hunter2")

    api.app.include_router(broken)
    client = TestClient(api.app, raise_server_exceptions=False)
    with caplog.at_level(logging.ERROR, logger="backend.errors"):
        response = client.get("/api/v1/broken")
    assert response.status_code == 500
    assert response.json() == {"detail": "internal error"}
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "hunter2" not in response.text
    assert any(record.exc_info and "hunter2" in str(record.exc_info[1]) for record in caplog.records)
