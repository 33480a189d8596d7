"""Project request and response bodies.

The model/method/strategy choices repeat worker/ml's (the API never imports torch);
tests/api/test_projects.py checks that they stay equal. Corruption names come from aqpl/.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from aqpl.corruption_names import CORRUPTION_NAMES, CORRUPTION_SEVERITIES
from backend.checkpoints.schemas import CheckpointRead
from backend.rounds.schemas import RoundRead, UtcDateTime

DatasetFormat = Literal["mnist", "cifar10", "npz", "imagefolder", "digits"]
ModelName = Literal["resnet18", "small_cnn"]
MethodName = Literal["gnt", "cat"]
StrategyName = Literal["aqpl", "random", "clean_uncertainty", "noise_uncertainty"]


class DatasetSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format: DatasetFormat
    # Under the import root (absolute, or relative to it); not needed for "digits".
    path: str | None = Field(default=None, max_length=1000)
    train_limit: int | None = Field(default=None, ge=1)
    test_limit: int | None = Field(default=None, ge=1)


class EvaluationOptions(BaseModel):
    """Which robustness benchmark a checkpoint is measured on (defaults: the full one)."""

    model_config = ConfigDict(extra="forbid")

    # None: all 15 common corruptions. Each one costs a pass over the test set per severity.
    corruptions: list[str] | None = None
    severities: list[int] = Field(default_factory=lambda: list(CORRUPTION_SEVERITIES), min_length=1)
    # Evaluate on a stratified subset of this many test images (None: the whole test split).
    test_limit: int | None = Field(default=None, ge=1)

    @field_validator("corruptions")
    @classmethod
    def _known_corruptions(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return value
        unknown = [name for name in value if name not in CORRUPTION_NAMES]
        if unknown:
            raise ValueError(f"unknown corruption(s) {unknown}: choose from {list(CORRUPTION_NAMES)}")
        if len(set(value)) != len(value):
            raise ValueError("corruptions repeat")
        return value

    @field_validator("severities")
    @classmethod
    def _known_severities(cls, value: list[int]) -> list[int]:
        if any(level not in CORRUPTION_SEVERITIES for level in value) or len(set(value)) != len(value):
            raise ValueError("severities must be distinct values in 1..5")
        return sorted(value)


class ProjectCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    dataset: DatasetSpec
    model: ModelName = "small_cnn"
    method: MethodName = "gnt"
    draws: int = Field(default=50, ge=1, le=200)  # M noisy copies per example for H (Eq. 5)
    budget: int = Field(default=10, ge=1, le=10_000)  # B queries per side and round
    overlap: int = Field(default=2, ge=1, le=10)  # k annotators per query
    strategy: StrategyName = "aqpl"
    initial_sigma: float = Field(default=0.3, ge=0.0, le=0.9)  # σ of every example before any query
    epochs: int = Field(default=5, ge=1, le=500)  # pretraining epochs
    finetune_epochs: int = Field(default=2, ge=1, le=500)  # epochs after each round's answers
    batch_size: int = Field(default=64, ge=2, le=4096)
    learning_rate: float = Field(default=0.05, gt=0.0, le=10.0)  # peak SGD rate (cosine to 0)
    show_class_name: bool = True
    show_sigma_marker: bool = False
    auto_close: bool = True
    # MAD of the answers (ladder steps) above which a query gets one more annotator.
    disagreement_threshold: float | None = Field(default=None, ge=0.0)
    seed: int = Field(default=0, ge=0, le=2**31 - 1)
    evaluation: EvaluationOptions = Field(default_factory=EvaluationOptions)
    # Open round 1 by itself once the project is ready (the demo does).
    open_first_round: bool = False
    # Training examples per scoring task: several workers share a round's scoring.
    score_shard_size: int = Field(default=5000, ge=1)


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
    config: dict[str, Any]
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
