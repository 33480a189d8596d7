"""Oracles: Eq. 7's sequential test on a linear toy model against its closed form, table answers, F_o."""

from __future__ import annotations

import math
import statistics
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from worker.ml.models import spec_for_images
from worker.ml.oracle import (
    DEFAULT_CONFIDENCE,
    DEFAULT_MAX_DRAWS,
    DEFAULT_THRESHOLD,
    SequentialTest,
    SimulatedOracle,
    TableOracle,
    reference_sigma_indices,
    train_reference_classifier,
)
from worker.ml.training import TrainConfig

CPU = torch.device("cpu")
THRESHOLD = 0.5  # pixel value where the toy classifier switches class


class PixelThreshold(nn.Module):
    """Linear classifier on a single pixel: class 1 iff x > THRESHOLD."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        score = 100.0 * (x.flatten(1)[:, 0] - THRESHOLD)
        return torch.stack([-score, score], dim=1)


def _closed_form_index(pixel: int, tau: float) -> int:
    """Highest ladder index with Φ(margin / σ) ≥ τ (exact: clipping to [0, 1] keeps the side of 0.5)."""
    margin = abs(pixel / 255 - THRESHOLD)
    z = statistics.NormalDist().inv_cdf(tau)
    return min(90, math.floor(margin / z / 0.01))


def _one_pixel_images(values: list[int]) -> np.ndarray:
    return np.array(values, dtype=np.uint8).reshape(-1, 1, 1, 1)


@pytest.mark.parametrize("tau", [0.8, 0.95])
def test_simulated_oracle_matches_the_closed_form(tau: float) -> None:
    pixels = [150, 170, 200, 230, 250, 30, 60, 100]
    labels = np.array([int(p / 255 > THRESHOLD) for p in pixels])
    test = SequentialTest(threshold=tau, max_draws=16_384)
    oracle = SimulatedOracle(
        PixelThreshold(), _one_pixel_images(pixels), labels, device=CPU, seed=0, test=test
    )
    answers = oracle.answer(np.arange(len(pixels)))
    expected = np.array([_closed_form_index(p, tau) for p in pixels])
    assert expected.min() > 0 and expected.max() < 90  # the cases exercise the bisection, not a fallback
    assert np.abs(answers - expected).max() <= 1, (answers, expected)


def test_fallbacks_at_both_ends_of_the_ladder() -> None:
    images = _one_pixel_images([255, 200, 200])
    labels = np.array([1, 0, 1])  # example 1 is misclassified even without noise
    test = SequentialTest(threshold=0.5, max_draws=256)
    oracle = SimulatedOracle(PixelThreshold(), images, labels, device=CPU, seed=0, test=test)
    answers = oracle.answer(np.array([0, 1, 2]))
    assert answers[0] == 90  # Φ(m/σ) ≥ 0.5 at every σ: passes at the top
    assert answers[1] == 0  # wrong when clean: the lowest level
    assert answers[2] == 90


def test_scan_agrees_with_bisection_on_a_monotone_classifier() -> None:
    pixels = [140, 180, 220, 40, 90]
    images, labels = _one_pixel_images(pixels), np.array([1, 1, 1, 0, 0])
    bisection = SimulatedOracle(PixelThreshold(), images, labels, device=CPU, seed=3)
    scan = SimulatedOracle(PixelThreshold(), images, labels, device=CPU, seed=3, search="scan")
    indices = np.arange(5)
    assert np.abs(bisection.answer(indices) - scan.answer(indices)).max() <= 1
    assert bisection.levels_decided < scan.levels_decided / 5  # ~8 levels per example instead of 91
    assert bisection.forward_passes < scan.forward_passes / 2  # far levels are cheap: 32 copies each


def test_answers_depend_only_on_seed_and_example() -> None:
    pixels = [150, 170, 200, 230, 60]
    images, labels = _one_pixel_images(pixels), np.array([1, 1, 1, 1, 0])
    oracle = SimulatedOracle(PixelThreshold(), images, labels, device=CPU, seed=5, batch_size=128)
    together = oracle.answer(np.array([0, 1, 2, 3, 4]))
    alone = np.array([oracle.answer(np.array([i]))[0] for i in range(5)])
    reordered = oracle.answer(np.array([4, 2, 0, 3, 1]))
    assert together.tolist() == alone.tolist()
    assert reordered.tolist() == together[[4, 2, 0, 3, 1]].tolist()
    assert oracle.answer(np.zeros(0, dtype=np.int64)).size == 0
    assert (DEFAULT_THRESHOLD, DEFAULT_CONFIDENCE, DEFAULT_MAX_DRAWS) == (0.95, 0.95, 1024)


def test_oracle_rejects_bad_settings() -> None:
    images, labels = _one_pixel_images([10]), np.array([0])
    with pytest.raises(ValueError, match="threshold"):
        SequentialTest(threshold=0)
    with pytest.raises(ValueError, match="confidence"):
        SequentialTest(confidence=1.0)
    with pytest.raises(ValueError, match="min_draws <= max_draws"):
        SequentialTest(min_draws=64, max_draws=32)
    with pytest.raises(ValueError, match="search"):
        SimulatedOracle(PixelThreshold(), images, labels, device=CPU, seed=0, search="guess")
    with pytest.raises(IndexError):
        SimulatedOracle(PixelThreshold(), images, labels, device=CPU, seed=0).answer(np.array([1]))


def test_sequential_test_decides_clear_cases_early_and_close_ones_late() -> None:
    """Far from τ a level is decided on the first look; at τ it takes every look, then the rate decides."""
    test = SequentialTest(threshold=0.95, confidence=0.95, min_draws=32, max_draws=1024)
    assert test.looks == (32, 64, 128, 256, 512, 1024)
    decided, passes = test.verdict(np.array([10, 32]), np.array([32, 32]), last_look=False)
    assert decided.tolist() == [True, False]  # 10/32 is clearly below 0.95; 32/32 is not yet proof of ≥ 0.95
    assert passes.tolist() == [False, False]
    # All right: accepted once the lower bound δ^(1/n) clears τ (n ≥ ln δ / ln τ with δ split over 6 looks).
    needed = math.log(test.delta_per_look) / math.log(0.95)
    first_accepting_look = next(n for n in test.looks if n >= needed)
    for n in test.looks:
        decided, passes = test.verdict(np.array([n]), np.array([n]), last_look=False)
        assert bool(decided[0]) == (n >= first_accepting_look) == bool(passes[0])
    decided, passes = test.verdict(np.array([973, 972]), np.array([1024, 1024]), last_look=True)
    assert decided.all() and passes.tolist() == [True, False]  # 973/1024 = 0.9502 reaches τ, 972 does not


def test_sequential_test_errs_rarely_on_either_side_of_tau() -> None:
    """Bernoulli cases 2 points either side of τ: wrong verdicts stay near or below 1 - confidence."""
    test = SequentialTest(threshold=0.9, confidence=0.9, min_draws=32, max_draws=2048)
    rng = np.random.default_rng(0)

    def run(p: float, cases: int) -> np.ndarray:
        successes = np.zeros(cases, dtype=np.int64)
        draws = np.zeros(cases, dtype=np.int64)
        verdicts = np.zeros(cases, dtype=bool)
        open_cases = np.ones(cases, dtype=bool)
        for index, n in enumerate(test.looks):
            rows = np.flatnonzero(open_cases)
            successes[rows] += rng.binomial(n - draws[rows], p)
            draws[rows] = n
            decided, passes = test.verdict(
                successes[rows], draws[rows], last_look=index == len(test.looks) - 1
            )
            verdicts[rows] = passes
            open_cases[rows] = ~decided
        return verdicts

    assert run(0.88, 2000).mean() <= 0.12  # wrongly accepted
    assert (~run(0.92, 2000)).mean() <= 0.12  # wrongly rejected


class AlwaysOne(nn.Module):
    """Right about class 1 at every noise level: P(correct) = 1, the clearest case there is."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tensor([[0.0, 1.0]]).expand(len(x), 2)


