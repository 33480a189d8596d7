"""Accounts: who may create whom, who sees whom, and the annotator statistics leads read."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from backend.models import Annotation, Assignment, AssignmentState, Role
from tests.api.factories import PASSWORD, Api, make_annotating_round, make_user, new_user


def test_admins_create_any_role_and_the_new_user_can_log_in(api: Api) -> None:
    admin = new_user(api, Role.admin)
    response = api.client.post(
        "/api/v1/users",
        json={"username": "new.lead", "password": "long-enough-pw", "role": "lead"},
        headers=api.headers_for(admin),
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert (body["username"], body["role"], body["is_active"]) == ("new.lead", "lead", True)
    assert "password" not in response.text and "hash" not in response.text
    login = api.client.post("/api/v1/auth/login", json={"username": "new.lead", "password": "long-enough-pw"})
    assert login.status_code == 200 and login.json()["role"] == "lead"


def test_leads_create_annotators_only(api: Api) -> None:
    headers = api.headers_for(new_user(api, Role.lead))
    created = api.client.post(
        "/api/v1/users", json={"username": "ann", "password": PASSWORD}, headers=headers
    )
    assert created.status_code == 201 and created.json()["role"] == "annotator"
    for role in ("lead", "admin"):
        refused = api.client.post(
            "/api/v1/users",
            json={"username": f"x{role}", "password": PASSWORD, "role": role},
            headers=headers,
        )
        assert refused.status_code == 403


@pytest.mark.parametrize(
    "body",
    [
        {"username": "a", "password": PASSWORD},
        {"username": "has space", "password": PASSWORD},
        {"username": "okname", "password": "short"},
        {"username": "okname", "password": PASSWORD, "role": "root"},
        {"username": "okname", "password": PASSWORD, "is_admin": True},
        {"password": PASSWORD},
    ],
)
def test_bad_user_requests_are_422(api: Api, body: dict[str, object]) -> None:
    response = api.client.post("/api/v1/users", json=body, headers=api.headers_for(new_user(api, Role.admin)))
    assert response.status_code == 422, response.text


def test_duplicate_usernames_are_409(api: Api) -> None:
    admin = new_user(api, Role.admin)
    body = {"username": "twice", "password": PASSWORD}
    assert api.client.post("/api/v1/users", json=body, headers=api.headers_for(admin)).status_code == 201
    assert api.client.post("/api/v1/users", json=body, headers=api.headers_for(admin)).status_code == 409


def test_admins_see_everyone_and_leads_see_annotators_and_themselves(api: Api) -> None:
    admin, lead, other_lead = new_user(api, Role.admin), new_user(api, Role.lead), new_user(api, Role.lead)
    annotator = new_user(api, Role.annotator)
    everyone = {item["id"] for item in api.client.get("/api/v1/users", headers=api.headers_for(admin)).json()}
    assert {admin.id, lead.id, other_lead.id, annotator.id} <= everyone
    seen = api.client.get("/api/v1/users", headers=api.headers_for(lead)).json()
    assert {lead.id, annotator.id} <= {item["id"] for item in seen}
    assert {item["role"] for item in seen if item["id"] != lead.id} == {"annotator"}
    assert api.client.get("/api/v1/users", headers=api.headers_for(annotator)).status_code == 403


def test_annotator_statistics_count_answers_time_and_bias_in_own_projects(api: Api) -> None:
    with api.seed() as session:
        lead, other_lead = make_user(session, Role.lead), make_user(session, Role.lead)
        steady, high = make_user(session, Role.annotator), make_user(session, Role.annotator)
        idle = make_user(session, Role.annotator)
        _project, _round, queries = make_annotating_round(session, lead, queries=3)
        _other, _other_round, other_queries = make_annotating_round(session, other_lead, queries=1)
        answers = [(steady, query, 30, 4.0) for query in queries] + [
            (high, query, 36, 10.0) for query in queries
        ]
        answers.append((high, other_queries[0], 90, 100.0))  # another lead's project: not counted
        for person, query, sigma, seconds in answers:
            assignment = Assignment(
                query_id=query.id,
                annotator_id=person.id,
                state=AssignmentState.answered,
                expires_at=datetime.now(UTC),
            )
            session.add(assignment)
            session.flush()
            session.add(
                Annotation(
                    query_id=query.id,
                    annotator_id=person.id,
                    assignment_id=assignment.id,
                    sigma_index=sigma,
                    seconds=seconds,
                    idempotency_key=f"{person.id}-{query.id}",
                )
            )
    stats = {
        item["id"]: item
        for item in api.client.get("/api/v1/annotators", headers=api.headers_for(lead)).json()
    }
    assert stats[steady.id] == {
        "id": steady.id,
        "username": steady.username,
        "answers": 3,
        "median_seconds": 4.0,
        "bias": pytest.approx(-3.0),  # each query's median is 33
        "gold_answers": 0,
        "gold_error": None,
        "gold_bias": None,
        "flagged": False,
    }
    assert (stats[high.id]["answers"], stats[high.id]["median_seconds"]) == (3, 10.0)
    assert stats[high.id]["bias"] == pytest.approx(3.0)
    assert (stats[idle.id]["answers"], stats[idle.id]["median_seconds"], stats[idle.id]["bias"]) == (
        0,
        None,
        None,
    )
    admin = new_user(api, Role.admin)
    everything = api.client.get("/api/v1/annotators", headers=api.headers_for(admin)).json()
    assert {item["id"]: item["answers"] for item in everything}[high.id] == 4
    assert api.client.get("/api/v1/annotators", headers=api.headers_for(steady)).status_code == 403
