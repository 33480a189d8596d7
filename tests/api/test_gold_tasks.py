"""Gold queries in task distribution, on a real database: who gets one, when, and what an answer does.

The draw is deterministic in the service tests (`next_task(..., draw=...)`); over HTTP it is the real
one, and the tests there assert what holds for every draw.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import event, select, update
from sqlalchemy.orm import Session

from backend.gold.repository import add_gold_queries
from backend.models import (
    Annotation,
    Assignment,
    AssignmentState,
    Example,
    GoldExample,
    GoldSource,
    Project,
    Query,
    Role,
    Round,
    RoundState,
    SigmaChange,
    User,
)
from backend.tasks import repository
from backend.tasks.service import next_task
from tests.api.factories import Api, make_examples, make_project, make_queries, make_round, make_user

LEASE_SECONDS = 600


def seed_gold_round(
    session: Session, *, selected: int = 2, gold: int = 3, gold_rate: float = 0.5, annotators: int = 3
) -> tuple[Round, list[Query], list[Query], list[User]]:
    """An annotating round of `selected` queries (overlap 2) and `gold` gold queries (known σ 10, 20, ...)."""
    lead = make_user(session, Role.lead)
    project = make_project(session, lead, gold_rate=gold_rate)
    examples = make_examples(session, project, selected + gold)
    round_ = make_round(session, project)
    queries = make_queries(session, round_, examples[:selected])
    session.add_all(
        GoldExample(
            project_id=project.id,
            example_id=example.id,
            sigma_index=10 * (i + 1),
            source=GoldSource.typed,
        )
        for i, example in enumerate(examples[selected:])
    )
    session.flush()
    add_gold_queries(session, round_.id, project.id, {query.example_id for query in queries})
    round_.gold_rate = gold_rate
    session.flush()
    gold_queries = session.scalars(
        select(Query).where(Query.round_id == round_.id, Query.status == "gold").order_by(Query.id)
    ).all()
    people = [make_user(session, Role.annotator) for _ in range(annotators)]
    return round_, queries, list(gold_queries), people


def leased_query(session: Session, lease_id: int | None) -> int | None:
    if lease_id is None:
        return None
    return session.scalar(select(Assignment.query_id).where(Assignment.id == lease_id))


def take(
    session: Session, person: User, project_id: int, draw: float, exclude: int | None = None
) -> int | None:
    lease = next_task(session, person.id, LEASE_SECONDS, project_id, exclude, draw=lambda: draw)
    return leased_query(session, lease)


def answered(session: Session, person: User, query_id: int) -> None:
    """What an answer leaves behind, for the candidate statements: an answered assignment."""
    session.execute(
        update(Assignment)
        .where(Assignment.annotator_id == person.id, Assignment.query_id == query_id)
        .values(state=AssignmentState.answered)
    )


def test_the_draw_decides_between_gold_and_the_rounds_queries(db_session: Session) -> None:
    round_, queries, gold, (ann, bob, _cat) = seed_gold_round(db_session)
    assert take(db_session, ann, round_.project_id, draw=0.49) == gold[0].id  # below the rate: gold
    assert take(db_session, bob, round_.project_id, draw=0.5) == queries[0].id  # at the rate: no gold


def test_gold_has_no_slots_and_each_person_answers_each_gold_query_once(db_session: Session) -> None:
    round_, queries, gold, people = seed_gold_round(db_session, gold=2)
    # Three people hold the same gold query at once (a selected query holds two: overlap 2).
    assert [take(db_session, person, round_.project_id, draw=0.0) for person in people] == [gold[0].id] * 3
    ann = people[0]
    answered(db_session, ann, gold[0].id)
    assert take(db_session, ann, round_.project_id, draw=0.0) == gold[1].id
    answered(db_session, ann, gold[1].id)
    # No gold left to Ann: the draw falls through to the round's own queries.
    assert take(db_session, ann, round_.project_id, draw=0.0) == queries[0].id


def test_no_gold_when_nothing_else_is_left(db_session: Session) -> None:
    round_, queries, _gold, (ann, bob, cat) = seed_gold_round(db_session, selected=1)
    # Ann and Bob take the one query's two slots (the draw says no gold).
    assert take(db_session, ann, round_.project_id, draw=0.99) == queries[0].id
    assert take(db_session, bob, round_.project_id, draw=0.99) == queries[0].id
    # Cat would get gold on this draw, but there is no work for her: gold is never all that is left.
    assert take(db_session, cat, round_.project_id, draw=0.0) is None


def test_a_round_without_gold_spends_no_statement_on_it(db_session: Session) -> None:
    round_, queries, gold, (ann, bob, _cat) = seed_gold_round(db_session, gold_rate=0.0)
    assert gold  # gold queries exist, but the round's rate is 0
    executed: list[Any] = []

    def record(_conn: Any, clause: Any, *_args: Any) -> None:
        executed.append(clause)

    connection = db_session.connection()
    event.listen(connection, "before_execute", record)
    try:
        assert take(db_session, ann, round_.project_id, draw=0.0) == queries[0].id
    finally:
        event.remove(connection, "before_execute", record)
    assert executed and repository._GOLD_CANDIDATE not in executed

    db_session.get(Round, round_.id).gold_rate = 0.5  # type: ignore[union-attr]
    db_session.flush()
    event.listen(connection, "before_execute", record)
    try:
        assert take(db_session, bob, round_.project_id, draw=0.0) == gold[0].id
    finally:
        event.remove(connection, "before_execute", record)
    assert repository._GOLD_CANDIDATE in executed


# ---------------------------------------------------------------- over HTTP, with the real draw


@pytest.fixture
def gold_round(api: Api) -> Iterator[tuple[int, int, list[int], list[int], list[User]]]:
    """Ten selected queries and three gold ones at rate 0.5: at least 20 draws, so a run without any
    gold task has probability 2^-20."""
    with api.seed() as session:
        round_, queries, gold, people = seed_gold_round(session, selected=10, gold=3)
        ids = (round_.project_id, round_.id, [q.id for q in queries], [q.id for q in gold], people)
    yield ids


def post_answer(api: Api, headers: dict[str, str], task_id: int, sigma: int) -> Any:
    return api.client.post(
        f"/api/v1/tasks/{task_id}/annotation",
        json={"sigma_index": sigma, "seconds": 2.0},
        headers={**headers, "Idempotency-Key": str(uuid.uuid4())},
    )


def test_people_answer_gold_and_the_round_over_http(
    api: Api, gold_round: tuple[int, int, list[int], list[int], list[User]]
) -> None:
    project_id, round_id, selected, gold, people = gold_round
    gold_tasks: list[dict[str, Any]] = []
    other_tasks: list[dict[str, Any]] = []
    for person in people:
        headers = api.headers_for(person)
        while True:
            response = api.client.post(
                "/api/v1/tasks/next", params={"project_id": project_id}, headers=headers
            )
            if response.status_code == 204:
                break
            assert response.status_code == 200, response.text
            task = response.json()
            is_gold = task["query_id"] in gold
            (gold_tasks if is_gold else other_tasks).append(task)
            assert task["progress"]["total"] == 2 * len(selected)  # gold never counts towards the round
            if is_gold:  # renewing and answering a gold task work like any task's
                renewed = api.client.post(f"/api/v1/tasks/{task['id']}/renew", headers=headers)
                assert renewed.status_code == 200, renewed.text
            assert post_answer(api, headers, task["id"], 33).status_code == 201
            if is_gold:  # once only
                again = post_answer(api, headers, task["id"], 34)
                assert again.status_code == 409 and "already answered" in again.json()["detail"]

    assert gold_tasks, "20+ draws at rate 0.5 served no gold task"
    # A gold task looks like any other: same fields, nothing that says gold.
    assert {tuple(sorted(task)) for task in gold_tasks + other_tasks} == {tuple(sorted(other_tasks[0]))}
    assert all("gold" not in str(task).lower() for task in gold_tasks)
    with api.seed() as session:
        round_ = session.get(Round, round_id)
        assert round_ is not None and round_.state == RoundState.aggregating  # the last answer closed it
        answers_per_query = Counter(session.scalars(select(Annotation.query_id)))
        assert all(answers_per_query[query_id] == 2 for query_id in selected)
        pairs = session.execute(
            select(Annotation.query_id, Annotation.annotator_id).where(Annotation.query_id.in_(gold))
        ).all()
        assert len(pairs) == len(set(pairs)) == len(gold_tasks)  # each person at most once per gold query
        gold_rows = session.scalars(select(Query).where(Query.id.in_(gold))).all()
        assert all(q.status == "gold" and q.answer_count == 0 for q in gold_rows)
        gold_examples = [q.example_id for q in gold_rows]
        assert (
            session.scalars(select(SigmaChange).where(SigmaChange.example_id.in_(gold_examples))).all() == []
        )
        assert all(session.get(Example, e).sigma_index == 30 for e in gold_examples)  # type: ignore[union-attr]
        owner = session.scalar(
            select(User).join(Project, Project.owner_id == User.id).where(Project.id == project_id)
        )
        assert owner is not None
    # The export's answers are the examples' own: gold answers measure people, not the example.
    exported = api.client.get(
        f"/api/v1/projects/{project_id}/export", params={"format": "jsonl"}, headers=api.headers_for(owner)
    )
    rows = {row["example_id"]: row for row in map(json.loads, exported.text.splitlines())}
    assert all(rows[example]["answers"] == [] for example in gold_examples)
    assert all(len(rows[example]["answers"]) == 2 for example in rows if example not in gold_examples)


def test_a_gold_lease_dies_with_its_round(
    api: Api, gold_round: tuple[int, int, list[int], list[int], list[User]]
) -> None:
    project_id, round_id, _selected, gold, people = gold_round
    with api.seed() as session:
        lease = next_task(session, people[0].id, LEASE_SECONDS, project_id, draw=lambda: 0.0)
        assert lease is not None and leased_query(session, lease) == gold[0]
        round_ = session.get(Round, round_id)
        assert round_ is not None
        owner = session.scalar(
            select(User).join(Project, Project.owner_id == User.id).where(Project.id == project_id)
        )
        assert owner is not None
    closed = api.client.post(f"/api/v1/rounds/{round_id}/close", headers=api.headers_for(owner))
    assert closed.status_code == 200, closed.text
    with api.seed() as session:
        assignment = session.get(Assignment, lease)
        assert assignment is not None and assignment.state == AssignmentState.expired
    late = post_answer(api, api.headers_for(people[0]), lease, 40)
    assert late.status_code == 409 and "takes no more answers" in late.json()["detail"]
