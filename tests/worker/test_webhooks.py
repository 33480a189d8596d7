"""Webhooks end to end: events from the round lifecycle reach a real HTTP receiver through a real
worker process, signed per Standard Webhooks; a 500 is retried with backoff; a receiver that stays
down is given up after AQPL_WEBHOOK_MAX_ATTEMPTS; a private target is refused at delivery time.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from backend.models import Role, RoundState
from backend.rounds import lifecycle as round_lifecycle
from backend.settings import Settings
from backend.webhooks import events
from backend.webhooks.service import new_secret
from tests.api.factories import Api, make_project, make_round, new_user, running_api
from tests.conftest import DatabaseFactory
from tests.support import aqpl_env, aqpl_process, wait_until
from worker.jobs.webhooks import Attempt, send


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A threaded HTTP server on 127.0.0.1: /flaky answers 500 to a message's first attempt and 200
    to the next; /down always answers 500; anything else 200."""

    port: int = 0
    requests: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def at(self, path: str) -> list[Received]:
        with self.lock:
            return [request for request in self.requests if request.path == path]

    def status_for(self, request: Received) -> int:
        with self.lock:
            seen = [
                r for r in self.requests if r.headers.get("webhook-id") == request.headers.get("webhook-id")
            ]
            self.requests.append(request)
        if request.path == "/down":
            return 500
        if request.path == "/flaky" and not seen:
            return 500
        return 200


@contextmanager
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # http.server's name
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            request = Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
            self.send_response(state.status_for(request))
            self.end_headers()

        def log_message(self, *_: Any) -> None:  # quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def test_a_private_target_is_refused_at_delivery_time() -> None:
    """The DNS-rebinding guard: a target checked when it was registered is checked again on send."""
    with receiver() as hooks:
        attempt = Attempt(hooks.url("/hook"), new_secret(), "msg_test", {"type": "round.failed"}, 1)
        refused = send(attempt, Settings(webhook_allow_private=False))
        allowed = send(attempt, Settings(webhook_allow_private=True))
    assert refused.status_code is None and refused.error is not None
    assert "AQPL_WEBHOOK_ALLOW_PRIVATE" in refused.error
    assert allowed.delivered and allowed.status_code == 200
    assert len(hooks.requests) == 1  # only the allowed attempt reached the receiver


def _register(api: Api, headers: dict[str, str], project_id: int, url: str, event_names: list[str]) -> Any:
    response = api.client.post(
        f"/api/v1/projects/{project_id}/webhooks", json={"url": url, "events": event_names}, headers=headers
    )
    assert response.status_code == 201, response.text
    return response.json()


