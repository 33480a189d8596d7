"""A round's timeline: seconds per state stored by the lifecycle, read over the API and in /metrics."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

import backend.rounds.lifecycle as lifecycle
from backend.models import Role, Round, RoundState
from backend.rounds import timeline
from tests.api.factories import Api, make_round, make_user
from tests.api.platform_support import make_ready_project
from tests.api.test_metrics import sample


@pytest.fixture
def api(fresh_api: Api) -> Api:
    return fresh_api


class Clock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


def test_every_state_is_timed_through_move_close_fail_and_retry(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    began = datetime.now(UTC) - timedelta(seconds=1000)
    clock = Clock(began)
    monkeypatch.setattr(lifecycle, "utcnow", clock)
    with api.seed() as session:
        lead = make_user(session, Role.lead)
        admin = make_user(session, Role.admin)
        project, _ = make_ready_project(session, api.settings, lead, num_train=4)
        round_ = make_round(session, project, 1, RoundState.scoring)
        round_.state_entered_at = began
        round_.forward_passes, round_.scoring_seconds = 1234, 2.5
        clock.now = began + timedelta(seconds=10)
        lifecycle.move(session, round_, RoundState.annotating, total=0)
        clock.now = began + timedelta(seconds=70)
        assert lifecycle.close_if_complete(session, round_.id)  # no open query: the answer path closes it
        session.refresh(round_)
        assert round_.state == RoundState.aggregating
        clock.now = began + timedelta(seconds=75)
        lifecycle.move(session, round_, RoundState.training, total=100)
        clock.now = began + timedelta(seconds=80)
        lifecycle.fail(session, round_, "out of memory")
        clock.now = began + timedelta(seconds=100)
        lifecycle.move(session, round_, RoundState.training, total=100)  # retry
        lifecycle.record_progress(round_, 30, 100)
        round_id = round_.id
    assert round_.state_seconds == {
        "scoring": 10.0,
        "annotating": 60.0,
        "aggregating": 5.0,
        "training": 5.0,
        "failed": 20.0,
    }

    body = api.client.get(f"/api/v1/rounds/{round_id}", headers=api.headers_for(lead)).json()
    assert (body["forward_passes"], body["scoring_seconds"]) == (1234, 2.5)
    seconds = body["state_seconds"]
    assert {state: seconds[state] for state in ("scoring", "annotating", "aggregating", "failed")} == {
        "scoring": 10.0,
        "annotating": 60.0,
        "aggregating": 5.0,
        "failed": 20.0,
    }
    # The current state counts up to now: 5 s before the failure and ~900 s since the retry.
    assert 5 + 900 <= seconds["training"] < 5 + 960
    # 30 of 100 done in the ~900 s of this visit: ~2,100 s left at that throughput.
    assert body["eta_seconds"] == pytest.approx(70 * 900 / 30, rel=0.05)

    metrics = api.client.get("/metrics", headers=api.headers_for(admin)).text
    assert "# TYPE aqpl_round_state_seconds histogram" in metrics
    name = "aqpl_round_state_seconds"
    assert sample(metrics, f"{name}_count", state="annotating") == 1
    assert sample(metrics, f"{name}_sum", state="annotating") == 60
    assert sample(metrics, f"{name}_bucket", state="annotating", le="15.0") == 0
    assert sample(metrics, f"{name}_bucket", state="annotating", le="60.0") == 1
    assert sample(metrics, f"{name}_bucket", state="scoring", le="15.0") == 1
    assert sample(metrics, f"{name}_sum", state="failed") == 20
    assert sample(metrics, f"{name}_count", state="evaluating") == 0  # every label value, observed or not
    assert f'{name}_count{{state="published"}}' not in metrics  # a state no round leaves


def test_a_published_round_stops_counting() -> None:
    entered = datetime(2026, 1, 1, tzinfo=UTC)
    later = entered + timedelta(days=3)
    stored = {"scoring": 4.0}
    assert timeline.state_seconds_now(stored, RoundState.published, entered, later) == stored
    assert timeline.state_seconds_now(stored, RoundState.evaluating, entered, later) == {
        "scoring": 4.0,
        "evaluating": 3 * 86400.0,
    }


@pytest.mark.parametrize(
    ("state", "progress", "elapsed", "expected"),
    [
        (RoundState.scoring, {"done": 250, "total": 1000}, 10.0, 30.0),
        (RoundState.training, {"done": 9, "total": 10}, 90.0, 10.0),
        (RoundState.training, {"done": 0, "total": 10}, 90.0, None),  # nothing measured yet
        (RoundState.scoring, {"done": 1, "total": 1000}, 5.0, None),  # under 2 %: mostly start-up
        (RoundState.annotating, {"done": 5, "total": 10}, 60.0, None),  # people, not throughput
        (RoundState.evaluating, {"done": 1, "total": 2}, 60.0, None),
    ],
)
def test_eta_from_measured_throughput(
    state: RoundState, progress: dict[str, int], elapsed: float, expected: float | None
) -> None:
    assert timeline.eta_seconds(state, progress, elapsed) == expected


def test_new_rounds_enter_scoring_when_created(api: Api) -> None:
    with api.seed() as session:
        lead = make_user(session, Role.lead)
        project, _ = make_ready_project(session, api.settings, lead, num_train=4)
        round_ = lifecycle.open_round(session, project, 1)
        assert isinstance(session.get(Round, round_.id), Round)
        assert round_.state_entered_at is not None
        assert (round_.forward_passes, round_.scoring_seconds) == (0, 0.0)
