"""Restarting the API during a round (politely, and with SIGKILL mid-request): no answer is lost,
none is counted twice, and leases survive: an annotator gets the same task back afterwards.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from backend.auth.scopes import ANNOTATE
from backend.auth.service import create_api_token
from backend.db import create_db_engine, make_session_factory, unit_of_work
from backend.models import Annotation, Query, Role
from tests.api.factories import make_annotating_round, make_user
from tests.conftest import DatabaseFactory
from tests.support import AQPL, REPO_ROOT, aqpl_env, free_port, stop_process, wait_for_http, wait_until

pytestmark = pytest.mark.slow

OVERLAP = 2


@dataclass
class Round:
    database_url: str
    project_id: int
    query_ids: list[int]
    tokens: list[str]  # one bearer token (annotate scope) per annotator


def seed_round(database_url: str, queries: int, annotators: int) -> Round:
    engine = create_db_engine(database_url)
    try:
        with unit_of_work(make_session_factory(engine)) as session:
            lead = make_user(session, Role.lead)
            project, _round, rows = make_annotating_round(session, lead, queries=queries, overlap=OVERLAP)
            tokens = []
            for _ in range(annotators):
                user = make_user(session, Role.annotator)
                tokens.append(create_api_token(session, user, "fault test", [ANNOTATE], None)[1])
            return Round(database_url, project.id, [query.id for query in rows], tokens)
    finally:
        engine.dispose()


def stored_answers(database_url: str) -> list[tuple[int, int, int, str]]:
    """(annotation id, query id, annotator id, idempotency key) of every answer in the database."""
    engine = create_db_engine(database_url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                select(
                    Annotation.id, Annotation.query_id, Annotation.annotator_id, Annotation.idempotency_key
                ).order_by(Annotation.id)
            )
            return [(int(a), int(q), int(u), str(k)) for a, q, u, k in rows]
    finally:
        engine.dispose()


def answer_counts(database_url: str) -> dict[int, int]:
    engine = create_db_engine(database_url)
    try:
        with engine.connect() as connection:
            return {int(q): int(c) for q, c in connection.execute(select(Query.id, Query.answer_count))}
    finally:
        engine.dispose()


class Api:
    """`aqpl serve --no-worker` as a real process that the test stops and starts again on one port."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.env = env
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_dir = log_dir
        self.starts = 0
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.starts += 1
        log = (self.log_dir / f"serve-{self.starts}.log").open("wb")
        self.process = subprocess.Popen(
            [*AQPL, "serve", "--no-worker", f"--port={self.port}"],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO_ROOT,
            start_new_session=True,
        )
        log.close()
        wait_for_http(f"{self.base}/api/v1/health", timeout=60)

    def stop(self, *, kill: bool = False) -> None:
        assert self.process is not None
        if kill:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=20)
        else:
            stop_process(self.process)
        self.process = None

    def logs(self) -> str:
        return "\n".join(
            path.read_text(errors="replace") for path in sorted(self.log_dir.glob("serve-*.log"))
        )


@contextmanager
def running_api(database_url: str, data_dir: Path) -> Iterator[Api]:
    api = Api(aqpl_env(data_dir, database_url=database_url, log_level="warning"), data_dir)
    api.start()
    try:
        yield api
    finally:
        if api.process is not None:
            api.stop()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def next_task(client: httpx.Client, token: str) -> dict[str, object] | None:
    response = client.post("/api/v1/tasks/next", headers=bearer(token))
    if response.status_code == 204:
        return None
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


def submit(client: httpx.Client, token: str, task_id: object, key: str, sigma: int = 40) -> httpx.Response:
    return client.post(
        f"/api/v1/tasks/{task_id}/annotation",
        json={"sigma_index": sigma, "seconds": 2.0},
        headers={**bearer(token), "Idempotency-Key": key},
    )


