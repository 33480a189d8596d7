"""Projects over HTTP on a real database: create (import queued), validation, access, reads, upload."""

from __future__ import annotations

import io
import subprocess
import sys
import typing
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from backend.models import ProjectStatus, Role, SigmaSource
from backend.projects import config
from backend.storage import uploads_dir
from tests.api.factories import Api, make_round, make_user
from tests.api.platform_support import make_checkpoint, make_ready_project, queued_tasks, write_tiny_mnist
from tests.support import REPO_ROOT

DIGITS = {"name": "digits", "dataset": {"format": "digits"}}


@pytest.fixture
def api(fresh_api: Api) -> Api:
    return fresh_api


def lead_headers(api: Api, role: Role = Role.lead) -> tuple[int, dict[str, str]]:
    with api.seed() as session:
        user = make_user(session, role)
    return user.id, api.headers_for(user)


def test_create_queues_the_import_and_reads_back(api: Api) -> None:
    _, headers = lead_headers(api)
    response = api.client.post("/api/v1/projects", json={**DIGITS, "budget": 3}, headers=headers)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["status"] == "importing"
    assert body["progress"] == {"step": "importing", "done": 0, "total": 1}
    assert body["config"]["initial_sigma_index"] == 30
    assert body["config"]["budget"] == 3 and body["config"]["draws"] == 50 and body["config"]["overlap"] == 2
    assert body["config"]["evaluation"]["corruptions"] is None
    assert body["current_round"] is None and body["latest_checkpoint"] is None
    assert body["sigma_histogram"] == [0] * 91
    assert queued_tasks(api.settings) == [("datasets.import", [body["id"]])]
    assert api.client.get(f"/api/v1/projects/{body['id']}", headers=headers).json() == body
    listed = api.client.get("/api/v1/projects", headers=headers).json()
    assert [row["id"] for row in listed] == [body["id"]]


@pytest.mark.parametrize(
    "change",
    [
        {"colour": "blue"},
        {"strategy": "best"},
        {"model": "vgg"},
        {"draws": 0},
        {"draws": 201},
        {"overlap": 11},
        {"initial_sigma": 0.95},
        {"dataset": {"format": "digits", "extra": 1}},
        {"evaluation": {"corruptions": ["rain"]}},
        {"evaluation": {"severities": [0]}},
    ],
)
def test_create_refuses_unknown_fields_and_bad_values(api: Api, change: dict[str, object]) -> None:
    _, headers = lead_headers(api)
    response = api.client.post("/api/v1/projects", json={**DIGITS, **change}, headers=headers)
    assert response.status_code == 422, response.text
    assert queued_tasks(api.settings) == []


def test_dataset_paths_must_lie_under_the_import_root(api: Api, tmp_path: Path) -> None:
    _, headers = lead_headers(api)
    root = api.settings.import_root
    assert root is not None
    write_tiny_mnist(root / "mnist", train=20, test=10)
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "escape").symlink_to(outside)

    def create(path: str, data_format: str = "mnist") -> tuple[int, str]:
        body = {"name": "p", "dataset": {"format": data_format, "path": path}}
        response = api.client.post("/api/v1/projects", json=body, headers=headers)
        return response.status_code, response.text

    for bad in ("../outside", str(outside), "escape", "mnist/../../outside"):
        status, text = create(bad)
        assert status == 422 and "outside the import root" in text, (bad, text)
    assert create("missing")[0] == 422
    assert create("mnist", "digits")[0] == 422  # digits takes no path
    status, text = create("mnist")
    assert status == 201, text
    status, text = create(str(root / "mnist"))
    assert status == 201, text
    projects = api.client.get("/api/v1/projects", headers=headers).json()
    for summary in projects:
        detail = api.client.get(f"/api/v1/projects/{summary['id']}", headers=headers).json()
        assert detail["config"]["dataset"]["path"] == "mnist"  # relative to the import root


