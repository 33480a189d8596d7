"""The paper's Corollary 2.1, checked on the oracle's answers.

The corollary predicts that a high H (Eq. 5) means σ_i is excessive and a low H that it is deficient.
Per round and side we count how often the oracle moved a queried level the predicted way (down on the
high-H side, up on the low-H side), and on a random sample of examples that were *not* queried we
correlate H with σ_i − σ_o (Spearman; the corollary predicts a positive correlation).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from worker.ml.simulate.comparisons import spearman

# The direction the corollary predicts for each side of AQPL's selection: −1 down, +1 up.
PREDICTED_DIRECTION = {"excessive": -1, "deficient": +1}


@dataclass(frozen=True)
class SideMoves:
    """How the oracle's answers moved the levels of one side's queries."""

    queried: int
    down: int
    up: int
    unchanged: int
    predicted: int  # moved the way the corollary predicts for this side
    mean_change: float | None  # mean σ_o − σ_i, ladder indices

    @property
    def predicted_share(self) -> float | None:
        return self.predicted / self.queried if self.queried else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "queried": self.queried,
            "down": self.down,
            "up": self.up,
            "unchanged": self.unchanged,
            "predicted": self.predicted,
            "predicted_share": self.predicted_share,
            "mean_change": self.mean_change,
        }


@dataclass(frozen=True)
class RoundDiagnostic:
    round: int  # 1-based
    sides: dict[str, SideMoves]
    spearman: float  # H against σ_i − σ_o on the not-queried sample (nan: too few or constant)
    sample: int  # examples in that sample

    def to_dict(self) -> dict[str, Any]:
        return {
            "round": self.round,
            "sides": {side: moves.to_dict() for side, moves in self.sides.items()},
            "spearman_entropy_vs_excess": None if np.isnan(self.spearman) else self.spearman,
            "sample": self.sample,
        }


def side_moves(side: str, levels_before: npt.NDArray[np.int64], answers: npt.NDArray[np.int64]) -> SideMoves:
    change = answers.astype(np.int64) - levels_before.astype(np.int64)
    predicted = int(np.sum(np.sign(change) == PREDICTED_DIRECTION[side]))
    return SideMoves(
        queried=int(change.size),
        down=int(np.sum(change < 0)),
        up=int(np.sum(change > 0)),
        unchanged=int(np.sum(change == 0)),
        predicted=predicted,
        mean_change=float(change.mean()) if change.size else None,
    )


def round_diagnostic(
    *,
    round_index: int,
    sides: Sequence[str],
    levels_before: npt.NDArray[np.int64],
    answers: npt.NDArray[np.int64],
    sample_entropy: npt.NDArray[np.float64],
    sample_levels: npt.NDArray[np.int64],
    sample_answers: npt.NDArray[np.int64],
) -> RoundDiagnostic:
    """One round: `sides[k]` is the side of the k-th query (levels before and the oracle's answer)."""
    side_array = np.asarray(sides)
    moves = {
        side: side_moves(side, levels_before[side_array == side], answers[side_array == side])
        for side in PREDICTED_DIRECTION
    }
    excess = sample_levels.astype(np.float64) - sample_answers.astype(np.float64)
    return RoundDiagnostic(
        round=round_index + 1,
        sides=moves,
        spearman=spearman(sample_entropy, excess),
        sample=int(sample_entropy.size),
    )
