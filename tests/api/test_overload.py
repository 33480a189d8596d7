"""Graceful under overload: admission control, a bounded wait for connections, clients that go away,
and the answers' invariants with more annotators than the server has connections or admits at once."""

from __future__ import annotations

import asyncio
import itertools
import random
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import APIRouter
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from backend.app import create_app
from backend.deps import OneHop
from backend.errors import ClientGone
from backend.models import Annotation, Assignment, Query, Role, Round, RoundState, User
from backend.settings import Settings
from backend.tasks.progress import RoundProgress
from tests.api.factories import Api, make_annotating_round, make_user
from tests.api.platform_support import queued_tasks
from tests.conftest import DatabaseFactory

# Fewer connections and admissions than annotators: requests are refused (503) and retried.
POOL_SIZE, POOL_OVERFLOW, IN_FLIGHT = 2, 1, 3


@pytest.fixture(scope="module")
def api_settings() -> dict[str, Any]:
    return {
        "database_pool_size": POOL_SIZE,
        "database_pool_overflow": POOL_OVERFLOW,
        "database_pool_timeout": 5.0,
        "max_requests_in_flight": IN_FLIGHT,
    }


class Annotators:
    """Annotators in threads, each retrying a 503 (after a short nap, not Retry-After's full second)
    with the very same request, as the annotation page does."""

    def __init__(self, api: Api) -> None:
        self.api = api
        self.refusals: list[httpx.Response] = []
        self.lock = threading.Lock()

    def post(self, url: str, headers: dict[str, str], **kwargs: Any) -> httpx.Response:
        for _attempt in range(2000):
            response = self.api.client.post(url, headers=headers, **kwargs)
            if response.status_code != 503:
                return response
            with self.lock:
                self.refusals.append(response)
            time.sleep(random.uniform(0.001, 0.02))
        raise AssertionError(f"{url} refused 2000 times")


def test_more_annotators_than_connections_keep_every_invariant(api: Api) -> None:
    """12 annotators on 3 connections and 3 admissions: every query gets exactly k answers, none twice,
    every acknowledged submit is stored under its id, replays are identical, the round closes once."""
    with api.seed() as session:
        lead = make_user(session, Role.lead)
        project, round_, _queries = make_annotating_round(session, lead, queries=15, overlap=2)
        people = [make_user(session, Role.annotator) for _ in range(12)]
    annotators = Annotators(api)
    acknowledged: dict[tuple[int, str], int] = {}
    mismatches: list[str] = []
    unexpected: list[str] = []
    lock = threading.Lock()

    def work(index: int, person: User) -> None:
        headers = api.headers_for(person)
        for step in itertools.count():
            task = annotators.post("/api/v1/tasks/next", headers, params={"project_id": project.id})
            if task.status_code == 204:
                return
            if task.status_code != 200:
                unexpected.append(f"next {task.status_code} {task.text}")
                return
            key = str(uuid.uuid4())
            url = f"/api/v1/tasks/{task.json()['id']}/annotation"
            bodies = []
            for _attempt in range(1 + (index + step) % 2):  # every other submit is sent twice
                answer = annotators.post(
                    url, {**headers, "Idempotency-Key": key}, json={"sigma_index": (7 * index + step) % 91}
                )
                if answer.status_code != 201:
                    unexpected.append(f"submit {answer.status_code} {answer.text}")
                    return
                bodies.append(answer.content)
            with lock:
                acknowledged[(person.id, key)] = int(answer.json()["id"])
                if len(set(bodies)) != 1:
                    mismatches.append(repr(bodies))

    with ThreadPoolExecutor(len(people)) as pool:
        list(pool.map(work, range(len(people)), people))
    assert unexpected == []
    assert mismatches == [], "a replay answered differently"
    assert annotators.refusals, "the test should have pushed the server past its admission bound"
    for refusal in annotators.refusals:
        assert refusal.headers["retry-after"] == str(api.settings.retry_after_seconds)
        assert refusal.json() == {"detail": "The server is too busy right now; try again in a moment."}
    with api.seed() as session:
        queries = session.execute(
            select(Query.id, Query.answer_count, Query.status).where(Query.round_id == round_.id)
        ).all()
        rows = session.execute(
            select(Annotation.id, Annotation.query_id, Annotation.annotator_id, Annotation.idempotency_key)
            .join(Query, Query.id == Annotation.query_id)
            .where(Query.round_id == round_.id)
        ).all()
        state = session.scalar(select(Round.state).where(Round.id == round_.id))
    per_query = Counter(query_id for _id, query_id, _user, _key in rows)
    assert [(count, status, per_query[query_id]) for query_id, count, status in queries] == [
        (2, "complete", 2)
    ] * 15
    assert max(Counter((query_id, user) for _id, query_id, user, _key in rows).values()) == 1
    stored = {(int(user), str(key)): int(answer_id) for answer_id, _q, user, key in rows}
    assert stored == acknowledged, "every acknowledged submit is stored under the id it was told"
    assert state == RoundState.aggregating
    assert queued_tasks(api.settings).count(("rounds.aggregate", [round_.id])) == 1


