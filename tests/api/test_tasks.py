"""Task distribution over HTTP on a real database: leases, overlap, expiry, skip, renew, idempotency."""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, update

from backend.models import Annotation, Assignment, AssignmentState, Query, Role, Round, RoundState, User
from tests.api.factories import Api, make_annotating_round, make_user


@pytest.fixture(scope="module")
def api_settings() -> dict[str, Any]:
    """Admission control off in effect: the concurrency tests here want every request at the database at
    once (tests/api/test_overload.py has the server refuse and the annotators retry)."""
    return {"max_requests_in_flight": 64}


def seed_round(api: Api, queries: int = 2, annotators: int = 3, **config: object) -> tuple[int, list[User]]:
    """A project with an annotating round of `queries` queries; returns (project id, annotators)."""
    with api.seed() as session:
        lead = make_user(session, Role.lead)
        project, _round, _queries = make_annotating_round(session, lead, queries=queries, **config)
        people = [make_user(session, Role.annotator) for _ in range(annotators)]
    return project.id, people


def take(api: Api, headers: dict[str, str], project_id: int) -> dict[str, object] | None:
    response = api.client.post("/api/v1/tasks/next", params={"project_id": project_id}, headers=headers)
    if response.status_code == 204:
        return None
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


def answer(
    api: Api, headers: dict[str, str], task_id: object, sigma: int = 40, key: str | None = None
) -> httpx.Response:
    return api.client.post(
        f"/api/v1/tasks/{task_id}/annotation",
        json={"sigma_index": sigma, "seconds": 3.5},
        headers={**headers, "Idempotency-Key": key or str(uuid.uuid4())},
    )


def expire(api: Api, task_id: object) -> None:
    with api.seed() as session:
        session.execute(
            update(Assignment)
            .where(Assignment.id == task_id)
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )


def test_next_returns_the_task_and_returns_it_again_while_the_lease_lives(api: Api) -> None:
    project_id, (alice, *_rest) = seed_round(api, queries=2)
    headers = api.headers_for(alice)
    task = take(api, headers, project_id)
    assert task is not None
    assert task["project_id"] == project_id
    assert task["image_url"] == f"/api/v1/examples/{task['example_id']}/image.png"
    assert task["noise_url"] == f"/api/v1/examples/{task['example_id']}/noise"
    assert task["image_shape"] == [6, 5, 3]
    assert task["ladder"] == {"min_index": 0, "max_index": 90, "step": 0.01}
    assert task["class_name"] in {"cat", "dog", "bird"}
    assert task["current_sigma_index"] is None
    assert task["progress"] == {"answered": 0, "total": 4, "mine": 0}
    expires_at = datetime.fromisoformat(str(task["expires_at"]))
    assert timedelta(seconds=290) < expires_at - datetime.now(UTC) <= timedelta(seconds=300)
    assert take(api, headers, project_id) == task
    assert api.client.get(f"/api/v1/tasks/{task['id']}", headers=headers).json() == task


def test_exclude_leases_a_second_task_to_prefetch_and_no_third(api: Api) -> None:
    project_id, (alice, *_rest) = seed_round(api, queries=3)
    headers = api.headers_for(alice)
    on_screen = take(api, headers, project_id)
    assert on_screen is not None

    def prefetch(exclude: object) -> dict[str, object]:
        response = api.client.post(
            "/api/v1/tasks/next", params={"project_id": project_id, "exclude": exclude}, headers=headers
        )
        assert response.status_code == 200, response.text
        body: dict[str, object] = response.json()
        return body

    second = prefetch(on_screen["id"])
    assert second["id"] != on_screen["id"] and second["query_id"] != on_screen["query_id"]
    assert prefetch(on_screen["id"]) == second  # asking again does not lease a third
    assert answer(api, headers, on_screen["id"]).status_code == 201
    third = prefetch(second["id"])
    assert third["query_id"] not in {on_screen["query_id"], second["query_id"]}


def test_project_settings_hide_the_class_and_show_the_sigma_marker(api: Api) -> None:
    project_id, (alice, *_rest) = seed_round(api, queries=1, show_class_name=False, show_sigma_marker=True)
    task = take(api, api.headers_for(alice), project_id)
    assert task is not None
    assert task["class_name"] is None
    assert task["current_sigma_index"] == 30


def test_overlap_gives_each_query_to_k_distinct_annotators_then_204(api: Api) -> None:
    project_id, people = seed_round(api, queries=1, annotators=3, overlap=2)
    first, second, third = (take(api, api.headers_for(person), project_id) for person in people)
    assert first is not None and second is not None
    assert first["query_id"] == second["query_id"]
    assert first["id"] != second["id"]
    assert third is None  # both slots are leased


