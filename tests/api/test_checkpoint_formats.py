"""A checkpoint's ONNX file (?format=onnx, its own sha256 ETag) and its Markdown model card."""

from __future__ import annotations

import hashlib

import numpy as np
import onnxruntime as ort
import pytest

from backend.auth.service import create_api_token
from backend.models import Role, RoundState, User
from tests.api.factories import Api, make_round, make_user
from tests.api.platform_support import make_checkpoint, make_ready_project
from tests.api.publish_support import make_published_checkpoint


@pytest.fixture(scope="module")
def seeded(api: Api) -> dict[str, object]:
    """A lead's project with published rounds 0 and 1 (ONNX beside each) and an old-style round 2."""
    with api.seed() as session:
        lead = make_user(session, Role.lead)
        project, _ = make_ready_project(session, api.settings, lead)
        first = make_published_checkpoint(session, api.settings, project, 0)
        second = make_published_checkpoint(
            session, api.settings, project, 1, make_round(session, project, 1, RoundState.published)
        )
        # Published before ONNX exports existed: no "onnx" in its metadata.
        older = make_checkpoint(session, api.settings, project, 2, make_round(session, project, 2))
    return {"lead_id": lead.id, "ids": (first.id, second.id, older.id), "headers": api.headers_for(lead)}


def test_the_onnx_file_downloads_with_its_own_sha256_as_etag_and_runs(
    api: Api, seeded: dict[str, object]
) -> None:
    _, second, _ = seeded["ids"]  # type: ignore[misc]
    headers = seeded["headers"]
    metadata = api.client.get(f"/api/v1/checkpoints/{second}", headers=headers).json()
    onnx = metadata["metadata"]["onnx"]
    assert onnx["opset"] == 18 and onnx["normalization_in_graph"] is True

    url = f"/api/v1/checkpoints/{second}/file"
    response = api.client.get(url, params={"format": "onnx"}, headers=headers)
    assert response.status_code == 200
    digest = hashlib.sha256(response.content).hexdigest()
    assert digest == onnx["sha256"] != metadata["sha256"]
    assert response.headers["etag"] == f'"{digest}"'
    assert response.headers["content-type"] == "application/octet-stream"
    assert 'filename="project' in response.headers["content-disposition"]
    assert response.headers["content-disposition"].endswith('_round001.onnx"')
    assert len(response.content) == onnx["size_bytes"]
    session = ort.InferenceSession(response.content, providers=["CPUExecutionProvider"])
    logits = session.run(None, {"pixels": np.zeros((3, 1, 8, 8), dtype=np.float32)})[0]
    assert logits.shape == (3, 2)

    not_modified = api.client.get(
        url, params={"format": "onnx"}, headers={**headers, "If-None-Match": f'"{digest}"'}
    )
    assert not_modified.status_code == 304 and not_modified.headers["etag"] == f'"{digest}"'
    part = api.client.get(url, params={"format": "onnx"}, headers={**headers, "Range": "bytes=0-99"})
    assert part.status_code == 206 and part.content == response.content[:100]

    # safetensors stays the default, and is what format=safetensors names.
    default = api.client.get(url, headers=headers)
    explicit = api.client.get(url, params={"format": "safetensors"}, headers=headers)
    assert default.headers["etag"] == explicit.headers["etag"] == f'"{metadata["sha256"]}"'
    assert default.content == explicit.content and default.content[:8] != response.content[:8]


def test_an_unknown_format_is_422_naming_the_choices(api: Api, seeded: dict[str, object]) -> None:
    first, _, _ = seeded["ids"]  # type: ignore[misc]
    response = api.client.get(
        f"/api/v1/checkpoints/{first}/file", params={"format": "pt"}, headers=seeded["headers"]
    )
    assert response.status_code == 422
    (error,) = response.json()["errors"]
    assert error["loc"] == ["query", "format"]
    assert "'safetensors' or 'onnx'" in error["msg"]


def test_a_checkpoint_without_onnx_is_404_with_the_reason(api: Api, seeded: dict[str, object]) -> None:
    _, _, older = seeded["ids"]  # type: ignore[misc]
    url = f"/api/v1/checkpoints/{older}/file"
    response = api.client.get(url, params={"format": "onnx"}, headers=seeded["headers"])
    assert response.status_code == 404
    assert "has no ONNX file" in response.json()["detail"]
    assert "format=safetensors" in response.json()["detail"]
    assert api.client.get(url, headers=seeded["headers"]).status_code == 200  # its weights still are
    missing = api.client.get(
        "/api/v1/checkpoints/999999/file", params={"format": "onnx"}, headers=seeded["headers"]
    )
    assert missing.status_code == 404 and "does not exist" in missing.json()["detail"]


