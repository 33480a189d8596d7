from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request, Response, status
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile

from backend.db import unit_of_work
from backend.deps import Lead, ManagerCredentials, SessionDep, SettingsDep
from backend.errors import InvalidInput, PayloadTooLarge
from backend.models import SigmaSource, Split
from backend.projects import service
from backend.projects.repository import rounds_of
from backend.projects.schemas import ExamplePage, ProjectCreate, ProjectMetrics, ProjectRead, ProjectSummary
from backend.rounds import service as round_service
from backend.rounds.repository import round_read
from backend.rounds.schemas import RoundCreated, RoundRead

router = APIRouter(prefix="/projects", tags=["projects"])

# Ids are 32-bit on PostgreSQL: a larger one is a 422, not a database error.
ProjectId = Annotated[int, Path(ge=1, le=2**31 - 1)]

EXPORT_MEDIA_TYPES = {"csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson"}


@router.post("", status_code=status.HTTP_201_CREATED)
def create_project(
    body: ProjectCreate, user: Lead, session: SessionDep, settings: SettingsDep
) -> ProjectRead:
    """Create a project; the worker imports the dataset, pretrains and evaluates it (status -> ready)."""
    project = service.create_project(session, settings, user, body)
    return service.project_read(session, settings, project)


@router.get("")
def list_projects(user: Lead, session: SessionDep) -> list[ProjectSummary]:
    """Projects you manage (all of them for an admin), newest first."""
    return service.list_projects(session, user)


@router.get("/{project_id}")
def get_project(project_id: ProjectId, user: Lead, session: SessionDep, settings: SettingsDep) -> ProjectRead:
    """A project with its status, progress, σ counts and histogram, current round and latest checkpoint."""
    return service.project_read(session, settings, service.get_managed_project(session, user, project_id))


# The body the upload reads itself (after its checks), described for the API docs and clients.
UPLOAD_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {"file": {"type": "string", "format": "binary"}},
                }
            }
        },
    }
}


async def _dataset_file(request: Request) -> tuple[FormData, UploadFile]:
    """The multipart field `file` (spooled to a temporary file as it arrives), and its form to close."""
    form = await request.form(max_files=1, max_fields=8)
    file = form.get("file")
    if not isinstance(file, UploadFile):
        await form.close()
        raise InvalidInput(
            "send the dataset as a multipart/form-data file field named 'file'", loc=("body", "file")
        )
    return form, file


@router.post("/{project_id}/dataset", openapi_extra=UPLOAD_BODY)
async def upload_dataset(
    project_id: ProjectId, request: Request, credentials: ManagerCredentials
) -> ProjectRead:
    """Upload the dataset of a project created without a path (.npz, or a .zip of class folders)."""
    sessions, settings = request.app.state.sessions, request.app.state.settings

    def authorise() -> None:
        with unit_of_work(sessions) as session:
            service.authorise_upload(session, credentials.user(session), project_id)

    def store(file: UploadFile) -> ProjectRead:
        with unit_of_work(sessions) as session:
            name = file.filename or "upload"
            project = service.store_upload(
                session, settings, credentials.user(session), project_id, name, file.file
            )
            return service.project_read(session, settings, project)

    # Who asks, and whether the project takes an upload, are settled (401/403/404/409) and committed
    # before a byte of the body is read; no transaction is open while the client sends its file.
    await run_in_threadpool(authorise)
    form, file = await _dataset_file(request)
    try:
        if file.size is not None and file.size > settings.max_upload_bytes:
            raise PayloadTooLarge(f"the upload is larger than {settings.max_upload_bytes} bytes")
        return await run_in_threadpool(store, file)
    finally:
        await form.close()


@router.post("/{project_id}/retry")
def retry_project(
    project_id: ProjectId, user: Lead, session: SessionDep, settings: SettingsDep
) -> ProjectRead:
    """Resume a failed project at the step that failed."""
    project = service.retry_project(session, service.get_managed_project(session, user, project_id))
    return service.project_read(session, settings, project)


@router.get("/{project_id}/examples")
def list_examples(
    project_id: ProjectId,
    user: Lead,
    session: SessionDep,
    split: Split | None = None,
    sigma_source: SigmaSource | None = None,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> ExamplePage:
    """Examples of the project, paged, optionally filtered by split and σ source."""
    project = service.get_managed_project(session, user, project_id)
    return service.list_examples(
        session, project, split=split, sigma_source=sigma_source, offset=offset, limit=limit
    )


@router.post("/{project_id}/rounds", status_code=status.HTTP_201_CREATED)
def start_round(project_id: ProjectId, user: Lead, session: SessionDep) -> RoundCreated:
    """Open the next query round: the worker scores every training example and selects the queries."""
    project = service.get_managed_project(session, user, project_id)
    round_ = round_service.start_round(session, project, started_by=user)
    return RoundCreated(id=round_.id, number=round_.number, state=round_.state.value)


@router.get("/{project_id}/rounds")
def list_rounds(project_id: ProjectId, user: Lead, session: SessionDep) -> list[RoundRead]:
    """Every round of the project, oldest first."""
    project = service.get_managed_project(session, user, project_id)
    return [round_read(session, round_) for round_ in rounds_of(session, project.id)]


@router.get("/{project_id}/metrics")
def project_metrics(project_id: ProjectId, user: Lead, session: SessionDep) -> ProjectMetrics:
    """Per round: cumulative queries, clean / Gaussian / corruption accuracy, σ histograms, agreement."""
    return service.project_metrics(session, service.get_managed_project(session, user, project_id))


@router.get("/{project_id}/export")
def export_project(
    project_id: ProjectId, user: Lead, session: SessionDep, format: Literal["csv", "jsonl"] = "csv"
) -> Response:
    """Every triplet (example, label, σ) with its σ history and every raw answer, as CSV or JSON lines."""
    project = service.get_managed_project(session, user, project_id)
    body = "".join(service.export_lines(session, project, format))
    filename = f"project_{project.id}_triplets.{format}"
    return Response(
        body,
        media_type=EXPORT_MEDIA_TYPES[format],
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