def test_leads_manage_only_their_own_projects(api: Api) -> None:
    _, alice = lead_headers(api)
    _, bob = lead_headers(api)
    _, admin = lead_headers(api, Role.admin)
    _, annotator = lead_headers(api, Role.annotator)
    created = api.client.post("/api/v1/projects", json=DIGITS, headers=alice).json()
    project = f"/api/v1/projects/{created['id']}"

    assert api.client.get(project, headers=bob).status_code == 404  # as if it did not exist
    assert api.client.post(f"{project}/rounds", headers=bob).status_code == 404
    assert api.client.get("/api/v1/projects", headers=bob).json() == []
    assert api.client.get(project, headers=admin).status_code == 200
    assert [row["id"] for row in api.client.get("/api/v1/projects", headers=admin).json()] == [created["id"]]
    assert api.client.get(project, headers=annotator).status_code == 403
    assert api.client.post("/api/v1/projects", json=DIGITS, headers=annotator).status_code == 403
    assert api.client.get(project).status_code == 401
    assert api.client.get("/api/v1/projects/999999", headers=alice).status_code == 404


def test_project_read_has_counts_histogram_round_and_checkpoint(api: Api) -> None:
    with api.seed() as session:
        lead = make_user(session, Role.lead)
        project, examples = make_ready_project(session, api.settings, lead, num_train=10, num_test=3)
        train = examples[:10]
        train[0].sigma_index, train[0].sigma_source = 55, SigmaSource.queried
        train[1].sigma_index, train[1].sigma_source = 0, SigmaSource.adapted
        make_checkpoint(session, api.settings, project, 0)
        make_round(session, project)
    body = api.client.get(f"/api/v1/projects/{project.id}", headers=api.headers_for(lead)).json()
    assert body["status"] == "ready" and body["progress"] is None
    assert body["counts"] == {"initial": 8, "queried": 1, "adapted": 1}
    histogram = body["sigma_histogram"]
    assert len(histogram) == 91 and sum(histogram) == 10
    assert (histogram[30], histogram[55], histogram[0]) == (8, 1, 1)
    assert body["current_round"]["number"] == 1 and body["current_round"]["state"] == "annotating"
    assert body["latest_checkpoint"]["round_number"] == 0
    assert (body["num_train"], body["num_test"], body["image_shape"]) == (10, 3, [8, 8, 1])


def test_examples_are_paged_and_filtered(api: Api) -> None:
    with api.seed() as session:
        lead = make_user(session, Role.lead)
        project, examples = make_ready_project(session, api.settings, lead, num_train=7, num_test=2)
        examples[3].sigma_source = SigmaSource.queried
    headers = api.headers_for(lead)
    url = f"/api/v1/projects/{project.id}/examples"
    page = api.client.get(url, params={"split": "train", "limit": 3, "offset": 3}, headers=headers).json()
    assert page["total"] == 7 and (page["offset"], page["limit"]) == (3, 3)
    assert [item["dataset_index"] for item in page["items"]] == [3, 4, 5]
    assert page["items"][0]["sigma_source"] == "queried"
    assert page["items"][0]["class_name"] in ("zero", "one")
    assert page["items"][0]["image_url"] == f"/api/v1/examples/{page['items'][0]['id']}/image.png"
    queried = api.client.get(url, params={"sigma_source": "queried"}, headers=headers).json()
    assert [item["id"] for item in queried["items"]] == [examples[3].id]
    assert api.client.get(url, params={"split": "test"}, headers=headers).json()["total"] == 2
    assert api.client.get(url, params={"limit": 5000}, headers=headers).status_code == 422


