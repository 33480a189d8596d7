"""Checkpoints: published models of a project, readable by their owner (admins: all)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.orm import Session

from backend.checkpoints import repository
from backend.checkpoints.schemas import CheckpointRead
from backend.errors import NotFound
from backend.models import Checkpoint, User
from backend.projects.service import ensure_can_manage, get_project
from backend.settings import Settings


def list_for_project(session: Session, user: User, project_id: int) -> list[CheckpointRead]:
    ensure_can_manage(user, get_project(session, project_id))
    return [repository.checkpoint_read(row) for row in repository.of_project(session, project_id)]


def latest_for_project(session: Session, user: User, project_id: int) -> Checkpoint:
    ensure_can_manage(user, get_project(session, project_id))
    rows = repository.of_project(session, project_id)
    if not rows:
        raise NotFound(f"project {project_id} has no checkpoint yet (it is still pretraining)")
    return rows[-1]


def get_checkpoint(session: Session, user: User, checkpoint_id: int) -> Checkpoint:
    checkpoint = repository.get(session, checkpoint_id)
    if checkpoint is None:
        raise NotFound(f"checkpoint {checkpoint_id} does not exist")
    ensure_can_manage(user, get_project(session, checkpoint.project_id))
    return checkpoint


def file_path(settings: Settings, checkpoint: Checkpoint) -> Path:
    path = settings.storage_dir / checkpoint.file
    if not path.is_file():
        raise NotFound(f"the file of checkpoint {checkpoint.id} is missing from storage")
    return path
