from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Path, Response, status

from backend.deps import Lead, SessionDep
from backend.gold import service
from backend.gold.schemas import (
    GoldCreate,
    GoldFromAgreement,
    GoldFromAgreementResult,
    GoldRead,
    GoldSettings,
)

router = APIRouter(tags=["gold"])

# Ids are 32-bit on PostgreSQL: a larger one is a 422, not a database error.
ProjectId = Annotated[int, Path(ge=1, le=2**31 - 1)]
GoldId = Annotated[int, Path(ge=1, le=2**31 - 1)]


@router.get("/projects/{project_id}/gold")
def list_gold(project_id: ProjectId, user: Lead, session: SessionDep) -> list[GoldRead]:
    """The project's gold examples: training examples of known σ mixed into annotators' tasks."""
    return service.list_gold(session, user, project_id)


@router.post("/projects/{project_id}/gold", status_code=status.HTTP_201_CREATED)
def create_gold(project_id: ProjectId, body: GoldCreate, user: Lead, session: SessionDep) -> GoldRead:
    """Make a training example gold at the σ index you know (0..90)."""
    return service.create_gold(session, user, project_id, body)


@router.post("/projects/{project_id}/gold/from-agreement")
def gold_from_agreement(
    project_id: ProjectId,
    user: Lead,
    session: SessionDep,
    body: Annotated[GoldFromAgreement | None, Body()] = None,
) -> GoldFromAgreementResult:
    """Make gold of every example whose answers in an earlier round agreed (enough answers, small MAD)."""
    return service.gold_from_agreement(session, user, project_id, body or GoldFromAgreement())


@router.get("/projects/{project_id}/gold/settings")
def gold_settings(project_id: ProjectId, user: Lead, session: SessionDep) -> GoldSettings:
    """The project's gold rate, flagging threshold and whether aggregation leaves flagged people out."""
    return service.gold_settings(session, user, project_id)


@router.put("/projects/{project_id}/gold/settings")
def update_gold_settings(
    project_id: ProjectId, body: GoldSettings, user: Lead, session: SessionDep
) -> GoldSettings:
    """Change them: the gold rate applies to rounds opened from now on, the rest to aggregations to come."""
    return service.update_gold_settings(session, user, project_id, body)


@router.delete("/gold/{gold_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_gold(gold_id: GoldId, user: Lead, session: SessionDep) -> Response:
    """Stop using an example as gold (answers already given keep counting towards quality)."""
    service.delete_gold(session, user, gold_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
