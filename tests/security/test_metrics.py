"""GET /metrics: only for a metrics:read token, labels from fixed sets, one sum over every API process.

The review found /metrics open to anyone, and its method label unbounded: 300 requests with invented
methods grew it from 78 KB to 943 KB. With `aqpl serve --workers 2` each scrape showed the counters
of whichever process answered it, so they jumped up and down between scrapes.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from backend.models import Role
from tests.api.factories import PASSWORD, Api, make_user, running_api
from tests.conftest import DatabaseFactory
from tests.support import aqpl_env, aqpl_process, free_port, run_aqpl, wait_for_http, wait_until

HEALTH = "/api/v1/health"


@pytest.fixture
def api(database_factory: DatabaseFactory, database_kind: str, tmp_path: Path) -> Iterator[Api]:
    with running_api(database_factory.create(database_kind), tmp_path) as api:
        yield api


def samples(text: str, name: str) -> dict[frozenset[tuple[str, str]], float]:
    """Every sample of metric `name` in the exposition text, by its label set."""
    found = {}
    for line in text.splitlines():
        match = re.fullmatch(rf"{re.escape(name)}(\{{.*\}})? (\S+)", line)
        if match:
            found[frozenset(re.findall(r'(\w+)="([^"]*)"', match.group(1) or ""))] = float(match.group(2))
    return found


def requests_to(text: str, route: str) -> float:
    return sum(
        value
        for labels, value in samples(text, "aqpl_http_requests_total").items()
        if ("route", route) in labels
    )


def test_metrics_need_a_token_with_the_metrics_read_scope(api: Api) -> None:
    with api.seed() as session:
        admin, lead, annotator = (
            make_user(session, Role.admin),
            make_user(session, Role.lead),
            make_user(session),
        )
    assert api.client.get("/metrics").status_code == 401
    assert api.client.get("/metrics", headers={"Authorization": "Bearer aqpl_nonsense"}).status_code == 401
    assert api.client.get("/metrics", headers=api.headers_for(lead)).status_code == 403
    assert api.client.get("/metrics", headers=api.headers_for(annotator)).status_code == 403
    assert api.client.get("/metrics", headers=api.headers_for(admin)).status_code == 200

    # A scraper's own token: metrics:read and nothing else; an admin may make one, a lead may not.
    created = api.client.post(
        "/api/v1/tokens",
        headers=api.headers_for(admin),
        json={"name": "prometheus", "scopes": ["metrics:read"]},
    )
    assert created.status_code == 201, created.text
    scraper = {"Authorization": f"Bearer {created.json()['token']}"}
    response = api.client.get("/metrics", headers=scraper)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert api.client.get("/api/v1/projects", headers=scraper).status_code == 403  # it reads metrics only
    refused = api.client.post(
        "/api/v1/tokens", headers=api.headers_for(lead), json={"name": "p", "scopes": ["metrics:read"]}
    )
    assert refused.status_code == 403


def test_invented_methods_and_paths_do_not_grow_the_exposition(api: Api) -> None:
    with api.seed() as session:
        admin = make_user(session, Role.admin)
    headers = api.headers_for(admin)
    for method in ("BREW", "PROPFIND"):  # the first invented method and path make their one series
        api.client.request(method, "/api/v1/projects")
        api.client.request(method, f"/probe/{method}")
    api.client.get("/static/nothing.js")
    api.client.get("/metrics", headers=headers)  # and the scrape its own
    before = api.client.get("/metrics", headers=headers).text

    for i in range(300):
        api.client.request(f"X{i}QZ", "/api/v1/projects")
        api.client.request(f"M{i}", f"/api/v1/projects/{i}/x{i}")
        api.client.get(f"/static/nothing-{i}.js")
    after = api.client.get("/metrics", headers=headers).text

    series_before = set(samples(before, "aqpl_http_requests_total"))
    series_after = set(samples(after, "aqpl_http_requests_total"))
    assert series_after == series_before
    assert len(after) < len(before) + 1000, f"{len(before)} -> {len(after)} bytes"
    labels = {dict(labels)["method"] for labels in series_after}
    assert labels <= {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "other"}
    for labels in series_after:
        assert dict(labels)["status"] in {"1xx", "2xx", "3xx", "4xx", "5xx"}
        assert dict(labels)["route"].startswith(("/", "unmatched"))
        assert "x1" not in dict(labels)["route"] and "nothing" not in dict(labels)["route"]


def _admin_token(base_url: str, username: str) -> str:
    response = httpx.post(f"{base_url}/api/v1/auth/login", json={"username": username, "password": PASSWORD})
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


def _scrape(base_url: str, token: str) -> str:
    # A new connection each time: the kernel hands it to either API process.
    response = httpx.get(f"{base_url}/metrics", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert response.status_code == 200, response.text
    return response.text


def _pids_with(folder: Path, prefix: str) -> set[int]:
    return {int(path.stem.rsplit("_", 1)[1]) for path in folder.glob(f"{prefix}_*.db")}


def _health_requests_by_process(folder: Path, scratch: Path) -> dict[int, float]:
    """What each API process counted itself, read from its own counter file."""
    counts = {}
    for pid in _pids_with(folder, "counter"):
        alone = scratch / str(pid)
        alone.mkdir(exist_ok=True)
        shutil.copyfile(folder / f"counter_{pid}.db", alone / f"counter_{pid}.db")
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=str(alone))
        counts[pid] = requests_to(generate_latest(registry).decode(), HEALTH)
    return counts


@pytest.mark.slow
def test_two_api_processes_report_one_sum_that_never_goes_backwards(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    env = aqpl_env(data_dir, log_level="warning")
    assert run_aqpl(["db", "upgrade"], env).returncode == 0
    created = run_aqpl(
        ["users", "create", "root", "--role=admin", "--password-stdin"], env, input_text=PASSWORD
    )
    assert created.returncode == 0, created.stderr
    folder = data_dir / "metrics"
    stale = folder / "counter_999999.db"  # left by an earlier serve: cleared at start
    folder.mkdir()
    stale.write_bytes(b"stale")
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    with aqpl_process(["serve", "--no-worker", "--workers=2", f"--port={port}"], env, tmp_path / "serve.log"):
        wait_for_http(f"{base_url}/openapi.json")
        assert not stale.exists()
        token = _admin_token(base_url, "root")
        sent = 0
        # New connections until both processes have answered some (each counts into its own file).
        while sent < 40 or len([n for n in _health_requests_by_process(folder, tmp_path).values() if n]) < 2:
            assert httpx.get(f"{base_url}{HEALTH}").status_code == 200
            sent += 1
            assert sent < 3000, "one API process answered every connection"
        own = _health_requests_by_process(folder, tmp_path)
        assert sum(own.values()) == sent and max(own.values()) < sent
        counted = [_scrape(base_url, token) for _ in range(12)]
        assert [requests_to(text, HEALTH) for text in counted] == [sent] * 12  # whichever process answered
        scrapes = [requests_to(text, "/metrics") for text in counted]
        assert scrapes == sorted(scrapes) and scrapes[-1] >= 11

        # One API process dies (uvicorn starts another): what it counted stays in the sum.
        victim = min(pid for pid, count in own.items() if count)
        assert (folder / f"gauge_livesum_{victim}.db").exists()
        os.kill(victim, signal.SIGKILL)
        wait_until(lambda: not _exists(victim), timeout=20, message="uvicorn to reap the killed API process")
        wait_for_http(f"{base_url}/openapi.json")
        after = [_scrape(base_url, token) for _ in range(6)]
        assert [requests_to(text, HEALTH) for text in after] == [sent] * 6
        later_scrapes = [requests_to(text, "/metrics") for text in after]
        assert later_scrapes == sorted(later_scrapes) and later_scrapes[0] > scrapes[-1]
        # Its requests in flight left the gauge: the dead process was marked at the next scrape.
        assert not (folder / f"gauge_livesum_{victim}.db").exists()
        assert list(samples(after[-1], "aqpl_http_requests_in_flight").values()) == [1.0]  # this scrape


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
