"""Checkpoints: published models of a project, readable by their owner (admins: all)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from sqlalchemy.orm import Session

from backend.checkpoints import repository
from backend.checkpoints.card import render_card
from backend.checkpoints.schemas import CheckpointFormat, CheckpointRead
from backend.errors import NotFound
from backend.models import Checkpoint, User
from backend.projects.service import can_manage, ensure_can_manage, get_project
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
    # Another's checkpoint gets the 404 of one that does not exist: its project is not disclosed.
    if checkpoint is None or not can_manage(user, get_project(session, checkpoint.project_id)):
        raise NotFound(f"checkpoint {checkpoint_id} does not exist")
    return checkpoint


def file_path(settings: Settings, checkpoint: Checkpoint) -> Path:
    path = settings.storage_dir / checkpoint.file
    if not path.is_file():
        raise NotFound(f"the file of checkpoint {checkpoint.id} is missing from storage")
    return path


@dataclass(frozen=True)
class CheckpointFile:
    """One downloadable file of a checkpoint and what its response carries."""

    path: Path
    sha256: str  # the ETag: recorded at publish time, so a file altered since fails the client's check
    filename: str


def download_file(settings: Settings, checkpoint: Checkpoint, format: CheckpointFormat) -> CheckpointFile:
    """The safetensors weights, or the ONNX export written beside them at publish time."""
    stem = f"project{checkpoint.project_id}_round{checkpoint.round_number:03d}"
    if format == "safetensors":
        return CheckpointFile(file_path(settings, checkpoint), checkpoint.sha256, f"{stem}.safetensors")
    onnx = checkpoint.meta.get("onnx")
    if not isinstance(onnx, dict) or not onnx.get("file") or not onnx.get("sha256"):
        reason = checkpoint.meta.get("onnx_error")
        why = f"its export failed ({reason})" if reason else "it was published before ONNX exports existed"
        raise NotFound(f"checkpoint {checkpoint.id} has no ONNX file: {why}; download format=safetensors")
    # Only a file name is recorded; a name with folders in it is not one the worker wrote.
    name = PurePosixPath(str(onnx["file"])).name
    path = (settings.storage_dir / checkpoint.file).parent / name
    if name != onnx["file"] or not path.is_file():
        raise NotFound(f"the ONNX file of checkpoint {checkpoint.id} is missing from storage")
    return CheckpointFile(path, str(onnx["sha256"]), f"{stem}.onnx")


def model_card(session: Session, user: User, checkpoint_id: int) -> str:
    """The checkpoint's model card in Markdown, rendered from what was stored at publish time."""
    checkpoint = get_checkpoint(session, user, checkpoint_id)
    return render_card(checkpoint, project_name=get_project(session, checkpoint.project_id).name)
