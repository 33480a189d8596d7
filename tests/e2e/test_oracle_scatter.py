"""The project page of a project that trains F_o plots people's consensus against the simulated
oracle's σ_o and reports their agreement; each query's thumbnail shows its σ_o."""

from __future__ import annotations

from typing import Any

from tests.e2e.conftest import (
    BROWSER_TESTS,
    READY_TIMEOUT,
    TINY_PROJECT,
    Server,
    open_first_round,
    sign_in,
    wait_for_js,
    wait_for_round,
)
from tests.e2e.test_dashboard import answer_every_task, lead_page, text_of

pytestmark = BROWSER_TESTS
__all__ = ["lead_page"]  # the fixture, imported for the tests below


def test_oracle_scatter_and_agreement_on_the_project_page(server: Server, lead_page: Any) -> None:
    page = lead_page
    body = {"name": "e2e oracle", **TINY_PROJECT, "budget": 1, "auto_close": True, "oracle_reference": True}
    project_id, round_id, _ = open_first_round(server, body)
    # Two queries, two annotators each, different answers: the consensus is their median.
    assert (
        answer_every_task(server, "ann1", project_id, 20) + answer_every_task(server, "ann2", project_id, 50)
        == 4
    )
    wait_for_round(server, round_id, "published", timeout=READY_TIMEOUT)

    sign_in(page, server, "lead1")
    page.goto(f"{server.base_url}/projects/{project_id}")
    wait_for_js(
        page, 'document.querySelectorAll("#oracle-agreement svg.oracle-scatter circle.point").length > 0'
    )
    tips = page.evaluate(
        '[...document.querySelectorAll("svg.oracle-scatter circle.point title")].map(t => t.textContent)'
    )
    assert sum(int(tip.split(" ")[0]) for tip in tips) == 2, tips  # both queries, coinciding ones merged
    assert all("consensus σ 0.35" in tip for tip in tips), tips  # median of 0.20 and 0.50, rounded up
    caption = text_of(page, "#oracle-agreement .oracle-stats")
    assert "2 queries" in caption and "Pearson r =" in caption and "95 % interval" in caption, caption
    wait_for_js(page, 'document.querySelectorAll(".thumb .oracle").length === 2')
    assert text_of(page, ".thumb .oracle").startswith("σ_o ")
