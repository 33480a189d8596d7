"""Which examples to query next: AQPL's two-sided rule and three baselines, behind one `select`.

Every strategy picks up to 2B examples not queried before. AQPL (the paper's Algorithm 1)
takes the B highest H (σ_i probably excessive) and the B lowest H (probably deficient);
the baselines take 2B at random or the 2B most uncertain by a classic score.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from worker.ml.scoring import Scores

STRATEGY_NAMES = ("aqpl", "random", "clean_uncertainty", "noise_uncertainty")
SIDES = ("excessive", "deficient", "uncertain", "random")
# Draws the remaining noisy copies of the given examples (scoring.complete_draws, bound to the
# model, images, levels and seed the scores were made with) and returns the updated scores.
Completion = Callable[[Scores, npt.NDArray[np.int64]], Scores]


@dataclass(frozen=True)
class Selection:
    indices: npt.NDArray[np.int64]  # example indices, in selection order, no duplicates
    sides: tuple[str, ...]  # per index: "excessive" | "deficient" (aqpl), "uncertain" or "random"
    completion_passes: int = 0  # noisy images classified to complete early-stopped picks


def _ascending_with_random_ties(
    values: npt.NDArray[np.float64], tie_breaks: npt.NDArray[np.float64]
) -> npt.NDArray[np.int64]:
    # lexsort sorts by the last key first: by value, ties in the order of the random tie-breaks.
    order: npt.NDArray[np.int64] = np.lexsort((tie_breaks, values)).astype(np.int64)
    return order


def select(
    strategy: str,
    scores: Scores,
    budget: int,
    already_queried: npt.NDArray[np.bool_],
    rng: np.random.Generator,
    *,
    complete: Completion | None = None,
) -> Selection:
    """Up to 2·budget not-yet-queried examples chosen by `strategy`; fewer if fewer remain.

    With adaptive scores, pass `complete`: picks whose scoring stopped early get their
    remaining draws and the choice is made again (same tie-breaks) until every pick has all M
    draws. Early stopping then cannot decide a pick on a few draws: on AQPL's deficient side
    an example unanimous on a pilot of 8 draws is only chosen once it is unanimous on all M,
    as exact scoring would require (docs/engine.md, adaptive scoring).
    """
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

    tie_breaks = rng.random(len(candidates))  # drawn once: a repeated choice breaks ties the same way
    passes_before = scores.forward_passes
    while True:
        selection = _rank(strategy, scores, budget, candidates, tie_breaks)
        unfinished = selection.indices[scores.stopped_early()[selection.indices]]
        # Clean uncertainty reads no noisy draw, so early stopping cannot have changed it.
        if complete is None or strategy == "clean_uncertainty" or unfinished.size == 0:
            return Selection(selection.indices, selection.sides, scores.forward_passes - passes_before)
        scores = complete(scores, unfinished)


def _rank(
    strategy: str,
    scores: Scores,
    budget: int,
    candidates: npt.NDArray[np.int64],
    tie_breaks: npt.NDArray[np.float64],
) -> Selection:
    if strategy == "aqpl":
        order = candidates[_ascending_with_random_ties(scores.entropy[candidates], tie_breaks)]
        # With fewer than 2B candidates, the upper half is "excessive" and the lower half "deficient".
        num_low = min(budget, len(order) // 2)
        num_high = min(budget, len(order) - num_low)
        high = order[::-1][:num_high]
        low = order[:num_low]
        return Selection(np.concatenate([high, low]), ("excessive",) * num_high + ("deficient",) * num_low)

    values = scores.clean_uncertainty if strategy == "clean_uncertainty" else scores.noise_uncertainty
    order = candidates[_ascending_with_random_ties(values[candidates], tie_breaks)]
    chosen = order[::-1][: 2 * budget].copy()
    return Selection(chosen, ("uncertain",) * len(chosen))
