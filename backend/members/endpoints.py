from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from backend.deps import Lead, SessionDep
from backend.members import service
from backend.members.schemas import ProjectAnnotatorsRead, ProjectAnnotatorsUpdate

router = APIRouter(prefix="/projects", tags=["projects"])

# Ids are 32-bit on PostgreSQL: a larger one is a 422, not a database error.
ProjectId = Annotated[int, Path(ge=1, le=2**31 - 1)]


@router.get("/{project_id}/annotators")
def get_project_annotators(project_id: ProjectId, user: Lead, session: SessionDep) -> ProjectAnnotatorsRead:
    """Who takes the project's tasks: every annotator, or only those listed."""
    return service.project_annotators(session, user, project_id)


@router.put("/{project_id}/annotators")
def set_project_annotators(
    project_id: ProjectId, body: ProjectAnnotatorsUpdate, user: Lead, session: SessionDep
) -> ProjectAnnotatorsRead:
    """Open the project to every annotator, or to the listed ones only; others' leases on it go back."""
    return service.set_project_annotators(
        session, user, project_id, all_annotators=body.all_annotators, annotator_ids=body.annotator_ids
    )
