"""The checkpoint registry over HTTP: list, latest, metadata, file with ETag, 304 and byte ranges."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch

from backend.auth.service import create_api_token
from backend.models import Role, RoundState, User
from backend.security import new_token
from tests.api.factories import Api, make_round, make_user
from tests.api.platform_support import make_checkpoint, make_ready_project
from worker.ml.checkpoints import load_checkpoint


@pytest.fixture
def api(fresh_api: Api) -> Api:
    return fresh_api


def seed_checkpoints(api: Api) -> tuple[int, int, list[int], dict[str, str]]:
    """A project with checkpoints of rounds 0 and 1; (owner id, project id, checkpoint ids, headers)."""
    with api.seed() as session:
        lead = make_user(session, Role.lead)
        project, _ = make_ready_project(session, api.settings, lead)
        first = make_checkpoint(session, api.settings, project, 0)
        round_ = make_round(session, project, 1, RoundState.published)
        second = make_checkpoint(session, api.settings, project, 1, round_, {"clean": 0.95})
    return lead.id, project.id, [first.id, second.id], api.headers_for(lead)


def test_list_latest_and_metadata(api: Api) -> None:
    _, project_id, (first, second), headers = seed_checkpoints(api)
    listed = api.client.get(f"/api/v1/projects/{project_id}/checkpoints", headers=headers).json()
    assert [row["id"] for row in listed] == [first, second]
    assert [row["round_number"] for row in listed] == [0, 1]
    latest = api.client.get(f"/api/v1/projects/{project_id}/checkpoints/latest", headers=headers).json()
    assert latest == listed[1]
    assert latest["metrics"] == {"clean": 0.95}
    assert latest["metadata"]["architecture"] == "small_cnn"
    assert latest["file_url"] == f"/api/v1/checkpoints/{second}/file"
    assert api.client.get(f"/api/v1/checkpoints/{first}", headers=headers).json() == listed[0]
    assert api.client.get("/api/v1/checkpoints/999999", headers=headers).status_code == 404


def test_latest_of_a_project_still_pretraining_is_404(api: Api) -> None:
    with api.seed() as session:
        lead = make_user(session, Role.lead)
        project, _ = make_ready_project(session, api.settings, lead)
    response = api.client.get(
        f"/api/v1/projects/{project.id}/checkpoints/latest", headers=api.headers_for(lead)
    )
    assert response.status_code == 404 and "no checkpoint yet" in response.json()["detail"]


def test_the_file_downloads_with_its_sha256_as_etag_and_loads(api: Api, tmp_path: Path) -> None:
    _, _, (_, second), headers = seed_checkpoints(api)
    url = f"/api/v1/checkpoints/{second}/file"
    response = api.client.get(url, headers=headers)
    assert response.status_code == 200
    digest = hashlib.sha256(response.content).hexdigest()
    assert response.headers["etag"] == f'"{digest}"'
    assert response.headers["accept-ranges"] == "bytes"
    assert response.headers["content-type"] == "application/octet-stream"
    assert int(response.headers["content-length"]) == len(response.content)
    file = tmp_path / "downloaded.safetensors"
    file.write_bytes(response.content)
    model, metadata = load_checkpoint(file, device=torch.device("cpu"))
    assert metadata["architecture"] == "small_cnn" and metadata["round"] == 1
    assert model(torch.zeros(1, 1, 8, 8)).shape == (1, 2)

    not_modified = api.client.get(url, headers={**headers, "If-None-Match": f'"{digest}"'})
    assert not_modified.status_code == 304 and not_modified.content == b""
    assert not_modified.headers["etag"] == f'"{digest}"'
    changed = api.client.get(url, headers={**headers, "If-None-Match": '"something-else"'})
    assert changed.status_code == 200

    part = api.client.get(url, headers={**headers, "Range": "bytes=8-107"})
    assert part.status_code == 206
    assert part.content == response.content[8:108]
    assert part.headers["content-range"] == f"bytes 8-107/{len(response.content)}"


def test_only_owners_and_admins_with_the_scope_read_checkpoints(api: Api) -> None:
    _, _, (first, _), _ = seed_checkpoints(api)
    with api.seed() as session:
        other_lead = make_user(session, Role.lead)
        admin = make_user(session, Role.admin)
        annotator = make_user(session, Role.annotator)
    url = f"/api/v1/checkpoints/{first}/file"
    assert api.client.get(url, headers=api.headers_for(other_lead)).status_code == 404  # not disclosed
    assert api.client.get(url, headers=api.headers_for(annotator)).status_code == 403
    assert api.client.get(url, headers=api.headers_for(admin)).status_code == 200
    assert api.client.get(url).status_code == 401
    assert api.client.get(url, headers={"Authorization": f"Bearer {new_token()}"}).status_code == 401


def test_a_token_without_the_checkpoints_scope_is_refused(api: Api) -> None:
    owner_id, project_id, _, _ = seed_checkpoints(api)
    with api.seed() as session:
        owner = session.get_one(User, owner_id)
        _, manage_only = create_api_token(session, owner, "ci-manage", ["manage"], None)
        _, reader = create_api_token(session, owner, "ci-read", ["checkpoints:read"], None)
    url = f"/api/v1/projects/{project_id}/checkpoints"
    assert api.client.get(url, headers={"Authorization": f"Bearer {manage_only}"}).status_code == 403
    response = api.client.get(url, headers={"Authorization": f"Bearer {reader}"})
    assert response.status_code == 200 and len(response.json()) == 2
