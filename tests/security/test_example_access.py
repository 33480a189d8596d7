"""Issue 13, item 2: an example's images (clean, ε, render) only for those who may see them.

Those who may manage its project (admins, the owning lead) with the `manage` scope, and whoever
holds a live lease on a query of it with the `annotate` scope. Everyone else gets the 404 of an
example that does not exist: another lead, an annotator without a lease (or with an expired or
answered one, or one on another example), a lead's token without the right scope. Before the fix
every signed-in caller, even a `checkpoints:read` token, got the images.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import event
from sqlalchemy.orm import Session

from backend.auth.scopes import ANNOTATE, CHECKPOINTS_READ, MANAGE
from backend.auth.service import create_api_token, create_login_token
from backend.models import Assignment, AssignmentState, Query, Role, User
from tests.api.factories import Api, make_annotating_round, make_user, write_project_images

ENDPOINTS = ("image.png", "noise", "render.png?sigma_index=40")


@dataclass(frozen=True)
class Scene:
    example_id: int  # queried in the annotating round
    other_example_id: int  # of the same project, queried too
    callers: dict[str, dict[str, str]]  # name -> headers


def lease(
    session: Session, query: Query, user: User, *, state: AssignmentState, expires_in: timedelta
) -> None:
    now = datetime.now(UTC)
    session.add(
        Assignment(
            query_id=query.id, annotator_id=user.id, state=state, leased_at=now, expires_at=now + expires_in
        )
    )


@pytest.fixture(scope="module")
def scene(api: Api) -> Scene:
    live, gone = timedelta(minutes=5), timedelta(minutes=-1)
    with api.seed() as session:
        owner, other_lead, admin = (make_user(session, role) for role in (Role.lead, Role.lead, Role.admin))
        project, _round, queries = make_annotating_round(session, owner, queries=2)
        people = {name: make_user(session) for name in ("leased", "expired", "answered", "elsewhere", "none")}
        lease(session, queries[0], people["leased"], state=AssignmentState.leased, expires_in=live)
        lease(session, queries[0], people["expired"], state=AssignmentState.leased, expires_in=gone)
        lease(session, queries[0], people["answered"], state=AssignmentState.answered, expires_in=live)
        lease(session, queries[1], people["elsewhere"], state=AssignmentState.leased, expires_in=live)
        leasing_lead = make_user(session, Role.lead)  # another lead who annotates: the lease counts
        lease(session, queries[0], leasing_lead, state=AssignmentState.leased, expires_in=live)
        session.flush()

        def token(user: User, scopes: list[str] | None = None) -> dict[str, str]:
            if scopes is None:
                plain = create_login_token(session, user)
            else:
                _row, plain = create_api_token(session, user, f"t{user.id}{len(scopes)}", scopes, None)
            return {"Authorization": f"Bearer {plain}"}

        callers = {
            "admin": token(admin),
            "owner": token(owner),
            "owner manage token": token(owner, [MANAGE]),
            "owner annotate token": token(owner, [ANNOTATE]),
            "owner checkpoints token": token(owner, [CHECKPOINTS_READ]),
            "other lead": token(other_lead),
            "lead with a lease": token(leasing_lead),
            "lead with a lease, checkpoints token": token(leasing_lead, [CHECKPOINTS_READ]),
            **{f"annotator {name}": token(user) for name, user in people.items()},
        }
        ids = queries[0].example_id, queries[1].example_id
    write_project_images(api.settings, project)
    return Scene(ids[0], ids[1], callers)


ALLOWED = {"admin", "owner", "owner manage token", "annotator leased", "lead with a lease"}


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_only_managers_and_live_lease_holders_see_an_example(api: Api, scene: Scene, endpoint: str) -> None:
    statuses = {
        name: api.client.get(f"/api/v1/examples/{scene.example_id}/{endpoint}", headers=headers).status_code
        for name, headers in scene.callers.items()
    }
    assert statuses == {name: 200 if name in ALLOWED else 404 for name in scene.callers}
    assert api.client.get(f"/api/v1/examples/{scene.example_id}/{endpoint}").status_code == 401


def test_a_lease_opens_its_own_example_only(api: Api, scene: Scene) -> None:
    elsewhere = scene.callers["annotator elsewhere"]
    for endpoint in ENDPOINTS:
        url = f"/api/v1/examples/{scene.other_example_id}/{endpoint}"
        assert api.client.get(url, headers=elsewhere).status_code == 200
        assert api.client.get(url, headers=scene.callers["annotator leased"]).status_code == 404


def test_a_hidden_example_looks_like_a_missing_one(api: Api, scene: Scene) -> None:
    headers = scene.callers["other lead"]
    hidden = api.client.get(f"/api/v1/examples/{scene.example_id}/noise", headers=headers)
    missing = api.client.get("/api/v1/examples/999999/noise", headers=headers)
    assert (hidden.status_code, missing.status_code) == (404, 404)
    shown = hidden.json()["detail"].replace(str(scene.example_id), "<id>")
    assert shown == missing.json()["detail"].replace("999999", "<id>")


def test_the_check_is_one_statement_on_the_example(api: Api, scene: Scene) -> None:
    """The annotation page loads these images on every task: the example, its project and the lease
    come from one (indexed) statement."""
    statements: list[str] = []

    def record(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        statements.append(statement)

    engine = api.app.state.engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        url = f"/api/v1/examples/{scene.example_id}/noise"
        assert api.client.get(url, headers=scene.callers["annotator leased"]).status_code == 200
    finally:
        event.remove(engine, "before_cursor_execute", record)
    on_examples = [sql for sql in statements if "FROM examples" in sql]
    assert len(on_examples) == 1 and "assignments" in on_examples[0], statements


def test_the_urls_of_a_leased_task_work_for_its_annotator(api: Api) -> None:
    """The annotation page's own path: lease a task through the API, then load its image and noise."""
    with api.seed() as session:
        owner, annotator = make_user(session, Role.lead), make_user(session)
        project, _round, _queries = make_annotating_round(session, owner, queries=1)
    write_project_images(api.settings, project)
    headers = api.headers_for(annotator)
    task = api.client.post("/api/v1/tasks/next", params={"project_id": project.id}, headers=headers)
    assert task.status_code == 200, task.text
    for url in (task.json()["image_url"], task.json()["noise_url"]):
        assert api.client.get(url, headers=headers).status_code == 200, url
