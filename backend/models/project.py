from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import Enum, ForeignKey, String, Text, true
from sqlalchemy.orm import Mapped, mapped_column

from backend.db import Base
from backend.models._types import JSONType, ProjectConfigJSON, UTCDateTime, utcnow
from backend.projects.config import ProjectConfig


class ProjectStatus(enum.StrEnum):
    importing = "importing"
    pretraining = "pretraining"
    ready = "ready"
    failed = "failed"


class ProjectStep(enum.StrEnum):
    """Where a project is on its way to `ready`: kept in progress["step"] (while failed too, so that
    retry resumes there). backend/projects/lifecycle.py moves it, and derives `status` from it."""

    awaiting_upload = "awaiting_upload"
    importing = "importing"
    pretraining = "pretraining"
    evaluating = "evaluating"  # the pretrained model, round 0
    ready = "ready"


class Project(Base):
    __tablename__ = "projects"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    # Who takes its tasks: every annotator (the default), or only its `project_members`.
    all_annotators: Mapped[bool] = mapped_column(default=True, server_default=true())
    status: Mapped[ProjectStatus] = mapped_column(
        Enum(ProjectStatus, native_enum=False, length=16), default=ProjectStatus.importing
    )
    error: Mapped[str | None] = mapped_column(Text)
    # Everything the lead chose: dataset spec, model, draws M, budget B, overlap k, strategy, σ, training.
    # Frozen: change it by assigning a new one (config.model_copy(update=...)).
    config: Mapped[ProjectConfig] = mapped_column(ProjectConfigJSON)
    # Seed of the fixed per-example noise fields shown on the σ-ladder.
    noise_seed: Mapped[int] = mapped_column(default=0)
    # Relative to the storage dir: one uint8 array file with the train and test images.
    dataset_file: Mapped[str | None] = mapped_column(String(500))
    image_shape: Mapped[list[int] | None] = mapped_column(JSONType)  # [H, W, C]
    class_names: Mapped[list[str] | None] = mapped_column(JSONType)
    num_train: Mapped[int] = mapped_column(default=0)
    num_test: Mapped[int] = mapped_column(default=0)
    # Progress of the running project step: {"step": "pretraining", "done": 3, "total": 10}.
    progress: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
