from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from backend.models import Role


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

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
