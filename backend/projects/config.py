"""A project's settings: one typed model from the form to the database to the worker.

`ProjectConfig` declares every setting and its default once. The request body
(schemas.ProjectCreate) is this model plus a name; the database stores its JSON with a
`schema_version` (backend/models/_types.py, ProjectConfigJSON); the worker reads its attributes.
Pure pydantic: the API imports it without torch. The model/method/strategy choices repeat
worker/ml's names; tests/api/test_projects.py checks that they stay equal.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, computed_field, field_validator

from aqpl.corruption_names import CORRUPTION_NAMES, CORRUPTION_SEVERITIES
from aqpl.ladder import index_of

DatasetFormat = Literal["mnist", "cifar10", "npz", "imagefolder", "digits"]
ModelName = Literal["resnet18", "small_cnn"]
MethodName = Literal["gnt", "cat"]
StrategyName = Literal["aqpl", "random", "clean_uncertainty", "noise_uncertainty"]
ScoringMode = Literal["adaptive", "exact"]

# Of the stored JSON. A change of its shape gets a migration and the next number; a row with
# another number was written by a platform this code does not know, and is refused on load.
CONFIG_SCHEMA_VERSION = 1
SCHEMA_VERSION_KEY = "schema_version"
# Not settings: the version, and initial_sigma's ladder index (computed on dump, ignored on load).
_NOT_SETTINGS = frozenset({SCHEMA_VERSION_KEY, "initial_sigma_index"})

# Frozen, like the settings: SQLAlchemy sees a change only when project.config is assigned a new
# object, so code changes a configuration with `project.config = config.model_copy(update=...)`.
_FROZEN = ConfigDict(extra="forbid", frozen=True)


class DatasetSpec(BaseModel):
    model_config = _FROZEN

    format: DatasetFormat
    # Under the import root (absolute, or relative to it); not needed for "digits".
    path: str | None = Field(default=None, max_length=1000)
    train_limit: int | None = Field(default=None, ge=1)
    test_limit: int | None = Field(default=None, ge=1)


class EvaluationOptions(BaseModel):
    """Which robustness benchmark a checkpoint is measured on (defaults: the full one)."""

    model_config = _FROZEN

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


class ProjectConfig(BaseModel):
    """Everything the lead chose for a project; each default here is the platform's only one."""

    model_config = _FROZEN

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
    # adaptive: stop drawing an example's copies once they agree, then complete the picks to all M
    # draws (~3x fewer forward passes, the same selection as exact within its noise; docs/engine.md).
    scoring: ScoringMode = "adaptive"
    # Train the reference classifier F_o of Eq. 7 beside the model at pretraining (as many epochs,
    # at every ladder level), and answer each round's queries with the simulated oracle too: σ_o
    # beside the people's consensus (docs/rounds.md). Off by default: it doubles pretraining.
    oracle_reference: bool = False
    # Gold questions (docs/access-and-tasks.md): the share of tasks that are gold queries (examples of
    # known σ, answered to measure the annotator, never counted towards σ_i). 0: none, and tasks/next
    # spends no statement on gold. At most half: the round's own queries stay the work.
    gold_rate: float = Field(default=0.0, ge=0.0, le=0.5)
    # Mean absolute error against gold (ladder steps; 10 = σ 0.10) above which an annotator is flagged.
    gold_max_error: float = Field(default=10.0, ge=0.0, le=90.0)
    # Gold answers a person gives before they can be flagged: a single slip flags no one.
    gold_min_answers: int = Field(default=3, ge=1, le=1000)
    # Aggregation leaves flagged annotators' answers out (all answers stay where none would be left).
    exclude_flagged: bool = False

    @computed_field  # type: ignore[prop-decorator]
    @property
    def initial_sigma_index(self) -> int:
        """initial_sigma on the σ-ladder: the index every example starts at."""
        return index_of(self.initial_sigma)


def field_defaults() -> dict[str, Any]:
    """Each setting's default (the form shows them); `dataset` has none."""
    return {
        name: field.get_default(call_default_factory=True)
        for name, field in ProjectConfig.model_fields.items()
        if not field.is_required()
    }


class UnknownConfigVersion(ValueError):
    """A stored configuration whose schema_version this code does not read."""


def dump_config(config: ProjectConfig) -> dict[str, Any]:
    """The JSON the database stores: the settings, σ's ladder index and the schema version."""
    return {SCHEMA_VERSION_KEY: CONFIG_SCHEMA_VERSION, **config.model_dump(mode="json")}


def load_config(stored: Mapping[str, Any]) -> ProjectConfig:
    """The settings of a stored JSON; UnknownConfigVersion unless it is of CONFIG_SCHEMA_VERSION."""
    version = stored.get(SCHEMA_VERSION_KEY)
    if version != CONFIG_SCHEMA_VERSION:
        found = "no schema_version" if version is None else f"schema_version {version!r}"
        raise UnknownConfigVersion(
            f"a project configuration has {found}, but this version of AQPL Studio reads "
            f"schema_version {CONFIG_SCHEMA_VERSION} only: run `aqpl db upgrade` if the database is "
            "older than the code, or upgrade the code if a newer version wrote it"
        )
    return ProjectConfig.model_validate(
        {key: value for key, value in stored.items() if key not in _NOT_SETTINGS}
    )