def test_a_restart_keeps_every_answer_and_every_lease(
    database_factory: DatabaseFactory, database_kind: str, tmp_path: Path
) -> None:
    seeded = seed_round(database_factory.create(database_kind), queries=4, annotators=3)
    alice, bob, carol = seeded.tokens
    with running_api(seeded.database_url, tmp_path) as api:
        with httpx.Client(base_url=api.base, timeout=30) as client:
            answered = {}
            for token in (alice, bob):
                task = next_task(client, token)
                assert task is not None
                response = submit(client, token, task["id"], key=f"first-{token[:6]}")
                assert response.status_code == 201, response.text
                answered[token] = response.json()
            held = next_task(client, carol)  # a lease carol keeps across the restart, unanswered
            assert held is not None
        before = stored_answers(seeded.database_url)
        api.stop()
        api.start()
        with httpx.Client(base_url=api.base, timeout=30) as client:
            assert stored_answers(seeded.database_url) == before
            assert next_task(client, carol) == held  # same assignment, same expiry
            for token, first in answered.items():
                replay = submit(client, token, first["task_id"], key=f"first-{token[:6]}")
                assert replay.status_code == 201 and replay.json() == first  # the same answer, not a new one
            response = submit(client, carol, held["id"], key="carol-after-restart")
            assert response.status_code == 201, response.text
            assert next_task(client, carol) != held
    assert len(stored_answers(seeded.database_url)) == 3
    assert "Traceback" not in api.logs()


def test_a_killed_api_loses_no_acknowledged_answer_and_counts_none_twice(
    database_factory: DatabaseFactory, database_kind: str, tmp_path: Path
) -> None:
    """SIGKILL while annotators submit; they retry with the same keys once it is back."""
    seeded = seed_round(database_factory.create(database_kind), queries=12, annotators=4)
    acknowledged: dict[str, int] = {}  # idempotency key -> annotation id, from 201 responses
    pending: dict[str, tuple[str, object]] = {}  # key -> (token, task id) of submits without an answer
    unexpected: list[str] = []  # a thread's failed assertion would vanish with it: collect instead
    lock = threading.Lock()
    stop = threading.Event()

    def annotate(api: Api, token: str) -> None:
        with httpx.Client(base_url=api.base, timeout=10) as client:
            for _ in range(100):  # bounded: far more than the queries this annotator can get
                if stop.is_set():
                    return
                try:
                    task = next_task(client, token)
                    if task is None:
                        return
                    key = str(uuid.uuid4())
                    with lock:
                        pending[key] = (token, task["id"])
                    response = submit(client, token, task["id"], key)
                except httpx.TransportError:
                    return  # the server died under us: what was acknowledged is checked afterwards
                with lock:
                    if response.status_code != 201:
                        unexpected.append(f"{response.status_code} {response.text}")
                        return
                    acknowledged[key] = int(response.json()["id"])
                    del pending[key]

    def annotate_in_thread(api: Api, token: str) -> None:
        try:
            annotate(api, token)
        except Exception as error:  # a failure in a thread is reported by the main thread
            unexpected.append(repr(error))

    with running_api(seeded.database_url, tmp_path) as api:
        threads = [threading.Thread(target=annotate_in_thread, args=(api, token)) for token in seeded.tokens]
        for thread in threads:
            thread.start()
        wait_until_answers(seeded.database_url, at_least=6)
        api.stop(kill=True)
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
        stored = {key: annotation for annotation, _q, _u, key in stored_answers(seeded.database_url)}
        assert acknowledged and set(acknowledged.items()) <= set(stored.items())  # nothing 2xx is lost
        api.start()
        with httpx.Client(base_url=api.base, timeout=30) as client:
            for key, (token, task_id) in pending.items():  # retries of the submits cut off by the kill
                response = submit(client, token, task_id, key)
                assert response.status_code == 201, response.text
                if key in stored:
                    assert response.json()["id"] == stored[key]  # it had committed: the replay returns it
            stop.clear()
            for token in seeded.tokens:  # then everyone finishes the round
                annotate(api, token)
    assert unexpected == []
    answers = stored_answers(seeded.database_url)
    pairs = [(query, annotator) for _a, query, annotator, _k in answers]
    assert len(pairs) == len(set(pairs))  # no query answered twice by one annotator
    counts = answer_counts(seeded.database_url)
    assert counts == {query_id: OVERLAP for query_id in seeded.query_ids}
    assert len(answers) == OVERLAP * len(seeded.query_ids)  # answer_count agrees with the rows


def wait_until_answers(database_url: str, at_least: int) -> None:
    wait_until(
        lambda: len(stored_answers(database_url)) >= at_least, timeout=60, interval=0.05, message="answers"
    )
