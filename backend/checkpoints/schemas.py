"""Checkpoint response bodies."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel

from backend.rounds.schemas import UtcDateTime

# The file formats a checkpoint is downloaded in: the weights (default) or the ONNX export.
CheckpointFormat = Literal["safetensors", "onnx"]


class CheckpointRead(BaseModel):
    id: int
    project_id: int
    round_id: int | None
    round_number: int
    sha256: str
    size_bytes: int
    metadata: dict[str, Any]  # how to rebuild the model: architecture, input shape, classes, normalisation
    metrics: dict[str, Any]  # accuracy: clean, gaussian, corruptions and their breakdowns
    file_url: str
    created_at: UtcDateTime
