"""Issue 13, item 11: what the API tells those who should not know.

- Anonymous `/health` names no library versions (an admin still sees them).
- A project the caller may not see, and its rounds, checkpoints and examples, are 404 with the
  message of one that does not exist (they were 403, which confirmed that they exist).
- Project, user and token names refuse control characters and bidirectional overrides (422).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import version

import pytest

from backend.models import Role
from tests.api.factories import Api, make_annotating_round, make_user, write_project_images
from tests.api.platform_support import make_checkpoint

# ---------------------------------------------------------------- /health


def test_anonymous_health_names_no_library_versions(api: Api) -> None:
    with api.seed() as session:
        lead = make_user(session, Role.lead)
    for headers in ({}, {"Authorization": "Bearer not-a-token"}, api.headers_for(lead)):
        response = api.client.get("/api/v1/health", headers=headers)
        assert response.status_code == 200
        assert "versions" not in response.json(), headers
        for package in ("fastapi", "sqlalchemy", "celery", "alembic"):
            assert f'"{version(package)}"' not in response.text, package


def test_admins_still_see_the_versions(api: Api) -> None:
    with api.seed() as session:
        admin = make_user(session, Role.admin)
    body = api.client.get("/api/v1/health", headers=api.headers_for(admin)).json()
    assert body["versions"]["fastapi"] == version("fastapi")
    assert body["versions"]["aqpl"] == "0.1.0"


# ---------------------------------------------------------------- another lead's things


@dataclass(frozen=True)
class Owned:
    project_id: int
    round_id: int
    checkpoint_id: int
    example_id: int


@pytest.fixture(scope="module")
def owned(api: Api) -> Owned:
    with api.seed() as session:
        owner = make_user(session, Role.lead)
        project, round_, queries = make_annotating_round(session, owner, queries=1)
        checkpoint = make_checkpoint(session, api.settings, project, 0)
        ids = Owned(project.id, round_.id, checkpoint.id, queries[0].example_id)
    write_project_images(api.settings, project)
    return ids


MISSING = 999_999
# Every route that names a project, round, checkpoint or example: (method, path, the id it names).
ROUTES = [
    ("GET", "/projects/{project_id}", "project_id"),
    ("GET", "/projects/{project_id}/examples", "project_id"),
    ("GET", "/projects/{project_id}/metrics", "project_id"),
    ("GET", "/projects/{project_id}/export", "project_id"),
    ("GET", "/projects/{project_id}/rounds", "project_id"),
    ("POST", "/projects/{project_id}/rounds", "project_id"),
    ("POST", "/projects/{project_id}/retry", "project_id"),
    ("POST", "/projects/{project_id}/dataset", "project_id"),
    ("GET", "/projects/{project_id}/checkpoints", "project_id"),
    ("GET", "/projects/{project_id}/checkpoints/latest", "project_id"),
    ("GET", "/rounds/{round_id}", "round_id"),
    ("GET", "/rounds/{round_id}/queries", "round_id"),
    ("POST", "/rounds/{round_id}/close", "round_id"),
    ("POST", "/rounds/{round_id}/retry", "round_id"),
    ("GET", "/checkpoints/{checkpoint_id}", "checkpoint_id"),
    ("GET", "/checkpoints/{checkpoint_id}/file", "checkpoint_id"),
    ("GET", "/examples/{example_id}/image.png", "example_id"),
    ("GET", "/examples/{example_id}/noise", "example_id"),
]


@pytest.mark.parametrize(("method", "path", "key"), ROUTES, ids=[f"{m} {p}" for m, p, _ in ROUTES])
def test_another_leads_things_look_like_missing_ones(
    api: Api, owned: Owned, method: str, path: str, key: str
) -> None:
    with api.seed() as session:
        intruder = make_user(session, Role.lead)
    headers = api.headers_for(intruder)
    existing = getattr(owned, key)
    hidden = api.client.request(method, "/api/v1" + path.format(**{key: existing}), headers=headers)
    missing = api.client.request(method, "/api/v1" + path.format(**{key: MISSING}), headers=headers)
    assert (hidden.status_code, missing.status_code) == (404, 404), (hidden.text, missing.text)
    assert hidden.json()["detail"].replace(str(existing), "<id>") == missing.json()["detail"].replace(
        str(MISSING), "<id>"
    )


def test_the_owner_still_reaches_them(api: Api, owned: Owned) -> None:
    with api.seed() as session:
        owner = make_user(session, Role.admin)
    headers = api.headers_for(owner)
    for method, path, key in ROUTES:
        if method == "GET":
            url = "/api/v1" + path.format(**{key: getattr(owned, key)})
            assert api.client.get(url, headers=headers).status_code == 200, url


# ---------------------------------------------------------------- names

HOSTILE_NAMES = {
    "newline": "quarterly\nADMIN LOGIN OK",
    "escape": "red \x1b[31mtext",
    "NUL": "a\x00b",
    "DEL": "a\x7fb",
    "C1 control": "a\x85b",
    "right-to-left override": "report\u202egpj.exe",
    "left-to-right embedding": "a\u202ab",
    "pop directional formatting": "a\u202cb",
    "first strong isolate": "a\u2068b",
    "pop directional isolate": "a\u2069b",
    "line separator": "a\u2028b",
}


@pytest.mark.parametrize("name", sorted(HOSTILE_NAMES))
def test_project_names_refuse_controls_and_bidi_overrides(api: Api, name: str) -> None:
    with api.seed() as session:
        lead = make_user(session, Role.lead)
    body = {"name": HOSTILE_NAMES[name], "dataset": {"format": "digits"}}
    response = api.client.post("/api/v1/projects", json=body, headers=api.headers_for(lead))
    assert response.status_code == 422, response.text
    [error] = response.json()["errors"]
    assert error["loc"] == ["body", "name"]
    assert "control character" in error["msg"] or "bidirectional" in error["msg"], error


@pytest.mark.parametrize("name", sorted(HOSTILE_NAMES))
def test_user_and_token_names_refuse_them_too(api: Api, name: str) -> None:
    with api.seed() as session:
        admin = make_user(session, Role.admin)
    headers = api.headers_for(admin)
    user = {"username": f"ab{HOSTILE_NAMES[name]}", "password": "long-enough-password", "role": "annotator"}
    assert api.client.post("/api/v1/users", json=user, headers=headers).status_code == 422
    token = {"name": HOSTILE_NAMES[name], "scopes": ["checkpoints:read"]}
    assert api.client.post("/api/v1/tokens", json=token, headers=headers).status_code == 422


def test_plain_names_in_any_script_are_accepted(api: Api) -> None:
    with api.seed() as session:
        lead = make_user(session, Role.lead)
    for name in ("Ziffern σ-Leiter", "أرقام مكتوبة", "手書き数字 (v2)"):
        body = {"name": name, "dataset": {"format": "digits"}}
        response = api.client.post("/api/v1/projects", json=body, headers=api.headers_for(lead))
        assert response.status_code == 201, response.text
        assert response.json()["name"] == name


def test_the_cli_refuses_them_as_the_api_does(api: Api) -> None:
    """`aqpl users create` goes through the same service: a username is letters, digits and ._- only."""
    from backend.errors import InvalidInput
    from backend.users.service import create_user

    with api.seed() as session:
        for name in ("ab\u202ecd", "ab\ncd", "abcd\n"):
            with pytest.raises(InvalidInput):
                create_user(session, name, "long-enough-password", Role.annotator)
