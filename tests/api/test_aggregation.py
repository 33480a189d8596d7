"""The pure aggregation functions: ladder median, MAD, Krippendorff's alpha (interval), annotator bias."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from backend.annotations.aggregation import (
    annotator_bias,
    krippendorff_alpha_interval,
    median_absolute_deviation,
    median_on_ladder,
)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([7], 7),
        ([1, 2, 3], 2),
        ([10, 11], 11),
        ([10, 13], 12),
        ([0, 90], 45),
        ([5, 1, 9, 3], 4),
        ([3, 3, 4, 90], 4),
    ],
)
def test_median_on_ladder_rounds_half_way_up(values: list[int], expected: int) -> None:
    assert median_on_ladder(values) == expected


def test_median_of_nothing_is_an_error() -> None:
    with pytest.raises(ValueError, match="no answers"):
        median_on_ladder([])


@pytest.mark.parametrize(
    ("values", "expected"),
    [([7], 0.0), ([20, 31], 5.5), ([1, 2, 3, 4, 100], 1.0), ([10, 10, 10], 0.0), ([0, 0, 90], 0.0)],
)
def test_median_absolute_deviation(values: list[int], expected: float) -> None:
    assert median_absolute_deviation(values) == pytest.approx(expected)


def test_krippendorff_alpha_matches_the_published_example() -> None:
    """Krippendorff (2011), 'Computing Krippendorff's alpha-reliability', the 4-coder 12-unit example:
    interval alpha = 0.849 (with missing values; the last unit has one value and is unpairable)."""
    missing = None
    coders = [
        [1, 2, 3, 3, 2, 1, 4, 1, 2, missing, missing, missing],
        [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, missing, 3],
        [missing, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, missing],
        [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, missing],
    ]
    units = [[value for value in unit if value is not None] for unit in zip(*coders, strict=True)]
    alpha = krippendorff_alpha_interval(units)
    assert alpha is not None
    assert round(alpha, 3) == 0.849


def _alpha_by_coincidence_matrix(units: list[list[int]]) -> float:
    """The textbook route: the coincidence matrix o_ck, then 1 - (n-1) sum o_ck d_ck / sum n_c n_k d_ck."""
    values = sorted({value for unit in units for value in unit})
    position = {value: i for i, value in enumerate(values)}
    coincidences = np.zeros((len(values), len(values)))
    for unit in units:
        if len(unit) < 2:
            continue
        for i, j in itertools.permutations(range(len(unit)), 2):
            coincidences[position[unit[i]], position[unit[j]]] += 1 / (len(unit) - 1)
    marginals = coincidences.sum(axis=1)
    n = marginals.sum()
    distance = (np.array(values)[:, None] - np.array(values)[None, :]) ** 2
    observed = (coincidences * distance).sum()
    expected = (np.outer(marginals, marginals) * distance).sum() / (n - 1)
    return float(1 - observed / expected)


def test_krippendorff_alpha_agrees_with_the_coincidence_matrix_on_random_data() -> None:
    rng = np.random.default_rng(3)
    for _trial in range(20):
        units = [
            [int(v) for v in rng.integers(0, 91, size=rng.integers(1, 5))]
            for _unit in range(rng.integers(3, 12))
        ]
        if sum(len(unit) for unit in units if len(unit) > 1) < 2:
            continue
        alpha = krippendorff_alpha_interval(units)
        assert alpha is not None
        assert alpha == pytest.approx(_alpha_by_coincidence_matrix(units))


def test_krippendorff_alpha_edge_cases() -> None:
    assert krippendorff_alpha_interval([]) is None
    assert krippendorff_alpha_interval([[5], [7]]) is None  # nothing to pair
    assert krippendorff_alpha_interval([[5, 5], [5, 5]]) is None  # no variation: undefined
    assert krippendorff_alpha_interval([[5, 5], [40, 40], [80, 80]]) == pytest.approx(1.0)
    # Agreement no better than chance pairs gives alpha near (or below) zero.
    disagreeing = krippendorff_alpha_interval([[0, 90], [90, 0], [0, 90]])
    assert disagreeing is not None and disagreeing < 0


def test_annotator_bias_against_the_median_of_each_query() -> None:
    answers = []
    for query in range(6):
        answers += [(1, query, 30 + query), (2, query, 30 + query), (3, query, 34 + query)]
    answers.append((4, 99, 50))  # a query nobody else answered: no consensus, no bias
    bias = annotator_bias(answers)
    assert bias == {1: pytest.approx(0.0), 2: pytest.approx(0.0), 3: pytest.approx(4.0)}


def test_annotator_bias_against_a_given_consensus() -> None:
    bias = annotator_bias([(1, 10, 20), (1, 11, 30), (2, 10, 25)], consensus={10: 22.0, 11: 30.0})
    assert bias == {1: pytest.approx(-1.0), 2: pytest.approx(3.0)}
