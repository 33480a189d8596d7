"""Query strategies on known scores: AQPL's two sides, baselines, exclusions, ties, short supply."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from worker.ml.scoring import Scores
from worker.ml.strategies import STRATEGY_NAMES, select


def _scores(
    entropy: list[float], clean: list[float] | None = None, noisy: list[float] | None = None
) -> Scores:
    values = np.array(entropy, dtype=np.float64)
    return Scores(
        entropy=values,
        clean_uncertainty=np.array(clean if clean is not None else entropy, dtype=np.float64),
        noise_uncertainty=np.array(noisy if noisy is not None else entropy, dtype=np.float64),
        forward_passes=0,
    )


def _none_queried(count: int) -> np.ndarray:
    return np.zeros(count, dtype=bool)


def test_aqpl_takes_the_highest_and_lowest_entropy() -> None:
    scores = _scores([0.3, 1.2, 0.0, 0.9, 0.5, 0.1, 2.0])
    selection = select("aqpl", scores, 2, _none_queried(7), np.random.default_rng(0))
    assert selection.indices.tolist() == [6, 1, 2, 5]
    assert selection.sides == ("excessive", "excessive", "deficient", "deficient")


def test_already_queried_examples_are_never_selected() -> None:
    scores = _scores([0.3, 1.2, 0.0, 0.9, 0.5, 0.1, 2.0])
    queried = np.array([False, False, True, False, False, False, True])
    selection = select("aqpl", scores, 2, queried, np.random.default_rng(0))
    assert selection.indices.tolist() == [1, 3, 5, 0]
    for strategy in STRATEGY_NAMES:
        chosen = select(strategy, scores, 2, queried, np.random.default_rng(1)).indices
        assert not queried[chosen].any()


def test_aqpl_breaks_ties_at_random_but_reproducibly() -> None:
    scores = _scores([0.0] * 50)
    first = select("aqpl", scores, 3, _none_queried(50), np.random.default_rng(0)).indices
    again = select("aqpl", scores, 3, _none_queried(50), np.random.default_rng(0)).indices
    other = select("aqpl", scores, 3, _none_queried(50), np.random.default_rng(1)).indices
    assert first.tolist() == again.tolist()
    assert first.tolist() != other.tolist()
    assert first.tolist() != [49, 48, 47, 0, 1, 2]  # not the index order a stable sort would give


def test_fewer_candidates_than_asked_returns_each_once() -> None:
    scores = _scores([0.4, 0.2, 0.9, 0.1, 0.7])
    queried = np.array([False, True, False, False, False])
    selection = select("aqpl", scores, 5, queried, np.random.default_rng(0))
    assert sorted(selection.indices.tolist()) == [0, 2, 3, 4]
    assert selection.indices.tolist() == [2, 4, 3, 0]
    assert selection.sides == ("excessive", "excessive", "deficient", "deficient")
    odd = select("aqpl", _scores([0.5, 0.1, 0.9]), 4, _none_queried(3), np.random.default_rng(0))
    assert odd.indices.tolist() == [2, 0, 1] and odd.sides.count("deficient") == 1
    for strategy in ("random", "clean_uncertainty", "noise_uncertainty"):
        chosen = select(strategy, scores, 5, queried, np.random.default_rng(0)).indices
        assert sorted(chosen.tolist()) == [0, 2, 3, 4]


def test_random_picks_2b_distinct_unqueried_examples() -> None:
    queried = _none_queried(100)
    queried[:50] = True
    selection = select("random", _scores([0.0] * 100), 10, queried, np.random.default_rng(3))
    assert len(selection.indices) == 20 == len(set(selection.indices.tolist()))
    assert selection.indices.min() >= 50
    assert selection.sides == ("random",) * 20
    again = select("random", _scores([0.0] * 100), 10, queried, np.random.default_rng(3))
    assert selection.indices.tolist() == again.indices.tolist()


def test_uncertainty_baselines_take_the_2b_highest_of_their_score() -> None:
    scores = _scores([9, 9, 9, 9, 9], clean=[0.1, 0.8, 0.3, 0.9, 0.2], noisy=[0.7, 0.1, 0.6, 0.0, 0.5])
    clean = select("clean_uncertainty", scores, 1, _none_queried(5), np.random.default_rng(0))
    noisy = select("noise_uncertainty", scores, 1, _none_queried(5), np.random.default_rng(0))
    assert clean.indices.tolist() == [3, 1] and clean.sides == ("uncertain", "uncertain")
    assert noisy.indices.tolist() == [0, 2]


def test_zero_budget_and_bad_arguments() -> None:
    scores = _scores([0.1, 0.2])
    assert select("aqpl", scores, 0, _none_queried(2), np.random.default_rng(0)).indices.size == 0
    with pytest.raises(ValueError, match="unknown strategy"):
        select("bald", scores, 1, _none_queried(2), np.random.default_rng(0))
    with pytest.raises(ValueError, match="shape"):
        select("aqpl", scores, 1, _none_queried(3), np.random.default_rng(0))
    with pytest.raises(ValueError, match="budget"):
        select("aqpl", scores, -1, _none_queried(2), np.random.default_rng(0))


def test_early_stopped_picks_are_completed_and_the_choice_made_again() -> None:
    # Examples 0 and 1 stopped unanimous after a pilot of 8 (H 0); on all 50 draws example 0
    # turns out mixed (H 0.5) and example 1 stays unanimous. Example 4 stopped after 20 draws
    # (H 0.2) but is never picked, so it is never completed.
    full_draw_entropy = {0: 0.5, 1: 0.0, 4: 0.1}
    stopped = Scores(
        entropy=np.array([0.0, 0.0, 0.3, 0.6, 0.2]),
        clean_uncertainty=np.array([0.9, 0.8, 0.1, 0.2, 0.3]),
        noise_uncertainty=np.array([0.0, 0.0, 0.3, 0.6, 0.2]),
        forward_passes=8 + 8 + 50 + 50 + 20,
        draws_used=np.array([8, 8, 50, 50, 20]),
        draws=50,
    )
    completed: list[int] = []

    def complete(scores: Scores, examples: np.ndarray) -> Scores:
        """What complete_draws does, with the full-draw entropies known in advance."""
        assert scores.draws_used is not None
        entropy, draws_used = scores.entropy.copy(), scores.draws_used.copy()
        for example in examples.tolist():
            entropy[example] = full_draw_entropy[example]
            draws_used[example] = 50
            completed.append(example)
        passes = scores.forward_passes + 42 * len(examples)
        return replace(scores, entropy=entropy, forward_passes=passes, draws_used=draws_used)

    for seed in range(6):
        completed.clear()
        selection = select(
            "aqpl", stopped, 1, _none_queried(5), np.random.default_rng(seed), complete=complete
        )
        assert selection.indices.tolist() == [3, 1]  # example 0 is not deficient after all
        assert 4 not in completed and set(completed) <= {0, 1}
        assert selection.completion_passes == 42 * len(completed)
    without = [
        select("aqpl", stopped, 1, _none_queried(5), np.random.default_rng(seed)).indices[1]
        for seed in range(6)
    ]
    assert set(without) == {0, 1}  # a random pick among the pilot zeros
    clean = select(
        "clean_uncertainty", stopped, 1, _none_queried(5), np.random.default_rng(0), complete=complete
    )
    assert clean.indices.tolist() == [0, 1] and clean.completion_passes == 0  # clean scores draw no noise
