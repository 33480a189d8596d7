"""Issue 13, item 3: an upload belongs to its project, and no dataset path of another lead reaches it.

Before the fix uploads were kept under the shared import root (`uploads/project_<id>/upload.npz`),
so any lead could create a project from another lead's upload. Now they are kept in the data dir's
own uploads folder; a path into it (directly, through '..', or through a link) gets the message of a
path that does not exist, whatever is there, and responses name paths relative to the import root.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from backend.models import Role
from backend.storage import uploads_dir
from tests.api.factories import Api, make_user, running_api
from tests.conftest import DatabaseFactory


@pytest.fixture(scope="module")
def database(database_factory: DatabaseFactory, database_kind: str) -> str:
    return database_factory.create(database_kind)


# Where the import root lies relative to the data dir (tmp_path/data): the default folder inside it,
# a folder that contains it (so uploads lie under the import root), and the data dir itself.
LAYOUTS = {"imports inside the data dir": None, "import root above the data dir": ".", "data dir": "data"}


@pytest.fixture(params=sorted(LAYOUTS))
def api(database: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Api]:
    layout = LAYOUTS[request.param]
    settings: dict[str, Any] = {} if layout is None else {"import_root": tmp_path / layout}
    with running_api(database, tmp_path / "data", **settings) as api:
        assert api.settings.import_root is not None
        api.settings.import_root.mkdir(parents=True, exist_ok=True)
        yield api


def npz_bytes() -> bytes:
    images = np.random.default_rng(0).integers(0, 256, (6, 8, 8, 1), dtype=np.uint8)
    buffer = io.BytesIO()
    np.savez(buffer, x_train=images, y_train=np.arange(6) % 2, x_test=images[:2], y_test=np.arange(2))
    return buffer.getvalue()


def lead(api: Api) -> dict[str, str]:
    with api.seed() as session:
        user = make_user(session, Role.lead)
    return api.headers_for(user)


def create(api: Api, headers: dict[str, str], path: str | None) -> Any:
    dataset = {"format": "npz"} if path is None else {"format": "npz", "path": path}
    return api.client.post("/api/v1/projects", json={"name": "p", "dataset": dataset}, headers=headers)


def uploaded_project(api: Api, headers: dict[str, str]) -> tuple[int, Path]:
    """A project of the lead behind `headers` with its .npz uploaded; returns it and the stored file."""
    created = create(api, headers, None)
    assert created.status_code == 201, created.text
    project_id = created.json()["id"]
    url = f"/api/v1/projects/{project_id}/dataset"
    response = api.client.post(url, files={"file": ("mine.npz", npz_bytes())}, headers=headers)
    assert response.status_code == 200, response.text
    stored = uploads_dir(api.settings, project_id) / "upload.npz"
    assert stored.read_bytes() == npz_bytes()
    return project_id, stored


def test_another_lead_cannot_create_a_project_from_an_upload(api: Api, tmp_path: Path) -> None:
    project_id, stored = uploaded_project(api, lead(api))
    root = api.settings.import_root
    assert root is not None
    intruder = lead(api)
    # Every way of naming the file: relative to the import root, absolute, the old place, '..'.
    names = {
        stored.relative_to(root).as_posix() if stored.is_relative_to(root) else None,
        str(stored),
        f"uploads/project_{project_id}/upload.npz",
        f"../uploads/project_{project_id}/upload.npz",
        f"../data/uploads/project_{project_id}/upload.npz",
    } - {None}
    link = root / "innocent.npz"
    link.symlink_to(stored)
    names.add("innocent.npz")
    for name in sorted(str(name) for name in names):
        response = create(api, intruder, name)
        assert response.status_code == 422, (name, response.text)
        assert str(tmp_path) not in response.text.replace(name, ""), "a server path beyond the one given"


def test_another_upload_and_a_missing_file_get_the_same_message(api: Api) -> None:
    _project_id, stored = uploaded_project(api, lead(api))
    root = api.settings.import_root
    assert root is not None
    intruder = lead(api)
    (root / "to_theirs.npz").symlink_to(stored)
    (root / "to_nothing.npz").symlink_to(stored.parent / "absent.npz")
    pairs = [
        (str(stored), str(stored.parent / "absent.npz")),
        ("to_theirs.npz", "to_nothing.npz"),
    ]
    if stored.is_relative_to(root):  # the import root contains the data dir: the upload lies under it
        relative = stored.relative_to(root)
        pairs.append((relative.as_posix(), (relative.parent / "absent.npz").as_posix()))
    for theirs, missing in pairs:
        first, second = create(api, intruder, theirs), create(api, intruder, missing)
        assert (first.status_code, second.status_code) == (422, 422)
        assert first.json()["detail"].replace(theirs, "<path>") == second.json()["detail"].replace(
            missing, "<path>"
        ), (first.json(), second.json())


def test_a_folder_link_into_the_uploads_is_refused(api: Api) -> None:
    _project_id, stored = uploaded_project(api, lead(api))
    root = api.settings.import_root
    assert root is not None
    (root / "borrowed").mkdir()
    (root / "borrowed" / "data.npz").symlink_to(stored)
    (root / "shortcut").symlink_to(stored.parent, target_is_directory=True)
    intruder = lead(api)
    for name in ("borrowed/data.npz", "shortcut/upload.npz"):
        assert create(api, intruder, name).status_code == 422, name


def test_responses_name_paths_relative_to_the_import_root(api: Api, tmp_path: Path) -> None:
    headers = lead(api)
    root = api.settings.import_root
    assert root is not None
    (root / "sets").mkdir()
    (root / "sets" / "mine.npz").write_bytes(npz_bytes())
    created = create(api, headers, str(root / "sets" / "mine.npz"))
    assert created.status_code == 201, created.text
    assert created.json()["config"]["dataset"]["path"] == "sets/mine.npz"
    project_id, _stored = uploaded_project(api, headers)
    read = api.client.get(f"/api/v1/projects/{project_id}", headers=headers)
    assert read.json()["config"]["dataset"]["path"] == "upload:upload.npz"
    for response in (
        created,
        read,
        api.client.get("/api/v1/projects", headers=headers),
        create(api, headers, "/etc/passwd"),
        create(api, headers, "missing.npz"),
    ):
        assert str(tmp_path) not in response.text, response.text
