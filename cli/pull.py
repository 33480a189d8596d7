"""`aqpl pull`: download a published checkpoint over the REST API, verified and written atomically.

A client of the API like any other (httpx, a bearer token): it never touches the database or the
storage dir, so it runs anywhere the server can be reached. Registered on the `aqpl` app by
cli/main.py. Exit codes are part of its interface (see EXIT_* and the command's help).
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, NoReturn

import httpx
import typer
from tqdm import tqdm

EXIT_ERROR = 1  # the server refused the request for another reason, or answered with an error
EXIT_USAGE = 2  # typer's own code for bad options
EXIT_AUTH = 3  # 401/403: no, wrong, expired token; missing checkpoints:read scope; not your project
EXIT_NOT_FOUND = 4  # no such project, checkpoint, round, or no ONNX file for it
EXIT_CHECKSUM = 5  # the downloaded bytes do not have the sha256 the API recorded at publish time
EXIT_CONNECTION = 6  # the server could not be reached, or the connection broke off
CHUNK_BYTES = 1 << 20  # read and hash 1 MiB at a time: memory stays flat for any checkpoint size
TOKEN_ENV = "AQPL_TOKEN"  # noqa: S105  # the variable's name, not a token


class Format(StrEnum):
    safetensors = "safetensors"
    onnx = "onnx"


class PullError(Exception):
    """A failure with the exit code that names its kind."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


@dataclass(frozen=True)
class Target:
    checkpoint_id: int
    round_number: int
    sha256: str  # what the download must hash to
    size_bytes: int | None


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:200] or response.reason_phrase
    detail = body.get("detail") if isinstance(body, dict) else None
    return detail if isinstance(detail, str) else str(detail or body)[:200]


def _check(response: httpx.Response, what: str) -> None:
    """Map an error answer to its exit code, with the server's message."""
    if response.is_success:
        return
    detail = _detail(response)
    if response.status_code in (401, 403):
        raise PullError(
            f"{what}: {detail} (HTTP {response.status_code}; the token needs the checkpoints:read "
            f"scope and the project must be yours: set {TOKEN_ENV} or enter it at the prompt)",
            EXIT_AUTH,
        )
    if response.status_code == 404:
        raise PullError(f"{what}: {detail}", EXIT_NOT_FOUND)
    raise PullError(f"{what}: HTTP {response.status_code}: {detail}", EXIT_ERROR)


def find_checkpoint(
    client: httpx.Client, project_id: int, round_number: int | None, format: Format
) -> Target:
    """The checkpoint of `round_number` (None: the newest) and the sha256 of its file in `format`."""
    if round_number is None:
        response = client.get(f"/api/v1/projects/{project_id}/checkpoints/latest")
        _check(response, f"latest checkpoint of project {project_id}")
        checkpoint: dict[str, Any] = response.json()
    else:
        response = client.get(f"/api/v1/projects/{project_id}/checkpoints")
        _check(response, f"checkpoints of project {project_id}")
        rows: list[dict[str, Any]] = response.json()
        matching = [row for row in rows if row["round_number"] == round_number]
        if not matching:
            published = ", ".join(str(row["round_number"]) for row in rows) or "none yet"
            raise PullError(
                f"project {project_id} has no checkpoint of round {round_number} "
                f"(rounds with checkpoints: {published})",
                EXIT_NOT_FOUND,
            )
        checkpoint = matching[0]
    number = int(checkpoint["round_number"])
    if format is Format.safetensors:
        return Target(int(checkpoint["id"]), number, str(checkpoint["sha256"]), checkpoint.get("size_bytes"))
    metadata = checkpoint.get("metadata") or {}
    onnx = metadata.get("onnx")
    if not isinstance(onnx, dict) or not onnx.get("sha256"):
        reason = metadata.get("onnx_error") or "it was published before ONNX exports existed"
        raise PullError(
            f"checkpoint {checkpoint['id']} (round {number}) has no ONNX file: {reason}; "
            "use --format safetensors",
            EXIT_NOT_FOUND,
        )
    return Target(int(checkpoint["id"]), number, str(onnx["sha256"]), onnx.get("size_bytes"))


