"""Answers at the service level (rolled back per test) and the auto-close race over HTTP."""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.annotations.service import submit_answer
from backend.errors import Conflict
from backend.models import Assignment, AssignmentState, Query, Role, Round, RoundState, User
from backend.rounds.lifecycle import close_if_complete
from backend.tasks.service import next_task
from tests.api.factories import Api, make_annotating_round, make_user
from tests.api.platform_support import add_answer, queued_tasks

LEASE_SECONDS = 300


def answer_next(session: Session, annotator: User, project_id: int, sigma: int, key: str = "") -> Query:
    """What the endpoints do: lease, answer, and once the answer is in, close the round if it is done."""
    task_id = next_task(session, annotator.id, LEASE_SECONDS, project_id)
    assert task_id is not None
    submitted = submit_answer(session, annotator.id, task_id, sigma, 2.0, key or str(uuid.uuid4()))
    assert not submitted.replayed
    if submitted.completed_round_id is not None:
        close_if_complete(session, submitted.completed_round_id)
    query = session.get(Query, submitted.annotation.query_id, populate_existing=True)
    assert query is not None
    return query


def test_an_answer_is_counted_once_and_its_replay_returns_it(db_session: Session) -> None:
    lead, annotator = make_user(db_session, Role.lead), make_user(db_session)
    project, _round, _queries = make_annotating_round(db_session, lead, queries=1, overlap=2)
    task_id = next_task(db_session, annotator.id, LEASE_SECONDS, project.id)
    assert task_id is not None
    first = submit_answer(db_session, annotator.id, task_id, 44, 1.5, "k")
    replay = submit_answer(db_session, annotator.id, task_id, 12, 9.0, "k")
    assert replay.replayed and replay.annotation == first.annotation
    assert replay.annotation.sigma_index == 44
    assignment = db_session.get(Assignment, task_id, populate_existing=True)
    assert assignment is not None and assignment.state == AssignmentState.answered
    query = db_session.get(Query, assignment.query_id, populate_existing=True)
    assert query is not None and (query.answer_count, query.status) == (1, "open")
    with pytest.raises(Conflict):
        submit_answer(db_session, annotator.id, task_id, 12, None, "another key")


def test_a_query_gets_at_most_one_extra_annotator(db_session: Session) -> None:
    lead = make_user(db_session, Role.lead)
    people = [make_user(db_session) for _ in range(4)]
    project, round_, _queries = make_annotating_round(
        db_session, lead, queries=1, overlap=2, disagreement_threshold=5
    )
    answer_next(db_session, people[0], project.id, 10)
    query = answer_next(db_session, people[1], project.id, 60)
    assert (query.required_answers, query.status, query.result_sigma_index) == (3, "open", None)
    query = answer_next(db_session, people[2], project.id, 30)
    # Still disagreeing (MAD 20 > 5), but the one extra answer was already asked for: done.
    assert (query.required_answers, query.status, query.result_sigma_index) == (3, "complete", 30)
    assert query.result_mad == pytest.approx(20.0)
    assert next_task(db_session, people[3].id, LEASE_SECONDS, project.id) is None
    db_session.refresh(round_)
    assert round_.state == RoundState.aggregating


def test_agreeing_answers_need_no_extra_annotator(db_session: Session) -> None:
    lead, first, second = make_user(db_session, Role.lead), make_user(db_session), make_user(db_session)
    project, _round, _queries = make_annotating_round(
        db_session, lead, queries=1, overlap=2, disagreement_threshold=5
    )
    answer_next(db_session, first, project.id, 40)
    query = answer_next(db_session, second, project.id, 47)
    assert (query.status, query.result_sigma_index, query.result_mad) == ("complete", 44, 3.5)


@pytest.mark.parametrize("trial", range(4))
def test_the_last_answers_arriving_together_close_the_round(api: Api, trial: int) -> None:
    """Two annotators finish the round's last two queries at the same instant: the round closes."""
    with api.seed() as session:
        lead = make_user(session, Role.lead)
        people = [make_user(session) for _ in range(2)]
        project, _round, _queries = make_annotating_round(session, lead, queries=2, overlap=1)
    headers = [api.headers_for(person) for person in people]
    tasks = [
        api.client.post("/api/v1/tasks/next", params={"project_id": project.id}, headers=h).json()
        for h in headers
    ]
    assert tasks[0]["query_id"] != tasks[1]["query_id"]
    start = threading.Barrier(2)

    def submit(index: int) -> httpx.Response:
        start.wait()
        return api.client.post(
            f"/api/v1/tasks/{tasks[index]['id']}/annotation",
            json={"sigma_index": 20 + trial},
            headers={**headers[index], "Idempotency-Key": str(uuid.uuid4())},
        )

    with ThreadPoolExecutor(2) as pool:
        responses = list(pool.map(submit, range(2)))
    assert [response.status_code for response in responses] == [201, 201]
    with api.seed() as session:
        state = session.scalar(select(Round.state).where(Round.project_id == project.id))
    assert state == RoundState.aggregating


