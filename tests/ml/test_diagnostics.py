"""Corollary 2.1's diagnostic on toys whose answers are known."""

from __future__ import annotations

import numpy as np
import pytest

from worker.ml.simulate.diagnostics import round_diagnostic, side_moves


def test_moves_are_counted_per_side_in_the_predicted_direction() -> None:
    # High-H side: two moved down (predicted), one up, one unchanged. Low-H side: three up, one down.
    before = np.array([50, 50, 50, 50, 50, 50, 50, 50])
    answers = np.array([30, 45, 60, 50, 70, 51, 90, 20])
    sides = ["excessive"] * 4 + ["deficient"] * 4
    diagnostic = round_diagnostic(
        round_index=0,
        sides=sides,
        levels_before=before,
        answers=answers,
        sample_entropy=np.array([0.1, 0.5, 0.9, 1.3]),
        sample_levels=np.array([50, 50, 50, 50]),
        sample_answers=np.array([70, 55, 40, 10]),  # σ_i − σ_o = −20, −5, 10, 40: rises with H
    )
    high, low = diagnostic.sides["excessive"], diagnostic.sides["deficient"]
    assert (high.queried, high.down, high.up, high.unchanged, high.predicted) == (4, 2, 1, 1, 2)
    assert high.predicted_share == 0.5 and high.mean_change == pytest.approx((-20 - 5 + 10 + 0) / 4)
    assert (low.queried, low.up, low.down, low.predicted) == (4, 3, 1, 3)
    assert low.predicted_share == 0.75
    assert diagnostic.spearman == pytest.approx(1.0)  # perfectly ordered: H predicts the excess
    row = diagnostic.to_dict()
    assert row["round"] == 1 and row["sample"] == 4
    assert row["sides"]["deficient"]["predicted_share"] == 0.75


def test_opposite_order_gives_negative_correlation_and_empty_sides_no_share() -> None:
    diagnostic = round_diagnostic(
        round_index=2,
        sides=["excessive", "excessive"],
        levels_before=np.array([40, 40]),
        answers=np.array([40, 40]),
        sample_entropy=np.array([0.0, 0.3, 0.6]),
        sample_levels=np.array([40, 40, 40]),
        sample_answers=np.array([10, 40, 80]),
    )
    assert diagnostic.spearman == pytest.approx(-1.0)
    assert diagnostic.sides["excessive"].predicted == 0 and diagnostic.sides["excessive"].unchanged == 2
    assert (
        diagnostic.sides["deficient"].queried == 0 and diagnostic.sides["deficient"].predicted_share is None
    )
    constant = round_diagnostic(
        round_index=0,
        sides=[],
        levels_before=np.zeros(0, dtype=np.int64),
        answers=np.zeros(0, dtype=np.int64),
        sample_entropy=np.zeros(5),
        sample_levels=np.full(5, 30),
        sample_answers=np.arange(5),
    )
    assert constant.to_dict()["spearman_entropy_vs_excess"] is None  # H all 0: no ranking to correlate


def test_side_moves_rejects_unknown_sides() -> None:
    with pytest.raises(KeyError):
        side_moves("sideways", np.array([1]), np.array([2]))
