"""Checkpoint queries and read model."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.checkpoints.schemas import CheckpointRead
from backend.models import Checkpoint


def get(session: Session, checkpoint_id: int) -> Checkpoint | None:
    return session.get(Checkpoint, checkpoint_id)


def of_project(session: Session, project_id: int) -> Sequence[Checkpoint]:
    return session.scalars(
        select(Checkpoint).where(Checkpoint.project_id == project_id).order_by(Checkpoint.round_number)
    ).all()


def of_round_number(session: Session, project_id: int, round_number: int) -> Checkpoint | None:
    return session.scalar(
        select(Checkpoint)
        .where(Checkpoint.project_id == project_id, Checkpoint.round_number == round_number)
        .limit(1)
    )


def checkpoint_read(checkpoint: Checkpoint) -> CheckpointRead:
    return CheckpointRead(
        id=checkpoint.id,
        project_id=checkpoint.project_id,
        round_id=checkpoint.round_id,
        round_number=checkpoint.round_number,
        sha256=checkpoint.sha256,
        size_bytes=checkpoint.size_bytes,
        metadata=checkpoint.meta,
        metrics=checkpoint.metrics,
        file_url=f"/api/v1/checkpoints/{checkpoint.id}/file",
        created_at=checkpoint.created_at,
    )
