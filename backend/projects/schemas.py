"""Project request and response bodies; the settings themselves are backend/projects/config.py's."""

from __future__ import annotations

from pydantic import BaseModel, Field

from backend.checkpoints.schemas import CheckpointRead
from backend.projects.config import ProjectConfig
from backend.rounds.schemas import RoundRead, UtcDateTime
from backend.text import PrintableText


class ProjectCreate(ProjectConfig):
    """A new project: its settings (validated by the model the database and the worker use) and a name."""

    name: PrintableText = Field(min_length=1, max_length=200)

    def to_config(self) -> ProjectConfig:
        """The settings alone (what the project stores), already validated: no name."""
        return ProjectConfig.model_validate(
            {name: getattr(self, name) for name in ProjectConfig.model_fields}
        )


class Progress(BaseModel):
    step: str
    done: int
    total: int


class SigmaCounts(BaseModel):
    initial: int
    queried: int
    adapted: int


class ProjectRead(BaseModel):
    id: int
    name: str
    status: str
    error: str | None
    config: ProjectConfig
    image_shape: list[int] | None
    class_names: list[str] | None
    num_train: int
    num_test: int
    progress: Progress | None
    counts: SigmaCounts
    sigma_histogram: list[int]  # training examples per σ ladder index 0..90
    current_round: RoundRead | None
    latest_checkpoint: CheckpointRead | None
    created_at: UtcDateTime


class ProjectSummary(BaseModel):
    """A list row: no histogram or counts, so listing stays cheap."""

    id: int
    name: str
    status: str
    error: str | None
    num_train: int
    num_test: int
    created_at: UtcDateTime


class ExampleRead(BaseModel):
    id: int
    dataset_index: int
    split: str
    label: int
    class_name: str | None
    sigma_index: int
    sigma_source: str
    sigma_round: int
    image_url: str


class ExamplePage(BaseModel):
    total: int
    offset: int
    limit: int
    items: list[ExampleRead]


class RoundMetrics(BaseModel):
    round: int
    queries: int  # cumulative queries up to this round
    clean: float | None
    gaussian: float | None
    corruptions: float | None
    sigma_histogram_before: list[int] | None
    sigma_histogram_after: list[int] | None
    krippendorff_alpha: float | None


class ProjectMetrics(BaseModel):
    rounds: list[RoundMetrics]
