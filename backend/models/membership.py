from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey
from sqlalchemy.orm import Mapped, mapped_column

from backend.db import Base
from backend.models._types import UTCDateTime, utcnow


class ProjectMember(Base):
    """An annotator a lead chose for their project. Read only while the project is not open to all
    annotators (`Project.all_annotators` false): `tasks/next` then serves it to its members alone."""

    __tablename__ = "project_members"

    # (project_id, user_id) is the primary key: tasks/next's membership EXISTS is one index probe.
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
