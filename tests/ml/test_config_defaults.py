"""The engine's defaults against the project's (backend/projects/config.py): no silent third value.

Where the engine is given a setting by its caller it declares no default (a change of the project's
default then reaches it); where it keeps one for a setting the project also has, the two must be
equal or be listed below as different on purpose, both values pinned: a change on either side
fails here and has to be decided, not drift.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

import pytest

from aqpl.datasets import load_dataset
from backend.projects.config import ProjectConfig
from worker.ml.scoring import score_examples
from worker.ml.simulate.config import AQPL_STRATEGY, SimulationConfig
from worker.ml.training import TrainConfig

# TrainConfig field -> the project setting a run is given (pretraining uses epochs, a round finetune_epochs).
FROM_THE_CALLER = {"epochs": "epochs", "batch_size": "batch_size", "lr": "learning_rate"}
# SimulationConfig field -> the project setting of the same meaning, the same default.
SIMULATION_SAME = {"model": "model", "lr": "learning_rate"}
# SimulationConfig field -> (project setting, simulation default, project default): a simulation is a
# quick offline experiment on a CPU (3 rounds on scikit-learn's digits by default), not a project.
SIMULATION_DIFFERENT = {
    "draws": ("draws", 20, 50),  # the paper's M = 50 costs 2.5x the scoring time
    "budget": ("budget", 25, 10),  # B for ~1,400 digits over 3 rounds
    "epochs": ("epochs", 8, 5),  # the base models the AQPL methods are compared against
    # One epoch at finetune_lr (a fifth of lr) so it adjusts, not retrains; a project fine-tunes at lr.
    "finetune_epochs": ("finetune_epochs", 1, 2),
    "batch_size": ("batch_size", 128, 64),
}


def project_default(name: str) -> Any:
    return ProjectConfig.model_fields[name].get_default(call_default_factory=True)


def field_default(cls: type, name: str) -> Any:
    (field,) = [field for field in dataclasses.fields(cls) if field.name == name]
    return field.default


@pytest.mark.parametrize("name", sorted(FROM_THE_CALLER))
def test_training_takes_the_schedule_from_its_caller(name: str) -> None:
    assert field_default(TrainConfig, name) is dataclasses.MISSING, f"TrainConfig.{name} restates a default"


def test_scoring_takes_the_draws_from_its_caller() -> None:
    assert inspect.signature(score_examples).parameters["draws"].default is inspect.Parameter.empty


def test_the_engines_seed_defaults_are_the_projects() -> None:
    assert field_default(TrainConfig, "seed") == project_default("seed")
    assert inspect.signature(load_dataset).parameters["seed"].default == project_default("seed")


def test_the_simulations_shared_settings_are_all_classified() -> None:
    """A setting added to both sides must be put in one of the two tables."""
    names = {field.name for field in dataclasses.fields(SimulationConfig)}
    shared = {name for name in names if name in ProjectConfig.model_fields} | {"lr"}
    assert shared == set(SIMULATION_SAME) | set(SIMULATION_DIFFERENT)


@pytest.mark.parametrize("name", sorted(SIMULATION_SAME))
def test_the_simulation_agrees_with_the_project(name: str) -> None:
    assert field_default(SimulationConfig, name) == project_default(SIMULATION_SAME[name])


@pytest.mark.parametrize("name", sorted(SIMULATION_DIFFERENT))
def test_the_simulation_differs_from_the_project_only_as_pinned(name: str) -> None:
    setting, simulation, project = SIMULATION_DIFFERENT[name]
    assert (field_default(SimulationConfig, name), project_default(setting)) == (simulation, project)


def test_the_simulations_aqpl_strategy_is_the_projects_default() -> None:
    assert project_default("strategy") == AQPL_STRATEGY
