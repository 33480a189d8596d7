from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import Enum, Float, ForeignKey, Index, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from backend.db import Base
from backend.models._types import JSONType, UTCDateTime, utcnow


class RoundState(enum.StrEnum):
    scoring = "scoring"
    annotating = "annotating"
    aggregating = "aggregating"
    training = "training"
    evaluating = "evaluating"
    published = "published"
    failed = "failed"


class QuerySide(enum.StrEnum):
    excessive = "excessive"  # high entropy: σ too strong
    deficient = "deficient"  # low entropy: σ too weak
    uncertain = "uncertain"  # baseline strategies
    random = "random"
    gold = "gold"  # a gold query: an example of known σ, mixed in to measure annotators


class Round(Base):
    __tablename__ = "rounds"
    __table_args__ = (UniqueConstraint("project_id", "number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    number: Mapped[int]
    state: Mapped[RoundState] = mapped_column(
        Enum(RoundState, native_enum=False, length=16), default=RoundState.scoring
    )
    # The step that failed, so that retry resumes there.
    failed_state: Mapped[RoundState | None] = mapped_column(Enum(RoundState, native_enum=False, length=16))
    error: Mapped[str | None] = mapped_column(Text)
    # {"step": "scoring", "done": 1200, "total": 5000}
    progress: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    sigma_histogram_before: Mapped[list[int] | None] = mapped_column(JSONType)
    sigma_histogram_after: Mapped[list[int] | None] = mapped_column(JSONType)
    krippendorff_alpha: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    annotating_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The timeline (rounds/lifecycle.py, one helper): seconds spent in each state the round has left
    # ({"scoring": 12.5, ...}, summed over visits), and when it entered the state it is in.
    state_seconds: Mapped[dict[str, float] | None] = mapped_column(JSONType)
    state_entered_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=utcnow)
    # Noisy images classified to score and select (completion included) and the scoring jobs' seconds.
    forward_passes: Mapped[int] = mapped_column(default=0, server_default="0")
    scoring_seconds: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")
    # The project's gold_rate when the round opened with gold queries (0: none, and tasks/next then
    # spends no statement on gold). Read with the candidate query's row, so the draw costs no SQL.
    gold_rate: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")


class Score(Base):
    """Per example per round: the AQPL entropy H and the two baseline scores."""

    __tablename__ = "scores"
    __table_args__ = (UniqueConstraint("round_id", "example_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    round_id: Mapped[int] = mapped_column(ForeignKey("rounds.id", ondelete="CASCADE"))
    example_id: Mapped[int] = mapped_column(ForeignKey("examples.id", ondelete="CASCADE"))
    entropy: Mapped[float] = mapped_column(Float)
    clean_uncertainty: Mapped[float] = mapped_column(Float)
    noise_uncertainty: Mapped[float] = mapped_column(Float)
    # Noisy copies drawn (< the project's draws where adaptive scoring stopped early), and then the
    # predicted class counts of those copies, so that the selection can complete them.
    draws_used: Mapped[int | None]
    class_counts: Mapped[list[int] | None] = mapped_column(JSONType)


class Query(Base):
    """An example selected in a round, to be answered by `required_answers` annotators."""

    __tablename__ = "queries"
    __table_args__ = (
        UniqueConstraint("round_id", "example_id"),
        # tasks/next: open queries of a round that still need answers
        Index("ix_queries_round_open", "round_id", "answer_count"),
        # tasks/next's candidates, oldest first: only the open ones, so that the scan does not walk
        # past every query answered so far (it grew with the round's progress).
        Index(
            "ix_queries_open",
            "id",
            postgresql_where=text("status = 'open'"),
            sqlite_where=text("status = 'open'"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    round_id: Mapped[int] = mapped_column(ForeignKey("rounds.id", ondelete="CASCADE"))
    example_id: Mapped[int] = mapped_column(ForeignKey("examples.id", ondelete="CASCADE"), index=True)
    side: Mapped[QuerySide] = mapped_column(Enum(QuerySide, native_enum=False, length=16))
    score: Mapped[float] = mapped_column(Float)  # H for aqpl, the strategy's score otherwise
    required_answers: Mapped[int]  # overlap k, raised by one when answers disagree too much
    answer_count: Mapped[int] = mapped_column(default=0)
    sigma_index_before: Mapped[int]
    result_sigma_index: Mapped[int | None]  # median of the answers, on the ladder
    result_mad: Mapped[float | None] = mapped_column(Float)  # median absolute deviation, in ladder steps
    # The simulated oracle's σ_o (Eq. 7, ladder index) for the example, where the project trains F_o.
    oracle_sigma_index: Mapped[int | None]
    # The known σ (ladder index) of a gold query (status "gold"): any annotator may answer it once; its
    # answers measure the annotator and never count towards the round nor change the example's σ.
    # NULL for the round's selected queries. Never shown by the API.
    gold_sigma_index: Mapped[int | None]
    status: Mapped[str] = mapped_column(String(16), default="open")  # open | complete | gold
