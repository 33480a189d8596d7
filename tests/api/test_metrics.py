"""Per-project metrics (accuracy by round) and the Prometheus text at GET /metrics."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from backend.metrics.service import queue_depth
from backend.models import ProjectStatus, Role, RoundState
from backend.settings import Settings
from tests.api.factories import Api, make_queries, make_round, make_user
from tests.api.platform_support import make_checkpoint, make_ready_project
from tests.support import free_port


@pytest.fixture
def api(fresh_api: Api) -> Api:
    return fresh_api


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample of the exposition text (labels in any order, all must match)."""
    for line in text.splitlines():
        match = re.fullmatch(rf"{re.escape(name)}(\{{.*\}})? (\S+)", line)
        if not match:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1) or ""))
        if all(found.get(key) == value for key, value in labels.items()):
            return float(match.group(2))
    raise AssertionError(f"no sample {name} {labels} in:\n{text}")


def test_project_metrics_list_every_round_with_cumulative_queries(api: Api) -> None:
    with api.seed() as session:
        lead = make_user(session, Role.lead)
        project, examples = make_ready_project(session, api.settings, lead, num_train=8)
        make_checkpoint(
            session, api.settings, project, 0, metrics={"clean": 0.8, "gaussian": 0.5, "corruptions": 0.6}
        )
        for number, queried in ((1, examples[:3]), (2, examples[3:5])):
            round_ = make_round(session, project, number, RoundState.published)
            make_queries(session, round_, queried)
            round_.sigma_histogram_before = [0] * 30 + [8] + [0] * 60
            round_.sigma_histogram_after = [0] * 30 + [8 - len(queried)] + [len(queried)] + [0] * 59
            round_.krippendorff_alpha = 0.5 * number
            make_checkpoint(
                session, api.settings, project, number, round_, {"clean": 0.8 + number / 100, "gaussian": 0.6}
            )
        make_round(session, project, 3, RoundState.annotating)
    body = api.client.get(f"/api/v1/projects/{project.id}/metrics", headers=api.headers_for(lead)).json()
    rows = body["rounds"]
    assert [row["round"] for row in rows] == [0, 1, 2, 3]
    assert [row["queries"] for row in rows] == [0, 3, 5, 5]
    assert rows[0] == {
        "round": 0,
        "queries": 0,
        "clean": 0.8,
        "gaussian": 0.5,
        "corruptions": 0.6,
        "sigma_histogram_before": None,
        "sigma_histogram_after": None,
        "krippendorff_alpha": None,
    }
    assert rows[1]["clean"] == pytest.approx(0.81) and rows[1]["corruptions"] is None
    assert rows[2]["krippendorff_alpha"] == 1.0 and rows[2]["sigma_histogram_after"][31] == 2
    assert rows[3]["clean"] is None  # still annotating: no checkpoint yet


def test_prometheus_text_counts_requests_rounds_and_queue(api: Api) -> None:
    with api.seed() as session:
        lead = make_user(session, Role.lead)
        project, _ = make_ready_project(session, api.settings, lead)
        other, _ = make_ready_project(session, api.settings, lead)
        other.status = ProjectStatus.failed
        published = make_round(session, project, 1, RoundState.published)
        started = datetime(2026, 1, 1, tzinfo=UTC)
        published.created_at = started
        published.annotating_at = started + timedelta(seconds=30)
        published.closed_at = started + timedelta(seconds=330)
        published.published_at = started + timedelta(seconds=390)
        make_round(session, other, 1, RoundState.failed)
    headers = api.headers_for(lead)
    for _ in range(3):
        assert api.client.get(f"/api/v1/projects/{project.id}", headers=headers).status_code == 200
    assert api.client.get("/api/v1/projects/999999", headers=headers).status_code == 404
    assert api.client.get("/no/such/page").status_code == 404
    api.client.post(f"/api/v1/projects/{project.id}/rounds", headers=headers)  # queues one scoring task

    with api.seed() as session:
        admin = make_user(session, Role.admin)  # the role that holds metrics:read
    response = api.client.get("/metrics", headers=api.headers_for(admin))
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    text = response.text
    route = "/api/v1/projects/{project_id}"
    assert sample(text, "aqpl_http_requests_total", method="GET", route=route, status="2xx") == 3
    assert sample(text, "aqpl_http_requests_total", method="GET", route=route, status="4xx") == 1
    assert sample(text, "aqpl_http_requests_total", method="GET", route="unmatched", status="4xx") == 1
    assert sample(text, "aqpl_http_request_duration_seconds_count", method="GET", route=route) == 4
    assert (
        sample(text, "aqpl_http_request_duration_seconds_bucket", method="GET", route=route, le="+Inf") == 4
    )
    assert sample(text, "aqpl_projects", status="ready") == 1
    assert sample(text, "aqpl_projects", status="failed") == 1
    assert sample(text, "aqpl_rounds", state="published") == 1
    assert sample(text, "aqpl_rounds", state="failed") == 1
    assert sample(text, "aqpl_rounds", state="scoring") == 1
    assert sample(text, "aqpl_round_step_duration_seconds_sum", step="annotating") == 300
    assert sample(text, "aqpl_round_step_duration_seconds_count", step="retraining") == 1
    assert sample(text, "aqpl_queue_depth", queue="aqpl", transport="filesystem") == 1
    assert "# TYPE aqpl_http_request_duration_seconds histogram" in text


def test_queue_depth_on_redis_is_the_list_length(redis_url: str, tmp_path: Path) -> None:
    import redis

    settings = Settings(data_dir=tmp_path, broker_url=redis_url, queue=f"depth-{free_port()}")
    client = redis.Redis.from_url(redis_url)
    try:
        client.rpush(settings.queue, "a", "b")
        client.rpush(settings.queue + "\x06\x163", "c")
        assert queue_depth(settings) == 3
    finally:
        client.delete(settings.queue, settings.queue + "\x06\x163")
        client.close()
    unreachable = Settings(data_dir=tmp_path, broker_url=f"redis://127.0.0.1:{free_port()}/0")
    assert queue_depth(unreachable) == -1


def test_every_response_reports_its_time_in_the_app_as_server_timing(api: Api) -> None:
    for response in (api.client.get("/api/v1/health"), api.client.get("/api/v1/projects")):
        match = re.fullmatch(r"app;dur=(\d+\.\d)", response.headers["server-timing"])
        assert match, response.headers["server-timing"]
        assert 0.0 <= float(match.group(1)) < 30_000
    assert api.client.get("/api/v1/projects").status_code == 401  # errors carry it too
    assert "server-timing" in api.client.get("/api/v1/projects").headers
