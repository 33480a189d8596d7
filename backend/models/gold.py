from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import Enum, ForeignKey, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from backend.db import Base
from backend.models._types import UTCDateTime, utcnow


class GoldSource(enum.StrEnum):
    agreement = "agreement"  # an earlier round's answers agreed tightly (result_mad ≤ the lead's bound)
    typed = "typed"  # the lead typed the σ in


class GoldExample(Base):
    """An example whose σ (ladder index) the project knows: mixed into annotators' tasks as a gold
    query, whose answers measure the annotator and never change the example's σ_i."""

    __tablename__ = "gold_examples"
    __table_args__ = (UniqueConstraint("project_id", "example_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    example_id: Mapped[int] = mapped_column(ForeignKey("examples.id", ondelete="CASCADE"))
    sigma_index: Mapped[int]
    source: Mapped[GoldSource] = mapped_column(Enum(GoldSource, native_enum=False, length=16))
    # The query whose agreeing answers gave the σ (source agreement); NULL when typed in.
    from_query_id: Mapped[int | None] = mapped_column(ForeignKey("queries.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
