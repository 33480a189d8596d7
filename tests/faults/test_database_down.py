"""The database goes away and comes back: health says so (503), requests get 503 with a message a
person can act on (never a 500 or a hang), and service resumes by itself once it is back.

The API (`aqpl serve --no-worker`, a real process) reaches PostgreSQL through a TCP proxy run by
the test; stopping the proxy (and cutting its open connections) makes the database unreachable.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import make_url

from backend.auth.scopes import ANNOTATE
from backend.auth.service import create_api_token
from backend.db import create_db_engine, make_session_factory, unit_of_work
from backend.models import Role
from tests.api.factories import make_annotating_round, make_user
from tests.conftest import DatabaseFactory
from tests.support import aqpl_env, aqpl_process, free_port, wait_for_http, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

DOWN_MESSAGE = "The database is unreachable right now; try again in a moment."


class TcpProxy:
    """Forwards a local port to (host, port); `stop` refuses new connections and cuts open ones."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._connections: set[socket.socket] = set()
        self._lock = threading.Lock()

    def start(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def stop(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        with self._lock:
            connections, self._connections = self._connections, set()
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
            connection.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # stopped
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._connections.update((client, upstream))
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)


def test_health_and_requests_say_503_while_the_database_is_away_and_recover(
    database_factory: DatabaseFactory, tmp_path: Path
) -> None:
    direct_url = database_factory.create("postgresql")  # skips without AQPL_TEST_DATABASE_URL
    engine = create_db_engine(direct_url)
    try:
        with unit_of_work(make_session_factory(engine)) as session:
            lead = make_user(session, Role.lead)
            project, _round, _queries = make_annotating_round(session, lead, queries=3)
            annotator = make_user(session, Role.annotator)
            _, token = create_api_token(session, annotator, "faults", [ANNOTATE], None)
    finally:
        engine.dispose()
    target = make_url(direct_url)
    proxy = TcpProxy(target.host or "127.0.0.1", target.port or 5432)
    proxy.start()
    proxied_url = target.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    headers = {"Authorization": f"Bearer {token}"}
    port = free_port()
    env = aqpl_env(tmp_path, database_url=proxied_url, log_level="warning")
    try:
        with aqpl_process(["serve", "--no-worker", f"--port={port}"], env, tmp_path / "serve.log"):
            base = f"http://127.0.0.1:{port}"
            wait_for_http(f"{base}/api/v1/health")
            with httpx.Client(base_url=base, timeout=30) as client:
                health = client.get("/api/v1/health")
                assert health.status_code == 200, health.text
                assert health.json()["database"]["ok"] is True
                task = client.post("/api/v1/tasks/next", headers=headers)
                assert task.status_code == 200, task.text

                proxy.stop()
                started = time.monotonic()
                health = client.get("/api/v1/health")
                assert health.status_code == 503, health.text
                assert health.json()["status"] == "degraded"
                assert health.json()["database"]["ok"] is False
                requests = [
                    client.get("/api/v1/auth/me", headers=headers),
                    client.post("/api/v1/tasks/next", headers=headers),
                    client.post(
                        f"/api/v1/tasks/{task.json()['id']}/annotation",
                        json={"sigma_index": 40},
                        headers={**headers, "Idempotency-Key": "while-down"},
                    ),
                    client.post("/api/v1/auth/login", json={"username": "x", "password": "y" * 8}),
                ]
                for response in requests:
                    assert response.status_code == 503, (response.request.url, response.text)
                    assert response.json() == {"detail": DOWN_MESSAGE}
                    assert proxied_url.split("@")[-1] not in response.text  # no host or driver detail
                assert time.monotonic() - started < 20  # answered promptly, not after long hangs

                proxy.start()

                def healthy() -> bool:
                    return client.get("/api/v1/health").status_code == 200

                wait_until(healthy, timeout=30, message="health to recover")
                again = client.post("/api/v1/tasks/next", headers=headers)
                assert again.status_code == 200, again.text
                assert again.json()["id"] == task.json()["id"]  # the lease was kept meanwhile
                answer = client.post(
                    f"/api/v1/tasks/{task.json()['id']}/annotation",
                    json={"sigma_index": 40},
                    headers={**headers, "Idempotency-Key": "after-recovery"},
                )
                assert answer.status_code == 201, answer.text
                assert project.id == again.json()["project_id"]
    finally:
        proxy.stop()
    log = (tmp_path / "serve.log").read_text(errors="replace")
    assert "Traceback" not in log, log[-3000:]


def test_an_exhausted_connection_pool_is_a_503_not_a_500(tmp_path: Path) -> None:
    """Overload (every pooled connection busy past the pool's timeout) tells clients to come back."""
    from fastapi import APIRouter
    from fastapi.testclient import TestClient
    from sqlalchemy.exc import TimeoutError as PoolTimeout

    from backend.app import create_app
    from backend.settings import Settings

    settings = Settings(
        data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'db.sqlite3'}", retry_after_seconds=3
    )
    app = create_app(settings)
    router = APIRouter()

    @router.get("/busy")
    def busy() -> None:
        raise PoolTimeout("QueuePool limit of size 10 overflow 20 reached, connection timed out")

    app.include_router(router)
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/busy")
    assert response.status_code == 503
    assert response.headers["retry-after"] == "3"  # AQPL_RETRY_AFTER_SECONDS
    assert response.json() == {"detail": "The server is too busy right now; try again in a moment."}
    assert "QueuePool" not in response.text
