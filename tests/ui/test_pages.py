"""Page routes without a browser: sign-in with its CSRF check, redirects by role, sign-out, headers,
and the project page's server-rendered panels."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.testclient import TestClient

from backend.auth.scopes import ANNOTATE, MANAGE
from backend.deps import ScopeCheck
from backend.models import Checkpoint, Role, RoundState
from backend.ui import pages
from backend.ui.viewer import FragmentScopeRequirement, PageScopeRequirement
from tests.api.factories import PASSWORD, Api, make_annotating_round, make_project, make_user, running_api
from tests.conftest import DatabaseFactory

PAGES = ("/", "/projects/new", "/annotators", "/checkpoints", "/tokens", "/annotate")


@pytest.fixture
def api(database_factory: DatabaseFactory, tmp_path: Path) -> Iterator[Api]:
    with running_api(database_factory.create("sqlite"), tmp_path) as running:
        yield running


def sign_in(client: TestClient, username: str, password: str = PASSWORD, next_path: str = "") -> object:
    client.get("/login")
    return client.post(
        "/login",
        data={
            "username": username,
            "password": password,
            "csrf_token": client.cookies["aqpl_csrf"],
            "next": next_path,
        },
        follow_redirects=False,
    )


def test_signed_out_pages_send_to_login_with_the_way_back(api: Api) -> None:
    for path in PAGES:
        response = api.client.get(path, follow_redirects=False)
        assert response.status_code == 303, path
        assert response.headers["location"] == f"/login?next={path.replace('/', '%2F')}"


def test_sign_in_lands_by_role_and_honours_next(api: Api) -> None:
    with api.seed() as session:
        lead = make_user(session, Role.lead).username
        annotator = make_user(session, Role.annotator).username
    response = sign_in(api.client, lead)
    assert response.status_code == 303 and response.headers["location"] == "/"  # type: ignore[attr-defined]
    api.client.cookies.clear()
    response = sign_in(api.client, annotator)
    assert response.headers["location"] == "/annotate"  # type: ignore[attr-defined]
    assert api.client.get("/", follow_redirects=False).headers["location"] == "/annotate"
    assert api.client.get("/tokens", follow_redirects=False).headers["location"] == "/annotate"
    assert api.client.get("/annotate").status_code == 200
    api.client.cookies.clear()
    assert sign_in(api.client, lead, next_path="/tokens").headers["location"] == "/tokens"  # type: ignore[attr-defined]
    api.client.cookies.clear()
    for hostile in ("//evil.example/", "https://evil.example/", "/\\evil.example"):
        assert sign_in(api.client, lead, next_path=hostile).headers["location"] == "/"  # type: ignore[attr-defined]
        api.client.cookies.clear()


def test_sign_in_form_needs_its_csrf_token_and_the_right_password(api: Api) -> None:
    with api.seed() as session:
        lead = make_user(session, Role.lead).username
    api.client.get("/login")
    forged = api.client.post(
        "/login",
        data={"username": lead, "password": PASSWORD, "csrf_token": "forged"},
        follow_redirects=False,
    )
    assert forged.status_code == 403 and "aqpl_session" not in forged.cookies
    wrong = sign_in(api.client, lead, password="not the password")
    assert wrong.status_code == 401  # type: ignore[attr-defined]
    assert "Wrong username or password." in wrong.text  # type: ignore[attr-defined]
    assert "aqpl_session" not in api.client.cookies


def test_sign_out_revokes_the_session(api: Api) -> None:
    with api.seed() as session:
        lead = make_user(session, Role.lead).username
    sign_in(api.client, lead)
    session_cookie = api.client.cookies["aqpl_session"]
    refused = api.client.post("/logout", data={"csrf_token": "wrong"}, follow_redirects=False)
    assert (
        refused.headers["location"] == "/" and api.client.get("/", follow_redirects=False).status_code == 200
    )
    response = api.client.post(
        "/logout", data={"csrf_token": api.client.cookies["aqpl_csrf"]}, follow_redirects=False
    )
    assert response.status_code == 303 and response.headers["location"] == "/login"
    api.client.cookies.set("aqpl_session", session_cookie)  # the old cookie no longer works
    assert api.client.get("/", follow_redirects=False).status_code == 303
    assert api.client.get("/api/v1/auth/me").status_code == 401


def test_pages_forbid_inline_scripts_and_framing(api: Api) -> None:
    with api.seed() as session:
        lead = make_user(session, Role.lead).username
    sign_in(api.client, lead)
    for path in PAGES:
        response = api.client.get(path)
        assert response.status_code == 200, path
        policy = response.headers["content-security-policy"]
        assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
        assert not re.search(r"<script(?![^>]*\bsrc=)", response.text), f"inline script on {path}"
        for asset in re.findall(r'(?:src|href)="(/static/[^"?]+)', response.text):
            assert api.client.get(asset).status_code == 200, asset
    assert api.client.get("/static/js/annotate.js").headers["cache-control"] == "no-cache"


def test_project_page_and_panels_show_rounds_and_charts_to_their_lead_only(api: Api) -> None:
    with api.seed() as session:
        lead = make_user(session, Role.lead)
        other = make_user(session, Role.lead).username
        project, round_, _queries = make_annotating_round(session, lead, queries=2)
        round_.state = RoundState.published
        round_.sigma_histogram_before = [0] * 30 + [2] + [0] * 60
        round_.sigma_histogram_after = [0] * 30 + [1] + [0] * 11 + [1] + [0] * 48
        round_.krippendorff_alpha = 0.5
        for number, round_id, clean in ((0, None, 0.8), (1, round_.id, 0.85)):
            session.add(
                Checkpoint(
                    project_id=project.id,
                    round_id=round_id,
                    round_number=number,
                    file=f"projects/{project.id}/checkpoints/round_{number:03d}.safetensors",
                    sha256="ab" * 32,
                    size_bytes=10,
                    meta={},
                    metrics={"clean": clean, "gaussian": 0.5, "corruptions": 0.6},
                )
            )
        empty_project = make_project(session, lead)
        project_id, empty_id, lead_name = project.id, empty_project.id, lead.username
    sign_in(api.client, lead_name)
    assert api.client.get(f"/projects/{project_id}").status_code == 200
    panels = api.client.get(f"/projects/{project_id}/panels")
    assert panels.status_code == 200
    assert '<tr data-round="0">' in panels.text and '<tr data-round="1">' in panels.text
    assert "85.0%" in panels.text and "0.50" in panels.text
    timelines = panels.text.count('<svg class="timeline-bar"')  # one per round (round 0 is pretraining)
    assert timelines == 1 and panels.text.count("<svg") == 2 + timelines
    assert "series-clean" in panels.text and "bar-after" in panels.text
    assert "no round has closed yet" in api.client.get(f"/projects/{empty_id}/panels").text
    assert api.client.get("/projects/999999").status_code == 404

    api.client.cookies.clear()
    sign_in(api.client, other)
    assert api.client.get(f"/projects/{project_id}").status_code == 404  # as if it did not exist
    assert api.client.get(f"/projects/{project_id}/panels").status_code == 404


# Each page route's access dependency (backend/ui/viewer.py) and the scope it asks for.
PAGE_ACCESS = {
    "/": (PageScopeRequirement, MANAGE),
    "/projects/new": (PageScopeRequirement, MANAGE),
    "/projects/{project_id}": (PageScopeRequirement, MANAGE),
    "/projects/{project_id}/panels": (FragmentScopeRequirement, MANAGE),
    "/annotators": (PageScopeRequirement, MANAGE),
    "/checkpoints": (PageScopeRequirement, MANAGE),
    "/tokens": (PageScopeRequirement, MANAGE),
    "/annotate": (PageScopeRequirement, ANNOTATE),
}
OPEN_PAGES = {"/login", "/logout"}  # they take a PageViewer: whoever is signed in, if anyone


def test_every_page_route_checks_access_with_a_typed_dependency(api: Api) -> None:
    access: dict[str, tuple[type, str]] = {}
    open_pages = set()
    for context in iter_route_contexts(api.app.routes):
        route, path = context.original_route, str(context.path)
        if not isinstance(route, APIRoute) or route.endpoint.__module__ != pages.__name__:
            continue
        calls = [dependency.call for dependency in context.dependant.dependencies]
        checks = [call for call in calls if isinstance(call, ScopeCheck)]
        assert len(checks) <= 1, (path, checks)
        if checks:
            access[path] = (type(checks[0]), checks[0].scope)
        else:
            open_pages.add(path)
    assert access == PAGE_ACCESS
    assert open_pages == OPEN_PAGES


def test_page_dependencies_send_the_signed_out_to_sign_in_and_others_home(api: Api) -> None:
    response = api.client.get("/projects/7?tab=rounds", follow_redirects=False)
    assert response.status_code == 303 and response.content == b""
    assert response.headers["location"] == "/login?next=%2Fprojects%2F7%3Ftab%3Drounds"
    panels = api.client.get("/projects/7/panels", follow_redirects=False)
    assert (panels.status_code, panels.text) == (401, ""), "a fragment is refused, not redirected"

    with api.seed() as session:
        annotator = make_user(session, Role.annotator).username
        admin = make_user(session, Role.admin).username
    sign_in(api.client, annotator)
    for path in (*(page for page in PAGES if page != "/annotate"), "/projects/7"):
        response = api.client.get(path, follow_redirects=False)
        assert (response.status_code, response.headers.get("location")) == (303, "/annotate"), path
    panels = api.client.get("/projects/7/panels", follow_redirects=False)
    assert (panels.status_code, panels.text) == (401, "")
    assert api.client.get("/annotate").status_code == 200

    api.client.cookies.clear()
    sign_in(api.client, admin)
    assert api.client.get("/projects/999999", follow_redirects=False).status_code == 404
    assert api.client.get("/projects/999999/panels", follow_redirects=False).status_code == 404
