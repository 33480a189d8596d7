"""Pure functions that turn annotators' σ-ladder answers into a consensus and agreement figures.

Every value is a ladder index (0..90, σ = index / 100); dispersions are in ladder steps.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import numpy.typing as npt


def median(values: Sequence[float]) -> float:
    """The plain median (the mean of the two middle values for an even count)."""
    if not values:
        raise ValueError("the median of no answers is undefined")
    return float(np.median(np.asarray(values, dtype=np.float64)))


def median_on_ladder(values: Sequence[int]) -> int:
    """The median snapped to the ladder; a half-way median (even count) rounds up, to the larger σ.

    Rounding up is deliberate: a tie between two answers means the example was still recognised
    at the upper one by someone, and σ too weak costs robustness while σ a step too strong costs little.
    """
    return math.floor(median(values) + 0.5)


def median_absolute_deviation(values: Sequence[int]) -> float:
    """median(|v - median(v)|), unscaled, in ladder steps (0 for one answer)."""
    centre = median(values)
    return median([abs(v - centre) for v in values])


def krippendorff_alpha_interval(units: Sequence[Sequence[int]]) -> float | None:
    """Krippendorff's alpha with the interval metric (squared differences), Krippendorff (2011).

    `units` holds each query's answers (any number of annotators, missing answers simply absent).
    Units with fewer than two answers cannot be paired and are left out. Returns None when alpha is
    undefined: fewer than two pairable answers, or no variation at all (expected disagreement 0).
    alpha = 1 - D_o / D_e with D_o = (1/n) sum_u sum_{i != j in u} (v_i - v_j)^2 / (m_u - 1) and
    D_e = sum_{i != j over all pairable values} (v_i - v_j)^2 / (n (n - 1)).
    """
    pairable = [np.asarray(unit, dtype=np.float64) for unit in units if len(unit) >= 2]
    if not pairable:
        return None
    everything = np.concatenate(pairable)
    n = everything.size
    observed = sum(_sum_squared_differences(unit) / (unit.size - 1) for unit in pairable) / n
    expected = _sum_squared_differences(everything) / (n * (n - 1))
    if expected == 0.0:
        return None
    return float(1.0 - observed / expected)


def _sum_squared_differences(values: npt.NDArray[np.float64]) -> float:
    """sum over ordered pairs i != j of (v_i - v_j)^2 = 2 (m sum v^2 - (sum v)^2), without the m^2 matrix."""
    m = values.size
    return float(2.0 * (m * np.dot(values, values) - values.sum() ** 2))


def annotator_bias(
    answers: Iterable[tuple[int, int, int]], consensus: Mapping[int, float] | None = None
) -> dict[int, float]:
    """Mean of (own answer - the query's consensus) per annotator, in ladder steps.

    `answers` are (annotator_id, query_id, sigma_index). `consensus` maps query ids to the value to
    compare against; by default each query's plain median over all its answers, counting only
    queries answered by at least two annotators (a lone answer is its own consensus). Positive bias:
    the annotator tolerates more noise than the others.
    """
    answers = list(answers)
    if consensus is None:
        by_query: dict[int, list[int]] = defaultdict(list)
        for _annotator, query, sigma in answers:
            by_query[query].append(sigma)
        consensus = {query: median(values) for query, values in by_query.items() if len(values) >= 2}
    differences: dict[int, list[float]] = defaultdict(list)
    for annotator, query, sigma in answers:
        if query in consensus:
            differences[annotator].append(sigma - consensus[query])
    return {annotator: float(np.mean(values)) for annotator, values in differences.items()}
