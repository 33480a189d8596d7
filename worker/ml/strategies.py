"""Which examples to query next: AQPL's two-sided rule and three baselines, behind one `select`.

Every strategy picks up to 2B examples not queried before. AQPL (the paper's Algorithm 1)
takes the B highest H (σ_i probably excessive) and the B lowest H (probably deficient);
the baselines take 2B at random or the 2B most uncertain by a classic score.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from worker.ml.scoring import Scores

STRATEGY_NAMES = ("aqpl", "random", "clean_uncertainty", "noise_uncertainty")
SIDES = ("excessive", "deficient", "uncertain", "random")


@dataclass(frozen=True)
class Selection:
    indices: npt.NDArray[np.int64]  # example indices, in selection order, no duplicates
    sides: tuple[str, ...]  # per index: "excessive" | "deficient" (aqpl), "uncertain" or "random"


def _ascending_with_random_ties(
    values: npt.NDArray[np.float64], rng: np.random.Generator
) -> npt.NDArray[np.int64]:
    # lexsort sorts by the last key first: by value, ties in random order.
    order: npt.NDArray[np.int64] = np.lexsort((rng.random(len(values)), values)).astype(np.int64)
    return order


def select(
    strategy: str,
    scores: Scores,
    budget: int,
    already_queried: npt.NDArray[np.bool_],
    rng: np.random.Generator,
) -> Selection:
    """Up to 2·budget not-yet-queried examples chosen by `strategy`; fewer if fewer remain."""
    if strategy not in STRATEGY_NAMES:
        raise ValueError(f"unknown strategy {strategy!r}: expected one of {', '.join(STRATEGY_NAMES)}")
    if budget < 0:
        raise ValueError(f"budget must be >= 0, got {budget}")
    queried = np.asarray(already_queried, dtype=bool)
    if queried.shape != scores.entropy.shape:
        raise ValueError(f"already_queried has shape {queried.shape}, scores cover {scores.entropy.shape}")
    candidates = np.flatnonzero(~queried).astype(np.int64)

    if strategy == "random":
        chosen = rng.choice(candidates, size=min(2 * budget, len(candidates)), replace=False).astype(np.int64)
        return Selection(chosen, ("random",) * len(chosen))

    if strategy == "aqpl":
        order = candidates[_ascending_with_random_ties(scores.entropy[candidates], rng)]
        # With fewer than 2B candidates, the upper half is "excessive" and the lower half "deficient".
        num_low = min(budget, len(order) // 2)
        num_high = min(budget, len(order) - num_low)
        high = order[::-1][:num_high]
        low = order[:num_low]
        return Selection(np.concatenate([high, low]), ("excessive",) * num_high + ("deficient",) * num_low)

    values = scores.clean_uncertainty if strategy == "clean_uncertainty" else scores.noise_uncertainty
    order = candidates[_ascending_with_random_ties(values[candidates], rng)]
    chosen = order[::-1][: 2 * budget].copy()
    return Selection(chosen, ("uncertain",) * len(chosen))
