"""Paired comparisons over seeds: t intervals, two-stage bootstrap, detectable effects, sentences."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats

from worker.ml.simulate.comparisons import (
    Comparison,
    bootstrap_interval,
    compare,
    describe,
    minimum_detectable_effect,
    paired_t,
    spearman,
)

LABELS = {"a_label": "AQPL", "b_label": "Random", "metric_label": "Gaussian noise"}


def _bernoulli_scores(rng: np.random.Generator, rate: float, seeds: int, images: int) -> np.ndarray:
    """Per-image clean scores: 1.0 where a model classifies the image correctly."""
    return (rng.random((seeds, images)) < rate).astype(np.float64)


def _contains(interval: tuple[float, float], value: float) -> bool:
    return interval[0] <= value <= interval[1]


def test_paired_t_matches_a_hand_computed_interval() -> None:
    differences = np.array([0.01, 0.02, 0.03, 0.04])
    mean, (low, high), p_value = paired_t(differences)
    # sd = sqrt(0.0005 / 3), t_{0.975, 3} = 3.182446
    half_width = 3.182446 * math.sqrt(0.0005 / 3) / 2
    assert mean == pytest.approx(0.025)
    assert low == pytest.approx(0.025 - half_width, rel=1e-6)
    assert high == pytest.approx(0.025 + half_width, rel=1e-6)
    assert low < mean < high
    assert p_value == pytest.approx(stats.ttest_1samp(differences, 0.0).pvalue)


def test_paired_t_agrees_with_scipy_ttest_rel() -> None:
    rng = np.random.default_rng(3)
    b = rng.uniform(0.6, 0.8, 7)
    a = b + rng.normal(0.01, 0.02, 7)
    mean, interval, p_value = paired_t(a - b)
    reference = stats.ttest_rel(a, b)
    assert p_value == pytest.approx(reference.pvalue)
    assert interval == pytest.approx(tuple(reference.confidence_interval(0.95)))
    assert _contains(interval, mean)


def test_paired_t_edge_cases() -> None:
    assert paired_t(np.zeros(5)) == (0.0, (0.0, 0.0), 1.0)
    mean, interval, p_value = paired_t(np.array([0.02]))
    assert mean == 0.02
    assert all(math.isnan(v) for v in interval)
    assert math.isnan(p_value)


def test_planted_difference_is_detected() -> None:
    rng = np.random.default_rng(0)
    b_images = rng.random((10, 2000))
    a_images = b_images + 0.05 + rng.normal(0.0, 0.01, b_images.shape)
    result = compare("aqpl", "random", "gaussian", 300, a_images, b_images)
    assert result.mean == pytest.approx(0.05, abs=1e-3)
    assert result.ci95[0] > 0
    assert result.ci95_bootstrap[0] > 0
    assert result.p_value < 0.01
    assert result.n_seeds == 10
    sentence = describe(result, **LABELS)
    assert sentence.startswith("AQPL beats Random on Gaussian noise by 5.0 points [")
    assert "at 300 queries (p < 0.001, 10 seeds)" in sentence


def test_no_difference_is_not_detected() -> None:
    rng = np.random.default_rng(1)
    a_images = _bernoulli_scores(rng, 0.7, 10, 1000)
    b_images = _bernoulli_scores(rng, 0.7, 10, 1000)
    result = compare("aqpl", "random", "clean", 300, a_images, b_images)
    assert _contains(result.ci95, 0.0)
    assert _contains(result.ci95_bootstrap, 0.0)
    assert result.p_value > 0.05
    assert "no difference detectable" in describe(result, **LABELS)


def test_negative_difference_names_b_the_winner() -> None:
    rng = np.random.default_rng(2)
    b_images = rng.random((8, 500))
    a_images = b_images - 0.03 + rng.normal(0.0, 0.01, b_images.shape)
    result = compare("aqpl", "random", "clean", None, a_images, b_images)
    assert result.ci95[1] < 0
    sentence = describe(result, a_label="AQPL", b_label="Random", metric_label="clean accuracy")
    assert sentence.startswith("Random beats AQPL on clean accuracy by 3.0 points [")
    assert "queries" not in sentence
    assert "−" not in sentence  # the winner's side: every number positive


def test_describe_sentences_exactly() -> None:
    win = Comparison("aqpl", "random", "gaussian", 300, 0.012, (0.004, 0.020), (0.003, 0.021), 10, 0.004)
    assert describe(win, **LABELS) == (
        "AQPL beats Random on Gaussian noise by 1.2 points [0.4, 2.0] at 300 queries (p = 0.004, 10 seeds)"
    )
    loss = Comparison("aqpl", "random", "clean", 300, -0.008, (-0.013, -0.003), (-0.014, -0.002), 10, 0.02)
    assert describe(loss, a_label="AQPL", b_label="Random", metric_label="clean accuracy") == (
        "Random beats AQPL on clean accuracy by 0.8 points [0.3, 1.3] at 300 queries (p = 0.02, 10 seeds)"
    )
    tie = Comparison("aqpl", "random", "gaussian", None, -0.003, (-0.011, 0.005), (-0.012, 0.006), 10, 0.41)
    assert describe(tie, **LABELS) == (
        "AQPL vs Random on Gaussian noise: no difference detectable (−0.3 [−1.1, 0.5], p = 0.41, 10 seeds)"
    )


def test_bootstrap_is_deterministic_contains_the_mean_and_widens_with_few_images() -> None:
    rng = np.random.default_rng(4)

    def differences(images: int) -> np.ndarray:
        a_minus_b: np.ndarray = _bernoulli_scores(rng, 0.72, 10, images) - _bernoulli_scores(
            rng, 0.70, 10, images
        )
        return a_minus_b

    many, few = differences(5000), differences(50)
    first = bootstrap_interval(many, resamples=2000, seed=7)
    assert bootstrap_interval(many, resamples=2000, seed=7) == first
    assert bootstrap_interval(many, resamples=2000, seed=8) != first
    assert _contains(first, float(many.mean()))
    narrow = first[1] - first[0]
    few_interval = bootstrap_interval(few, resamples=2000, seed=7)
    assert _contains(few_interval, float(few.mean()))
    # Image noise shrinks like 1/sqrt(images): 100x fewer images, about 10x wider.
    assert few_interval[1] - few_interval[0] > 4 * narrow


def test_bootstrap_covers_a_known_truth() -> None:
    rng = np.random.default_rng(5)
    truth, seeds, images, repetitions = 0.02, 10, 100, 100
    covered = 0
    for repetition in range(repetitions):
        # Seed effects, image effects (a fresh test set each time) and their interaction.
        seed_effect = rng.normal(0.0, 0.01, (seeds, 1))
        image_effect = rng.normal(0.0, 0.05, (1, images))
        differences = truth + seed_effect + image_effect + rng.normal(0.0, 0.1, (seeds, images))
        covered += _contains(bootstrap_interval(differences, resamples=400, seed=repetition), truth)
    assert 85 <= covered <= 100


def test_minimum_detectable_effect_against_the_normal_formula() -> None:
    assert minimum_detectable_effect(0.02, 10) < minimum_detectable_effect(0.04, 10)
    assert minimum_detectable_effect(0.02, 20) < minimum_detectable_effect(0.02, 10)
    normal_factor = stats.norm.ppf(0.975) + stats.norm.ppf(0.8)  # 2.80
    # n = 10: the t-test pays for estimating sd; Cohen's d of about 1.0 (G*Power: 0.996).
    assert minimum_detectable_effect(1.0, 10) == pytest.approx(0.996, abs=0.005)
    assert minimum_detectable_effect(0.01, 10) > normal_factor * 0.01 / math.sqrt(10)
    large = minimum_detectable_effect(0.01, 2000)
    assert large == pytest.approx(normal_factor * 0.01 / math.sqrt(2000), rel=0.02)
    assert minimum_detectable_effect(0.0, 10) == 0.0
    assert minimum_detectable_effect(0.01, 1) == math.inf


def test_spearman_matches_scipy_with_ties() -> None:
    rng = np.random.default_rng(6)
    x = rng.integers(0, 5, 30).astype(np.float64)
    y = x + rng.integers(-2, 3, 30)
    assert spearman(x, y) == pytest.approx(stats.spearmanr(x, y).statistic)
    assert math.isnan(spearman(np.ones(5), np.arange(5.0)))
    assert math.isnan(spearman([1.0, 2.0], [2.0, 1.0]))


def test_to_dict_is_json_safe_with_the_documented_keys() -> None:
    rng = np.random.default_rng(7)
    result = compare("aqpl", "random", "corruptions", 100, rng.random((3, 40)), rng.random((3, 40)))
    data = result.to_dict()
    assert set(data) == {
        "a", "b", "metric", "queries", "mean", "ci95", "ci95_method",
        "ci95_bootstrap", "bootstrap_method", "n_seeds", "p_value",
    }  # fmt: skip
    assert data["ci95_method"] == "paired t over seeds"
    assert json.loads(json.dumps(data, allow_nan=False)) == data


def test_one_seed_has_no_interval() -> None:
    rng = np.random.default_rng(8)
    result = compare("aqpl", "random", "clean", 300, rng.random((1, 50)), rng.random((1, 50)))
    assert all(math.isnan(v) for v in result.ci95)
    data = result.to_dict()
    assert data["ci95"] == [None, None]
    assert data["ci95_bootstrap"] == [None, None]
    assert data["p_value"] is None
    json.dumps(data, allow_nan=False)
    assert "one seed" in describe(result, **LABELS)


def test_compare_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="shape"):
        compare("a", "b", "clean", None, np.zeros((3, 4)), np.zeros((3, 5)))
