"""Gold questions: who may list, add and delete a project's gold examples, and making gold of the
answers that agreed in earlier rounds.

The lead who manages the project (admins: all); another's project or gold example is a 404, as for
one that does not exist. Services flush, never commit.
"""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from backend.errors import Conflict, NotFound
from backend.gold import repository
from backend.gold.schemas import (
    GoldCreate,
    GoldFromAgreement,
    GoldFromAgreementResult,
    GoldRead,
    GoldSettings,
)
from backend.models import Example, GoldExample, GoldSource, Split, User
from backend.projects.service import can_manage, ensure_can_manage, get_managed_project, get_project


def gold_read(row: GoldExample) -> GoldRead:
    return GoldRead.model_validate(row, from_attributes=True)


def list_gold(session: Session, user: User, project_id: int) -> list[GoldRead]:
    project = get_managed_project(session, user, project_id)
    return [gold_read(row) for row in repository.of_project(session, project.id)]


def create_gold(session: Session, user: User, project_id: int, body: GoldCreate) -> GoldRead:
    """A training example of the project becomes gold at the σ the lead knows; 409 if it is already."""
    project = get_managed_project(session, user, project_id)
    example = session.get(Example, body.example_id)
    # Test examples measure the model: asking people about them would leak the evaluation set.
    if example is None or example.project_id != project.id or example.split != Split.train:
        raise NotFound(f"example {body.example_id} is not a training example of project {project.id}")
    if repository.by_example(session, project.id, example.id) is not None:
        raise Conflict(f"example {example.id} is already gold in project {project.id}; delete it first")
    row = GoldExample(
        project_id=project.id,
        example_id=example.id,
        sigma_index=body.sigma_index,
        source=GoldSource.typed,
        created_by=user.id,
    )
    session.add(row)
    try:
        session.flush()
    except IntegrityError as error:  # the same example added by a concurrent request
        raise Conflict(f"example {example.id} is already gold in project {project.id}") from error
    return gold_read(row)


def gold_from_agreement(
    session: Session, user: User, project_id: int, body: GoldFromAgreement
) -> GoldFromAgreementResult:
    """Every example whose latest agreeing query (answers ≥ min_answers, MAD ≤ max_mad) is not gold
    yet becomes gold at that query's consensus; the ones already gold are counted, not changed."""
    project = get_managed_project(session, user, project_id)
    existing = {row.example_id for row in repository.of_project(session, project.id)}
    agreeing = repository.agreeing_queries(session, project.id, body.max_mad, body.min_answers)
    rows = [
        GoldExample(
            project_id=project.id,
            example_id=example_id,
            sigma_index=sigma_index,
            source=GoldSource.agreement,
            from_query_id=query_id,
            created_by=user.id,
        )
        for query_id, example_id, sigma_index in agreeing
        if example_id not in existing
    ]
    session.add_all(rows)
    try:
        session.flush()
    except IntegrityError as error:
        raise Conflict("gold examples of this project changed meanwhile; try again") from error
    return GoldFromAgreementResult(
        added=[gold_read(row) for row in rows], skipped_existing=len(agreeing) - len(rows)
    )


def gold_settings(session: Session, user: User, project_id: int) -> GoldSettings:
    project = get_managed_project(session, user, project_id)
    return GoldSettings.model_validate(project.config.model_dump(include=set(GoldSettings.model_fields)))


def update_gold_settings(session: Session, user: User, project_id: int, body: GoldSettings) -> GoldSettings:
    """Change the project's gold settings: `gold_rate` applies to rounds that open from now on (a round
    keeps the rate it opened with), `exclude_flagged` and the threshold to aggregations from now on."""
    project = get_project(session, project_id, for_update=True)
    ensure_can_manage(user, project)
    project.config = project.config.model_copy(update=body.model_dump())
    session.flush()
    return body


def delete_gold(session: Session, user: User, gold_id: int) -> None:
    """The gold example; gold queries already handed out keep their known σ."""
    row = repository.get(session, gold_id)
    # Another's gold example gets the 404 of one that does not exist: its project is not disclosed.
    if row is None or not can_manage(user, get_project(session, row.project_id)):
        raise NotFound(f"gold example {gold_id} does not exist")
    session.delete(row)
    session.flush()
