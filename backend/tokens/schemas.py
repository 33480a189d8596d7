from __future__ import annotations

from datetime import datetime

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from backend.auth.scopes import ALL_SCOPES
from backend.text import PrintableText


class TokenCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: PrintableText = Field(min_length=1, max_length=100)
    scopes: list[str] = Field(min_length=1, max_length=len(ALL_SCOPES), examples=[["checkpoints:read"]])
    expires_at: AwareDatetime | None = None  # with a time zone; None: until revoked


class TokenRead(BaseModel):
    id: int
    name: str
    scopes: list[str]
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None


class TokenCreated(TokenRead):
    token: str  # shown once: only its sha256 is stored
