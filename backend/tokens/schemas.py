from __future__ import annotations

import unicodedata
from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field


def _printable(text: str) -> str:
    if any(unicodedata.category(character) in {"Cc", "Cs"} for character in text):
        raise ValueError("must not contain control or unpaired surrogate characters")
    return text


PrintableText = Annotated[str, AfterValidator(_printable)]


class TokenCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: PrintableText = Field(min_length=1, max_length=100)
    scopes: list[str] = Field(min_length=1, max_length=3, examples=[["checkpoints:read"]])
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
