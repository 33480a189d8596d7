"""The export: every triplet with its σ history and every raw answer, as CSV and JSON lines."""

from __future__ import annotations

import csv
import io
import json

import pytest

from backend.models import Role, RoundState, SigmaChange, SigmaSource
from tests.api.factories import Api, make_queries, make_round, make_user
from tests.api.platform_support import add_answer, make_ready_project


@pytest.fixture
def api(fresh_api: Api) -> Api:
    return fresh_api


def seed_answered_round(api: Api) -> tuple[int, int, list[int], dict[str, str]]:
    """Round 1 answered and aggregated for example 0 (σ 30 -> 45); (project, queried id, others, headers)."""
    with api.seed() as session:
        lead = make_user(session, Role.lead)
        alice = make_user(session, Role.annotator, "alice-export")
        bob = make_user(session, Role.annotator, "bob-export")
        project, examples = make_ready_project(session, api.settings, lead, num_train=3, num_test=1)
        round_ = make_round(session, project, 1, RoundState.published)
        (query,) = make_queries(session, round_, examples[:1])
        add_answer(session, query, alice, 40)
        add_answer(session, query, bob, 50)
        queried = examples[0]
        session.add(
            SigmaChange(
                example_id=queried.id,
                round_number=1,
                old_sigma_index=30,
                new_sigma_index=45,
                source=SigmaSource.queried,
            )
        )
        queried.sigma_index, queried.sigma_source, queried.sigma_round = 45, SigmaSource.queried, 1
    return project.id, queried.id, [example.id for example in examples[1:]], api.headers_for(lead)


def test_jsonl_export_has_history_and_answers(api: Api) -> None:
    project_id, queried, others, headers = seed_answered_round(api)
    response = api.client.get(
        f"/api/v1/projects/{project_id}/export", params={"format": "jsonl"}, headers=headers
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/x-ndjson"
    assert (
        response.headers["content-disposition"]
        == f'attachment; filename="project_{project_id}_triplets.jsonl"'
    )
    rows = [json.loads(line) for line in response.text.splitlines()]
    assert [row["example_id"] for row in rows] == [queried, *others]
    first = rows[0]
    assert (first["sigma_index"], first["sigma_source"], first["sigma_round"]) == (45, "queried", 1)
    assert first["sigma_history"] == [
        {"round": 1, "old_sigma_index": 30, "new_sigma_index": 45, "source": "queried"}
    ]
    assert [(a["annotator"], a["sigma_index"], a["round"]) for a in first["answers"]] == [
        ("alice-export", 40, 1),
        ("bob-export", 50, 1),
    ]
    for row in rows[1:]:
        assert (row["sigma_index"], row["sigma_source"], row["answers"], row["sigma_history"]) == (
            30,
            "initial",
            [],
            [],
        )
    assert [row["split"] for row in rows] == ["train", "train", "train", "test"]


def test_csv_export_has_one_row_per_example_with_json_columns(api: Api) -> None:
    project_id, queried, others, headers = seed_answered_round(api)
    response = api.client.get(f"/api/v1/projects/{project_id}/export", headers=headers)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [int(row["example_id"]) for row in rows] == [queried, *others]
    assert rows[0]["sigma_index"] == "45" and rows[0]["sigma_source"] == "queried"
    assert [answer["sigma_index"] for answer in json.loads(rows[0]["answers"])] == [40, 50]
    assert json.loads(rows[0]["sigma_history"])[0]["new_sigma_index"] == 45
    assert json.loads(rows[1]["answers"]) == [] and rows[1]["sigma_index"] == "30"


def test_export_needs_the_owner_and_a_known_format(api: Api) -> None:
    project_id, _, _, headers = seed_answered_round(api)
    with api.seed() as session:
        stranger = make_user(session, Role.lead)
    url = f"/api/v1/projects/{project_id}/export"
    assert api.client.get(url, headers=api.headers_for(stranger)).status_code == 404  # not disclosed
    assert api.client.get(url, params={"format": "xlsx"}, headers=headers).status_code == 422
