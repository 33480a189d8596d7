"""Rounds over HTTP on a real database: open (scoring shards queued), read, queries, close, retry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from backend.models import Assignment, AssignmentState, ProjectStatus, Role, Round, RoundState, Score
from backend.rounds.lifecycle import shard_ranges
from backend.rounds.service import close_round
from tests.api.factories import Api, make_queries, make_round, make_user
from tests.api.platform_support import add_answer, make_checkpoint, make_ready_project, queued_tasks


@pytest.fixture
def api(fresh_api: Api) -> Api:
    return fresh_api


def test_shard_ranges_cover_every_example_once() -> None:
    assert shard_ranges(12, 5) == [(0, 5), (5, 10), (10, 12)]
    assert shard_ranges(3, 10) == [(0, 3)]
    assert shard_ranges(0, 10) == []


def test_opening_a_round_queues_one_scoring_task_per_shard(api: Api) -> None:
    with api.seed() as session:
        lead = make_user(session, Role.lead)
        annotator = make_user(session, Role.annotator)
        project, _ = make_ready_project(session, api.settings, lead, num_train=12, score_shard_size=5)
        make_checkpoint(session, api.settings, project, 0)
    headers = api.headers_for(lead)
    url = f"/api/v1/projects/{project.id}/rounds"
    assert api.client.post(url, headers=api.headers_for(annotator)).status_code == 403
    response = api.client.post(url, headers=headers)
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["number"] == 1 and created["state"] == "scoring"
    round_id = created["id"]
    assert queued_tasks(api.settings) == [
        ("scoring.score", [round_id, 0, 5]),
        ("scoring.score", [round_id, 5, 10]),
        ("scoring.score", [round_id, 10, 12]),
    ]
    body = api.client.get(f"/api/v1/rounds/{round_id}", headers=headers).json()
    assert body["progress"] == {"step": "scoring", "done": 0, "total": 12}
    assert body["counts"] == {"queries": 0, "complete_queries": 0, "answers": 0, "annotators": 0}
    again = api.client.post(url, headers=headers)
    assert again.status_code == 409 and "scoring" in again.json()["detail"]
    listed = api.client.get(url, headers=headers).json()
    assert [row["id"] for row in listed] == [round_id]


def test_a_round_needs_a_ready_project_and_the_previous_round_published(api: Api) -> None:
    with api.seed() as session:
        lead = make_user(session, Role.lead)
        project, _ = make_ready_project(session, api.settings, lead)
        project.status = ProjectStatus.pretraining
    headers = api.headers_for(lead)
    url = f"/api/v1/projects/{project.id}/rounds"
    assert api.client.post(url, headers=headers).status_code == 409
    with api.seed() as session:
        session.get_one(type(project), project.id).status = ProjectStatus.ready
        make_round(session, project, 1, RoundState.published)
    response = api.client.post(url, headers=headers)
    assert response.status_code == 201 and response.json()["number"] == 2


def test_round_read_counts_answers_and_queries_list_them(api: Api) -> None:
    with api.seed() as session:
        lead = make_user(session, Role.lead)
        people = [make_user(session, Role.annotator) for _ in range(2)]
        project, examples = make_ready_project(session, api.settings, lead, num_train=4)
        round_ = make_round(session, project)
        queries = make_queries(session, round_, examples[:3])
        add_answer(session, queries[0], people[0], 20)
        add_answer(session, queries[0], people[1], 41)
        add_answer(session, queries[1], people[0], 60)
    headers = api.headers_for(lead)
    body = api.client.get(f"/api/v1/rounds/{round_.id}", headers=headers).json()
    assert body["state"] == "annotating"
    assert body["counts"] == {"queries": 3, "complete_queries": 1, "answers": 3, "annotators": 2}
    assert body["progress"] == {"step": "annotating", "done": 3, "total": 6}
    listed = api.client.get(f"/api/v1/rounds/{round_.id}/queries", headers=headers).json()
    assert [row["answers"] for row in listed] == [[20, 41], [60], []]
    assert listed[0]["status"] == "complete" and listed[0]["sigma_index_before"] == 30
    assert listed[0]["image_url"] == f"/api/v1/examples/{listed[0]['example_id']}/image.png"
    other = api.headers_for(people[0])
    assert api.client.get(f"/api/v1/rounds/{round_.id}", headers=other).status_code == 403
    assert api.client.get("/api/v1/rounds/999999", headers=headers).status_code == 404


def test_closing_ends_leases_and_queues_the_aggregation(api: Api) -> None:
    with api.seed() as session:
        lead = make_user(session, Role.lead)
        people = [make_user(session, Role.annotator) for _ in range(2)]
        project, examples = make_ready_project(session, api.settings, lead, num_train=4)
        round_ = make_round(session, project)
        queries = make_queries(session, round_, examples[:2])
        add_answer(session, queries[0], people[0], 20)
        session.add(
            Assignment(
                query_id=queries[1].id,
                annotator_id=people[1].id,
                expires_at=datetime.now(UTC) + timedelta(minutes=5),
            )
        )
    headers = api.headers_for(lead)
    response = api.client.post(f"/api/v1/rounds/{round_.id}/close", headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["state"] == "aggregating" and response.json()["closed_at"] is not None
    assert queued_tasks(api.settings) == [("rounds.aggregate", [round_.id])]
    with api.seed() as session:
        states = session.scalars(select(Assignment.state).order_by(Assignment.id)).all()
    assert states == [AssignmentState.answered, AssignmentState.expired]
    again = api.client.post(f"/api/v1/rounds/{round_.id}/close", headers=headers)
    assert again.status_code == 409 and "aggregating" in again.json()["detail"]


def test_the_automatic_close_is_a_no_op_on_a_round_no_longer_annotating(api: Api) -> None:
    with api.seed() as session:
        lead = make_user(session, Role.lead)
        project, _ = make_ready_project(session, api.settings, lead)
        round_ = make_round(session, project, state=RoundState.training)
        assert close_round(session, round_, closed_by=None).state == RoundState.training
    assert queued_tasks(api.settings) == []


@pytest.mark.parametrize(
    ("failed_state", "task"),
    [
        (RoundState.aggregating, "rounds.aggregate"),
        (RoundState.training, "training.finetune"),
        (RoundState.evaluating, "evaluation.evaluate"),
        (RoundState.scoring, "scoring.score"),
    ],
)
def test_retry_resumes_at_the_failed_step(api: Api, failed_state: RoundState, task: str) -> None:
    with api.seed() as session:
        lead = make_user(session, Role.lead)
        project, examples = make_ready_project(session, api.settings, lead, num_train=6)
        round_ = make_round(session, project, state=RoundState.failed)
        round_.failed_state = failed_state
        round_.error = "CUDA out of memory"
        for example in examples[:2]:
            session.add(
                Score(
                    round_id=round_.id,
                    example_id=example.id,
                    entropy=0.1,
                    clean_uncertainty=0.2,
                    noise_uncertainty=0.3,
                )
            )
    headers = api.headers_for(lead)
    body = api.client.get(f"/api/v1/rounds/{round_.id}", headers=headers).json()
    assert (body["state"], body["failed_state"], body["error"]) == (
        "failed",
        failed_state.value,
        "CUDA out of memory",
    )
    response = api.client.post(f"/api/v1/rounds/{round_.id}/retry", headers=headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["state"], body["failed_state"], body["error"]) == (failed_state.value, None, None)
    expected_args = {
        "rounds.aggregate": [[round_.id]],
        "training.finetune": [[round_.id]],
        "evaluation.evaluate": [[project.id, 1]],
        "scoring.score": [[round_.id, 0, 6]],
    }[task]
    assert queued_tasks(api.settings) == [(task, args) for args in expected_args]
    if failed_state == RoundState.scoring:
        assert body["progress"] == {"step": "scoring", "done": 2, "total": 6}
    assert api.client.post(f"/api/v1/rounds/{round_.id}/retry", headers=headers).status_code == 409
    with api.seed() as session:
        assert session.get_one(Round, round_.id).state == failed_state