def test_an_annotator_never_gets_a_query_twice(api: Api) -> None:
    project_id, (alice, *_rest) = seed_round(api, queries=2)
    headers = api.headers_for(alice)
    seen = []
    while (task := take(api, headers, project_id)) is not None:
        seen.append(task["query_id"])
        assert answer(api, headers, task["id"]).status_code == 201
    assert len(seen) == len(set(seen)) == 2


def test_an_expired_lease_returns_the_slot_and_a_late_submit_is_refused(api: Api) -> None:
    project_id, (alice, bob, carol) = seed_round(api, queries=1, overlap=2)
    alice_task = take(api, api.headers_for(alice), project_id)
    assert take(api, api.headers_for(bob), project_id) is not None
    assert take(api, api.headers_for(carol), project_id) is None
    assert alice_task is not None
    expire(api, alice_task["id"])
    carol_task = take(api, api.headers_for(carol), project_id)
    assert carol_task is not None and carol_task["query_id"] == alice_task["query_id"]
    late = answer(api, api.headers_for(alice), alice_task["id"])
    assert late.status_code == 409
    assert "another annotator" in late.json()["detail"]
    renewed = api.client.post(f"/api/v1/tasks/{alice_task['id']}/renew", headers=api.headers_for(alice))
    assert renewed.status_code == 409
    with api.seed() as session:  # leasing the query again recorded the lapsed lease as expired
        lapsed = session.get(Assignment, alice_task["id"])
        assert lapsed is not None and lapsed.state == AssignmentState.expired


def test_a_submit_on_an_expired_lease_is_accepted_while_the_slot_is_free(api: Api) -> None:
    project_id, (alice, *_rest) = seed_round(api, queries=1)
    headers = api.headers_for(alice)
    task = take(api, headers, project_id)
    assert task is not None
    expire(api, task["id"])
    response = answer(api, headers, task["id"], sigma=12)
    assert response.status_code == 201
    assert response.json()["sigma_index"] == 12


def test_the_same_annotator_gets_their_expired_assignment_back(api: Api) -> None:
    project_id, (alice, *_rest) = seed_round(api, queries=1)
    headers = api.headers_for(alice)
    task = take(api, headers, project_id)
    assert task is not None
    expire(api, task["id"])
    again = take(api, headers, project_id)
    assert again is not None
    assert again["id"] == task["id"]  # the same row, leased anew (one assignment per query and annotator)
    assert datetime.fromisoformat(str(again["expires_at"])) > datetime.now(UTC)


def test_renew_extends_the_lease_and_revives_an_expired_one_with_a_free_slot(api: Api) -> None:
    project_id, (alice, *_rest) = seed_round(api, queries=1)
    headers = api.headers_for(alice)
    task = take(api, headers, project_id)
    assert task is not None
    expire(api, task["id"])
    response = api.client.post(f"/api/v1/tasks/{task['id']}/renew", headers=headers)
    assert response.status_code == 200
    body = response.json()
    assert body["state"] == "leased"
    assert datetime.fromisoformat(body["expires_at"]) > datetime.now(UTC) + timedelta(seconds=290)


def test_skip_gives_the_query_away_for_good(api: Api) -> None:
    project_id, (alice, bob, carol) = seed_round(api, queries=1, overlap=2)
    headers = api.headers_for(alice)
    task = take(api, headers, project_id)
    assert task is not None
    skipped = api.client.post(f"/api/v1/tasks/{task['id']}/skip", headers=headers)
    assert skipped.status_code == 200 and skipped.json()["state"] == "skipped"
    assert take(api, headers, project_id) is None
    assert answer(api, headers, task["id"]).status_code == 409
    # The slot went back to the pool: two other annotators can still take it.
    assert take(api, api.headers_for(bob), project_id) is not None
    assert take(api, api.headers_for(carol), project_id) is not None


def test_a_replayed_submit_returns_the_first_answer(api: Api) -> None:
    project_id, (alice, *_rest) = seed_round(api, queries=2)
    headers = api.headers_for(alice)
    task = take(api, headers, project_id)
    assert task is not None
    first = answer(api, headers, task["id"], sigma=33, key="key-1")
    replay = answer(api, headers, task["id"], sigma=70, key="key-1")
    assert first.status_code == replay.status_code == 201
    assert replay.json() == first.json()
    assert first.json()["sigma_index"] == 33
    # The same task answered under another key: one answer per query and annotator.
    assert answer(api, headers, task["id"], key="key-2").status_code == 409
    # The same key for another task is a client bug, not a replay.
    other = take(api, headers, project_id)
    assert other is not None
    assert answer(api, headers, other["id"], key="key-1").status_code == 409
    with api.seed() as session:
        assert session.scalar(select(Query.answer_count).where(Query.id == task["query_id"])) == 1
        assert len(session.scalars(select(Annotation).where(Annotation.annotator_id == alice.id)).all()) == 1


