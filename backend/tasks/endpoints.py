"""The annotator's endpoints. `next` and the submit are the hot path: each runs its whole request —
token check, work, commit, and the JSON of the answer — in one thread hop (`in_one_hop`)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, Response, status
from fastapi import Query as QueryParam
from fastapi.exceptions import RequestValidationError
from pydantic import StringConstraints, TypeAdapter, ValidationError

from backend.annotations import service as annotation_service
from backend.annotations.repository import StoredAnswer
from backend.auth.service import as_utc
from backend.deps import Annotator, AnnotatorCredentials, OneHop, SessionDep, SettingsDep, in_one_hop
from backend.models import Assignment
from backend.rounds import lifecycle as round_lifecycle
from backend.rounds import service as round_service
from backend.tasks import service
from backend.tasks.schemas import (
    AnnotationCreate,
    AnnotationRead,
    Ladder,
    LeaseRead,
    TaskProgress,
    TaskRead,
)
from backend.tasks.service import TaskPage

router = APIRouter(prefix="/tasks", tags=["tasks"])

# Ids are 32-bit on PostgreSQL: a larger one is a 422, not a database error.
TaskId = Annotated[int, Path(ge=1, le=2**31 - 1)]

JSON = "application/json"


def task_read(page: TaskPage) -> TaskRead:
    view = page.view
    class_names = view.class_names or []
    show_class = view.config.show_class_name and 0 <= view.label < len(class_names)
    return TaskRead(
        id=view.task_id,
        query_id=view.query_id,
        example_id=view.example_id,
        project_id=view.project_id,
        project_name=view.project_name,
        round_id=view.round_id,
        round_number=view.round_number,
        class_name=class_names[view.label] if show_class else None,
        image_url=f"/api/v1/examples/{view.example_id}/image.png",
        noise_url=f"/api/v1/examples/{view.example_id}/noise",
        image_shape=list(view.image_shape or []),
        ladder=Ladder(),
        current_sigma_index=view.sigma_index_before if view.config.show_sigma_marker else None,
        expires_at=as_utc(view.expires_at),
        progress=TaskProgress(answered=page.answered, total=page.needed, mine=view.mine),
    )


def lease_read(assignment: Assignment) -> LeaseRead:
    return LeaseRead(id=assignment.id, state=assignment.state.value, expires_at=as_utc(assignment.expires_at))


def annotation_read(answer: StoredAnswer) -> AnnotationRead:
    return AnnotationRead(
        id=answer.id,
        task_id=answer.task_id,
        query_id=answer.query_id,
        sigma_index=answer.sigma_index,
        seconds=answer.seconds,
        created_at=as_utc(answer.created_at),
    )


@router.post(
    "/next",
    response_model=TaskRead,
    responses={204: {"description": "Nothing is left for you to annotate right now."}},
)
async def next_task(
    request: Request,
    credentials: AnnotatorCredentials,
    project_id: Annotated[int | None, QueryParam(ge=1, le=2**31 - 1)] = None,
    exclude: Annotated[
        int | None,
        QueryParam(ge=1, le=2**31 - 1, description="Your task on screen: lease another one to prefetch."),
    ] = None,
) -> Response:
    """Lease the next query of a project you work on (your current lease if you hold one); 204 if none."""

    def work(hop: OneHop) -> Response:
        with hop.unit_of_work() as session:
            caller = credentials.caller(session, lock_user=True)
            lease_id = service.next_task(
                session,
                caller.user_id,
                hop.settings.lease_seconds,
                project_id,
                exclude,
                annotator_locked=True,
                role=caller.role,
            )
            page = (
                None
                if lease_id is None
                else service.task_page(session, caller.user_id, lease_id, hop.progress)
            )
        if page is None:
            with hop.unit_of_work(stop_if_gone=False) as session:
                round_service.close_finished_rounds(session, project_id)
            return Response(status_code=status.HTTP_204_NO_CONTENT)
        return Response(task_read(page).model_dump_json(), media_type=JSON)

    return await in_one_hop(request, work)


@router.get("/{task_id}")
def get_task(task_id: TaskId, user: Annotator, session: SessionDep) -> TaskRead:
    """One of your tasks, as `next` returned it."""
    return task_read(service.task_page(session, user.id, task_id))


# The submit validates its body and key itself, after the token's check (which happens in the
# request's one thread hop): a caller without the scope learns nothing, not even what a valid answer is.
_IDEMPOTENCY_KEY = TypeAdapter(Annotated[str, StringConstraints(min_length=1, max_length=100)])
_ANSWER_OPENAPI = {
    "parameters": [
        {
            "name": "Idempotency-Key",
            "in": "header",
            "required": True,
            "description": "A unique string per answer (a UUID); a retry with the same key gets the "
            "first answer.",
            "schema": {"type": "string", "minLength": 1, "maxLength": 100, "title": "Idempotency-Key"},
        }
    ],
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": AnnotationCreate.model_json_schema()}},
    },
}


def _parse_answer(body: bytes, key: str | None) -> tuple[AnnotationCreate, str]:
    """The answer and its Idempotency-Key, or a 422 listing every problem (as FastAPI's own would)."""
    errors: list[Any] = []
    answer = None
    try:
        answer = AnnotationCreate.model_validate_json(body)
    except ValidationError as error:
        for item in error.errors(include_url=False):
            shown = item.get("input")  # the raw body, when it is not JSON at all: echo it as text
            if isinstance(shown, bytes):
                shown = shown.decode("utf-8", "replace")
            errors.append({**item, "loc": ("body", *item["loc"]), "input": shown})
    try:
        key = _IDEMPOTENCY_KEY.validate_python(key)
    except ValidationError as error:
        errors += [{**item, "loc": ("header", "Idempotency-Key")} for item in error.errors(include_url=False)]
    if errors or answer is None or key is None:
        raise RequestValidationError(errors)
    return answer, key


@router.post(
    "/{task_id}/annotation",
    status_code=status.HTTP_201_CREATED,
    response_model=AnnotationRead,
    openapi_extra=_ANSWER_OPENAPI,
)
async def submit_annotation(request: Request, task_id: TaskId, credentials: AnnotatorCredentials) -> Response:
    """Answer a task: the highest σ index at which you still recognise the image (replays answer 201 too)."""
    raw = await request.body()
    key = request.headers.get("idempotency-key")

    def work(hop: OneHop) -> Response:
        with hop.unit_of_work() as session:
            caller = credentials.caller(session)
            body, idempotency_key = _parse_answer(raw, key)
            submitted = annotation_service.submit_answer(
                session, caller.user_id, task_id, body.sigma_index, body.seconds, idempotency_key
            )
        if not submitted.replayed and not submitted.gold:
            hop.progress.count_answer(submitted.round_id, one_more_needed=submitted.asked_one_more)
        if submitted.completed_round_id is not None:
            # After the answer's commit, whether or not its client is still there: the last one closes.
            with hop.unit_of_work(stop_if_gone=False) as session:
                round_lifecycle.close_if_complete(session, submitted.completed_round_id)
        content = annotation_read(submitted.annotation).model_dump_json()
        return Response(content, status_code=status.HTTP_201_CREATED, media_type=JSON)

    return await in_one_hop(request, work)


@router.post("/{task_id}/skip")
def skip_task(task_id: TaskId, user: Annotator, session: SessionDep) -> LeaseRead:
    """Give a task back; you will not be offered that query again."""
    return lease_read(service.skip(session, user.id, task_id))


@router.post("/{task_id}/renew")
def renew_task(task_id: TaskId, user: Annotator, session: SessionDep, settings: SettingsDep) -> LeaseRead:
    """Keep the task for another lease period (the page calls this while it stays open)."""
    return lease_read(service.renew(session, user.id, task_id, settings.lease_seconds))
