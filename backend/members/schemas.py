from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

# Ids are 32-bit on PostgreSQL: a larger one is a 422, not a database error.
UserIdField = Annotated[int, Field(ge=1, le=2**31 - 1)]
MAX_MEMBERS = 10_000  # one request's list; far more annotators than one project has


class ProjectAnnotatorsUpdate(BaseModel):
    """Who works on the project: every annotator (`all_annotators`), or only those listed. The list is
    kept while `all_annotators` is true, so switching back to it restores the same people."""

    model_config = ConfigDict(extra="forbid")

    all_annotators: bool
    annotator_ids: list[UserIdField] = Field(default_factory=list, max_length=MAX_MEMBERS)


class MemberRead(BaseModel):
    id: int
    username: str
    is_active: bool


class ProjectAnnotatorsRead(BaseModel):
    project_id: int
    all_annotators: bool  # true: every annotator takes its tasks; false: only `annotators`
    annotators: list[MemberRead]  # the listed annotators, by id
