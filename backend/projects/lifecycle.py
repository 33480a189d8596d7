"""A project's lifecycle on its way to `ready`: the steps it may take and which job runs next.

    awaiting_upload -> importing -> pretraining -> evaluating (round 0) -> ready
    any step before ready -> failed -> (retry) the step that failed

The step lives in progress["step"] and `status` is derived from it (STATUS_OF), both written only
here, so the two never disagree. Creation, upload, retry, resume after a restart and every job's
hand-over go through these functions; worker jobs assign no state themselves.
"""

from __future__ import annotations

from typing import Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from aqpl import job_names
from backend.errors import Conflict
from backend.models import Project, ProjectStatus, ProjectStep
from backend.projects import repository
from backend.queue import enqueue_after_commit

TRANSITIONS: Final[dict[ProjectStep, frozenset[ProjectStep]]] = {
    ProjectStep.awaiting_upload: frozenset({ProjectStep.importing}),
    ProjectStep.importing: frozenset({ProjectStep.pretraining}),
    ProjectStep.pretraining: frozenset({ProjectStep.evaluating}),
    ProjectStep.evaluating: frozenset({ProjectStep.ready}),
    ProjectStep.ready: frozenset(),
}
STATUS_OF: Final[dict[ProjectStep, ProjectStatus]] = {
    ProjectStep.awaiting_upload: ProjectStatus.importing,
    ProjectStep.importing: ProjectStatus.importing,
    ProjectStep.pretraining: ProjectStatus.pretraining,
    ProjectStep.evaluating: ProjectStatus.pretraining,
    ProjectStep.ready: ProjectStatus.ready,
}


class IllegalTransition(Conflict):
    """A step the table does not allow (a 409 when it reaches the API)."""


Job = tuple[str, tuple[int, ...]]


def step_of(project: Project) -> ProjectStep:
    """The step the project is in (for a failed project: the step that failed)."""
    if project.status == ProjectStatus.ready:
        return ProjectStep.ready
    return ProjectStep((project.progress or {}).get("step", ProjectStep.importing))


def is_at(project: Project, step: ProjectStep) -> bool:
    """True if the project is working on `step` (not failed at it): a job's check before it runs."""
    return project.status != ProjectStatus.failed and step_of(project) == step


def locked_at(session: Session, project_id: int, step: ProjectStep) -> Project | None:
    """The project, its row locked, if it is working on `step`; None otherwise (the work is done)."""
    project = repository.get(session, project_id, for_update=True)
    return project if project is not None and is_at(project, step) else None


def next_jobs(project: Project) -> list[Job]:
    """The job that carries the project on from its step (none while it waits, fails or is ready)."""
    if project.status == ProjectStatus.failed:
        return []
    step = step_of(project)
    if step == ProjectStep.importing:
        return [(job_names.IMPORT_DATASET, (project.id,))]
    if step == ProjectStep.pretraining:
        return [(job_names.PRETRAIN, (project.id,))]
    if step == ProjectStep.evaluating:
        return [(job_names.EVALUATE, (project.id, 0))]
    return []


def send_next_jobs(session: Session, project: Project) -> int:
    jobs = next_jobs(project)
    for name, args in jobs:
        enqueue_after_commit(session, name, *args)
    return len(jobs)


def record_progress(project: Project, done: int, total: int) -> None:
    """The one shape of a project's progress: its step, done of total."""
    project.progress = {"step": step_of(project).value, "done": done, "total": total}


def begin(session: Session, project: Project, *, awaiting_upload: bool) -> None:
    """A new project (added to the session by the caller) at its first step, its job sent after commit."""
    _enter(project, ProjectStep.awaiting_upload if awaiting_upload else ProjectStep.importing)
    session.add(project)
    session.flush()
    send_next_jobs(session, project)


def advance(session: Session, project: Project, to: ProjectStep) -> None:
    """project (locked by the caller) -> step `to`: checked against the table, progress reset,
    the next job sent after commit."""
    if project.status == ProjectStatus.failed or to not in TRANSITIONS[step_of(project)]:
        at = f"{project.status.value} at {step_of(project).value}"
        raise IllegalTransition(f"project {project.id} is {at}: it cannot go to {to.value}")
    _enter(project, to)
    session.flush()
    send_next_jobs(session, project)


def fail(project: Project, error: str) -> None:
    """project (locked) -> failed; progress["step"] keeps the step that failed, for retry."""
    if project.status in (ProjectStatus.ready, ProjectStatus.failed):
        raise IllegalTransition(f"project {project.id} is {project.status.value}: it cannot fail")
    step = step_of(project)
    project.status = ProjectStatus.failed
    project.error = error
    project.progress = {**(project.progress or {}), "step": step.value}


def retry(session: Session, project: Project) -> None:
    """failed -> the step that failed, its job sent again after commit."""
    if project.status != ProjectStatus.failed:
        raise Conflict(f"project {project.id} has not failed (status {project.status.value})")
    project.error = None
    _enter(project, step_of(project))
    session.flush()
    send_next_jobs(session, project)


def resend_interrupted(session: Session) -> int:
    """Send again the job of every project mid-way to ready; returns how many were sent."""
    working = [STATUS_OF[ProjectStep.importing], STATUS_OF[ProjectStep.pretraining]]
    projects = session.scalars(select(Project).where(Project.status.in_(working)).order_by(Project.id))
    return sum(send_next_jobs(session, project) for project in projects)


def _enter(project: Project, step: ProjectStep) -> None:
    project.status = STATUS_OF[step]
    project.progress = None if step == ProjectStep.ready else {"step": step.value, "done": 0, "total": 1}