def test_answers_aggregate_and_the_last_one_closes_the_round(api: Api) -> None:
    project_id, (alice, bob, _carol) = seed_round(api, queries=1, overlap=2)
    for person, sigma in ((alice, 20), (bob, 31)):
        headers = api.headers_for(person)
        task = take(api, headers, project_id)
        assert task is not None
        assert answer(api, headers, task["id"], sigma=sigma).status_code == 201
    with api.seed() as session:
        query = session.scalars(select(Query).join(Round).where(Round.project_id == project_id)).one()
        round_ = session.get(Round, query.round_id)
        assert round_ is not None
        assert (query.status, query.answer_count) == ("complete", 2)
        assert query.result_sigma_index == 26  # median 25.5 rounds up
        assert query.result_mad == pytest.approx(5.5)
        assert round_.state == RoundState.aggregating


def test_auto_close_off_leaves_the_round_annotating(api: Api) -> None:
    project_id, (alice, *_rest) = seed_round(api, queries=1, overlap=1, auto_close=False)
    headers = api.headers_for(alice)
    task = take(api, headers, project_id)
    assert task is not None
    assert answer(api, headers, task["id"]).status_code == 201
    with api.seed() as session:
        state = session.scalar(select(Round.state).where(Round.project_id == project_id))
    assert state == RoundState.annotating


def test_disagreeing_answers_get_one_more_annotator(api: Api) -> None:
    project_id, (alice, bob, carol) = seed_round(api, queries=1, overlap=2, disagreement_threshold=5)
    for person, sigma in ((alice, 10), (bob, 60)):
        headers = api.headers_for(person)
        task = take(api, headers, project_id)
        assert task is not None
        assert answer(api, headers, task["id"], sigma=sigma).status_code == 201
    with api.seed() as session:
        query = session.scalars(select(Query).join(Round).where(Round.project_id == project_id)).one()
        assert (query.status, query.required_answers) == ("open", 3)
    headers = api.headers_for(carol)
    task = take(api, headers, project_id)
    assert task is not None
    assert answer(api, headers, task["id"], sigma=20).status_code == 201
    with api.seed() as session:
        query = session.scalars(select(Query).join(Round).where(Round.project_id == project_id)).one()
        assert (query.status, query.required_answers, query.result_sigma_index) == ("complete", 3, 20)


def test_progress_counts_the_round_and_my_answers(api: Api) -> None:
    project_id, (alice, bob, _carol) = seed_round(api, queries=2, overlap=2)
    headers = api.headers_for(alice)
    task = take(api, headers, project_id)
    assert task is not None
    assert answer(api, headers, task["id"]).status_code == 201
    task = take(api, api.headers_for(bob), project_id)
    assert task is not None
    assert task["progress"] == {"answered": 1, "total": 4, "mine": 0}
    task = take(api, headers, project_id)
    assert task is not None
    assert task["progress"] == {"answered": 1, "total": 4, "mine": 1}


def test_rounds_that_are_not_annotating_hand_out_nothing_and_take_no_answers(api: Api) -> None:
    project_id, (alice, *_rest) = seed_round(api, queries=2)
    headers = api.headers_for(alice)
    task = take(api, headers, project_id)
    assert task is not None
    with api.seed() as session:
        session.execute(
            update(Round).where(Round.project_id == project_id).values(state=RoundState.aggregating)
        )
    assert take(api, headers, project_id) is None
    response = answer(api, headers, task["id"])
    assert response.status_code == 409
    assert "aggregating" in response.json()["detail"]


def test_someone_elses_task_does_not_exist_for_you(api: Api) -> None:
    project_id, (alice, bob, _carol) = seed_round(api, queries=1)
    task = take(api, api.headers_for(alice), project_id)
    assert task is not None
    for path in ("annotation", "skip", "renew"):
        response = api.client.post(
            f"/api/v1/tasks/{task['id']}/{path}",
            json={"sigma_index": 3},
            headers={**api.headers_for(bob), "Idempotency-Key": "k"},
        )
        assert response.status_code == 404, path
    with api.seed() as session:
        assert session.scalar(select(Assignment.state).where(Assignment.id == task["id"])) == (
            AssignmentState.leased
        )


