"""Every route of the app against every kind of caller (issue 6's access table).

Routes are read from the app itself, so a new endpoint is checked the day it appears: each /api/v1
route other than the public ones must authenticate (anonymous: 401), and each caller gets 403
exactly when the route's required scope (read from its `require_scope` dependency) is outside
what the caller's role and token allow. A table pins the scope of the routes known today, so that
dropping a `Lead` from an endpoint fails here; browser pages are checked against their own table.
Access rules do not depend on the database kind, so this runs on SQLite only.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.testclient import TestClient

from backend.auth.scopes import ANNOTATE, CHECKPOINTS_READ, MANAGE
from backend.auth.service import create_api_token, create_login_token
from backend.deps import ScopeCheck, _current_user
from backend.models import Role
from tests.api.factories import Api, make_project, make_user
from tests.conftest import DatabaseFactory

API = "/api/v1"
PUBLIC = {("GET", f"{API}/health"), ("POST", f"{API}/auth/login")}
AUTHENTICATED_ONLY = "any signed-in user"  # CurrentUser without a scope

# The scope each known route needs. Routes missing here still get the generic checks below, but a
# route under a managed prefix must need some scope (see test_managed_prefixes_always_need_a_scope).
EXPECTED: dict[tuple[str, str], str] = {
    ("POST", "/auth/logout"): AUTHENTICATED_ONLY,
    ("GET", "/auth/me"): AUTHENTICATED_ONLY,
    ("POST", "/users"): MANAGE,
    ("GET", "/users"): MANAGE,
    ("PATCH", "/users/{user_id}"): MANAGE,
    ("POST", "/users/{user_id}/password"): MANAGE,
    ("GET", "/annotators"): MANAGE,
    ("POST", "/tokens"): MANAGE,
    ("GET", "/tokens"): MANAGE,
    ("DELETE", "/tokens/{token_id}"): MANAGE,
    ("POST", "/tasks/next"): ANNOTATE,
    ("GET", "/tasks/{task_id}"): ANNOTATE,
    ("POST", "/tasks/{task_id}/annotation"): ANNOTATE,
    ("POST", "/tasks/{task_id}/skip"): ANNOTATE,
    ("POST", "/tasks/{task_id}/renew"): ANNOTATE,
    ("GET", "/examples/{example_id}/image.png"): AUTHENTICATED_ONLY,
    ("GET", "/examples/{example_id}/noise"): AUTHENTICATED_ONLY,
    ("GET", "/examples/{example_id}/render.png"): AUTHENTICATED_ONLY,
    ("POST", "/projects"): MANAGE,
    ("GET", "/projects"): MANAGE,
    ("GET", "/projects/{project_id}"): MANAGE,
    ("POST", "/projects/{project_id}/dataset"): MANAGE,
    ("GET", "/projects/{project_id}/examples"): MANAGE,
    ("POST", "/projects/{project_id}/rounds"): MANAGE,
    ("GET", "/projects/{project_id}/metrics"): MANAGE,
    ("GET", "/projects/{project_id}/export"): MANAGE,
    ("GET", "/projects/{project_id}/annotators"): MANAGE,
    ("PUT", "/projects/{project_id}/annotators"): MANAGE,
    ("GET", "/rounds/{round_id}"): MANAGE,
    ("GET", "/rounds/{round_id}/queries"): MANAGE,
    ("POST", "/rounds/{round_id}/close"): MANAGE,
    ("POST", "/rounds/{round_id}/retry"): MANAGE,
    ("GET", "/projects/{project_id}/checkpoints"): CHECKPOINTS_READ,
    ("GET", "/projects/{project_id}/checkpoints/latest"): CHECKPOINTS_READ,
    ("GET", "/checkpoints/{checkpoint_id}"): CHECKPOINTS_READ,
    ("GET", "/checkpoints/{checkpoint_id}/file"): CHECKPOINTS_READ,
    ("GET", "/checkpoints/{checkpoint_id}/card"): CHECKPOINTS_READ,
    ("POST", "/projects/{project_id}/webhooks"): MANAGE,
    ("GET", "/projects/{project_id}/webhooks"): MANAGE,
    ("DELETE", "/webhooks/{webhook_id}"): MANAGE,
    ("GET", "/webhooks/{webhook_id}/deliveries"): MANAGE,
    ("GET", "/projects/{project_id}/gold"): MANAGE,
    ("POST", "/projects/{project_id}/gold"): MANAGE,
    ("POST", "/projects/{project_id}/gold/from-agreement"): MANAGE,
    ("GET", "/projects/{project_id}/gold/settings"): MANAGE,
    ("PUT", "/projects/{project_id}/gold/settings"): MANAGE,
    ("DELETE", "/gold/{gold_id}"): MANAGE,
}
# Anything here is data an annotator must never read (answers of others, exports, checkpoints).
MANAGED_PREFIXES = (
    "/users",
    "/annotators",
    "/tokens",
    "/projects",
    "/rounds",
    "/checkpoints",
    "/webhooks",
    "/gold",
)

# Browser pages: who may see each (anything else is a redirect, to the login page for anonymous).
UI_PUBLIC = {"/login"}
UI_ANNOTATE = {"/annotate"}
UI_MANAGE = {
    "/",
    "/projects/new",
    "/projects/{project_id}",
    "/projects/{project_id}/panels",
    "/annotators",
    "/checkpoints",
    "/tokens",
}
# Not pages: the API description, and Prometheus' scrape target (a metrics:read token;
# tests/security/test_metrics.py).
NOT_PAGES = {"/openapi.json", "/api/docs", "/docs/oauth2-redirect", "/metrics"}


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # with the /api/v1 prefix
    scope: str | None  # None: public


@dataclass(frozen=True)
class Caller:
    name: str
    scopes: frozenset[str]
    headers: dict[str, str]


def _dependency_calls(dependant: object) -> Iterator[object]:
    for dependency in getattr(dependant, "dependencies", []):
        yield dependency.call
        yield from _dependency_calls(dependency)


def api_routes(app: object) -> list[Route]:
    routes = []
    for context in iter_route_contexts(app.routes):  # type: ignore[attr-defined]
        if not isinstance(context.original_route, APIRoute) or not str(context.path).startswith(API):
            continue
        calls = list(_dependency_calls(context.dependant))
        scopes = {call.scope for call in calls if isinstance(call, ScopeCheck)}
        assert len(scopes) <= 1, f"{context.path} asks for several scopes: {scopes}"
        authenticated = any(call is _current_user for call in calls)
        scope = next(iter(scopes)) if scopes else (AUTHENTICATED_ONLY if authenticated else None)
        routes += [Route(method, str(context.path), scope) for method in sorted(context.methods - {"HEAD"})]
    return routes


def page_routes(app: object) -> list[str]:
    pages = []
    for context in iter_route_contexts(app.routes):  # type: ignore[attr-defined]
        path = str(context.path)
        if path.startswith(API) or path in NOT_PAGES or not context.methods or "GET" not in context.methods:
            continue
        pages.append(path)
    return pages


def concrete(path: str) -> str:
    """Fill path parameters with ids that exist nowhere: authorisation must come before lookups."""
    return re.sub(r"\{[^}]+\}", "999999", path)


@pytest.fixture(scope="module")
def api_database(database_factory: DatabaseFactory) -> str:
    """Access rules do not depend on the database kind: SQLite only."""
    return database_factory.create("sqlite")


@pytest.fixture(scope="module")
def callers(api: Api) -> list[Caller]:
    with api.seed() as session:
        annotator, lead, admin = (
            make_user(session, role) for role in (Role.annotator, Role.lead, Role.admin)
        )
        people = [
            ("annotator", annotator, None),
            ("lead", lead, None),
            ("admin", admin, None),
            ("checkpoint token", lead, [CHECKPOINTS_READ]),
            ("annotate token", lead, [ANNOTATE]),
            ("manage token", admin, [MANAGE]),
        ]
        result = []
        for name, user, token_scopes in people:
            if token_scopes is None:
                plain = create_login_token(session, user)
                scopes = {ANNOTATE} if user.role == Role.annotator else {ANNOTATE, MANAGE, CHECKPOINTS_READ}
            else:
                _token, plain = create_api_token(session, user, name, token_scopes, None)
                scopes = set(token_scopes)
            result.append(Caller(name, frozenset(scopes), {"Authorization": f"Bearer {plain}"}))
    return result


def call(client: TestClient, route: Route, headers: dict[str, str]) -> int:
    body = {} if route.method in {"POST", "PUT", "PATCH"} else None
    return client.request(route.method, concrete(route.path), json=body, headers=headers).status_code


def test_the_table_knows_every_route_it_lists(api: Api) -> None:
    known = {(route.method, route.path.removeprefix(API)) for route in api_routes(api.app)}
    assert set(EXPECTED) <= known, f"routes in the table but not in the app: {set(EXPECTED) - known}"


def test_known_routes_need_the_scope_in_the_table(api: Api) -> None:
    wrong = {
        (route.method, route.path): (route.scope, EXPECTED[(route.method, route.path.removeprefix(API))])
        for route in api_routes(api.app)
        if (route.method, route.path.removeprefix(API)) in EXPECTED
        and route.scope != EXPECTED[(route.method, route.path.removeprefix(API))]
    }
    assert wrong == {}, "route: (scope found, scope expected)"


def test_only_health_and_login_are_public(api: Api) -> None:
    public = {(route.method, route.path) for route in api_routes(api.app) if route.scope is None}
    assert public == PUBLIC


def test_managed_prefixes_always_need_a_scope(api: Api) -> None:
    loose = [
        (route.method, route.path)
        for route in api_routes(api.app)
        if route.path.removeprefix(API).startswith(MANAGED_PREFIXES)
        and route.scope in (None, AUTHENTICATED_ONLY)
    ]
    assert loose == []


def test_anonymous_callers_get_401_everywhere_but_the_public_routes(api: Api) -> None:
    client = TestClient(api.app, raise_server_exceptions=False)
    statuses = {
        (route.method, route.path): call(client, route, {}) for route in api_routes(api.app) if route.scope
    }
    assert {key: status for key, status in statuses.items() if status != 401} == {}
    assert client.get(f"{API}/health").status_code in (200, 503)
    assert client.post(f"{API}/auth/login", json={"username": "nobody", "password": "x"}).status_code == 401


def test_each_caller_gets_403_exactly_outside_its_scopes(api: Api, callers: list[Caller]) -> None:
    client = TestClient(api.app, raise_server_exceptions=False)
    mismatches = []
    for route in api_routes(api.app):
        if route.scope is None or route.path == f"{API}/auth/logout":
            continue  # logout is checked on its own: it would end the caller's session
        for caller in callers:
            status = call(client, route, caller.headers)
            allowed = route.scope == AUTHENTICATED_ONLY or route.scope in caller.scopes
            if (allowed and status in (401, 403)) or (not allowed and status != 403) or status >= 500:
                mismatches.append((caller.name, route.method, route.path, route.scope, status))
    assert mismatches == []


def test_logout_needs_only_a_signed_in_caller(api: Api) -> None:
    with api.seed() as session:
        user = make_user(session)
        plain = create_login_token(session, user)
    response = api.client.post(f"{API}/auth/logout", headers={"Authorization": f"Bearer {plain}"})
    assert response.status_code == 204


def test_leads_cannot_reach_other_leads_projects(api: Api) -> None:
    with api.seed() as session:
        owner, other = make_user(session, Role.lead), make_user(session, Role.lead)
        project = make_project(session, owner)
        owner_token, other_token = create_login_token(session, owner), create_login_token(session, other)
    client = TestClient(api.app, raise_server_exceptions=False)
    for suffix in ("", "/examples", "/metrics", "/export?format=csv", "/rounds"):
        path = f"{API}/projects/{project.id}{suffix}"
        # 404, as for a project that does not exist: another lead's project is not disclosed (issue 13).
        assert client.get(path, headers={"Authorization": f"Bearer {other_token}"}).status_code == 404, path
        assert client.get(path, headers={"Authorization": f"Bearer {owner_token}"}).status_code == 200, path


def test_every_page_is_in_the_page_table(api: Api) -> None:
    unknown = set(page_routes(api.app)) - UI_PUBLIC - UI_ANNOTATE - UI_MANAGE
    assert unknown == set(), "add new pages to the page table of this test"


def test_pages_show_only_to_the_roles_they_are_for(api: Api) -> None:
    with api.seed() as session:
        annotator, lead = make_user(session, Role.annotator), make_user(session, Role.lead)
        cookies = {
            "annotator": create_login_token(session, annotator),
            "lead": create_login_token(session, lead),
        }
    for path in page_routes(api.app):
        anonymous = TestClient(api.app, raise_server_exceptions=False, follow_redirects=False)
        response = anonymous.get(concrete(path))
        if path in UI_PUBLIC:
            assert response.status_code == 200, path
            continue
        assert response.status_code in (303, 401), path
        for role, token in cookies.items():
            client = TestClient(api.app, raise_server_exceptions=False, follow_redirects=False)
            client.cookies.set("aqpl_session", token)
            status = client.get(concrete(path)).status_code
            may = path in UI_ANNOTATE or role == "lead"
            refused = status in (303, 401, 403)  # a redirect home, or a bare refusal for fragments
            assert refused != may or status == 404, (role, path, status)
