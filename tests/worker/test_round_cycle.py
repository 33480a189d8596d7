"""A full query round driven only through the REST API, with a real `aqpl worker` process.

Project from a test-made MNIST raw folder -> ready -> round -> two annotators answer every task
-> close -> published; the checkpoint downloads, matches its sha256, loads, and scores on the
test split what it reports. Runs on Redis + PostgreSQL and on the embedded default (SQLite +
filesystem broker). A worker killed (SIGKILL) while scoring does not lose the round.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import torch
from fastapi.testclient import TestClient

from backend.annotations.aggregation import median_on_ladder
from backend.app import create_app
from backend.db import create_db_engine, make_session_factory, unit_of_work
from backend.models import Role
from backend.settings import Settings
from tests.api.factories import PASSWORD, make_user
from tests.api.platform_support import TinyMnist, write_tiny_mnist
from tests.conftest import DatabaseFactory
from tests.support import aqpl_env, aqpl_process, wait_until
from worker.ml.checkpoints import load_checkpoint
from worker.ml.evaluation import accuracy

pytestmark = pytest.mark.slow

INITIAL_SIGMA_INDEX = 30
# Tiny on purpose (2 shared CPU cores): one epoch, 4 draws, one corruption at one severity.
PROJECT_BODY: dict[str, Any] = {
    "model": "small_cnn",
    "method": "gnt",
    "epochs": 1,
    "finetune_epochs": 1,
    "batch_size": 16,
    "draws": 4,
    "budget": 2,
    "overlap": 2,
    "initial_sigma": INITIAL_SIGMA_INDEX / 100,
    "evaluation": {"corruptions": ["gaussian_noise"], "severities": [1], "test_limit": 30},
    "score_shard_size": 32,  # two scoring shards for 60 examples: the last one selects
}


@dataclass
class Platform:
    client: TestClient
    data_dir: Path
    env: dict[str, str]
    lead: dict[str, str]
    annotators: list[dict[str, str]]
    worker_log: Path
    worker: subprocess.Popen[bytes]

    def get(self, path: str, **kwargs: Any) -> Any:
        response = self.client.get(path, headers=self.lead, **kwargs)
        assert response.status_code == 200, response.text
        return response.json()

    def wait_for(
        self, path: str, field: str, wanted: str, timeout: float = 90, *, tolerate_failure: bool = False
    ) -> dict[str, Any]:
        """Poll until body[field] == wanted; fail early (with the worker log) on `failed`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            body: dict[str, Any] = self.get(path)
            if body[field] == wanted:
                return body
            failed = body[field] == "failed" and not tolerate_failure
            assert not failed, f"{path} failed: {body.get('error')}\n{self.log()}"
            time.sleep(0.3)
        raise AssertionError(f"{path} not {wanted} after {timeout} s: {body}\n{self.log()}")

    def log(self) -> str:
        return self.worker_log.read_text()[-6000:] if self.worker_log.exists() else "(no worker log)"


def _login(client: TestClient, username: str) -> dict[str, str]:
    response = client.post("/api/v1/auth/login", json={"username": username, "password": PASSWORD})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


@contextmanager
def platform(
    tmp_path: Path, database_url: str, broker_url: str = "", *, pool: str = "solo", **settings: str
) -> Iterator[Platform]:
    """The API in-process (TestClient) and a real worker process sharing the database, broker and storage."""
    data_dir = tmp_path / "data"
    options = {"database_url": database_url, "device": "cpu", **settings}
    if broker_url:
        options["broker_url"] = broker_url
        options["queue"] = f"test-{uuid.uuid4().hex[:8]}"
    env = aqpl_env(data_dir, **options)
    engine = create_db_engine(database_url)
    with unit_of_work(make_session_factory(engine)) as session:
        make_user(session, Role.lead, "lead")
        make_user(session, Role.annotator, "ann1")
        make_user(session, Role.annotator, "ann2")
    engine.dispose()
    app_settings = Settings(data_dir=data_dir, **options)  # type: ignore[arg-type]
    worker_log = tmp_path / "worker.log"
    with (
        TestClient(create_app(app_settings)) as client,
        aqpl_process(["worker", "--concurrency=1", f"--pool={pool}"], env, worker_log) as worker,
    ):
        yield Platform(
            client=client,
            data_dir=data_dir,
            env=env,
            lead=_login(client, "lead"),
            annotators=[_login(client, "ann1"), _login(client, "ann2")],
            worker_log=worker_log,
            worker=worker,
        )


