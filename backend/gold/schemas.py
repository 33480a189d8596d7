"""Gold question request and response bodies (σ as a ladder index, 0..90; σ = index / 100)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, computed_field

from aqpl.ladder import LADDER_MAX_INDEX, LADDER_MIN_INDEX, sigma_of
from backend.models import GoldSource
from backend.projects.config import ProjectConfig
from backend.rounds.schemas import UtcDateTime


class GoldCreate(BaseModel):
    """A lead's typed-in gold: a training example of the project and its known σ."""

    model_config = ConfigDict(extra="forbid")

    example_id: int = Field(ge=1, le=2**31 - 1)
    sigma_index: int = Field(ge=LADDER_MIN_INDEX, le=LADDER_MAX_INDEX)


class GoldFromAgreement(BaseModel):
    """Which earlier queries' answers agreed tightly enough to make their consensus gold."""

    model_config = ConfigDict(extra="forbid")

    # Ladder steps: the answers' median absolute deviation at most this (1 = within σ 0.01).
    max_mad: float = Field(default=1.0, ge=0.0, le=float(LADDER_MAX_INDEX), allow_inf_nan=False)
    # Answers the query had: a consensus of one or two people is not yet knowledge.
    min_answers: int = Field(default=3, ge=1, le=1000)


def _setting(name: str) -> object:
    """A project setting's own field (bounds, default): defined once, in ProjectConfig."""
    return ProjectConfig.model_fields[name]


class GoldSettings(BaseModel):
    """The project's gold settings (docs/access-and-tasks.md): the share of tasks that are gold, the
    flagging threshold, and whether aggregation leaves flagged annotators out."""

    model_config = ConfigDict(extra="forbid")

    gold_rate: Annotated[float, _setting("gold_rate")]
    gold_max_error: Annotated[float, _setting("gold_max_error")]
    gold_min_answers: Annotated[int, _setting("gold_min_answers")]
    exclude_flagged: Annotated[bool, _setting("exclude_flagged")]


class GoldRead(BaseModel):
    id: int
    project_id: int
    example_id: int
    sigma_index: int
    source: GoldSource
    from_query_id: int | None  # the agreeing query (source agreement); None when typed in
    created_at: UtcDateTime
    created_by: int | None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def sigma(self) -> float:
        return sigma_of(self.sigma_index)


class GoldFromAgreementResult(BaseModel):
    added: list[GoldRead]
    skipped_existing: int  # agreeing examples that were gold already
