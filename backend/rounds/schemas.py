"""Round request and response bodies."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel


def _as_utc(value: datetime) -> datetime:
    # SQLite hands back naive datetimes; every stored time is UTC, so say so in the JSON.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


UtcDateTime = Annotated[datetime, AfterValidator(_as_utc)]


class RoundCounts(BaseModel):
    queries: int
    complete_queries: int
    answers: int
    annotators: int  # distinct annotators who answered in this round


class RoundCreated(BaseModel):
    id: int
    number: int
    state: str


class RoundRead(BaseModel):
    id: int
    project_id: int
    number: int
    state: str
    failed_state: str | None
    error: str | None
    progress: dict[str, Any] | None
    counts: RoundCounts
    krippendorff_alpha: float | None
    sigma_histogram_before: list[int] | None
    sigma_histogram_after: list[int] | None
    created_at: UtcDateTime
    annotating_at: UtcDateTime | None
    closed_at: UtcDateTime | None
    published_at: UtcDateTime | None
    checkpoint_id: int | None
    # Noisy images classified to score and select (adaptive completion included), and the scoring
    # jobs' seconds summed over shards.
    forward_passes: int
    scoring_seconds: float
    # Seconds spent in each state so far (the current one up to now); only states the round was in.
    state_seconds: dict[str, float]
    # Seconds left of a running scoring or training step at its measured throughput (None otherwise).
    eta_seconds: float | None


class QueryRead(BaseModel):
    id: int
    example_id: int
    side: str
    score: float
    status: str
    required_answers: int
    answer_count: int
    answers: list[int]  # σ ladder indices, in the order they came
    result_sigma_index: int | None
    result_mad: float | None
    # The simulated oracle's answer σ_o (Eq. 7; ladder index), recorded at aggregation where the
    # project trains the reference classifier F_o (`oracle_reference`); None otherwise.
    oracle_sigma_index: int | None
    sigma_index_before: int
    image_url: str
