"""`aqpl pull` against a real `aqpl serve` process: success, a wrong token, a missing checkpoint, a
file altered on the server after publish, and a server that is not there, each with its exit code."""

from __future__ import annotations

import dataclasses
import hashlib
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import onnxruntime as ort
import pytest
import torch

from backend.auth.service import create_api_token
from backend.db import create_db_engine, make_session_factory, unit_of_work
from backend.models import Role, RoundState
from backend.settings import Settings
from cli.pull import EXIT_AUTH, EXIT_CHECKSUM, EXIT_CONNECTION, EXIT_NOT_FOUND, EXIT_USAGE
from tests.api.factories import make_round, make_user
from tests.api.platform_support import make_checkpoint, make_ready_project
from tests.api.publish_support import make_published_checkpoint
from tests.support import aqpl_env, aqpl_process, free_port, run_aqpl, wait_for_http
from worker.ml.checkpoints import load_checkpoint

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Server:
    url: str
    token: str  # the lead's API token with the checkpoints:read scope
    manage_only_token: str  # the same lead's token without it
    project_id: int
    other_project_id: int  # another lead's project
    settings: Settings
    sha256: dict[int, str]  # round number -> the safetensors file's sha256
    onnx_sha256: dict[int, str]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """`aqpl serve --no-worker` on a migrated SQLite database with published rounds 0, 1 and 2."""
    data_dir = tmp_path_factory.mktemp("serve")
    env = aqpl_env(data_dir, log_level="warning")
    assert run_aqpl(["db", "upgrade"], env).returncode == 0
    settings = Settings(data_dir=data_dir)
    engine = create_db_engine(settings.database_url)
    try:
        with unit_of_work(make_session_factory(engine)) as session:
            lead = make_user(session, Role.lead)
            project, _ = make_ready_project(session, settings, lead)
            published = [make_published_checkpoint(session, settings, project, 0)]
            for number in (1, 2):
                round_ = make_round(session, project, number, RoundState.published)
                published.append(make_published_checkpoint(session, settings, project, number, round_))
            _, token = create_api_token(session, lead, "pull", ["checkpoints:read"], None)
            _, manage_only = create_api_token(session, lead, "manage", ["manage"], None)
            other_project, _ = make_ready_project(session, settings, make_user(session, Role.lead))
            make_checkpoint(session, settings, other_project, 0)
            project_id, other_id = project.id, other_project.id
            sha256 = {row.round_number: row.sha256 for row in published}
            onnx_sha256 = {row.round_number: row.meta["onnx"]["sha256"] for row in published}
    finally:
        engine.dispose()
    port = free_port()
    with aqpl_process(["serve", "--no-worker", f"--port={port}"], env, data_dir / "serve.log"):
        wait_for_http(f"http://127.0.0.1:{port}/api/v1/health")
        yield Server(
            f"http://127.0.0.1:{port}",
            token,
            manage_only,
            project_id,
            other_id,
            settings,
            sha256,
            onnx_sha256,
        )


def pull(
    server: Server, output: Path, *args: str, token: str | None = None
) -> subprocess.CompletedProcess[str]:
    """`aqpl pull --url SERVER -o OUTPUT ARGS` with AQPL_TOKEN set (the client needs no data dir)."""
    env = aqpl_env(server.settings.data_dir / "client", token=token or server.token)
    return run_aqpl(["pull", "--url", server.url, "-o", str(output), *args], env)


def test_pull_the_latest_weights_and_a_round_as_onnx(server: Server, tmp_path: Path) -> None:
    weights = tmp_path / "latest.safetensors"
    result = pull(server, weights, "--project", str(server.project_id), "--latest")
    assert result.returncode == 0, result.stderr
    assert hashlib.sha256(weights.read_bytes()).hexdigest() == server.sha256[2]
    assert f"round 2, safetensors, sha256 {server.sha256[2]} (verified)" in result.stdout
    model, metadata = load_checkpoint(weights, device=torch.device("cpu"))
    assert metadata["round"] == 2 and model(torch.zeros(1, 1, 8, 8)).shape == (1, 2)

    # An existing folder: the file keeps the server's name there.
    folder = tmp_path / "models"
    folder.mkdir()
    result = pull(server, folder, "--project", str(server.project_id), "--round", "1", "--format", "onnx")
    assert result.returncode == 0, result.stderr
    (onnx_file,) = folder.iterdir()
    assert onnx_file.name == f"project{server.project_id}_round001.onnx"
    assert hashlib.sha256(onnx_file.read_bytes()).hexdigest() == server.onnx_sha256[1]
    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].name == "pixels"


def test_a_wrong_token_or_one_without_the_scope_is_an_auth_error(server: Server, tmp_path: Path) -> None:
    output = tmp_path / "model.safetensors"
    wrong = pull(server, output, "--project", str(server.project_id), token="aqpl_not-a-real-token")
    assert wrong.returncode == EXIT_AUTH
    assert "HTTP 401" in wrong.stderr and "AQPL_TOKEN" in wrong.stderr
    no_scope = pull(server, output, "--project", str(server.project_id), token=server.manage_only_token)
    assert no_scope.returncode == EXIT_AUTH and "HTTP 403" in no_scope.stderr
    assert not output.exists() and list(tmp_path.iterdir()) == []


def test_a_missing_checkpoint_is_not_found(server: Server, tmp_path: Path) -> None:
    output = tmp_path / "model.safetensors"
    no_round = pull(server, output, "--project", str(server.project_id), "--round", "7")
    assert no_round.returncode == EXIT_NOT_FOUND
    assert "has no checkpoint of round 7 (rounds with checkpoints: 0, 1, 2)" in no_round.stderr
    no_project = pull(server, output, "--project", "999999")
    assert no_project.returncode == EXIT_NOT_FOUND and "999999" in no_project.stderr
    # Another lead's project is not disclosed (or refused): never a download.
    not_yours = pull(server, output, "--project", str(server.other_project_id))
    assert not_yours.returncode in (EXIT_AUTH, EXIT_NOT_FOUND), not_yours.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_file_altered_after_publish_fails_the_checksum_and_leaves_nothing(
    server: Server, tmp_path: Path
) -> None:
    stored = server.settings.storage_dir / "projects" / str(server.project_id) / "checkpoints"
    weights = stored / "round_000.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # one flipped bit in the last weight: same size, another sha256
    weights.write_bytes(bytes(data))
    output = tmp_path / "model.safetensors"
    output.write_bytes(b"the file that was there before")
    result = pull(server, output, "--project", str(server.project_id), "--round", "0")
    assert result.returncode == EXIT_CHECKSUM
    assert "checksum mismatch" in result.stderr and server.sha256[0] in result.stderr
    assert output.read_bytes() == b"the file that was there before"  # untouched
    assert [path.name for path in tmp_path.iterdir()] == ["model.safetensors"]  # no partial file


def test_an_unreachable_server_and_bad_options(server: Server, tmp_path: Path) -> None:
    output = tmp_path / "model.safetensors"
    nowhere = Server(f"http://127.0.0.1:{free_port()}", *dataclasses.astuple(server)[1:])
    gone = pull(nowhere, output, "--project", "1")
    assert gone.returncode == EXIT_CONNECTION and "cannot reach" in gone.stderr
    both = pull(server, output, "--project", "1", "--round", "0", "--latest")
    assert both.returncode == EXIT_USAGE and "not both" in both.stderr
    assert list(tmp_path.iterdir()) == []
