"""pipeline.score_shard + select_completed: adaptive scoring with completion against exact scoring.

A linear classifier on random 12x12 images at σ 0.4: its predictions change with the noise, so H is
spread (not 0 for all), and both sides of AQPL's selection are exercised. Adaptive scoring can
still, rarely, stop early an example that exact scoring would rank among the highest H (1-2 picks
of 50 in docs/engine.md's measurement); on this fixed seed none does. The CUDA case is the same
check on a GPU (bf16 autocast there); it runs where one is present (`-m gpu`).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from backend.projects.config import DatasetSpec, ProjectConfig, ScoringMode
from worker import pipeline
from worker.ml.scoring import merge_scores, resolve_precision

EXAMPLES, SIDE, CLASSES, SIGMA_INDEX = 60, 12, 4, 40


def _inputs() -> tuple[torch.nn.Module, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (EXAMPLES, SIDE, SIDE, 1), dtype=np.uint8)
    with torch.random.fork_rng():  # PyTorch's default initialisation, seeded, leaving the global RNG alone
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(SIDE * SIDE, CLASSES))
    return model, images, np.full(EXAMPLES, SIGMA_INDEX, dtype=np.int64)


def _config(scoring: ScoringMode) -> ProjectConfig:
    return ProjectConfig(dataset=DatasetSpec(format="digits"), draws=50, budget=3, scoring=scoring)


@pytest.mark.parametrize("device_name", ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
def test_adaptive_selection_is_exact_selection_with_fewer_passes(device_name: str) -> None:
    device = torch.device(device_name)
    precision = resolve_precision("auto", device.type)
    model, images, sigmas = _inputs()
    nothing_queried = np.zeros(EXAMPLES, dtype=bool)

    exact_config, adaptive_config = _config("exact"), _config("adaptive")
    exact = pipeline.score_shard(
        model, exact_config, 1, images, sigmas, 0, EXAMPLES, device=device, precision=precision
    )
    exact_chosen, _ = pipeline.select_completed(exact_config, 1, exact, nothing_queried)
    assert exact.forward_passes == EXAMPLES * 50
    assert np.count_nonzero(exact.entropy > 0) >= 2 * 3, "H must be spread for the test to mean something"

    # Two shards, merged as the round's score rows are: noise is keyed by example, not by shard.
    adaptive = merge_scores(
        [
            pipeline.score_shard(
                model, adaptive_config, 1, images, sigmas, start, stop, device=device, precision=precision
            )
            for start, stop in ((0, 25), (25, EXAMPLES))
        ]
    )
    assert adaptive.stopped_early().any()
    complete = pipeline.completion(
        model, adaptive_config, 1, images, sigmas, device=device, precision=precision
    )
    chosen, completed = pipeline.select_completed(adaptive_config, 1, adaptive, nothing_queried, complete)

    assert [(item.index, item.side) for item in chosen] == [(item.index, item.side) for item in exact_chosen]
    assert [item.score for item in chosen] == pytest.approx([item.score for item in exact_chosen], abs=1e-12)
    assert completed.forward_passes > adaptive.forward_passes  # the picks were completed ...
    assert completed.forward_passes < exact.forward_passes  # ... and the whole still cost less
    assert completed.draws_used is not None
    assert all(completed.draws_used[item.index] == 50 for item in chosen)


def test_int8_scores_complete_in_fp32_on_the_cpu() -> None:
    """int8 adaptive rounds: the int8 copy scores, the completion runs fp32 (it has no int8 path)."""
    precision = resolve_precision("int8", "cpu")
    assert precision.completion_arguments() == {"mixed_precision": False, "channels_last": True}
