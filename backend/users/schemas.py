from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from backend.models import Role


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # ASCII letters, digits and ._- only: no control characters, bidi overrides or look-alikes.
    username: str = Field(min_length=2, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    password: str = Field(min_length=8, max_length=1024)
    role: Role = Role.annotator


class UserRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    username: str
    role: Role
    is_active: bool
    created_at: datetime


class AnnotatorRead(BaseModel):
    id: int
    username: str
    answers: int
    median_seconds: float | None  # per task
    bias: float | None  # mean (own answer - query median) in ladder steps; positive tolerates more noise
    gold_answers: int  # answers to gold queries; never counted in `answers` nor `bias`
    gold_error: float | None  # mean |answer - known σ| in ladder steps; None without gold answers
    gold_bias: float | None  # mean (answer - known σ) in ladder steps; positive tolerates more noise
    flagged: bool  # past a project's gold_max_error on at least its gold_min_answers gold answers


class UserUpdate(BaseModel):
    """An admin's change of an account: its role, whether it may sign in (absent: unchanged)."""

    model_config = ConfigDict(extra="forbid")

    role: Role | None = None
    is_active: bool | None = None


class PasswordReset(BaseModel):
    model_config = ConfigDict(extra="forbid")

    password: str = Field(min_length=8, max_length=1024)
