"""Platform rounds score adaptively by default: the same selection as exact scoring, fewer passes.

Two projects alike in everything (data, seed, so the same pretrained model and the same noise)
but `scoring`, through the REST API and a real `aqpl worker` on the embedded default. The
adaptive round's early-stopped picks are completed to all M draws before they are chosen, so on
this fixed seed it selects the same examples, on the same sides, as the exact round.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import DatabaseFactory
from tests.worker.test_round_cycle import Platform, create_project, platform

pytestmark = pytest.mark.slow

# M = 50 (the default) so that adaptive scoring has stages to stop at (8, 20, 30, 40 draws);
# σ 0.5 makes some copies change class, so H is spread rather than 0 for nearly every example.
ROUND_SETTINGS: dict[str, Any] = {"draws": 50, "budget": 3, "initial_sigma": 0.5, "score_shard_size": 25}


def _selected(platform_: Platform, project_id: int, round_id: int) -> set[tuple[int, str, float]]:
    """(dataset index, side, H) of the round's queries: dataset indices compare across projects."""
    examples = platform_.get(f"/api/v1/projects/{project_id}/examples?split=train&limit=1000")["items"]
    index_of = {example["id"]: example["dataset_index"] for example in examples}
    queries = platform_.get(f"/api/v1/rounds/{round_id}/queries")
    return {(index_of[query["example_id"]], query["side"], round(query["score"], 9)) for query in queries}


def _first_round(platform_: Platform, scoring: str) -> tuple[int, dict[str, Any]]:
    project_id, _ = create_project(platform_, scoring=scoring, **ROUND_SETTINGS)
    platform_.wait_for(f"/api/v1/projects/{project_id}", "status", "ready", timeout=180)
    started = platform_.client.post(f"/api/v1/projects/{project_id}/rounds", headers=platform_.lead)
    assert started.status_code == 201, started.text
    round_ = platform_.wait_for(f"/api/v1/rounds/{started.json()['id']}", "state", "annotating", timeout=180)
    return project_id, round_


def test_adaptive_rounds_select_what_exact_rounds_select_with_fewer_forward_passes(
    database_factory: DatabaseFactory, tmp_path: Path
) -> None:
    with platform(tmp_path, database_factory.create("sqlite")) as platform_:
        exact_project, exact = _first_round(platform_, "exact")
        adaptive_project, adaptive = _first_round(platform_, "adaptive")
        assert platform_.get(f"/api/v1/projects/{adaptive_project}")["config"]["scoring"] == "adaptive"

        assert exact["forward_passes"] == 60 * 50  # every example, every draw
        assert 0 < adaptive["forward_passes"] < exact["forward_passes"]
        assert exact["scoring_seconds"] > 0 and adaptive["scoring_seconds"] > 0
        for round_ in (exact, adaptive):
            assert set(round_["state_seconds"]) == {"scoring", "annotating"}
            assert round_["state_seconds"]["scoring"] >= round_["scoring_seconds"] * 0.5

        chosen = _selected(platform_, exact_project, exact["id"])
        assert len(chosen) == 6
        assert _selected(platform_, adaptive_project, adaptive["id"]) == chosen
