"""How far people's consensus σ agrees with the simulated oracle's σ_o (Eq. 7), on the same examples.

Pure functions of paired ladder indices (0..90): the Pearson correlation, and the mean difference
consensus − σ_o in ladder steps with a two-sided Student-t interval (the pairs are a sample of the
project's examples; the differences are roughly symmetric, and t is exact for normal differences
and conservative next to a bootstrap at the small counts a round gives).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

CONFIDENCE = 0.95  # of the mean difference's interval


@dataclass(frozen=True)
class OracleAgreement:
    count: int  # pairs (queries with both a consensus and σ_o)
    pearson: float | None  # None below 2 pairs or when either side does not vary
    mean_difference: float | None  # mean of consensus − σ_o, ladder steps; > 0: people tolerate more noise
    interval: tuple[float, float] | None  # CONFIDENCE t interval of the mean difference; None below 2 pairs


def oracle_agreement(
    consensus: Sequence[int], oracle: Sequence[int], *, confidence: float = CONFIDENCE
) -> OracleAgreement:
    """Agreement of paired answers: consensus[i] and oracle[i] are the same example's σ indices."""
    if len(consensus) != len(oracle):
        raise ValueError(f"{len(consensus)} consensus values but {len(oracle)} oracle answers")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    people = np.asarray(consensus, dtype=np.float64)
    reference = np.asarray(oracle, dtype=np.float64)
    count = int(people.size)
    if count == 0:
        return OracleAgreement(0, None, None, None)
    differences = people - reference
    mean = float(differences.mean())
    if count < 2:
        return OracleAgreement(1, None, mean, None)
    pearson = None
    if people.std() > 0 and reference.std() > 0:
        pearson = float(np.clip(np.corrcoef(people, reference)[0, 1], -1.0, 1.0))
    half_width = float(stats.t.ppf(0.5 + confidence / 2, count - 1)) * float(differences.std(ddof=1))
    half_width /= math.sqrt(count)
    return OracleAgreement(count, pearson, mean, (mean - half_width, mean + half_width))