def test_a_failed_export_recorded_at_publish_is_404_with_its_reason(api: Api) -> None:
    with api.seed() as session:
        lead = make_user(session, Role.lead)
        project, _ = make_ready_project(session, api.settings, lead)
        checkpoint = make_published_checkpoint(session, api.settings, project, 0)
        checkpoint.meta = {**checkpoint.meta, "onnx": None, "onnx_error": "TorchExportError: no luck"}
    response = api.client.get(
        f"/api/v1/checkpoints/{checkpoint.id}/file", params={"format": "onnx"}, headers=api.headers_for(lead)
    )
    assert response.status_code == 404
    assert "its export failed (TorchExportError: no luck)" in response.json()["detail"]
    card = api.client.get(f"/api/v1/checkpoints/{checkpoint.id}/card", headers=api.headers_for(lead))
    assert "No ONNX export: TorchExportError: no luck." in card.text


def test_an_onnx_file_gone_from_storage_is_404(api: Api) -> None:
    with api.seed() as session:
        lead = make_user(session, Role.lead)
        project, _ = make_ready_project(session, api.settings, lead)
        checkpoint = make_published_checkpoint(session, api.settings, project, 0)
    (api.settings.storage_dir / checkpoint.file).with_suffix(".onnx").unlink()
    response = api.client.get(
        f"/api/v1/checkpoints/{checkpoint.id}/file", params={"format": "onnx"}, headers=api.headers_for(lead)
    )
    assert response.status_code == 404 and "missing from storage" in response.json()["detail"]


def test_the_model_card_says_what_the_checkpoint_is(api: Api, seeded: dict[str, object]) -> None:
    _, second, _ = seeded["ids"]  # type: ignore[misc]
    headers = seeded["headers"]
    row = api.client.get(f"/api/v1/checkpoints/{second}", headers=headers).json()
    response = api.client.get(f"/api/v1/checkpoints/{second}/card", headers=headers)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/markdown; charset=utf-8"
    card = response.text
    assert card.startswith("# Model card: project ") and ", round 1\n" in card.splitlines()[0] + "\n"
    for expected in (
        row["sha256"],
        row["metadata"]["onnx"]["sha256"],
        f"GET /api/v1/checkpoints/{second}/file?format=onnx",
        "- Architecture: small_cnn",
        "- Classes (2): zero, one",
        "- Dataset: npz",
        "- Training examples: 12",
        "- Test examples: 4, of which evaluated: 4",
        "- Mean σ: 0.300, median σ: 0.300",
        "- Range: 0.200 to 0.400",
        "| 87.5 % | 75.0 % | 50.0 % |",
        "| fog | 1: 60.0 %, 3: 40.0 % |",
        "- Round 1: fine-tuned from the previous round's checkpoint",
        "- Method: gnt",
        "- Epochs: 1, batch size: 8",
        "- Learning rate: 0.01",
        "- Seed: 1",
        "- Input `pixels`: float32, layout NCHW, shape batch, 1, 8, 8 (grey), values in 0.0, 1.0",
        "Normalisation is inside the graph",
        "- Opset 18",
    ):
        assert expected in card, expected


def test_a_card_renders_from_sparse_metadata(api: Api, seeded: dict[str, object]) -> None:
    _, _, older = seeded["ids"]  # type: ignore[misc]
    response = api.client.get(f"/api/v1/checkpoints/{older}/card", headers=seeded["headers"])
    assert response.status_code == 200
    assert "- Architecture: small_cnn" in response.text
    assert "not recorded" in response.text
    assert "No ONNX export: this checkpoint was published before exports were made." in response.text
    assert "## Using the ONNX export" not in response.text


def test_onnx_and_card_have_the_access_of_the_download(api: Api, seeded: dict[str, object]) -> None:
    """Whoever may (or may not) download the weights gets the same answer for the ONNX file and the card."""
    first, _, _ = seeded["ids"]  # type: ignore[misc]
    with api.seed() as session:
        other_lead = make_user(session, Role.lead)
        admin = make_user(session, Role.admin)
        annotator = make_user(session, Role.annotator)
        owner = session.get_one(User, seeded["lead_id"])
        _, manage_only = create_api_token(session, owner, "ci-manage", ["manage"], None)
        _, reader = create_api_token(session, owner, "ci-read", ["checkpoints:read"], None)
    callers = {
        "anonymous": ({}, 401),
        "another lead": (api.headers_for(other_lead), None),  # refused as the download refuses it
        "annotator": (api.headers_for(annotator), None),
        "admin": (api.headers_for(admin), 200),
        "owner's manage-only token": ({"Authorization": f"Bearer {manage_only}"}, 403),
        "owner's checkpoints:read token": ({"Authorization": f"Bearer {reader}"}, 200),
    }
    download = f"/api/v1/checkpoints/{first}/file"
    for name, (headers, expected) in callers.items():
        weights = api.client.get(download, headers=headers).status_code
        assert weights == expected if expected is not None else weights in (403, 404), name
        onnx = api.client.get(download, params={"format": "onnx"}, headers=headers).status_code
        card = api.client.get(f"/api/v1/checkpoints/{first}/card", headers=headers).status_code
        assert onnx == card == weights, name
    assert api.client.get("/api/v1/checkpoints/999999/card", headers=seeded["headers"]).status_code == 404
