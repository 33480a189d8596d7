"""σ_o per query: the round's queries listing, the export (csv and jsonl) and the project page's scatter."""

from __future__ import annotations

import csv
import io
import json

import pytest

from backend.models import Role, RoundState
from tests.api.factories import Api, make_queries, make_round, make_user
from tests.api.platform_support import add_answer, make_ready_project
from tests.ui.test_pages import sign_in


@pytest.fixture
def api(fresh_api: Api) -> Api:
    return fresh_api


def seed_round_with_oracle(api: Api) -> tuple[int, int, list[int], dict[str, str], str]:
    """Round 1 aggregated: query 0 answered (consensus 45, σ_o 30), query 1 unanswered (σ_o 12)."""
    with api.seed() as session:
        lead = make_user(session, Role.lead)
        alice = make_user(session, Role.annotator)
        project, examples = make_ready_project(
            session, api.settings, lead, num_train=3, oracle_reference=True
        )
        round_ = make_round(session, project, 1, RoundState.published)
        answered, unanswered = make_queries(session, round_, examples[:2])
        add_answer(session, answered, alice, 45)
        answered.result_sigma_index, answered.oracle_sigma_index = 45, 30
        unanswered.oracle_sigma_index = 12
        ids = [answered.example_id, unanswered.example_id]
        project_id, round_id, lead_name = project.id, round_.id, lead.username
    return project_id, round_id, ids, api.headers_for(lead), lead_name


def test_the_queries_listing_carries_sigma_o(api: Api) -> None:
    _, round_id, example_ids, headers, _ = seed_round_with_oracle(api)
    response = api.client.get(f"/api/v1/rounds/{round_id}/queries", headers=headers)
    assert response.status_code == 200
    listed = {query["example_id"]: query for query in response.json()}
    assert (listed[example_ids[0]]["result_sigma_index"], listed[example_ids[0]]["oracle_sigma_index"]) == (
        45,
        30,
    )
    assert (listed[example_ids[1]]["result_sigma_index"], listed[example_ids[1]]["oracle_sigma_index"]) == (
        None,
        12,
    )


def test_the_export_puts_sigma_o_beside_the_answers(api: Api) -> None:
    project_id, _, example_ids, headers, _ = seed_round_with_oracle(api)
    url = f"/api/v1/projects/{project_id}/export"
    rows = {
        row["example_id"]: row
        for row in map(
            json.loads, api.client.get(url, params={"format": "jsonl"}, headers=headers).text.splitlines()
        )
    }
    assert rows[example_ids[0]]["oracle_answers"] == [
        {"round": 1, "oracle_sigma_index": 30, "consensus_sigma_index": 45}
    ]
    assert [a["sigma_index"] for a in rows[example_ids[0]]["answers"]] == [45]
    assert rows[example_ids[1]]["oracle_answers"] == [
        {"round": 1, "oracle_sigma_index": 12, "consensus_sigma_index": None}
    ]
    assert all(row["oracle_answers"] == [] for key, row in rows.items() if key not in example_ids)
    table = list(csv.DictReader(io.StringIO(api.client.get(url, headers=headers).text)))
    first = next(row for row in table if int(row["example_id"]) == example_ids[0])
    assert json.loads(first["oracle_answers"])[0]["oracle_sigma_index"] == 30


def test_the_project_panels_plot_consensus_against_sigma_o_with_the_agreement(api: Api) -> None:
    project_id, _, _, _, lead_name = seed_round_with_oracle(api)
    sign_in(api.client, lead_name)
    panels = api.client.get(f"/projects/{project_id}/panels")
    assert panels.status_code == 200
    assert 'class="chart oracle-scatter"' in panels.text
    assert panels.text.count('class="point"') == 1  # only the query with both values
    # One pair: the difference is defined (45 − 30 = +15 steps), the correlation and interval are not.
    assert (
        "1 query:" in panels.text and "Pearson r = –" in panels.text and "+15.0 ladder steps" in panels.text
    )
