"""The project page shows each round's timeline as a stacked bar, its scoring cost, and, while a
scoring or training step runs, the time left at the measured throughput."""

from __future__ import annotations

import json
from typing import Any

from tests.e2e.conftest import (
    BROWSER_TESTS,
    TINY_PROJECT,
    Server,
    open_first_round,
    sign_in,
    wait_for_js,
)
from tests.e2e.test_dashboard import lead_page, text_of, wait_for_text

pytestmark = BROWSER_TESTS
__all__ = ["lead_page"]  # the fixture, imported for the tests below


def test_round_timeline_bar_and_time_left(server: Server, lead_page: Any) -> None:
    page = lead_page
    project_id, round_id, annotating = open_first_round(
        server, {"name": "e2e timeline", **TINY_PROJECT, "draws": 20}
    )
    try:
        check_timeline(server, page, project_id, annotating)
    finally:  # its open queries would go to the other browser tests' annotators
        with server.api("lead1") as api:
            assert api.post(f"/rounds/{round_id}/close").status_code == 200


def check_timeline(server: Server, page: Any, project_id: int, annotating: dict[str, Any]) -> None:
    assert annotating["forward_passes"] > 0 and set(annotating["state_seconds"]) == {"scoring", "annotating"}

    sign_in(page, server, "lead1")
    page.goto(f"{server.base_url}/projects/{project_id}")
    row = "#rounds-table tr[data-round='1']"
    wait_for_js(page, f'document.querySelector("{row} svg.timeline-bar") !== null')
    states = page.evaluate(
        f'[...document.querySelectorAll("{row} svg.timeline-bar rect.tl-segment")].map(r => r.dataset.state)'
    )
    assert states == ["scoring", "annotating"]
    widths = page.evaluate(
        f"[...document.querySelectorAll(\"{row} rect.tl-segment\")].map(r => Number(r.getAttribute('width')))"
    )
    assert all(width >= 0 for width in widths) and abs(sum(widths) - 240) < 0.5  # the bar's whole width
    assert "scoring" in page.evaluate(
        f"document.querySelector(\"{row} svg.timeline-bar\").getAttribute('aria-label')"
    )
    assert f"{annotating['forward_passes']:,} passes" in text_of(page, f"{row} td.scoring-cost")
    assert page.is_hidden("#round-eta"), "no estimate while people annotate"

    # A training step under way, as the API reports it: 30 of 100 batches in 50 s, 125 s left.
    def training(route: Any) -> None:
        response = route.fetch()
        body = response.json()
        body["current_round"] = {
            **body["current_round"],
            "state": "training",
            "progress": {"step": "training", "done": 30, "total": 100},
            "state_seconds": {**body["current_round"]["state_seconds"], "training": 50.0},
            "eta_seconds": 125.0,
        }
        route.fulfill(response=response, body=json.dumps(body))

    page.route(f"**/api/v1/projects/{project_id}", training)
    page.reload()
    wait_for_text(page, "#round-eta", "about 2 min 5 s left (50 s so far)")
    assert page.is_visible("#round-eta")
    assert "Training 30 / 100" in text_of(page, "#step-caption")
