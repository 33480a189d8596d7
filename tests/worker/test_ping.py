"""The Celery wiring, proven with real processes: `aqpl worker` / `aqpl serve` and `aqpl system ping`."""

import uuid
from pathlib import Path

import httpx
import pytest

from tests.conftest import DatabaseFactory
from tests.support import aqpl_env, aqpl_process, free_port, run_aqpl, wait_for_http

pytestmark = pytest.mark.slow


def test_ping_through_redis_with_a_separate_worker(
    database_factory: DatabaseFactory, database_kind: str, redis_url: str, tmp_path: Path
) -> None:
    """Distributed mode: Redis broker, a worker process, the ping written to the real database."""
    env = aqpl_env(
        tmp_path,
        database_url=database_factory.create(database_kind),
        broker_url=redis_url,
        queue=f"test-{uuid.uuid4().hex[:8]}",
    )
    with aqpl_process(["worker", "--concurrency=1"], env, tmp_path / "worker.log") as worker:
        result = run_aqpl(["system", "ping", "--timeout=60"], env)
        assert worker.poll() is None, (tmp_path / "worker.log").read_text()
    assert result.returncode == 0, result.stderr + (tmp_path / "worker.log").read_text()
    assert result.stdout.startswith("pong from worker on ")


def test_ping_fails_clearly_without_a_worker(
    database_factory: DatabaseFactory, redis_url: str, tmp_path: Path
) -> None:
    env = aqpl_env(
        tmp_path,
        database_url=database_factory.create("sqlite"),
        broker_url=redis_url,
        queue=f"test-{uuid.uuid4().hex[:8]}",
    )
    result = run_aqpl(["system", "ping", "--timeout=2"], env)
    assert result.returncode == 2
    assert "no worker answered within 2 s" in result.stderr


def test_embedded_serve_runs_api_and_worker_with_no_server(tmp_path: Path) -> None:
    """The one-machine default: SQLite file and filesystem broker under the data dir."""
    env = aqpl_env(tmp_path)
    assert run_aqpl(["db", "upgrade"], env).returncode == 0
    port = free_port()
    with aqpl_process(["serve", f"--port={port}"], env, tmp_path / "serve.log"):
        wait_for_http(f"http://127.0.0.1:{port}/api/v1/health")
        health = httpx.get(f"http://127.0.0.1:{port}/api/v1/health").json()
        result = run_aqpl(["system", "ping", "--timeout=60"], env)
    assert health["database"]["ok"] and health["database"]["dialect"] == "sqlite"
    assert health["broker"] == {"ok": True, "transport": "filesystem"}
    assert result.returncode == 0, result.stderr + (tmp_path / "serve.log").read_text()
    assert "pong from worker" in result.stdout
    assert (tmp_path / "aqpl.sqlite3").exists()
