from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from aqpl.ladder import LADDER_MAX_INDEX, LADDER_MIN_INDEX, LADDER_STEP


class Ladder(BaseModel):
    min_index: int = LADDER_MIN_INDEX
    max_index: int = LADDER_MAX_INDEX
    step: float = LADDER_STEP  # σ per index


class TaskProgress(BaseModel):
    answered: int  # answers in the round so far
    total: int  # answers the round needs
    mine: int  # this annotator's answers in the round


class TaskRead(BaseModel):
    id: int  # the assignment (lease)
    query_id: int
    example_id: int
    project_id: int
    project_name: str
    round_id: int
    round_number: int
    class_name: str | None  # None when the project hides class names
    image_url: str
    noise_url: str
    image_shape: list[int]  # [H, W, C]
    ladder: Ladder
    current_sigma_index: int | None  # None unless the project shows the current σ marker
    expires_at: datetime
    progress: TaskProgress


class LeaseRead(BaseModel):
    id: int
    state: str
    expires_at: datetime


class AnnotationCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sigma_index: int = Field(ge=LADDER_MIN_INDEX, le=LADDER_MAX_INDEX, strict=True)
    # Time the annotator spent on the task; one day caps clock mistakes.
    seconds: float | None = Field(default=None, ge=0.0, le=86_400.0, allow_inf_nan=False)


class AnnotationRead(BaseModel):
    id: int
    task_id: int
    query_id: int
    sigma_index: int
    seconds: float | None
    created_at: datetime