def test_upload_an_npz_then_the_import_is_queued(api: Api) -> None:
    _, headers = lead_headers(api)
    created = api.client.post(
        "/api/v1/projects", json={"name": "upload", "dataset": {"format": "npz"}}, headers=headers
    ).json()
    assert created["progress"]["step"] == "awaiting_upload"
    assert queued_tasks(api.settings) == []
    buffer = io.BytesIO()
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (6, 8, 8, 1), dtype=np.uint8)
    np.savez(buffer, x_train=images, y_train=np.arange(6) % 2, x_test=images[:2], y_test=np.arange(2))
    url = f"/api/v1/projects/{created['id']}/dataset"
    response = api.client.post(url, files={"file": ("mine.npz", buffer.getvalue())}, headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["config"]["dataset"]["path"] == "upload:upload.npz"
    stored = uploads_dir(api.settings, created["id"]) / "upload.npz"
    assert stored.read_bytes() == buffer.getvalue()
    assert queued_tasks(api.settings) == [("datasets.import", [created["id"]])]
    again = api.client.post(url, files={"file": ("mine.npz", buffer.getvalue())}, headers=headers)
    assert again.status_code == 409


def test_upload_refuses_zip_entries_that_leave_the_folder_and_other_types(api: Api) -> None:
    _, headers = lead_headers(api)
    created = api.client.post(
        "/api/v1/projects", json={"name": "zip", "dataset": {"format": "imagefolder"}}, headers=headers
    ).json()
    url = f"/api/v1/projects/{created['id']}/dataset"
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as handle:
        handle.writestr("../../evil.png", b"x")
    response = api.client.post(url, files={"file": ("data.zip", archive.getvalue())}, headers=headers)
    assert response.status_code == 422 and "outside the archive" in response.text
    assert api.client.post(url, files={"file": ("data.exe", b"MZ")}, headers=headers).status_code == 422
    good = io.BytesIO()
    with zipfile.ZipFile(good, "w") as handle:
        for name in ("train/circle/a.png", "train/square/b.png", "test/circle/c.png", "test/square/d.png"):
            handle.writestr(f"shapes/{name}", png_bytes())
    response = api.client.post(url, files={"file": ("shapes.zip", good.getvalue())}, headers=headers)
    assert response.status_code == 200, response.text
    shown = response.json()["config"]["dataset"]["path"]
    assert shown == "upload:tree/shapes"  # the folder inside the project's upload, not a server path
    folder = uploads_dir(api.settings, created["id"]) / shown.removeprefix("upload:")
    assert sorted(path.name for path in folder.iterdir()) == ["test", "train"]
    assert sorted(path.name for path in (folder / "train").iterdir()) == ["circle", "square"]


def png_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((8, 8, 3), 200, dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_retry_resumes_a_failed_project_at_its_step(api: Api) -> None:
    with api.seed() as session:
        lead = make_user(session, Role.lead)
        project, _ = make_ready_project(session, api.settings, lead)
        project.status = ProjectStatus.failed
        project.error = "boom"
        project.progress = {"step": "pretraining", "done": 3, "total": 9}
    headers = api.headers_for(lead)
    response = api.client.post(f"/api/v1/projects/{project.id}/retry", headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "pretraining" and response.json()["error"] is None
    assert queued_tasks(api.settings) == [("training.pretrain", [project.id])]
    assert api.client.post(f"/api/v1/projects/{project.id}/retry", headers=headers).status_code == 409


def test_choice_lists_match_the_engine() -> None:
    """The API repeats worker/ml's names (it never imports torch): they must not drift apart."""
    from aqpl.datasets import DATASET_FORMATS
    from worker.ml.corruptions import CORRUPTION_NAMES
    from worker.ml.models import MODEL_NAMES
    from worker.ml.strategies import STRATEGY_NAMES

    assert config.CORRUPTION_NAMES == CORRUPTION_NAMES
    assert typing.get_args(config.DatasetFormat) == DATASET_FORMATS
    assert typing.get_args(config.ModelName) == MODEL_NAMES
    assert typing.get_args(config.StrategyName) == STRATEGY_NAMES


def test_the_api_process_never_imports_torch() -> None:
    code = (
        "import sys\n"
        "from backend.app import create_app\n"
        "create_app()\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'torchvision', 'worker'))\n"
        "print(heavy)\n"
        "sys.exit(1 if heavy else 0)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT, timeout=120, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
