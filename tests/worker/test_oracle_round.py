"""People against the simulated oracle through a real worker: F_o trained at pretraining, σ_o per query.

A project with `oracle_reference` on (tiny: the small CNN, one epoch, 60 MNIST-like digits) goes
through one round on PostgreSQL + Redis with a real `aqpl worker`: pretraining saves F_o beside the
checkpoints, aggregation records σ_o for every query, and the round's queries and the export carry it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from aqpl.ladder import LADDER_MAX_INDEX
from backend import storage
from backend.projects.config import ProjectConfig
from backend.settings import Settings
from tests.conftest import DatabaseFactory
from tests.worker.test_round_cycle import answer_every_task, create_project, platform
from worker import pipeline
from worker.ml.checkpoints import read_checkpoint_metadata

pytestmark = pytest.mark.slow


def test_a_round_records_and_exports_sigma_o(
    database_factory: DatabaseFactory, redis_url: str, tmp_path: Path
) -> None:
    with platform(tmp_path, database_factory.create("postgresql"), redis_url) as platform_:
        project_id, mnist = create_project(platform_, oracle_reference=True, open_first_round=True)
        project = platform_.wait_for(f"/api/v1/projects/{project_id}", "status", "ready", timeout=180)
        assert project["config"]["oracle_reference"] is True
        reference = storage.reference_path(Settings(data_dir=platform_.data_dir), project_id)
        assert read_checkpoint_metadata(reference)["role"] == "reference classifier F_o"

        round_id = project["current_round"]["id"]
        platform_.wait_for(f"/api/v1/rounds/{round_id}", "state", "annotating")
        assert all(
            q["oracle_sigma_index"] is None for q in platform_.get(f"/api/v1/rounds/{round_id}/queries")
        )
        assert answer_every_task(platform_, project_id) == 8
        platform_.wait_for(f"/api/v1/rounds/{round_id}", "state", "published", timeout=180)

        queries = platform_.get(f"/api/v1/rounds/{round_id}/queries")
        sigma_o = {query["example_id"]: query["oracle_sigma_index"] for query in queries}
        assert len(sigma_o) == 4
        assert all(isinstance(v, int) and 0 <= v <= LADDER_MAX_INDEX for v in sigma_o.values())

        # The same answers from F_o's file (the oracle's noise depends on the project seed, 0 here, and
        # the example alone). Allowed ±2 steps: this process may classify with another thread count, and
        # a borderline noisy copy can then flip one level's sequential test.
        examples = platform_.get(f"/api/v1/projects/{project_id}/examples?split=train&limit=1000")["items"]
        row_of = {example["id"]: example["dataset_index"] for example in examples}
        ids = sorted(sigma_o)
        again = pipeline.oracle_sigma(
            ProjectConfig.model_validate(
                {key: value for key, value in project["config"].items() if key != "initial_sigma_index"}
            ),
            reference,
            mnist.x_train,
            mnist.y_train.astype(np.int64),
            np.array([row_of[i] for i in ids], dtype=np.int64),
            device=torch.device("cpu"),
        )
        assert np.abs(again - np.array([sigma_o[i] for i in ids])).max() <= 2

        export = platform_.client.get(
            f"/api/v1/projects/{project_id}/export?format=jsonl", headers=platform_.lead
        )
        rows = {row["example_id"]: row for row in map(json.loads, export.text.splitlines())}
        consensus = {query["example_id"]: query["result_sigma_index"] for query in queries}
        for example_id, level in sigma_o.items():
            assert rows[example_id]["oracle_answers"] == [
                {"round": 1, "oracle_sigma_index": level, "consensus_sigma_index": consensus[example_id]}
            ]
            assert len(rows[example_id]["answers"]) == 2  # beside the people's raw answers