@pytest.mark.slow
def test_events_reach_a_receiver_signed_and_retried(
    database_factory: DatabaseFactory, database_kind: str, redis_url: str, tmp_path: Path
) -> None:
    database_url = database_factory.create(database_kind)
    options = {
        "database_url": database_url,
        "broker_url": redis_url,
        "queue": f"test-{uuid.uuid4().hex[:8]}",
        "device": "cpu",
        "webhook_allow_private": "true",
        "webhook_backoff_seconds": "0.5",  # retries at 0.5 s, 1 s: the test waits seconds, not minutes
        "webhook_max_attempts": "3",
    }
    env = aqpl_env(tmp_path / "data", **options)
    worker_log = tmp_path / "worker.log"
    app_options = {key: value for key, value in options.items() if key != "database_url"}
    with (
        receiver() as hooks,
        running_api(database_url, tmp_path / "data", **app_options) as api,
        aqpl_process(["worker", "--concurrency=1", "--pool=solo"], env, worker_log),
    ):
        lead = new_user(api, Role.lead)
        headers = api.headers_for(lead)
        with api.seed() as session:
            project = make_project(session, lead)
        flaky = _register(api, headers, project.id, hooks.url("/flaky"), list(events.EVENTS))
        down = _register(api, headers, project.id, hooks.url("/down"), ["round.failed"])

        with api.seed() as session:
            scoring = make_round(session, project, 1, RoundState.scoring)
            round_lifecycle.move(session, scoring, RoundState.annotating)
            evaluating = make_round(session, project, 2, RoundState.evaluating)
            round_lifecycle.move(session, evaluating, RoundState.published)
            training = make_round(session, project, 3, RoundState.training)
            round_lifecycle.fail(session, training, "out of memory")
            events.emit(session, project.id, events.CHECKPOINT_PUBLISHED, {"round_id": evaluating.id})

        def log(webhook: Any) -> list[Any]:
            response = api.client.get(f"/api/v1/webhooks/{webhook['id']}/deliveries", headers=headers)
            assert response.status_code == 200
            return list(response.json())

        def settled() -> bool:
            entries = log(flaky) + log(down)
            return len(entries) == 5 and all(entry["status"] != "pending" for entry in entries)

        try:
            wait_until(settled, timeout=90, message="every delivery delivered or given up")
        except AssertionError:
            raise AssertionError(f"{log(flaky)}\n{log(down)}\n{worker_log.read_text()[-4000:]}") from None
        flaky_log, down_log = log(flaky), log(down)

    # Every event came twice to /flaky (500, then 200 on the retry), with the same webhook-id.
    by_event = {entry["event"]: entry for entry in flaky_log}
    assert set(by_event) == set(events.EVENTS)
    for entry in by_event.values():
        assert entry["status"] == "delivered" and entry["attempts"] == 2
        assert [attempt["status_code"] for attempt in entry["history"]] == [500, 200]
        assert entry["last_status_code"] == 200 and entry["error"] is None
    received = hooks.at("/flaky")
    assert len(received) == 8
    verifier, wrong = Webhook(flaky["secret"]), Webhook(new_secret())
    bodies: dict[str, list[Any]] = {}
    for request in received:
        payload = verifier.verify(request.body, request.headers)
        with pytest.raises(WebhookVerificationError):
            wrong.verify(request.body, request.headers)
        assert request.headers["webhook-id"].startswith("msg_")
        bodies.setdefault(request.headers["webhook-id"], []).append(payload)
    assert all(len(attempts) == 2 and attempts[0] == attempts[1] for attempts in bodies.values())
    by_type = {attempts[0]["type"]: attempts[0] for attempts in bodies.values()}
    assert by_type["round.annotating"]["data"]["round_number"] == 1
    assert by_type["round.published"]["data"]["round_number"] == 2
    assert by_type["round.failed"]["data"]["error"] == "out of memory"
    assert all(payload["data"]["project_id"] == project.id for payload in by_type.values())

    # /down answered 500 three times: given up after AQPL_WEBHOOK_MAX_ATTEMPTS, each attempt logged.
    assert len(hooks.at("/down")) == 3
    (given_up,) = down_log
    assert given_up["status"] == "failed" and given_up["attempts"] == 3
    assert [attempt["status_code"] for attempt in given_up["history"]] == [500, 500, 500]
    assert given_up["error"] == "the receiver answered 500"


@pytest.mark.slow
def test_a_real_round_sends_its_events(database_factory: DatabaseFactory, tmp_path: Path) -> None:
    """Through the real jobs: scoring's hand-over (annotating), evaluation's checkpoint row and publish."""
    from tests.worker.test_round_cycle import answer_every_task, create_project, platform

    with (
        receiver() as hooks,
        platform(tmp_path, database_factory.create("sqlite"), webhook_allow_private="true") as platform_,
    ):
        project_id, _mnist = create_project(platform_, auto_close=True, open_first_round=False)
        platform_.wait_for(f"/api/v1/projects/{project_id}", "status", "ready")
        response = platform_.client.post(
            f"/api/v1/projects/{project_id}/webhooks",
            json={"url": hooks.url("/round"), "events": list(events.EVENTS)},
            headers=platform_.lead,
        )
        assert response.status_code == 201, response.text
        webhook = response.json()
        started = platform_.client.post(f"/api/v1/projects/{project_id}/rounds", headers=platform_.lead)
        assert started.status_code == 201, started.text
        round_id = started.json()["id"]
        platform_.wait_for(f"/api/v1/rounds/{round_id}", "state", "annotating")
        answer_every_task(platform_, project_id)
        round_ = platform_.wait_for(f"/api/v1/rounds/{round_id}", "state", "published")
        log = f"/api/v1/webhooks/{webhook['id']}/deliveries"

        def delivered() -> bool:  # the log is written once the receiver has answered
            entries = platform_.get(log)
            return len(entries) == 3 and all(entry["status"] == "delivered" for entry in entries)

        wait_until(delivered, timeout=30, message="three events delivered")
        deliveries = platform_.get(log)

    verifier = Webhook(webhook["secret"])
    payloads = [verifier.verify(request.body, request.headers) for request in hooks.at("/round")]
    assert sorted(payload["type"] for payload in payloads) == [
        "checkpoint.published",
        "round.annotating",
        "round.published",
    ]
    by_type = {payload["type"]: payload["data"] for payload in payloads}
    assert by_type["round.annotating"] == {
        "project_id": project_id,
        "round_id": round_id,
        "round_number": 1,
        "state": "annotating",
    }
    assert by_type["checkpoint.published"]["checkpoint_id"] == round_["checkpoint_id"]
    assert by_type["checkpoint.published"]["round_id"] == round_id
    assert {(entry["event"], entry["status"], entry["last_status_code"]) for entry in deliveries} == {
        ("round.annotating", "delivered", 200),
        ("round.published", "delivered", 200),
        ("checkpoint.published", "delivered", 200),
    }