def answer_for(annotator: int, example_id: int) -> int:
    """Each annotator's σ index for an example: different per annotator, so the median means something."""
    return (20 + example_id % 7) if annotator == 0 else (41 + example_id % 5)


def answer_every_task(platform_: Platform, project_id: int) -> int:
    """Both annotators take tasks until none is left; returns the number of answers given."""
    given = 0
    for annotator, headers in enumerate(platform_.annotators):
        while True:
            response = platform_.client.post(f"/api/v1/tasks/next?project_id={project_id}", headers=headers)
            if response.status_code == 204:
                break
            assert response.status_code == 200, response.text
            task = response.json()
            answered = platform_.client.post(
                f"/api/v1/tasks/{task['id']}/annotation",
                json={"sigma_index": answer_for(annotator, task["example_id"]), "seconds": 1.5},
                headers={**headers, "Idempotency-Key": uuid.uuid4().hex},
            )
            assert answered.status_code == 201, answered.text
            given += 1
    return given


def create_project(platform_: Platform, **overrides: Any) -> tuple[int, TinyMnist]:
    assert platform_.env["AQPL_DATA_DIR"]
    mnist = write_tiny_mnist(platform_.data_dir / "imports" / "tiny-mnist")
    body = {
        "name": "tiny mnist",
        "dataset": {"format": "mnist", "path": "tiny-mnist"},
        **PROJECT_BODY,
        **overrides,
    }
    response = platform_.client.post("/api/v1/projects", json=body, headers=platform_.lead)
    assert response.status_code == 201, response.text
    assert response.json()["status"] == "importing"
    return int(response.json()["id"]), mnist


def check_published_round(platform_: Platform, project_id: int, round_id: int, mnist: TinyMnist) -> None:
    """Checkpoint download + sha256 + load + accuracy; σ equal to the medians; the export shows both."""
    client, lead = platform_.client, platform_.lead
    checkpoint = platform_.get(f"/api/v1/projects/{project_id}/checkpoints/latest")
    assert checkpoint["round_number"] == 1 and checkpoint["round_id"] == round_id
    download = client.get(checkpoint["file_url"], headers=lead)
    assert download.status_code == 200
    assert hashlib.sha256(download.content).hexdigest() == checkpoint["sha256"]
    assert download.headers["etag"] == f'"{checkpoint["sha256"]}"'
    file = platform_.data_dir / "downloaded.safetensors"
    file.write_bytes(download.content)
    model, metadata = load_checkpoint(file, device=torch.device("cpu"))
    assert metadata["architecture"] == "small_cnn" == checkpoint["metadata"]["architecture"]
    assert metadata["round"] == 1
    measured = accuracy(model, mnist.x_test, mnist.y_test, device=torch.device("cpu"))
    assert measured == pytest.approx(checkpoint["metrics"]["clean"], abs=1e-9)
    assert metadata["metrics"]["clean"] == pytest.approx(measured, abs=1e-9)
    check_onnx_and_card(platform_, checkpoint, model, mnist)

    queries = platform_.get(f"/api/v1/rounds/{round_id}/queries")
    assert len(queries) == 4
    expected = {query["example_id"]: median_on_ladder(query["answers"]) for query in queries}
    assert all(len(query["answers"]) == 2 for query in queries)
    examples = platform_.get(f"/api/v1/projects/{project_id}/examples?split=train&limit=1000")["items"]
    assert len(examples) == len(mnist.y_train)
    for example in examples:
        if example["id"] in expected:
            assert example["sigma_index"] == expected[example["id"]]
            assert (example["sigma_source"], example["sigma_round"]) == ("queried", 1)
        else:
            assert example["sigma_index"] == INITIAL_SIGMA_INDEX
            assert example["sigma_source"] == "initial"

    export = client.get(f"/api/v1/projects/{project_id}/export?format=jsonl", headers=lead)
    assert export.status_code == 200
    rows = {row["example_id"]: row for row in map(json.loads, export.text.splitlines())}
    assert len(rows) == len(mnist.y_train) + len(mnist.y_test)
    for example_id, sigma in expected.items():
        row = rows[example_id]
        assert row["sigma_index"] == sigma
        assert sorted(answer["sigma_index"] for answer in row["answers"]) == sorted(
            answer_for(annotator, example_id) for annotator in (0, 1)
        )
        assert row["sigma_history"] == [
            {
                "round": 1,
                "old_sigma_index": INITIAL_SIGMA_INDEX,
                "new_sigma_index": sigma,
                "source": "queried",
            }
        ]
    untouched = next(row for example_id, row in rows.items() if example_id not in expected)
    assert untouched["sigma_index"] == INITIAL_SIGMA_INDEX and untouched["answers"] == []

    metrics = platform_.get(f"/api/v1/projects/{project_id}/metrics")["rounds"]
    assert [row["round"] for row in metrics] == [0, 1]
    assert metrics[1]["queries"] == 4
    assert metrics[1]["clean"] == pytest.approx(measured)
    assert sum(metrics[1]["sigma_histogram_after"]) == len(mnist.y_train)


