"""`aqpl serve --workers 2`: several API processes share one socket and still answer promptly.

uvicorn binds a shared socket with protocol 0, and asyncio then leaves TCP_NODELAY off on the
connections it accepts: each response (headers, then body) waited ~40 ms for the client's delayed
ACK. `aqpl serve` rebinds it as TCP; this test would see the 40 ms stall come back.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import httpx
import pytest

from tests.support import aqpl_env, aqpl_process, free_port, run_aqpl, wait_for_http

pytestmark = pytest.mark.slow

# Linux's delayed ACK is at least 40 ms: a median above this is the stall, not a slow machine.
STALL_MS = 30.0


def test_two_api_processes_answer_small_requests_without_a_nagle_stall(tmp_path: Path) -> None:
    env = aqpl_env(tmp_path, log_level="warning")
    assert run_aqpl(["db", "upgrade"], env).returncode == 0
    port = free_port()
    with aqpl_process(["serve", "--no-worker", "--workers=2", f"--port={port}"], env, tmp_path / "serve.log"):
        wait_for_http(f"http://127.0.0.1:{port}/openapi.json")
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            timings = []
            for _ in range(30):  # one keep-alive connection, the way a browser tab talks to the API
                started = time.perf_counter()
                response = client.get("/api/v1/auth/me")
                timings.append((time.perf_counter() - started) * 1000)
                assert response.status_code == 401
    assert statistics.median(timings) < STALL_MS, sorted(timings)
