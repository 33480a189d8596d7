"""Issue 13, item 9: `tasks/next` serves only projects the caller works on.

Before the fix any annotator, and any lead or admin, took tasks from any project: a lead could not
keep a project to chosen annotators, and another lead could read its images through the leases.
Now a project is open to every annotator by default, or to the annotators its lead lists; leads and
admins take tasks only from the projects they own (or that list them).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import event, select

from backend.models import Assignment, AssignmentState, Project, Role, User
from tests.api.factories import Api, make_annotating_round, make_user, running_api
from tests.conftest import DatabaseFactory


def seed(api: Api, annotators: int = 2, queries: int = 2) -> tuple[User, Project, list[User]]:
    """A lead's project with an annotating round, and some annotators."""
    with api.seed() as session:
        lead = make_user(session, Role.lead)
        project, _round, _queries = make_annotating_round(session, lead, queries=queries)
        people = [make_user(session) for _ in range(annotators)]
    return lead, project, people


def next_status(api: Api, user: User, project_id: int | None = None) -> int:
    params = {} if project_id is None else {"project_id": project_id}
    return api.client.post("/api/v1/tasks/next", params=params, headers=api.headers_for(user)).status_code


def put_members(
    api: Api, lead: User, project_id: int, all_annotators: bool, ids: list[int]
) -> dict[str, Any]:
    response = api.client.put(
        f"/api/v1/projects/{project_id}/annotators",
        json={"all_annotators": all_annotators, "annotator_ids": ids},
        headers=api.headers_for(lead),
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_by_default_every_annotator_works_on_a_project(api: Api) -> None:
    lead, project, (alice, bob) = seed(api)
    response = api.client.get(f"/api/v1/projects/{project.id}/annotators", headers=api.headers_for(lead))
    assert response.json() == {"project_id": project.id, "all_annotators": True, "annotators": []}
    assert next_status(api, alice, project.id) == 200
    assert next_status(api, bob, project.id) == 200


def test_a_listed_project_serves_its_members_only(api: Api) -> None:
    lead, project, (alice, bob) = seed(api)
    body = put_members(api, lead, project.id, False, [alice.id])
    assert body["all_annotators"] is False
    assert body["annotators"] == [{"id": alice.id, "username": alice.username, "is_active": True}]
    assert next_status(api, bob, project.id) == 204
    with api.seed() as session:  # bob was offered nothing from it, with or without the project named
        assert session.scalars(select(Assignment).where(Assignment.annotator_id == bob.id)).all() == []
    assert next_status(api, alice, project.id) == 200


def test_without_a_project_named_a_non_member_gets_nothing_of_it(
    database_factory: DatabaseFactory, database_kind: str, tmp_path: Path
) -> None:
    with running_api(database_factory.create(database_kind), tmp_path) as api:
        lead, project, (alice, bob) = seed(api)
        put_members(api, lead, project.id, False, [alice.id])
        assert next_status(api, bob) == 204
        assert next_status(api, alice) == 200


def test_leads_and_admins_take_tasks_only_from_projects_they_own(api: Api) -> None:
    lead, project, _people = seed(api)
    with api.seed() as session:
        other_lead, admin = make_user(session, Role.lead), make_user(session, Role.admin)
    assert next_status(api, other_lead, project.id) == 204
    assert next_status(api, admin, project.id) == 204
    assert next_status(api, lead, project.id) == 200
    put_members(api, lead, project.id, False, [])  # a listed project stays open to its owner
    assert next_status(api, lead, project.id) == 200


def test_taking_an_annotator_off_returns_their_lease_for_good(api: Api) -> None:
    lead, project, (alice, bob) = seed(api, queries=1)
    headers = api.headers_for(alice)
    response = api.client.post("/api/v1/tasks/next", params={"project_id": project.id}, headers=headers)
    task = response.json()["id"]
    assert next_status(api, bob, project.id) == 200  # overlap 2: bob holds the other slot

    put_members(api, lead, project.id, False, [bob.id])

    with api.seed() as session:
        assert session.get(Assignment, task).state == AssignmentState.skipped  # type: ignore[union-attr]
    answer = api.client.post(
        f"/api/v1/tasks/{task}/annotation",
        json={"sigma_index": 40},
        headers={**headers, "Idempotency-Key": "late"},
    )
    assert answer.status_code == 409
    assert api.client.post(f"/api/v1/tasks/{task}/renew", headers=headers).status_code == 409
    assert next_status(api, alice, project.id) == 204


def test_only_annotator_accounts_can_be_listed(api: Api) -> None:
    lead, project, (alice, _bob) = seed(api)
    with api.seed() as session:
        other_lead = make_user(session, Role.lead)
    for ids in ([other_lead.id], [alice.id, 999_999]):
        response = api.client.put(
            f"/api/v1/projects/{project.id}/annotators",
            json={"all_annotators": False, "annotator_ids": ids},
            headers=api.headers_for(lead),
        )
        assert response.status_code == 422, response.text
        assert response.json()["errors"][0]["loc"] == ["body", "annotator_ids"]
    response = api.client.get(f"/api/v1/projects/{project.id}/annotators", headers=api.headers_for(lead))
    assert response.json()["all_annotators"] is True  # nothing changed


def test_another_lead_can_neither_see_nor_change_the_members(api: Api) -> None:
    _lead, project, (alice, _bob) = seed(api)
    with api.seed() as session:
        other_lead = make_user(session, Role.lead)
    headers = api.headers_for(other_lead)
    url = f"/api/v1/projects/{project.id}/annotators"
    assert api.client.get(url, headers=headers).status_code in (403, 404)
    body = {"all_annotators": False, "annotator_ids": [alice.id]}
    assert api.client.put(url, json=body, headers=headers).status_code in (403, 404)
    assert api.client.put(url, json=body, headers=api.headers_for(alice)).status_code == 403
    assert next_status(api, alice, project.id) == 200


def test_a_list_is_stored_while_the_project_is_open_to_all(api: Api) -> None:
    lead, project, (alice, bob) = seed(api)
    put_members(api, lead, project.id, False, [alice.id])
    opened = put_members(api, lead, project.id, True, [alice.id])
    assert opened["all_annotators"] is True and [m["id"] for m in opened["annotators"]] == [alice.id]
    assert next_status(api, bob, project.id) == 200


def test_the_membership_check_costs_no_extra_statement(api: Api) -> None:
    """It is part of tasks/next's candidate query: as many statements for a listed project as for an
    open one (docs/load.md: tasks/next is the hot path)."""
    statements: list[str] = []

    def count(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        statements.append(statement)

    counts = []
    for listed in (False, True):
        lead, project, (alice, _bob) = seed(api)
        if listed:
            put_members(api, lead, project.id, False, [alice.id])
        headers = api.headers_for(alice)
        engine = api.app.state.engine
        event.listen(engine, "before_cursor_execute", count)
        try:
            statements.clear()
            response = api.client.post(
                "/api/v1/tasks/next", params={"project_id": project.id}, headers=headers
            )
            assert response.status_code == 200
        finally:
            event.remove(engine, "before_cursor_execute", count)
        counts.append(len(statements))
        assert not any("project_members" in sql for sql in statements[:1])  # the token's check comes first
        assert sum("project_members" in sql for sql in statements) == 1, statements
    assert counts[0] == counts[1]
