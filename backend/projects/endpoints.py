from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Response, UploadFile, status

from backend import storage
from backend.deps import Lead, SessionDep, SettingsDep
from backend.errors import DomainError, PayloadTooLarge
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
    return service.project_read(session, project)


@router.get("")
def list_projects(user: Lead, session: SessionDep) -> list[ProjectSummary]:
    """Projects you manage (all of them for an admin), newest first."""
    return service.list_projects(session, user)


@router.get("/{project_id}")
def get_project(project_id: ProjectId, user: Lead, session: SessionDep) -> ProjectRead:
    """A project with its status, progress, σ counts and histogram, current round and latest checkpoint."""
    return service.project_read(session, service.get_managed_project(session, user, project_id))


@router.post("/{project_id}/dataset")
def upload_dataset(
    project_id: ProjectId, file: UploadFile, user: Lead, session: SessionDep, settings: SettingsDep
) -> ProjectRead:
    """Upload the dataset of a project created without a path (.npz, or a .zip of class folders)."""
    project = service.get_managed_project(session, user, project_id)
    service.ensure_awaiting_upload(project)  # before a byte is stored: never overwrite an import's files
    if file.size is not None and file.size > settings.max_upload_bytes:
        raise PayloadTooLarge(f"the upload is larger than {settings.max_upload_bytes} bytes")
    path = storage.save_upload(settings, project.id, file.filename or "upload", file.file)
    try:
        service.attach_upload(session, settings, project, str(path))
    except DomainError:
        storage.discard_upload(settings, project.id)  # a refused dataset leaves no file behind
        raise
    return service.project_read(session, project)


@router.post("/{project_id}/retry")
def retry_project(project_id: ProjectId, user: Lead, session: SessionDep) -> ProjectRead:
    """Resume a failed project at the step that failed."""
    project = service.retry_project(session, service.get_managed_project(session, user, project_id))
    return service.project_read(session, project)


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
