from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request, Response, status
from fastapi.responses import FileResponse, PlainTextResponse

from backend.checkpoints import repository, service
from backend.checkpoints.schemas import CheckpointFormat, CheckpointRead
from backend.deps import CheckpointReader, SessionDep, SettingsDep

router = APIRouter(tags=["checkpoints"])

# Ids are 32-bit on PostgreSQL: a larger one is a 422, not a database error.
ProjectId = Annotated[int, Path(ge=1, le=2**31 - 1)]
CheckpointId = Annotated[int, Path(ge=1, le=2**31 - 1)]
MARKDOWN = "text/markdown; charset=utf-8"


@router.get("/projects/{project_id}/checkpoints")
def list_checkpoints(
    project_id: ProjectId, user: CheckpointReader, session: SessionDep
) -> list[CheckpointRead]:
    """Every published checkpoint of the project, round 0 (pretrained) first."""
    return service.list_for_project(session, user, project_id)


@router.get("/projects/{project_id}/checkpoints/latest")
def latest_checkpoint(project_id: ProjectId, user: CheckpointReader, session: SessionDep) -> CheckpointRead:
    """The newest checkpoint of the project."""
    return repository.checkpoint_read(service.latest_for_project(session, user, project_id))


@router.get("/checkpoints/{checkpoint_id}")
def get_checkpoint(
    checkpoint_id: CheckpointId, user: CheckpointReader, session: SessionDep
) -> CheckpointRead:
    """A checkpoint's metadata (how to rebuild the model) and metrics."""
    return repository.checkpoint_read(service.get_checkpoint(session, user, checkpoint_id))


@router.get(
    "/checkpoints/{checkpoint_id}/file",
    response_class=FileResponse,
    responses={
        200: {"content": {"application/octet-stream": {}}},
        206: {"description": "The requested byte range"},
        304: {"description": "Not modified (If-None-Match matched the ETag)"},
    },
)
def download_checkpoint(
    checkpoint_id: CheckpointId,
    request: Request,
    user: CheckpointReader,
    session: SessionDep,
    settings: SettingsDep,
    format: CheckpointFormat = "safetensors",
) -> Response:
    """The safetensors (default) or ONNX file; ETag is its sha256, conditional and range requests honoured."""
    checkpoint = service.get_checkpoint(session, user, checkpoint_id)
    file = service.download_file(settings, checkpoint, format)
    etag = f'"{file.sha256}"'
    headers = {"ETag": etag, "Cache-Control": "private, max-age=0, must-revalidate"}
    if_none_match = request.headers.get("if-none-match", "")
    candidates = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",") if tag.strip()}
    if etag in candidates or "*" in candidates:
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers=headers)
    return FileResponse(
        file.path, media_type="application/octet-stream", filename=file.filename, headers=headers
    )


@router.get(
    "/checkpoints/{checkpoint_id}/card",
    response_class=PlainTextResponse,
    responses={200: {"content": {MARKDOWN: {}}}},
)
def checkpoint_card(checkpoint_id: CheckpointId, user: CheckpointReader, session: SessionDep) -> Response:
    """The model card in Markdown: data, round, σ, metrics, training and the ONNX input contract."""
    return PlainTextResponse(service.model_card(session, user, checkpoint_id), media_type=MARKDOWN)