def check_onnx_and_card(
    platform_: Platform, checkpoint: dict[str, Any], model: torch.nn.Module, mnist: TinyMnist
) -> None:
    """The evaluation job exported ONNX beside the weights: it downloads, verifies and matches PyTorch."""
    onnx = checkpoint["metadata"]["onnx"]
    assert onnx["opset"] == 18 and onnx["normalization_in_graph"] is True
    download = platform_.client.get(f"{checkpoint['file_url']}?format=onnx", headers=platform_.lead)
    assert download.status_code == 200
    assert hashlib.sha256(download.content).hexdigest() == onnx["sha256"]
    assert download.headers["etag"] == f'"{onnx["sha256"]}"'
    pixels = mnist.x_test.transpose(0, 3, 1, 2).astype(np.float32) / 255  # the NCHW [0, 1] contract
    session = ort.InferenceSession(download.content, providers=["CPUExecutionProvider"])
    with torch.inference_mode():
        expected = model(torch.from_numpy(pixels)).numpy()
    assert np.abs(session.run(None, {"pixels": pixels})[0] - expected).max() <= 1e-4
    card = platform_.client.get(f"/api/v1/checkpoints/{checkpoint['id']}/card", headers=platform_.lead)
    assert card.status_code == 200 and "round 1" in card.text and "- Training examples: 60" in card.text


def run_full_cycle(platform_: Platform, *, auto_close: bool, open_first_round: bool) -> None:
    project_id, mnist = create_project(platform_, auto_close=auto_close, open_first_round=open_first_round)
    project = platform_.wait_for(f"/api/v1/projects/{project_id}", "status", "ready")
    assert (project["num_train"], project["num_test"]) == (60, 30)
    assert project["image_shape"] == [28, 28, 1]
    assert project["latest_checkpoint"]["round_number"] == 0
    assert sum(project["sigma_histogram"]) == 60

    if open_first_round:  # the worker opened round 1 itself when the project became ready
        assert project["current_round"]["number"] == 1
        round_id = project["current_round"]["id"]
    else:
        assert project["current_round"] is None
        started = platform_.client.post(f"/api/v1/projects/{project_id}/rounds", headers=platform_.lead)
        assert started.status_code == 201, started.text
        round_id = started.json()["id"]
        assert started.json()["state"] == "scoring"
    annotating = platform_.wait_for(f"/api/v1/rounds/{round_id}", "state", "annotating")
    assert annotating["progress"] == {"step": "annotating", "done": 0, "total": 8}

    assert answer_every_task(platform_, project_id) == 8
    if not auto_close:
        closed = platform_.client.post(f"/api/v1/rounds/{round_id}/close", headers=platform_.lead)
        assert closed.status_code == 200, closed.text
    round_ = platform_.wait_for(f"/api/v1/rounds/{round_id}", "state", "published")
    assert round_["counts"] == {"queries": 4, "complete_queries": 4, "answers": 8, "annotators": 2}
    assert round_["checkpoint_id"] is not None and round_["published_at"] is not None
    assert round_["krippendorff_alpha"] is not None
    check_published_round(platform_, project_id, round_id, mnist)


def test_full_round_on_redis_and_postgresql(
    database_factory: DatabaseFactory, redis_url: str, tmp_path: Path
) -> None:
    with platform(tmp_path, database_factory.create("postgresql"), redis_url, pool="prefork") as platform_:
        run_full_cycle(platform_, auto_close=False, open_first_round=False)