@pytest.mark.parametrize(
    ("body", "key"),
    [
        ({"sigma_index": 91}, "k"),
        ({"sigma_index": -1}, "k"),
        ({"sigma_index": "5"}, "k"),
        ({"sigma_index": 4.5}, "k"),
        ({"sigma_index": True}, "k"),
        ({"sigma_index": 5, "seconds": -1}, "k"),
        ({"sigma_index": 5, "extra": 1}, "k"),
        ({}, "k"),
        ({"sigma_index": 5}, None),
        ({"sigma_index": 5}, "x" * 101),
    ],
)
def test_bad_answers_are_422(api: Api, body: dict[str, object], key: str | None) -> None:
    project_id, (alice, *_rest) = seed_round(api, queries=1)
    headers = api.headers_for(alice)
    task = take(api, headers, project_id)
    assert task is not None
    if key is not None:
        headers = {**headers, "Idempotency-Key": key}
    response = api.client.post(f"/api/v1/tasks/{task['id']}/annotation", json=body, headers=headers)
    assert response.status_code == 422, response.text


def test_unknown_and_out_of_range_task_ids(api: Api) -> None:
    _project_id, (alice, *_rest) = seed_round(api, queries=1)
    headers = {**api.headers_for(alice), "Idempotency-Key": "k"}
    assert api.client.post("/api/v1/tasks/999999/skip", headers=headers).status_code == 404
    assert api.client.post(f"/api/v1/tasks/{2**40}/skip", headers=headers).status_code == 422
    assert api.client.post("/api/v1/tasks/next?project_id=0", headers=headers).status_code == 422


def test_simultaneous_next_calls_never_over_assign(api: Api) -> None:
    """Many annotators ask at the same instant: each query goes to at most k of them, once each."""
    project_id, people = seed_round(api, queries=4, annotators=12, overlap=2)
    headers = [api.headers_for(person) for person in people]
    start = threading.Barrier(len(people))

    def ask(person_headers: dict[str, str]) -> dict[str, object] | None:
        start.wait()
        return take(api, person_headers, project_id)

    with ThreadPoolExecutor(len(people)) as pool:
        tasks = list(pool.map(ask, headers))
    given = [task for task in tasks if task is not None]
    assert len(given) == 8  # 4 queries x 2 slots, and 4 annotators told "nothing left"
    per_query = Counter(task["query_id"] for task in given)
    assert set(per_query.values()) == {2}
    assert len({task["id"] for task in given}) == 8


def test_annotators_working_at_once_answer_every_query_exactly_k_times(api: Api) -> None:
    """Annotators loop next -> submit at once (some skip, some retry): every query ends with k answers."""
    project_id, people = seed_round(api, queries=10, annotators=8, overlap=3, auto_close=False)
    failures: list[str] = []

    def work(index: int, person: User) -> list[object]:
        person_headers = api.headers_for(person)
        answered = []
        idle_polls = 0
        for step in itertools.count():
            task = take(api, person_headers, project_id)
            if task is None:
                # 204 means "nothing for you now": a slot leased by someone who then skips comes back,
                # so keep polling for a while as the annotation page does.
                idle_polls += 1
                if idle_polls > 40:
                    return answered
                time.sleep(0.05)
                continue
            idle_polls = 0
            if (index + step) % 7 == 3:  # now and then an annotator skips
                api.client.post(f"/api/v1/tasks/{task['id']}/skip", headers=person_headers)
                continue
            key = str(uuid.uuid4())
            for _attempt in range(1 + (step % 2)):  # every other submit is retried with its key
                response = answer(api, person_headers, task["id"], sigma=10 + index, key=key)
                if response.status_code != 201:
                    failures.append(f"{response.status_code} {response.text}")
            answered.append(task["query_id"])
        return answered

    with ThreadPoolExecutor(len(people)) as pool:
        results = list(pool.map(work, range(len(people)), people))
    assert failures == []
    for answered in results:
        assert len(answered) == len(set(answered))  # never the same query twice
    with api.seed() as session:
        queries = session.scalars(select(Query).join(Round).where(Round.project_id == project_id)).all()
        assert [(query.answer_count, query.status) for query in queries] == [(3, "complete")] * 10
        answers = session.execute(
            select(Annotation.query_id, func.count()).group_by(Annotation.query_id)
        ).all()
        assert sorted(count for query_id, count in answers if query_id in {q.id for q in queries}) == [3] * 10
    assert sum(len(answered) for answered in results) == 30
