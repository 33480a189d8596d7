from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import Enum, Float, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from backend.db import Base
from backend.models._types import UTCDateTime, utcnow


class AssignmentState(enum.StrEnum):
    leased = "leased"
    answered = "answered"
    skipped = "skipped"
    expired = "expired"


class Assignment(Base):
    """A task: one query leased to one annotator until `expires_at`."""

    __tablename__ = "assignments"
    __table_args__ = (
        UniqueConstraint("query_id", "annotator_id"),
        Index("ix_assignments_query_state", "query_id", "state"),
        Index("ix_assignments_annotator_state", "annotator_id", "state"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    query_id: Mapped[int] = mapped_column(ForeignKey("queries.id", ondelete="CASCADE"))
    annotator_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    state: Mapped[AssignmentState] = mapped_column(
        Enum(AssignmentState, native_enum=False, length=16), default=AssignmentState.leased
    )
    leased_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Annotation(Base):
    """One annotator's answer to one query: the highest recognisable σ on the ladder."""

    __tablename__ = "annotations"
    __table_args__ = (
        UniqueConstraint("query_id", "annotator_id"),
        UniqueConstraint("annotator_id", "idempotency_key"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    query_id: Mapped[int] = mapped_column(ForeignKey("queries.id", ondelete="CASCADE"), index=True)
    annotator_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    assignment_id: Mapped[int] = mapped_column(ForeignKey("assignments.id", ondelete="CASCADE"))
    sigma_index: Mapped[int]
    seconds: Mapped[float | None] = mapped_column(Float)
    idempotency_key: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