def download(client: httpx.Client, target: Target, format: Format, output: Path, *, progress: bool) -> Path:
    """Stream the file into a temporary file beside `output`, check its sha256, then rename it.

    `output` may be a folder: the file keeps the server's name there. On any failure nothing is
    left behind and an existing file at `output` is untouched.
    """
    url = f"/api/v1/checkpoints/{target.checkpoint_id}/file"
    with client.stream("GET", url, params={"format": format.value}) as response:
        if not response.is_success:
            response.read()
        _check(response, f"download of checkpoint {target.checkpoint_id}")
        etag = response.headers.get("etag", "").removeprefix("W/").strip('"')
        if etag and etag != target.sha256:
            raise PullError(
                f"the server's ETag {etag} is not the sha256 {target.sha256} it listed for checkpoint "
                f"{target.checkpoint_id}: was it republished meanwhile? Pull again",
                EXIT_CHECKSUM,
            )
        destination = output / _server_filename(response, target, format) if output.is_dir() else output
        total = int(response.headers.get("content-length", 0)) or target.size_bytes
        handle, temporary = tempfile.mkstemp(
            prefix=f".{destination.name}.", suffix=".part", dir=destination.parent
        )
        try:
            digest = hashlib.sha256()
            with (
                os.fdopen(handle, "wb") as stream,
                tqdm(
                    total=total,
                    unit="B",
                    unit_scale=True,
                    unit_divisor=1024,
                    desc=destination.name,
                    disable=not progress,
                    file=sys.stderr,
                ) as bar,
            ):
                for chunk in response.iter_bytes(CHUNK_BYTES):
                    stream.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
                stream.flush()
                os.fsync(stream.fileno())
            if digest.hexdigest() != target.sha256:
                raise PullError(
                    f"checksum mismatch for checkpoint {target.checkpoint_id}: the download's sha256 is "
                    f"{digest.hexdigest()}, the API recorded {target.sha256} at publish time (the file "
                    "was changed or damaged on the server or on the way); nothing was written",
                    EXIT_CHECKSUM,
                )
            os.replace(temporary, destination)
        finally:
            if os.path.exists(temporary):
                os.unlink(temporary)
    return destination


def _server_filename(response: httpx.Response, target: Target, format: Format) -> str:
    disposition = response.headers.get("content-disposition", "")
    _, _, value = disposition.partition("filename=")
    name = Path(value.strip().strip('"')).name  # a bare name: never a path the server chose
    return name or f"checkpoint{target.checkpoint_id}_round{target.round_number:03d}.{format.value}"


def _base_url(url: str) -> str:
    return url.rstrip("/").removesuffix("/api/v1")


def _token() -> str:
    token = os.environ.get(TOKEN_ENV, "").strip()
    if not token:
        answer = typer.prompt(
            "API token (checkpoints:read scope)", hide_input=True, err=True, default="", show_default=False
        )
        token = str(answer).strip()
    if not token:
        raise PullError(f"no token: set {TOKEN_ENV} or enter one at the prompt", EXIT_AUTH)
    return token


def _fail(error: PullError) -> NoReturn:
    typer.secho(f"error: {error.message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code=error.exit_code)


def pull(
    url: Annotated[str, typer.Option(help="The server, e.g. https://aqpl.example.org.")],
    project: Annotated[int, typer.Option(min=1, help="Project id.")],
    output: Annotated[
        Path,
        typer.Option("--output", "-o", help="File to write, or an existing folder (server's file name)."),
    ],
    round_number: Annotated[
        int | None, typer.Option("--round", min=0, help="The checkpoint of round N (0: pretrained).")
    ] = None,
    latest: Annotated[bool, typer.Option("--latest", help="The newest checkpoint (the default).")] = False,
    format: Annotated[
        Format, typer.Option(help="safetensors (weights + metadata) or onnx.")
    ] = Format.safetensors,
    timeout: Annotated[
        float, typer.Option(min=1, help="Seconds to wait for the server at each step.")
    ] = 60.0,
) -> None:
    """Download a checkpoint of a project: sha256-verified, written atomically, token from AQPL_TOKEN.

    The token (an API token with the checkpoints:read scope) is read from AQPL_TOKEN, or asked for
    with hidden input. The file is streamed to a temporary file beside PATH and renamed only once
    its sha256 matches the one the API recorded at publish time.

    Exit codes: 0 saved; 1 other server error; 2 bad options; 3 not authorised (401/403);
    4 not found (project, round, checkpoint or its ONNX file); 5 checksum mismatch;
    6 server unreachable or connection lost.
    """
    if round_number is not None and latest:
        typer.secho("error: give --round N or --latest, not both", fg=typer.colors.RED, err=True)
        raise typer.Exit(code=EXIT_USAGE)
    output = output.expanduser()
    if not output.is_dir() and not output.parent.is_dir():
        typer.secho(f"error: folder {output.parent} does not exist", fg=typer.colors.RED, err=True)
        raise typer.Exit(code=EXIT_USAGE)
    base = _base_url(url)
    try:
        token = _token()
        with httpx.Client(
            base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=timeout
        ) as client:
            target = find_checkpoint(client, project, round_number, format)
            path = download(client, target, format, output, progress=sys.stderr.isatty())
    except PullError as error:
        _fail(error)
    except httpx.TransportError as error:
        _fail(PullError(f"cannot reach {base}: {error or type(error).__name__}", EXIT_CONNECTION))
    except OSError as error:
        _fail(PullError(f"cannot write {output}: {error}", EXIT_ERROR))
    typer.echo(
        f"saved {path}: project {project}, round {target.round_number}, {format.value}, "
        f"sha256 {target.sha256} (verified)"
    )
