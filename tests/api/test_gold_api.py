"""Gold questions over REST: adding, listing and deleting a project's gold examples, who may do each,
making gold of earlier rounds' agreeing answers, and the annotators' errors against gold."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.orm import Session

from backend.models import (
    Example,
    GoldExample,
    GoldSource,
    Project,
    Query,
    QuerySide,
    Role,
    Round,
    RoundState,
    Split,
    User,
)
from backend.tasks.repository import COMPLETE
from tests.api.factories import (
    Api,
    make_examples,
    make_gold_queries,
    make_project,
    make_round,
    make_user,
    new_user,
)
from tests.api.platform_support import add_answer


def _gold(api: Api, headers: dict[str, str], project_id: int, example_id: int, sigma_index: int) -> Any:
    return api.client.post(
        f"/api/v1/projects/{project_id}/gold",
        json={"example_id": example_id, "sigma_index": sigma_index},
        headers=headers,
    )


def test_add_list_and_delete(api: Api) -> None:
    lead = new_user(api, Role.lead)
    headers = api.headers_for(lead)
    with api.seed() as session:
        project = make_project(session, lead)
        example = make_examples(session, project, 2)[1]
    response = _gold(api, headers, project.id, example.id, 25)
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["project_id"] == project.id and created["example_id"] == example.id
    assert (created["sigma_index"], created["sigma"], created["source"]) == (25, 0.25, "typed")
    assert (created["from_query_id"], created["created_by"]) == (None, lead.id)

    listed = api.client.get(f"/api/v1/projects/{project.id}/gold", headers=headers)
    assert listed.status_code == 200 and listed.json() == [created]

    again = _gold(api, headers, project.id, example.id, 40)
    assert again.status_code == 409 and "already gold" in again.json()["detail"]

    assert api.client.delete(f"/api/v1/gold/{created['id']}", headers=headers).status_code == 204
    assert api.client.get(f"/api/v1/projects/{project.id}/gold", headers=headers).json() == []
    assert api.client.delete(f"/api/v1/gold/{created['id']}", headers=headers).status_code == 404
    assert _gold(api, headers, project.id, example.id, 40).status_code == 201  # gold again after deletion


def test_unknown_project_example_and_gold_are_404(api: Api) -> None:
    admin, lead = new_user(api, Role.admin), new_user(api, Role.lead)
    headers = api.headers_for(lead)
    with api.seed() as session:
        project, elsewhere = make_project(session, lead), make_project(session, lead)
        test_example = make_examples(session, project, 1, Split.test)[0]
        foreign_example = make_examples(session, elsewhere, 1)[0]
    assert _gold(api, api.headers_for(admin), 999_999, foreign_example.id, 10).status_code == 404
    assert api.client.get("/api/v1/projects/999999/gold", headers=api.headers_for(admin)).status_code == 404
    for example_id in (999_999, test_example.id, foreign_example.id):
        response = _gold(api, headers, project.id, example_id, 10)
        assert response.status_code == 404, response.text
        assert "not a training example" in response.json()["detail"]
    assert api.client.delete("/api/v1/gold/999999", headers=api.headers_for(admin)).status_code == 404


@pytest.mark.parametrize(
    "body",
    [
        {"example_id": 1, "sigma_index": -1},
        {"example_id": 1, "sigma_index": 91},
        {"example_id": 1},
        {"sigma_index": 10},
        {"example_id": 0, "sigma_index": 10},
        {"example_id": 1, "sigma_index": 10, "source": "agreement"},
    ],
)
def test_bad_bodies_are_422(api: Api, body: dict[str, Any]) -> None:
    lead = new_user(api, Role.lead)
    with api.seed() as session:
        project = make_project(session, lead)
    path = f"/api/v1/projects/{project.id}/gold"
    response = api.client.post(path, json=body, headers=api.headers_for(lead))
    assert response.status_code == 422, response.text


@pytest.mark.parametrize("body", [{"max_mad": -1}, {"min_answers": 0}, {"max_mad": "lots"}, {"other": 1}])
def test_bad_agreement_bounds_are_422(api: Api, body: dict[str, Any]) -> None:
    lead = new_user(api, Role.lead)
    with api.seed() as session:
        project = make_project(session, lead)
    path = f"/api/v1/projects/{project.id}/gold/from-agreement"
    assert api.client.post(path, json=body, headers=api.headers_for(lead)).status_code == 422


def test_only_who_manages_the_project_sees_its_gold(api: Api) -> None:
    owner, other_lead = new_user(api, Role.lead), new_user(api, Role.lead)
    annotator, admin = new_user(api, Role.annotator), new_user(api, Role.admin)
    with api.seed() as session:
        project = make_project(session, owner)
        first, second = make_examples(session, project, 2)
    gold = _gold(api, api.headers_for(owner), project.id, first.id, 30).json()
    paths: list[tuple[str, str, dict[str, Any] | None]] = [
        ("GET", f"/api/v1/projects/{project.id}/gold", None),
        ("POST", f"/api/v1/projects/{project.id}/gold", {"example_id": second.id, "sigma_index": 30}),
        ("POST", f"/api/v1/projects/{project.id}/gold/from-agreement", {"max_mad": 2.0}),
        ("DELETE", f"/api/v1/gold/{gold['id']}", None),
    ]
    for method, path, body in paths:
        # Another lead's project is not disclosed: the 404 of one that does not exist.
        response = api.client.request(method, path, json=body, headers=api.headers_for(other_lead))
        assert response.status_code == 404, (method, path, response.text)
        assert (
            api.client.request(method, path, json=body, headers=api.headers_for(annotator)).status_code == 403
        )
        assert api.client.request(method, path, json=body).status_code == 401
    assert [item["id"] for item in api.client.get(paths[0][1], headers=api.headers_for(owner)).json()] == [
        gold["id"]
    ]
    admin_headers = api.headers_for(admin)
    assert api.client.get(paths[0][1], headers=admin_headers).status_code == 200
    assert api.client.delete(paths[3][1], headers=admin_headers).status_code == 204


def _complete_query(
    session: Session, round_: Round, example: Example, *, answers: int, mad: float, sigma_index: int
) -> Query:
    query = Query(
        round_id=round_.id,
        example_id=example.id,
        side=QuerySide.excessive,
        score=1.0,
        required_answers=answers,
        answer_count=answers,
        sigma_index_before=example.sigma_index,
        result_sigma_index=sigma_index,
        result_mad=mad,
        status=COMPLETE,
    )
    session.add(query)
    session.flush()
    return query


def test_gold_from_agreement_takes_each_examples_latest_agreeing_query(api: Api) -> None:
    lead = new_user(api, Role.lead)
    headers = api.headers_for(lead)
    with api.seed() as session:
        project = make_project(session, lead)
        examples = make_examples(session, project, 6)
        first = make_round(session, project, 1, RoundState.published)
        second = make_round(session, project, 2, RoundState.training)
        third = make_round(session, project, 3, RoundState.annotating)
        _complete_query(session, first, examples[0], answers=3, mad=0.5, sigma_index=40)
        latest = _complete_query(session, second, examples[0], answers=3, mad=0.0, sigma_index=44)
        _complete_query(session, first, examples[1], answers=2, mad=0.0, sigma_index=50)  # too few answers
        _complete_query(session, first, examples[2], answers=3, mad=1.5, sigma_index=60)  # disagreed
        boundary = _complete_query(session, first, examples[3], answers=3, mad=1.0, sigma_index=20)
        _complete_query(session, first, examples[4], answers=4, mad=0.0, sigma_index=70)  # gold already
        _complete_query(session, third, examples[5], answers=3, mad=0.0, sigma_index=10)  # round still open
        typed = GoldExample(project_id=project.id, example_id=examples[4].id, sigma_index=5)
        session.add(typed)
        typed.source = GoldSource.typed
    path = f"/api/v1/projects/{project.id}/gold/from-agreement"

    response = api.client.post(path, headers=headers)  # no body: max MAD 1 step, at least 3 answers
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["skipped_existing"] == 1
    added = {item["example_id"]: item for item in result["added"]}
    assert set(added) == {examples[0].id, examples[3].id}
    assert (added[examples[0].id]["sigma_index"], added[examples[0].id]["from_query_id"]) == (44, latest.id)
    assert (added[examples[3].id]["sigma_index"], added[examples[3].id]["from_query_id"]) == (20, boundary.id)
    assert {item["source"] for item in result["added"]} == {"agreement"}
    assert {item["created_by"] for item in result["added"]} == {lead.id}

    again = api.client.post(path, json={"max_mad": 1.0, "min_answers": 3}, headers=headers).json()
    assert again == {"added": [], "skipped_existing": 3}
    looser = api.client.post(path, json={"max_mad": 2.0, "min_answers": 2}, headers=headers).json()
    assert {item["example_id"] for item in looser["added"]} == {examples[1].id, examples[2].id}
    assert looser["skipped_existing"] == 3
    listed = api.client.get(f"/api/v1/projects/{project.id}/gold", headers=headers).json()
    assert {item["example_id"]: item["sigma_index"] for item in listed} == {
        examples[0].id: 44,
        examples[1].id: 50,
        examples[2].id: 60,
        examples[3].id: 20,
        examples[4].id: 5,  # a typed gold is never overwritten by agreement
    }


KNOWN = 40  # the gold queries' known σ index


def _gold_round(session: Session, project: Project, count: int) -> list[Query]:
    """An annotating round of `project` with `count` gold queries (known σ index KNOWN)."""
    return make_gold_queries(
        session, make_round(session, project), make_examples(session, project, count), KNOWN
    )


def _annotators(api: Api, viewer: User, **params: int) -> dict[int, dict[str, Any]]:
    response = api.client.get("/api/v1/annotators", params=params, headers=api.headers_for(viewer))
    assert response.status_code == 200, response.text
    return {item["id"]: item for item in response.json()}


def test_annotators_report_errors_against_gold_and_who_is_flagged(api: Api) -> None:
    with api.seed() as session:
        lead, other_lead = make_user(session, Role.lead), make_user(session, Role.lead)
        names = ("slips", "edge", "over", "good", "idle")
        people = {name: make_user(session, Role.annotator) for name in names}
        project = make_project(session, lead, gold_rate=0.2, gold_max_error=10.0, gold_min_answers=3)
        queries = _gold_round(session, project, 3)
        errors = {
            "slips": [50, -50],  # far off, but two answers flag no one
            "edge": [10, -10, 10],  # MAE exactly 10: not past the threshold
            "over": [-10, -10, -11],  # MAE 10.33: flagged
            "good": [0, 1, -1],
        }
        for name, offsets in errors.items():
            for query, offset in zip(queries, offsets, strict=False):
                add_answer(session, query, people[name], KNOWN + offset)
    stats = _annotators(api, lead)

    def gold_of(name: str) -> tuple[Any, ...]:
        row = stats[people[name].id]
        return row["answers"], row["gold_answers"], row["gold_error"], row["gold_bias"], row["flagged"]

    assert gold_of("slips") == (0, 2, pytest.approx(50.0), pytest.approx(0.0), False)
    assert gold_of("edge") == (0, 3, pytest.approx(10.0), pytest.approx(10 / 3), False)
    assert gold_of("over") == (0, 3, pytest.approx(31 / 3), pytest.approx(-31 / 3), True)
    assert gold_of("good") == (0, 3, pytest.approx(2 / 3), pytest.approx(0.0), False)
    assert gold_of("idle") == (0, 0, None, None, False)

    # Another lead's view: this project's gold answers are not theirs to see.
    theirs = _annotators(api, other_lead)[people["over"].id]
    assert (theirs["gold_answers"], theirs["flagged"]) == (0, False)
    # The project's threshold decides: a stricter project flags the careful one too.
    with api.seed() as session:
        strict = make_project(session, lead, gold_max_error=0.5, gold_min_answers=3)
        for query, offset in zip(_gold_round(session, strict, 3), errors["good"], strict=True):
            add_answer(session, query, people["good"], KNOWN + offset)
    scoped = _annotators(api, lead, project_id=strict.id)
    assert (scoped[people["good"].id]["gold_answers"], scoped[people["good"].id]["flagged"]) == (3, True)
    assert (scoped[people["over"].id]["gold_answers"], scoped[people["over"].id]["flagged"]) == (0, False)
    overall = _annotators(api, lead)[people["good"].id]
    assert (overall["gold_answers"], overall["flagged"]) == (6, True)
    assert overall["gold_error"] == pytest.approx(2 / 3)


def test_gold_settings_are_read_and_changed_by_who_manages_the_project(api: Api) -> None:
    lead, other = new_user(api, Role.lead), new_user(api, Role.lead)
    headers = api.headers_for(lead)
    with api.seed() as session:
        project = make_project(session, lead)
    url = f"/api/v1/projects/{project.id}/gold/settings"
    assert api.client.get(url, headers=headers).json() == {
        "gold_rate": 0.0,
        "gold_max_error": 10.0,
        "gold_min_answers": 3,
        "exclude_flagged": False,
    }
    wanted = {"gold_rate": 0.15, "gold_max_error": 6.0, "gold_min_answers": 5, "exclude_flagged": True}
    response = api.client.put(url, json=wanted, headers=headers)
    assert response.status_code == 200 and response.json() == wanted
    with api.seed() as session:
        stored = session.get(Project, project.id)
        assert stored is not None
        assert stored.config.model_dump(include=set(wanted)) == wanted
        assert stored.config.overlap == project.config.overlap  # the other settings stay
    for bad in ({**wanted, "gold_rate": 0.6}, {**wanted, "gold_min_answers": 0}, {**wanted, "surprise": 1}):
        refused = api.client.put(url, json=bad, headers=headers)
        assert refused.status_code == 422, bad
    assert api.client.get(url, headers=api.headers_for(other)).status_code == 404
    assert api.client.put(url, json=wanted, headers=api.headers_for(other)).status_code == 404
    annotator = new_user(api, Role.annotator)
    assert api.client.put(url, json=wanted, headers=api.headers_for(annotator)).status_code == 403