def test_a_request_over_the_in_flight_bound_is_a_fast_503_with_retry_after(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path,
        database_url=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        max_requests_in_flight=1,
        retry_after_seconds=2,
    )
    app = create_app(settings)
    router = APIRouter()
    entered, release = threading.Event(), threading.Event()

    @router.get("/slow")
    def slow() -> dict[str, bool]:
        entered.set()
        release.wait(10)
        return {"ok": True}

    app.include_router(router)
    with TestClient(app) as client, ThreadPoolExecutor(1) as pool:
        first = pool.submit(client.get, "/slow")
        assert entered.wait(10)
        started = time.perf_counter()
        refused = client.get("/openapi.json")  # any route: the bound is per process, not per route
        elapsed = time.perf_counter() - started
        release.set()
        assert first.result().status_code == 200
        assert client.get("/openapi.json").status_code == 200, "the slot is free again"
    assert refused.status_code == 503
    assert refused.headers["retry-after"] == "2"
    assert refused.json() == {"detail": "The server is too busy right now; try again in a moment."}
    assert elapsed < 0.5, f"a refusal must not wait for anything ({elapsed * 1000:.0f} ms)"


def test_no_connection_in_time_is_a_503_with_retry_after(
    database_factory: DatabaseFactory, tmp_path: Path
) -> None:
    """Every pooled connection held past AQPL_DATABASE_POOL_TIMEOUT: the request is refused, not queued."""
    settings = Settings(
        data_dir=tmp_path,
        database_url=database_factory.create("sqlite"),
        database_pool_size=1,
        database_pool_overflow=0,
        database_pool_timeout=0.2,
    )
    app = create_app(settings)
    headers = {"Authorization": "Bearer not-a-token"}
    with TestClient(app) as client:
        held = app.state.engine.connect()  # the pool's only connection
        try:
            started = time.perf_counter()
            refused = client.post("/api/v1/tasks/next", headers=headers)
            elapsed = time.perf_counter() - started
        finally:
            held.close()
        assert client.post("/api/v1/tasks/next", headers=headers).status_code == 401, "served once free"
    assert refused.status_code == 503
    assert refused.headers["retry-after"] == str(settings.retry_after_seconds)
    assert refused.json() == {"detail": "The server is too busy right now; try again in a moment."}
    assert 0.2 <= elapsed < 2.0


def test_a_client_that_went_away_gets_no_lease_and_commits_nothing(api: Api) -> None:
    """The client closed its connection: the request's unit of work never commits."""
    with api.seed() as session:
        lead = make_user(session, Role.lead)
        project, _round, _queries = make_annotating_round(session, lead, queries=2, overlap=1)
        person = make_user(session, Role.annotator)
    token = api.headers_for(person)["Authorization"]
    messages: list[dict[str, Any]] = []

    async def gone_client() -> None:
        sent = False

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": b"", "more_body": False}
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            messages.append(message)

        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/api/v1/tasks/next",
            "raw_path": b"/api/v1/tasks/next",
            "query_string": f"project_id={project.id}".encode(),
            "root_path": "",
            "headers": [(b"authorization", token.encode()), (b"host", b"testserver")],
            "client": ("127.0.0.1", 1),
            "server": ("testserver", 80),
            "state": {},
        }
        await api.app(scope, receive, send)

    asyncio.run(gone_client())
    assert messages[0]["status"] == 499
    with api.seed() as session:
        leases = session.scalar(select(func.count(Assignment.id)).where(Assignment.annotator_id == person.id))
    assert leases == 0, "a lease for a client that has gone would hold its slot for a lease period"


def test_a_unit_of_work_rolls_back_when_the_client_goes_mid_way(api: Api) -> None:
    hop = OneHop(api.app.state.engine, api.sessions, api.settings)
    name = f"gone-{uuid.uuid4().hex[:8]}"

    def work(hop: OneHop) -> None:
        with hop.unit_of_work() as session:
            make_user(session, Role.annotator, username=name)
            hop.gone.set()  # the disconnect arrives while the work runs

    with pytest.raises(ClientGone):
        hop.run(work)
    with api.seed() as session:
        assert session.scalar(select(User.id).where(User.username == name)) is None


def test_the_round_progress_is_summed_once_a_second_and_counted_forward_between() -> None:
    """`tasks/next` shows the round's progress without scanning every query of the round each time."""
    now = [100.0]
    progress = RoundProgress(refresh_seconds=1.0, clock=lambda: now[0])
    sums = iter([(5, 40), (9, 41)])
    calls: list[int] = []

    def summed() -> tuple[int, int]:
        calls.append(1)
        return next(sums)

    assert progress.get(7, summed) == (5, 40)
    progress.count_answer(7)
    progress.count_answer(7, one_more_needed=True)
    now[0] += 0.9
    assert progress.get(7, summed) == (7, 41), "this process's own answers, counted forward"
    assert len(calls) == 1
    now[0] += 0.2
    assert progress.get(7, summed) == (9, 41), "summed again once stale (other processes' answers)"
    assert len(calls) == 2
