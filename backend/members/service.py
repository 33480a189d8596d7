"""Project members: leads choose which annotators take their project's tasks. Services flush, never commit.

A project is open to every annotator by default (`Project.all_annotators`); a lead may instead list
the annotators who work on it. `tasks/next` applies the rule in its own SQL
(`backend.tasks.repository._may_take_tasks`). A change applies to every lease made after it commits;
the leases held by people it leaves out go back to the pool for good, so they can neither answer
nor renew them (`backend.tasks.service.take_back_from_outsiders`).
"""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy.orm import Session

from backend.errors import InvalidInput, NotFound
from backend.members import repository
from backend.members.schemas import MemberRead, ProjectAnnotatorsRead
from backend.models import Project, User
from backend.projects import repository as projects_repository
from backend.projects.service import ensure_can_manage, get_managed_project
from backend.tasks.service import take_back_from_outsiders


def project_annotators(session: Session, user: User, project_id: int) -> ProjectAnnotatorsRead:
    """Who works on a project the user manages."""
    return annotators_read(session, get_managed_project(session, user, project_id))


def annotators_read(session: Session, project: Project) -> ProjectAnnotatorsRead:
    return ProjectAnnotatorsRead(
        project_id=project.id,
        all_annotators=project.all_annotators,
        annotators=[
            MemberRead(id=member.id, username=member.username, is_active=member.is_active)
            for member in repository.members(session, project.id)
        ],
    )


def set_project_annotators(
    session: Session, user: User, project_id: int, *, all_annotators: bool, annotator_ids: Collection[int]
) -> ProjectAnnotatorsRead:
    """Open the project to every annotator, or to the listed ones only; the list is kept either way."""
    # The project's row first (two changes of one project queue up), then the people's rows.
    project = projects_repository.get(session, project_id, for_update=True)
    if project is None:
        raise NotFound(f"project {project_id} does not exist")
    ensure_can_manage(user, project)
    wanted = set(annotator_ids)
    unknown = sorted(wanted - repository.annotator_ids_among(session, wanted))
    if unknown:
        shown = ", ".join(str(user_id) for user_id in unknown[:10]) + (" …" if len(unknown) > 10 else "")
        raise InvalidInput(f"not annotator accounts: {shown}", loc=("body", "annotator_ids"))
    current = repository.member_ids(session, project.id)
    repository.remove(session, project.id, current - wanted)
    repository.add(session, project.id, sorted(wanted - current))
    project.all_annotators = all_annotators
    session.flush()
    take_back_from_outsiders(session, project.id)
    return annotators_read(session, project)
