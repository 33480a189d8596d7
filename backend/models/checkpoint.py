from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from backend.db import Base
from backend.models._types import JSONType, UTCDateTime, utcnow


class Checkpoint(Base):
    """A published model: safetensors file in storage, metadata to rebuild it, and its metrics."""

    __tablename__ = "checkpoints"
    __table_args__ = (Index("ix_checkpoints_project_round", "project_id", "round_number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    round_id: Mapped[int | None] = mapped_column(ForeignKey("rounds.id", ondelete="SET NULL"))
    round_number: Mapped[int]
    file: Mapped[str] = mapped_column(String(500))  # relative to the storage dir
    sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", JSONType)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
