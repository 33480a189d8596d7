from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Path, Response, status
from fastapi import Query as QueryParam
from sqlalchemy.orm import Session

from backend.annotations import service as annotation_service
from backend.auth.service import as_utc
from backend.deps import Annotator, SessionDep, SettingsDep
from backend.models import Annotation, Assignment
from backend.tasks import repository, service
from backend.tasks.schemas import (
    AnnotationCreate,
    AnnotationRead,
    Ladder,
    LeaseRead,
    TaskProgress,
    TaskRead,
)

router = APIRouter(prefix="/tasks", tags=["tasks"])

# Ids are 32-bit on PostgreSQL: a larger one is a 422, not a database error.
TaskId = Annotated[int, Path(ge=1, le=2**31 - 1)]

IdempotencyKey = Annotated[
    str,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=100,
        description="A unique string per answer (a UUID); a retry with the same key gets the first answer.",
    ),
]


def task_read(session: Session, assignment: Assignment, annotator_id: int) -> TaskRead:
    view = repository.task_rows(session, assignment.query_id, annotator_id)
    project, example, query, round_ = view.project, view.example, view.query, view.round_
    class_names = project.class_names or []
    show_class = bool(project.config.get("show_class_name", True)) and 0 <= example.label < len(class_names)
    return TaskRead(
        id=assignment.id,
        query_id=query.id,
        example_id=example.id,
        project_id=project.id,
        project_name=project.name,
        round_id=round_.id,
        round_number=round_.number,
        class_name=class_names[example.label] if show_class else None,
        image_url=f"/api/v1/examples/{example.id}/image.png",
        noise_url=f"/api/v1/examples/{example.id}/noise",
        image_shape=list(project.image_shape or []),
        ladder=Ladder(),
        current_sigma_index=query.sigma_index_before if project.config.get("show_sigma_marker") else None,
        expires_at=as_utc(assignment.expires_at),
        progress=TaskProgress(answered=view.answered, total=view.needed, mine=view.mine),
    )


def lease_read(assignment: Assignment) -> LeaseRead:
    return LeaseRead(id=assignment.id, state=assignment.state.value, expires_at=as_utc(assignment.expires_at))


def annotation_read(annotation: Annotation) -> AnnotationRead:
    return AnnotationRead(
        id=annotation.id,
        task_id=annotation.assignment_id,
        query_id=annotation.query_id,
        sigma_index=annotation.sigma_index,
        seconds=annotation.seconds,
        created_at=as_utc(annotation.created_at),
    )


@router.post(
    "/next",
    response_model=TaskRead,
    responses={204: {"description": "Nothing is left for you to annotate right now."}},
)
def next_task(
    user: Annotator,
    session: SessionDep,
    settings: SettingsDep,
    project_id: Annotated[int | None, QueryParam(ge=1, le=2**31 - 1)] = None,
    exclude: Annotated[
        int | None,
        QueryParam(ge=1, le=2**31 - 1, description="Your task on screen: lease another one to prefetch."),
    ] = None,
) -> TaskRead | Response:
    """Lease the next query to answer (your current lease if you hold one); 204 when none is left."""
    assignment = service.next_task(session, user, settings.lease_seconds, project_id, exclude)
    if assignment is None:
        return Response(status_code=status.HTTP_204_NO_CONTENT)
    return task_read(session, assignment, user.id)


@router.get("/{task_id}")
def get_task(task_id: TaskId, user: Annotator, session: SessionDep) -> TaskRead:
    """One of your tasks, as `next` returned it."""
    return task_read(session, service.get_own_assignment(session, user, task_id), user.id)


@router.post("/{task_id}/annotation", status_code=status.HTTP_201_CREATED)
def submit_annotation(
    task_id: TaskId,
    body: AnnotationCreate,
    idempotency_key: IdempotencyKey,
    user: Annotator,
    session: SessionDep,
) -> AnnotationRead:
    """Answer a task: the highest σ index at which you still recognise the image (replays answer 201 too)."""
    submitted = annotation_service.submit_answer(
        session, user, task_id, body.sigma_index, body.seconds, idempotency_key
    )
    return annotation_read(submitted.annotation)


@router.post("/{task_id}/skip")
def skip_task(task_id: TaskId, user: Annotator, session: SessionDep) -> LeaseRead:
    """Give a task back; you will not be offered that query again."""
    return lease_read(service.skip(session, user, task_id))


@router.post("/{task_id}/renew")
def renew_task(task_id: TaskId, user: Annotator, session: SessionDep, settings: SettingsDep) -> LeaseRead:
    """Keep the task for another lease period (the page calls this while it stays open)."""
    return lease_read(service.renew(session, user, task_id, settings.lease_seconds))
