"""Adaptive scoring: staged early stopping, its configuration and its error bound.

Draws come in stages. At stage (n, r) an example whose n predictions so far have at most r
outside its most frequent class stops there, and its H is the entropy of those n predictions;
the rest go on, and every example left after the last stage gets all M draws. Default stages
(8, 0), (20, 2), (30, 3), (40, 4): a unanimous pilot of 8 stops, then 18 of 20, 27 of 30, 36
of 40. Error bound: for an example whose top class has probability q on noisy copies, "some
class holds >= n - r of n draws" needs the top class or all others together to do so, so
    P(stop early) <= Σ_stages [P(Bin(n, q) >= n - r) + P(Bin(n, 1 - q) >= n - r)]
(AdaptiveConfig.early_stop_bound): 0.8 % at q = 0.5 (H >= ln 2), 2.1 % at q = 0.6, 10.5 % at
q = 0.7 — the uncertain end that AQPL sends to the oracle as "excessive" is rarely cut short.
Examples that do stop have q near 1, whose exact H is near 0 as well. They would still skew
AQPL's "deficient" side, a random pick among the many examples at H = 0: unanimous on 8
draws is a larger pool than unanimous on 50. So a selection made on adaptive scores completes
its picks (`complete_draws`, called by strategies.select) until every pick has all M draws.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from worker.ml.scoring.scores import class_counts


@dataclass(frozen=True)
class AdaptiveConfig:
    """Staged early stopping of adaptive scoring (rule and error bound in the module docstring)."""

    # (draws so far, most draws allowed outside the top class) at which an example may stop.
    # 8 unanimous, 18 of 20, 27 of 30, 36 of 40: each stops only examples with q ≳ 0.9, which can
    # be neither among the highest H nor tied at H = 0; together they stop one with q = 0.6 with
    # probability <= 2.1 %, q = 0.7 <= 10.5 % (docs/engine.md).
    stages: tuple[tuple[int, int], ...] = ((8, 0), (20, 2), (30, 3), (40, 4))

    def __post_init__(self) -> None:
        previous = 0
        for draws, minority in self.stages:
            if draws <= previous or draws < 2:
                raise ValueError(f"adaptive stages need increasing draw counts >= 2, got {self.stages}")
            if not 0 <= minority < draws / 2:
                raise ValueError(f"a stage's minority count must be in [0, draws/2), got {(draws, minority)}")
            previous = draws

    def stages_before(self, max_draws: int | None) -> tuple[tuple[int, int], ...]:
        """The stages at fewer than max_draws draws (all of them for None): where an example may stop."""
        return tuple(stage for stage in self.stages if max_draws is None or stage[0] < max_draws)

    def early_stop_bound(self, top_class_probability: float, max_draws: int | None = None) -> float:
        """Upper bound on P(stopping before max_draws) for an example whose top class has this probability."""
        q = top_class_probability
        bound = 0.0
        for draws, minority in self.stages_before(max_draws):
            bound += _binomial_upper_tail(draws, q, draws - minority)
            bound += _binomial_upper_tail(draws, 1.0 - q, draws - minority)
        return min(bound, 1.0)


def _binomial_upper_tail(trials: int, probability: float, at_least: int) -> float:
    return sum(
        math.comb(trials, k) * probability**k * (1.0 - probability) ** (trials - k)
        for k in range(at_least, trials + 1)
    )


def undecided(predictions: torch.Tensor, stage_draws: int, max_minority: int) -> torch.Tensor:
    """Per example: more than max_minority of its first stage_draws predictions lie outside its top class."""
    modal_count = class_counts(predictions[:, :stage_draws]).max(dim=1).values
    return stage_draws - modal_count > max_minority
