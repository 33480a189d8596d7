"""A round's timeline: seconds per state, and the time left of a running step (pure functions).

The round stores the seconds of every state it has left (`Round.state_seconds`, summed over
visits: a retried step counts each try) and when it entered its current state
(`Round.state_entered_at`); `rounds/lifecycle.py` updates both in its one helper at every change
of state. Readers add the current state's time up to now.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

from backend.models import RoundState

# States whose time left is estimated from measured throughput (done / total of their progress).
ESTIMATED_STATES: Final = frozenset({RoundState.scoring, RoundState.training})
# Below this share of a step done, throughput is mostly start-up (loading, compiling): no estimate.
MIN_DONE_FRACTION_FOR_ESTIMATE = 0.02


def seconds_between(begin: datetime | None, end: datetime) -> float:
    return 0.0 if begin is None else max(0.0, (end - begin).total_seconds())


def after_leaving(
    state_seconds: Mapping[str, float] | None, state: RoundState, entered_at: datetime | None, now: datetime
) -> dict[str, float]:
    """The stored timeline once the round leaves `state` (entered at `entered_at`) at `now`."""
    timeline = dict(state_seconds or {})
    timeline[state.value] = timeline.get(state.value, 0.0) + seconds_between(entered_at, now)
    return timeline


def state_seconds_now(
    state_seconds: Mapping[str, float] | None, state: RoundState, entered_at: datetime | None, now: datetime
) -> dict[str, float]:
    """Seconds per state as a reader sees them: the states left, and the current one up to now.

    A published round's time stops at publication (it never leaves that state, so it is not listed).
    """
    if state == RoundState.published:
        return dict(state_seconds or {})
    return after_leaving(state_seconds, state, entered_at, now)


def eta_seconds(state: RoundState, progress: Mapping[str, Any] | None, elapsed: float) -> float | None:
    """Seconds left of a running scoring or training step at the throughput measured so far, or None.

    Throughput = done / elapsed seconds in the state; the estimate is (total - done) / throughput.
    None while too little is done to measure, or in a state with no progress of its own.
    """
    if state not in ESTIMATED_STATES or not progress:
        return None
    done, total = int(progress.get("done") or 0), int(progress.get("total") or 0)
    if total <= 0 or done <= 0 or elapsed <= 0 or done < total * MIN_DONE_FRACTION_FOR_ESTIMATE:
        return None
    return max(0.0, (total - done) * elapsed / done)
