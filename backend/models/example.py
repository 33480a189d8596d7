from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import Enum, ForeignKey, Index, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from backend.db import Base
from backend.models._types import UTCDateTime, utcnow


class Split(enum.StrEnum):
    train = "train"
    test = "test"


class SigmaSource(enum.StrEnum):
    initial = "initial"
    queried = "queried"
    adapted = "adapted"


class Example(Base):
    """A triplet (x, y, σ): x stays in the project's array file at `dataset_index`."""

    __tablename__ = "examples"
    __table_args__ = (
        UniqueConstraint("project_id", "split", "dataset_index"),
        Index("ix_examples_project_split_source", "project_id", "split", "sigma_source"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    dataset_index: Mapped[int]
    split: Mapped[Split] = mapped_column(Enum(Split, native_enum=False, length=8))
    label: Mapped[int]
    sigma_index: Mapped[int]  # on the ladder 0..90
    sigma_source: Mapped[SigmaSource] = mapped_column(
        Enum(SigmaSource, native_enum=False, length=16), default=SigmaSource.initial
    )
    sigma_round: Mapped[int] = mapped_column(default=0)  # round number of the last change


class SigmaChange(Base):
    """History of an example's σ: every change with its round and source (for the export)."""

    __tablename__ = "sigma_changes"

    id: Mapped[int] = mapped_column(primary_key=True)
    example_id: Mapped[int] = mapped_column(ForeignKey("examples.id", ondelete="CASCADE"), index=True)
    round_number: Mapped[int]
    old_sigma_index: Mapped[int]
    new_sigma_index: Mapped[int]
    source: Mapped[SigmaSource] = mapped_column(Enum(SigmaSource, native_enum=False, length=16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