def test_full_round_on_the_embedded_default(database_factory: DatabaseFactory, tmp_path: Path) -> None:
    """SQLite file + filesystem broker; round 1 opened by the worker, closed by the last answer."""
    with platform(tmp_path, database_factory.create("sqlite")) as platform_:
        run_full_cycle(platform_, auto_close=True, open_first_round=True)


@pytest.mark.parametrize("deployment", ["redis-postgresql", "embedded"])
def test_worker_killed_while_scoring_does_not_lose_the_round(
    database_factory: DatabaseFactory, deployment: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """SIGKILL the worker mid-scoring; a new worker runs the task again and the round goes on.

    Redis hands the unacknowledged task out again after the (test-short) visibility timeout; the
    filesystem broker forgets it, so a starting embedded worker re-sends interrupted steps.
    """
    if deployment == "embedded":
        database_url, broker_url = database_factory.create("sqlite"), ""
    else:
        database_url = database_factory.create("postgresql")
        broker_url = request.getfixturevalue("redis_url")
    with platform(tmp_path, database_url, broker_url, broker_visibility_timeout="4") as platform_:
        # 60 examples x 100 draws on ResNet18: 10-20 s of scoring on 2 cores, time enough to kill it
        # half-way (the small CNN scores them in well under a second since scoring went bf16/NHWC).
        project_id, _ = create_project(platform_, model="resnet18", draws=100, score_shard_size=1000)
        platform_.wait_for(f"/api/v1/projects/{project_id}", "status", "ready")
        started = platform_.client.post(f"/api/v1/projects/{project_id}/rounds", headers=platform_.lead)
        round_id = started.json()["id"]

        def scoring_under_way() -> bool:
            body = platform_.get(f"/api/v1/rounds/{round_id}")
            assert body["state"] == "scoring", body
            return bool(0 < body["progress"]["done"] < body["progress"]["total"])

        wait_until(scoring_under_way, timeout=60, interval=0.1, message="scoring progress")
        _kill_worker(platform_)
        assert platform_.get(f"/api/v1/rounds/{round_id}")["state"] == "scoring"

        second_log = tmp_path / "worker2.log"
        with aqpl_process(["worker", "--concurrency=1", "--pool=solo"], platform_.env, second_log):
            platform_.worker_log = second_log
            platform_.wait_for(f"/api/v1/rounds/{round_id}", "state", "annotating", timeout=90)
        assert "scoring.score" in second_log.read_text()
        assert len(platform_.get(f"/api/v1/rounds/{round_id}/queries")) == 4  # selected once


def test_a_failed_step_shows_its_error_and_retry_resumes_there(
    database_factory: DatabaseFactory, tmp_path: Path
) -> None:
    """Scoring without the previous checkpoint's file fails the round at `scoring`; retry finishes it."""
    with platform(tmp_path, database_factory.create("sqlite")) as platform_:
        project_id, _ = create_project(platform_)
        project = platform_.wait_for(f"/api/v1/projects/{project_id}", "status", "ready")
        checkpoint = platform_.data_dir / "storage" / "projects" / str(project_id) / "checkpoints"
        original = checkpoint / "round_000.safetensors"
        assert project["latest_checkpoint"]["sha256"] == hashlib.sha256(original.read_bytes()).hexdigest()
        hidden = original.rename(checkpoint / "hidden.safetensors")

        round_id = platform_.client.post(
            f"/api/v1/projects/{project_id}/rounds", headers=platform_.lead
        ).json()["id"]
        failed = platform_.wait_for(f"/api/v1/rounds/{round_id}", "state", "failed", tolerate_failure=True)
        assert failed["failed_state"] == "scoring"
        assert "round_000.safetensors" in failed["error"] and "no such checkpoint file" in failed["error"]

        hidden.rename(original)
        retried = platform_.client.post(f"/api/v1/rounds/{round_id}/retry", headers=platform_.lead)
        assert retried.status_code == 200, retried.text
        assert (retried.json()["state"], retried.json()["error"]) == ("scoring", None)
        platform_.wait_for(f"/api/v1/rounds/{round_id}", "state", "annotating")
        assert len(platform_.get(f"/api/v1/rounds/{round_id}/queries")) == 4


def _kill_worker(platform_: Platform) -> None:
    """SIGKILL every process of the running worker (its process group): no clean shutdown, no ack."""
    os.killpg(platform_.worker.pid, signal.SIGKILL)
    platform_.worker.wait(timeout=30)
