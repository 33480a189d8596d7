"""`aqpl_round_state_seconds`: a histogram of the time rounds spent in each state they have left.

Read from the rounds' stored timelines at each scrape (`Round.state_seconds`, written by
rounds/lifecycle.py when a round leaves a state), like the other platform metrics, rather than
observed in the process that moved the round: rounds move in worker processes on other hosts
and in every API process, and a transaction that rolls back would otherwise leave an
observation of a change that never happened. One observation per round and state left (a
state visited twice, after a retry, is observed once with its total).
"""

from __future__ import annotations

from typing import Final

from prometheus_client.core import HistogramMetricFamily
from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.models import Round, RoundState

METRIC_NAME: Final = "aqpl_round_state_seconds"
# Every state a round can leave (published is final): the `state` label takes these values only.
STATES_LEFT: Final = tuple(state.value for state in RoundState if state != RoundState.published)
# Upper bounds in seconds: a scoring job of a few seconds up to annotation that lasts a week.
BUCKETS: Final = (1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 4 * 3600.0, 86400.0, 7 * 86400.0)


def state_seconds_histogram(session: Session) -> HistogramMetricFamily:
    observations: dict[str, list[float]] = {state: [] for state in STATES_LEFT}
    for (timeline,) in session.execute(select(Round.state_seconds).where(Round.state_seconds.is_not(None))):
        for state, seconds in (timeline or {}).items():
            if state in observations:
                observations[state].append(float(seconds))
    family = HistogramMetricFamily(
        METRIC_NAME,
        "Seconds a round spent in a state, observed when it left the state.",
        labels=("state",),
    )
    for state, values in observations.items():
        cumulative = [(_go_float(bound), sum(1 for value in values if value <= bound)) for bound in BUCKETS]
        family.add_metric([state], [*cumulative, ("+Inf", len(values))], sum_value=sum(values))
    return family


def _go_float(value: float) -> str:
    """A bucket bound as prometheus-client writes its own ("60.0"; large values in Go's exponent form)."""
    from prometheus_client.utils import floatToGoString

    text: str = floatToGoString(value)  # type: ignore[no-untyped-call]
    return text