def test_draws_adapt_to_how_clear_the_case_is() -> None:
    """A certain case is decided on the first look that can prove it; one near its boundary needs more."""
    clear = SimulatedOracle(AlwaysOne(), _one_pixel_images([150]), np.array([1]), device=CPU, seed=0)
    close = SimulatedOracle(PixelThreshold(), _one_pixel_images([150]), np.array([1]), device=CPU, seed=0)
    assert clear.answer(np.array([0])).tolist() == [90]
    # Clean and top levels, each accepted at 128 copies: the first look with δ^(1/n) ≥ 0.95.
    assert (clear.levels_decided, clear.forward_passes) == (2, 256)
    close.answer(np.array([0]))
    assert close.forward_passes / close.levels_decided > 128


def test_table_oracle_replays_recorded_answers() -> None:
    oracle = TableOracle({3: 40, 7: 0, 9: 90})
    assert oracle.answer(np.array([9, 3, 7])).tolist() == [90, 40, 0]
    with pytest.raises(KeyError, match=r"\[5\]"):
        oracle.answer(np.array([3, 5]))
    with pytest.raises(ValueError, match="ladder"):
        TableOracle({1: 95})


def test_reference_classifier_is_trained_once_and_reused(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    labels = np.arange(40) % 2
    images = (
        np.where(labels == 1, 200, 50)[:, None, None, None] + rng.integers(-20, 20, (40, 8, 8, 1))
    ).astype(np.uint8)
    spec = spec_for_images(images, 2, "small_cnn")
    config = TrainConfig(epochs=3, batch_size=8, lr=0.05, seed=1)
    path = tmp_path / "reference.safetensors"
    first = train_reference_classifier(spec, images, labels, config, device=CPU, checkpoint_path=path)
    written = path.stat().st_mtime_ns
    second = train_reference_classifier(spec, images, labels, config, device=CPU, checkpoint_path=path)
    assert path.stat().st_mtime_ns == written  # loaded, not retrained
    inputs = torch.rand(3, 1, 8, 8)
    with torch.inference_mode():
        assert torch.equal(first(inputs), second(inputs))
    other_config = TrainConfig(epochs=1, batch_size=8, lr=0.05, seed=1)
    train_reference_classifier(spec, images, labels, other_config, device=CPU, checkpoint_path=path)
    assert path.stat().st_mtime_ns != written  # a different recipe retrains and replaces it
    levels = reference_sigma_indices(10_000, seed=1)
    assert levels.min() == 0 and levels.max() == 90  # spread over the whole ladder