def test_many_last_answers_arriving_together_close_the_round_exactly_once(api: Api) -> None:
    """Every query's last answer at the same instant (overlap 1): each submit completes its query and
    checks the round; none waits for another on the round's row, and exactly one of them closes it."""
    count = 10
    with api.seed() as session:
        lead = make_user(session, Role.lead)
        people = [make_user(session) for _ in range(count)]
        project, round_, _queries = make_annotating_round(session, lead, queries=count, overlap=1)
    headers = [api.headers_for(person) for person in people]
    tasks = [
        api.client.post("/api/v1/tasks/next", params={"project_id": project.id}, headers=h).json()
        for h in headers
    ]
    assert len({task["query_id"] for task in tasks}) == count
    start = threading.Barrier(count)

    def submit(index: int) -> httpx.Response:
        start.wait()
        key = str(uuid.uuid4())
        while True:  # more at once than the server admits: a 503 is sent again, as the page does
            response = api.client.post(
                f"/api/v1/tasks/{tasks[index]['id']}/annotation",
                json={"sigma_index": index},
                headers={**headers[index], "Idempotency-Key": key},
            )
            if response.status_code != 503:
                return response

    with ThreadPoolExecutor(count) as pool:
        responses = list(pool.map(submit, range(count)))
    assert [response.status_code for response in responses] == [201] * count
    with api.seed() as session:
        closed = session.execute(select(Round.state, Round.closed_at).where(Round.id == round_.id)).one()
    assert closed[0] == RoundState.aggregating and closed[1] is not None
    assert queued_tasks(api.settings).count(("rounds.aggregate", [round_.id])) == 1


def test_the_close_check_closes_a_finished_round_once_however_many_run_it(api: Api) -> None:
    """`close_if_complete` from many transactions at once: one conditional UPDATE wins, the rest see
    the round closed (on PostgreSQL they wait for the winner's row lock, then re-check the state)."""
    with api.seed() as session:
        lead, annotator = make_user(session, Role.lead), make_user(session)
        _project, round_, queries = make_annotating_round(session, lead, queries=3, overlap=1)
        for query in queries:
            add_answer(session, query, annotator, 30)
    start = threading.Barrier(8)

    def check(_: int) -> bool:
        start.wait()
        with api.seed() as session:
            return close_if_complete(session, round_.id)

    with ThreadPoolExecutor(8) as pool:
        closed = list(pool.map(check, range(8)))
    assert closed.count(True) == 1
    assert queued_tasks(api.settings).count(("rounds.aggregate", [round_.id])) == 1


def test_a_round_with_an_open_query_is_not_closed_by_the_check(api: Api) -> None:
    with api.seed() as session:
        lead, annotator = make_user(session, Role.lead), make_user(session)
        _project, round_, queries = make_annotating_round(session, lead, queries=2, overlap=1)
        add_answer(session, queries[0], annotator, 30)
    with api.seed() as session:
        assert close_if_complete(session, round_.id) is False
        assert session.scalar(select(Round.state).where(Round.id == round_.id)) == RoundState.annotating


def test_a_finished_round_left_open_is_closed_when_nothing_is_left_to_hand_out(api: Api) -> None:
    """The safety net: had the process died between an answer's commit and its close check, the next
    annotator told "nothing left" (204) closes the round."""
    with api.seed() as session:
        lead, annotator = make_user(session, Role.lead), make_user(session)
        project, round_, queries = make_annotating_round(session, lead, queries=2, overlap=1)
        for query in queries:
            add_answer(session, query, annotator, 30)  # complete, but nobody ran the close check
    response = api.client.post(
        "/api/v1/tasks/next", params={"project_id": project.id}, headers=api.headers_for(annotator)
    )
    assert response.status_code == 204
    with api.seed() as session:
        assert session.scalar(select(Round.state).where(Round.id == round_.id)) == RoundState.aggregating
    assert queued_tasks(api.settings).count(("rounds.aggregate", [round_.id])) == 1
