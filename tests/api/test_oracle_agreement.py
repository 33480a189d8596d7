"""People's consensus against the simulated oracle's σ_o: correlation, mean difference and its interval."""

from __future__ import annotations

import math

import pytest
from scipy import stats

from backend.annotations.oracle_agreement import OracleAgreement, oracle_agreement


def test_against_scipys_pearson_and_one_sample_t_interval() -> None:
    consensus = [10, 20, 30, 40, 55, 61]
    oracle = [12, 18, 33, 41, 50, 70]
    result = oracle_agreement(consensus, oracle)
    differences = [c - o for c, o in zip(consensus, oracle, strict=True)]
    expected_interval = stats.ttest_1samp(differences, 0.0).confidence_interval(0.95)
    assert result.count == 6
    assert result.pearson == pytest.approx(stats.pearsonr(consensus, oracle).statistic, abs=1e-12)
    assert result.mean_difference == pytest.approx(sum(differences) / 6, abs=1e-12)  # -1.33 steps
    assert result.interval == pytest.approx((expected_interval.low, expected_interval.high), abs=1e-9)


def test_a_worked_example_by_hand() -> None:
    # Differences -2, 2, -3, -1: mean -1, sd sqrt(14/3), t(0.975, 3) = 3.182446.
    result = oracle_agreement([10, 20, 30, 40], [12, 18, 33, 41])
    half = 3.182446305 * math.sqrt(14 / 3) / 2
    assert result.mean_difference == -1.0
    assert result.interval == pytest.approx((-1 - half, -1 + half), abs=1e-6)


def test_identical_answers_agree_fully_with_a_zero_width_interval() -> None:
    result = oracle_agreement([5, 30, 72], [5, 30, 72])
    assert result == OracleAgreement(count=3, pearson=1.0, mean_difference=0.0, interval=(0.0, 0.0))


def test_too_few_or_constant_pairs_leave_what_is_undefined_out() -> None:
    assert oracle_agreement([], []) == OracleAgreement(0, None, None, None)
    assert oracle_agreement([40], [30]) == OracleAgreement(1, None, 10.0, None)
    constant = oracle_agreement([30, 30, 30], [20, 25, 35])  # people did not vary: no correlation
    assert constant.pearson is None and constant.mean_difference == pytest.approx(3.3333333)
    with pytest.raises(ValueError, match="2 consensus values but 1 oracle"):
        oracle_agreement([1, 2], [1])
